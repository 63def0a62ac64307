//! Proptest strategies over [`Op`] and a seeded runner that prints the shrunk failing input,
//! shared by the engine's model and differential tests and the mount-level differential test
//! (feature `strategies`: it pulls in proptest).

use crate::op::{decode_len, decode_off, decode_seek, decode_xattr_len, FALLOC_MODES, MODES, RENAME_FLAGS};
use crate::{DirSel, Loc, NodeKind, Op, OpenMode, Whence};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// The default seed of every seeded test; override with `RTMPFS_SEED`.
pub const DEFAULT_SEED: u64 = 0x7a3f_2026_0001;

/// The seed in force.
pub fn seed() -> u64 {
    std::env::var("RTMPFS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// A number from the environment, or a default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Run `test` on `cases` inputs from `strategy` with a fixed seed; on failure, panic with the
/// seed and the shrunk input (one element per line, ready to paste into a regression test).
///
/// # Panics
/// When `test` fails for some input (that is the report), or the runner aborts.
pub fn check<S, F>(name: &str, cases: usize, strategy: S, test: F)
where
    S: Strategy,
    S::Value: Shown,
    F: Fn(S::Value) -> Result<(), String>,
{
    let seed = seed();
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(name.len() as u64).to_le_bytes());
    for (i, b) in name.bytes().enumerate() {
        bytes[16 + i % 16] ^= b;
    }
    let config = Config {
        cases: cases as u32,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let result = runner.run(&strategy, |v| test(v).map_err(TestCaseError::fail));
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => panic!(
            "{name} failed (seed {seed}; rerun with RTMPFS_SEED={seed}).\nShrunk input:\n{}\n{reason}",
            input.shown()
        ),
        Err(TestError::Abort(reason)) => panic!("{name} aborted (seed {seed}): {reason}"),
    }
}

/// How a failing input is printed.
pub trait Shown {
    /// The input, readable.
    fn shown(&self) -> String;
}

impl<T: std::fmt::Debug> Shown for Vec<T> {
    fn shown(&self) -> String {
        let lines: Vec<String> = self.iter().map(|x| format!("    {x:?},")).collect();
        format!("[\n{}\n]", lines.join("\n"))
    }
}

/// A location, biased toward the root and the first level.
pub fn loc() -> impl Strategy<Value = Loc> {
    let dir = prop_oneof![
        3 => Just(0u8),
        2 => Just(1u8),
        2 => Just(2u8),
        1 => Just(3u8),
        1 => Just(4u8),
    ];
    (dir, 0..4u8).prop_map(|(dir, name)| Loc { dir, name })
}

fn dirsel() -> impl Strategy<Value = DirSel> {
    prop_oneof![3 => Just(0u8), 2 => Just(1u8), 2 => Just(2u8), 1 => Just(3u8)].prop_map(DirSel)
}

/// Offsets within this distance of `i64::MAX` are moved down by it in kernel-safe sequences:
/// Linux's SEEK_DATA/SEEK_HOLE overflow on data in the last page below `i64::MAX` (see the
/// differential test's `linux_seek_overflows_in_last_page`), which would derail the comparison.
pub const KERNEL_SAFE_MARGIN: u64 = 64 * 4096;

fn off_in(kernel_safe: bool) -> impl Strategy<Value = u64> {
    (any::<u8>(), any::<u32>()).prop_map(move |(s, r)| {
        let v = decode_off(s, r);
        if kernel_safe && v > i64::MAX as u64 - KERNEL_SAFE_MARGIN {
            v - KERNEL_SAFE_MARGIN
        } else {
            v
        }
    })
}

fn len() -> impl Strategy<Value = u64> {
    (any::<u8>(), any::<u16>()).prop_map(|(s, r)| decode_len(s, r))
}

fn mode() -> impl Strategy<Value = u32> {
    prop::sample::select(MODES.to_vec())
}

fn open_mode() -> impl Strategy<Value = OpenMode> {
    (0..3u8, prop::bool::weighted(0.15), prop::bool::weighted(0.15)).prop_map(|(acc, trunc, append)| OpenMode {
        acc,
        trunc,
        append,
    })
}

fn node_kind() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        Just(NodeKind::Fifo),
        Just(NodeKind::Socket),
        Just(NodeKind::Char),
        Just(NodeKind::Block)
    ]
}

/// One operation. `kernel_safe`: no 200-byte symlink targets (the kernel charges those a data
/// page; the engine does not — a documented deviation) and no data in the last page below
/// `i64::MAX` (a Linux SEEK_DATA bug); the model tests use both.
pub fn op(kernel_safe: bool) -> BoxedStrategy<Op> {
    let long_symlinks = !kernel_safe;
    let off = move || off_in(kernel_safe);
    let target = if long_symlinks {
        prop_oneof![4 => 0..4u8, 1 => Just(255u8)].boxed()
    } else {
        (0..4u8).boxed()
    };
    let h = any::<u8>;
    prop_oneof![
        6 => (loc(), mode(), open_mode()).prop_map(|(at, mode, flags)| Op::Create { at, mode, flags }),
        4 => (loc(), mode()).prop_map(|(at, mode)| Op::Mkdir { at, mode }),
        1 => (loc(), node_kind(), mode()).prop_map(|(at, kind, mode)| Op::Mknod { at, kind, mode }),
        2 => (loc(), target).prop_map(|(at, target)| Op::Symlink { at, target }),
        3 => (loc(), loc()).prop_map(|(from, to)| Op::Link { from, to }),
        1 => (h(), loc()).prop_map(|(h, to)| Op::LinkHandle { h, to }),
        4 => loc().prop_map(|at| Op::Unlink { at }),
        2 => loc().prop_map(|at| Op::Rmdir { at }),
        5 => (loc(), loc(), prop::sample::select(RENAME_FLAGS.to_vec()))
            .prop_map(|(from, to, flags)| Op::Rename { from, to, flags }),
        5 => (loc(), open_mode()).prop_map(|(at, flags)| Op::Open { at, flags }),
        1 => (dirsel(), mode()).prop_map(|(dir, mode)| Op::Tmpfile { dir, mode }),
        4 => h().prop_map(|h| Op::Close { h }),
        10 => (h(), off(), len(), any::<u8>()).prop_map(|(h, off, len, seed)| Op::Write { h, off, len, seed }),
        4 => (h(), off(), len()).prop_map(|(h, off, len)| Op::Read { h, off, len }),
        2 => (loc(), off()).prop_map(|(at, size)| Op::Truncate { at, size }),
        3 => (h(), off()).prop_map(|(h, size)| Op::Ftruncate { h, size }),
        5 => (h(), prop::sample::select(FALLOC_MODES.to_vec()), off(), len())
            .prop_map(|(h, mode, off, len)| Op::Fallocate { h, mode, off, len }),
        3 => (h(), prop_oneof![Just(Whence::Data), Just(Whence::Hole)], any::<u8>(), any::<u32>())
            .prop_map(|(h, whence, s, r)| Op::Seek { h, whence, off: decode_seek(s, r) }),
        2 => (h(), off(), h(), off(), len()).prop_map(|(from, off_in, to, off_out, len)| Op::CopyRange {
            from, off_in, to, off_out, len
        }),
        3 => (loc(), any::<u8>(), any::<u8>(), any::<u16>(), any::<u8>(), any::<u8>()).prop_map(
            |(at, name, s, r, seed, flags)| Op::SetXattr { at, name, len: decode_xattr_len(s, r), seed, flags }
        ),
        1 => (loc(), any::<u8>()).prop_map(|(at, name)| Op::RemoveXattr { at, name }),
        1 => (loc(), any::<u8>()).prop_map(|(at, name)| Op::GetXattr { at, name }),
        1 => loc().prop_map(|at| Op::ListXattr { at }),
        1 => dirsel().prop_map(|dir| Op::Readdir { dir }),
        1 => Just(Op::Statfs),
        2 => (loc(), prop_oneof![6 => 0..16u8, 1 => 16..32u8]).prop_map(|(at, flags)| Op::SetFlags { at, flags }),
        1 => loc().prop_map(|at| Op::GetFlags { at }),
        2 => (loc(), any::<u8>(), any::<bool>()).prop_map(|(at, acl, default)| Op::SetAcl { at, acl, default }),
        1 => (loc(), any::<bool>()).prop_map(|(at, default)| Op::RemoveAcl { at, default }),
    ]
    .boxed()
}

/// A sequence of `1..=max` operations (see [`op`] for `kernel_safe`).
pub fn ops(max: usize, kernel_safe: bool) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(kernel_safe), 1..=max)
}
