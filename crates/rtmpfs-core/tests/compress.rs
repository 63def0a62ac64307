//! The compressed tier (`Config::compression`): every page-state transition through the
//! public API — resident → compressed → resident, compressed → swapped (the pool full) →
//! resident, incompressible → swapped (and not tried again), zero pages stored as nothing —
//! with `noswap`, and with a failing swap device.

use std::ffi::OsStr;

use rtmpfs_core::swap::{FaultySwap, MemorySwap};
use rtmpfs_core::sync::Ordering;
use rtmpfs_core::{
    Compression, Config, Ctx, Fh, Filesystem, FsError, OpenFlags, ReadMode, ReadOutcome, SeekWhence, SwapConfig, Usage,
    PAGE_SIZE,
};

const P: usize = PAGE_SIZE as usize;

fn config(algo: Compression, memory_pages: u64, compress_max: Option<u64>) -> Config {
    Config {
        size_bytes: Some(4096 * PAGE_SIZE),
        memory_bytes: Some(memory_pages * PAGE_SIZE),
        swap: Some(SwapConfig {
            dir: std::env::temp_dir(),
            size_bytes: None,
            encrypt: true,
        }),
        compression: algo,
        compress_max_bytes: compress_max,
        background_threads: false,
        ..Config::default()
    }
}

fn mem_swap(config: Config) -> Filesystem {
    Filesystem::with_swap_backend(config, Box::new(MemorySwap::new(None))).unwrap()
}

/// A log-like page: compresses many times over.
fn text_page(idx: usize) -> Vec<u8> {
    let line = format!(
        "2026-12-05T11:35:{:02}Z INFO rtmpfs: page {idx} of the log file\n",
        idx % 60
    );
    line.bytes().cycle().take(P).collect()
}

/// A page that compresses to about 60 %: its first 2400 bytes random, the rest zeros.
fn half_page(idx: usize) -> Vec<u8> {
    let mut page = random_page(idx);
    page[2400..].fill(0);
    page
}

/// A page that compresses to about 920 bytes: its first 900 bytes random, the rest zeros. Four
/// such records fit a swap slot.
fn quarter_page(idx: usize) -> Vec<u8> {
    let mut page = random_page(idx + 1000);
    page[900..].fill(0);
    page
}

fn random_page(idx: usize) -> Vec<u8> {
    let mut x = (idx as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..P)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn new_file(fs: &Filesystem, name: &str) -> Fh {
    fs.create(&Ctx::root(), fs.root(), OsStr::new(name), 0o644, OpenFlags::READ_WRITE)
        .unwrap()
        .1
}

fn write_all(fs: &Filesystem, fh: Fh, pages: usize, page: fn(usize) -> Vec<u8>) {
    for i in 0..pages {
        assert_eq!(
            fs.write(&Ctx::root(), fh, (i * P) as u64, &page(i)).unwrap(),
            P,
            "page {i}"
        );
    }
}

fn check_all(fs: &Filesystem, fh: Fh, pages: usize, page: fn(usize) -> Vec<u8>) {
    for i in (0..pages).rev() {
        assert!(
            fs.read_vec(fh, (i * P) as u64, P).unwrap() == page(i),
            "page {i} reads wrong"
        );
    }
}

fn delete_all(fs: &Filesystem, fh: Fh, name: &str) {
    fs.release(fh).unwrap();
    fs.unlink(&Ctx::root(), fs.root(), OsStr::new(name)).unwrap();
    let u = fs.usage();
    assert_eq!(
        (
            u.charged_pages,
            u.compressed_pages,
            u.zero_pages,
            u.pool_bytes,
            u.swap_slots_used,
            u.frames_in_use
        ),
        (0, 0, 0, 0, 0, 0),
        "{u:?}"
    );
    fs.check_invariants().unwrap();
}

fn pool_ram_pages(u: &Usage) -> u64 {
    u.pool_bytes.div_ceil(PAGE_SIZE)
}

#[test]
fn resident_compressed_resident_without_swap_io() {
    for algo in [Compression::Lz4, Compression::Zstd] {
        let fs = mem_swap(config(algo, 8, None));
        let fh = new_file(&fs, "log");
        write_all(&fs, fh, 32, text_page);
        let u = fs.usage();
        assert!(u.compressed_pages >= 16, "{algo:?}: {u:?}");
        assert_eq!(
            (u.evictions, u.swap_slots_used, u.swapped_pages),
            (0, 0, 0),
            "{algo:?}: {u:?}"
        );
        assert!(u.pool_ratio().unwrap() > 4.0, "{algo:?}: ratio {:?}", u.pool_ratio());
        assert!(
            u.frames_in_use + pool_ram_pages(&u) <= 8,
            "{algo:?}: over the budget: {u:?}"
        );
        assert_eq!(u.compression, algo);
        fs.check_invariants().unwrap();
        check_all(&fs, fh, 32, text_page);
        let u = fs.usage();
        assert!(u.pool_hits >= 16, "{algo:?}: {u:?}");
        assert_eq!((u.swap_ins, u.swap_slots_used), (0, 0), "{algo:?}: {u:?}");
        fs.check_invariants().unwrap();
        delete_all(&fs, fh, "log");
    }
}

#[test]
fn a_full_pool_sends_its_coldest_pages_to_swap_and_they_come_back() {
    for algo in [Compression::Lz4, Compression::Zstd] {
        // A pool of two pages: about three half-random entries.
        let fs = mem_swap(config(algo, 16, Some(2 * PAGE_SIZE)));
        let fh = new_file(&fs, "f");
        write_all(&fs, fh, 48, half_page);
        let u = fs.usage();
        assert!(u.pool_writebacks > 0 && u.swapped_pages > 0, "{algo:?}: {u:?}");
        assert!(u.compressed_pages > 0, "{algo:?}: {u:?}");
        assert!(u.pool_bytes <= 2 * PAGE_SIZE, "{algo:?}: {u:?}");
        assert!(u.frames_in_use + pool_ram_pages(&u) <= 16, "{algo:?}: {u:?}");
        fs.check_invariants().unwrap();
        // The first pages went compressed, then to swap: they read back from swap.
        check_all(&fs, fh, 48, half_page);
        let u = fs.usage();
        assert!(u.swap_ins > 0 && u.pool_hits > 0, "{algo:?}: {u:?}");
        fs.check_invariants().unwrap();
        // Changed after coming back, and evicted again.
        assert_eq!(fs.write(&Ctx::root(), fh, 5, b"changed").unwrap(), 7);
        fs.evict_now(16);
        let mut want = half_page(0);
        want[5..12].copy_from_slice(b"changed");
        assert!(fs.read_vec(fh, 0, P).unwrap() == want);
        fs.check_invariants().unwrap();
        delete_all(&fs, fh, "f");
    }
}

#[test]
fn incompressible_pages_go_straight_to_swap_and_are_tried_once() {
    for algo in [Compression::Lz4, Compression::Zstd] {
        // Swap for 8 pages, RAM for 8: 16 random pages fill both.
        let fs = Filesystem::with_swap_backend(config(algo, 8, None), Box::new(MemorySwap::new(Some(8)))).unwrap();
        let fh = new_file(&fs, "random");
        write_all(&fs, fh, 16, random_page);
        for _ in 0..4 {
            // The swap is full: every resident page is a candidate again and again.
            fs.evict_now(8);
        }
        let u = fs.usage();
        assert_eq!(
            (u.compressed_pages, u.pool_stores, u.pool_bytes),
            (0, 0, 0),
            "{algo:?}: {u:?}"
        );
        assert_eq!(u.swapped_pages, 8, "{algo:?}: {u:?}");
        assert!(u.pool_rejected >= 8, "{algo:?}: {u:?}");
        assert!(
            u.pool_rejected <= 16,
            "{algo:?}: a page was tried more than once: {u:?}"
        );
        assert_eq!(
            u.pool_rejected_by_estimate, u.pool_rejected,
            "{algo:?}: random pages are rejected by the estimate, with no trial: {u:?}"
        );
        check_all(&fs, fh, 16, random_page);
        fs.check_invariants().unwrap();
        delete_all(&fs, fh, "random");
    }
}

/// Page `idx` of a mix: random, random with a 10 % zero tail (too little for the estimate to
/// call it incompressible, too much random for a compressor), and `half_page` (compresses).
fn mixed_page(idx: usize) -> Vec<u8> {
    let mut page = random_page(idx);
    match idx % 3 {
        0 => {}
        1 => page[P - P / 10..].fill(0),
        _ => return half_page(idx),
    }
    page
}

#[test]
fn the_estimate_rejects_random_pages_and_leaves_the_rest_to_the_trial() {
    for algo in [Compression::Lz4, Compression::Zstd] {
        let fs = mem_swap(config(algo, 8, None));
        let fh = new_file(&fs, "mixed");
        write_all(&fs, fh, 48, mixed_page);
        fs.evict_now(8);
        let u = fs.usage();
        assert!(
            u.pool_rejected_by_estimate >= 4,
            "{algo:?}: random pages not caught: {u:?}"
        );
        assert!(
            u.pool_rejected_by_estimate <= 16,
            "{algo:?}: more pages rejected by the estimate than random ones: {u:?}"
        );
        assert!(
            u.pool_rejected >= u.pool_rejected_by_estimate + 4,
            "{algo:?}: the 10 %-zero pages were not left to the trial: {u:?}"
        );
        assert!(
            u.pool_stores >= 4,
            "{algo:?}: the compressible pages were not stored: {u:?}"
        );
        check_all(&fs, fh, 48, mixed_page);
        fs.check_invariants().unwrap();
        delete_all(&fs, fh, "mixed");
    }
}

#[test]
fn zero_pages_are_stored_as_nothing() {
    let fs = mem_swap(config(Compression::Lz4, 8, None));
    let fh = new_file(&fs, "zeros");
    write_all(&fs, fh, 32, |_| vec![0u8; P]);
    let u = fs.usage();
    assert!(u.zero_pages >= 16, "{u:?}");
    assert_eq!(
        (u.pool_bytes, u.swap_slots_used, u.compressed_pages),
        (0, 0, 0),
        "{u:?}"
    );
    assert_eq!(u.charged_pages, 32, "zero pages are still charged against size");
    fs.check_invariants().unwrap();
    // Data, not holes.
    assert_eq!(fs.lseek(fh, 0, SeekWhence::Data).unwrap(), 0);
    assert_eq!(fs.lseek(fh, 0, SeekWhence::Hole).unwrap(), 32 * PAGE_SIZE);
    check_all(&fs, fh, 32, |_| vec![0u8; P]);
    // A write into a zero page.
    assert_eq!(fs.write(&Ctx::root(), fh, 3, b"xyz").unwrap(), 3);
    let mut want = vec![0u8; P];
    want[3..6].copy_from_slice(b"xyz");
    assert!(fs.read_vec(fh, 0, P).unwrap() == want);
    fs.check_invariants().unwrap();
    delete_all(&fs, fh, "zeros");
}

#[test]
fn a_nowait_read_of_a_compressed_page_does_not_block() {
    let fs = mem_swap(config(Compression::Lz4, 8, None));
    let fh = new_file(&fs, "log");
    write_all(&fs, fh, 32, text_page);
    let hits = fs.usage().pool_hits;
    let mut buf = vec![0u8; 4 * P];
    // The first pages were evicted first: they are in the pool.
    match fs.read_with(fh, 0, &mut buf, ReadMode::NoWait).unwrap() {
        ReadOutcome::Done(n) => assert_eq!(n, 4 * P),
        ReadOutcome::WouldBlock => panic!("a compressed page needs no I/O"),
    }
    for i in 0..4 {
        assert!(buf[i * P..(i + 1) * P] == text_page(i)[..], "page {i}");
    }
    assert!(fs.usage().pool_hits > hits);
    fs.check_invariants().unwrap();
    delete_all(&fs, fh, "log");
}

#[test]
fn a_scan_leaves_the_pool_alone_and_a_second_read_brings_a_page_back() {
    let fs = mem_swap(config(Compression::Lz4, 8, None));
    let fh = new_file(&fs, "log");
    // Write until the budget is full to the page: frames + the pool's pages = 8.
    let mut pages = 0;
    loop {
        assert_eq!(
            fs.write(&Ctx::root(), fh, (pages * P) as u64, &text_page(pages))
                .unwrap(),
            P
        );
        pages += 1;
        let u = fs.usage();
        if pages >= 16 && u.frames_in_use + pool_ram_pages(&u) == 8 {
            break;
        }
        assert!(pages < 200, "the budget never filled: {u:?}");
    }
    let hits = fs.usage().pool_hits;
    let read0 = || assert!(fs.read_vec(fh, 0, P).unwrap() == text_page(0));
    // Page 0 went to the pool first. A first read serves it without taking a frame from anyone.
    read0();
    assert_eq!(fs.usage().pool_hits, hits + 1);
    // A second read brings it back into RAM (reclaiming another page for it)...
    read0();
    assert_eq!(fs.usage().pool_hits, hits + 2);
    // ...so the third finds it resident.
    read0();
    assert_eq!(fs.usage().pool_hits, hits + 2);
    fs.check_invariants().unwrap();
    delete_all(&fs, fh, "log");
}

#[test]
fn truncate_and_punch_give_compressed_pages_back() {
    let fs = mem_swap(config(Compression::Zstd, 8, None));
    let fh = new_file(&fs, "log");
    write_all(&fs, fh, 32, text_page);
    assert!(fs.usage().compressed_pages > 0);
    fs.fallocate(
        &Ctx::root(),
        fh,
        PAGE_SIZE + 100,
        4 * PAGE_SIZE,
        rtmpfs_core::FallocateMode::PunchHole,
    )
    .unwrap();
    let mut want = text_page(1);
    want[100..].fill(0);
    assert!(fs.read_vec(fh, PAGE_SIZE, P).unwrap() == want);
    fs.check_invariants().unwrap();
    let set = rtmpfs_core::SetAttr {
        size: Some(3 * PAGE_SIZE / 2),
        ..rtmpfs_core::SetAttr::default()
    };
    let ino = fs.handle_ino(fh).unwrap();
    fs.setattr(&Ctx::root(), ino, &set, None).unwrap();
    let u = fs.usage();
    assert_eq!(u.charged_pages, 2, "{u:?}");
    fs.check_invariants().unwrap();
    delete_all(&fs, fh, "log");
}

#[test]
fn with_noswap_the_pool_is_the_only_destination() {
    let mut cfg = config(Compression::Lz4, 8, None);
    cfg.swap = None;
    let fs = Filesystem::new(cfg).unwrap();
    let fh = new_file(&fs, "log");
    // 32 pages of text in 8 pages of RAM: the pool takes them.
    write_all(&fs, fh, 32, text_page);
    let u = fs.usage();
    assert!(u.compressed_pages >= 24, "{u:?}");
    assert!(u.frames_in_use + pool_ram_pages(&u) <= 8, "{u:?}");
    check_all(&fs, fh, 32, text_page);
    fs.check_invariants().unwrap();
    // Random data cannot be compressed: the budget fills and writes fail with NoSpace.
    let g = new_file(&fs, "random");
    let mut err = None;
    for i in 0..64 {
        if let Err(e) = fs.write(&Ctx::root(), g, (i * P) as u64, &random_page(i)) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(FsError::NoSpace));
    check_all(&fs, fh, 32, text_page);
    fs.check_invariants().unwrap();
    fs.release(g).unwrap();
    fs.unlink(&Ctx::root(), fs.root(), OsStr::new("random")).unwrap();
    delete_all(&fs, fh, "log");
}

#[test]
fn a_failing_swap_loses_nothing_that_was_in_the_pool() {
    for algo in [Compression::Lz4, Compression::Zstd] {
        let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
        let fs = Filesystem::with_swap_backend(config(algo, 16, Some(8 * PAGE_SIZE)), Box::new(faulty)).unwrap();
        let fh = new_file(&fs, "f");
        // Healthy: 18 pages in 16 pages of RAM, the cold ones in the pool, none on swap.
        write_all(&fs, fh, 18, half_page);
        let u = fs.usage();
        assert!(u.compressed_pages > 0, "{algo:?}: {u:?}");
        assert_eq!((u.swapped_pages, u.pool_writebacks), (0, 0), "{algo:?}: {u:?}");
        // Now the swap device fails every write and every read: the pool fills, and its
        // write-backs fail and keep their entries.
        control.fail_writes.store(true, Ordering::Relaxed);
        control.fail_reads.store(true, Ordering::Relaxed);
        let mut written = 18;
        for i in 18..96 {
            match fs.write(&Ctx::root(), fh, (i * P) as u64, &half_page(i)) {
                Ok(n) => {
                    assert_eq!(n, P);
                    written = i + 1;
                }
                Err(e) => {
                    assert!(matches!(e, FsError::Io | FsError::NoSpace), "{algo:?}: {e:?}");
                    break;
                }
            }
        }
        let u = fs.usage();
        assert!(written > 18, "{algo:?}: the pool took nothing more: {u:?}");
        assert!(
            u.swap_write_errors > 0,
            "{algo:?}: the full pool's write-back was not tried: {u:?}"
        );
        assert_eq!((u.swapped_pages, u.poisoned_pages), (0, 0), "{algo:?}: {u:?}");
        fs.check_invariants().unwrap();
        // Every page was in RAM or in the pool: all read right while the device still fails.
        check_all(&fs, fh, written, half_page);
        assert_eq!(fs.usage().poisoned_pages, 0);
        // Healthy again: the pool drains to swap as new pages come, and everything is there.
        control.fail_reads.store(false, Ordering::Relaxed);
        control.fail_writes.store(false, Ordering::Relaxed);
        write_all(&fs, fh, 96, half_page);
        let u = fs.usage();
        assert!(
            u.swap_records > 0 && u.swap_records_written >= u.swap_records,
            "{algo:?}: the pool drained to swap as compressed records: {u:?}"
        );
        fs.check_invariants().unwrap();
        check_all(&fs, fh, 96, half_page);
        fs.check_invariants().unwrap();
        delete_all(&fs, fh, "f");
    }
}

#[test]
fn a_memory_cut_compresses_even_without_swap_and_cuts_the_pool() {
    let mut cfg = config(Compression::Lz4, 32, Some(8 * PAGE_SIZE));
    cfg.swap = None;
    let fs = Filesystem::new(cfg).unwrap();
    let fh = new_file(&fs, "log");
    write_all(&fs, fh, 24, text_page);
    assert_eq!(fs.usage().compressed_pages, 0, "all resident before the cut");
    // With noswap, a cut is taken by compressing.
    fs.set_memory_limit(8).unwrap();
    let u = fs.usage();
    assert!(u.frames_in_use + pool_ram_pages(&u) <= 8, "{u:?}");
    assert!(u.compressed_pages >= 16, "{u:?}");
    assert_eq!(
        u.pool_limit_bytes,
        Some(2 * PAGE_SIZE),
        "the cap keeps its share of the budget"
    );
    check_all(&fs, fh, 24, text_page);
    fs.check_invariants().unwrap();
    delete_all(&fs, fh, "log");
}

#[test]
fn compression_needs_a_budget_and_room_for_frames() {
    let mut cfg = Config {
        compression: Compression::Lz4,
        ..Config::default()
    };
    assert!(Filesystem::new(cfg.clone()).is_err(), "compress without memory=");
    cfg.memory_bytes = Some(16 * PAGE_SIZE);
    cfg.compress_max_bytes = Some(16 * PAGE_SIZE);
    assert!(Filesystem::new(cfg.clone()).is_err(), "a pool as large as the budget");
    cfg.compress_max_bytes = Some(4 * PAGE_SIZE);
    assert!(Filesystem::new(cfg).is_ok());
}

/// A filesystem with RAM for every page (`memory_pages`) and a one-page pool: `evict_now`
/// compresses pages, and all but the pool's few go to swap as compressed records.
fn records_fs(algo: Compression, backend: Box<dyn rtmpfs_core::swap::SwapBackend>) -> Filesystem {
    Filesystem::with_swap_backend(config(algo, 64, Some(PAGE_SIZE)), backend).unwrap()
}

#[test]
fn written_back_pages_are_packed_sealed_records_read_by_their_sectors() {
    for algo in [Compression::Lz4, Compression::Zstd] {
        let fs = records_fs(algo, Box::new(MemorySwap::new(None)));
        let fh = new_file(&fs, "f");
        write_all(&fs, fh, 32, quarter_page);
        assert_eq!(fs.usage().swapped_pages, 0);
        fs.evict_now(32);
        let u = fs.usage();
        // Resident → compressed → swapped (a compressed record).
        assert!(u.swap_records >= 16, "{algo:?}: {u:?}");
        assert_eq!(
            u.swapped_pages, u.swap_records,
            "{algo:?}: every swapped page is a record: {u:?}"
        );
        assert_eq!(u.swap_slots_used, u.swap_record_slots, "{algo:?}: {u:?}");
        assert!(
            3 * u.swap_record_slots <= u.swap_records + 3,
            "{algo:?}: records of ~920 bytes are not packed several to a slot: {u:?}"
        );
        assert_eq!(u.swap_bytes_written, u.swap_record_slots * PAGE_SIZE, "{algo:?}: {u:?}");
        assert!(u.swap_record_bytes < u.swap_records * 1000, "{algo:?}: {u:?}");
        fs.check_invariants().unwrap();
        // → resident: each record read alone, by the 512-byte sectors that hold it (a record of
        // ~920 bytes spans at most three), never a whole slot.
        check_all(&fs, fh, 32, quarter_page);
        let v = fs.usage();
        assert_eq!(v.swap_records_read, u.swap_records, "{algo:?}: {v:?}");
        assert!(
            v.swap_bytes_read <= v.swap_records_read * 3 * 512,
            "{algo:?}: read more than the records' sectors: {v:?}"
        );
        assert_eq!(v.swap_ins, u.swap_records, "{algo:?}: {v:?}");
        // Read back, each record stays as its frame's swap copy (the swap cache).
        assert_eq!(v.swapped_pages, 0, "{algo:?}: {v:?}");
        assert_eq!(
            (v.swap_records, v.swap_record_slots),
            (u.swap_records, u.swap_record_slots),
            "{algo:?}: {v:?}"
        );
        fs.check_invariants().unwrap();
        // Evicted again unchanged: back to their records, with no compression and no write.
        fs.evict_now(32);
        let w = fs.usage();
        assert_eq!(w.swapped_pages, u.swapped_pages, "{algo:?}: {w:?}");
        assert_eq!(w.swap_bytes_written, v.swap_bytes_written, "{algo:?}: {w:?}");
        // Only the pages that had been in the pool (no copy in swap) are compressed again.
        assert_eq!(w.pool_stores - v.pool_stores, u.compressed_pages, "{algo:?}: {w:?}");
        assert_eq!(w.clean_evictions - v.clean_evictions, u.swap_records, "{algo:?}: {w:?}");
        fs.check_invariants().unwrap();
        check_all(&fs, fh, 32, quarter_page);
        // The first change of a page frees its record: changed all, the swap is empty.
        for i in 0..32u64 {
            fs.write(&Ctx::root(), fh, i * PAGE_SIZE, b"changed").unwrap();
        }
        let x = fs.usage();
        assert_eq!(
            (x.swapped_pages, x.swap_records, x.swap_record_slots, x.swap_slots_used),
            (0, 0, 0, 0),
            "{algo:?}: {x:?}"
        );
        fs.check_invariants().unwrap();
        delete_all(&fs, fh, "f");
    }
}

#[test]
fn records_sharing_a_slot_die_in_any_order_and_the_slot_is_reused_only_then() {
    let fs = records_fs(Compression::Lz4, Box::new(MemorySwap::new(None)));
    let fh = new_file(&fs, "old");
    write_all(&fs, fh, 40, quarter_page);
    fs.evict_now(40);
    let u = fs.usage();
    assert!(
        u.swap_records >= 24 && u.swap_record_slots * 2 <= u.swap_records,
        "{u:?}"
    );
    // Punch every other page, in a scrambled order: records die one by one in their slots.
    let punched: Vec<usize> = (0..40).map(|i| i * 7 % 40).filter(|i| i % 2 == 0).collect();
    for &i in &punched {
        fs.fallocate(
            &Ctx::root(),
            fh,
            (i * P) as u64,
            P as u64,
            rtmpfs_core::FallocateMode::PunchHole,
        )
        .unwrap();
        fs.check_invariants().unwrap();
    }
    let v = fs.usage();
    assert!(v.swap_records < u.swap_records, "{u:?} -> {v:?}");
    // New records now: they may take only the slots whose records are all dead. Had a slot
    // been reused while a record in it lived, that record would fail to authenticate (EIO).
    let g = new_file(&fs, "new");
    write_all(&fs, g, 40, half_page);
    fs.evict_now(40);
    assert!(fs.usage().swap_records > v.swap_records, "{:?}", fs.usage());
    fs.check_invariants().unwrap();
    for i in 0..40 {
        let want = if i % 2 == 0 { vec![0u8; P] } else { quarter_page(i) };
        assert!(
            fs.read_vec(fh, (i * P) as u64, P).unwrap() == want,
            "page {i} reads wrong"
        );
    }
    check_all(&fs, g, 40, half_page);
    assert_eq!(fs.usage().poisoned_pages, 0);
    fs.release(g).unwrap();
    fs.unlink(&Ctx::root(), fs.root(), OsStr::new("new")).unwrap();
    delete_all(&fs, fh, "old");
}

#[test]
fn a_corrupt_record_is_eio_and_its_slot_mates_read_right() {
    for algo in [Compression::Lz4, Compression::Zstd] {
        let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
        let fs = records_fs(algo, Box::new(faulty));
        let fh = new_file(&fs, "f");
        write_all(&fs, fh, 32, quarter_page);
        fs.evict_now(32);
        let u = fs.usage();
        assert!(
            u.swap_records >= 16 && u.swap_record_slots * 2 <= u.swap_records,
            "{algo:?}: {u:?}"
        );
        // Every slot read now has byte 17 flipped: that is inside the record at the start of
        // each slot, and in none of its slot-mates.
        control.corrupt_reads.store(true, Ordering::Relaxed);
        let mut lost = 0;
        for i in 0..32 {
            match fs.read_vec(fh, (i * P) as u64, P) {
                Ok(page) => assert!(page == quarter_page(i), "{algo:?}: page {i} reads wrong"),
                Err(e) => {
                    assert_eq!(e, FsError::Io, "{algo:?}: page {i}");
                    lost += 1;
                }
            }
        }
        let v = fs.usage();
        assert_eq!(
            lost, u.swap_record_slots,
            "{algo:?}: one record per slot corrupted: {v:?}"
        );
        assert_eq!((v.poisoned_pages, v.swap_read_errors), (lost, lost), "{algo:?}: {v:?}");
        // A lost page's record is freed; a page read right keeps its record as its copy.
        assert_eq!(v.swap_records, u.swap_records - lost, "{algo:?}: {v:?}");
        fs.check_invariants().unwrap();
        control.corrupt_reads.store(false, Ordering::Relaxed);
        fs.release(fh).unwrap();
        fs.unlink(&Ctx::root(), fs.root(), OsStr::new("f")).unwrap();
        let w = fs.usage();
        assert_eq!((w.swap_records, w.swap_slots_used), (0, 0), "{algo:?}: {w:?}");
        fs.check_invariants().unwrap();
    }
}

#[test]
fn records_round_trip_through_a_real_swap_file_by_sector_reads() {
    // The real backend (`O_DIRECT` where the directory allows it): a record is read by its
    // sectors (`FileSwap::read_part`), at offsets inside its slot that are not sector-aligned.
    for algo in [Compression::Lz4, Compression::Zstd] {
        let fs = Filesystem::new(config(algo, 64, Some(PAGE_SIZE))).unwrap();
        let fh = new_file(&fs, "f");
        write_all(&fs, fh, 32, quarter_page);
        fs.evict_now(32);
        let u = fs.usage();
        assert!(
            u.swap_records >= 16 && 3 * u.swap_record_slots <= u.swap_records + 3,
            "{algo:?}: {u:?}"
        );
        check_all(&fs, fh, 32, quarter_page);
        let v = fs.usage();
        assert_eq!((v.poisoned_pages, v.swap_read_errors), (0, 0), "{algo:?}: {v:?}");
        assert_eq!(v.swap_records_read, u.swap_records, "{algo:?}: {v:?}");
        assert!(v.swap_bytes_read <= v.swap_records_read * 3 * 512, "{algo:?}: {v:?}");
        fs.check_invariants().unwrap();
        delete_all(&fs, fh, "f");
    }
}

/// A swap backend that counts read I/Os: one per call, whatever its size.
struct CountingIo {
    inner: MemorySwap,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl rtmpfs_core::swap::SwapBackend for CountingIo {
    fn write_page(&self, slot: u64, page: &rtmpfs_core::swap::AlignedPage) -> std::io::Result<()> {
        self.inner.write_page(slot, page)
    }

    fn write_pages(&self, first: u64, pages: &[&rtmpfs_core::swap::AlignedPage]) -> std::io::Result<()> {
        self.inner.write_pages(first, pages)
    }

    fn read_page(&self, slot: u64, page: &mut rtmpfs_core::swap::AlignedPage) -> std::io::Result<()> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_page(slot, page)
    }

    fn read_pages(&self, first: u64, pages: &mut [&mut rtmpfs_core::swap::AlignedPage]) -> std::io::Result<()> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_pages(first, pages)
    }

    fn read_part(&self, slot: u64, offset: usize, buf: &mut [u8]) -> std::io::Result<()> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_part(slot, offset, buf)
    }
}

/// A sequential reader of pages that went to swap as compressed records gets them a run of
/// record slots per read I/O (the synchronous read-ahead here; the read-ahead thread uses the
/// same path), not one small read per page; a random reader still reads one record alone, by
/// its sectors. Every page reads right.
#[test]
fn a_sequential_reader_gets_records_a_slot_run_per_read() {
    for algo in [Compression::Lz4, Compression::Zstd] {
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let backend = CountingIo {
            inner: MemorySwap::new(None),
            reads: reads.clone(),
        };
        let fs = Filesystem::with_swap_backend(config(algo, 64, Some(PAGE_SIZE)), Box::new(backend)).unwrap();
        let fh = new_file(&fs, "f");
        write_all(&fs, fh, 128, quarter_page);
        fs.evict_now(usize::MAX);
        let u = fs.usage();
        assert!(u.swap_records >= 100, "{algo:?}: {u:?}");
        let before = reads.load(std::sync::atomic::Ordering::Relaxed);
        for chunk in 0..16 {
            let got = fs.read_vec(fh, (chunk * 8 * P) as u64, 8 * P).unwrap();
            for (j, page) in got.chunks(P).enumerate() {
                assert!(
                    page == &quarter_page(chunk * 8 + j)[..],
                    "{algo:?}: page {}",
                    chunk * 8 + j
                );
            }
        }
        let v = fs.usage();
        let ios = reads.load(std::sync::atomic::Ordering::Relaxed) - before;
        let records_read = v.swap_records_read - u.swap_records_read;
        assert!(records_read >= 100, "{algo:?}: {v:?}");
        // Records of ~920 bytes, several to a slot: a run per read means far fewer reads
        // than records (one per record before).
        assert!(
            ios * 4 <= records_read,
            "{algo:?}: {ios} read I/Os for {records_read} records"
        );
        assert_eq!(v.poisoned_pages, 0, "{algo:?}");
        fs.check_invariants().unwrap();
        // A random read of a record: one small read of its sectors.
        fs.evict_now(usize::MAX);
        let w = fs.usage();
        let before = reads.load(std::sync::atomic::Ordering::Relaxed);
        let bytes = w.swap_bytes_read;
        assert!(fs.read_vec(fh, (77 * P) as u64, P).unwrap() == quarter_page(77));
        let x = fs.usage();
        if x.swap_records_read > w.swap_records_read {
            assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed) - before, 1, "{algo:?}");
            assert!(x.swap_bytes_read - bytes <= 3 * 512, "{algo:?}: {x:?}");
        }
        delete_all(&fs, fh, "f");
    }
}

/// A removed file's pool entries leave the pool's queue soon, with nothing admitted after: a
/// dead entry's `Weak`s keep its header and its inode allocated, uncharged, so a queue pruned
/// only at admissions kept a removed tree's metadata for good (issue 14's RSS over its bound).
/// The evictor prunes on every wake-up (at least every 200 ms) once an eighth of the queue is
/// dead; here all of it is.
#[test]
fn a_removed_files_pool_entries_leave_the_queue_without_new_admissions() {
    for algo in [Compression::Lz4, Compression::Zstd] {
        let fs = mem_swap(Config {
            background_threads: true,
            ..config(algo, 1024, Some(512 * PAGE_SIZE))
        });
        let fh = new_file(&fs, "f");
        write_all(&fs, fh, 2048, quarter_page);
        fs.evict_now(2048);
        let queued = fs.pool_queue_len();
        assert!(
            queued >= 512,
            "{algo:?}: only {queued} entries queued: {:?}",
            fs.usage()
        );
        delete_all(&fs, fh, "f");
        assert_eq!(fs.usage().pool_bytes, 0, "{algo:?}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fs.pool_queue_len() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(
            fs.pool_queue_len(),
            0,
            "{algo:?}: {queued} dead entries still queued after 10 s"
        );
        fs.check_invariants().unwrap();
    }
}
