//! Deterministic schedule exploration with shuttle, through the public API, with every lock,
//! atomic and condition variable of the engine replaced by shuttle's (feature `shuttle`: the
//! engine's `sync` module maps to shuttle's), so shuttle controls every interleaving point:
//!
//! * here: write × read × truncate × punch on one file; every read must return bytes some
//!   linearization allows, and the accounting invariant must hold at the end of every schedule;
//! * [`budget`]: write × fault-in × truncate × punch × evict on one file under a RAM budget of
//!   two pages, the real evictor and read-ahead threads, and readers × partial writer ×
//!   evictor on a dying swap device; the compressed tier's states (compressed, zero, written
//!   back) under faults, writes, a punch and eviction; named regressions for every failing
//!   schedule found;
//! * [`snapshot`]: a snapshot racing changes to one inode and its directory (copy-on-write of
//!   metadata: exactly one capture of each, checked by the engine's debug assertions; the
//!   image one state of the tree).
//!
//! Run: `cargo test -p rtmpfs-core --features shuttle --test tests shuttle`.
//! `RTMPFS_SHUTTLE_ITERS` sets the schedules per strategy of the first group (default 300).

use std::ffi::OsStr;

use rtmpfs_core::swap::MemorySwap;
use rtmpfs_core::sync::{thread, Arc};
use rtmpfs_core::{Config, Ctx, FallocateMode, Filesystem, OpenFlags, SetAttr, SwapConfig, PAGE_SIZE};

const P: u64 = PAGE_SIZE;
/// The file starts as two pages of `OLD`.
const SIZE: u64 = 2 * P;
const OLD: u8 = 0xAA;
const NEW: u8 = 0xBB;
/// The writer writes `NEW` here.
const W: (u64, u64) = (1000, 5000);
/// The truncator cuts to `CUT` and grows back to `SIZE`.
const CUT: u64 = 3000;
/// The puncher punches here.
const PUNCH: (u64, u64) = (6000, 7000);

fn iters() -> usize {
    std::env::var("RTMPFS_SHUTTLE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

/// The values a read may see at offset `o`, whatever the interleaving.
fn allowed(o: u64, b: u8) -> bool {
    let written = (W.0..W.1).contains(&o);
    // Zero where the cut, the punch, or growing back can leave it.
    let may_be_zero = o >= CUT || (PUNCH.0..PUNCH.1).contains(&o);
    b == OLD || (written && b == NEW) || (may_be_zero && b == 0)
}

fn check_read(off: u64, buf: &[u8]) {
    // The size a reader sees is SIZE, CUT, or W.1 (the writer extending a cut file).
    let end = off + buf.len() as u64;
    assert!(
        [SIZE, CUT, W.1].contains(&end) || end == off,
        "read [{off}, {end}) does not end at any size the file had"
    );
    for (i, &b) in buf.iter().enumerate() {
        let o = off + i as u64;
        assert!(allowed(o, b), "byte {b:#x} at {o} is neither old, new nor a hole");
    }
}

#[allow(clippy::needless_pass_by_value)] // the scenario owns the engine its threads clone
fn scenario(fs: Arc<Filesystem>) {
    let ctx = Ctx::root();
    let (attr, fh) = fs
        .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&ctx, fh, 0, &[OLD; SIZE as usize]).unwrap();
    let ino = attr.ino;
    let writer = {
        let fs = fs.clone();
        thread::spawn(move || {
            let n = fs.write(&Ctx::root(), fh, W.0, &[NEW; (W.1 - W.0) as usize]).unwrap();
            assert_eq!(n as u64, W.1 - W.0);
        })
    };
    let reader = {
        let fs = fs.clone();
        thread::spawn(move || {
            for off in [0, 900, 4096] {
                let buf = fs.read_vec(fh, off, SIZE as usize).unwrap();
                check_read(off, &buf);
            }
        })
    };
    let truncator = {
        let fs = fs.clone();
        thread::spawn(move || {
            let set = |size| SetAttr {
                size: Some(size),
                ..SetAttr::default()
            };
            fs.setattr(&Ctx::root(), ino, &set(CUT), None).unwrap();
            fs.setattr(&Ctx::root(), ino, &set(SIZE), None).unwrap();
        })
    };
    let puncher = {
        let fs = fs.clone();
        thread::spawn(move || {
            fs.fallocate(&Ctx::root(), fh, PUNCH.0, PUNCH.1 - PUNCH.0, FallocateMode::PunchHole)
                .unwrap();
        })
    };
    for t in [writer, reader, truncator, puncher] {
        t.join().unwrap();
    }
    // Quiescent: the whole file must be a state some order of the four operations leaves.
    let size = fs.getattr(ino).unwrap().size;
    assert!(size == SIZE || size == W.1, "final size {size}");
    let all = fs.read_vec(fh, 0, SIZE as usize).unwrap();
    check_read(0, &all);
    assert!(
        all[..W.0 as usize].iter().all(|&b| b == OLD),
        "head untouched by anyone"
    );
    fs.check_invariants().unwrap();
    fs.release(fh).unwrap();
    fs.unlink(&ctx, fs.root(), OsStr::new("f")).unwrap();
    let u = fs.usage();
    assert_eq!((u.charged_pages, u.inodes), (0, 1), "{u:?}");
}

fn plain() -> Arc<Filesystem> {
    Arc::new(
        Filesystem::new(Config {
            size_bytes: Some(16 * P),
            background_threads: false,
            ..Config::default()
        })
        .unwrap(),
    )
}

fn tiny_ram() -> Arc<Filesystem> {
    let cfg = Config {
        size_bytes: Some(16 * P),
        memory_bytes: Some(2 * P),
        swap: Some(SwapConfig {
            dir: std::env::temp_dir(),
            size_bytes: None,
            encrypt: false,
        }),
        background_threads: false,
        ..Config::default()
    };
    Arc::new(Filesystem::with_swap_backend(cfg, Box::new(MemorySwap::new(None))).unwrap())
}

#[test]
fn shuttle_write_read_truncate_punch_random() {
    shuttle::check_random(|| scenario(plain()), iters());
}

#[test]
fn shuttle_write_read_truncate_punch_pct() {
    shuttle::check_pct(|| scenario(plain()), iters(), 3);
}

#[test]
fn shuttle_write_read_truncate_punch_tiny_ram_random() {
    shuttle::check_random(|| scenario(tiny_ram()), iters());
}

#[test]
fn shuttle_write_read_truncate_punch_tiny_ram_pct() {
    shuttle::check_pct(|| scenario(tiny_ram()), iters(), 3);
}

/// Under a RAM budget: eviction, swap-in, read-ahead and a dying swap device.
mod budget {
    use std::ffi::OsStr;

    use rtmpfs_core::swap::{FaultySwap, MemorySwap};
    use rtmpfs_core::sync::{thread, Arc};
    use rtmpfs_core::{Compression, Config, Ctx, FallocateMode, Filesystem, OpenFlags, SetAttr, SwapConfig, PAGE_SIZE};

    const P: u64 = PAGE_SIZE;
    const PAGES: u64 = 4;

    fn fs_with_tiny_budget() -> Arc<Filesystem> {
        let cfg = Config {
            size_bytes: Some(64 * P),
            memory_bytes: Some(2 * P),
            swap: Some(SwapConfig {
                dir: std::env::temp_dir(),
                size_bytes: None,
                encrypt: false,
            }),
            background_threads: false,
            ..Config::default()
        };
        Arc::new(Filesystem::with_swap_backend(cfg, Box::new(MemorySwap::new(None))).unwrap())
    }

    /// Bytes every reader may legitimately see: 1 (initial data), 2 (the writer's), 0 (holes from
    /// truncate or punch). Anything else is stale or invented data.
    fn allowed(b: u8) -> bool {
        b <= 2
    }

    fn scenario() {
        let fs = fs_with_tiny_budget();
        let ctx = Ctx::root();
        let (attr, fh) = fs
            .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        fs.write(&ctx, fh, 0, &vec![1u8; (PAGES * P) as usize]).unwrap();
        fs.evict_now(4);
        let ino = attr.ino;

        let writer = {
            let fs = fs.clone();
            thread::spawn(move || {
                let _ = fs.write(&Ctx::root(), fh, 100, &vec![2u8; 6000]);
            })
        };
        let reader = {
            let fs = fs.clone();
            thread::spawn(move || {
                for off in [0, P + 7, 3 * P] {
                    if let Ok(buf) = fs.read_vec(fh, off, (P + 50) as usize) {
                        assert!(buf.iter().all(|&b| allowed(b)), "reader saw a byte nobody wrote");
                    }
                }
            })
        };
        let truncater = {
            let fs = fs.clone();
            thread::spawn(move || {
                let set = |size| SetAttr {
                    size: Some(size),
                    ..SetAttr::default()
                };
                fs.setattr(&Ctx::root(), ino, &set(P + 300), None).unwrap();
                fs.setattr(&Ctx::root(), ino, &set(PAGES * P), None).unwrap();
            })
        };
        let puncher = {
            let fs = fs.clone();
            thread::spawn(move || {
                let _ = fs.fallocate(&Ctx::root(), fh, 2000, 5000, FallocateMode::PunchHole);
            })
        };
        let evictor = {
            let fs = fs.clone();
            thread::spawn(move || {
                fs.evict_now(2);
                fs.evict_now(2);
            })
        };
        for t in [writer, reader, truncater, puncher, evictor] {
            t.join().unwrap();
        }

        fs.check_invariants().unwrap();
        let all = fs.read_vec(fh, 0, (PAGES * P) as usize).unwrap();
        assert!(all.iter().all(|&b| allowed(b)));
        // The truncate to P + 300 dropped every byte past it, and only the writer (up to 6100) writes
        // afterwards: past 6100 a non-zero byte would be stale data brought back.
        assert!(all[6100..].iter().all(|&b| b == 0), "stale bytes survived the truncate");
        delete_and_check_empty(&fs, fh, "f");
        fs.check_invariants().unwrap();
    }

    /// Whole-page overwrites (which publish a new frame instead of reading a swapped page back)
    /// racing a reader's swap-in with read-ahead, eviction and a whole-page punch.
    fn overwrite_scenario() {
        let fs = fs_with_tiny_budget();
        let ctx = Ctx::root();
        let (_, fh) = fs
            .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        fs.write(&ctx, fh, 0, &vec![1u8; (3 * P) as usize]).unwrap();
        fs.evict_now(4);

        let writer = {
            let fs = fs.clone();
            thread::spawn(move || {
                fs.write(&Ctx::root(), fh, 0, &vec![2u8; (2 * P) as usize]).unwrap();
            })
        };
        let reader = {
            let fs = fs.clone();
            thread::spawn(move || {
                let buf = fs.read_vec(fh, 0, (3 * P) as usize).unwrap();
                for (i, page) in buf.chunks(P as usize).enumerate() {
                    assert!(page.iter().all(|&b| b == page[0]), "page {i} read torn");
                    let ok: &[u8] = [&[1u8, 2][..], &[0, 1, 2], &[1]][i];
                    assert!(ok.contains(&page[0]), "page {i} read {}", page[0]);
                }
            })
        };
        let puncher = {
            let fs = fs.clone();
            thread::spawn(move || {
                fs.fallocate(&Ctx::root(), fh, P, P, FallocateMode::PunchHole).unwrap();
            })
        };
        let evictor = {
            let fs = fs.clone();
            thread::spawn(move || {
                fs.evict_now(2);
                fs.evict_now(2);
            })
        };
        for t in [writer, reader, puncher, evictor] {
            t.join().unwrap();
        }
        fs.check_invariants().unwrap();
        let all = fs.read_vec(fh, 0, (3 * P) as usize).unwrap();
        let p = P as usize;
        assert!(all[..p].iter().all(|&b| b == 2), "the overwrite of page 0 was lost");
        assert!(all[p..2 * p].iter().all(|&b| b == all[p]) && [0, 2].contains(&all[p]));
        assert!(all[2 * p..].iter().all(|&b| b == 1), "page 2 changed");
        delete_and_check_empty(&fs, fh, "f");
    }

    #[test]
    fn shuttle_overwrite_swapin_punch_evict_random() {
        shuttle::check_random(overwrite_scenario, 1000);
    }

    #[test]
    fn shuttle_overwrite_swapin_punch_evict_pct() {
        shuttle::check_pct(overwrite_scenario, 1000, 3);
    }

    /// Sequential reads with the real background threads (evictor and swap read-ahead, run as
    /// shuttle threads): the reader waits for read-ahead windows while a whole-page overwrite and a
    /// truncate race them. Dropping the filesystem at the end stops and joins both threads.
    fn readahead_scenario() {
        let cfg = Config {
            size_bytes: Some(64 * P),
            memory_bytes: Some(3 * P),
            swap: Some(SwapConfig {
                dir: std::env::temp_dir(),
                size_bytes: None,
                encrypt: false,
            }),
            background_threads: true,
            ..Config::default()
        };
        let fs = Arc::new(Filesystem::with_swap_backend(cfg, Box::new(MemorySwap::new(None))).unwrap());
        let ctx = Ctx::root();
        let (attr, fh) = fs
            .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        for i in 0..6u8 {
            fs.write(&ctx, fh, u64::from(i) * P, &vec![10 + i; P as usize]).unwrap();
        }
        fs.evict_now(8);
        let reader = {
            let fs = fs.clone();
            thread::spawn(move || {
                for chunk in 0..3u64 {
                    let Ok(buf) = fs.read_vec(fh, chunk * 2 * P, (2 * P) as usize) else {
                        continue;
                    };
                    for (j, page) in buf.chunks(P as usize).enumerate() {
                        let i = chunk * 2 + j as u64;
                        let ok = [10 + i as u8, 99, 0];
                        assert!(page.iter().all(|&b| b == page[0]), "page {i} torn");
                        assert!(ok.contains(&page[0]), "page {i} read {}", page[0]);
                    }
                }
            })
        };
        let writer = {
            let fs = fs.clone();
            thread::spawn(move || {
                fs.write(&Ctx::root(), fh, 3 * P, &vec![99u8; P as usize]).unwrap();
            })
        };
        let truncater = {
            let fs = fs.clone();
            let ino = attr.ino;
            thread::spawn(move || {
                let set = SetAttr {
                    size: Some(5 * P),
                    ..SetAttr::default()
                };
                fs.setattr(&Ctx::root(), ino, &set, None).unwrap();
            })
        };
        for t in [reader, writer, truncater] {
            t.join().unwrap();
        }
        fs.stop_background_threads();
        fs.check_invariants().unwrap();
        let all = fs.read_vec(fh, 0, (6 * P) as usize).unwrap();
        assert_eq!(all.len(), (5 * P) as usize);
        for (i, page) in all.chunks(P as usize).enumerate() {
            let want = if i == 3 { 99 } else { 10 + i as u8 };
            assert!(page.iter().all(|&b| b == want), "page {i} holds {}", page[0]);
        }
        delete_and_check_empty(&fs, fh, "f");
    }

    #[test]
    fn shuttle_readahead_with_background_threads_random() {
        shuttle::check_random(readahead_scenario, 300);
    }

    /// Found by `shuttle_readahead_with_background_threads_random`: shutting down, the filesystem
    /// set the stop flag and notified the evictor between the evictor's check of that flag and its
    /// wait, so the evictor slept through the notification (for its 200 ms timeout in real life;
    /// for ever under shuttle, which reported a deadlock). `wake_all` now sets the kick flag, which
    /// the evictor checks under the lock before waiting.
    #[test]
    fn regression_evictor_sleeps_through_shutdown() {
        shuttle::check_random_with_seed(readahead_scenario, 39, 1);
    }

    #[test]
    fn shuttle_write_fault_truncate_punch_evict_random() {
        shuttle::check_random(scenario, 1500);
    }

    #[test]
    fn shuttle_write_fault_truncate_punch_evict_pct() {
        shuttle::check_pct(scenario, 1500, 3);
    }

    /// Found by `shuttle_write_fault_truncate_punch_evict_random`: a reader swapping page 1 in lost
    /// the race to the truncate, which swapped the page in itself, zeroed its tail, and had it evicted
    /// again to the same (lowest free) slot; with a constant nonce the reader's stale copy matched the
    /// new `Swapped` entry and was published, bringing truncated bytes back. Fixed by unique nonces.
    #[test]
    fn regression_swap_slot_aba() {
        shuttle::check_random_with_seed(scenario, 3_493_422_758_328_174_263, 1);
    }

    /// Found by `shuttle_write_fault_truncate_punch_evict_pct`: a reader needing a frame swept an
    /// empty CLOCK ring (another thread had popped the only candidates and was still looking at
    /// them), then slept waiting for a frame release that never came, because that thread put the
    /// candidates back instead of evicting them. Now a fruitless sweep yields and looks again before
    /// sleeping, and sleeping only waits for a release that happens after it looked.
    #[test]
    fn regression_waiter_sleeps_through_sweep() {
        shuttle::check_random_with_seed(scenario, 17_542_619_729_801_016_659, 1);
    }

    /// A swap device that dies mid-run (issue 15): readers of swapped and resident pages, a writer
    /// of new data, the evictor, and a thread that makes every swap read and write fail. A read is
    /// whole and right or fails with `Io`, never short and never `NoSpace`; new data lands or gets
    /// `Io`; afterwards the invariant holds, a page that fails is exactly a poisoned one, and
    /// nothing leaks.
    fn dying_swap_scenario() {
        let cfg = Config {
            size_bytes: Some(64 * P),
            memory_bytes: Some(2 * P),
            swap: Some(SwapConfig {
                dir: std::env::temp_dir(),
                size_bytes: None,
                encrypt: false,
            }),
            background_threads: false,
            ..Config::default()
        };
        let (faulty, control) = FaultySwap::new(Box::new(MemorySwap::new(None)));
        let fs = Arc::new(Filesystem::with_swap_backend(cfg, Box::new(faulty)).unwrap());
        let ctx = Ctx::root();
        let (_, fh) = fs
            .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        for i in 0..4u8 {
            fs.write(&ctx, fh, u64::from(i) * P, &vec![10 + i; P as usize]).unwrap();
        }
        let reader = |pages: [u64; 2]| {
            let fs = fs.clone();
            thread::spawn(move || {
                for idx in pages {
                    match fs.read_vec(fh, idx * P, (2 * P) as usize) {
                        Ok(buf) => {
                            assert_eq!(buf.len(), (2 * P) as usize, "short read at page {idx}");
                            for (j, page) in buf.chunks(P as usize).enumerate() {
                                let want = 10 + (idx as usize + j) as u8;
                                assert!(page.iter().all(|&b| b == want), "page {} wrong", idx as usize + j);
                            }
                        }
                        Err(e) => assert_eq!(e, rtmpfs_core::FsError::Io, "page {idx}"),
                    }
                }
            })
        };
        let readers = [reader([0, 2]), reader([2, 0])];
        let writer = {
            let fs = fs.clone();
            thread::spawn(move || match fs.write(&Ctx::root(), fh, 4 * P, &[14u8; P as usize]) {
                Ok(n) => assert_eq!(n, P as usize),
                Err(e) => assert_eq!(e, rtmpfs_core::FsError::Io, "new data on a dying device"),
            })
        };
        let killer = thread::spawn(move || {
            control.fail_reads.store(true, rtmpfs_core::sync::Ordering::Relaxed);
            control.fail_writes.store(true, rtmpfs_core::sync::Ordering::Relaxed);
        });
        let evictor = {
            let fs = fs.clone();
            thread::spawn(move || {
                fs.evict_now(2);
            })
        };
        for t in readers.into_iter().chain([writer, killer, evictor]) {
            t.join().unwrap();
        }
        fs.check_invariants().unwrap();
        let size = fs.getattr(fs.handle_ino(fh).unwrap()).unwrap().size;
        assert!(size == 4 * P || size == 5 * P, "size {size}");
        let mut failed = 0;
        for idx in 0..size / P {
            match fs.read_vec(fh, idx * P, P as usize) {
                Ok(page) => assert!(page.iter().all(|&b| b == 10 + idx as u8), "page {idx} wrong"),
                Err(e) => {
                    assert_eq!(e, rtmpfs_core::FsError::Io);
                    failed += 1;
                }
            }
        }
        let u = fs.usage();
        assert_eq!(
            failed, u.poisoned_pages,
            "failed pages are exactly the poisoned ones: {u:?}"
        );
        delete_and_check_empty(&fs, fh, "f");
    }

    #[test]
    fn shuttle_dying_swap_readers_writer_evict_random() {
        shuttle::check_random(dying_swap_scenario, 500);
    }

    #[test]
    fn shuttle_dying_swap_readers_writer_evict_pct() {
        shuttle::check_pct(dying_swap_scenario, 500, 3);
    }

    /// The compressed tier (issue 14): six pages in three pages of RAM with a pool of two small
    /// entries, so they sit in every state — resident, compressed, zero, swapped (written back
    /// from the full pool) — while a reader faults them in, a writer changes part of a
    /// compressed page and overwrites another whole, a puncher removes one and the evictor
    /// compresses and writes back. Every page reads whole (never torn) and as some order of the
    /// operations allows; the end state is exact; the invariants (pool bytes included) hold.
    fn compressed_scenario() {
        let cfg = Config {
            size_bytes: Some(64 * P),
            memory_bytes: Some(3 * P),
            swap: Some(SwapConfig {
                dir: std::env::temp_dir(),
                size_bytes: None,
                encrypt: false,
            }),
            compression: Compression::Lz4,
            compress_max_bytes: Some(400),
            background_threads: false,
            ..Config::default()
        };
        let fs = Arc::new(Filesystem::with_swap_backend(cfg, Box::new(MemorySwap::new(None))).unwrap());
        let ctx = Ctx::root();
        let (_, fh) = fs
            .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        // Page i holds byte FILL[i]; page 1 is zeros.
        const FILL: [u8; 6] = [1, 0, 3, 4, 5, 6];
        for (i, &b) in FILL.iter().enumerate() {
            fs.write(&ctx, fh, i as u64 * P, &vec![b; P as usize]).unwrap();
        }
        fs.evict_now(6);
        let u = fs.usage();
        // Swapped pages are records (written back from the tiny pool): the reader's swap-ins
        // keep them as swap copies, which the writer's and the puncher's changes drop while
        // the evictor sends unchanged pages back to them.
        assert!(
            u.compressed_pages > 0 && u.zero_pages > 0 && u.swapped_pages > 0 && u.swap_records > 0,
            "{u:?}"
        );

        let writer = {
            let fs = fs.clone();
            thread::spawn(move || {
                fs.write(&Ctx::root(), fh, 50, &[2u8; 100]).unwrap();
                fs.write(&Ctx::root(), fh, 2 * P, &vec![7u8; P as usize]).unwrap();
            })
        };
        let reader = {
            let fs = fs.clone();
            thread::spawn(move || {
                let all = fs.read_vec(fh, 0, (6 * P) as usize).unwrap();
                for (i, page) in all.chunks(P as usize).enumerate() {
                    let ok = match i {
                        0 => page
                            .iter()
                            .enumerate()
                            .all(|(o, &b)| b == 1 || ((50..150).contains(&o) && b == 2)),
                        2 => page.iter().all(|&b| b == page[0]) && [3, 7].contains(&page[0]),
                        3 => page.iter().all(|&b| b == page[0]) && [4, 0].contains(&page[0]),
                        _ => page.iter().all(|&b| b == FILL[i]),
                    };
                    assert!(ok, "page {i} read wrong or torn");
                }
            })
        };
        let puncher = {
            let fs = fs.clone();
            thread::spawn(move || {
                fs.fallocate(&Ctx::root(), fh, 3 * P, P, FallocateMode::PunchHole)
                    .unwrap();
            })
        };
        let evictor = {
            let fs = fs.clone();
            thread::spawn(move || {
                fs.evict_now(2);
                fs.evict_now(2);
            })
        };
        for t in [writer, reader, puncher, evictor] {
            t.join().unwrap();
        }
        fs.check_invariants().unwrap();
        let all = fs.read_vec(fh, 0, (6 * P) as usize).unwrap();
        for (i, page) in all.chunks(P as usize).enumerate() {
            let want: Vec<u8> = match i {
                0 => (0..P as usize)
                    .map(|o| if (50..150).contains(&o) { 2 } else { 1 })
                    .collect(),
                2 => vec![7; P as usize],
                3 => vec![0; P as usize],
                _ => vec![FILL[i]; P as usize],
            };
            assert!(page == want.as_slice(), "page {i} ends wrong");
        }
        delete_and_check_empty(&fs, fh, "f");
        assert_eq!(fs.usage().pool_bytes, 0);
        fs.check_invariants().unwrap();
    }

    #[test]
    fn shuttle_compressed_fault_write_punch_evict_random() {
        shuttle::check_random(compressed_scenario, 1000);
    }

    #[test]
    fn shuttle_compressed_fault_write_punch_evict_pct() {
        shuttle::check_pct(compressed_scenario, 1000, 3);
    }

    /// Close `fh`, unlink `name` from the root directory, and check that nothing stays
    /// charged: no page, no swap slot, no frame.
    fn delete_and_check_empty(fs: &Filesystem, fh: rtmpfs_core::Fh, name: &str) {
        fs.release(fh).unwrap();
        fs.unlink(&Ctx::root(), fs.root(), OsStr::new(name)).unwrap();
        let u = fs.usage();
        assert_eq!(
            (u.charged_pages, u.swap_slots_used, u.frames_in_use),
            (0, 0, 0),
            "{u:?}"
        );
    }
}

/// A snapshot racing changes to the same inode and directory (issue 13's copy-on-write of
/// metadata): the walker and the changers each try to capture `d/f` and `d`, exactly one of
/// them does (the engine's debug checks panic on a second capture of an inode), and the image
/// restores to one state the tree was in.
mod snapshot {
    use super::*;
    use rtmpfs_core::{RestoreOptions, XattrSetMode};

    const A: u8 = 0x11;

    fn contents(fs: &Filesystem, ino: rtmpfs_core::Ino) -> Vec<u8> {
        let fh = fs.open(&Ctx::root(), ino, OpenFlags::READ).unwrap();
        let size = usize::try_from(fs.getattr(ino).unwrap().size).unwrap();
        let v = fs.read_vec(fh, 0, size).unwrap();
        fs.release(fh).unwrap();
        v
    }

    /// Intersect `ks` with `allowed`.
    fn keep(ks: &mut Vec<u32>, allowed: &[u32]) {
        ks.retain(|k| allowed.contains(k));
    }

    /// The states of the changer (`k` in 0..=8, see `scenario`) an image's `d` allows: each
    /// inode's part of the image narrows them down; an image of one instant leaves one or two.
    fn states_of(fs: &Filesystem, d: rtmpfs_core::Ino) -> Vec<u32> {
        let ctx = Ctx::root();
        let mut ks: Vec<u32> = (0..=8).collect();
        match fs.getxattr(&ctx, d, OsStr::new("user.s")).ok().as_deref() {
            None => keep(&mut ks, &[0]),
            Some(b"1") => keep(&mut ks, &[1, 2]),
            Some(b"2") => keep(&mut ks, &[3, 4]),
            Some(b"3") => keep(&mut ks, &[5, 6]),
            Some(b"4") => keep(&mut ks, &[7, 8]),
            Some(_) => keep(&mut ks, &[]),
        }
        let f = fs.lookup(&ctx, d, OsStr::new("f")).ok();
        let g = fs.lookup(&ctx, d, OsStr::new("g")).ok();
        let attr = match (f, g) {
            (None, None) => {
                keep(&mut ks, &[8]);
                return ks;
            }
            (Some(a), None) => {
                keep(&mut ks, &[0, 1, 2, 3, 4, 5]);
                a
            }
            (None, Some(a)) => {
                keep(&mut ks, &[6, 7]);
                a
            }
            (Some(_), Some(_)) => return vec![],
        };
        match fs.getxattr(&ctx, attr.ino, OsStr::new("user.v")).unwrap().as_slice() {
            b"0" => keep(&mut ks, &[0, 1]),
            b"1" => keep(&mut ks, &[2, 3, 4, 5, 6, 7]),
            _ => keep(&mut ks, &[]),
        }
        let data = contents(fs, attr.ino);
        if data == [[OLD; P as usize], [OLD; P as usize]].concat() {
            keep(&mut ks, &[0, 1, 2, 3]);
        } else if data == [[A; P as usize], [OLD; P as usize]].concat() {
            keep(&mut ks, &[4, 5, 6, 7]);
        } else {
            keep(&mut ks, &[]);
        }
        ks
    }

    #[allow(clippy::needless_pass_by_value)] // the scenario owns the engine its threads clone
    fn scenario(fs: Arc<Filesystem>) {
        let ctx = Ctx::root();
        let d = fs.mkdir(&ctx, fs.root(), OsStr::new("d"), 0o755).unwrap().ino;
        let (f, fh) = fs
            .create(&ctx, d, OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        fs.write(&ctx, fh, 0, &[OLD; 2 * P as usize]).unwrap();
        fs.setxattr(&ctx, f.ino, OsStr::new("user.v"), b"0", XattrSetMode::Upsert)
            .unwrap();
        let (o, ofh) = fs
            .create(&ctx, d, OsStr::new("o"), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        fs.write(&ctx, ofh, 0, &[NEW; 100]).unwrap();
        fs.release(ofh).unwrap();
        fs.evict_now(usize::MAX);
        let snapper = {
            let fs = fs.clone();
            thread::spawn(move || {
                let mut img = Vec::new();
                fs.snapshot(&mut img).unwrap();
                img
            })
        };
        // States 1..=8, in order, alternating between `d`'s record and `f`: a change that
        // failed to capture its inode first would show in the image with the change before it
        // (captured) missing.
        let file_changer = {
            let fs = fs.clone();
            thread::spawn(move || {
                let ctx = Ctx::root();
                let (s, v) = (OsStr::new("user.s"), OsStr::new("user.v"));
                let set = |ino, name, value: &[u8]| {
                    fs.setxattr(&ctx, ino, name, value, XattrSetMode::Upsert).unwrap();
                };
                set(d, s, b"1");
                set(f.ino, v, b"1");
                set(d, s, b"2");
                fs.write(&ctx, fh, 0, &[A; P as usize]).unwrap();
                set(d, s, b"3");
                fs.rename(
                    &ctx,
                    d,
                    OsStr::new("f"),
                    d,
                    OsStr::new("g"),
                    rtmpfs_core::RenameFlags::default(),
                )
                .unwrap();
                set(d, s, b"4");
                fs.unlink(&ctx, d, OsStr::new("g")).unwrap();
                fs.release(fh).unwrap();
            })
        };
        // The same directory: a name created, then `o` removed.
        let dir_changer = {
            let fs = fs.clone();
            thread::spawn(move || {
                let ctx = Ctx::root();
                fs.mknod(&ctx, d, OsStr::new("n"), libc::S_IFIFO | 0o600, 0).unwrap();
                fs.unlink(&ctx, d, OsStr::new("o")).unwrap();
            })
        };
        file_changer.join().unwrap();
        dir_changer.join().unwrap();
        let img = snapper.join().unwrap();
        assert_eq!(fs.snapshot_pins(), (0, 0));
        fs.check_invariants().unwrap();

        let back = Filesystem::from_image(Config::default(), img.as_slice(), &RestoreOptions::default()).unwrap();
        back.check_invariants().unwrap();
        let bd = back.lookup(&ctx, back.root(), OsStr::new("d")).unwrap().ino;
        let ks = states_of(&back, bd);
        assert!(
            !ks.is_empty(),
            "the image (d's record, d/f) is no state the tree was in"
        );
        let n = back.lookup(&ctx, bd, OsStr::new("n")).is_ok();
        let o_back = back.lookup(&ctx, bd, OsStr::new("o")).ok();
        assert!(n || o_back.is_some(), "`o` removed before `n` was made");
        if let Some(a) = o_back {
            assert_eq!(contents(&back, a.ino), [NEW; 100]);
        }
        let entries = back.getattr(bd).unwrap().size;
        let fg = ["f", "g"]
            .into_iter()
            .filter(|name| back.lookup(&ctx, bd, OsStr::new(name)).is_ok())
            .count();
        let names = fg + usize::from(n) + usize::from(o_back.is_some());
        assert_eq!(entries, 40 + 20 * names as u64, "d's size and entries disagree");
        let _ = o;
    }

    fn tiny() -> Arc<Filesystem> {
        tiny_ram()
    }

    #[test]
    fn shuttle_snapshot_races_changes_to_one_inode_random() {
        shuttle::check_random(|| scenario(plain()), iters());
    }

    #[test]
    fn shuttle_snapshot_races_changes_to_one_inode_pct() {
        shuttle::check_pct(|| scenario(plain()), iters(), 3);
    }

    #[test]
    fn shuttle_snapshot_races_changes_to_one_inode_swapped_random() {
        shuttle::check_random(|| scenario(tiny()), iters());
    }
}
