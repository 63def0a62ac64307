//! One-pass READ (`Filesystem::read_with`): `ReadMode::NoWait` answers `WouldBlock` for a range
//! with a swapped-out page, having done no swap I/O and changed nothing; `ReadMode::Wait` reads
//! it back; pages in RAM are read in one pass either way.

use std::ffi::OsStr;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rtmpfs_core::swap::{AlignedPage, MemorySwap, SwapBackend};
use rtmpfs_core::{Config, Ctx, Filesystem, OpenFlags, ReadMode, ReadOutcome, SwapConfig, PAGE_SIZE};

const P: usize = PAGE_SIZE as usize;

/// A swap backend that counts the pages read from it.
struct CountingSwap {
    inner: MemorySwap,
    reads: Arc<AtomicU64>,
}

impl SwapBackend for CountingSwap {
    fn write_page(&self, slot: u64, page: &AlignedPage) -> io::Result<()> {
        self.inner.write_page(slot, page)
    }

    fn read_page(&self, slot: u64, page: &mut AlignedPage) -> io::Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_page(slot, page)
    }
    // read_pages: the trait's page-by-page default, so every page read is counted.
}

/// A filesystem with a RAM budget of `memory_pages`, its swap counted by the returned counter.
fn budgeted(memory_pages: u64) -> (Filesystem, Arc<AtomicU64>) {
    let reads = Arc::new(AtomicU64::new(0));
    let config = Config {
        size_bytes: Some(1024 * PAGE_SIZE),
        memory_bytes: Some(memory_pages * PAGE_SIZE),
        swap: Some(SwapConfig {
            dir: std::env::temp_dir(),
            size_bytes: None,
            encrypt: true,
        }),
        background_threads: false,
        ..Config::default()
    };
    let backend = CountingSwap {
        inner: MemorySwap::new(None),
        reads: reads.clone(),
    };
    (Filesystem::with_swap_backend(config, Box::new(backend)).unwrap(), reads)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / P) as u8).collect()
}

#[test]
fn nowait_would_block_on_a_swapped_page_without_swap_io_and_wait_reads_it() {
    let (fs, reads) = budgeted(8);
    let ctx = Ctx::root();
    let (attr, fh) = fs
        .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let data = pattern(32 * P);
    assert_eq!(fs.write(&ctx, fh, 0, &data).unwrap(), data.len());
    // Everything out of RAM.
    while fs.evict_now(64) > 0 {}
    let before = fs.usage();
    assert_eq!(before.swapped_pages, 32, "{before:?}");
    let atime = fs.getattr(attr.ino).unwrap().atime;

    let mut buf = vec![0u8; 4 * P];
    assert_eq!(
        fs.read_with(fh, 4 * P as u64, &mut buf, ReadMode::NoWait).unwrap(),
        ReadOutcome::WouldBlock
    );
    let after = fs.usage();
    assert_eq!(reads.load(Ordering::Relaxed), 0, "NoWait read from swap");
    assert_eq!(after.swap_ins, before.swap_ins);
    assert_eq!(after.swapped_pages, 32, "NoWait changed a page: {after:?}");
    assert_eq!(after.frames_in_use, before.frames_in_use);
    assert_eq!(fs.getattr(attr.ino).unwrap().atime, atime, "NoWait touched atime");
    fs.check_invariants().unwrap();

    assert_eq!(
        fs.read_with(fh, 4 * P as u64, &mut buf, ReadMode::Wait).unwrap(),
        ReadOutcome::Done(4 * P)
    );
    assert_eq!(buf, data[4 * P..8 * P]);
    assert!(reads.load(Ordering::Relaxed) >= 4);
    assert!(fs.usage().swap_ins >= 4);

    // Those pages are resident now: NoWait reads them in one pass, with no further swap I/O.
    let seen = reads.load(Ordering::Relaxed);
    buf.fill(0);
    assert_eq!(
        fs.read_with(fh, 4 * P as u64, &mut buf, ReadMode::NoWait).unwrap(),
        ReadOutcome::Done(4 * P)
    );
    assert_eq!(buf, data[4 * P..8 * P]);
    assert_eq!(reads.load(Ordering::Relaxed), seen);
    fs.check_invariants().unwrap();
}

#[test]
fn nowait_reads_resident_pages_holes_and_eof_in_one_pass() {
    let (fs, reads) = budgeted(16);
    let ctx = Ctx::root();
    let (_, fh) = fs
        .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    // A page, a hole, a page; a read past EOF is short.
    fs.write(&ctx, fh, 0, &[7u8; P]).unwrap();
    fs.write(&ctx, fh, 2 * P as u64, &[9u8; 100]).unwrap();
    let mut buf = vec![1u8; 4 * P];
    assert_eq!(
        fs.read_with(fh, 0, &mut buf, ReadMode::NoWait).unwrap(),
        ReadOutcome::Done(2 * P + 100)
    );
    assert!(buf[..P].iter().all(|&b| b == 7));
    assert!(buf[P..2 * P].iter().all(|&b| b == 0));
    assert!(buf[2 * P..2 * P + 100].iter().all(|&b| b == 9));
    assert_eq!(
        fs.read_with(fh, 10 * P as u64, &mut buf, ReadMode::NoWait).unwrap(),
        ReadOutcome::Done(0)
    );
    assert_eq!(reads.load(Ordering::Relaxed), 0);
}

#[test]
fn nowait_then_wait_keeps_a_sequential_reader_sequential() {
    // Without background threads a sequential reader's swap-ins read ahead synchronously to EOF;
    // the NoWait attempt before each Wait must not make the reader look random.
    let (fs, _reads) = budgeted(32);
    let ctx = Ctx::root();
    let (_, fh) = fs
        .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let data = pattern(16 * P);
    fs.write(&ctx, fh, 0, &data).unwrap();
    while fs.evict_now(64) > 0 {}
    let mut buf = vec![0u8; P];
    let mut got = Vec::new();
    let mut waited = 0;
    for i in 0..16u64 {
        let off = i * P as u64;
        let n = match fs.read_with(fh, off, &mut buf, ReadMode::NoWait).unwrap() {
            ReadOutcome::Done(n) => n,
            ReadOutcome::WouldBlock => match fs.read_with(fh, off, &mut buf, ReadMode::Wait).unwrap() {
                ReadOutcome::Done(n) => {
                    waited += 1;
                    n
                }
                ReadOutcome::WouldBlock => panic!("Wait answered WouldBlock"),
            },
        };
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, data);
    // The first read (page 0) is not sequential and brings back only its page; the second
    // (page 1) is, and brings back a run of a quarter of the budget (8 pages, 1..=8), and the
    // read of page 9 the rest: three reads wait, not sixteen.
    assert_eq!(waited, 3, "{:?}", fs.usage());
    assert_eq!(fs.usage().swapped_pages, 0);
}
