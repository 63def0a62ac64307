//! The kernel tmpfs the syscall side runs on: mounted by this program (as root) at a unique
//! temporary directory and always unmounted at the end — on return, on panic (the guard's `Drop`
//! runs during unwinding) and on SIGINT/SIGTERM/SIGHUP (a handler unmounts lazily and exits).
//! Without root (or if mount(2) fails) it falls back to a fresh directory in `/dev/shm`, which is
//! a kernel tmpfs too, and says so.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// `statfs.f_type` of tmpfs.
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// The mount point, for the signal handler (set before mounting, never changed).
static MOUNT_POINT: OnceLock<CString> = OnceLock::new();

/// A kernel tmpfs directory that is cleaned up when dropped.
pub struct KernelTmpfs {
    dir: PathBuf,
    mounted: bool,
    /// One line saying what the kernel side runs on.
    pub what: String,
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

extern "C" fn on_signal(sig: libc::c_int) {
    if let Some(p) = MOUNT_POINT.get() {
        // SAFETY: umount2 and rmdir are async-signal-safe system calls; `p` is a NUL-terminated
        // string that lives until the process exits.
        unsafe {
            libc::umount2(p.as_ptr(), libc::MNT_DETACH);
            libc::rmdir(p.as_ptr());
        }
    }
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(128 + sig) }
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only makes async-signal-safe calls.
        unsafe {
            libc::signal(sig, handler);
        }
    }
}

fn is_tmpfs(p: &Path) -> bool {
    let c = cpath(p);
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid, writable statfs.
    let r = unsafe { libc::statfs(c.as_ptr(), &raw mut st) };
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u64;
    r == 0 && magic == TMPFS_MAGIC
}

impl KernelTmpfs {
    /// Mount a fresh `tmpfs -o size=4G` at a unique directory under `$RTMPFS_BENCH_TMPDIR`
    /// (default: the system temporary directory), or fall back to `/dev/shm`.
    pub fn new() -> KernelTmpfs {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let unique = format!("rtmpfs-bench-{}-{nanos}", std::process::id());
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut why = String::from("not root");
        if root {
            let base = std::env::var_os("RTMPFS_BENCH_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
            let dir = base.join(&unique);
            std::fs::create_dir_all(&dir).expect("create the mount point");
            let c = cpath(&dir);
            if MOUNT_POINT.set(c.clone()).is_ok() {
                install_signal_handlers();
            }
            // SAFETY: every pointer is a NUL-terminated string that outlives the call.
            let r = unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    c.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    c"size=4G".as_ptr().cast(),
                )
            };
            if r == 0 {
                assert!(is_tmpfs(&dir), "{} is not a tmpfs after mount", dir.display());
                let what = format!(
                    "kernel tmpfs mounted by the bench: mount -t tmpfs -o size=4G none {}",
                    dir.display()
                );
                return KernelTmpfs {
                    dir,
                    mounted: true,
                    what,
                };
            }
            why = format!("mount(2) failed: {}", std::io::Error::last_os_error());
            let _ = std::fs::remove_dir(&dir);
        }
        let dir = Path::new("/dev/shm").join(&unique);
        std::fs::create_dir(&dir).expect("create a directory in /dev/shm");
        assert!(is_tmpfs(&dir), "/dev/shm is not a tmpfs here");
        let what = format!(
            "/dev/shm ({why}: could not mount a tmpfs of our own), directory {}",
            dir.display()
        );
        eprintln!("WARNING: kernel side runs on {what}");
        KernelTmpfs {
            dir,
            mounted: false,
            what,
        }
    }

    /// The directory to work in.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for KernelTmpfs {
    fn drop(&mut self) {
        if self.mounted {
            let c = cpath(&self.dir);
            // SAFETY: `c` is a NUL-terminated path.
            let r = unsafe { libc::umount2(c.as_ptr(), 0) };
            if r != 0 {
                eprintln!(
                    "umount {}: {}; detaching",
                    self.dir.display(),
                    std::io::Error::last_os_error()
                );
                // SAFETY: as above.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
            let _ = std::fs::remove_dir(&self.dir);
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
