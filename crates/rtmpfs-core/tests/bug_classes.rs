//! The classic tmpfs bug classes, one or more tests each: A stale or uninitialised data, B
//! truncate and punch racing reads and writes, C fault and punch loops that must finish and a huge
//! fallocate that must fail at once, D accounting, E directory iteration under concurrent change,
//! F SEEK_DATA / SEEK_HOLE.
//! Where a test matters under memory pressure it runs twice: with no RAM budget, and with a
//! four-page budget and an encrypted swap file, so that eviction and swap-in run constantly.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtmpfs_core::{
    Attr, Config, Ctx, FallocateMode, Fh, Filesystem, FsError, Ino, OpenFlags, SeekWhence, SetAttr, StatFs, SwapConfig,
    Usage, XattrSetMode,
};
use rtmpfs_testkit::engine::EngineBackend;
use rtmpfs_testkit::model::ModelConfig;
use rtmpfs_testkit::{at, Backend, Op, OpenMode, Runner, Whence};

use crate::common::{check, env_usize, seed, within};

const PAGE: u64 = 4096;

fn config(size_pages: Option<u64>, nr_inodes: Option<u64>) -> Config {
    Config {
        size_bytes: size_pages.map(|p| p * PAGE),
        max_inodes: nr_inodes,
        ..Config::default()
    }
}

/// The same, with a four-page RAM budget and a swap file: cold pages leave RAM constantly.
fn tiny_ram(mut c: Config) -> Config {
    c.memory_bytes = Some(4 * PAGE);
    c.swap = Some(SwapConfig::in_temp_dir());
    c.background_threads = false;
    c
}

fn both_ram_modes(size_pages: Option<u64>, nr_inodes: Option<u64>) -> [(&'static str, Config); 2] {
    let c = config(size_pages, nr_inodes);
    [("all resident", c.clone()), ("4-page RAM + swap", tiny_ram(c))]
}

fn root() -> Ctx {
    Ctx::root()
}

fn new_file(fs: &Filesystem, name: &str) -> (Attr, Fh) {
    fs.create(&root(), fs.root(), OsStr::new(name), 0o644, OpenFlags::READ_WRITE)
        .expect("create")
}

fn set_size(fs: &Filesystem, ino: Ino, size: u64) -> Result<Attr, FsError> {
    let set = SetAttr {
        size: Some(size),
        ..SetAttr::default()
    };
    fs.setattr(&root(), ino, &set, None)
}

fn whole(fs: &Filesystem, fh: Fh) -> Vec<u8> {
    let ino = fs.handle_ino(fh).unwrap();
    let size = fs.getattr(ino).unwrap().size;
    fs.read_vec(fh, 0, size as usize).unwrap()
}

// ----- A: stale or uninitialized data -----

#[test]
fn a_truncate_down_then_up_tail_reads_zero() {
    for (mode, cfg) in both_ram_modes(Some(64), None) {
        let fs = Filesystem::new(cfg).unwrap();
        let (a, fh) = new_file(&fs, "f");
        fs.write(&root(), fh, 0, &vec![0xAB; 40_000]).unwrap();
        set_size(&fs, a.ino, 5_000).unwrap();
        set_size(&fs, a.ino, 40_000).unwrap();
        let data = whole(&fs, fh);
        assert_eq!(data.len(), 40_000, "{mode}");
        assert!(data[..5_000].iter().all(|&b| b == 0xAB), "{mode}: head kept");
        let stale = data[5_000..].iter().position(|&b| b != 0);
        assert_eq!(stale, None, "{mode}: stale byte after truncate down+up");
        // Pages past the cut were freed: only pages 0 and 1 (the partial one) remain.
        assert_eq!(fs.getattr(a.ino).unwrap().blocks, 2 * 8, "{mode}");
        // Extending by writing far past EOF must not resurrect old bytes either.
        fs.write(&root(), fh, 39_999, &[1]).unwrap();
        let data = whole(&fs, fh);
        assert!(data[5_000..39_999].iter().all(|&b| b == 0), "{mode}");
        fs.check_invariants().unwrap();
    }
}

#[test]
fn a_punch_unaligned_matches_model() {
    // One file; writes, unaligned punches, truncates and reads, compared byte for byte (and
    // st_blocks, SEEK_DATA/SEEK_HOLE extents) with the model after every step.
    let h = || Just(0u8);
    let off = || 0u64..9 * PAGE;
    let len = || 0u64..3 * PAGE;
    let op = prop_oneof![
        4 => (h(), off(), len(), any::<u8>()).prop_map(|(h, off, len, seed)| Op::Write { h, off, len, seed }),
        5 => (h(), off(), 1u64..3 * PAGE).prop_map(|(h, off, len)| Op::Fallocate { h, mode: 3, off, len }),
        1 => (h(), off(), 1u64..3 * PAGE).prop_map(|(h, off, len)| Op::Fallocate { h, mode: 1, off, len }),
        1 => (h(), off()).prop_map(|(h, size)| Op::Ftruncate { h, size }),
        2 => (h(), off(), len()).prop_map(|(h, off, len)| Op::Read { h, off, len }),
        1 => (h(), off()).prop_map(|(h, o)| Op::Seek { h, whence: Whence::Data, off: o as i64 }),
        1 => (h(), off()).prop_map(|(h, o)| Op::Seek { h, whence: Whence::Hole, off: o as i64 }),
    ];
    let cases = env_usize("RTMPFS_CASES", 64);
    check(
        "a_punch_unaligned_matches_model",
        cases,
        prop::collection::vec(op, 1..60),
        |ops| {
            let cfg = ModelConfig {
                size_pages: Some(32),
                ..ModelConfig::default()
            };
            let mut r = Runner::new(cfg);
            r.step(&Op::Create {
                at: at("a"),
                mode: 0o644,
                flags: OpenMode::RDWR,
            })?;
            r.run(&ops)
        },
    );
}

struct Frozen {
    attr: Attr,
    usage: Usage,
    statfs: StatFs,
    data: Vec<u8>,
    seeks: Vec<Result<u64, FsError>>,
}

fn freeze(fs: &Filesystem, fh: Fh) -> Frozen {
    let ino = fs.handle_ino(fh).unwrap();
    let seeks = (0..20)
        .flat_map(|p| [SeekWhence::Data, SeekWhence::Hole].map(|w| fs.lseek(fh, p * 4000, w)))
        .collect();
    Frozen {
        attr: fs.getattr(ino).unwrap(),
        usage: fs.usage(),
        statfs: fs.statfs(),
        data: whole(fs, fh),
        seeks,
    }
}

fn assert_unchanged(fs: &Filesystem, fh: Fh, before: &Frozen, what: &str) {
    let after = freeze(fs, fh);
    assert_eq!(after.attr.size, before.attr.size, "{what}: size");
    assert_eq!(after.attr.blocks, before.attr.blocks, "{what}: st_blocks");
    assert_eq!(after.usage.charged_pages, before.usage.charged_pages, "{what}: usage");
    assert_eq!(after.statfs, before.statfs, "{what}: statfs");
    assert!(after.data == before.data, "{what}: content changed");
    assert_eq!(after.seeks, before.seeks, "{what}: SEEK_DATA/SEEK_HOLE");
    fs.check_invariants().unwrap();
}

#[test]
fn a_fallocate_at_full_budget_is_enospc_and_changes_nothing() {
    for (mode, cfg) in both_ram_modes(Some(16), None) {
        let fs = Filesystem::new(cfg).unwrap();
        let (_, fh) = new_file(&fs, "f");
        assert_eq!(fs.write(&root(), fh, 0, &vec![7u8; 14 * 4096]).unwrap(), 14 * 4096);
        let before = freeze(&fs, fh);
        for (m, off, len) in [
            (FallocateMode::Allocate, 13 * PAGE, 4 * PAGE),
            (FallocateMode::KeepSize, 13 * PAGE, 4 * PAGE),
            (FallocateMode::Allocate, 100 * PAGE, PAGE * 3),
            (FallocateMode::KeepSize, 0, 1 << 40),
        ] {
            let r = fs.fallocate(&root(), fh, off, len, m);
            assert_eq!(r, Err(FsError::NoSpace), "{mode}: {m:?} {off}+{len}");
            assert_unchanged(&fs, fh, &before, &format!("{mode}: failed {m:?} {off}+{len}"));
        }
        // What fits does succeed, and over allocated pages costs nothing.
        fs.fallocate(&root(), fh, 0, 14 * PAGE, FallocateMode::Allocate)
            .unwrap();
        fs.fallocate(&root(), fh, 14 * PAGE, 2 * PAGE, FallocateMode::KeepSize)
            .unwrap();
        assert_eq!(fs.statfs().bfree, 0, "{mode}");
        // A write that runs out of space part-way is short, at a page boundary, and the size
        // ends where the data does.
        let (b, fh2) = new_file(&fs, "g");
        assert_eq!(fs.write(&root(), fh2, 10, &[1u8; 100]), Err(FsError::NoSpace));
        assert_eq!(fs.getattr(b.ino).unwrap().size, 0, "{mode}");
        fs.check_invariants().unwrap();
    }
}

#[test]
fn a_short_write_at_the_limit_exposes_nothing() {
    let fs = Filesystem::new(config(Some(4), None)).unwrap();
    let (a, fh) = new_file(&fs, "f");
    let n = fs.write(&root(), fh, 100, &vec![9u8; 6 * 4096]).unwrap();
    assert_eq!(n as u64, 4 * PAGE - 100, "short write ends at the last page that fit");
    let attr = fs.getattr(a.ino).unwrap();
    assert_eq!(attr.size, 4 * PAGE);
    let data = whole(&fs, fh);
    assert!(data[..100].iter().all(|&b| b == 0));
    assert!(data[100..].iter().all(|&b| b == 9));
    fs.check_invariants().unwrap();
}

// ----- B: data races of truncate and punch with reads and writes -----

/// The byte writer `w` puts at offset `o`: never zero, different per writer and position.
fn byte_of(w: u64, o: u64) -> u8 {
    ((o.wrapping_mul(7) + w * 61) % 251 + 1) as u8
}

const RACE_PAGES: u64 = 8;

fn race_truncate_punch(cfg: Config, seed: u64, rounds: usize) {
    let fs = Arc::new(Filesystem::new(cfg).unwrap());
    let (a, fh) = new_file(&fs, "f");
    let ino = a.ino;
    let writers = 2u64;
    let bad = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..writers {
        let fs = fs.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ (w + 1));
            for _ in 0..rounds {
                let off = rng.gen_range(0..RACE_PAGES * PAGE);
                let len = rng.gen_range(1..2 * PAGE).min(RACE_PAGES * PAGE - off);
                let data: Vec<u8> = (off..off + len).map(|o| byte_of(w, o)).collect();
                match fs.write(&root(), fh, off, &data) {
                    Ok(_) | Err(FsError::NoSpace) => {}
                    Err(e) => panic!("write: {e:?}"),
                }
            }
        }));
    }
    {
        let fs = fs.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x100);
            for _ in 0..rounds {
                let size = rng.gen_range(0..RACE_PAGES * PAGE);
                set_size(&fs, ino, size).expect("truncate");
                if rng.gen_bool(0.5) {
                    set_size(&fs, ino, RACE_PAGES * PAGE).expect("extend");
                }
            }
        }));
    }
    {
        let fs = fs.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x200);
            for _ in 0..rounds {
                let off = rng.gen_range(0..RACE_PAGES * PAGE);
                let len = rng.gen_range(1..3 * PAGE);
                fs.fallocate(&root(), fh, off, len, FallocateMode::PunchHole)
                    .expect("punch");
            }
        }));
    }
    for r in 0..2u64 {
        let fs = fs.clone();
        let bad = bad.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ (0x300 + r));
            let mut buf = vec![0u8; 3 * PAGE as usize];
            for _ in 0..rounds * 2 {
                let off = rng.gen_range(0..RACE_PAGES * PAGE);
                let n = fs.read(fh, off, &mut buf).expect("read");
                for (i, &b) in buf[..n].iter().enumerate() {
                    let o = off + i as u64;
                    if b != 0 && !(0..writers).any(|w| byte_of(w, o) == b) {
                        bad.store(true, Ordering::Relaxed);
                        panic!("byte {b:#x} at offset {o} was never written there (seed {seed})");
                    }
                }
            }
        }));
    }
    for t in threads {
        t.join().expect("race thread");
    }
    assert!(!bad.load(Ordering::Relaxed));
    fs.check_invariants().unwrap();
    // Quiescent now: the file must read back as exactly what its pages say.
    let data = whole(&fs, fh);
    for (o, &b) in data.iter().enumerate() {
        assert!(
            b == 0 || (0..writers).any(|w| byte_of(w, o as u64) == b),
            "byte {b:#x} at {o} (seed {seed})"
        );
    }
    fs.release(fh).unwrap();
    fs.unlink(&root(), fs.root(), OsStr::new("f")).unwrap();
    let u = fs.usage();
    assert_eq!(
        (u.charged_pages, u.resident_pages, u.swapped_pages, u.inodes),
        (0, 0, 0, 1),
        "everything given back: {u:?}"
    );
}

#[test]
fn b_truncate_and_punch_race_reads_and_writes() {
    let seed = seed();
    let rounds = env_usize("RTMPFS_RACE_ROUNDS", 300);
    for (mode, cfg) in both_ram_modes(Some(64), None) {
        eprintln!("b_truncate_and_punch_race_reads_and_writes: {mode}, seed {seed}");
        within(Duration::from_secs(120), mode, move || {
            race_truncate_punch(cfg, seed, rounds);
        });
    }
}

// ----- C: fault and punch loops must both finish; huge fallocate fails at once -----

#[test]
fn c_fault_loop_and_punch_loop_both_finish() {
    let rounds = env_usize("RTMPFS_RACE_ROUNDS", 300) * 4;
    for (mode, cfg) in both_ram_modes(Some(64), None) {
        within(Duration::from_secs(120), mode, move || {
            let fs = Arc::new(Filesystem::new(cfg).unwrap());
            let (_, fh) = new_file(&fs, "f");
            fs.write(&root(), fh, 0, &vec![3u8; 16 * 4096]).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let fault = {
                let (fs, stop) = (fs.clone(), stop.clone());
                std::thread::spawn(move || {
                    // A FUSE read is the page fault: it must never wait for the punch's lock.
                    let mut buf = vec![0u8; PAGE as usize];
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) || n < 100 {
                        fs.read(fh, (n % 16) * PAGE, &mut buf).unwrap();
                        n += 1;
                    }
                    n
                })
            };
            let punch = {
                let fs = fs.clone();
                std::thread::spawn(move || {
                    for i in 0..rounds as u64 {
                        let off = (i % 16) * PAGE;
                        fs.fallocate(&root(), fh, off, 2 * PAGE, FallocateMode::PunchHole)
                            .unwrap();
                        fs.write(&root(), fh, off, &[4u8; 100]).unwrap();
                    }
                })
            };
            punch.join().expect("punch loop");
            stop.store(true, Ordering::Relaxed);
            let faults = fault.join().expect("fault loop");
            assert!(faults >= 100);
            fs.check_invariants().unwrap();
        });
    }
}

#[test]
fn c_huge_fallocate_under_a_limit_fails_promptly() {
    for (mode, cfg) in both_ram_modes(Some(64), None) {
        let fs = Filesystem::new(cfg).unwrap();
        let (a, fh) = new_file(&fs, "f");
        fs.write(&root(), fh, 0, b"x").unwrap();
        let before = freeze(&fs, fh);
        for (m, len) in [
            (FallocateMode::Allocate, 1u64 << 50),
            (FallocateMode::KeepSize, 1 << 50),
            (FallocateMode::Allocate, 65 * PAGE),
            (FallocateMode::Allocate, (i64::MAX as u64) - PAGE),
        ] {
            let t = Instant::now();
            let r = fs.fallocate(&root(), fh, PAGE, len, m);
            assert_eq!(r, Err(FsError::NoSpace), "{mode}: {m:?} {len}");
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{mode}: {m:?} of {len} bytes took {:?}",
                t.elapsed()
            );
            assert_unchanged(&fs, fh, &before, &format!("{mode}: {m:?} {len}"));
        }
        // Past the maximum file size: EFBIG, not a long loop either.
        let r = fs.fallocate(&root(), fh, i64::MAX as u64, 1, FallocateMode::Allocate);
        assert_eq!(r, Err(FsError::FileTooBig));
        // Reservations cost no RAM: a 4-page budget still takes a 60-page fallocate.
        fs.fallocate(&root(), fh, 0, 60 * PAGE, FallocateMode::KeepSize)
            .unwrap();
        assert_eq!(fs.getattr(a.ino).unwrap().blocks, 60 * 8, "{mode}");
        fs.check_invariants().unwrap();
    }
}

// ----- D: accounting -----

#[test]
fn d_delete_everything_gives_everything_back() {
    for (mode, cfg) in both_ram_modes(Some(64), Some(32)) {
        let fs = Filesystem::new(cfg).unwrap();
        let c = root();
        let r = fs.root();
        let empty = fs.statfs();
        let d = fs.mkdir(&c, r, OsStr::new("d"), 0o755).unwrap();
        let (f, fh) = fs
            .create(&c, d.ino, OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        fs.write(&c, fh, 0, &vec![1u8; 10 * 4096]).unwrap();
        fs.fallocate(&c, fh, 20 * PAGE, 5 * PAGE, FallocateMode::KeepSize)
            .unwrap();
        fs.link(&c, f.ino, r, OsStr::new("f2")).unwrap();
        fs.setxattr(&c, f.ino, OsStr::new("user.x"), &[5u8; 300], XattrSetMode::Upsert)
            .unwrap();
        fs.symlink(&c, d.ino, OsStr::new("s"), OsStr::new("f")).unwrap();
        fs.mknod(&c, r, OsStr::new("p"), libc::S_IFIFO | 0o644, 0).unwrap();
        let (_, tmp) = fs.tmpfile(&c, d.ino, 0o600, OpenFlags::READ_WRITE).unwrap();
        fs.write(&c, tmp, 0, &[2u8; 5000]).unwrap();
        fs.release(fh).unwrap();
        fs.release(tmp).unwrap();
        fs.unlink(&c, r, OsStr::new("f2")).unwrap();
        fs.unlink(&c, d.ino, OsStr::new("f")).unwrap();
        fs.unlink(&c, d.ino, OsStr::new("s")).unwrap();
        fs.unlink(&c, r, OsStr::new("p")).unwrap();
        fs.rmdir(&c, r, OsStr::new("d")).unwrap();
        let u = fs.usage();
        assert_eq!(
            (
                u.charged_pages,
                u.resident_pages,
                u.swapped_pages,
                u.reserved_pages,
                u.inodes
            ),
            (0, 0, 0, 0, 1),
            "{mode}: {u:?}"
        );
        assert_eq!(u.inode_space_used, 1024, "{mode}: only the root's inode space");
        assert_eq!(fs.statfs(), empty, "{mode}: statfs back to empty");
        assert_eq!(fs.statfs().bfree, 64, "{mode}");
        assert_eq!(fs.statfs().ffree, 31, "{mode}");
        fs.check_invariants().unwrap();
    }
}

#[test]
fn d_df_agrees_with_du_after_random_operations() {
    // statfs used blocks == the st_blocks of every distinct inode (by name or open handle).
    let cases = env_usize("RTMPFS_CASES", 64);
    check(
        "d_df_agrees_with_du_after_random_operations",
        cases,
        crate::common::ops(60, false),
        |ops| {
            let cfg = ModelConfig::default();
            let mut e = EngineBackend::new(EngineBackend::config_for(&cfg), cfg.umask);
            for (i, op) in ops.iter().enumerate() {
                e.apply(op);
                let snap = e.snapshot();
                let mut blocks = BTreeMap::new();
                for n in snap.nodes.values().chain(&snap.handles) {
                    blocks.insert(n.id, n.blocks);
                }
                let du: u64 = blocks.values().sum::<u64>() / 8;
                let s = e.fs.statfs();
                let df = s.blocks - s.bfree;
                if du != df {
                    return Err(format!("after step {} {op:?}: du {du} pages, df {df}", i + 1));
                }
            }
            Ok(())
        },
    );
}

#[test]
fn d_unlinked_open_file_frees_space_at_last_close() {
    for (mode, cfg) in both_ram_modes(Some(64), Some(16)) {
        let fs = Filesystem::new(cfg).unwrap();
        let c = root();
        let (a, fh1) = new_file(&fs, "f");
        fs.write(&c, fh1, 0, &vec![1u8; 8 * 4096]).unwrap();
        let fh2 = fs.open(&c, a.ino, OpenFlags::READ).unwrap();
        fs.link(&c, a.ino, fs.root(), OsStr::new("g")).unwrap();
        let charged = fs.usage().charged_pages;
        let inodes = fs.statfs().ffree;
        fs.unlink(&c, fs.root(), OsStr::new("f")).unwrap();
        assert_eq!(fs.usage().charged_pages, charged, "{mode}: another link remains");
        assert_eq!(fs.statfs().ffree, inodes + 1, "{mode}: the extra link's space is back");
        fs.unlink(&c, fs.root(), OsStr::new("g")).unwrap();
        assert_eq!(fs.getattr(a.ino).unwrap().nlink, 0);
        assert_eq!(fs.usage().charged_pages, charged, "{mode}: open handles keep the data");
        assert_eq!(fs.read_vec(fh2, 0, 10).unwrap(), vec![1u8; 10]);
        fs.release(fh1).unwrap();
        assert_eq!(fs.usage().charged_pages, charged, "{mode}: one handle left");
        fs.write(&c, fh2, 0, b"x").expect_err("read-only handle");
        fs.release(fh2).unwrap();
        let u = fs.usage();
        assert_eq!((u.charged_pages, u.inodes), (0, 1), "{mode}: {u:?}");
        assert_eq!(fs.statfs().ffree, 15, "{mode}");
        fs.check_invariants().unwrap();
    }
}

#[test]
fn d_hard_links_and_xattrs_charge_inode_space() {
    let fs = Filesystem::new(config(None, Some(4))).unwrap();
    let c = root();
    let r = fs.root();
    let (a, fh) = new_file(&fs, "a");
    fs.release(fh).unwrap();
    assert_eq!(fs.statfs().ffree, 2);
    fs.link(&c, a.ino, r, OsStr::new("b")).unwrap();
    fs.link(&c, a.ino, r, OsStr::new("c")).unwrap();
    assert_eq!(fs.statfs().ffree, 0, "each extra link costs an inode's worth");
    assert_eq!(fs.link(&c, a.ino, r, OsStr::new("d")), Err(FsError::NoSpace));
    assert_eq!(fs.mkdir(&c, r, OsStr::new("e"), 0o755), Err(FsError::NoSpace));
    let set = |n: &str, len| fs.setxattr(&c, a.ino, OsStr::new(n), &vec![1u8; len], XattrSetMode::Upsert);
    assert_eq!(set("user.x", 1), Err(FsError::NoSpace), "xattrs charge inode space");
    fs.unlink(&c, r, OsStr::new("c")).unwrap();
    assert_eq!(fs.statfs().ffree, 1);
    set("user.x", 900).unwrap();
    assert_eq!(fs.statfs().ffree, 0, "40 + 6 + 900 bytes used of the freed 1024");
    assert_eq!(set("user.y", 100), Err(FsError::NoSpace));
    set("user.x", 10).unwrap();
    set("user.y", 100).unwrap();
    fs.removexattr(&c, a.ino, OsStr::new("user.x")).unwrap();
    fs.removexattr(&c, a.ino, OsStr::new("user.y")).unwrap();
    assert_eq!(fs.statfs().ffree, 1, "removing xattrs gives the space back");
    // The last link's inode space and its xattrs go when the inode dies.
    set("user.z", 500).unwrap();
    fs.unlink(&c, r, OsStr::new("a")).unwrap();
    fs.unlink(&c, r, OsStr::new("b")).unwrap();
    assert_eq!(fs.statfs().ffree, 3);
    assert_eq!(fs.usage().inode_space_used, 1024);
    fs.check_invariants().unwrap();
}

// ----- E: directory iteration under concurrent change -----

#[test]
fn e_readdir_under_concurrent_create_and_unlink() {
    let seed = seed();
    within(Duration::from_secs(120), "readdir under churn", move || {
        let fs = Arc::new(Filesystem::new(Config::default()).unwrap());
        let c = root();
        let d = fs.mkdir(&c, fs.root(), OsStr::new("d"), 0o755).unwrap().ino;
        let stable: Vec<String> = (0..200).map(|i| format!("stable-{i:03}")).collect();
        for n in &stable {
            fs.mknod(&c, d, OsStr::new(n), libc::S_IFREG | 0o644, 0).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let churn: Vec<_> = (0..2u64)
            .map(|t| {
                let (fs, stop) = (fs.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed ^ t);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("churn-{t}-{}", rng.gen_range(0..50));
                        let name = OsStr::new(&name);
                        if fs.mknod(&root(), d, name, libc::S_IFREG | 0o644, 0).is_err() {
                            fs.unlink(&root(), d, name).unwrap();
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for round in 0..40 {
            let fh = fs.opendir(&c, d).unwrap();
            let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
            let mut cookie = 0;
            let mut calls = 0;
            loop {
                let batch = fs.readdir(fh, cookie, 7).unwrap();
                calls += 1;
                assert!(calls < 10_000, "round {round}: readdir does not terminate");
                let Some(last) = batch.last() else { break };
                assert!(last.cookie > cookie, "cookies must increase");
                cookie = last.cookie;
                for e in batch {
                    *seen.entry(e.name.to_vec()).or_default() += 1;
                }
            }
            fs.releasedir(fh).unwrap();
            for n in &stable {
                assert_eq!(
                    seen.get(n.as_bytes()).copied(),
                    Some(1),
                    "round {round}: untouched {n} must be listed exactly once (seed {seed})"
                );
            }
            assert_eq!(seen.get(b".".as_slice()), Some(&1));
            assert_eq!(seen.get(b"..".as_slice()), Some(&1));
        }
        stop.store(true, Ordering::Relaxed);
        for t in churn {
            assert!(t.join().unwrap() > 0);
        }
        fs.check_invariants().unwrap();
    });
}

// ----- F: SEEK_DATA / SEEK_HOLE -----

#[test]
fn f_seek_data_and_hole() {
    for (mode, cfg) in both_ram_modes(Some(64), None) {
        let fs = Filesystem::new(cfg).unwrap();
        let (a, fh) = new_file(&fs, "f");
        let seek = |off: i64, w| fs.lseek(fh, off, w);
        let (data, hole) = (SeekWhence::Data, SeekWhence::Hole);
        // Empty file: everything is past EOF.
        assert_eq!(seek(0, data), Err(FsError::NoDeviceOrAddress), "{mode}");
        assert_eq!(seek(0, hole), Err(FsError::NoDeviceOrAddress), "{mode}");
        // Negative offsets: ENXIO (generic/448), whatever the file holds.
        fs.write(&root(), fh, PAGE, &[1u8; 4096]).unwrap();
        for off in [-1, -4096, i64::MIN] {
            assert_eq!(seek(off, data), Err(FsError::NoDeviceOrAddress), "{mode} {off}");
            assert_eq!(seek(off, hole), Err(FsError::NoDeviceOrAddress), "{mode} {off}");
        }
        // [0,4096) hole, [4096,8192) data; EOF at 8192 is an implicit hole.
        assert_eq!(seek(0, data), Ok(PAGE));
        assert_eq!(seek(0, hole), Ok(0));
        assert_eq!(seek(5000, data), Ok(5000));
        assert_eq!(seek(5000, hole), Ok(2 * PAGE));
        assert_eq!(seek(2 * PAGE as i64, data), Err(FsError::NoDeviceOrAddress));
        // Reserved (fallocated, unwritten) pages are holes, before and after EOF.
        fs.fallocate(&root(), fh, 2 * PAGE, 4 * PAGE, FallocateMode::Allocate)
            .unwrap();
        assert_eq!(fs.getattr(a.ino).unwrap().size, 6 * PAGE);
        assert_eq!(seek(5000, hole), Ok(2 * PAGE), "{mode}: reserved pages are holes");
        assert_eq!(seek(2 * PAGE as i64, data), Err(FsError::NoDeviceOrAddress));
        // A page written in the middle of the reservation is data.
        fs.write(&root(), fh, 4 * PAGE + 10, b"z").unwrap();
        assert_eq!(seek(2 * PAGE as i64, data), Ok(4 * PAGE));
        assert_eq!(seek(4 * PAGE as i64, hole), Ok(5 * PAGE));
        // A partly punched page stays data; a wholly punched one is a hole.
        fs.fallocate(&root(), fh, PAGE + 100, 200, FallocateMode::PunchHole)
            .unwrap();
        assert_eq!(seek(0, data), Ok(PAGE));
        fs.fallocate(&root(), fh, PAGE, PAGE, FallocateMode::PunchHole).unwrap();
        assert_eq!(seek(0, data), Ok(4 * PAGE));
        // Past EOF: ENXIO for both.
        assert_eq!(seek(6 * PAGE as i64, hole), Err(FsError::NoDeviceOrAddress));
        assert_eq!(seek(i64::MAX, data), Err(FsError::NoDeviceOrAddress));
        fs.check_invariants().unwrap();
    }
}

#[test]
fn f_swapped_pages_count_as_data() {
    let fs = Filesystem::new(tiny_ram(config(Some(64), None))).unwrap();
    let (_, fh) = new_file(&fs, "f");
    // 32 data pages with every other page a hole, through a 4-page RAM budget: most of the
    // data pages are in the swap file by the end.
    for p in (0..64).step_by(2) {
        fs.write(&root(), fh, p * PAGE, &[p as u8 + 1; 4096]).unwrap();
    }
    assert!(fs.usage().swapped_pages > 0, "{:?}", fs.usage());
    for p in (0..64u64).step_by(2) {
        let off = (p * PAGE) as i64;
        assert_eq!(fs.lseek(fh, off, SeekWhence::Data), Ok(p * PAGE), "page {p}");
        assert_eq!(fs.lseek(fh, off, SeekWhence::Hole), Ok((p + 1) * PAGE), "page {p}");
        if p < 62 {
            assert_eq!(fs.lseek(fh, off + PAGE as i64, SeekWhence::Data), Ok((p + 2) * PAGE));
        }
    }
    fs.check_invariants().unwrap();
}
