//! Giving free memory back to the kernel while the mount lives: a thread that trims the page
//! pool's idle pages and, after large frees, the C heap. It holds only a weak reference to the
//! engine and ends when the engine is gone.

use rtmpfs_core::Filesystem;
use std::sync::{Arc, Weak};

/// Data pages (plus inodes) that must have gone since the last heap trim before the next.
const TRIM_AFTER_PAGES: u64 = 4096;

/// Give free memory back to the kernel, every second: the page pool's pages that have been
/// free for a while (`rtmpfs_pages::trim_idle`), and, after large frees, the C heap's. File data
/// lives in the page pool; what remains on the heap is metadata (page-map nodes, frames'
/// headers, directory entries), and glibc keeps freed heap memory mapped unless asked. So if at
/// least `TRIM_AFTER_PAGES` data pages (plus inodes) went since the last trim, `malloc_trim(0)`:
/// deleting a large tree then shrinks the daemon's RSS within a couple of seconds.
pub(crate) fn start_heap_trimmer(fs: &Arc<Filesystem>) {
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
