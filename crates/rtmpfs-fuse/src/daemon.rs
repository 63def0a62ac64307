//! Session lifecycle: check the mount point, mount with mount(2), serve on `threads=` fuser
//! event loops until SIGINT/SIGTERM or an external unmount, answer the control socket, and
//! unmount.
//!
//! We mount ourselves (and hand the `/dev/fuse` descriptor to `fuser::Session::from_fd`) rather
//! than let fuser do it, for three reasons: the source and type shown in `/proc/mounts` (TAG and
//! `fuse`), `dev`/`suid` on unless asked otherwise (fuser forces `nodev,nosuid`), and so that
//! nothing ever unmounts a path twice — fuser's unmount-on-drop could take down a new mount
//! made at the same path after an external unmount.

use crate::adapter::{Adapter, AdapterOptions, DEFAULT_TTL};
use crate::control;
use crate::mountinfo::{self, MountEntry};
use crate::options::{Host, MountOptions};
use crate::stats::Stats;
use rtmpfs_core::Filesystem;
use std::ffi::CString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// Why a mount could not be made or served. Each renders as one line naming the problem.
#[derive(Debug)]
pub enum MountError {
    /// The mount point does not exist.
    NotFound(PathBuf),
    /// The mount point is not a directory.
    NotDir(PathBuf),
    /// Something is already mounted there.
    Busy(PathBuf, String),
    /// This source is already mounted on this directory.
    AlreadyMounted(String, PathBuf),
    /// The caller may not mount (or may not see the mount point).
    Permission(String),
    /// A bad option.
    Options(crate::options::OptionError),
    /// The options make no sense to the engine.
    Config(String),
    /// The control socket's name is held by another process (or could not be bound).
    Control(control::BindError),
    /// Anything else, with what we were doing.
    Io(&'static str, io::Error),
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::NotFound(p) => write!(f, "mount point {} does not exist", p.display()),
            MountError::NotDir(p) => write!(f, "mount point {} is not a directory", p.display()),
            MountError::Busy(p, what) => {
                write!(f, "mount point {} is busy: {what}", p.display())
            }
            MountError::AlreadyMounted(src, p) => {
                write!(f, "{src} is already mounted on {}", p.display())
            }
            MountError::Permission(m) => write!(f, "permission denied: {m}"),
            MountError::Options(e) => write!(f, "{e}"),
            MountError::Config(m) => write!(f, "{m}"),
            MountError::Control(e) => write!(f, "{e}"),
            MountError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for MountError {}

impl From<crate::options::OptionError> for MountError {
    fn from(e: crate::options::OptionError) -> Self {
        MountError::Options(e)
    }
}

/// Check that `path` can take a new mount from `source`, and return its canonical form.
///
/// # Errors
/// Missing, not a directory, not accessible, already a mount point (a dead FUSE mount
/// included), or `source` already mounted there.
pub fn check_mount_point(path: &Path, source: &str) -> Result<PathBuf, MountError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Err(stat_error(path, e)),
    };
    if !meta.is_dir() {
        return Err(MountError::NotDir(path.to_path_buf()));
    }
    let canon = path.canonicalize().map_err(|e| stat_error(path, e))?;
    let existing = mountinfo::mounted_at(&canon).map_err(|e| MountError::Io("reading /proc/self/mountinfo", e))?;
    if let Some(m) = existing {
        if m.is_fuse() && fuse_mount_is_dead(&canon) {
            return Err(stat_error(&canon, io::Error::from_raw_os_error(libc::ENOTCONN)));
        }
        if m.is_fuse() && m.source == source {
            return Err(MountError::AlreadyMounted(source.to_string(), canon));
        }
        return Err(MountError::Busy(
            canon,
            format!("already a mount point ({} from {})", m.fstype, m.source),
        ));
    }
    Ok(canon)
}

/// Whether the FUSE mount at `path` has lost its daemon. A stat can be answered from the
/// kernel's attribute cache, so ask for statfs, which always reaches the daemon; a live but
/// stuck daemon must not hang us, so give it a second.
fn fuse_mount_is_dead(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("rtmpfs-probe".into()).spawn(move || {
        // SAFETY: `st` is plain data that statvfs fills; `c` is a valid path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        let _ = tx.send(if r == 0 {
            0
        } else {
            io::Error::last_os_error().raw_os_error().unwrap_or(0)
        });
    });
    if spawned.is_err() {
        return false;
    }
    matches!(
        rx.recv_timeout(std::time::Duration::from_secs(1)),
        Ok(libc::ENOTCONN | libc::ECONNABORTED)
    )
}

fn stat_error(path: &Path, e: io::Error) -> MountError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => MountError::NotFound(path.to_path_buf()),
        Some(libc::ENOTDIR) => MountError::NotFound(path.to_path_buf()),
        Some(libc::EACCES | libc::EPERM) => MountError::Permission(format!("cannot access {}", path.display())),
        Some(libc::ENOTCONN) => MountError::Busy(
            path.to_path_buf(),
            format!(
                "a FUSE mount whose daemon is gone is still there (run: fusermount3 -u {})",
                path.display()
            ),
        ),
        _ => MountError::Io("checking the mount point", e),
    }
}

/// A live mount made by [`mount`].
#[derive(Debug)]
pub struct Mounted {
    /// The `/dev/fuse` descriptor of the connection.
    pub fuse_fd: OwnedFd,
    /// Canonical mount point.
    pub path: PathBuf,
    /// The mount's device (major, minor): identifies it in mountinfo.
    pub dev: (u32, u32),
    /// Its mountinfo entry as just after mounting.
    pub entry: MountEntry,
}

fn cstring(p: &Path) -> Result<CString, MountError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| MountError::Config(format!("{} contains a NUL byte", p.display())))
}

/// Mount a FUSE filesystem from `source` at the canonical, checked `path` with `opts`.
///
/// # Errors
/// `/dev/fuse` missing or not accessible, no privilege to mount, mount(2) failures.
pub fn mount(path: &Path, opts: &MountOptions) -> Result<Mounted, MountError> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENODEV) => {
                MountError::Io("opening /dev/fuse (is the fuse module loaded? try: modprobe fuse)", e)
            }
            Some(libc::EACCES | libc::EPERM) => MountError::Permission("cannot open /dev/fuse".into()),
            _ => MountError::Io("opening /dev/fuse", e),
        })?;
    // SAFETY: these getters cannot fail and touch no memory.
    let (uid, gid, euid) = unsafe { (libc::getuid(), libc::getgid(), libc::geteuid()) };
    let mut data = format!(
        "fd={},rootmode={:o},user_id={uid},group_id={gid},default_permissions",
        dev.as_raw_fd(),
        libc::S_IFDIR | opts.mode
    );
    if euid == 0 {
        // Other users see the files, as on tmpfs (permissions are checked by the kernel).
        data.push_str(",allow_other");
    }
    let source =
        CString::new(opts.source()).map_err(|_| MountError::Config("the source contains a NUL byte".into()))?;
    let target = cstring(path)?;
    // "fuse.rtmpfs" (type fuse, subtype rtmpfs), so that mount(8) finds mount.fuse.rtmpfs for
    // `mount -o remount,... DIR`; see docs/fuse.md ("Type and source").
    let fstype = c"fuse.rtmpfs";
    let data_c = CString::new(data).expect("no NUL in mount data");
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            opts.ms_flags(),
            data_c.as_ptr().cast(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => {
                MountError::Permission("mounting needs root (CAP_SYS_ADMIN); rtmpfs mounts with mount(2)".into())
            }
            Some(libc::EBUSY) => MountError::Busy(path.to_path_buf(), e.to_string()),
            Some(libc::ENODEV) => MountError::Io("mount: the kernel has no FUSE support", e),
            _ => MountError::Io("mount(2)", e),
        });
    }
    let entry = find_our_mount(path, opts.source()).ok_or_else(|| {
        MountError::Io(
            "finding the new mount in /proc/self/mountinfo",
            io::Error::from(io::ErrorKind::NotFound),
        )
    })?;
    Ok(Mounted {
        fuse_fd: OwnedFd::from(dev),
        path: path.to_path_buf(),
        dev: (entry.major, entry.minor),
        entry,
    })
}

fn find_our_mount(path: &Path, source: &str) -> Option<MountEntry> {
    mountinfo::mounted_at(path)
        .ok()
        .flatten()
        .filter(|m| m.is_fuse() && m.source == source)
}

/// Set the kernel's readahead window for the mount's backing device (bdi `major:minor`).
fn set_readahead(dev: (u32, u32), bytes: u64) {
    let path = format!("/sys/class/bdi/{}:{}/read_ahead_kb", dev.0, dev.1);
    if let Err(e) = std::fs::write(&path, format!("{}", bytes / 1024)) {
        tracing::warn!("readahead: writing {path}: {e}");
    }
}

/// How an unmount went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// Detached and gone.
    Done,
    /// Busy: detached lazily (MNT_DETACH); it lives on until its last user goes.
    Lazy,
    /// It was not (or no longer) mounted: nothing done.
    NotMounted,
}

/// Unmount the mount with device `dev` at `path`, if it is still the topmost mount there.
///
/// # Errors
/// umount2 failures other than busy.
pub fn unmount(path: &Path, dev: (u32, u32)) -> io::Result<Unmounted> {
    match mountinfo::mounted_at(path)? {
        Some(m) if (m.major, m.minor) == dev => {}
        _ => return Ok(Unmounted::NotMounted),
    }
    let target = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
        return Ok(Unmounted::Done);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EBUSY) {
        return Err(e);
    }
    // SAFETY: as above.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(Unmounted::Lazy)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Block the termination signals in the calling thread (and every thread it starts later), so
/// that only the signal thread receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it; pthread_sigmask
    // only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is initialised and `sig` is writable.
        let r = unsafe { libc::sigwait(set, &mut sig) };
        if r == 0 {
            return sig;
        }
    }
}

/// What the daemon tells the process that started it once the mount is live (or failed).
pub trait Ready {
    /// The mount is live.
    fn ok(self: Box<Self>);
    /// It could not be made; the message is one line.
    fn failed(self: Box<Self>, msg: &str);
}

/// Writes `ok` or `error: MESSAGE` to a pipe (the mount helper waits on it).
#[derive(Debug)]
pub struct ReadyPipe(pub File);

impl Ready for ReadyPipe {
    fn ok(mut self: Box<Self>) {
        let _ = io::Write::write_all(&mut self.0, b"ok\n");
    }
    fn failed(mut self: Box<Self>, msg: &str) {
        let _ = io::Write::write_all(&mut self.0, format!("error: {msg}\n").as_bytes());
    }
}

/// State the control socket acts on.
struct Control {
    opts: Mutex<MountOptions>,
    host: Host,
    stats: Arc<Stats>,
    fs: Arc<Filesystem>,
}

/// Data pages (plus inodes) that must have gone since the last heap trim before the next.
const TRIM_AFTER_PAGES: u64 = 4096;

/// Give free memory back to the kernel, every second: the page pool's pages that have been
/// free for a while (`rtmpfs_pages::trim_idle`), and, after large frees, the C heap's. File data
/// lives in the page pool; what remains on the heap is metadata (page-map nodes, frames'
/// headers, directory entries), and glibc keeps freed heap memory mapped unless asked. So if at
/// least `TRIM_AFTER_PAGES` data pages (plus inodes) went since the last trim, `malloc_trim(0)`:
/// deleting a large tree then shrinks the daemon's RSS within a couple of seconds.
fn start_heap_trimmer(fs: &Arc<Filesystem>) {
    let fs = Arc::downgrade(fs);
    let spawned = std::thread::Builder::new().name("rtmpfs-trim".into()).spawn(move || {
        let footprint = |fs: &Weak<Filesystem>| {
            fs.upgrade().map(|fs| {
                let u = fs.usage();
                u.charged_pages + u.inodes
            })
        };
        let Some(mut peak) = footprint(&fs) else { return };
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            rtmpfs_pages::trim_idle();
            let Some(now) = footprint(&fs) else { return };
            if now + TRIM_AFTER_PAGES <= peak {
                // SAFETY: malloc_trim only walks glibc's own heap under its own locks; it
                // takes no pointer from us and is safe to call from any thread at any time.
                unsafe { libc::malloc_trim(0) };
                peak = now;
            } else {
                peak = peak.max(now);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("no heap trimmer thread: {e}");
    }
}

/// The engine's live figures, one `name value` line each (sizes in 4 KiB pages unless named
/// `_bytes`): what `rtmpfs --stats MOUNTPOINT` prints after the request counters.
fn render_usage(u: &rtmpfs_core::Usage) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let lines: [(&str, String); 22] = [
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
        ("page_pool_ram_bytes", u.page_pool_ram_bytes.to_string()),
        ("page_pool_mapped_bytes", u.page_pool_mapped_bytes.to_string()),
    ];
    lines.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
}

impl control::Handler for Control {
    fn handle(&self, request: &str) -> Result<String, String> {
        let (cmd, arg) = request.split_once(' ').unwrap_or((request, ""));
        match cmd {
            "stats" => Ok(format!("{}{}", self.stats.render(), render_usage(&self.fs.usage()))),
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
            "remount" => self.remount(arg),
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
    ];
    checks
        .into_iter()
        .find(|(name, changed)| *changed && given(name.trim_end_matches('=')))
        .map(|(name, _)| name)
}

/// Mount at `mount_point` with `opts` and serve until SIGINT/SIGTERM or an external unmount;
/// returns once nothing is mounted any more. `ready` hears about the outcome of mounting.
///
/// # Errors
/// Any failure to mount (then nothing is left mounted); a failure of the session itself.
pub fn serve(mount_point: &Path, opts: MountOptions, ready: Option<Box<dyn Ready>>) -> Result<(), MountError> {
    let result = start(mount_point, opts);
    let (session, mounted, sigset) = match result {
        Ok(s) => s,
        Err(e) => {
            if let Some(r) = ready {
                r.failed(&e.to_string());
            }
            return Err(e);
        }
    };
    let (path, dev) = (mounted.path.clone(), mounted.dev);
    std::thread::Builder::new()
        .name("rtmpfs-signals".into())
        .spawn(move || loop {
            let sig = wait_signal(&sigset);
            tracing::info!("signal {sig}: unmounting {}", path.display());
            match unmount(&path, dev) {
                Ok(Unmounted::Lazy) => {
                    // Busy: detached from the namespace; its remaining users lose it now, as
                    // with libfuse daemons (exiting closes /dev/fuse and aborts the connection).
                    tracing::warn!("{} was busy: detached lazily", path.display());
                    std::process::exit(0);
                }
                Ok(_) => return,
                Err(e) => tracing::error!("unmounting {}: {e}", path.display()),
            }
        })
        .map_err(|e| MountError::Io("starting the signal thread", e))?;
    if let Some(r) = ready {
        r.ok();
    }
    let r = session.run();
    drop(mounted);
    r.map_err(|e| MountError::Io("serving FUSE requests", e))
}

/// Set in the daemon's environment, this makes io_uring's REGISTER fail (tests only).
const FAULT_URING_REGISTER: &str = "RTMPFS_FAULT_URING_REGISTER";

/// One line at startup when io_uring was wanted (`io_uring=auto`) but not had: why, and how to
/// get it.
fn log_transport(t: &fuser::Transport) {
    match t {
        fuser::Transport::DevFuseFallback(why) => tracing::warn!(
            "FUSE over io_uring not used ({why}); serving on /dev/fuse. To use it: \
             echo Y > /sys/module/fuse/parameters/enable_uring before mounting (io_uring=off hides this)"
        ),
        fuser::Transport::IoUring { queues, depth } => {
            tracing::info!("serving FUSE over io_uring: {queues} queues of {depth} entries")
        }
        fuser::Transport::DevFuse => tracing::info!("serving FUSE on /dev/fuse (io_uring=off)"),
    }
}

type Started = (fuser::Session<Adapter>, MountedLite, libc::sigset_t);

/// What `serve` keeps of [`Mounted`] once the fd went to the session.
struct MountedLite {
    path: PathBuf,
    dev: (u32, u32),
}

fn start(mount_point: &Path, opts: MountOptions) -> Result<Started, MountError> {
    // Before any thread exists (the engine starts an evictor thread): every thread inherits
    // the mask, so only the signal thread ever takes SIGINT/SIGTERM.
    let sigset = block_signals();
    let host = Host::current();
    let mut opts = opts;
    if let Some(warning) = opts.prepare_swap(&host)? {
        tracing::warn!("{warning}");
    }
    let fs = Filesystem::new(opts.engine_config(&host))
        .map_err(|e| MountError::Config(format!("bad configuration: {e}")))?;
    fs.set_atime_rule(opts.atime.rule(), opts.nodiratime);
    let fs = Arc::new(fs);
    let path = check_mount_point(mount_point, opts.source())?;
    // A daemon must not pin the directory it was started from (it could not be unmounted).
    let _ = std::env::set_current_dir("/");
    let mounted = mount(&path, &opts)?;
    // Bound before the FUSE handshake: a name held by someone else fails the mount (a client
    // could otherwise be answered by them; see control.rs), and nothing is served yet.
    let listener = match control::bind(&mounted.entry) {
        Ok(l) => l,
        Err(e) => {
            let (path, dev) = (mounted.path.clone(), mounted.dev);
            drop(mounted);
            let _ = unmount(&path, dev);
            return Err(MountError::Control(e));
        }
    };
    let stats = Arc::new(Stats::default());
    let adapter = Adapter::new(
        fs.clone(),
        AdapterOptions {
            direct_io: opts.direct_io,
            writeback: opts.writeback,
            ttl: DEFAULT_TTL,
            event_loops: opts.threads,
        },
        stats.clone(),
    );
    let mut config = fuser::Config::default();
    config.n_threads = Some(opts.threads);
    config.clone_fd = true;
    config.acl = fuser::SessionACL::All;
    config.io_uring.mode = opts.io_uring;
    // Test hook (crates/rtmpfs-cli/tests/uring.rs): make the kernel refuse REGISTER.
    config.io_uring.fault_register = std::env::var_os(FAULT_URING_REGISTER).is_some();
    let Mounted { fuse_fd, path, dev, .. } = mounted;
    let session = match fuser::Session::from_fd(adapter, fuse_fd, fuser::SessionACL::All, config) {
        Ok(s) => s,
        Err(e) => {
            let _ = unmount(&path, dev);
            return Err(MountError::Io("FUSE handshake", e));
        }
    };
    log_transport(session.transport());
    // After INIT: the kernel caps the window at the INIT reply's max_readahead when it
    // processes that reply.
    if let Some(bytes) = opts.readahead {
        set_readahead(dev, bytes);
    }
    start_heap_trimmer(&fs);
    crate::health::start_swap_watch(&fs);
    let ctl = Control {
        opts: Mutex::new(opts),
        host,
        stats,
        fs,
    };
    if let Err(e) = control::serve(listener, ctl) {
        // Not fatal: the mount works; only remount's read-only switch and --stats cannot
        // reach this daemon (the kernel still enforces a read-only remount), and nobody else
        // can answer for it (we hold the name).
        tracing::error!("no control socket thread: {e}");
    }
    Ok((session, MountedLite { path, dev }, sigset))
}
