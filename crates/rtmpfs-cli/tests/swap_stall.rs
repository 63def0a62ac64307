//! A swap-in never stalls unrelated requests (issue 4: "swap I/O off the FUSE request threads,
//! so one fault-in never stalls unrelated requests").
//!
//! The swap file of mount A lives on a second rtmpfs mount, B, whose daemon the test stops with
//! SIGSTOP: every swap read of A then hangs until SIGCONT, like a disk that stopped answering.
//! Two readers ask A for swapped-out pages (O_DIRECT, so every read reaches A's daemon) and
//! hang. Meanwhile namespace and metadata requests to A, which need no swap I/O, must each be
//! answered within a deadline. After SIGCONT the readers get their pages, intact.
//!
//! Every thread of the test runs on CPU 0: over io_uring (`RTMPFS_TEST_TRANSPORT=io_uring`) the
//! kernel queues all of A's requests on CPU 0's ring, so the hanging swap-ins and the requests
//! that must still be answered share one ring and its one thread.

mod common;

use common::{c_path, can_mount, pin_to_cpu, stat_of, Daemon};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
/// 8 MiB of data against a 1 MiB budget: seven eighths of it is swapped out.
const FILE_PAGES: usize = 2048;
/// How long an unrelated request may take while swap reads hang (generous: CI machines are slow,
/// a stalled request would take forever).
const DEADLINE: Duration = Duration::from_secs(5);

fn page_pattern(i: usize) -> Vec<u8> {
    (0..PAGE)
        .map(|j| (i.wrapping_mul(131) ^ j.wrapping_mul(7)) as u8)
        .collect()
}

/// Sends SIGCONT to the swap daemon when dropped, so that a failing test never leaves mount A's
/// threads hanging on a stopped daemon (its unmount would hang too).
struct ContinueOnDrop(i32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// One 4 KiB page of `path` read with O_DIRECT (so the read reaches the daemon).
fn direct_read_page(path: &Path, index: usize) -> std::io::Result<Vec<u8>> {
    let p = c_path(path);
    let layout = std::alloc::Layout::from_size_align(PAGE, PAGE).unwrap();
    // SAFETY: a valid path; the buffer is PAGE bytes, PAGE-aligned (O_DIRECT), freed below.
    unsafe {
        let fd = libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_DIRECT);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let buf = std::alloc::alloc(layout);
        let n = libc::pread(fd, buf.cast(), PAGE, (index * PAGE) as i64);
        let err = std::io::Error::last_os_error();
        let out = std::slice::from_raw_parts(buf, PAGE).to_vec();
        std::alloc::dealloc(buf, layout);
        libc::close(fd);
        if n != PAGE as isize {
            return Err(if n < 0 {
                err
            } else {
                std::io::Error::other(format!("short read {n}"))
            });
        }
        Ok(out)
    }
}

/// Run `f` on a thread and fail the test if it has not returned within DEADLINE.
fn within_deadline(what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    let start = Instant::now();
    match rx.recv_timeout(DEADLINE) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} was stalled behind the hanging swap reads (no answer in {DEADLINE:?})")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} failed (see the panic above)"),
    }
    eprintln!("{what}: {:?}", start.elapsed());
}

#[test]
fn swap_in_never_stalls_unrelated_requests() {
    if !can_mount("swap_in_never_stalls_unrelated_requests") {
        return;
    }
    let swapfs = Daemon::start("");
    let a = Daemon::start(&format!(
        "size=64m,memory=1m,threads=2,swap={}",
        swapfs.path().display()
    ));
    // This thread and every thread it starts from here on (not the daemons).
    pin_to_cpu(0);
    let root: PathBuf = a.path().to_path_buf();
    let big = root.join("big");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&big).unwrap();
        for i in 0..FILE_PAGES {
            f.write_all(&page_pattern(i)).unwrap();
        }
    }
    std::fs::create_dir(root.join("d")).unwrap();
    for i in 0..20 {
        std::fs::write(root.join("d").join(format!("e{i}")), b"").unwrap();
    }
    let swapped = stat_of(&root, "swapped_pages");
    assert!(
        swapped >= (FILE_PAGES / 2) as u64,
        "the setup did not swap: {swapped} pages out"
    );

    // B stops answering: every swap read of A hangs from here on.
    swapfs.signal(libc::SIGSTOP);
    let cont = ContinueOnDrop(swapfs.pid());
    let swap_ins_before = stat_of(&root, "swap_ins");

    // Two readers of swapped-out pages in different parts of the file (the first pages were
    // evicted first): both hang on B.
    let (done_tx, done_rx) = mpsc::channel();
    for index in [64usize, 1024] {
        let (big, tx) = (big.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let _ = tx.send((index, direct_read_page(&big, index)));
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    if let Ok((index, r)) = done_rx.try_recv() {
        let outcome = r.map(|data| data == page_pattern(index));
        panic!(
            "a read of swapped-out page {index} finished while the swap device was stopped \
             (outcome: {outcome:?}, swap_ins {swap_ins_before} -> {}, swapped_pages {}): the \
             scenario does not exercise swap I/O",
            stat_of(&root, "swap_ins"),
            stat_of(&root, "swapped_pages")
        );
    }

    // Unrelated requests: each needs the daemon (fresh names, so no kernel cache answers them)
    // and no swap I/O.
    for (what, op) in [
        ("create", 0),
        ("mkdir", 1),
        ("rename", 2),
        ("unlink", 3),
        ("readdir", 4),
        ("stat of a new name", 5),
        ("setxattr + getxattr", 6),
        ("statfs", 7),
        ("rtmpfs --stats", 8),
    ] {
        let root = root.clone();
        within_deadline(what, move || {
            let d = root.join("d");
            match op {
                0 => std::fs::write(d.join("new"), b"").unwrap(),
                1 => std::fs::create_dir(d.join("sub")).unwrap(),
                2 => std::fs::rename(d.join("new"), d.join("renamed")).unwrap(),
                3 => std::fs::remove_file(d.join("renamed")).unwrap(),
                4 => assert_eq!(std::fs::read_dir(&d).unwrap().count(), 21),
                5 => assert!(std::fs::metadata(d.join("sub")).unwrap().is_dir()),
                6 => {
                    let p = c_path(&d.join("e0"));
                    let n = CString::new("user.k").unwrap();
                    let mut buf = [0u8; 8];
                    // SAFETY: valid path, name and buffers of the given sizes.
                    unsafe {
                        assert_eq!(libc::setxattr(p.as_ptr(), n.as_ptr(), b"v".as_ptr().cast(), 1, 0), 0);
                        assert_eq!(libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 8), 1);
                    }
                }
                7 => {
                    let p = c_path(&root);
                    // SAFETY: valid path and a zeroed statfs buffer.
                    unsafe {
                        let mut s: libc::statfs = std::mem::zeroed();
                        assert_eq!(libc::statfs(p.as_ptr(), &raw mut s), 0);
                    }
                }
                _ => {
                    let _ = stat_of(&root, "inodes");
                }
            }
        });
    }
    assert!(
        done_rx.try_recv().is_err(),
        "a swap read finished while the swap device was stopped"
    );
    assert_eq!(
        stat_of(&root, "swap_ins"),
        swap_ins_before,
        "no swap-in can have completed"
    );

    // B answers again: the readers get their pages, intact.
    drop(cont);
    for _ in 0..2 {
        let (index, data) = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a swap read did not finish after the swap device came back");
        assert!(data.unwrap() == page_pattern(index), "page {index} read back wrong");
    }
    assert_eq!(stat_of(&root, "poisoned_pages"), 0);
    drop(a);
    drop(swapfs);
}
