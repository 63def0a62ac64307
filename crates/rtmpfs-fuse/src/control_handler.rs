//! What the daemon answers on its control socket ([`control`] carries the requests): `stats`
//! (the request counters, then the engine's live figures), `status`, `status-json` (the
//! status object of `rtmpfs status`, one JSON line), `remount OPTIONS`, the daemon's side of
//! `mount -o remount` — the read-only switch, new `size=`/`nr_inodes=` limits and atime
//! options — `resize OPTIONS` (`rtmpfs resize`: `size=`, `nr_inodes=`, `memory=`) and
//! `snapshot PATH` (`rtmpfs snapshot`: an image of the tree written atomically to PATH).
//!
//! Invariant: a refused remount or resize (an option fixed at mount given a new value, a limit
//! below what is in use) changes nothing — the checks come before any change — and answers one
//! line saying why, with the figures; no option is ever ignored silently.

use crate::control;
use crate::options::{Host, MountOptions};
use crate::stats::Stats;
use crate::status::{self, human_bytes, RateRing};
use rtmpfs_core::Filesystem;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// State the control socket acts on.
pub(crate) struct Control {
    pub(crate) opts: Mutex<MountOptions>,
    pub(crate) host: Host,
    pub(crate) stats: Arc<Stats>,
    pub(crate) fs: Arc<Filesystem>,
    /// Eviction and swap-in samples for the rates of `rtmpfs status`.
    pub(crate) rates: Arc<RateRing>,
    /// When the mount started serving.
    pub(crate) started: Instant,
    /// `image_key=`: what `snapshot` encrypts with.
    pub(crate) image_key: Option<rtmpfs_core::ImageKey>,
    /// The mount's device: no image goes inside the mount itself.
    pub(crate) dev: (u32, u32),
}

/// The engine's live figures, one `name value` line each (sizes in 4 KiB pages unless named
/// `_bytes`): what `rtmpfs --stats MOUNTPOINT` prints after the request counters.
fn render_usage(u: &rtmpfs_core::Usage) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let lines: [(&str, String); 45] = [
        ("charged_pages", u.charged_pages.to_string()),
        ("resident_pages", u.resident_pages.to_string()),
        ("swapped_pages", u.swapped_pages.to_string()),
        ("reserved_pages", u.reserved_pages.to_string()),
        ("poisoned_pages", u.poisoned_pages.to_string()),
        ("inodes", u.inodes.to_string()),
        ("inode_space_used_bytes", u.inode_space_used.to_string()),
        (
            "memory_limit_pages",
            u.memory_limit_pages
                .map_or_else(|| "none".to_string(), |n| n.to_string()),
        ),
        ("frames_in_use", u.frames_in_use.to_string()),
        ("memory_heap_pages", u.memory_heap_pages.to_string()),
        ("swap_slots_used", u.swap_slots_used.to_string()),
        ("swap_capacity_pages", opt(u.swap_capacity_pages)),
        ("swap_file_bytes", u.swap_file_bytes.to_string()),
        ("swap_encrypted", u.swap_encrypted.to_string()),
        ("evictions", u.evictions.to_string()),
        ("clean_evictions", u.clean_evictions.to_string()),
        ("swap_ins", u.swap_ins.to_string()),
        ("readahead_swap_ins", u.readahead_swap_ins.to_string()),
        ("swap_read_errors", u.swap_read_errors.to_string()),
        ("swap_write_errors", u.swap_write_errors.to_string()),
        ("direct_reclaims", u.direct_reclaims.to_string()),
        ("compression", u.compression.name().to_string()),
        ("compressed_pages", u.compressed_pages.to_string()),
        ("zero_pages", u.zero_pages.to_string()),
        ("pool_bytes", u.pool_bytes.to_string()),
        ("pool_limit_bytes", opt(u.pool_limit_bytes)),
        ("pool_stores", u.pool_stores.to_string()),
        ("pool_rejected", u.pool_rejected.to_string()),
        ("pool_rejected_by_estimate", u.pool_rejected_by_estimate.to_string()),
        ("pool_hits", u.pool_hits.to_string()),
        ("pool_writebacks", u.pool_writebacks.to_string()),
        ("swap_bytes_written", u.swap_bytes_written.to_string()),
        ("swap_bytes_read", u.swap_bytes_read.to_string()),
        ("swap_records", u.swap_records.to_string()),
        ("swap_record_bytes", u.swap_record_bytes.to_string()),
        ("swap_record_slots", u.swap_record_slots.to_string()),
        ("swap_records_written", u.swap_records_written.to_string()),
        ("swap_records_read", u.swap_records_read.to_string()),
        ("page_pool_ram_bytes", u.page_pool_ram_bytes.to_string()),
        ("page_pool_mapped_bytes", u.page_pool_mapped_bytes.to_string()),
        ("page_pool_free_bytes", u.page_pool_free_bytes.to_string()),
        ("metadata_bytes", u.metadata_bytes.to_string()),
        ("buffer_bytes", u.buffer_bytes.to_string()),
        ("heap_free_bytes", u.heap_free_bytes.to_string()),
        ("accounted_ram_bytes", u.accounted_ram_bytes().to_string()),
    ];
    lines.iter().fold(String::new(), |mut out, (k, v)| {
        let _ = writeln!(out, "{k} {v}");
        out
    })
}

impl control::Handler for Control {
    fn handle(&self, request: &str) -> Result<String, String> {
        let (cmd, arg) = request.split_once(' ').unwrap_or((request, ""));
        match cmd {
            "stats" => Ok(format!(
                "{}{}open_files {}\n",
                self.stats.render(),
                render_usage(&self.fs.usage()),
                self.fs.open_handles()
            )),
            "status" => {
                let o = self.opts.lock().map_err(|_| "poisoned".to_string())?;
                Ok(format!(
                    "source {}\nread_only {}\nthreads {}\ndirect_io {}\n",
                    o.source(),
                    self.fs.is_read_only(),
                    o.threads,
                    o.direct_io
                ))
            }
            "status-json" => self.status_json(),
            "remount" => self.remount(arg),
            "resize" => self.resize(arg),
            // The client is root or the daemon's own user (control.rs), so the file is written
            // with no more privilege than the asker has.
            "snapshot" => {
                crate::persist::snapshot_to(&self.fs, std::path::Path::new(arg), self.image_key.as_ref(), self.dev)
            }
            _ => Err("unknown request".to_string()),
        }
    }
}

impl Control {
    /// Apply the daemon's side of a remount: the read-only switch and, as tmpfs, new `size=`
    /// and `nr_inodes=` limits (not below what is in use, not on an unlimited mount). Options
    /// fixed at mount (see `fixed_option_changed`) may be repeated with their current value, as
    /// fstab-driven remounts repeat every option; a new value is refused, never ignored.
    fn remount(&self, arg: &str) -> Result<String, String> {
        let new = MountOptions::parse(&[arg]).map_err(|e| e.to_string())?;
        let mut cur = self.opts.lock().map_err(|_| "poisoned".to_string())?;
        let given = |name: &str| arg.split(',').any(|o| o == name || o.starts_with(&format!("{name}=")));
        if let Some(name) = fixed_option_changed(&cur, &new, &self.host, given) {
            return Err(format!(
                "{name} cannot change on remount (it is fixed when mounting; repeat its current value or leave it out)"
            ));
        }
        let size = new.size.map(|_| new.size_bytes(&self.host));
        let inodes = new.nr_inodes.map(|_| new.max_inodes(&self.host));
        let size_change = size.filter(|s| *s != cur.size_bytes(&self.host));
        let inodes_change = inodes.filter(|n| *n != cur.max_inodes(&self.host));
        if size_change.is_some() || inodes_change.is_some() {
            // `None` inside means "unlimited", which tmpfs refuses to switch to or from.
            let s = match size_change {
                Some(Some(b)) => Some(b),
                Some(None) => return Err("size= cannot become unlimited on remount".into()),
                None => None,
            };
            let n = match inodes_change {
                Some(Some(n)) => Some(n),
                Some(None) => return Err("nr_inodes= cannot become unlimited on remount".into()),
                None => None,
            };
            if let Some(refusal) = self.below_use(s, n) {
                return Err(refusal);
            }
            self.fs.set_limits(s, n).map_err(|_| {
                "new size=/nr_inodes= refused: below current use, or the mount is unlimited".to_string()
            })?;
            if size_change.is_some() {
                cur.size = new.size;
            }
            if inodes_change.is_some() {
                cur.nr_inodes = new.nr_inodes;
            }
        }
        self.apply_atime_options(&new, &mut cur, &given);
        self.fs.set_read_only(new.read_only);
        cur.read_only = new.read_only;
        Ok(String::new())
    }

    /// The status object of `rtmpfs status`, on one line.
    fn status_json(&self) -> Result<String, String> {
        let o = self.opts.lock().map_err(|_| "poisoned".to_string())?;
        let st = status::build(&status::Sources {
            fs: &self.fs,
            stats: &self.stats,
            rates: &self.rates,
            started: self.started,
            source: o.source().to_string(),
            size_limit: o.size_bytes(&self.host),
            inode_limit: o.max_inodes(&self.host),
            swap_limit: o.swap_size,
        });
        drop(o);
        let mut line = serde_json::to_string(&st).map_err(|e| format!("status: {e}"))?;
        line.push('\n');
        Ok(line)
    }

    /// The refusal, with the figures, of a new `size=` (bytes) or `nr_inodes=` below what is in
    /// use (tmpfs refuses it too); None when both fit.
    fn below_use(&self, size: Option<u64>, inodes: Option<u64>) -> Option<String> {
        let u = self.fs.usage();
        if let Some(b) = size {
            let used = u.charged_pages * status::PAGE_SIZE;
            if b / status::PAGE_SIZE < u.charged_pages || b < status::PAGE_SIZE {
                return Some(format!(
                    "size={} is below the {} ({} pages) in use; size unchanged",
                    human_bytes(b),
                    human_bytes(used),
                    u.charged_pages
                ));
            }
        }
        if let Some(n) = inodes {
            // Inode space: 1 KiB per inode and per extra hard link, plus xattrs (as tmpfs).
            let used = u.inode_space_used.div_ceil(1024);
            if n < used || n == 0 {
                return Some(format!(
                    "nr_inodes={n} is below the {used} in use ({} inodes, plus hard links and xattrs); nr_inodes unchanged",
                    u.inodes
                ));
            }
        }
        None
    }

    /// `rtmpfs resize`: new `size=`, `nr_inodes=` and `memory=` limits for the live mount.
    /// Every limit is checked against what is in use before any changes; then `memory=` is
    /// applied (a cut evicts down to it before this returns, or is refused and nothing changed),
    /// then `size=`/`nr_inodes=`. Answers one line per limit changed.
    fn resize(&self, arg: &str) -> Result<String, String> {
        if arg.trim().is_empty() {
            return Err("nothing to resize: give size=, nr_inodes= and/or memory=".into());
        }
        for o in arg.split(',') {
            let key = o.split_once('=').map_or(o, |(k, _)| k);
            if !matches!(key, "size" | "nr_inodes" | "memory") || !o.contains('=') {
                return Err(format!(
                    "resize changes size=, nr_inodes= and memory= only, not {key} (use mount -o remount for the others)"
                ));
            }
        }
        let new = MountOptions::parse(&[arg]).map_err(|e| e.to_string())?;
        let mut cur = self.opts.lock().map_err(|_| "poisoned".to_string())?;
        let given = |name: &str| arg.split(',').any(|o| o.starts_with(&format!("{name}=")));
        let size = if given("size") {
            let b = new
                .size_bytes(&self.host)
                .ok_or("size= cannot become unlimited on a live mount (tmpfs refuses it too)")?;
            if cur.size_bytes(&self.host).is_none() {
                return Err("the mount has no size= limit, and one cannot be added to a live mount".into());
            }
            Some(b)
        } else {
            None
        };
        let inodes = if given("nr_inodes") {
            let n = new
                .max_inodes(&self.host)
                .ok_or("nr_inodes= cannot become unlimited on a live mount (tmpfs refuses it too)")?;
            if cur.max_inodes(&self.host).is_none() {
                return Err("the mount has no nr_inodes= limit, and one cannot be added to a live mount".into());
            }
            Some(n)
        } else {
            None
        };
        let memory = if given("memory") {
            let b = new
                .memory_bytes(&self.host)
                .ok_or("memory= cannot be removed from a live mount")?;
            Some((b / status::PAGE_SIZE).max(1))
        } else {
            None
        };
        if let Some(refusal) = self.below_use(size, inodes) {
            return Err(refusal);
        }
        let mut out = String::new();
        if let Some(pages) = memory {
            let before = self.fs.usage();
            self.fs.set_memory_limit(pages).map_err(|e| e.to_string())?;
            let after = self.fs.usage();
            let old = before.memory_limit_pages.unwrap_or(0);
            let _ = writeln!(
                out,
                "memory {} -> {}{}",
                human_bytes(old * status::PAGE_SIZE),
                human_bytes(pages * status::PAGE_SIZE),
                if pages < old {
                    format!(
                        " ({} now in RAM, {} pages evicted)",
                        human_bytes(after.frames_in_use * status::PAGE_SIZE),
                        (after.evictions + after.clean_evictions)
                            .saturating_sub(before.evictions + before.clean_evictions)
                    )
                } else {
                    String::new()
                }
            );
        }
        if size.is_some() || inodes.is_some() {
            let (old_size, old_inodes) = (cur.size_bytes(&self.host), cur.max_inodes(&self.host));
            self.fs.set_limits(size, inodes).map_err(|_| {
                // Checked above; only a concurrent writer can have raised the use since.
                "size=/nr_inodes= refused: below what is in use (it grew meanwhile)".to_string()
            })?;
            if let Some(b) = size {
                cur.size = new.size;
                let _ = writeln!(
                    out,
                    "size {} -> {}",
                    old_size.map_or_else(|| "unlimited".into(), human_bytes),
                    human_bytes(b)
                );
            }
            if let Some(n) = inodes {
                cur.nr_inodes = new.nr_inodes;
                let _ = writeln!(
                    out,
                    "nr_inodes {} -> {n}",
                    old_inodes.map_or_else(|| "unlimited".into(), |o| o.to_string())
                );
            }
        }
        Ok(out)
    }

    /// The atime options a remount names (`noatime`, `relatime`, `strictatime` and their
    /// negations; `nodiratime`, `diratime`) take effect as at mount; unnamed ones stay.
    fn apply_atime_options(&self, new: &MountOptions, cur: &mut MountOptions, given: &dyn Fn(&str) -> bool) {
        const RULES: [&str; 6] = [
            "noatime",
            "relatime",
            "atime",
            "norelatime",
            "strictatime",
            "nostrictatime",
        ];
        if RULES.iter().any(|o| given(o)) {
            cur.atime = new.atime;
        }
        if given("nodiratime") || given("diratime") {
            cur.nodiratime = new.nodiratime;
        }
        self.fs.set_atime_rule(cur.atime.rule(), cur.nodiratime);
    }
}

/// The first option given to a remount (`given(name)`) that asks for a value other than the
/// mount's, among those fixed when mounting: the RAM budget and swap file, the FUSE session's
/// settings, the source, the root directory's owner and mode (tmpfs ignores these three on
/// remount; we say so instead), and the kernel's readahead window.
fn fixed_option_changed(
    cur: &MountOptions,
    new: &MountOptions,
    host: &Host,
    given: impl Fn(&str) -> bool,
) -> Option<&'static str> {
    let swap_dir = |o: &MountOptions| o.swap_dir.clone().unwrap_or_else(std::env::temp_dir);
    let checks = [
        ("memory=", new.memory_bytes(host) != cur.memory_bytes(host)),
        ("swap=", swap_dir(new) != swap_dir(cur)),
        ("swap_size=", new.swap_size != cur.swap_size),
        ("swap_encrypt=", new.swap_encrypt != cur.swap_encrypt),
        ("compress=", new.compression() != cur.compression()),
        (
            "compress_max=",
            new.compress_max_bytes(host) != cur.compress_max_bytes(host),
        ),
        ("noswap", !cur.noswap),
        ("threads=", new.threads != cur.threads),
        ("direct_io", !cur.direct_io),
        ("writeback", !cur.writeback),
        ("io_uring=", new.io_uring != cur.io_uring),
        ("readahead=", new.readahead != cur.readahead),
        ("fsname=", new.source() != cur.source()),
        ("mode=", new.mode != cur.mode),
        ("uid=", new.uid.unwrap_or(host.uid) != cur.uid.unwrap_or(host.uid)),
        ("gid=", new.gid.unwrap_or(host.gid) != cur.gid.unwrap_or(host.gid)),
        ("restore=", new.restore != cur.restore),
        ("persist=", new.persist != cur.persist),
        ("persist_interval=", new.persist_interval != cur.persist_interval),
        ("image_key=", new.image_key != cur.image_key),
    ];
    checks
        .into_iter()
        .find(|(name, changed)| *changed && given(name.trim_end_matches('=')))
        .map(|(name, _)| name)
}
