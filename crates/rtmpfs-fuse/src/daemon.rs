//! Session lifecycle: check the mount point, mount with mount(2) (an ordinary user: through
//! fusermount3, see `unprivileged`), serve on `threads=` fuser
//! event loops (or io_uring ring threads) until SIGINT/SIGTERM or an external unmount, and
//! unmount. It starts the control socket ([`control`], answered by `control_handler`) and the
//! background threads (`health`; memory housekeeping is the engine's), but their work lives in their own modules.
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
use std::sync::{Arc, Mutex};

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
        let r = unsafe { libc::statvfs(c.as_ptr(), &raw mut st) };
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
        Some(libc::ENOENT | libc::ENOTDIR) => MountError::NotFound(path.to_path_buf()),
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

/// Mount a FUSE filesystem from `source` at the canonical, checked `path` with `opts`: with
/// mount(2) as root, through fusermount3 otherwise ([`crate::unprivileged::mount`]).
///
/// # Errors
/// `/dev/fuse` missing or not accessible, no privilege to mount, mount(2) failures.
///
/// # Panics
/// Never in practice: the mount data is built from parsed options, which hold no NUL byte.
pub fn mount(path: &Path, opts: &MountOptions) -> Result<Mounted, MountError> {
    if crate::unprivileged::active() {
        return crate::unprivileged::mount(path, opts);
    }
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
        if crate::unprivileged::active() {
            // The bdi's sysfs files are root's: say what it means for a user's mount.
            tracing::warn!("readahead= needs root ({path}: {e}); the kernel's window is kept");
        } else {
            tracing::warn!("readahead: writing {path}: {e}");
        }
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
    if crate::unprivileged::active() {
        return crate::unprivileged::unmount(path);
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
        libc::sigemptyset(&raw mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&raw mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is initialised and `sig` is writable.
        let r = unsafe { libc::sigwait(set, &raw mut sig) };
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

/// Mount at `mount_point` with `opts` and serve until SIGINT/SIGTERM or an external unmount;
/// returns once nothing is mounted any more. `ready` hears about the outcome of mounting.
///
/// # Errors
/// Any failure to mount (then nothing is left mounted); a failure of the session itself.
pub fn serve(mount_point: &Path, opts: MountOptions, ready: Option<Box<dyn Ready>>) -> Result<(), MountError> {
    let result = start(mount_point, opts);
    let (session, mounted, sigset, persist) = match result {
        Ok(s) => s,
        Err(e) => {
            if let Some(r) = ready {
                r.failed(&e.to_string());
            }
            return Err(e);
        }
    };
    let (path, dev) = (mounted.path.clone(), mounted.dev);
    let persist_at_signal = persist.clone();
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
                    // A clean end all the same: `persist=` saves before the process goes.
                    let saved = persist_at_signal.as_ref().map_or(Ok(()), |p| p.save());
                    std::process::exit(i32::from(saved.is_err()));
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
    r.map_err(|e| MountError::Io("serving FUSE requests", e))?;
    // Unmounted (umount, or a signal): a clean end, when `persist=` saves.
    if let Some(p) = persist {
        p.save().map_err(MountError::Config)?;
    }
    Ok(())
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
            tracing::info!("serving FUSE over io_uring: {queues} queues of {depth} entries");
        }
        fuser::Transport::DevFuse => tracing::info!("serving FUSE on /dev/fuse (io_uring=off)"),
    }
}

type Started = (
    fuser::Session<Adapter>,
    MountedLite,
    libc::sigset_t,
    Option<Arc<crate::persist::Persist>>,
);

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
    if crate::unprivileged::active() {
        crate::unprivileged::apply_user_rules(&mut opts);
    }
    if let Some(warning) = opts.prepare_swap(&host)? {
        tracing::warn!("{warning}");
    }
    let image_key = crate::persist::load_key(opts.image_key.as_deref()).map_err(MountError::Config)?;
    let fs = build_filesystem(&opts, &host, image_key.as_ref())?;
    fs.set_atime_rule(opts.atime.rule(), opts.nodiratime);
    let fs = Arc::new(fs);
    let path = check_mount_point(mount_point, opts.source())?;
    // A daemon must not pin the directory it was started from (it could not be unmounted).
    let _ = std::env::set_current_dir("/");
    let mounted = mount(&path, &opts)?;
    let persist = opts
        .persist
        .clone()
        .map(|p| crate::persist::Persist::new(fs.clone(), p, image_key.clone(), mounted.dev));
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
    // RTMPFS_LATENCY=off: no latency histograms (read once, here; see latency.rs).
    let stats = Arc::new(Stats::new(crate::latency::Latency::enabled_by_env()));
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
    let notifier_slot = adapter.notifier_slot();
    let Mounted { fuse_fd, path, dev, .. } = mounted;
    let session = match fuser::Session::from_fd(adapter, fuse_fd, fuser::SessionACL::All, config) {
        Ok(s) => s,
        Err(e) => {
            let _ = unmount(&path, dev);
            return Err(MountError::Io("FUSE handshake", e));
        }
    };
    log_transport(session.transport());
    let _ = notifier_slot.set(session.notifier());
    // After INIT: the kernel caps the window at the INIT reply's max_readahead when it
    // processes that reply.
    if let Some(bytes) = opts.readahead {
        set_readahead(dev, bytes);
    }
    crate::health::start_swap_watch(&fs);
    let rates = Arc::new(crate::status::RateRing::default());
    rates.start_sampling(&fs);
    if let (Some(p), Some(every)) = (&persist, opts.persist_interval) {
        p.every(every);
    }
    let ctl = crate::control_handler::Control {
        image_key,
        dev,
        opts: Mutex::new(opts),
        host,
        stats,
        fs,
        rates,
        started: std::time::Instant::now(),
    };
    if let Err(e) = control::serve(listener, ctl) {
        // Not fatal: the mount works; only remount's read-only switch and --stats cannot
        // reach this daemon (the kernel still enforces a read-only remount), and nobody else
        // can answer for it (we hold the name).
        tracing::error!("no control socket thread: {e}");
    }
    Ok((session, MountedLite { path, dev }, sigset, persist))
}

/// The engine for `opts`: restored from `restore=` or `persist=` (an absent `persist=` file
/// is an empty filesystem), else new. Before anything is mounted, so a refused image mounts
/// nothing.
fn build_filesystem(
    opts: &MountOptions,
    host: &Host,
    key: Option<&rtmpfs_core::ImageKey>,
) -> Result<Filesystem, MountError> {
    let config = opts.engine_config(host);
    if let Some(p) = &opts.persist {
        let n = crate::persist::remove_stale_temps(p);
        if n > 0 {
            tracing::info!(
                "removed {n} unfinished save(s) of {} left by a killed daemon",
                p.display()
            );
        }
    }
    let limits_given = (opts.size.is_some(), opts.nr_inodes.is_some());
    let restored = match (&opts.restore, &opts.persist) {
        (Some(p), _) => crate::persist::restore(config.clone(), p, key, limits_given, false),
        (None, Some(p)) => crate::persist::restore(config.clone(), p, key, limits_given, true),
        (None, None) => Ok(None),
    }
    .map_err(MountError::Config)?;
    match restored {
        Some(fs) => Ok(fs),
        None => Filesystem::new(config).map_err(|e| MountError::Config(format!("bad configuration: {e}"))),
    }
}
