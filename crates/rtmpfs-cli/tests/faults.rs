//! Fault injection on real mounts (issue 15 items 1 and 2): a failed page never shortens a file,
//! a full swap never hides stored data.
//!
//! Every file is written with known content, the host's caches are dropped, and the files are
//! read back buffered (whole, in large reads, as `cp` does) and with `O_DIRECT` (page by page, so
//! every read reaches the daemon). What must hold:
//! * no read returns fewer bytes than the file holds unless it fails with an error (over FUSE a
//!   short READ is end of file: the kernel would lower the size and cache zeros);
//! * a page fails only if the engine lost it (`poisoned_pages`), and fails the same way buffered
//!   and direct; every other byte is right;
//! * `stat` keeps the size; the daemon stays up.
//!
//! Scenarios: the swap full by `swap_size=`, the swap file on a small kernel tmpfs that fills up,
//! and the swap file on a second rtmpfs whose daemon is killed (a device that dies). Each runs
//! with `compress=off`: what is proven is the swap tier's (the compressed tier under a failing
//! swap is `rtmpfs-core`'s tests/compress.rs).

mod common;

use common::{can_mount, stat_of, Daemon, Tmpfs};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const PAGE: usize = 4096;
const MIB_PAGES: usize = 256;

/// The known content of page `page` of file `file`.
fn page_pattern(file: usize, page: usize) -> Vec<u8> {
    let seed = (file * 7919 + page * 131) as u32;
    (0..PAGE)
        .map(|j| (seed.wrapping_mul(2_654_435_761).wrapping_add(j as u32 * 40503) >> 13) as u8)
        .collect()
}

/// Write `pages` pages of file `file` at `path`, one `write` per page; returns how many landed
/// before the first error (expected: ENOSPC once memory and swap are full).
fn write_file(path: &Path, file: usize, pages: usize) -> usize {
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..pages {
        if let Err(e) = f.write_all(&page_pattern(file, i)) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "writing page {i} of {path:?}");
            return i;
        }
    }
    pages
}

fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").expect("echo 3 > /proc/sys/vm/drop_caches");
}

/// What reading one page gave: its bytes, or an errno.
type PageRead = Result<Vec<u8>, i32>;

/// Every page of `path` (`pages` of them), each with its own `pread` (`O_DIRECT` or buffered).
/// A read that returns fewer bytes than the page holds, without an error, fails the test.
fn read_pages(path: &Path, pages: usize, direct: bool) -> Vec<PageRead> {
    let flags = if direct { libc::O_DIRECT } else { 0 };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .unwrap();
    let layout = std::alloc::Layout::from_size_align(PAGE, PAGE).unwrap();
    // SAFETY: PAGE bytes, PAGE-aligned (as O_DIRECT needs); freed below.
    let buf = unsafe { std::alloc::alloc(layout) };
    assert!(!buf.is_null());
    let out = (0..pages)
        .map(|i| {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid descriptor and a buffer of PAGE bytes.
            let n = unsafe { libc::pread(f.as_raw_fd(), buf.cast(), PAGE, (i * PAGE) as i64) };
            if n < 0 {
                return Err(common::errno());
            }
            assert_eq!(n as usize, PAGE, "page {i} of {path:?} read short (direct: {direct})");
            // SAFETY: the first PAGE bytes of buf were just written by pread.
            Ok(unsafe { std::slice::from_raw_parts(buf, PAGE) }.to_vec())
        })
        .collect();
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf, layout) };
    out
}

/// Read all of `path` as `cp` does (1 MiB reads until one returns 0, going on past an error);
/// returns the offsets whose read failed. A read may return fewer bytes than asked (read(2) does
/// when an error stops it part-way: the next read reports the error), but end of file (0) must
/// come only at the file's size: a FUSE READ answered short would make it come early.
fn read_whole_buffered(path: &Path, size: usize) -> Vec<usize> {
    use std::io::Seek;
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; MIB_PAGES * PAGE];
    let mut failed = Vec::new();
    let mut pos = 0;
    loop {
        f.seek(std::io::SeekFrom::Start(pos as u64)).unwrap();
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pos += n,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{path:?}: read at {pos}");
                failed.push(pos);
                // Go on past the bad page, as a careful copier would.
                pos = (pos / PAGE + 1) * PAGE;
            }
        }
    }
    assert!(pos >= size, "{path:?}: end of file at {pos}, before its size {size}");
    assert_eq!(pos, size, "{path:?}: data past its size");
    failed
}

/// Check every page of `path` (file number `file`, `pages` long): each reads right or fails with
/// EIO, the same pages buffered as direct; returns the pages that failed.
fn check_file(path: &Path, file: usize, pages: usize) -> Vec<usize> {
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        (pages * PAGE) as u64,
        "{path:?}: size"
    );
    drop_caches();
    let whole = read_whole_buffered(path, pages * PAGE);
    let direct = read_pages(path, pages, true);
    drop_caches();
    let buffered = read_pages(path, pages, false);
    let mut bad = Vec::new();
    for (i, (d, b)) in direct.iter().zip(&buffered).enumerate() {
        match (d, b) {
            (Ok(d), Ok(b)) => {
                assert!(*d == page_pattern(file, i), "{path:?} page {i}: wrong bytes (direct)");
                assert!(*b == page_pattern(file, i), "{path:?} page {i}: wrong bytes (buffered)");
            }
            (Err(libc::EIO), Err(libc::EIO)) => bad.push(i),
            other => panic!(
                "{path:?} page {i}: not right and not EIO both ways (direct, buffered): {:?}",
                errnos(other)
            ),
        }
    }
    assert_eq!(
        whole.is_empty(),
        bad.is_empty(),
        "{path:?}: whole-file read vs pages {bad:?}"
    );
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        (pages * PAGE) as u64,
        "{path:?}: size after reads"
    );
    bad
}

fn errnos((d, b): (&PageRead, &PageRead)) -> (Result<(), i32>, Result<(), i32>) {
    (
        d.as_ref().map(|_| ()).map_err(|e| *e),
        b.as_ref().map(|_| ()).map_err(|e| *e),
    )
}

fn assert_daemon_up(d: &mut Daemon) {
    assert!(
        d.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the daemon exited: {}",
        d.stderr()
    );
    assert!(std::fs::read_dir(d.path()).is_ok(), "the mount stopped answering");
}

/// Six 1 MiB files into a mount whose memory and swap hold 5 MiB: returns each file's path and
/// the pages that landed (the last ones hit ENOSPC, rightly).
fn fill_six_files(root: &Path) -> Vec<(PathBuf, usize)> {
    let files: Vec<(PathBuf, usize)> = (0..6)
        .map(|n| {
            let path = root.join(format!("f{n}"));
            let landed = write_file(&path, n, MIB_PAGES);
            (path, landed)
        })
        .collect();
    assert!(
        files[5].1 < MIB_PAGES,
        "the sixth file fit: memory and swap were not full"
    );
    assert_eq!(files[0].1, MIB_PAGES, "the first file did not fit");
    files
}

/// Every byte of every file reads back right, no page fails.
fn check_all_readable(d: &mut Daemon, files: &[(PathBuf, usize)]) {
    for (n, (path, pages)) in files.iter().enumerate() {
        let bad = check_file(path, n, *pages);
        assert!(bad.is_empty(), "{path:?}: pages {bad:?} unreadable with a full swap");
    }
    assert_eq!(stat_of(d.path(), "poisoned_pages"), 0);
    assert_daemon_up(d);
}

/// Regression: with `memory=4m,swap_size=1m` and six 1 MiB files written, reading the first
/// gave ENOSPC (and over FUSE, short reads) until files were deleted.
#[test]
fn full_swap_keeps_every_stored_byte_readable() {
    if !can_mount("full_swap_keeps_every_stored_byte_readable") {
        return;
    }
    let mut d = Daemon::start("size=64m,memory=4m,swap_size=1m,compress=off");
    let files = fill_six_files(d.path());
    assert!(stat_of(d.path(), "swapped_pages") >= 200, "the setup did not swap");
    check_all_readable(&mut d, &files);
    // After freeing memory, still every byte, every time.
    std::fs::remove_file(&files[5].0).unwrap();
    check_all_readable(&mut d, &files[..5]);
}

/// Regression: with the swap file's filesystem full (a 2 MiB kernel tmpfs), swapped pages were
/// unreadable.
#[test]
fn swap_filesystem_full_keeps_every_stored_byte_readable() {
    if !can_mount("swap_filesystem_full_keeps_every_stored_byte_readable") {
        return;
    }
    let swapdir = Tmpfs::mount("size=1m,mode=0700");
    let mut d = Daemon::start(&format!(
        "size=64m,memory=4m,compress=off,swap={}",
        swapdir.path().display()
    ));
    let files = fill_six_files(d.path());
    assert!(stat_of(d.path(), "swapped_pages") >= 200, "the setup did not swap");
    check_all_readable(&mut d, &files);
    drop(d);
    drop(swapdir);
}

/// Regression: with the swap device dead (the swap file on a second rtmpfs whose daemon is
/// killed), `cp` copied the resident head of a file and exited 0, `stat` then gave the head's
/// size, and a file with no lost page read short. Now exactly the lost pages fail with EIO,
/// buffered and direct; everything else reads right; the size stays.
#[test]
fn dead_swap_device_fails_exactly_the_lost_pages() {
    if !can_mount("dead_swap_device_fails_exactly_the_lost_pages") {
        return;
    }
    let mut swapfs = Daemon::start("");
    let mut a = Daemon::start(&format!(
        "size=64m,memory=1m,compress=off,swap={}",
        swapfs.path().display()
    ));
    let big = a.path().join("big");
    let pages = 4 * MIB_PAGES;
    assert_eq!(write_file(&big, 0, pages), pages);
    let small = a.path().join("small");
    assert_eq!(write_file(&small, 1, 8), 8);
    assert!(
        stat_of(a.path(), "swapped_pages") >= (pages / 2) as u64,
        "the setup did not swap"
    );
    // The device dies.
    swapfs.signal(libc::SIGKILL);
    swapfs.wait();
    drop_caches();
    let bad = check_file(&big, 0, pages);
    let poisoned = stat_of(a.path(), "poisoned_pages");
    assert!(!bad.is_empty(), "no page was lost: the scenario did not need the swap");
    assert_eq!(
        bad.len() as u64,
        poisoned,
        "failed pages {} != poisoned pages {poisoned}",
        bad.len()
    );
    assert!(bad.len() < pages, "every page failed: resident ones must stay readable");
    // Lost pages stay lost (EIO, never zeros), the small file written last reads whole or fails
    // only where it lost pages, and the daemon is up.
    assert_eq!(check_file(&big, 0, pages), bad);
    let small_bad = check_file(&small, 1, 8);
    assert_eq!(stat_of(a.path(), "poisoned_pages"), poisoned + small_bad.len() as u64);
    assert_daemon_up(&mut a);
    // New data that needs a frame while nothing can leave RAM: EIO, not ENOSPC.
    let mut f = std::fs::File::create(a.path().join("new")).unwrap();
    let mut errors = Vec::new();
    for i in 0..2 * MIB_PAGES {
        if let Err(e) = f.write_all(&page_pattern(2, i)) {
            errors.push(e.raw_os_error());
            break;
        }
    }
    assert_eq!(errors, [Some(libc::EIO)], "a dead swap device must be EIO, not ENOSPC");
    assert_daemon_up(&mut a);
    drop(a);
    drop(swapfs);
}
