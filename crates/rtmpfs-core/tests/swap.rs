//! Tests of the RAM budget and the swap tier through the public API.

use std::ffi::OsStr;

use crate::common::delete_and_check_empty;
use std::time::{Duration, Instant};

use rtmpfs_core::swap::{FaultySwap, FileSwap, MemorySwap, SwapBackend};
use rtmpfs_core::sync::{Arc, Ordering};
use rtmpfs_core::{Config, Ctx, FallocateMode, Filesystem, FsError, OpenFlags, SetAttr, SwapConfig, PAGE_SIZE};

const P: usize = PAGE_SIZE as usize;

fn config(memory_pages: u64, size_pages: u64, encrypt: bool) -> Config {
    Config {
        size_bytes: Some(size_pages * PAGE_SIZE),
        memory_bytes: Some(memory_pages * PAGE_SIZE),
        swap: Some(SwapConfig {
            dir: std::env::temp_dir(),
            size_bytes: None,
            encrypt,
        }),
        background_threads: false,
        ..Config::default()
    }
}

fn page_pattern(idx: usize) -> Vec<u8> {
    (0..P)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(idx as u8)
                .wrapping_add((idx >> 8) as u8)
        })
        .collect()
}

fn new_file(fs: &Filesystem, name: &str) -> rtmpfs_core::Fh {
    fs.create(&Ctx::root(), fs.root(), OsStr::new(name), 0o644, OpenFlags::READ_WRITE)
        .unwrap()
        .1
}

fn write_pages(fs: &Filesystem, fh: rtmpfs_core::Fh, pages: usize) {
    for i in 0..pages {
        assert_eq!(fs.write(&Ctx::root(), fh, (i * P) as u64, &page_pattern(i)).unwrap(), P);
    }
}

fn check_pages(fs: &Filesystem, fh: rtmpfs_core::Fh, pages: usize) {
    for i in (0..pages).rev() {
        assert_eq!(fs.read_vec(fh, (i * P) as u64, P).unwrap(), page_pattern(i), "page {i}");
    }
}

#[test]
fn file_four_times_the_budget_round_trips() {
    let fs = Filesystem::with_swap_backend(config(8, 1024, true), Box::new(MemorySwap::new(None))).unwrap();
    let fh = new_file(&fs, "big");
    write_pages(&fs, fh, 32);
    let u = fs.usage();
    assert!(u.frames_in_use <= 8, "{u:?}");
    assert!(u.evictions >= 24, "{u:?}");
    fs.check_invariants().unwrap();
    check_pages(&fs, fh, 32);
    let u = fs.usage();
    assert!(u.swap_ins > 0 && u.frames_in_use <= 8, "{u:?}");
    assert_eq!(u.charged_pages, 32);
    assert_eq!(u.resident_pages + u.swapped_pages, 32);
    fs.check_invariants().unwrap();
    fs.release(fh).unwrap();
    fs.unlink(&Ctx::root(), fs.root(), OsStr::new("big")).unwrap();
    let u = fs.usage();
    assert_eq!(
        (
            u.charged_pages,
            u.resident_pages,
            u.swapped_pages,
            u.swap_slots_used,
            u.frames_in_use
        ),
        (0, 0, 0, 0, 0)
    );
    fs.check_invariants().unwrap();
}

#[test]
fn clean_pages_leave_ram_without_io() {
    let fs = Filesystem::with_swap_backend(config(4, 64, false), Box::new(MemorySwap::new(None))).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 8);
    check_pages(&fs, fh, 8);
    let before = fs.usage();
    // Reading again swaps pages in and evicts pages that were swapped in and never changed.
    check_pages(&fs, fh, 8);
    let after = fs.usage();
    assert!(
        after.clean_evictions > before.clean_evictions,
        "{before:?} -> {after:?}"
    );
    fs.check_invariants().unwrap();
}

#[test]
fn truncate_and_punch_free_swap_slots_and_zero_tails() {
    let fs = Filesystem::with_swap_backend(config(2, 64, true), Box::new(MemorySwap::new(None))).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 10);
    assert!(fs.usage().swapped_pages >= 8);
    // Truncate into a swapped page: the tail must read zero after extending again.
    let ino = fs.handle_ino(fh).unwrap();
    let cut = (3 * P + 100) as u64;
    fs.setattr(
        &Ctx::root(),
        ino,
        &SetAttr {
            size: Some(cut),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    fs.setattr(
        &Ctx::root(),
        ino,
        &SetAttr {
            size: Some((5 * P) as u64),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    let page3 = fs.read_vec(fh, (3 * P) as u64, P).unwrap();
    assert_eq!(&page3[..100], &page_pattern(3)[..100]);
    assert!(
        page3[100..].iter().all(|&b| b == 0),
        "stale bytes after truncate of a swapped page"
    );
    assert!(fs.read_vec(fh, (4 * P) as u64, P).unwrap().iter().all(|&b| b == 0));
    // Punch a partial range in a swapped page.
    fs.evict_now(16);
    fs.fallocate(&Ctx::root(), fh, 10, 20, FallocateMode::PunchHole)
        .unwrap();
    let page0 = fs.read_vec(fh, 0, P).unwrap();
    let mut want = page_pattern(0);
    want[10..30].fill(0);
    assert_eq!(page0, want);
    fs.check_invariants().unwrap();
    fs.setattr(
        &Ctx::root(),
        ino,
        &SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    let u = fs.usage();
    assert_eq!((u.charged_pages, u.swap_slots_used), (0, 0), "{u:?}");
    fs.check_invariants().unwrap();
}

#[test]
fn failed_swap_read_poisons_only_that_page() {
    let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
    let fs = Filesystem::with_swap_backend(config(2, 64, true), Box::new(faulty)).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 6);
    fs.evict_now(16);
    assert!(fs.usage().swapped_pages >= 4);
    control.fail_reads.store(true, Ordering::Relaxed);
    assert_eq!(fs.read_vec(fh, 0, P), Err(FsError::Io));
    control.fail_reads.store(false, Ordering::Relaxed);
    // The same page stays poisoned; the others read fine.
    assert_eq!(fs.read_vec(fh, 0, P), Err(FsError::Io));
    for i in 1..6 {
        assert_eq!(fs.read_vec(fh, (i * P) as u64, P).unwrap(), page_pattern(i));
    }
    assert_eq!(fs.usage().poisoned_pages, 1);
    // A read spanning the poisoned page fails as a whole.
    assert_eq!(fs.read_vec(fh, (P - 10) as u64, 100), Err(FsError::Io));
    fs.check_invariants().unwrap();
    // Overwriting a poisoned page is EIO too (as tmpfs); truncating it away frees it.
    assert_eq!(fs.write(&Ctx::root(), fh, 0, b"x"), Err(FsError::Io));
    let ino = fs.handle_ino(fh).unwrap();
    fs.setattr(
        &Ctx::root(),
        ino,
        &SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(fs.usage().poisoned_pages, 0);
    fs.check_invariants().unwrap();
}

#[test]
fn whole_page_overwrite_of_a_swapped_page_reads_nothing_back() {
    let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
    let fs = Filesystem::with_swap_backend(config(2, 64, true), Box::new(faulty)).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 6);
    fs.evict_now(16);
    let before = fs.usage();
    assert!(before.swapped_pages >= 4, "{before:?}");
    // Any swap read now fails: a page that needed one would be poisoned.
    control.fail_reads.store(true, Ordering::Relaxed);
    for i in 0..6 {
        assert_eq!(
            fs.write(&Ctx::root(), fh, (i * P) as u64, &page_pattern(i + 100))
                .unwrap(),
            P
        );
    }
    control.fail_reads.store(false, Ordering::Relaxed);
    let after = fs.usage();
    assert_eq!(after.poisoned_pages, 0, "{after:?}");
    assert_eq!(
        after.swap_ins, before.swap_ins,
        "a whole-page overwrite read swap: {after:?}"
    );
    assert_eq!(after.charged_pages, 6);
    fs.check_invariants().unwrap();
    for i in 0..6 {
        assert_eq!(
            fs.read_vec(fh, (i * P) as u64, P).unwrap(),
            page_pattern(i + 100),
            "page {i}"
        );
    }
    // The dropped swap copies freed their slots: only pages evicted since hold one.
    assert!(fs.usage().swap_slots_used <= 6);
    delete_and_check_empty(&fs, fh, "f");
}

#[test]
fn sequential_reads_are_served_by_read_ahead() {
    let cfg = Config {
        background_threads: true,
        ..config(64, 4096, true)
    };
    let fs = Filesystem::with_swap_backend(cfg, Box::new(MemorySwap::new(None))).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 512);
    // A sequential reader, 8 pages per read: the read-ahead thread fetches windows ahead of it.
    for chunk in 0..64 {
        let got = fs.read_vec(fh, (chunk * 8 * P) as u64, 8 * P).unwrap();
        for (j, page) in got.chunks(P).enumerate() {
            assert_eq!(page, &page_pattern(chunk * 8 + j)[..], "page {}", chunk * 8 + j);
        }
    }
    let u = fs.usage();
    assert!(u.readahead_swap_ins > 0, "no page came from read-ahead: {u:?}");
    assert!(u.readahead_swap_ins <= u.swap_ins, "{u:?}");
    // Random reads never post windows; the data is right either way.
    for i in [300, 7, 511, 128, 0, 255] {
        assert_eq!(fs.read_vec(fh, (i * P) as u64, P).unwrap(), page_pattern(i));
    }
    fs.stop_background_threads();
    fs.check_invariants().unwrap();
    // Without the threads, sequential reads still work (synchronous read-ahead).
    fs.evict_now(64);
    for chunk in 0..64 {
        let got = fs.read_vec(fh, (chunk * 8 * P) as u64, 8 * P).unwrap();
        for (j, page) in got.chunks(P).enumerate() {
            assert_eq!(page, &page_pattern(chunk * 8 + j)[..], "page {}", chunk * 8 + j);
        }
    }
    delete_and_check_empty(&fs, fh, "f");
}

/// Read-ahead reads a window's slots in one I/O across gaps (freed slots here): with a backend
/// that cannot read a freed slot, it falls back to the stored runs; with a file, the gap bytes
/// are read and ignored. Either way no page is lost or poisoned.
#[test]
fn read_ahead_across_slot_gaps_loses_nothing() {
    for file_backed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let backend: Box<dyn SwapBackend> = if file_backed {
            Box::new(FileSwap::create(dir.path()).unwrap())
        } else {
            Box::new(MemorySwap::new(None))
        };
        let cfg = Config {
            background_threads: true,
            ..config(32, 1024, true)
        };
        let fs = Filesystem::with_swap_backend(cfg, backend).unwrap();
        let fh = new_file(&fs, "f");
        write_pages(&fs, fh, 256);
        fs.evict_now(256);
        // Free every third page's slot: gaps between the slots of the pages that remain.
        for i in (0..256).step_by(3) {
            fs.fallocate(&Ctx::root(), fh, (i * P) as u64, P as u64, FallocateMode::PunchHole)
                .unwrap();
        }
        for chunk in 0..32 {
            let got = fs.read_vec(fh, (chunk * 8 * P) as u64, 8 * P).unwrap();
            for (j, page) in got.chunks(P).enumerate() {
                let i = chunk * 8 + j;
                let want = if i % 3 == 0 { vec![0; P] } else { page_pattern(i) };
                assert_eq!(page, &want[..], "page {i} (file-backed swap: {file_backed})");
            }
        }
        let u = fs.usage();
        assert_eq!(u.poisoned_pages, 0, "{u:?}");
        assert!(u.readahead_swap_ins > 0, "{u:?}");
        fs.stop_background_threads();
        fs.check_invariants().unwrap();
    }
}

#[test]
fn tampered_swap_page_fails_authentication() {
    let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
    let fs = Filesystem::with_swap_backend(config(2, 64, true), Box::new(faulty)).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 4);
    fs.evict_now(16);
    control.corrupt_reads.store(true, Ordering::Relaxed);
    let swapped_page = (0..4).find(|&i| fs.read_vec(fh, (i * P) as u64, P) == Err(FsError::Io));
    assert!(swapped_page.is_some(), "a corrupted swap page was accepted");
    assert!(fs.usage().swap_read_errors >= 1);
}

#[test]
fn swap_full_gives_nospace_and_loses_nothing() {
    let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
    let fs = Filesystem::with_swap_backend(config(4, 1024, true), Box::new(faulty)).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 8);
    control.disk_full.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let mut err = None;
    for i in 8..64 {
        if let Err(e) = fs.write(&Ctx::root(), fh, (i * P) as u64, &page_pattern(i)) {
            err = Some((i, e));
            break;
        }
    }
    let (at, e) = err.expect("writes past RAM with a full swap disk must fail");
    assert_eq!(e, FsError::NoSpace);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "ENOSPC took {:?}",
        start.elapsed()
    );
    fs.check_invariants().unwrap();
    control.disk_full.store(false, Ordering::Relaxed);
    check_pages(&fs, fh, at);
    // Space is back: writing works again.
    for i in at..at + 8 {
        assert_eq!(fs.write(&Ctx::root(), fh, (i * P) as u64, &page_pattern(i)).unwrap(), P);
    }
    check_pages(&fs, fh, at + 8);
    fs.check_invariants().unwrap();
}

#[test]
fn noswap_budget_is_a_hard_cap() {
    let mut cfg = config(4, 1024, true);
    cfg.swap = None;
    let fs = Filesystem::new(cfg).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 4);
    assert_eq!(
        fs.write(&Ctx::root(), fh, (4 * P) as u64, &page_pattern(4)),
        Err(FsError::NoSpace)
    );
    check_pages(&fs, fh, 4);
    fs.check_invariants().unwrap();
}

#[test]
fn fallocate_reserves_without_ram() {
    let fs = Filesystem::with_swap_backend(config(2, 64, true), Box::new(MemorySwap::new(None))).unwrap();
    let fh = new_file(&fs, "f");
    fs.fallocate(&Ctx::root(), fh, 0, 40 * PAGE_SIZE, FallocateMode::Allocate)
        .unwrap();
    let u = fs.usage();
    assert_eq!((u.charged_pages, u.reserved_pages, u.frames_in_use), (40, 40, 0));
    assert_eq!(
        fs.fallocate(&Ctx::root(), fh, 0, 65 * PAGE_SIZE, FallocateMode::Allocate),
        Err(FsError::NoSpace)
    );
    assert_eq!(fs.usage().charged_pages, 40, "a failed fallocate left a trace");
    write_pages(&fs, fh, 40);
    check_pages(&fs, fh, 40);
    assert_eq!(fs.usage().charged_pages, 40);
    fs.check_invariants().unwrap();
}

#[test]
fn swap_file_is_private_and_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let swap = FileSwap::create(dir.path()).unwrap();
    let mut page = rtmpfs_core::swap::AlignedPage::zeroed().unwrap();
    page.fill(7);
    swap.write_page(3, &page).unwrap();
    let mut back = rtmpfs_core::swap::AlignedPage::zeroed().unwrap();
    swap.read_page(3, &mut back).unwrap();
    assert_eq!(back[..], page[..]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "swap file visible in its directory"
    );
    let mut found = false;
    for fd in std::fs::read_dir("/proc/self/fd").unwrap() {
        let fd = fd.unwrap().path();
        let Ok(target) = std::fs::read_link(&fd) else { continue };
        let t = target.to_string_lossy();
        if t.starts_with(&*dir.path().to_string_lossy()) {
            use std::os::unix::fs::MetadataExt;
            assert!(t.ends_with("(deleted)"), "swap file has a name: {t}");
            assert_eq!(std::fs::metadata(&fd).unwrap().mode() & 0o777, 0o600);
            found = true;
        }
    }
    assert!(found, "swap file fd not found");
}

#[test]
fn missing_swap_dir_is_a_config_error() {
    let mut cfg = config(4, 64, true);
    cfg.swap = Some(SwapConfig {
        dir: "/nonexistent/rtmpfs".into(),
        size_bytes: None,
        encrypt: true,
    });
    let err = Filesystem::new(cfg).unwrap_err();
    assert!(err.0.contains("/nonexistent/rtmpfs"), "{err}");
    let mut cfg = config(4, 64, true);
    cfg.memory_bytes = Some(128 * PAGE_SIZE);
    assert!(Filesystem::new(cfg).unwrap_err().0.contains("larger than size"));
}

#[test]
fn encryption_hides_plaintext_at_rest() {
    struct Recording(Arc<MemorySwap>);
    impl SwapBackend for Recording {
        fn write_page(&self, slot: u64, page: &rtmpfs_core::swap::AlignedPage) -> std::io::Result<()> {
            self.0.write_page(slot, page)
        }
        fn read_page(&self, slot: u64, page: &mut rtmpfs_core::swap::AlignedPage) -> std::io::Result<()> {
            self.0.read_page(slot, page)
        }
    }
    for encrypt in [true, false] {
        let store = Arc::new(MemorySwap::new(None));
        let fs = Filesystem::with_swap_backend(config(1, 64, encrypt), Box::new(Recording(store.clone()))).unwrap();
        let fh = new_file(&fs, "secret");
        let secret = b"TOP-SECRET-rtmpfs-".repeat(200);
        fs.write(&Ctx::root(), fh, 0, &secret).unwrap();
        fs.write(&Ctx::root(), fh, 64 * 1024, b"other").unwrap();
        fs.evict_now(16);
        let mut page = rtmpfs_core::swap::AlignedPage::zeroed().unwrap();
        let mut seen_plain = false;
        for slot in 0..fs.usage().swap_slots_used + 2 {
            if store.read_page(slot, &mut page).is_ok() {
                seen_plain |= page.windows(18).any(|w| w == b"TOP-SECRET-rtmpfs-");
            }
        }
        assert_eq!(seen_plain, !encrypt, "encrypt={encrypt}");
        assert_eq!(fs.read_vec(fh, 0, secret.len()).unwrap(), secret);
    }
}

#[test]
fn concurrent_io_under_a_tiny_budget_finishes_and_balances() {
    let mut cfg = config(4, 4096, true);
    cfg.background_threads = true;
    let fs = Arc::new(Filesystem::with_swap_backend(cfg, Box::new(MemorySwap::new(None))).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4u8 {
        let fs = fs.clone();
        threads.push(std::thread::spawn(move || {
            let name = format!("f{}", t % 2);
            let ctx = Ctx::root();
            let fh = if let Ok((_, fh)) = fs.create(&ctx, fs.root(), OsStr::new(&name), 0o644, OpenFlags::READ_WRITE) {
                fh
            } else {
                let ino = fs.lookup(&ctx, fs.root(), OsStr::new(&name)).unwrap().ino;
                fs.open(&ctx, ino, OpenFlags::READ_WRITE).unwrap()
            };
            let ino = fs.handle_ino(fh).unwrap();
            let mut x = u64::from(t) + 1;
            for _ in 0..400 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = (x % 48) * PAGE_SIZE + x % 97;
                match x % 7 {
                    0 => {
                        let _ = fs.setattr(
                            &ctx,
                            ino,
                            &SetAttr {
                                size: Some(x % (40 * PAGE_SIZE)),
                                ..SetAttr::default()
                            },
                            None,
                        );
                    }
                    1 => {
                        let _ = fs.fallocate(&ctx, fh, off, 3 * PAGE_SIZE, FallocateMode::PunchHole);
                    }
                    2 | 3 => {
                        let _ = fs.write(&ctx, fh, off, &vec![t; 5000]);
                    }
                    _ => {
                        let buf = fs.read_vec(fh, off, 9000).unwrap();
                        assert!(buf.iter().all(|&b| b < 4), "byte never written");
                    }
                }
            }
            fs.release(fh).unwrap();
        }));
    }
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "hang: swap stress did not finish"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watchdog.join().unwrap();
    fs.check_invariants().unwrap();
    assert!(fs.usage().frames_in_use <= 4);
    for name in ["f0", "f1"] {
        fs.unlink(&Ctx::root(), fs.root(), OsStr::new(name)).unwrap();
    }
    let u = fs.usage();
    assert_eq!((u.charged_pages, u.swap_slots_used), (0, 0), "{u:?}");
}

// ----- faults (issue 15): a failed page never shortens a read, a full swap hides nothing -----

/// Usage figures that must balance after a fault: the accounting invariant, no frame beyond the
/// budget plus the swap-in reserve, no swap slot beyond the pages that can hold one.
fn check_balanced(fs: &Filesystem, memory_pages: u64) {
    fs.check_invariants().unwrap();
    let u = fs.usage();
    assert!(u.frames_in_use <= memory_pages + 1, "{u:?}");
    assert!(u.swap_slots_used <= u.swapped_pages + u.resident_pages, "{u:?}");
}

/// Write pages of `fh` from page `from` until the first error; returns the first page that did
/// not land and the error.
fn fill_until_error(fs: &Filesystem, fh: rtmpfs_core::Fh, from: usize, limit: usize) -> (usize, FsError) {
    for i in from..limit {
        if let Err(e) = fs.write(&Ctx::root(), fh, (i * P) as u64, &page_pattern(i)) {
            return (i, e);
        }
    }
    panic!("{limit} pages fit: the memory and swap limits were not reached");
}

/// Regression: a read whose range held a poisoned page after readable ones returned the
/// readable pages as a short count, which FUSE (and any caller) takes for EOF.
#[test]
fn poisoned_page_in_the_middle_fails_the_whole_read() {
    let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
    let fs = Filesystem::with_swap_backend(config(2, 64, true), Box::new(faulty)).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 8);
    fs.evict_now(16);
    // Page 3 alone goes bad.
    control.fail_reads.store(true, Ordering::Relaxed);
    assert_eq!(fs.read_vec(fh, (3 * P) as u64, P), Err(FsError::Io));
    control.fail_reads.store(false, Ordering::Relaxed);
    assert_eq!(fs.usage().poisoned_pages, 1);
    // Pages 0..3 are readable (and swap back in), page 3 is not: the read fails, not short.
    let mut buf = vec![0u8; 8 * P];
    assert_eq!(fs.read(fh, 0, &mut buf), Err(FsError::Io));
    assert_eq!(fs.read_vec(fh, 0, 8 * P), Err(FsError::Io));
    assert_eq!(fs.read_vec(fh, (2 * P) as u64, 2 * P), Err(FsError::Io));
    // Also with the pages before it resident.
    check_pages(&fs, fh, 3);
    assert_eq!(fs.read_vec(fh, 0, 4 * P), Err(FsError::Io));
    // copy_file_range reads through the same path.
    let out = new_file(&fs, "out");
    assert_eq!(
        fs.copy_file_range(&Ctx::root(), fh, 0, out, 0, (8 * P) as u64),
        Err(FsError::Io)
    );
    // Every other page reads right; the ranges on either side of page 3 read whole.
    assert_eq!(fs.read_vec(fh, 0, 3 * P).unwrap().len(), 3 * P);
    assert_eq!(
        fs.read_vec(fh, (4 * P) as u64, 8 * P).unwrap().len(),
        4 * P,
        "short only at EOF"
    );
    for i in (0..8).filter(|&i| i != 3) {
        assert_eq!(fs.read_vec(fh, (i * P) as u64, P).unwrap(), page_pattern(i), "page {i}");
    }
    assert_eq!(fs.getattr(fs.handle_ino(fh).unwrap()).unwrap().size, (8 * P) as u64);
    check_balanced(&fs, 2);
}

/// Regression: with memory and swap both full of dirty pages (`memory=4 pages`, a 4-slot swap,
/// the ninth page rightly `ENOSPC`), reading a swapped page gave `ENOSPC`: reclaim found only
/// dirty pages it could not write out. A swap-in overdraws the budget by the reserve and the
/// overdraft is paid back from clean frames.
#[test]
fn full_swap_keeps_every_stored_byte_readable() {
    let fs = Filesystem::with_swap_backend(config(4, 1024, true), Box::new(MemorySwap::new(Some(4)))).unwrap();
    let fh = new_file(&fs, "f");
    let (stored, err) = fill_until_error(&fs, fh, 0, 64);
    assert_eq!((stored, err), (8, FsError::NoSpace));
    check_balanced(&fs, 4);
    // Every byte, in either order, several times over (each pass swaps every page in).
    for _ in 0..3 {
        check_pages(&fs, fh, stored);
        for i in 0..stored {
            assert_eq!(fs.read_vec(fh, (i * P) as u64, P).unwrap(), page_pattern(i), "page {i}");
        }
        assert_eq!(fs.read_vec(fh, 0, 64 * P).unwrap().len(), stored * P);
        check_balanced(&fs, 4);
    }
    // Partial writes into swapped pages need them back too.
    for i in 0..stored {
        assert_eq!(fs.write(&Ctx::root(), fh, (i * P + 7) as u64, b"x").unwrap(), 1);
    }
    for i in 0..stored {
        let mut want = page_pattern(i);
        want[7] = b'x';
        assert_eq!(fs.read_vec(fh, (i * P) as u64, P).unwrap(), want, "page {i}");
    }
    check_balanced(&fs, 4);
    assert_eq!(fs.usage().poisoned_pages, 0);
    delete_and_check_empty(&fs, fh, "f");
}

/// Regression: with the swap file's filesystem full (a write that would grow the file fails with
/// `ENOSPC`), reads of swapped pages failed. Slots the file already spans are reused, and a
/// swap-in can always proceed.
#[test]
fn swap_filesystem_full_keeps_stored_data_readable() {
    let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
    let fs = Filesystem::with_swap_backend(config(4, 1024, true), Box::new(faulty)).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 8);
    control.disk_full.store(true, Ordering::Relaxed);
    let (stored, err) = fill_until_error(&fs, fh, 8, 64);
    assert_eq!(err, FsError::NoSpace, "a full swap filesystem is ENOSPC for new data");
    assert!(stored >= 8);
    for _ in 0..3 {
        check_pages(&fs, fh, stored);
        check_balanced(&fs, 4);
    }
    assert_eq!(fs.usage().poisoned_pages, 0);
    // Space is back: writing works again.
    control.disk_full.store(false, Ordering::Relaxed);
    for i in stored..stored + 8 {
        assert_eq!(fs.write(&Ctx::root(), fh, (i * P) as u64, &page_pattern(i)).unwrap(), P);
    }
    check_pages(&fs, fh, stored + 8);
    check_balanced(&fs, 4);
    delete_and_check_empty(&fs, fh, "f");
}

/// Regression: a swap device that fails every I/O was reported as `ENOSPC` to writers. New data
/// that cannot get a frame is `EIO`; swapped pages are `EIO` (poisoned), resident pages stay
/// readable, the size is unchanged, and nothing leaks.
#[test]
fn dead_swap_device_is_eio_not_enospc() {
    let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
    let fs = Filesystem::with_swap_backend(config(4, 1024, true), Box::new(faulty)).unwrap();
    let fh = new_file(&fs, "f");
    write_pages(&fs, fh, 8);
    // Pages 0 and 1 back in RAM, clean (their swap copy kept).
    check_pages(&fs, fh, 2);
    let ino = fs.handle_ino(fh).unwrap();
    control.fail_writes.store(true, Ordering::Relaxed);
    control.fail_reads.store(true, Ordering::Relaxed);
    // The engine learns that the device fails from a failed I/O (a clean page dropped before
    // that is lost with the device; nothing can know sooner): here a read of page 2. From then
    // on clean pages stay in RAM, since their swap copy may be unreadable.
    assert_eq!(fs.read_vec(fh, (2 * P) as u64, P), Err(FsError::Io));
    assert_eq!(fs.evict_now(16), 0);
    assert_eq!(fs.evict_now(16), 0);
    // New data fills what RAM is free, then is EIO: the device is broken, not full.
    let (end, err) = fill_until_error(&fs, fh, 8, 64);
    assert_eq!(err, FsError::Io, "a dead swap device is not ENOSPC");
    assert!(end < 8 + 4, "more new pages than the budget holds: {end}");
    check_pages(&fs, fh, 2);
    for i in 8..end {
        assert_eq!(fs.read_vec(fh, (i * P) as u64, P).unwrap(), page_pattern(i));
    }
    let mut readable = (end - 8) as u64;
    for i in 0..8 {
        match fs.read_vec(fh, (i * P) as u64, P) {
            Ok(bytes) => {
                assert_eq!(bytes, page_pattern(i), "page {i}");
                readable += 1;
            }
            Err(e) => assert_eq!(e, FsError::Io, "page {i}"),
        }
    }
    let u = fs.usage();
    assert_eq!(readable, u.resident_pages, "{u:?}");
    assert_eq!(readable + u.poisoned_pages, end as u64, "{u:?}");
    assert_eq!(fs.read_vec(fh, 0, end * P), Err(FsError::Io), "never a short read");
    assert_eq!(fs.getattr(ino).unwrap().size, (end * P) as u64);
    check_balanced(&fs, 4);
    control.fail_writes.store(false, Ordering::Relaxed);
    control.fail_reads.store(false, Ordering::Relaxed);
    delete_and_check_empty(&fs, fh, "f");
}
