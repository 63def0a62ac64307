//! Mount options in tmpfs syntax (`-o size=1G,mode=755,nosuid`), parsed into the engine's
//! [`Config`], the kernel's mount flags and the adapter's own settings.
//!
//! The parser is strict, as the kernel's tmpfs is: an unknown option or a malformed value is an
//! error that names the option. Options that only mean something to mount(8) or fstab
//! (`defaults`, `noauto`, `_netdev`, `x-*`, ...) are accepted and ignored, so that an fstab line
//! works unchanged.

use rtmpfs_core::{AtimeRule, Compression, Config, HostFacts, SwapConfig, PAGE_SIZE};
use std::fmt;
use std::path::{Path, PathBuf};

/// The default number of threads serving FUSE requests: one per core on the 2-core machines
/// we measured (see `docs/benchmarks.md`).
pub const DEFAULT_THREADS: usize = 2;
/// The most serving threads `threads=` accepts.
pub const MAX_THREADS: usize = 64;
/// The source (first column of `/proc/mounts`) when none is given.
pub const DEFAULT_SOURCE: &str = "rtmpfs";

/// One row of [`OPTION_TABLE`]. Text in backticks is literal (code in markdown, bold in the
/// man page, plain in `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionDoc {
    /// The option's syntax; variants separated by ", ".
    pub syntax: &'static str,
    /// What it does, without a final period.
    pub meaning: &'static str,
    /// The default, empty where there is none to state.
    pub default: &'static str,
}

/// Every `-o` option, documented once: `rtmpfs --help`, the man page `rtmpfs(8)` and the option
/// table of docs/fuse.md are all generated from it (the CLI's tests check the latter two are
/// current, and this module's that each name here is one the parser knows).
pub const OPTION_TABLE: &[OptionDoc] = &[
    OptionDoc {
        syntax: "size=N[k|m|g|t|p|e|%]",
        meaning: "limit on file data; `%` of RAM; rounded up to whole 4 KiB pages; `0` unlimited",
        default: "50% of RAM",
    },
    OptionDoc {
        syntax: "nr_blocks=N[k|m|g]",
        meaning: "the same limit in 4 KiB pages; `0` unlimited",
        default: "",
    },
    OptionDoc {
        syntax: "nr_inodes=N[k|m|g]",
        meaning: "inode limit (each hard link and xattr costs inode space, as tmpfs); `0` unlimited",
        default: "RAM pages / 2",
    },
    OptionDoc {
        syntax: "mode=OCTAL",
        meaning: "permission bits of the root directory",
        default: "`1777` (an ordinary user's mount: `0700`)",
    },
    OptionDoc {
        syntax: "uid=N, gid=N",
        meaning: "owner and group of the root directory",
        default: "the mounter",
    },
    OptionDoc {
        syntax: "ro, rw",
        meaning: "read-only (kernel flag, and refused by the daemon too); `mount -o remount,ro DIR` \
                  switches a mount made by mount.fuse.rtmpfs",
        default: "`rw`",
    },
    OptionDoc {
        syntax: "nosuid, suid",
        meaning: "ignore set-user/group-ID bits on executables",
        default: "`suid`, as tmpfs",
    },
    OptionDoc {
        syntax: "nodev, dev",
        meaning: "refuse access to device nodes",
        default: "`dev`, as tmpfs",
    },
    OptionDoc {
        syntax: "noexec, exec",
        meaning: "refuse to execute files",
        default: "`exec`, as tmpfs",
    },
    OptionDoc {
        syntax: "noatime, relatime, strictatime, nodiratime, lazytime, sync, dirsync",
        meaning: "kernel flags; `noatime`, `relatime`, `strictatime` and `nodiratime` also set the \
                  engine's atime rule, at mount and on remount",
        default: "`relatime`",
    },
    OptionDoc {
        syntax: "atime, norelatime, nostrictatime, diratime, nolazytime, async",
        meaning: "the opposites mount(8) knows: the first three mean `relatime`, the others undo \
                  `nodiratime`, `lazytime` and `sync`",
        default: "",
    },
    OptionDoc {
        syntax: "memory=N[k|m|g|%]",
        meaning: "RAM budget for file data: beyond it, cold pages go to a private swap file \
                  (`size=` still bounds the total)",
        default: "none",
    },
    OptionDoc {
        syntax: "swap=DIR",
        meaning: "existing directory for the swap file (anonymous, `O_TMPFILE`); one on a memory \
                  filesystem (tmpfs, ramfs, an rtmpfs mount) works, with a warning: its pages stay \
                  in RAM",
        default: "the first disk-backed of `/var/tmp` (root) or `$XDG_CACHE_HOME` (else \
                  `~/.cache`) and `/var/tmp` (users), then `$TMPDIR` or `/tmp`; if none is, the \
                  first that exists, with a warning",
    },
    OptionDoc {
        syntax: "swap_size=N[k|m|g]",
        meaning: "the most the swap file may hold; refused if larger than the free space of the \
                  swap directory's filesystem (the default only warns)",
        default: "size - memory",
    },
    OptionDoc {
        syntax: "noswap",
        meaning: "with `memory=`: no swap file, the budget is a hard cap (`ENOSPC`); refused with \
                  `swap=` or `swap_size=`",
        default: "",
    },
    OptionDoc {
        syntax: "swap_encrypt=0|1",
        meaning: "seal swapped pages with AES-256-GCM, the key only in memory",
        default: "`1`",
    },
    OptionDoc {
        syntax: "restore=FILE",
        meaning: "start from the image FILE (written by `rtmpfs snapshot` or `persist=`): its tree, \
                  and its `size=` and `nr_inodes=` unless given here; a damaged, truncated, \
                  wrong-version or wrong-key image is refused with the reason and nothing is \
                  mounted; FILE may also be a tar archive (`rtmpfs export --tar`, GNU tar's pax); \
                  refused with `persist=`",
        default: "",
    },
    OptionDoc {
        syntax: "persist=FILE",
        meaning: "restore from the image FILE at mount (an absent FILE: an empty filesystem) and \
                  save the tree to it at every clean end (SIGINT, SIGTERM, umount); each save \
                  writes a new file and renames it over FILE, so a failed or killed save leaves \
                  the previous image intact",
        default: "",
    },
    OptionDoc {
        syntax: "persist_interval=N[s|m|h]",
        meaning: "with `persist=`: also save every N seconds (minutes, hours); `0` off",
        default: "off",
    },
    OptionDoc {
        syntax: "image_key=FILE",
        meaning: "encrypt saved images (AES-256-GCM) with a key derived from FILE (at least 32 \
                  bytes, e.g. `head -c 32 /dev/urandom`), and open restored ones with it",
        default: "images not encrypted",
    },
    OptionDoc {
        syntax: "compress=lz4|zstd|off",
        meaning: "with `memory=`: compress cold pages into a pool in RAM before anything goes to \
                  swap (pages of zeros cost nothing; pages that do not compress go straight to \
                  swap); `lz4` is the faster, `zstd` the denser",
        default: "`lz4` with `memory=`, else `off`",
    },
    OptionDoc {
        syntax: "compress_max=N[k|m|g|%]",
        meaning: "the most RAM the compressed pool may take, part of `memory=` (`%` of it); when \
                  full, its coldest pages go to swap",
        default: "25% of `memory=`",
    },
    OptionDoc {
        syntax: "threads=N",
        meaning: "threads serving FUSE requests (1-64), each with its own cloned `/dev/fuse` fd",
        default: "`2`",
    },
    OptionDoc {
        syntax: "direct_io",
        meaning: "bypass the kernel page cache for file data: one copy of the data (within \
                  `size=`), every read and write a round trip to the daemon; mmap still works",
        default: "off (the kernel page cache is kept: much faster, but it holds a second copy of \
                  recently used pages outside `size=`)",
    },
    OptionDoc {
        syntax: "writeback",
        meaning: "FUSE writeback cache: writes land in the kernel's page cache and reach rtmpfs \
                  later; faster for many small writes, but a full `size=` is reported by fsync or \
                  close instead of by the write",
        default: "off",
    },
    OptionDoc {
        syntax: "io_uring=auto|on|off",
        meaning: "serve requests over FUSE-over-io_uring: `auto` when the kernel offers it, else \
                  `/dev/fuse` with one warning line saying why and how to enable it; `on` refuses \
                  to mount where it cannot be had; `off` never tries",
        default: "`auto`",
    },
    OptionDoc {
        syntax: "readahead=N[k|m]",
        meaning: "the kernel's readahead window for this mount (bdi `read_ahead_kb`, set after \
                  INIT); larger windows make fewer, bigger READ requests",
        default: "the kernel's, 128 KiB",
    },
    OptionDoc {
        syntax: "fsname=NAME",
        meaning: "the mount's source in `/proc/mounts` (the mount helper passes TAG)",
        default: "`rtmpfs`",
    },
    OptionDoc {
        syntax: "huge=..., inode64",
        meaning: "accepted for tmpfs compatibility; no effect",
        default: "",
    },
    OptionDoc {
        syntax: "remount",
        meaning: "set by `mount -o remount`: change the running mount (a new value for an option \
                  fixed at mount is refused)",
        default: "",
    },
    OptionDoc {
        syntax: "defaults, auto, noauto, nouser, nofail, _netdev, x-*, comment=..., silent, loud, \
                 nomand, iversion, noiversion, user_id=N, group_id=N, rootmode=OCTAL, max_read=N, \
                 blksize=N, subtype=NAME, default_permissions, allow_other, user, users",
        meaning: "fstab, mount(8) and FUSE bookkeeping (mount(8) repeats the FUSE ones from \
                  `/proc/mounts` on remount); ignored",
        default: "",
    },
];

/// How access times are kept (the kernel's `MS_NOATIME` / `MS_RELATIME` / `MS_STRICTATIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atime {
    /// `relatime` (the default).
    Relatime,
    /// `noatime`.
    Noatime,
    /// `strictatime`.
    Strict,
}

impl Atime {
    /// The engine's rule for this option.
    #[must_use]
    pub fn rule(self) -> AtimeRule {
        match self {
            Atime::Relatime => AtimeRule::Relatime,
            Atime::Noatime => AtimeRule::Never,
            Atime::Strict => AtimeRule::Strict,
        }
    }
}

/// A size limit as given: bytes, or a percentage of RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    /// An absolute number of bytes (`0` = unlimited).
    Bytes(u64),
    /// A percentage of RAM (`size=50%`).
    Percent(u64),
}

/// Everything `-o` can say, after parsing. Build with [`MountOptions::parse`], turn into an
/// engine configuration with [`MountOptions::engine_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// `size=`/`nr_blocks=`; `None` = the default (50% of RAM).
    pub size: Option<SizeSpec>,
    /// `nr_inodes=`; `None` = the default (RAM pages / 2); `Some(0)` = unlimited.
    pub nr_inodes: Option<u64>,
    /// `mode=` of the root directory (default `1777`).
    pub mode: u32,
    /// `mode=` was given (an ordinary user's mount defaults to `0700` otherwise, as libfuse
    /// filesystems do; see `unprivileged.rs`).
    pub mode_given: bool,
    /// `uid=` of the root directory (default: the mounter).
    pub uid: Option<u32>,
    /// `gid=` of the root directory (default: the mounter).
    pub gid: Option<u32>,
    /// `ro` (true) or `rw`.
    pub read_only: bool,
    /// `nosuid`.
    pub nosuid: bool,
    /// `nodev`.
    pub nodev: bool,
    /// `noexec`.
    pub noexec: bool,
    /// Access-time mode.
    pub atime: Atime,
    /// `nodiratime`.
    pub nodiratime: bool,
    /// `sync`.
    pub sync: bool,
    /// `dirsync`.
    pub dirsync: bool,
    /// `lazytime`.
    pub lazytime: bool,
    /// `threads=`: FUSE serving threads.
    pub threads: usize,
    /// `direct_io`: no kernel page cache for file data (one copy of the data, every I/O a request).
    pub direct_io: bool,
    /// `writeback`: the FUSE writeback cache (writes land in the kernel's page cache and reach
    /// the engine later, so a full `size=` surfaces at fsync/close instead of at write).
    pub writeback: bool,
    /// `io_uring=auto|on|off`: serve FUSE requests over io_uring (see docs/fuse.md).
    pub io_uring: fuser::UringMode,
    /// `memory=`: a RAM budget for file data (cold pages go to the swap file); `None`: none.
    pub memory: Option<SizeSpec>,
    /// `swap=`: the directory of the private swap file (default: [`choose_swap_dir`], filled in
    /// by [`MountOptions::prepare_swap`] at mount).
    pub swap_dir: Option<std::path::PathBuf>,
    /// `swap_size=`: the most the swap file may hold (default: `size - memory`).
    pub swap_size: Option<u64>,
    /// `noswap`: with `memory=`, the budget is a hard cap (`ENOSPC`) instead of swapping.
    pub noswap: bool,
    /// `swap_encrypt=0|1`: seal swapped pages (default 1).
    pub swap_encrypt: bool,
    /// `compress=`: the compressed tier's compressor; `None`: lz4 with `memory=`, else off.
    pub compress: Option<Compression>,
    /// `compress_max=`: the compressed pool's cap, in bytes or a percentage of `memory=`;
    /// `None`: 25 % of it.
    pub compress_max: Option<SizeSpec>,
    /// `readahead=`: the kernel's readahead window for this mount, in bytes (`None`: the
    /// kernel's default, 128 KiB).
    pub readahead: Option<u64>,
    /// `fsname=`: the mount's source as shown by `/proc/mounts` (the helper's TAG).
    pub source: Option<String>,
    /// `restore=`: the image to start from.
    pub restore: Option<PathBuf>,
    /// `persist=`: the image restored at mount (if present) and saved at every clean end.
    pub persist: Option<PathBuf>,
    /// `persist_interval=`: also save to `persist=` this often (`None`: only at the end).
    pub persist_interval: Option<std::time::Duration>,
    /// `image_key=`: the key file that encrypts saved images and opens restored ones.
    pub image_key: Option<PathBuf>,
    /// `remount` was given (only meaningful to the mount helper).
    pub remount: bool,
    /// Options accepted and ignored (fstab/mount(8) options and no-op tmpfs options), in order.
    pub ignored: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            size: None,
            nr_inodes: None,
            mode: 0o1777,
            mode_given: false,
            uid: None,
            gid: None,
            read_only: false,
            nosuid: false,
            nodev: false,
            noexec: false,
            atime: Atime::Relatime,
            nodiratime: false,
            sync: false,
            dirsync: false,
            lazytime: false,
            threads: DEFAULT_THREADS,
            direct_io: false,
            writeback: false,
            io_uring: fuser::UringMode::Auto,
            readahead: None,
            memory: None,
            swap_dir: None,
            swap_size: None,
            noswap: false,
            swap_encrypt: true,
            compress: None,
            compress_max: None,
            source: None,
            restore: None,
            persist: None,
            persist_interval: None,
            image_key: None,
            remount: false,
            ignored: Vec::new(),
        }
    }
}

/// A bad option: the one-line message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    /// Not an option we know.
    Unknown(String),
    /// A known option with a value we cannot read.
    BadValue {
        /// The option's name.
        name: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A known option that needs a value, given without one (or a flag given one).
    Missing(String),
    /// A tmpfs option rtmpfs does not implement.
    Unsupported(String),
    /// Options that contradict each other, or that the host cannot honour (the message says
    /// which and why).
    Conflict(String),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::Unknown(o) => write!(f, "unknown mount option '{o}'"),
            OptionError::BadValue { name, value, expected } => {
                write!(f, "bad value '{value}' for mount option '{name}' (expected {expected})")
            }
            OptionError::Missing(o) => write!(f, "mount option '{o}' needs a value"),
            OptionError::Unsupported(o) => {
                write!(f, "mount option '{o}' is not supported by rtmpfs")
            }
            OptionError::Conflict(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for OptionError {}

/// Host facts the defaults depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// Total RAM in bytes.
    pub ram_bytes: u64,
    /// The mounter's fs uid.
    pub uid: u32,
    /// The mounter's fs gid.
    pub gid: u32,
}

impl Host {
    /// The running host: its RAM as the engine reads it ([`HostFacts::current`]) and the
    /// caller's effective ids.
    #[must_use]
    pub fn current() -> Host {
        let ram_bytes = HostFacts::current().ram_bytes;
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Host { ram_bytes, uid, gid }
    }
}

impl MountOptions {
    /// Parse comma-separated option strings (each as given to one `-o`), later options winning,
    /// as mount(8) does.
    ///
    /// # Errors
    /// The first bad option.
    pub fn parse<S: AsRef<str>>(lists: &[S]) -> Result<MountOptions, OptionError> {
        let mut o = MountOptions::default();
        for list in lists {
            for opt in split_options(list.as_ref()) {
                o.apply(&opt)?;
            }
        }
        o.check_consistent()?;
        Ok(o)
    }

    /// `noswap` says there is no swap file; `swap=` and `swap_size=` describe one. Given
    /// together, one of them would be ignored silently: refuse.
    fn check_consistent(&self) -> Result<(), OptionError> {
        if self.noswap && self.swap_size.is_some() {
            return Err(OptionError::Conflict(
                "mount options 'noswap' and 'swap_size=' contradict each other".into(),
            ));
        }
        if self.noswap && self.swap_dir.is_some() {
            return Err(OptionError::Conflict(
                "mount options 'noswap' and 'swap=' contradict each other".into(),
            ));
        }
        if self.restore.is_some() && self.persist.is_some() {
            return Err(OptionError::Conflict(
                "mount options 'restore=' and 'persist=' contradict each other (persist= restores from its own file)"
                    .into(),
            ));
        }
        if self.persist_interval.is_some() && self.persist.is_none() {
            return Err(OptionError::Conflict(
                "mount option 'persist_interval=' needs 'persist='".into(),
            ));
        }
        if self.memory.is_none() {
            if let Some(c) = self.compress.filter(|c| *c != Compression::Off) {
                return Err(OptionError::Conflict(format!(
                    "mount option 'compress={}' needs 'memory=' (the compressed pool is part of the RAM budget)",
                    c.name()
                )));
            }
            if self.compress_max.is_some() {
                return Err(OptionError::Conflict(
                    "mount option 'compress_max=' needs 'memory=' (it is a part of it)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Settle, at mount time, where the swap file goes, and say what is doubtful about it:
    /// without `swap=`, the default directory is chosen ([`choose_swap_dir`]) and kept in
    /// `swap_dir` (so a remount repeating it is no change); a `swap=` on a memory filesystem
    /// is a warning (it works, but swapped pages stay in RAM); then [`Self::check_swap_space`].
    /// Nothing happens without a swap file (`memory=` absent, or `noswap`). Several warnings
    /// come back as one line, joined by "; " (the log rate-limits per message site).
    ///
    /// # Errors
    /// Those of [`Self::check_swap_space`].
    pub fn prepare_swap(&mut self, host: &Host) -> Result<Option<String>, OptionError> {
        self.prepare_swap_with(host, &SwapDirEnv::current(), probe_dir)
    }

    /// [`Self::prepare_swap`] with the environment and the filesystem probe given (tests).
    ///
    /// # Errors
    /// Those of [`Self::check_swap_space`].
    pub fn prepare_swap_with(
        &mut self,
        host: &Host,
        env: &SwapDirEnv,
        probe: impl Fn(&Path) -> DirKind,
    ) -> Result<Option<String>, OptionError> {
        if self.memory.is_none() || self.noswap {
            return Ok(None);
        }
        let mut warnings = Vec::new();
        if let Some(dir) = &self.swap_dir {
            if let DirKind::Memory(fs) = probe(dir) {
                warnings.push(format!(
                    "swap={} is on {fs}, a memory filesystem: swapped pages stay in RAM \
                     (give swap= a disk-backed directory)",
                    dir.display()
                ));
            }
        } else {
            let choice = choose_swap_dir(env, probe);
            warnings.extend(choice.warning);
            self.swap_dir = Some(choice.dir);
        }
        warnings.extend(self.check_swap_space(host)?);
        Ok(Some(warnings.join("; ")).filter(|w| !w.is_empty()))
    }

    /// Check, at mount time, that the swap file can live where the options put it: the
    /// directory must exist, and an explicit `swap_size=` must fit in the free space of its
    /// filesystem (the file grows as pages are swapped out; a limit it can never reach would
    /// only turn into `ENOSPC`/`EIO` under load). When the size is the default (`size -
    /// memory`) and does not fit, that is returned as a warning instead: the default was not
    /// the user's promise.
    ///
    /// # Errors
    /// [`OptionError::Conflict`] naming the directory and the figures.
    pub fn check_swap_space(&self, host: &Host) -> Result<Option<String>, OptionError> {
        let cfg = self.engine_config(host);
        let Some(swap) = cfg.swap else { return Ok(None) };
        let dir = &swap.dir;
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(OptionError::Conflict(format!(
                    "swap directory {} is not a directory",
                    dir.display()
                )))
            }
            Err(e) => return Err(OptionError::Conflict(format!("swap directory {}: {e}", dir.display()))),
        }
        let Some(free) = free_bytes(dir) else { return Ok(None) };
        let wanted = match (self.swap_size, cfg.size_bytes, cfg.memory_bytes) {
            (Some(s), _, _) => s,
            (None, Some(size), Some(mem)) => size.saturating_sub(mem),
            _ => return Ok(None),
        };
        if wanted <= free {
            return Ok(None);
        }
        let msg = format!(
            "swap_size {} is more than the {} free on the filesystem of swap directory {}",
            human(wanted),
            human(free),
            dir.display()
        );
        if self.swap_size.is_some() {
            Err(OptionError::Conflict(format!("{msg}; refusing to mount")))
        } else {
            Ok(Some(format!(
                "{msg} (the default, size - memory); swap-outs will fail once it is full"
            )))
        }
    }

    fn apply<'a>(&mut self, opt: &'a str) -> Result<(), OptionError> {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        let need = |v: Option<&'a str>| v.ok_or_else(|| OptionError::Missing(name.to_string()));
        let flag = |v: Option<&str>| match v {
            None => Ok(()),
            Some(_) => Err(OptionError::Unknown(opt.to_string())),
        };
        match name {
            "size" => {
                let v = need(value)?;
                self.size = Some(parse_size(v).ok_or_else(|| bad(name, v, SIZE_EXPECTED))?);
            }
            "nr_blocks" => {
                let v = need(value)?;
                let blocks = memparse(v).ok_or_else(|| bad(name, v, "a number of pages"))?;
                let bytes = blocks
                    .checked_mul(PAGE_SIZE)
                    .ok_or_else(|| bad(name, v, "a number of pages"))?;
                self.size = Some(SizeSpec::Bytes(bytes));
            }
            "nr_inodes" => {
                let v = need(value)?;
                self.nr_inodes = Some(memparse(v).ok_or_else(|| bad(name, v, "a number"))?);
            }
            "mode" => {
                let v = need(value)?;
                let m = u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| bad(name, v, "octal permission bits, at most 7777"))?;
                self.mode = m;
                self.mode_given = true;
            }
            "uid" => {
                let v = need(value)?;
                self.uid = Some(parse_id(v).ok_or_else(|| bad(name, v, "a numeric user id"))?);
            }
            "gid" => {
                let v = need(value)?;
                self.gid = Some(parse_id(v).ok_or_else(|| bad(name, v, "a numeric group id"))?);
            }
            "threads" => {
                let v = need(value)?;
                self.threads = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_THREADS).contains(n))
                    .ok_or_else(|| bad(name, v, "a number from 1 to 64"))?;
            }
            "io_uring" => {
                let v = need(value)?;
                self.io_uring = match v {
                    "auto" => fuser::UringMode::Auto,
                    "on" => fuser::UringMode::On,
                    "off" => fuser::UringMode::Off,
                    _ => return Err(bad(name, v, "auto, on or off")),
                };
            }
            "memory" => {
                let v = need(value)?;
                let m = parse_size(v).ok_or_else(|| bad(name, v, SIZE_EXPECTED))?;
                self.memory = match m {
                    SizeSpec::Bytes(0) | SizeSpec::Percent(0) => None,
                    m => Some(m),
                };
            }
            "swap" => {
                let v = need(value)?;
                if !v.starts_with('/') {
                    return Err(bad(name, v, "an absolute directory path"));
                }
                self.swap_dir = Some(v.into());
                self.noswap = false;
            }
            "swap_size" => {
                let v = need(value)?;
                self.swap_size = Some(memparse(v).ok_or_else(|| bad(name, v, "a size, e.g. 4g"))?);
            }
            "swap_encrypt" => {
                let v = need(value)?;
                self.swap_encrypt = match v {
                    "1" | "on" | "yes" => true,
                    "0" | "off" | "no" => false,
                    _ => return Err(bad(name, v, "0 or 1")),
                };
            }
            "compress" => {
                let v = need(value)?;
                self.compress = Some(match v {
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    "off" | "0" | "no" => Compression::Off,
                    _ => return Err(bad(name, v, "lz4, zstd or off")),
                });
            }
            "compress_max" => {
                let v = need(value)?;
                let m = parse_size(v)
                    .filter(|m| !matches!(m, SizeSpec::Bytes(0) | SizeSpec::Percent(0)))
                    .filter(|m| !matches!(m, SizeSpec::Percent(p) if *p >= 100))
                    .ok_or_else(|| bad(name, v, "a size or a percentage of memory= below 100%, e.g. 64m or 25%"))?;
                self.compress_max = Some(m);
            }
            "readahead" => {
                let v = need(value)?;
                let b = memparse(v)
                    .filter(|b| *b <= 1 << 30)
                    .ok_or_else(|| bad(name, v, "a size up to 1g, e.g. 1m"))?;
                self.readahead = Some(b);
            }
            "restore" | "persist" | "image_key" => {
                let v = need(value)?;
                if !v.starts_with('/') {
                    return Err(bad(name, v, "an absolute file path"));
                }
                let path = Some(PathBuf::from(v));
                match name {
                    "restore" => self.restore = path,
                    "persist" => self.persist = path,
                    _ => self.image_key = path,
                }
            }
            "persist_interval" => {
                let v = need(value)?;
                let secs = parse_interval(v).ok_or_else(|| bad(name, v, "a duration such as 30s, 10m or 1h"))?;
                self.persist_interval = (secs > 0).then(|| std::time::Duration::from_secs(secs));
            }
            "fsname" => {
                let v = need(value)?;
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == ',') {
                    return Err(bad(name, v, "a non-empty name without spaces or commas"));
                }
                self.source = Some(v.to_string());
            }
            "huge" => {
                let v = need(value)?;
                if !matches!(v, "never" | "always" | "within_size" | "advise" | "deny" | "force") {
                    return Err(bad(name, v, "never, always, within_size, advise, deny or force"));
                }
                // The kernel chooses page-cache folio sizes for FUSE files; nothing to do.
                self.ignored.push(opt.to_string());
            }
            // fstab comments, and the FUSE kernel options mount(8) repeats from /proc/mounts
            // when it remounts (the daemon sets these itself).
            "comment" | "user_id" | "group_id" | "rootmode" | "max_read" | "blksize" | "subtype" => {
                need(value)?;
                self.ignored.push(opt.to_string());
            }
            _ if name.starts_with("x-") => self.ignored.push(opt.to_string()),
            "mpol"
            | "casefold"
            | "usrquota_block_hardlimit"
            | "usrquota_inode_hardlimit"
            | "grpquota_block_hardlimit"
            | "grpquota_inode_hardlimit" => {
                return Err(OptionError::Unsupported(name.to_string()));
            }
            _ => {
                flag(value)?;
                self.apply_flag(name)?;
            }
        }
        Ok(())
    }

    fn apply_flag(&mut self, name: &str) -> Result<(), OptionError> {
        match name {
            "ro" => self.read_only = true,
            "rw" => self.read_only = false,
            "nosuid" => self.nosuid = true,
            "suid" => self.nosuid = false,
            "nodev" => self.nodev = true,
            "dev" => self.nodev = false,
            "noexec" => self.noexec = true,
            "exec" => self.noexec = false,
            "noatime" => self.atime = Atime::Noatime,
            "relatime" | "atime" | "norelatime" | "nostrictatime" => {
                self.atime = Atime::Relatime;
            }
            "strictatime" => self.atime = Atime::Strict,
            "nodiratime" => self.nodiratime = true,
            "diratime" => self.nodiratime = false,
            "sync" => self.sync = true,
            "async" => self.sync = false,
            "dirsync" => self.dirsync = true,
            "lazytime" => self.lazytime = true,
            "nolazytime" => self.lazytime = false,
            "direct_io" => self.direct_io = true,
            "writeback" => self.writeback = true,
            "remount" => self.remount = true,
            // mount(8)/fstab options, and FUSE options that are always on here.
            "defaults"
            | "auto"
            | "noauto"
            | "nouser"
            | "_netdev"
            | "nofail"
            | "silent"
            | "loud"
            | "nomand"
            | "iversion"
            | "noiversion"
            | "default_permissions"
            | "allow_other"
            | "inode64"
            // fstab's `user`/`users` (mount(8) passes `user=NAME` on to the helper): mount(8)
            // decided that this user may mount; fusermount3 applies its rules.
            | "user"
            | "users" => self.ignored.push(name.to_string()),
            "noswap" => self.noswap = true,
            "owner" | "group" => {
                return Err(OptionError::Unsupported(format!(
                    "{name} (non-root mounts through mount(8))"
                )));
            }
            "inode32" | "mand" | "usrquota" | "grpquota" | "quota" | "casefold" | "strict_encoding" => {
                return Err(OptionError::Unsupported(name.to_string()))
            }
            _ if name.starts_with("mpol") || name.ends_with("_hardlimit") || name.starts_with("casefold") => {
                return Err(OptionError::Unsupported(name.to_string()));
            }
            _ => return Err(OptionError::Unknown(name.to_string())),
        }
        Ok(())
    }

    /// The `size=` limit in bytes for this host, `None` when unlimited. tmpfs rounds the limit
    /// up to whole pages; so do we.
    #[must_use]
    pub fn size_bytes(&self, host: &Host) -> Option<u64> {
        let bytes = match self.size {
            None => host.ram_bytes / 2,
            Some(SizeSpec::Bytes(b)) => b,
            Some(SizeSpec::Percent(p)) => {
                u64::try_from(u128::from(host.ram_bytes) * u128::from(p) / 100).unwrap_or(u64::MAX)
            }
        };
        if bytes == 0 {
            None
        } else {
            Some(bytes.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE))
        }
    }

    /// The `nr_inodes=` limit for this host, `None` when unlimited. The default is tmpfs's:
    /// half the RAM pages (all memory is lowmem on 64-bit).
    #[must_use]
    pub fn max_inodes(&self, host: &Host) -> Option<u64> {
        match self.nr_inodes {
            None => Some((host.ram_bytes / PAGE_SIZE / 2).max(1)),
            Some(0) => None,
            Some(n) => Some(n),
        }
    }

    /// The engine configuration: limits and root attributes from the options; permission
    /// checks off (the kernel does them with `default_permissions`) and lookup counts on (the
    /// FUSE forget contract). A remount switches read-only with `Filesystem::set_read_only`.
    #[must_use]
    pub fn engine_config(&self, host: &Host) -> Config {
        Config {
            size_bytes: self.size_bytes(host),
            max_inodes: self.max_inodes(host),
            root_mode: self.mode,
            root_uid: self.uid.unwrap_or(host.uid),
            root_gid: self.gid.unwrap_or(host.gid),
            enforce_permissions: false,
            track_lookups: true,
            read_only: self.read_only,
            noatime: self.atime == Atime::Noatime,
            memory_bytes: self.memory_bytes(host),
            swap: match self.memory_bytes(host) {
                Some(_) if !self.noswap => Some(SwapConfig {
                    dir: self
                        .swap_dir
                        .clone()
                        .unwrap_or_else(|| choose_swap_dir(&SwapDirEnv::current(), probe_dir).dir),
                    size_bytes: self.swap_size,
                    encrypt: self.swap_encrypt,
                }),
                _ => None,
            },
            compression: self.compression(),
            compress_max_bytes: self.compress_max_bytes(host),
            // The daemon is the engine's: tune and trim the process's heap.
            own_process_memory: true,
            host: HostFacts {
                ram_bytes: host.ram_bytes,
            },
            ..Config::default()
        }
    }

    /// The compressed tier's compressor: `compress=` as given, else lz4 with `memory=`.
    #[must_use]
    pub fn compression(&self) -> Compression {
        match (self.compress, self.memory) {
            (Some(c), _) => c,
            (None, Some(_)) => Compression::Lz4,
            (None, None) => Compression::Off,
        }
    }

    /// The compressed pool's cap in bytes for this host (`compress_max=`, a percentage of
    /// `memory=`), `None` for the engine's default (25 % of `memory=`) or without a budget.
    #[must_use]
    pub fn compress_max_bytes(&self, host: &Host) -> Option<u64> {
        let mem = self.memory_bytes(host)?;
        match self.compress_max? {
            SizeSpec::Bytes(b) => Some(b),
            SizeSpec::Percent(p) => Some(u64::try_from(u128::from(mem) * u128::from(p) / 100).unwrap_or(u64::MAX)),
        }
    }

    /// The `memory=` budget in bytes for this host, `None` when there is none.
    #[must_use]
    pub fn memory_bytes(&self, host: &Host) -> Option<u64> {
        match self.memory? {
            SizeSpec::Bytes(b) => Some(b),
            SizeSpec::Percent(p) => {
                Some(u64::try_from(u128::from(host.ram_bytes) * u128::from(p) / 100).unwrap_or(u64::MAX))
            }
        }
    }

    /// The kernel mount flags (`MS_*`) these options ask for. `dev` and `suid` are on unless
    /// `nodev`/`nosuid` were given, as for tmpfs.
    #[must_use]
    pub fn ms_flags(&self) -> libc::c_ulong {
        let mut f: libc::c_ulong = 0;
        let mut set = |cond: bool, bit: libc::c_ulong| {
            if cond {
                f |= bit;
            }
        };
        set(self.read_only, libc::MS_RDONLY);
        set(self.nosuid, libc::MS_NOSUID);
        set(self.nodev, libc::MS_NODEV);
        set(self.noexec, libc::MS_NOEXEC);
        set(self.atime == Atime::Noatime, libc::MS_NOATIME);
        set(self.atime == Atime::Relatime, libc::MS_RELATIME);
        set(self.atime == Atime::Strict, libc::MS_STRICTATIME);
        set(self.nodiratime, libc::MS_NODIRATIME);
        set(self.sync, libc::MS_SYNCHRONOUS);
        set(self.dirsync, libc::MS_DIRSYNC);
        set(self.lazytime, libc::MS_LAZYTIME);
        f
    }

    /// The mount's source: `fsname=` or `rtmpfs`.
    #[must_use]
    pub fn source(&self) -> &str {
        self.source.as_deref().unwrap_or(DEFAULT_SOURCE)
    }
}

/// What holds a directory, as far as the swap file cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// Absent, not a directory, or not readable.
    Missing,
    /// A filesystem not known to live in RAM (disk-backed, as far as we can tell).
    Disk,
    /// A memory filesystem: `tmpfs`, `ramfs` or `an rtmpfs mount`.
    Memory(&'static str),
}

/// `statfs(2)`'s `f_type` of a FUSE filesystem (`FUSE_SUPER_MAGIC`).
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
/// `statfs(2)`'s `f_type` of tmpfs (`TMPFS_MAGIC`; as `i64`, whatever width libc gives it).
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `statfs(2)`'s `f_type` of ramfs (`RAMFS_MAGIC`; the libc crate has no constant for it).
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The running system's answer for `dir`: `statfs` `f_type` for tmpfs and ramfs; for a FUSE
/// filesystem, whether mountinfo says the mount holding `dir` is `fuse.rtmpfs`.
#[must_use]
pub fn probe_dir(dir: &Path) -> DirKind {
    if !dir.is_dir() {
        return DirKind::Missing;
    }
    let Some(f_type) = fs_type(dir) else {
        return DirKind::Disk;
    };
    match f_type {
        TMPFS_MAGIC => DirKind::Memory("tmpfs"),
        RAMFS_MAGIC => DirKind::Memory("ramfs"),
        FUSE_SUPER_MAGIC if is_on_rtmpfs(dir) => DirKind::Memory("an rtmpfs mount"),
        _ => DirKind::Disk,
    }
}

/// `statfs(2)`'s `f_type` of the filesystem holding `dir`.
fn fs_type(dir: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is plain data that statfs(2) fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &raw mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // __fsword_t is i64 on 64-bit, i32 elsewhere
    Some(st.f_type as i64)
}

/// Whether the mount holding `dir` (the longest mount point above its canonical path; the
/// topmost of stacked ones) is an rtmpfs mount.
fn is_on_rtmpfs(dir: &Path) -> bool {
    let (Ok(dir), Ok(mounts)) = (dir.canonicalize(), crate::mountinfo::read()) else {
        return false;
    };
    mounts
        .iter()
        .filter(|m| dir.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .is_some_and(|m| m.fstype == "fuse.rtmpfs")
}

/// What the default swap directory depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapDirEnv {
    /// The mounter is root (effective uid 0).
    pub root: bool,
    /// `$XDG_CACHE_HOME`, if set to an absolute path.
    pub xdg_cache_home: Option<PathBuf>,
    /// `$HOME`, if set to an absolute path.
    pub home: Option<PathBuf>,
    /// The system's temporary directory (`$TMPDIR` or `/tmp`).
    pub tmp: PathBuf,
}

impl SwapDirEnv {
    /// This process's environment.
    #[must_use]
    pub fn current() -> SwapDirEnv {
        let abs = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
        SwapDirEnv {
            // SAFETY: geteuid cannot fail.
            root: unsafe { libc::geteuid() } == 0,
            xdg_cache_home: abs("XDG_CACHE_HOME"),
            home: abs("HOME"),
            tmp: std::env::temp_dir(),
        }
    }

    /// Where the swap file may go, best first: `/var/tmp` for root; the user's cache
    /// directory (`$XDG_CACHE_HOME`, else `~/.cache`), then `/var/tmp` for others; last the
    /// temporary directory, which is often a tmpfs.
    #[must_use]
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut c = Vec::new();
        if !self.root {
            if let Some(cache) = self
                .xdg_cache_home
                .clone()
                .or_else(|| self.home.as_ref().map(|h| h.join(".cache")))
            {
                c.push(cache);
            }
        }
        c.push(PathBuf::from("/var/tmp"));
        if !c.contains(&self.tmp) {
            c.push(self.tmp.clone());
        }
        c
    }
}

/// The default swap directory, and the one-line warning when it is not disk-backed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapDirChoice {
    /// Where the swap file goes.
    pub dir: PathBuf,
    /// Set when no candidate is disk-backed.
    pub warning: Option<String>,
}

/// The first existing, disk-backed directory of [`SwapDirEnv::candidates`]. When none is
/// disk-backed, the first that exists (swapping then still bounds the daemon's own memory,
/// but the pages stay in RAM: the warning says so); when none exists, the temporary directory
/// (which [`MountOptions::check_swap_space`] then refuses, naming it).
pub fn choose_swap_dir(env: &SwapDirEnv, probe: impl Fn(&Path) -> DirKind) -> SwapDirChoice {
    let kinds: Vec<(PathBuf, DirKind)> = env.candidates().into_iter().map(|d| (d.clone(), probe(&d))).collect();
    if let Some((dir, _)) = kinds.iter().find(|(_, k)| *k == DirKind::Disk) {
        return SwapDirChoice {
            dir: dir.clone(),
            warning: None,
        };
    }
    let Some((dir, _)) = kinds.iter().find(|(_, k)| *k != DirKind::Missing) else {
        return SwapDirChoice {
            dir: env.tmp.clone(),
            warning: None,
        };
    };
    let tried: Vec<String> = kinds
        .iter()
        .map(|(d, k)| match k {
            DirKind::Memory(fs) => format!("{} is {fs}", d.display()),
            _ => format!("{} is missing", d.display()),
        })
        .collect();
    let warning = format!(
        "no disk-backed directory for the swap file ({}): using {}, so swapped pages stay in RAM \
         (give swap= a disk-backed directory)",
        tried.join(", "),
        dir.display()
    );
    SwapDirChoice {
        dir: dir.clone(),
        warning: Some(warning),
    }
}

/// Bytes available to us on the filesystem holding `dir` (`statvfs`'s `f_bavail`).
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data that statvfs(3) fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &raw mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// A byte count for messages: `12345678` → `11.8 MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

const SIZE_EXPECTED: &str = "a size with an optional k, m, g, t, p or e suffix, or a percentage";

fn bad(name: &str, value: &str, expected: &'static str) -> OptionError {
    OptionError::BadValue {
        name: name.to_string(),
        value: value.to_string(),
        expected,
    }
}

/// Split a `-o` list on commas, keeping commas inside double quotes (as libmount does).
fn split_options(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The kernel's `memparse`: a decimal (or 0x hex) number with an optional k/m/g/t/p/e suffix
/// (binary multiples, either case). Overflow is an error.
pub fn memparse(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        b't' | b'T' => (&s[..s.len() - 1], 40),
        b'p' | b'P' => (&s[..s.len() - 1], 50),
        b'e' | b'E' => (&s[..s.len() - 1], 60),
        _ => (s, 0),
    };
    let n = if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok()?
    };
    n.checked_mul(1u64 << shift)
}

fn parse_size(s: &str) -> Option<SizeSpec> {
    if let Some(p) = s.strip_suffix('%') {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return p.parse().ok().map(SizeSpec::Percent);
    }
    memparse(s).map(SizeSpec::Bytes)
}

/// `persist_interval=`: seconds, or a number with `s`, `m` or `h`.
fn parse_interval(s: &str) -> Option<u64> {
    let (num, unit) = match s.char_indices().last()? {
        (i, 's') => (&s[..i], 1),
        (i, 'm') => (&s[..i], 60),
        (i, 'h') => (&s[..i], 3600),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(unit)
}

fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|id| *id != u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Host = Host {
        ram_bytes: 8 << 30,
        uid: 1000,
        gid: 100,
    };

    fn parse(s: &str) -> Result<MountOptions, OptionError> {
        MountOptions::parse(&[s])
    }

    #[test]
    fn defaults_are_tmpfs_defaults() {
        let o = parse("").unwrap();
        let c = o.engine_config(&HOST);
        assert_eq!(c.size_bytes, Some(4 << 30));
        assert_eq!(c.max_inodes, Some((8 << 30) / 4096 / 2));
        assert_eq!(c.root_mode, 0o1777);
        assert_eq!((c.root_uid, c.root_gid), (1000, 100));
        assert!(!c.enforce_permissions && c.track_lookups && !c.read_only);
        assert_eq!(o.ms_flags(), libc::MS_RELATIME);
        assert_eq!(o.threads, DEFAULT_THREADS);
        assert_eq!(o.source(), "rtmpfs");
    }

    #[test]
    fn image_options() {
        let o = parse("persist=/var/lib/x.img,persist_interval=10m,image_key=/etc/k").unwrap();
        assert_eq!(o.persist.as_deref(), Some(Path::new("/var/lib/x.img")));
        assert_eq!(o.persist_interval, Some(std::time::Duration::from_secs(600)));
        assert_eq!(o.image_key.as_deref(), Some(Path::new("/etc/k")));
        assert_eq!(
            parse("persist=/a,persist_interval=90")
                .unwrap()
                .persist_interval
                .map(|d| d.as_secs()),
            Some(90)
        );
        assert_eq!(
            parse("persist=/a,persist_interval=2h")
                .unwrap()
                .persist_interval
                .map(|d| d.as_secs()),
            Some(7200)
        );
        assert_eq!(parse("persist=/a,persist_interval=0").unwrap().persist_interval, None);
        assert_eq!(parse("restore=/r").unwrap().restore.as_deref(), Some(Path::new("/r")));
        assert!(matches!(parse("restore=relative"), Err(OptionError::BadValue { .. })));
        assert!(matches!(
            parse("persist=/a,persist_interval=soon"),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(parse("restore=/a,persist=/b"), Err(OptionError::Conflict(_))));
        assert!(matches!(parse("persist_interval=1m"), Err(OptionError::Conflict(_))));
    }

    #[test]
    fn sizes() {
        let size = |s: &str| parse(s).unwrap().size_bytes(&HOST);
        assert_eq!(size("size=1G"), Some(1 << 30));
        assert_eq!(size("size=1g"), Some(1 << 30));
        assert_eq!(size("size=512k"), Some(512 << 10));
        assert_eq!(size("size=2t"), Some(2 << 40));
        assert_eq!(size("size=1"), Some(4096), "rounded up to a page");
        assert_eq!(size("size=4097"), Some(8192));
        assert_eq!(size("size=25%"), Some(2 << 30));
        assert_eq!(size("size=0"), None);
        assert_eq!(size("nr_blocks=10"), Some(40960));
        assert_eq!(size("nr_blocks=1k"), Some(1024 * 4096));
        assert_eq!(size("nr_blocks=0"), None);
        assert_eq!(size("size=1G,size=2G"), Some(2 << 30), "last one wins");
        for bad in ["size=", "size=abc", "size=1x", "size=-1", "size=%", "size=1.5G"] {
            assert!(
                matches!(parse(bad), Err(OptionError::BadValue { .. } | OptionError::Missing(_))),
                "{bad}"
            );
        }
        assert!(parse("size=99999999999999999999").is_err());
        assert!(parse("size=16777216t").is_err(), "overflow");
    }

    #[test]
    fn noswap_contradicts_a_swap_file() {
        for opts in [
            "memory=4m,noswap,swap_size=1m",
            "memory=4m,swap_size=1m,noswap",
            "memory=4m,swap=/tmp,noswap",
        ] {
            let e = parse(opts).unwrap_err();
            assert!(matches!(e, OptionError::Conflict(_)), "{opts}: {e:?}");
            assert!(e.to_string().contains("'noswap'"), "{opts}: {e}");
        }
        // A later swap= switches the swap file back on, as before.
        assert!(!parse("memory=4m,noswap,swap=/tmp").unwrap().noswap);
    }

    #[test]
    fn compression_defaults_to_lz4_with_a_budget() {
        let c = parse("memory=64m").unwrap().engine_config(&HOST);
        assert_eq!(c.compression, Compression::Lz4);
        assert_eq!(c.compress_max(), Some(16 << 20), "25% of memory=");
        c.validate().unwrap();
        let c = parse("").unwrap().engine_config(&HOST);
        assert_eq!((c.compression, c.compress_max()), (Compression::Off, None));
        let c = parse("memory=64m,compress=zstd,compress_max=10%")
            .unwrap()
            .engine_config(&HOST);
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.compress_max_bytes, Some((64 << 20) / 10));
        let c = parse("memory=64m,compress_max=8m,compress=off")
            .unwrap()
            .engine_config(&HOST);
        assert_eq!((c.compression, c.compress_max()), (Compression::Off, None));
        let c = parse("memory=64m,noswap,compress_max=8m").unwrap().engine_config(&HOST);
        assert_eq!((c.compression, c.compress_max()), (Compression::Lz4, Some(8 << 20)));
        assert_eq!(parse("compress=off").unwrap().compression(), Compression::Off);
        // A pool as large as the budget passes the parser, and the engine refuses it.
        let c = parse("memory=64m,compress_max=64m").unwrap().engine_config(&HOST);
        assert!(c.validate().unwrap_err().to_string().contains("compress_max"));
    }

    #[test]
    fn bad_compression_options_are_refused_by_name() {
        for opts in ["compress=lz4", "compress=zstd", "compress_max=10m", "compress_max=5%"] {
            let e = parse(opts).unwrap_err();
            assert!(matches!(e, OptionError::Conflict(_)), "{opts}: {e:?}");
            assert!(e.to_string().contains("needs 'memory='"), "{opts}: {e}");
        }
        for opts in [
            "memory=4m,compress=gzip",
            "memory=4m,compress=",
            "memory=4m,compress_max=100%",
            "memory=4m,compress_max=0",
            "memory=4m,compress_max=lots",
        ] {
            let e = parse(opts).unwrap_err();
            assert!(
                matches!(e, OptionError::BadValue { .. } | OptionError::Missing(_)),
                "{opts}: {e:?}"
            );
            assert!(e.to_string().contains("compress"), "{opts}: {e}");
        }
    }

    #[test]
    fn swap_space_is_checked_at_mount() {
        let missing = parse("memory=4m,swap=/nonexistent-rtmpfs-swap-dir").unwrap();
        let e = missing.check_swap_space(&HOST).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent-rtmpfs-swap-dir") && e.contains("No such file"),
            "{e}"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        let not_dir = parse(&format!("memory=4m,swap={}", file.path().display())).unwrap();
        assert!(not_dir
            .check_swap_space(&HOST)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        let dir = std::env::temp_dir();
        let huge = parse(&format!("memory=4m,swap={},swap_size=1e", dir.display())).unwrap();
        let e = huge.check_swap_space(&HOST).unwrap_err().to_string();
        assert!(e.contains("swap_size 1024.0 PiB") || e.contains("swap_size"), "{e}");
        assert!(e.contains("free") && e.contains("refusing"), "{e}");
        // The default size (size - memory) only warns.
        let default = parse(&format!("size=1e,memory=4m,swap={}", dir.display())).unwrap();
        let w = default.check_swap_space(&HOST).unwrap().expect("a warning");
        assert!(w.contains("the default"), "{w}");
        let fits = parse(&format!("size=8m,memory=4m,swap={}", dir.display())).unwrap();
        assert_eq!(fits.check_swap_space(&HOST).unwrap(), None);
        assert_eq!(
            parse("size=8m").unwrap().check_swap_space(&HOST).unwrap(),
            None,
            "no swap file"
        );
    }

    fn env(root: bool, xdg: Option<&str>) -> SwapDirEnv {
        SwapDirEnv {
            root,
            xdg_cache_home: xdg.map(PathBuf::from),
            home: Some("/home/u".into()),
            tmp: "/tmp".into(),
        }
    }

    /// A probe that knows only the directories listed (anything else is missing).
    fn probe<'a>(known: &'a [(&'a str, DirKind)]) -> impl Fn(&Path) -> DirKind + 'a {
        move |d| {
            known
                .iter()
                .find(|(p, _)| Path::new(p) == d)
                .map_or(DirKind::Missing, |(_, k)| *k)
        }
    }

    const TMPFS: DirKind = DirKind::Memory("tmpfs");

    #[test]
    fn default_swap_dir_is_disk_backed() {
        let choose = |e: &SwapDirEnv, known: &[(&str, DirKind)]| choose_swap_dir(e, probe(known));
        // Root: /var/tmp, even where /tmp is a tmpfs.
        let all = [
            ("/var/tmp", DirKind::Disk),
            ("/tmp", TMPFS),
            ("/home/u/.cache", DirKind::Disk),
        ];
        let c = choose(&env(true, None), &all);
        assert_eq!((c.dir, c.warning), (PathBuf::from("/var/tmp"), None));
        // Users: their cache directory ($XDG_CACHE_HOME, else ~/.cache), then /var/tmp.
        assert_eq!(choose(&env(false, None), &all).dir, PathBuf::from("/home/u/.cache"));
        let xdg = [("/x/cache", DirKind::Disk), ("/var/tmp", DirKind::Disk)];
        assert_eq!(
            choose(&env(false, Some("/x/cache")), &xdg).dir,
            PathBuf::from("/x/cache")
        );
        let no_cache = [("/var/tmp", DirKind::Disk), ("/tmp", TMPFS)];
        assert_eq!(choose(&env(false, None), &no_cache).dir, PathBuf::from("/var/tmp"));
        // A cache directory on a memory filesystem is passed over.
        let cache_in_ram = [
            ("/home/u/.cache", DirKind::Memory("an rtmpfs mount")),
            ("/var/tmp", DirKind::Disk),
        ];
        assert_eq!(choose(&env(false, None), &cache_in_ram).dir, PathBuf::from("/var/tmp"));
        // /var/tmp in RAM too: /tmp if it is on disk.
        let var_tmp_in_ram = [("/var/tmp", TMPFS), ("/tmp", DirKind::Disk)];
        let c = choose(&env(true, None), &var_tmp_in_ram);
        assert_eq!((c.dir, c.warning), (PathBuf::from("/tmp"), None));
    }

    #[test]
    fn no_disk_backed_swap_dir_is_said_in_one_line() {
        let ram_only = [("/var/tmp", DirKind::Memory("ramfs")), ("/tmp", TMPFS)];
        let c = choose_swap_dir(&env(false, None), probe(&ram_only));
        assert_eq!(c.dir, PathBuf::from("/var/tmp"), "the first that exists");
        let w = c.warning.expect("a warning");
        assert_eq!(w.lines().count(), 1, "{w}");
        assert!(
            w.contains("/home/u/.cache is missing") && w.contains("/var/tmp is ramfs"),
            "{w}"
        );
        assert!(w.contains("/tmp is tmpfs") && w.contains("using /var/tmp"), "{w}");
        // Nothing exists: the temporary directory, which check_swap_space then refuses.
        let c = choose_swap_dir(&env(true, None), probe(&[]));
        assert_eq!((c.dir, c.warning), (PathBuf::from("/tmp"), None));
    }

    #[test]
    fn prepare_swap_settles_the_dir_and_warns_about_memory() {
        let dir = std::env::temp_dir();
        let dir_s = dir.to_str().unwrap();
        // swap= on a memory filesystem: one warning line, and the mount goes ahead.
        let mut o = parse(&format!("size=8m,memory=4m,swap={dir_s}")).unwrap();
        let w = o
            .prepare_swap_with(&HOST, &env(true, None), probe(&[(dir_s, TMPFS)]))
            .unwrap();
        let w = w.expect("a warning");
        assert_eq!(w.lines().count(), 1);
        assert!(
            w.contains(&format!("swap={dir_s} is on tmpfs, a memory filesystem")),
            "{w}"
        );
        // With the default swap size beyond the free space too: both, in one line.
        let mut o = parse(&format!("size=1e,memory=4m,swap={dir_s}")).unwrap();
        let w = o
            .prepare_swap_with(&HOST, &env(true, None), probe(&[(dir_s, TMPFS)]))
            .unwrap()
            .unwrap();
        assert_eq!(w.lines().count(), 1);
        assert!(
            w.contains("memory filesystem") && w.contains("the default, size - memory"),
            "{w}"
        );
        // On disk: nothing to say.
        let mut o = parse(&format!("size=8m,memory=4m,swap={dir_s}")).unwrap();
        let w = o
            .prepare_swap_with(&HOST, &env(true, None), probe(&[(dir_s, DirKind::Disk)]))
            .unwrap();
        assert_eq!(w, None);
        // No swap=: the default is chosen and kept, so a remount repeating it is no change.
        let tmp = env(true, None);
        let tmp = SwapDirEnv {
            tmp: dir.clone(),
            ..tmp
        };
        let mut o = parse("size=8m,memory=4m").unwrap();
        let w = o
            .prepare_swap_with(&HOST, &tmp, probe(&[("/var/tmp", TMPFS), (dir_s, DirKind::Disk)]))
            .unwrap();
        assert_eq!(w, None);
        assert_eq!(o.swap_dir.as_deref(), Some(dir.as_path()));
        assert_eq!(o.engine_config(&HOST).swap.unwrap().dir, dir);
        // No swap file: nothing is probed or chosen.
        for opts in ["size=8m", "size=8m,memory=4m,noswap"] {
            let mut o = parse(opts).unwrap();
            let w = o.prepare_swap_with(&HOST, &tmp, |_: &Path| panic!("probed")).unwrap();
            assert!(w.is_none() && o.swap_dir.is_none(), "{opts}");
        }
    }

    #[test]
    fn probe_dir_reads_the_filesystem_type() {
        assert_eq!(probe_dir(Path::new("/nonexistent-rtmpfs-dir")), DirKind::Missing);
        assert_eq!(
            probe_dir(Path::new("/proc/self/status")),
            DirKind::Missing,
            "not a directory"
        );
        // /proc is neither tmpfs nor ramfs nor FUSE.
        assert_eq!(probe_dir(Path::new("/proc")), DirKind::Disk);
        // /dev/shm is a tmpfs wherever it is mounted (mountinfo says which).
        let shm_is_tmpfs = crate::mountinfo::mounted_at(Path::new("/dev/shm"))
            .unwrap()
            .is_some_and(|m| m.fstype == "tmpfs");
        if shm_is_tmpfs {
            assert_eq!(probe_dir(Path::new("/dev/shm")), TMPFS);
        }
    }

    #[test]
    fn option_table_names_only_options_the_parser_knows() {
        for row in OPTION_TABLE {
            for variant in row.syntax.split(", ") {
                let name = variant.split('=').next().unwrap().replace('*', "foo");
                let result = parse(&name);
                assert!(
                    !matches!(result, Err(OptionError::Unknown(_) | OptionError::Unsupported(_))),
                    "{variant}: {result:?}"
                );
            }
            assert!(!row.meaning.ends_with('.'), "{}", row.syntax);
        }
    }

    #[test]
    fn inodes_mode_ids() {
        let o = parse("nr_inodes=1k,mode=755,uid=0,gid=5").unwrap();
        let c = o.engine_config(&HOST);
        assert_eq!(c.max_inodes, Some(1024));
        assert_eq!(c.root_mode, 0o755);
        assert_eq!((c.root_uid, c.root_gid), (0, 5));
        assert_eq!(parse("nr_inodes=0").unwrap().max_inodes(&HOST), None);
        assert!(parse("mode=8").is_err());
        assert!(parse("mode=17777").is_err());
        assert!(parse("uid=root").is_err());
        assert!(parse("gid=-1").is_err());
        assert!(parse("uid=4294967295").is_err());
    }

    #[test]
    fn flags() {
        let o = parse("ro,nosuid,nodev,noexec,noatime").unwrap();
        assert_eq!(
            o.ms_flags(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME
        );
        assert!(o.engine_config(&HOST).noatime);
        let o = parse("ro,rw,nosuid,suid,strictatime").unwrap();
        assert_eq!(o.ms_flags(), libc::MS_STRICTATIME);
        assert!(parse("ro=1").is_err());
    }

    #[test]
    fn ours_and_ignored() {
        let o = parse("threads=3,direct_io,fsname=scratch").unwrap();
        assert_eq!(o.threads, 3);
        assert!(o.direct_io);
        assert!(!o.writeback);
        assert!(parse("writeback").unwrap().writeback);
        assert!(parse("writeback=1").is_err());
        assert_eq!(o.source(), "scratch");
        assert!(parse("threads=0").is_err());
        assert_eq!(MountOptions::default().io_uring, fuser::UringMode::Auto);
        assert_eq!(parse("io_uring=on").unwrap().io_uring, fuser::UringMode::On);
        assert_eq!(parse("io_uring=off").unwrap().io_uring, fuser::UringMode::Off);
        assert_eq!(parse("io_uring=auto").unwrap().io_uring, fuser::UringMode::Auto);
        assert!(parse("io_uring=yes").is_err());
        assert!(parse("io_uring").is_err());
        assert!(parse("threads=65").is_err());
        let o =
            parse("defaults,noauto,_netdev,nofail,x-systemd.device-timeout=5,comment=x,huge=never,inode64").unwrap();
        assert_eq!(o.ignored.len(), 8);
        assert!(parse("remount,ro").unwrap().remount);
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(
            parse("size=1G,bogus").unwrap_err().to_string(),
            "unknown mount option 'bogus'"
        );
        assert_eq!(
            parse("size=lots").unwrap_err().to_string(),
            format!("bad value 'lots' for mount option 'size' (expected {SIZE_EXPECTED})")
        );
        assert_eq!(
            parse("mode").unwrap_err().to_string(),
            "mount option 'mode' needs a value"
        );
        assert!(matches!(parse("mpol=interleave"), Err(OptionError::Unsupported(_))));
        assert!(matches!(parse("huge=sometimes"), Err(OptionError::BadValue { .. })));
    }

    #[test]
    fn memory_and_swap() {
        let c = parse("size=1g,memory=256m,swap=/var/tmp,swap_size=2g,swap_encrypt=0")
            .unwrap()
            .engine_config(&HOST);
        assert_eq!(c.memory_bytes, Some(256 << 20));
        let s = c.swap.unwrap();
        assert_eq!(s.dir, std::path::PathBuf::from("/var/tmp"));
        assert_eq!(s.size_bytes, Some(2 << 30));
        assert!(!s.encrypt);
        let c = parse("memory=10%,noswap").unwrap().engine_config(&HOST);
        assert_eq!(c.memory_bytes, Some((8 << 30) / 10));
        assert!(c.swap.is_none());
        let c = parse("swap=/var/tmp").unwrap().engine_config(&HOST);
        assert!(c.memory_bytes.is_none() && c.swap.is_none(), "no budget, no swap");
        assert!(parse("swap=relative").is_err());
        assert!(parse("swap_encrypt=maybe").is_err());
        assert!(parse("ro").unwrap().engine_config(&HOST).read_only);
    }

    #[test]
    fn memparse_matches_the_kernel() {
        assert_eq!(memparse("0x10"), Some(16));
        assert_eq!(memparse("10K"), Some(10240));
        assert_eq!(memparse("1e"), Some(1 << 60));
        assert_eq!(memparse("16e"), None);
        assert_eq!(memparse(""), None);
        assert_eq!(memparse("k"), None);
    }

    #[test]
    fn quoted_commas() {
        assert_eq!(split_options("a,\"b,c\",d"), vec!["a", "b,c", "d"]);
        assert_eq!(split_options(",,a,,"), vec!["a"]);
    }
}

#[cfg(test)]
mod table_tests;
