//! Differential test against the kernel: the same random operation sequences run through libc on
//! a fresh kernel tmpfs mount (mounted here, as root, with the same `size` and `nr_inodes`) and
//! through the engine; every result, errno, byte and attribute must match, and so must whether
//! each step changed each inode's mtime and ctime. The model runs alongside and must match the
//! engine exactly, which checks the model against Linux too.
//!
//! The backends, the runner and the deviations list (`DEVIATIONS`: differences that are
//! decisions, with their reasons) are in `rtmpfs_testkit::differential`; the same sequences also
//! run through an rtmpfs FUSE mount in `crates/rtmpfs-cli/tests/differential.rs`.
//!
//! Not root, or the mount fails: the test prints why and fails. It never passes silently.

use std::collections::BTreeMap;

use rtmpfs_core::{Compression, Config, SwapConfig, PAGE_SIZE};
use rtmpfs_testkit::differential::{diff_config, reason, Differential};
use rtmpfs_testkit::engine::EngineBackend;
use rtmpfs_testkit::model::MAX_FILE;
use rtmpfs_testkit::op;
use rtmpfs_testkit::tmpfs::Tmpfs;
use rtmpfs_testkit::{Backend, Op, OpenMode, Outcome, Value};

use crate::common::{check, env_usize, ops};

fn must_mount() {
    if let Err(why) = Tmpfs::mount("size=4096") {
        panic!("differential test cannot run: {why}");
    }
}

#[test]
fn differential_random_sequences() {
    must_mount();
    let cases = env_usize("RTMPFS_DIFF_CASES", 64);
    let used = std::sync::Mutex::new(BTreeMap::<&str, usize>::new());
    check("differential_random_sequences", cases, ops(50, true), |ops| {
        let mut d = Differential::with_tmpfs(diff_config())?;
        let r = d.run(&ops);
        d.tally(&mut used.lock().unwrap());
        r
    });
    // What the run leaned on, for the log: each accepted deviation with its reason.
    for (name, n) in used.into_inner().unwrap() {
        eprintln!("deviation {name}: {n} times. {}", reason(name));
    }
}

/// The same against the kernel with the compressed tier on at a tiny budget (issue 14): four
/// pages of RAM (frames and a one-page pool) and a swap that fills when `size` does, lz4 and
/// zstd in turn. Linux has no such tier: every result must match.
#[test]
fn differential_random_sequences_compressed() {
    must_mount();
    let cases = env_usize("RTMPFS_DIFF_CASES", 64) / 2;
    for algo in [Compression::Lz4, Compression::Zstd] {
        check(
            "differential_random_sequences_compressed",
            cases,
            ops(50, true),
            |ops| {
                let cfg = diff_config();
                let mut d = Differential::with_tmpfs(cfg)?;
                let size_pages = cfg.size_pages.expect("a size limit");
                d.engine = EngineBackend::new(
                    Config {
                        memory_bytes: Some(4 * PAGE_SIZE),
                        swap: Some(SwapConfig {
                            dir: std::env::temp_dir(),
                            size_bytes: Some((size_pages - 4) * PAGE_SIZE),
                            encrypt: true,
                        }),
                        compression: algo,
                        background_threads: false,
                        ..EngineBackend::config_for(&cfg)
                    },
                    cfg.umask,
                );
                d.run(&ops)
            },
        );
    }
}

/// Every shrunk regression of the model test, against the kernel too: the expectations written
/// there are Linux's.
#[test]
fn differential_regressions() {
    must_mount();
    let mut failures = Vec::new();
    for (name, ops) in crate::regressions::REGRESSIONS {
        if let Err(err) = Differential::with_tmpfs(diff_config()).and_then(|mut d| d.run(&ops())) {
            failures.push(format!("{name}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `flagged-file-through-old-handle`: Linux checks immutable and append-only when a file is
/// opened (and in fallocate, copy_file_range into an immutable file, ftruncate of an
/// append-only one), so a handle opened before `chattr` still writes anywhere, truncates an
/// immutable file and `fallocate(KEEP_SIZE)`s an append-only one; the engine refuses each
/// with EPERM (docs/semantics.md). Both agree on the open that follows.
#[test]
fn linux_flagged_file_still_written_through_old_handle() {
    let mut d = Differential::with_tmpfs(diff_config()).unwrap_or_else(|why| panic!("cannot run: {why}"));
    let a = rtmpfs_testkit::at("a");
    for o in [
        Op::Create {
            at: a,
            mode: 0o644,
            flags: OpenMode::RDWR,
        },
        Op::Write {
            h: 0,
            off: 0,
            len: 10,
            seed: 1,
        },
        Op::SetFlags { at: a, flags: 2 },
        Op::GetFlags { at: a },
        Op::Open {
            at: a,
            flags: OpenMode::WRONLY,
        },
    ] {
        d.step(&o).unwrap();
    }
    let perm = Outcome::Err(libc::EPERM);
    let write = Op::Write {
        h: 0,
        off: 0,
        len: 1,
        seed: 2,
    };
    assert_eq!(
        d.dirs[0].apply(&write),
        Outcome::Ok(Value::Count(1)),
        "kernel: immutable, old handle"
    );
    assert_eq!(d.engine.apply(&write), perm);
    let trunc = Op::Ftruncate { h: 0, size: 4 };
    assert_eq!(d.dirs[0].apply(&trunc), Outcome::Ok(Value::Unit));
    assert_eq!(d.engine.apply(&trunc), perm);
    let append = Op::SetFlags { at: a, flags: 1 };
    assert_eq!(d.dirs[0].apply(&append), d.engine.apply(&append));
    assert_eq!(
        d.dirs[0].apply(&write),
        Outcome::Ok(Value::Count(1)),
        "kernel: append-only, at 0"
    );
    assert_eq!(d.engine.apply(&write), perm);
    let keep_size = Op::Fallocate {
        h: 0,
        mode: 1,
        off: 0,
        len: op::PAGE,
    };
    assert_eq!(d.dirs[0].apply(&keep_size), Outcome::Ok(Value::Unit));
    assert_eq!(d.engine.apply(&keep_size), perm);
    // Both refuse an ftruncate of an append-only file and a new non-append open.
    assert_eq!(d.dirs[0].apply(&trunc), perm);
    assert_eq!(d.engine.apply(&trunc), perm);
    let open = Op::Open {
        at: a,
        flags: OpenMode::RDWR,
    };
    assert_eq!(d.dirs[0].apply(&open), perm);
    assert_eq!(d.engine.apply(&open), perm);
}

/// `refallocate-reserved-page`: fallocate over a page an earlier fallocate reserved makes it
/// data on Linux (zero-filled, up to date); the engine keeps it a reserved hole. Both read zeros
/// and charge one page.
#[test]
fn linux_refallocate_makes_reserved_page_data() {
    let mut d = Differential::with_tmpfs(diff_config()).unwrap_or_else(|why| panic!("cannot run: {why}"));
    let falloc = |off, len| Op::Fallocate {
        h: 0,
        mode: 0,
        off,
        len,
    };
    for o in [
        Op::Create {
            at: rtmpfs_testkit::at("a"),
            mode: 0o644,
            flags: OpenMode::RDWR,
        },
        falloc(op::PAGE, op::PAGE),
    ] {
        d.step(&o).unwrap();
    }
    let again = falloc(0, 2 * op::PAGE);
    assert_eq!(d.dirs[0].apply(&again), Outcome::Ok(Value::Unit));
    assert_eq!(d.engine.apply(&again), Outcome::Ok(Value::Unit));
    let data = Op::Seek {
        h: 0,
        whence: op::Whence::Data,
        off: 0,
    };
    assert_eq!(d.engine.apply(&data), Outcome::Err(libc::ENXIO), "engine: still holes");
    let k = d.dirs[0].apply(&data);
    assert!(
        k == Outcome::Ok(Value::Count(op::PAGE)) || k == Outcome::Err(libc::ENXIO),
        "kernel SEEK_DATA: {k:?}"
    );
    let read = Op::Read {
        h: 0,
        off: 0,
        len: 2 * op::PAGE,
    };
    assert_eq!(d.dirs[0].apply(&read), d.engine.apply(&read), "both read zeros");
}

/// A Linux bug the engine does not copy: `mapping_seek_hole_data` overflows for the page that
/// holds byte `i64::MAX - 1`. With data only there, the kernel's SEEK_DATA from 0 says ENXIO
/// and SEEK_HOLE from the data returns a negative offset; the engine answers the page start and
/// EOF. (The random sequences keep data out of that page: `KERNEL_SAFE_MARGIN`.)
#[test]
fn linux_seek_overflows_in_last_page() {
    let mut d = Differential::with_tmpfs(diff_config()).unwrap_or_else(|why| panic!("cannot run: {why}"));
    let off = MAX_FILE - 16;
    let last_page = MAX_FILE & !(op::PAGE - 1);
    for o in [
        Op::Create {
            at: rtmpfs_testkit::at("a"),
            mode: 0o644,
            flags: OpenMode::RDWR,
        },
        Op::Write {
            h: 0,
            off,
            len: 1,
            seed: 1,
        },
    ] {
        assert_eq!(d.dirs[0].apply(&o), d.engine.apply(&o), "{o:?}");
    }
    let data = Op::Seek {
        h: 0,
        whence: op::Whence::Data,
        off: 0,
    };
    let hole = Op::Seek {
        h: 0,
        whence: op::Whence::Hole,
        off: off as i64,
    };
    assert_eq!(d.engine.apply(&data), Outcome::Ok(Value::Count(last_page)));
    assert_eq!(d.engine.apply(&hole), Outcome::Ok(Value::Count(off + 1)));
    let k = d.dirs[0].apply(&data);
    assert!(
        k == Outcome::Err(libc::ENXIO) || k == Outcome::Ok(Value::Count(last_page)),
        "kernel SEEK_DATA: {k:?}"
    );
    match d.dirs[0].apply(&hole) {
        Outcome::Ok(Value::Count(v)) => assert!(v > MAX_FILE || v == off + 1, "kernel SEEK_HOLE: {v}"),
        Outcome::Err(libc::ENXIO) => {}
        other => panic!("kernel SEEK_HOLE: {other:?}"),
    }
}
