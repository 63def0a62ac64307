//! Stress: threads doing random operations on shared names, with a watchdog that turns a hang
//! into a failure. Seeded per thread (`RTMPFS_SEED`); the accounting invariant is checked at the
//! end, and deleting everything must give every page and inode back. In debug builds the lock
//! rank checker turns any lock-order inversion on these paths into a panic.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtmpfs_core::{
    Config, Ctx, FallocateMode, Fh, FileKind, Filesystem, FsError, Ino, OpenFlags, RenameFlags, SeekWhence, SetAttr,
    SwapConfig, XattrSetMode,
};

use crate::common::{env_usize, seed, within};

const PAGE: u64 = 4096;
const NAMES: [&str; 5] = ["a", "b", "c", "d0", "d1"];

/// Resolve `dir` (a path of at most one directory below the root) without following symlinks.
fn dir_of(fs: &Filesystem, ctx: &Ctx, path: &[&str]) -> Result<Ino, FsError> {
    let mut cur = fs.root();
    for comp in path {
        let a = fs.lookup(ctx, cur, OsStr::new(comp))?;
        if a.kind != FileKind::Directory {
            return Err(FsError::NotDir);
        }
        cur = a.ino;
    }
    Ok(cur)
}

/// Errors no operation here may produce: they would mean a lost page, a broken handle or an
/// internal inconsistency rather than a race the caller can lose.
fn legal(e: FsError) -> bool {
    !matches!(e, FsError::Io | FsError::BadHandle | FsError::Overflow)
}

/// The operation kinds to run (all by default; `RTMPFS_STRESS_OPS=0,2,4` to bisect a failure).
fn op_kinds() -> Vec<u32> {
    match std::env::var("RTMPFS_STRESS_OPS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => (0..20).collect(),
    }
}

#[allow(clippy::needless_pass_by_value)] // each thread owns its reference to the engine
fn worker(fs: Arc<Filesystem>, seed: u64, steps: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let kinds = op_kinds();
    let ctx = Ctx::root();
    let mut handles: Vec<Fh> = Vec::new();
    let mut failures = 0;
    let parents: [&[&str]; 3] = [&[], &["d0"], &["d1"]];
    for _ in 0..steps {
        let p = parents[rng.gen_range(0..parents.len())];
        let name = OsStr::new(NAMES[rng.gen_range(0..NAMES.len())]);
        let off = rng.gen_range(0..16 * PAGE);
        let len = rng.gen_range(0..3 * PAGE);
        let h = (!handles.is_empty()).then(|| handles[rng.gen_range(0..handles.len())]);
        let r: Result<(), FsError> = (|| {
            let dir = dir_of(&fs, &ctx, p)?;
            match kinds[rng.gen_range(0..kinds.len())] {
                0 => {
                    let (_, fh) = fs.create(&ctx, dir, name, 0o644, OpenFlags::READ_WRITE)?;
                    handles.push(fh);
                }
                1 => {
                    fs.mkdir(&ctx, dir, name, 0o755)?;
                }
                2 => fs.unlink(&ctx, dir, name)?,
                3 => fs.rmdir(&ctx, dir, name)?,
                4 => {
                    let q = parents[rng.gen_range(0..parents.len())];
                    let to = dir_of(&fs, &ctx, q)?;
                    let to_name = OsStr::new(NAMES[rng.gen_range(0..NAMES.len())]);
                    let flags = match rng.gen_range(0..4) {
                        0 => RenameFlags::default(),
                        1 => RenameFlags {
                            noreplace: true,
                            ..RenameFlags::default()
                        },
                        2 => RenameFlags {
                            exchange: true,
                            ..RenameFlags::default()
                        },
                        _ => RenameFlags {
                            whiteout: true,
                            ..RenameFlags::default()
                        },
                    };
                    fs.rename(&ctx, dir, name, to, to_name, flags)?;
                }
                5 => {
                    let a = fs.lookup(&ctx, dir, name)?;
                    let q = parents[rng.gen_range(0..parents.len())];
                    let to = dir_of(&fs, &ctx, q)?;
                    fs.link(&ctx, a.ino, to, OsStr::new(NAMES[rng.gen_range(0..3)]))?;
                }
                6 => {
                    let a = fs.lookup(&ctx, dir, name)?;
                    if a.kind == FileKind::RegularFile {
                        handles.push(fs.open(&ctx, a.ino, OpenFlags::READ_WRITE)?);
                    }
                }
                7 | 8 => {
                    if let Some(h) = h {
                        fs.write(&ctx, h, off, &vec![0x5a; len as usize])?;
                    }
                }
                9 => {
                    if let Some(h) = h {
                        let v = fs.read_vec(h, off, len as usize)?;
                        assert!(v.iter().all(|&b| b == 0 || b == 0x5a), "invented bytes");
                    }
                }
                10 => {
                    if let Some(h) = h {
                        let ino = fs.handle_ino(h)?;
                        let set = SetAttr {
                            size: Some(off),
                            ..SetAttr::default()
                        };
                        fs.setattr(&ctx, ino, &set, Some(h))?;
                    }
                }
                11 => {
                    if let Some(h) = h {
                        let mode = [
                            FallocateMode::Allocate,
                            FallocateMode::KeepSize,
                            FallocateMode::PunchHole,
                        ][rng.gen_range(0..3)];
                        fs.fallocate(&ctx, h, off, len.max(1), mode)?;
                    }
                }
                12 => {
                    if let Some(h) = h {
                        let w = if rng.gen() { SeekWhence::Data } else { SeekWhence::Hole };
                        match fs.lseek(h, off as i64, w) {
                            Ok(_) | Err(FsError::NoDeviceOrAddress) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                13 => {
                    if let (Some(a), Some(&b)) = (h, handles.first()) {
                        match fs.copy_file_range(&ctx, a, off, b, len, len) {
                            Ok(_) | Err(FsError::Invalid) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                14 => {
                    if !handles.is_empty() {
                        let i = rng.gen_range(0..handles.len());
                        fs.release(handles.swap_remove(i))?;
                    }
                }
                15 => {
                    let fh = fs.opendir(&ctx, dir)?;
                    let mut n = 0;
                    n += fs.readdir(fh, 0, 10_000)?.len();
                    assert!(n < 10_000, "readdir runs away");
                    fs.releasedir(fh)?;
                }
                16 => {
                    let a = fs.lookup(&ctx, dir, name)?;
                    let v = vec![1u8; rng.gen_range(0..200)];
                    fs.setxattr(&ctx, a.ino, OsStr::new("trusted.x"), &v, XattrSetMode::Upsert)?;
                }
                17 => {
                    let a = fs.lookup(&ctx, dir, name)?;
                    fs.removexattr(&ctx, a.ino, OsStr::new("trusted.x"))?;
                }
                18 => {
                    let (a, fh) = fs.tmpfile(&ctx, dir, 0o600, OpenFlags::READ_WRITE)?;
                    let r = fs
                        .write(&ctx, fh, 0, b"tmp")
                        .and_then(|_| fs.link(&ctx, a.ino, dir, name));
                    fs.release(fh)?;
                    r?;
                }
                _ => {
                    fs.symlink(&ctx, dir, name, OsStr::new("a"))?;
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            assert!(legal(e), "illegal error {e:?} (seed {seed})");
            failures += 1;
        }
    }
    for h in handles {
        fs.release(h).expect("release own handle");
    }
    failures
}

fn remove_tree(fs: &Filesystem, dir: Ino) {
    let ctx = Ctx::root();
    let fh = fs.opendir(&ctx, dir).unwrap();
    let mut entries = Vec::new();
    entries.extend(fs.readdir(fh, 0, usize::MAX).unwrap());
    fs.releasedir(fh).unwrap();
    for e in entries {
        if e.name == b"." || e.name == b".." {
            continue;
        }
        let name = std::ffi::OsString::from(String::from_utf8(e.name.to_vec()).unwrap());
        if e.kind == FileKind::Directory {
            remove_tree(fs, e.ino);
            fs.rmdir(&ctx, dir, &name).unwrap();
        } else {
            fs.unlink(&ctx, dir, &name).unwrap();
        }
    }
}

fn stress(name: &str, cfg: Config, threads: u64, steps: usize) {
    let seed = seed();
    let fs = Arc::new(Filesystem::new(cfg).unwrap());
    let fs2 = fs.clone();
    let failed = within(Duration::from_secs(150), name, move || {
        let ts: Vec<_> = (0..threads)
            .map(|t| {
                let fs = fs2.clone();
                std::thread::spawn(move || worker(fs, seed.wrapping_add(t * 7919), steps))
            })
            .collect();
        ts.into_iter()
            .map(|t| t.join().expect("stress thread panicked"))
            .sum::<usize>()
    });
    let total = threads as usize * steps;
    eprintln!(
        "{name}: {} of {total} operations succeeded (seed {seed})",
        total - failed
    );
    if std::env::var_os("RTMPFS_STRESS_OPS").is_none() {
        assert!(failed * 10 < total * 8, "{name}: {failed} of {total} operations failed");
    }
    fs.check_invariants().unwrap();
    remove_tree(&fs, fs.root());
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
        "{name} (seed {seed}): {u:?}"
    );
    fs.check_invariants().unwrap();
}

#[test]
fn stress_threads_on_shared_names() {
    let steps = env_usize("RTMPFS_STRESS_STEPS", 3000);
    let cfg = Config {
        size_bytes: Some(128 * PAGE),
        max_inodes: Some(64),
        ..Config::default()
    };
    stress("stress", cfg, 4, steps);
}

#[test]
fn stress_threads_tiny_ram_swap_and_lookups() {
    let steps = env_usize("RTMPFS_STRESS_STEPS", 3000) / 2;
    let cfg = Config {
        size_bytes: Some(128 * PAGE),
        max_inodes: Some(64),
        memory_bytes: Some(4 * PAGE),
        swap: Some(SwapConfig::in_temp_dir()),
        // Writers reclaim for themselves (direct eviction racing the other threads); a
        // background evictor would keep moving pages while the invariant is checked.
        background_threads: false,
        track_lookups: false,
        ..Config::default()
    };
    stress("stress, 4-page RAM + swap", cfg, 4, steps);
}
