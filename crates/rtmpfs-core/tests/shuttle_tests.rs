//! Deterministic schedule exploration with shuttle: write × read × truncate × punch on one file,
//! through the public API, with every lock and atomic of the engine replaced by shuttle's
//! (feature `shuttle`). Every read must return bytes some linearization allows, and the
//! accounting invariant must hold at the end of every schedule.
//!
//! Run: `cargo test -p rtmpfs-core --features shuttle --test tests shuttle`.
//! `RTMPFS_SHUTTLE_ITERS` sets the schedules per strategy (default 300).

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
