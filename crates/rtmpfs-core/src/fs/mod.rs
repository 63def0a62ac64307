//! The filesystem: the public API of the engine.
//!
//! Every method takes `&self` and may be called from many threads at once. Methods are split by
//! topic across the submodules; this one holds the struct, attributes, statfs and the accounting
//! invariant.

mod handles;
mod io;
mod namespace;
#[cfg(all(test, not(feature = "shuttle")))]
mod parity_tests;
#[cfg(all(test, not(feature = "shuttle")))]
mod remount_tests;
mod rename;
#[cfg(all(test, feature = "shuttle"))]
mod shuttle_tests;
#[cfg(all(test, not(feature = "shuttle")))]
mod swap_tests;
#[cfg(test)]
mod test_support;
mod xattrs;

pub use xattrs::{fit_xattr_reply, XattrFit};

use crate::accounting::Accounting;
use crate::config::{Config, SwapConfig};
use crate::dir::DirBody;
use crate::error::{ConfigError, FsError, Result};
use crate::ids::{Ids, Striped};
use crate::inode::{Body, Inode, InodeTable, Meta};
use crate::limits::{Budget, BOGO_INODE_SIZE};
use crate::mem::{Clock, MemBudget, TierStats};
use crate::pager::{MemTier, Pager};
use crate::perm;
use crate::swap::{FileSwap, Sealer, Swap, SwapBackend};
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicU64, LockRank, Mutex, Ordering};
use crate::types::{access, Attr, Ctx, FileKind, Ino, SetAttr, SetTime, StatFs, Timespec, Usage, NAME_MAX, PAGE_SIZE};
use handles::Handles;

/// An in-memory tmpfs instance.
///
/// # Lookup counts
/// With [`Config::track_lookups`], every method that returns a new reference to an inode
/// (`lookup`, `create`, `mkdir`, `mknod`, `symlink`, `link`, `tmpfile`) adds one to its lookup
/// count, and [`Filesystem::forget`] removes them; an inode that is unlinked and closed keeps its
/// attributes (not its data) until its count reaches zero, as the FUSE protocol requires.
///
/// # Unlinked files
/// An unlinked file keeps its data while a handle is open and reports `nlink == 0`; the data and
/// its inode space are freed when the last handle closes.
pub struct Filesystem {
    config: Config,
    table: InodeTable,
    handles: Handles,
    /// Inode numbers; never reused (handed out in per-thread batches).
    inos: Ids,
    /// Generation given to every inode of this instance (inode numbers are never reused, so one
    /// per instance keeps `(ino, generation)` unique even across a restore into a new instance).
    generation: u64,
    /// Page accounting and the memory tier, shared with the background threads.
    pager: Arc<Pager>,
    /// The background evictor and the swap read-ahead thread (with a swap tier), joined on drop.
    threads: std::sync::Mutex<Vec<crate::sync::thread::JoinHandle<()>>>,
    /// Inode space in bytes (`nr_inodes * 1024` when limited).
    ispace: Budget,
    /// Live inodes (not yet released).
    live_inodes: Striped,
    /// Rank `Rename`: held by cross-directory renames; parent pointers change only under it.
    rename_lock: Mutex<()>,
    /// Refuse changes (`ro`); starts as `config.read_only`, switched by remount.
    read_only: AtomicBool,
    /// How reads update atime (an [`AtimeRule`] as u32); starts as `config.noatime` says,
    /// switched by remount.
    atime_rule: AtomicU32,
    /// Share in the memory housekeeping thread, with [`Config::own_process_memory`].
    _housekeeping: Option<crate::housekeeping::Housekeeping>,
    /// Directories' atime stays (`nodiratime`); switched by remount.
    nodiratime: AtomicBool,
}

/// File flags (`chattr`, `FS_IOC_GETFLAGS`/`SETFLAGS`): Linux's `FS_*_FL` values, the ones
/// tmpfs supports. The engine enforces them on every path (over FUSE the kernel does not).
pub mod file_flags {
    /// `i`: no change at all: not written, truncated, linked, renamed, removed, nor its
    /// attributes or xattrs changed, nor opened for writing; a directory takes no new entries.
    pub const IMMUTABLE: u32 = 0x10;
    /// `a`: written only at its end; not truncated, linked, renamed, removed, nor its
    /// attributes or xattrs changed; a directory's entries are not removed.
    pub const APPEND: u32 = 0x20;
    /// `d`: not dumped (recorded only).
    pub const NODUMP: u32 = 0x40;
    /// `A`: reads leave atime alone.
    pub const NOATIME: u32 = 0x80;
    /// Every flag tmpfs supports; others are `NotSupported`.
    pub const SUPPORTED: u32 = IMMUTABLE | APPEND | NODUMP | NOATIME;
}

/// How reads update access times: the mount options `relatime`, `strictatime`, `noatime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum AtimeRule {
    /// Only when atime is not newer than mtime or ctime, or is a day old (the default).
    #[default]
    Relatime = 0,
    /// On every read.
    Strict = 1,
    /// Never.
    Never = 2,
}

impl AtimeRule {
    fn from_u32(v: u32) -> AtimeRule {
        match v {
            1 => AtimeRule::Strict,
            2 => AtimeRule::Never,
            _ => AtimeRule::Relatime,
        }
    }
}

impl std::fmt::Debug for Filesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filesystem")
            .field("config", &self.config)
            .field("usage", &self.usage())
            .finish_non_exhaustive()
    }
}

impl Filesystem {
    /// Build an empty filesystem whose root directory has the configured mode and owners.
    ///
    /// # Errors
    /// A [`ConfigError`] for a nonsensical configuration.
    pub fn new(config: Config) -> std::result::Result<Filesystem, ConfigError> {
        let backend: Option<Box<dyn SwapBackend>> = match (&config.memory_bytes, &config.swap) {
            (Some(_), Some(swap)) => {
                config.validate()?;
                let file = FileSwap::create(&swap.dir).map_err(|e| ConfigError(e.to_string()))?;
                Some(Box::new(file))
            }
            _ => None,
        };
        Self::build(config, backend)
    }

    /// Build a filesystem whose swap tier stores pages in `backend` instead of a swap file (an
    /// in-memory or fault-injecting backend, for tests). `config.memory_bytes` must be set;
    /// `config.swap` still gives `size_bytes` (capacity) and `encrypt`.
    ///
    /// # Errors
    /// A [`ConfigError`] for a nonsensical configuration or a missing RAM budget.
    pub fn with_swap_backend(
        config: Config,
        backend: Box<dyn SwapBackend>,
    ) -> std::result::Result<Filesystem, ConfigError> {
        if config.memory_bytes.is_none() {
            return Err(ConfigError("a swap backend needs memory= (a RAM budget)".into()));
        }
        Self::build(config, Some(backend))
    }

    fn build(config: Config, backend: Option<Box<dyn SwapBackend>>) -> std::result::Result<Filesystem, ConfigError> {
        config.validate()?;
        let max_pages = config.size_bytes.map(|b| b / PAGE_SIZE);
        let tier = match config.memory_bytes {
            None => None,
            Some(mem) => {
                let swap = match backend {
                    None => None,
                    Some(backend) => {
                        let swap_cfg = config.swap.clone().unwrap_or_else(SwapConfig::in_temp_dir);
                        let cap = swap_cfg.size_bytes.map(|b| b / PAGE_SIZE).or_else(|| {
                            let frames = crate::housekeeping::frames_kept(&config, mem / PAGE_SIZE);
                            max_pages.map(|size| size - frames)
                        });
                        let sealer = if swap_cfg.encrypt {
                            Sealer::random_key().map_err(|e| ConfigError(e.to_string()))?
                        } else {
                            Sealer::plain()
                        };
                        Some(Swap::new(backend, cap, sealer))
                    }
                };
                Some(MemTier {
                    budget: Arc::new(MemBudget::new(mem / PAGE_SIZE)),
                    clock: Clock::new(),
                    swap,
                    stats: TierStats::default(),
                })
            }
        };
        let ispace = Budget::new(config.max_inodes.map(|n| n.saturating_mul(BOGO_INODE_SIZE)));
        let background = config.background_evictor && tier.as_ref().is_some_and(|t| t.swap.is_some());
        let pager = Arc::new(Pager::new(Accounting::new(max_pages), tier, background));
        let mut threads = Vec::new();
        if background {
            let spawn = |name: &str, run: fn(&Arc<Pager>)| {
                let p = pager.clone();
                // `sync::thread`: under shuttle these become threads whose schedule it explores.
                crate::sync::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || run(&p))
                    .map_err(|e| ConfigError(format!("cannot start the {name} thread: {e}")))
            };
            threads.push(spawn("rtmpfs-evictor", Pager::run_evictor)?);
            // Two read-ahead threads: one window's swap read overlaps the other's decryption.
            for name in ["rtmpfs-readahead-0", "rtmpfs-readahead-1"] {
                threads.push(spawn(name, |p| p.run_readahead())?);
            }
        }
        // With a swap tier, the budget may count the process heap (see housekeeping.rs).
        let swapping_budget = pager.tier.as_ref().filter(|t| t.swap.is_some()).map(|t| &t.budget);
        let housekeeping = crate::housekeeping::Housekeeping::for_config(&config, swapping_budget)?;
        let fs = Filesystem {
            table: InodeTable::new(),
            handles: Handles::new(),
            inos: Ids::new(Ino::ROOT.0 + 1),
            generation: instance_generation(),
            pager,
            threads: std::sync::Mutex::new(threads),
            ispace,
            live_inodes: Striped::new(),
            rename_lock: Mutex::new(LockRank::Rename, ()),
            read_only: AtomicBool::new(config.read_only),
            atime_rule: AtomicU32::new(if config.noatime {
                AtimeRule::Never as u32
            } else {
                AtimeRule::Relatime as u32
            }),
            nodiratime: AtomicBool::new(false),
            _housekeeping: housekeeping,
            config,
        };
        fs.ispace
            .charge(BOGO_INODE_SIZE)
            .map_err(|_| ConfigError("nr_inodes too small for the root".into()))?;
        let now = Timespec::now();
        let meta = Meta::new(fs.config.root_mode, fs.config.root_uid, fs.config.root_gid, 2, now);
        let root = Inode::new(
            Ino::ROOT,
            fs.generation,
            FileKind::Directory,
            meta,
            Body::Dir(DirBody::new(Ino::ROOT)),
        );
        fs.table.insert(Arc::new(root));
        fs.live_inodes.add(1);
        Ok(fs)
    }

    /// The configuration this instance was built with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether changes are refused (`ro`).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    /// Switch read-only on or off (remount). While read-only, every change fails with
    /// `ReadOnly` and reads leave atime alone.
    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Release);
    }

    /// Set how reads update access times (mount and remount: `relatime`, `strictatime`,
    /// `noatime`) and whether directories' stay (`nodiratime`). Writes, `utimensat` and
    /// truncation set times whatever the rule.
    pub fn set_atime_rule(&self, rule: AtimeRule, nodiratime: bool) {
        self.atime_rule.store(rule as u32, Ordering::Relaxed);
        self.nodiratime.store(nodiratime, Ordering::Relaxed);
    }

    /// The access-time rule in force and whether `nodiratime` is on.
    #[must_use]
    pub fn atime_rule(&self) -> (AtimeRule, bool) {
        let rule = AtimeRule::from_u32(self.atime_rule.load(Ordering::Relaxed));
        (rule, self.nodiratime.load(Ordering::Relaxed))
    }

    /// Change the `size` and `nr_inodes` limits (remount), as tmpfs: `None` leaves a limit as
    /// it is. A limit below what is in use, or a limit on an instance that was built unlimited,
    /// is refused ("cannot retroactively limit size").
    ///
    /// # Errors
    /// `Invalid`, and nothing changes.
    pub fn set_limits(&self, size_bytes: Option<u64>, max_inodes: Option<u64>) -> Result<()> {
        let pages = size_bytes.map(|b| b / PAGE_SIZE);
        let ispace = max_inodes.map(|n| n.saturating_mul(BOGO_INODE_SIZE));
        for (new, budget) in [(pages, &self.pager.acct.pages), (ispace, &self.ispace)] {
            if let Some(new) = new {
                if budget.max().is_none() || new < budget.used() || new == 0 {
                    return Err(FsError::Invalid);
                }
            }
        }
        // Checked above for both, so that a refused remount changes neither.
        if let Some(p) = pages {
            self.pager.acct.pages.set_max(p)?;
        }
        if let Some(i) = ispace {
            self.ispace.set_max(i)?;
        }
        Ok(())
    }

    /// The root directory's inode number.
    #[must_use]
    pub fn root(&self) -> Ino {
        Ino::ROOT
    }

    /// Attributes of an inode.
    ///
    /// # Errors
    /// `NotFound` if the inode does not exist (any more).
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let inode = self.inode(ino)?;
        let m = inode.meta.read();
        Ok(inode.attr(&m))
    }

    /// What Linux's `file_remove_privs` does for `ctx` on `ino`: clear set-user-ID and, when
    /// group-executable, set-group-ID of a regular file unless `ctx` holds `CAP_FSETID`, and
    /// drop `security.capability`; ctime becomes now. No permission is needed: the caller is
    /// changing the file by other means it was allowed. (A FUSE server under
    /// `FUSE_HANDLE_KILLPRIV_V2` receives this as a SETATTR that sets nothing.)
    ///
    /// # Errors
    /// `ReadOnly`, `NotFound`.
    pub fn remove_privs(&self, ctx: &Ctx, ino: Ino) -> Result<Attr> {
        self.check_writable()?;
        let inode = self.inode(ino)?;
        let mut m = inode.meta.write();
        let is_regular = inode.kind == FileKind::RegularFile;
        m.perm &= !perm::setid_bits_to_kill_on_write(ctx, m.perm, m.gid, is_regular);
        self.kill_priv(&mut m);
        m.ctime = Timespec::now();
        Ok(inode.attr(&m))
    }

    /// The file flags of an inode ([`file_flags`] bits; `lsattr`).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn file_flags(&self, ino: Ino) -> Result<u32> {
        Ok(self.inode(ino)?.meta.read().flags)
    }

    /// Set the file flags of an inode (`chattr`), with Linux's rules: only the owner or root may,
    /// and only root (`CAP_LINUX_IMMUTABLE`) may set or clear immutable and append-only; ctime
    /// becomes now.
    ///
    /// # Errors
    /// `NotSupported` for a flag tmpfs does not support, `Perm`, `ReadOnly`, `NotFound`.
    pub fn set_file_flags(&self, ctx: &Ctx, ino: Ino, flags: u32) -> Result<Attr> {
        self.check_writable()?;
        let inode = self.inode(ino)?;
        if flags & !file_flags::SUPPORTED != 0 {
            return Err(FsError::NotSupported);
        }
        let mut m = inode.meta.write();
        if !perm::is_owner_or_root(ctx, inode.owner(&m)) {
            return Err(FsError::Perm);
        }
        let fixed = file_flags::IMMUTABLE | file_flags::APPEND;
        if (m.flags ^ flags) & fixed != 0 && !ctx.is_root() {
            return Err(FsError::Perm);
        }
        m.flags = flags;
        m.ctime = Timespec::now();
        Ok(inode.attr(&m))
    }

    /// Change attributes, with Linux's rules: only the owner (or root) may chmod, chown to
    /// another user needs root, chgrp needs membership of the new group, explicit times need
    /// ownership, `UTIME_NOW` needs write permission; truncation needs write permission unless
    /// done through a handle (`fh`) open for writing. chown clears set-user-ID (and set-group-ID
    /// when group-executable) on non-directories; every call updates ctime.
    ///
    /// # Errors
    /// `Perm`/`Access` for permission failures, `IsDir`/`Invalid` for a size on a non-file,
    /// `FileTooBig`, `ReadOnly`, `NotFound`.
    pub fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<crate::Fh>) -> Result<Attr> {
        self.check_writable()?;
        let inode = self.inode(ino)?;
        if set.size.is_some() {
            match inode.kind {
                FileKind::RegularFile => {}
                FileKind::Directory => return Err(FsError::IsDir),
                _ => return Err(FsError::Invalid),
            }
        }
        check_setattr_flags(&inode.meta.read(), set)?;
        let via_handle = match fh {
            Some(fh) => {
                let h = self.handles.get(fh)?;
                if h.inode.ino != ino {
                    return Err(FsError::BadHandle);
                }
                h.flags.write
            }
            None => false,
        };
        if self.config.enforce_permissions {
            let m = inode.meta.read();
            self.check_setattr_permission(ctx, &inode, &m, set, via_handle)?;
        }
        let mut truncated = false;
        if let (Some(size), Some(file)) = (set.size, inode.file()) {
            let io = file.lock_io();
            truncated = truncation_stamps(size, file.size(), file.charged_pages(), fh.is_some());
            // Even to the same size: pages reserved past EOF (fallocate KEEP_SIZE) go, as
            // shmem_setattr truncates the range whenever the size does not grow.
            file.truncate(&io, &self.pager, size)?;
        }
        let now = Timespec::now();
        let mut m = inode.meta.write();
        if truncated {
            m.mtime = now;
            m.perm &= !perm::setid_bits_to_kill_on_write(ctx, m.perm, m.gid, true);
            self.kill_priv(&mut m);
        }
        if let Some(mode) = set.mode {
            let mut mode = mode & 0o7777;
            let gid_after = set.gid.unwrap_or(m.gid);
            if self.config.enforce_permissions && !ctx.is_root() && !ctx.in_group(gid_after) {
                mode &= !libc::S_ISGID;
            }
            m.perm = mode;
        }
        if set.uid.is_some() || set.gid.is_some() {
            if inode.kind != FileKind::Directory {
                // chown_common: set-user-ID always, set-group-ID by setattr_should_drop_sgid.
                let kill = libc::S_ISUID | perm::sgid_to_drop(ctx, m.perm, m.gid);
                if set.mode.is_none() {
                    m.perm &= !kill;
                }
            }
            self.kill_priv(&mut m);
            if let Some(uid) = set.uid {
                m.uid = uid;
            }
            if let Some(gid) = set.gid {
                m.gid = gid;
            }
        }
        if let Some(t) = set.atime {
            m.atime = resolve_time(t, now);
        }
        if let Some(t) = set.mtime {
            m.mtime = resolve_time(t, now);
        }
        let only_unchanged_size = set.size.is_some()
            && !truncated
            && set.mode.is_none()
            && set.uid.is_none()
            && set.gid.is_none()
            && set.atime.is_none()
            && set.mtime.is_none()
            && set.ctime.is_none();
        if !only_unchanged_size {
            m.ctime = set.ctime.unwrap_or(now);
        }
        Ok(inode.attr(&m))
    }

    fn check_setattr_permission(
        &self,
        ctx: &Ctx,
        inode: &Inode,
        m: &Meta,
        set: &SetAttr,
        via_handle: bool,
    ) -> Result<()> {
        let owner = inode.owner(m);
        let is_owner = perm::is_owner_or_root(ctx, owner);
        if set.size.is_some() && !via_handle {
            perm::check(ctx, owner, access::W_OK)?;
        }
        if set.mode.is_some() && !is_owner {
            return Err(FsError::Perm);
        }
        if let Some(uid) = set.uid {
            if !ctx.is_root() && (uid != m.uid || ctx.uid != m.uid) {
                return Err(FsError::Perm);
            }
        }
        if let Some(gid) = set.gid {
            if !ctx.is_root() && (ctx.uid != m.uid || (gid != m.gid && !ctx.in_group(gid))) {
                return Err(FsError::Perm);
            }
        }
        for t in [set.atime, set.mtime].into_iter().flatten() {
            match t {
                SetTime::At(_) if !is_owner => return Err(FsError::Perm),
                SetTime::Now if !is_owner => perm::check(ctx, owner, access::W_OK)?,
                _ => {}
            }
        }
        if set.ctime.is_some() && !is_owner {
            return Err(FsError::Perm);
        }
        Ok(())
    }

    /// Check `access(2)`-style permission `mask` (`R_OK|W_OK|X_OK`, or `F_OK` = 0) for `ctx`.
    /// Always evaluated, whatever [`Config::enforce_permissions`] says: answering is its job.
    ///
    /// # Errors
    /// `Access` when denied, `ReadOnly` for write access on a read-only instance, `NotFound`.
    pub fn access(&self, ctx: &Ctx, ino: Ino, mask: u32) -> Result<()> {
        let inode = self.inode(ino)?;
        if mask & access::W_OK != 0 && self.is_read_only() {
            return Err(FsError::ReadOnly);
        }
        let m = inode.meta.read();
        perm::check(ctx, inode.owner(&m), mask)
    }

    /// Filesystem statistics, as tmpfs reports them. An unlimited instance reports the host's
    /// RAM as its free space (never zero, which programs read as "full").
    #[must_use]
    pub fn statfs(&self) -> StatFs {
        let used = self.pager.acct.pages.used();
        let (blocks, bfree) = match self.pager.acct.pages.max() {
            Some(max) => (max, max.saturating_sub(used)),
            None => {
                let free = self.config.host.ram_bytes / PAGE_SIZE;
                (used + free, free)
            }
        };
        let (files, ffree) = match self.ispace.max() {
            Some(max) => (max / BOGO_INODE_SIZE, self.ispace.free().unwrap_or(0) / BOGO_INODE_SIZE),
            None => {
                let free = self.config.host.ram_bytes / BOGO_INODE_SIZE;
                (self.ispace.used() / BOGO_INODE_SIZE + free, free)
            }
        };
        StatFs {
            bsize: PAGE_SIZE as u32,
            blocks,
            bfree,
            bavail: bfree,
            files,
            ffree,
            namelen: NAME_MAX as u32,
            frsize: PAGE_SIZE as u32,
        }
    }

    /// Live usage figures.
    #[must_use]
    pub fn usage(&self) -> Usage {
        let pool = rtmpfs_pages::stats();
        let u = Usage {
            charged_pages: self.pager.acct.pages.used(),
            resident_pages: Accounting::get(&self.pager.acct.resident),
            swapped_pages: Accounting::get(&self.pager.acct.swapped),
            reserved_pages: Accounting::get(&self.pager.acct.reserved),
            inodes: self.live_inodes_count(),
            inode_space_used: self.ispace.used(),
            poisoned_pages: Accounting::get(&self.pager.acct.poisoned),
            page_pool_ram_bytes: pool.out_bytes + pool.free_hot_bytes,
            page_pool_mapped_bytes: pool.mapped_bytes,
            ..self.tier_usage()
        };
        crate::housekeeping::with_process_figures(u, &pool)
    }

    fn tier_usage(&self) -> Usage {
        let Some(tier) = &self.pager.tier else {
            return Usage::default();
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut u = Usage {
            memory_limit_pages: Some(tier.budget.max()),
            frames_in_use: tier.budget.used(),
            memory_heap_pages: tier.budget.heap_pages(),
            evictions: get(&tier.stats.evictions),
            clean_evictions: get(&tier.stats.clean_evictions),
            swap_ins: get(&tier.stats.swap_ins),
            readahead_swap_ins: get(&tier.stats.readahead_swap_ins),
            direct_reclaims: get(&tier.stats.direct_reclaims),
            ..Usage::default()
        };
        if let Some(swap) = &tier.swap {
            u.swap_slots_used = swap.used_slots();
            u.swap_capacity_pages = swap.capacity_slots();
            u.swap_file_bytes = swap.file_bytes();
            u.swap_encrypted = swap.encrypted();
            u.swap_read_errors = get(&swap.stats.read_errors);
            u.swap_write_errors = get(&swap.stats.write_errors);
        }
        u
    }

    /// Stop the background evictor and swap read-ahead threads and wait for them to exit.
    /// The filesystem keeps working without them: allocation then reclaims memory itself and
    /// sequential reads swap in synchronously. For a quiescent state (`check_invariants` while
    /// nothing else runs), or an orderly shutdown; dropping the filesystem does it too.
    pub fn stop_background_threads(&self) {
        self.pager.stop.store(true, Ordering::Release);
        if let Some(tier) = &self.pager.tier {
            tier.budget.wake_all();
        }
        if let Some(q) = &self.pager.readahead {
            // Windows that will never be read: release any reader waiting for them.
            for job in q.stop() {
                if let Some(f) = job.inode.upgrade().as_deref().and_then(|i| i.file()) {
                    f.read_ahead_abandoned(job.seq);
                }
            }
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for h in threads {
            let _ = h.join();
        }
    }

    /// Evict up to `pages` cold pages to swap now (the background evictor does this on its own;
    /// this is for tests and for a "drop caches" control). Returns how many left RAM.
    pub fn evict_now(&self, pages: usize) -> usize {
        self.pager.evict_batch(pages)
    }

    /// Check the accounting invariants by walking every inode. Meant for tests and debugging;
    /// only meaningful while no other thread changes the filesystem.
    ///
    /// # Errors
    /// A description of the first violated invariant.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let charged = self.pager.acct.pages.used();
        let resident = Accounting::get(&self.pager.acct.resident);
        let reserved = Accounting::get(&self.pager.acct.reserved);
        let swapped = Accounting::get(&self.pager.acct.swapped);
        let poisoned = Accounting::get(&self.pager.acct.poisoned);
        if charged != resident + reserved + swapped + poisoned {
            return Err(format!(
                "charged {charged} != resident {resident} + reserved {reserved} + swapped {swapped} + poisoned {poisoned}"
            ));
        }
        let mut sum = (0u64, 0u64, 0u64, 0u64);
        let mut live = 0u64;
        let mut ispace = 0u64;
        for inode in self.table.all() {
            let m = inode.meta.read();
            if m.released {
                continue;
            }
            live += 1;
            ispace += BOGO_INODE_SIZE + m.xattr_space;
            if inode.kind != FileKind::Directory && m.nlink > 1 {
                ispace += BOGO_INODE_SIZE * u64::from(m.nlink - 1);
            }
            if let Some(f) = inode.file() {
                let c = f.slot_counts();
                if c.0 + c.1 + c.2 + c.3 != f.charged_pages() {
                    return Err(format!(
                        "inode {} charged {} != its slots {c:?}",
                        inode.ino.0,
                        f.charged_pages()
                    ));
                }
                sum = (sum.0 + c.0, sum.1 + c.1, sum.2 + c.2, sum.3 + c.3);
            }
        }
        if sum != (resident, reserved, swapped, poisoned) {
            return Err(format!(
                "per-file slots {sum:?} != counters ({resident}, {reserved}, {swapped}, {poisoned})"
            ));
        }
        if live != self.live_inodes_count() {
            return Err(format!("live inodes {live} != counter {}", self.live_inodes_count()));
        }
        if self.ispace.max().is_some() && ispace != self.ispace.used() {
            return Err(format!("inode space {ispace} != charged {}", self.ispace.used()));
        }
        Ok(())
    }

    // ----- helpers shared by the submodules -----

    pub(crate) fn inode(&self, ino: Ino) -> Result<Arc<Inode>> {
        self.table.get(ino).ok_or(FsError::NotFound)
    }

    fn check_writable(&self) -> Result<()> {
        if self.is_read_only() {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn live_inodes_count(&self) -> u64 {
        u64::try_from(self.live_inodes.sum()).unwrap_or(0)
    }

    fn alloc_ino(&self) -> Ino {
        Ino(self.inos.next())
    }

    /// Give back an orphan's data and inode space and drop it from the table, once, when its
    /// last link, handle and (with [`Config::track_lookups`]) kernel lookup reference are gone.
    /// Until then it stays usable, as a Linux inode stays until evicted: a FUSE kernel may
    /// reopen it (a removed current directory, `/proc/self/fd/N` of an `O_PATH` descriptor).
    /// Called with no lock held.
    pub(crate) fn maybe_release(&self, inode: &Arc<Inode>) {
        let xattr_space = {
            let mut m = inode.meta.write();
            let referenced = self.config.track_lookups && m.lookups > 0;
            if !m.is_orphan() || m.released || referenced {
                return;
            }
            m.released = true;
            m.xattrs.clear();
            std::mem::take(&mut m.xattr_space)
        };
        if let Some(f) = inode.file() {
            f.release_all(&self.pager);
        }
        self.ispace.uncharge(BOGO_INODE_SIZE + xattr_space);
        self.live_inodes.add(-1);
        self.table.remove(inode.ino);
    }

    /// Drop `n` lookup references (the FUSE `forget`). The last one of an inode without links
    /// and handles releases it (data, inode space, table entry). Unknown inodes are ignored, as
    /// the kernel may forget late; the root is never released.
    pub fn forget(&self, ino: Ino, n: u64) {
        let Some(inode) = self.table.get(ino) else {
            return;
        };
        let unreferenced = {
            let mut m = inode.meta.write();
            m.lookups = m.lookups.saturating_sub(n);
            m.lookups == 0
        };
        if unreferenced && ino != Ino::ROOT {
            self.maybe_release(&inode);
        }
    }

    /// Drop `security.capability`, as Linux does on write, truncate and chown
    /// (`security_inode_killpriv`): file capabilities must not survive a change of content or
    /// owner. Cheap when the inode has no xattrs.
    pub(crate) fn kill_priv(&self, m: &mut Meta) {
        if m.xattrs.is_empty() {
            return;
        }
        if let Some(old) = m.xattrs.remove(b"security.capability".as_slice()) {
            if self.ispace.max().is_some() {
                let space = crate::limits::xattr_space(b"security.capability".len(), old.len());
                self.ispace.uncharge(space);
                m.xattr_space -= space;
            }
        }
    }

    /// Take one more lookup reference on `ino` and return its attributes (a FUSE server does
    /// this for every entry of a READDIRPLUS reply, and for `LOOKUP(ino, ".")` of any inode).
    ///
    /// # Errors
    /// `NotFound` if the inode is gone or released.
    pub fn lookup_ino(&self, ino: Ino) -> Result<Attr> {
        let inode = self.inode(ino)?;
        let mut m = inode.meta.write();
        if m.released {
            return Err(FsError::NotFound);
        }
        self.add_lookup(&mut m);
        Ok(inode.attr(&m))
    }

    /// Count a lookup reference if the instance tracks them.
    fn add_lookup(&self, m: &mut Meta) {
        if self.config.track_lookups {
            m.lookups += 1;
        }
    }
}

impl Drop for Filesystem {
    fn drop(&mut self) {
        self.stop_background_threads();
    }
}

/// The file flags' refusals of a `setattr` (Linux `notify_change` and `do_truncate`): an
/// immutable inode takes no change at all; an append-only one no truncation and no explicit
/// mode, owner or time (only "times to now").
fn check_setattr_flags(m: &Meta, set: &SetAttr) -> Result<()> {
    m.check_not_immutable()?;
    let explicit_time = [set.atime, set.mtime]
        .into_iter()
        .flatten()
        .any(|t| matches!(t, SetTime::At(_)));
    let fixed = set.size.is_some()
        || set.mode.is_some()
        || set.uid.is_some()
        || set.gid.is_some()
        || set.ctime.is_some()
        || explicit_time;
    if fixed {
        m.check_no_fixed_flags()?;
    }
    Ok(())
}

/// Whether a truncation from `old` to `new` bytes stamps mtime and ctime (and clears set-id
/// bits and the capability), as on Linux tmpfs: when the size changes; always through a
/// handle (`ftruncate` passes ATTR_MTIME|ATTR_CTIME; over FUSE the kernel leaves that stamp to
/// the server when FATTR_FH is set); and, to the same or a smaller size, whenever the file has
/// pages (`shmem_setattr` calls `shmem_truncate_range`, which stamps, when `info->alloced`).
fn truncation_stamps(new: u64, old: u64, charged_pages: u64, via_handle: bool) -> bool {
    new != old || via_handle || charged_pages > 0
}

fn resolve_time(t: SetTime, now: Timespec) -> Timespec {
    match t {
        SetTime::Now => now,
        SetTime::At(ts) => ts,
    }
}

/// Whether relatime rules call for an atime update (atime not newer than mtime or ctime, or a
/// day old).
fn relatime_due(m: &Meta, now: Timespec) -> bool {
    m.atime <= m.mtime || m.atime <= m.ctime || now.sec - m.atime.sec >= 24 * 3600
}

fn instance_generation() -> u64 {
    let t = Timespec::now();
    (t.sec as u64).wrapping_mul(1_000_000_007) ^ u64::from(t.nsec) ^ (u64::from(std::process::id()) << 32)
}
