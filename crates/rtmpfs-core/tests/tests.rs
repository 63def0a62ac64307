//! The engine's proof, as one integration-test binary.
//!
//! * `model`: random operation sequences against the reference model (rtmpfs-testkit), compared
//!   after every step with the accounting invariant checked; shrunk failures kept as
//!   `regression_*` tests.
//! * `differential`: the same sequences through libc on a fresh kernel tmpfs mount (needs root).
//! * `bug_classes`: the classic tmpfs bug classes A–F of the semantics reference.
//! * `bad_input`: absurd offsets, invalid names, wrong inode kinds, stale handles: typed errors,
//!   never a panic.
//! * `concurrency`: threads on shared names with a watchdog.
//! * `memory_budget`: `usage` accounts for data, metadata, buffers and the heap; the memory
//!   housekeeping gives a deleted file's pages back unasked; host facts come through `Config`.
//! * `shuttle_tests` (feature `shuttle`): schedule exploration of write × read × truncate × punch;
//!   run with `cargo test -p rtmpfs-core --features shuttle --test tests shuttle`.
//!
//! Seeds: every random test is seeded (`RTMPFS_SEED`, default fixed) and prints its seed and the
//! shrunk input when it fails. `RTMPFS_CASES` / `RTMPFS_DIFF_CASES` raise the case counts.

#[cfg(not(feature = "shuttle"))]
mod bad_input;
#[cfg(not(feature = "shuttle"))]
mod bug_classes;
#[cfg(not(feature = "shuttle"))]
mod common;
#[cfg(not(feature = "shuttle"))]
mod concurrency;
#[cfg(not(feature = "shuttle"))]
mod differential;
#[cfg(not(feature = "shuttle"))]
mod memory_budget;
#[cfg(not(feature = "shuttle"))]
mod model;
#[cfg(not(feature = "shuttle"))]
mod regressions;
#[cfg(feature = "shuttle")]
mod shuttle_tests;
