//! Shared by the test modules: the testkit's proptest strategies and seeded runner, and a
//! watchdog.

use std::sync::mpsc;
use std::time::Duration;

pub use rtmpfs_testkit::strategies::*;

use std::ffi::OsStr;

use rtmpfs_core::{Ctx, Fh, Filesystem};

/// Close `fh`, unlink `name` from the root directory, and check that nothing stays charged:
/// no page, no swap slot, no frame.
pub fn delete_and_check_empty(fs: &Filesystem, fh: Fh, name: &str) {
    fs.release(fh).unwrap();
    fs.unlink(&Ctx::root(), fs.root(), OsStr::new(name)).unwrap();
    let u = fs.usage();
    assert_eq!(
        (u.charged_pages, u.swap_slots_used, u.frames_in_use),
        (0, 0, 0),
        "{u:?}"
    );
}

/// Run `f` on another thread and fail (not hang) if it has not finished within `limit`.
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            h.join().expect("worker");
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The worker panicked: surface its panic.
            match h.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!(),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not finish within {limit:?}: hang or livelock")
        }
    }
}
