//! Writeback errors reach `close` (issue 15, item 5).
//!
//! A store through a shared mapping into a hole of a full filesystem succeeds (FUSE cannot
//! refuse a page fault for space, as kernel tmpfs does with SIGBUS); the kernel writes the page
//! back later and the daemon refuses it with ENOSPC. A program that checks `close` (and never
//! calls msync) must hear of it: `close` of the read-write descriptor returns the error.

mod common;

use common::{c_path, can_mount, errno, Daemon};
use std::path::Path;

const PAGE: usize = 4096;

/// Fill the filesystem with `path` until ENOSPC; returns the bytes written.
fn fill(path: &Path) -> usize {
    let chunk = vec![7u8; 64 * 1024];
    let mut f = std::fs::File::create(path).unwrap();
    let mut total = 0;
    loop {
        match std::io::Write::write(&mut f, &chunk) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return total,
            Err(e) => panic!("filling: {e}"),
        }
    }
}

/// Open `path` read-write, make it `pages` pages long (holes), store into every page through a
/// shared mapping, unmap, and close: the errno of `close` (0 when it succeeded).
fn store_through_mapping_then_close(path: &Path, pages: usize) -> i32 {
    let p = c_path(path);
    let len = pages * PAGE;
    // SAFETY: a valid path; the mapping is `len` bytes of a file that is `len` bytes long,
    // written only within those bounds and unmapped before the descriptor is closed.
    unsafe {
        let fd = libc::open(p.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o644);
        assert!(fd >= 0, "open: {}", errno());
        assert_eq!(libc::ftruncate(fd, len as i64), 0, "ftruncate: {}", errno());
        let m = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(m, libc::MAP_FAILED, "mmap: {}", errno());
        for i in 0..pages {
            *m.cast::<u8>().add(i * PAGE) = 0xab;
        }
        assert_eq!(libc::munmap(m, len), 0);
        if libc::close(fd) == 0 {
            0
        } else {
            errno()
        }
    }
}

fn check(opts: &str) {
    let d = Daemon::start(opts);
    let filler = fill(&d.path().join("filler"));
    assert!(filler > 0);
    let e = store_through_mapping_then_close(&d.path().join("mapped"), 16);
    assert!(
        e == libc::ENOSPC || e == libc::EIO,
        "{opts}: close after stores into a full filesystem returned {e} (0 = success): the data was lost silently"
    );
    // With room again, the same program's close succeeds (and the data is there).
    //
    // The kernel sends RELEASE asynchronously: `close` returns before the daemon hears of it,
    // and the engine keeps an unlinked file's data until its last handle is released. Over
    // io_uring the RELEASE waits on the ring of the CPU that closed the file, served by a thread
    // pinned there, so on a busy machine the space comes back a scheduler slice after `unlink`
    // returns (docs/semantics.md, "Differences the FUSE kernel imposes"). Wait for it, bounded:
    // a space that never comes back fails here.
    std::fs::remove_file(d.path().join("filler")).unwrap();
    assert!(
        common::wait_until(std::time::Duration::from_secs(10), || common::free_bytes(d.path())
            >= filler as u64),
        "{opts}: the space of a closed, unlinked file never came back ({} bytes free)",
        common::free_bytes(d.path())
    );
    let e = store_through_mapping_then_close(&d.path().join("mapped2"), 16);
    assert_eq!(e, 0, "{opts}: close with room to spare");
    let data = std::fs::read(d.path().join("mapped2")).unwrap();
    assert!((0..16).all(|i| data[i * PAGE] == 0xab), "{opts}: stores lost");
}

#[test]
fn close_reports_a_failed_writeback_of_a_shared_mapping() {
    if !can_mount("close_reports_a_failed_writeback_of_a_shared_mapping") {
        return;
    }
    check("size=1m");
    check("size=1m,direct_io");
}

#[test]
fn closing_read_only_and_write_only_handles_costs_no_flush() {
    if !can_mount("closing_read_only_and_write_only_handles_costs_no_flush") {
        return;
    }
    let d = Daemon::start("size=1m");
    std::fs::write(d.path().join("f"), b"x").unwrap();
    let _ = std::fs::read(d.path().join("f")).unwrap();
    assert_eq!(common::stat_of(d.path(), "flush"), 0);
    // Read-write handles: the first close sends one FLUSH, answered ENOSYS, and none after.
    for _ in 0..3 {
        drop(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(d.path().join("f"))
                .unwrap(),
        );
    }
    assert_eq!(common::stat_of(d.path(), "flush"), 1);
}
