//! Reference-model tests: random operation sequences run on the model and on the engine,
//! compared after every step (results, errnos, bytes, attributes, statfs, usage, the accounting
//! invariant); at the end everything is deleted and the engine must be back to one inode and
//! no charged page. Shrunk failures are kept below as `regression_*` tests.

use std::ffi::OsStr;

use rtmpfs_core::{Compression, Config, Ctx, FsError, OpenFlags, SwapConfig};
use rtmpfs_testkit::engine::EngineBackend;
use rtmpfs_testkit::model::ModelConfig;
use rtmpfs_testkit::{at, DirSel, NodeKind, Op, OpenMode, Runner, Whence};

use crate::common::{check, env_usize, ops};
use crate::regressions;

/// Limits small enough that random sequences hit ENOSPC on pages and on inodes.
fn small() -> ModelConfig {
    ModelConfig {
        size_pages: Some(24),
        nr_inodes: Some(12),
        umask: 0o022,
        root_mode: 0o1777,
    }
}

fn run(cfg: ModelConfig, ops: &[Op]) -> Result<(), String> {
    Runner::new(cfg).run(ops)
}

#[test]
fn model_random_sequences() {
    let cases = env_usize("RTMPFS_CASES", 400);
    check("model_random_sequences", cases, ops(80, false), |ops| {
        run(small(), &ops)
    });
}

#[test]
fn model_random_sequences_roomy() {
    // More space and inodes: deeper trees, bigger files, fewer ENOSPC short-cuts.
    let cfg = ModelConfig {
        size_pages: Some(96),
        nr_inodes: Some(64),
        umask: 0,
        root_mode: 0o755,
    };
    let cases = env_usize("RTMPFS_CASES", 128);
    check("model_random_sequences_roomy", cases, ops(80, false), |ops| {
        run(cfg, &ops)
    });
}

/// With `track_lookups`, every reference the shim takes is forgotten right after the
/// operation, so unlinked-and-closed inodes go through the "released, still looked up" state
/// and leave the table at `forget`; the model must not see any difference.
#[test]
fn model_random_sequences_track_lookups() {
    let cases = env_usize("RTMPFS_CASES", 96);
    check("model_random_sequences_track_lookups", cases, ops(60, false), |ops| {
        let cfg = small();
        let engine = EngineBackend::new(
            Config {
                track_lookups: true,
                ..EngineBackend::config_for(&cfg)
            },
            cfg.umask,
        );
        Runner::with_engine(cfg, engine).run(&ops)
    });
}

/// An engine for `cfg` with 4 pages of RAM and a swap of `size - 4` pages: memory and swap fill
/// up exactly when `size` does.
fn full_swap_engine(cfg: &ModelConfig) -> EngineBackend {
    EngineBackend::new(full_swap_config(cfg), cfg.umask)
}

/// The configuration of `full_swap_engine`.
fn full_swap_config(cfg: &ModelConfig) -> Config {
    let size_pages = cfg.size_pages.expect("a size limit");
    Config {
        memory_bytes: Some(4 * 4096),
        swap: Some(SwapConfig {
            dir: std::env::temp_dir(),
            size_bytes: Some((size_pages - 4) * 4096),
            encrypt: true,
        }),
        background_threads: false,
        ..EngineBackend::config_for(cfg)
    }
}

/// A full swap (issue 15): random sequences on `full_swap_engine`. Every read and write must
/// behave as the model's (which has no swap): stored data stays readable, a swap-in never fails
/// for want of a frame, `ENOSPC` comes only from `size`; the accounting invariant holds after
/// every step.
#[test]
fn model_random_sequences_full_swap() {
    let cases = env_usize("RTMPFS_CASES", 96);
    check("model_random_sequences_full_swap", cases, ops(80, false), |ops| {
        let cfg = small();
        Runner::with_engine(cfg, full_swap_engine(&cfg)).run(&ops)
    });
}

/// The compressed tier at a tiny budget (issue 14): `full_swap_engine` with compression on,
/// so the four pages of RAM hold frames and a pool of one page, and pages move through every
/// state (resident, compressed, zero, swapped, back). The model has no tiers: every result must
/// be the same, and the invariants (pool bytes included) hold after every step.
fn compressed_engine(cfg: &ModelConfig, algo: Compression) -> EngineBackend {
    EngineBackend::new(
        Config {
            compression: algo,
            ..full_swap_config(cfg)
        },
        cfg.umask,
    )
}

#[test]
fn model_random_sequences_compressed_lz4() {
    let cases = env_usize("RTMPFS_CASES", 96);
    check("model_random_sequences_compressed_lz4", cases, ops(80, false), |ops| {
        let cfg = small();
        Runner::with_engine(cfg, compressed_engine(&cfg, Compression::Lz4)).run(&ops)
    });
}

#[test]
fn model_random_sequences_compressed_zstd() {
    let cases = env_usize("RTMPFS_CASES", 96);
    check("model_random_sequences_compressed_zstd", cases, ops(80, false), |ops| {
        let cfg = small();
        Runner::with_engine(cfg, compressed_engine(&cfg, Compression::Zstd)).run(&ops)
    });
}

/// Regression (issue 15): `size` reached, so RAM and swap are full of dirty pages; reading a
/// swapped page back, or writing part of one, gave `ENOSPC` where Linux (the model) reads.
#[test]
fn regression_full_swap_reads_back() {
    let page = 4096;
    let ops = vec![
        Op::Create {
            at: at("a"),
            mode: 0o644,
            flags: OpenMode::RDWR,
        },
        Op::Write {
            h: 0,
            off: 0,
            len: 24 * page,
            seed: 1,
        },
        Op::Read {
            h: 0,
            off: 0,
            len: 24 * page,
        },
        Op::Write {
            h: 0,
            off: 3 * page + 100,
            len: 10,
            seed: 2,
        },
        Op::Read {
            h: 0,
            off: 2 * page,
            len: 20 * page,
        },
        Op::Create {
            at: at("b"),
            mode: 0o644,
            flags: OpenMode::RDWR,
        },
        Op::Write {
            h: 1,
            off: 0,
            len: page,
            seed: 3,
        },
        Op::Read {
            h: 0,
            off: 0,
            len: 24 * page,
        },
    ];
    let cfg = small();
    if let Err(e) = Runner::with_engine(cfg, full_swap_engine(&cfg)).run(&ops) {
        panic!("{e}");
    }
}

/// The lookup-count contract itself: an unlinked, closed inode stays whole (attributes, data,
/// inode space) while the kernel holds a lookup reference, as a Linux inode stays until it is
/// evicted, and is released at the last `forget`.
#[test]
fn forget_releases_unlinked_inode_at_last_reference() {
    let fs = rtmpfs_core::Filesystem::new(Config {
        track_lookups: true,
        size_bytes: Some(16 * 4096),
        max_inodes: Some(8),
        ..Config::default()
    })
    .unwrap();
    let ctx = Ctx::root();
    let root = fs.root();
    let (a, fh) = fs
        .create(&ctx, root, OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&ctx, fh, 0, &[7u8; 8192]).unwrap();
    let again = fs.lookup(&ctx, root, OsStr::new("f")).unwrap();
    assert_eq!(again.ino, a.ino);
    assert_eq!(fs.usage().charged_pages, 2);
    fs.unlink(&ctx, root, OsStr::new("f")).unwrap();
    assert_eq!(fs.getattr(a.ino).unwrap().nlink, 0);
    fs.release(fh).unwrap();
    assert_eq!(fs.usage().charged_pages, 2, "data kept while looked up");
    assert_eq!(fs.usage().inodes, 2, "inode kept while looked up");
    // Two lookup references (create + lookup): it stays until both are forgotten.
    fs.forget(a.ino, 1);
    assert!(fs.getattr(a.ino).is_ok(), "one reference left");
    assert_eq!(fs.usage().charged_pages, 2);
    fs.forget(a.ino, 1);
    assert_eq!(fs.getattr(a.ino), Err(FsError::NotFound));
    assert_eq!(fs.usage().charged_pages, 0, "data freed at the last forget");
    assert_eq!(fs.usage().inodes, 1, "inode space freed at the last forget");
    // Forgetting an unknown inode, or too much, is harmless.
    fs.forget(a.ino, 5);
    fs.forget(rtmpfs_core::Ino(9999), 1);
    fs.forget(root, 100);
    assert!(fs.getattr(root).is_ok(), "the root is never forgotten");
    fs.check_invariants().unwrap();
}

// ----- regressions: shrunk failures, kept by name (sequences in regressions.rs) -----

fn regress(ops: &[Op]) {
    if let Err(e) = run(small(), ops) {
        panic!("{e}");
    }
}

#[test]
fn regression_symlink_ignores_umask() {
    regress(&regressions::get("symlink_ignores_umask"));
}

#[test]
fn regression_mkdir_drops_setid_bits() {
    regress(&regressions::get("mkdir_drops_setid_bits"));
}

#[test]
fn regression_whiteout_rename_between_hard_links() {
    regress(&regressions::get("whiteout_rename_between_hard_links"));
}

#[test]
fn regression_noreplace_onto_same_inode() {
    regress(&regressions::get("noreplace_onto_same_inode"));
}

#[test]
fn regression_user_xattr_on_symlink() {
    regress(&regressions::get("user_xattr_on_symlink"));
}

#[test]
fn regression_copy_range_overlap_after_eof_shortening() {
    regress(&regressions::get("copy_range_overlap_after_eof_shortening"));
}

#[test]
fn regression_open_rdonly_trunc() {
    regress(&regressions::get("open_rdonly_trunc"));
}

#[test]
fn regression_trunc_to_same_size_frees_reserved_past_eof() {
    regress(&regressions::get("trunc_to_same_size_frees_reserved_past_eof"));
}

#[test]
fn regression_fallocate_len0_readonly() {
    regress(&regressions::get("fallocate_len0_readonly"));
}

#[test]
fn regression_seek_on_directory() {
    regress(&regressions::get("seek_on_directory"));
}

#[test]
fn regression_link_dir_onto_existing() {
    regress(&regressions::get("link_dir_onto_existing"));
}

#[test]
fn regression_copy_range_dir_handle() {
    regress(&regressions::get("copy_range_dir_handle"));
}

#[test]
fn regression_rename_ancestry_before_kind() {
    regress(&regressions::get("rename_ancestry_before_kind"));
}

#[test]
fn regression_xattr_nospace_before_exists() {
    regress(&regressions::get("xattr_nospace_before_exists"));
}

/// Smoke test of the model itself on a hand-written sequence touching every operation.
#[test]
fn model_smoke_every_operation() {
    let rw = OpenMode::RDWR;
    regress(&[
        Op::Mkdir {
            at: at("d0"),
            mode: 0o755,
        },
        Op::Create {
            at: at("d0/a"),
            mode: 0o644,
            flags: rw,
        },
        Op::Write {
            h: 0,
            off: 100,
            len: 5000,
            seed: 1,
        },
        Op::Fallocate {
            h: 0,
            mode: 1,
            off: 20000,
            len: 9000,
        },
        Op::Seek {
            h: 0,
            whence: Whence::Hole,
            off: 0,
        },
        Op::Seek {
            h: 0,
            whence: Whence::Data,
            off: 9000,
        },
        Op::Fallocate {
            h: 0,
            mode: 3,
            off: 50,
            len: 4200,
        },
        Op::Read {
            h: 0,
            off: 0,
            len: 6000,
        },
        Op::Link {
            from: at("d0/a"),
            to: at("b"),
        },
        Op::Symlink {
            at: at("d1"),
            target: 1,
        },
        Op::Mknod {
            at: at("d0/b"),
            kind: NodeKind::Char,
            mode: 0o600,
        },
        Op::SetXattr {
            at: at("b"),
            name: 0,
            len: 33,
            seed: 2,
            flags: 0,
        },
        Op::GetXattr {
            at: at("d0/a"),
            name: 0,
        },
        Op::ListXattr { at: at("b") },
        Op::Rename {
            from: at("d0/a"),
            to: at("d0/b"),
            flags: 2,
        },
        Op::Tmpfile {
            dir: DirSel(1),
            mode: 0o600,
        },
        Op::Write {
            h: 1,
            off: 0,
            len: 10,
            seed: 3,
        },
        Op::LinkHandle { h: 1, to: at("a") },
        Op::CopyRange {
            from: 0,
            off_in: 0,
            to: 1,
            off_out: 4096,
            len: 300,
        },
        Op::Ftruncate { h: 1, size: 3 },
        Op::Truncate { at: at("b"), size: 1 },
        Op::Readdir { dir: DirSel(1) },
        Op::Unlink { at: at("b") },
        Op::Close { h: 0 },
        Op::RemoveXattr {
            at: at("d0/b"),
            name: 0,
        },
        Op::Rmdir { at: at("d0") },
        Op::Statfs,
    ]);
}
