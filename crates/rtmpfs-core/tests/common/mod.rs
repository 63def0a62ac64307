//! Shared by the test modules: the testkit's proptest strategies and seeded runner, and a
//! watchdog.

use std::sync::mpsc;
use std::time::Duration;

pub use rtmpfs_testkit::strategies::*;

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
