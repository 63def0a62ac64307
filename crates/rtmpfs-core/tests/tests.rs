//! The engine's proof, as one integration-test binary.
//!
//! * `model`: random operation sequences against the reference model (rtmpfs-testkit), compared
//!   after every step with the accounting invariant checked; shrunk failures kept as
//!   `regression_*` tests.
//! * `differential`: the same sequences through libc on a fresh kernel tmpfs mount (needs root;
//!   the backends and runner are `rtmpfs_testkit::differential`, also used through a mount by
//!   `crates/rtmpfs-cli/tests/differential.rs`).
//! * `bug_classes`: the classic tmpfs bug classes A–F of the semantics reference.
//! * `image`: snapshot → restore round trips of random trees (also swapped out), snapshots under
//!   writers are states that existed, damaged images refused with the reason.
//! * `acl`: POSIX ACLs for in-process users (set, enforce, inherit, chmod).
//! * `bad_input`: absurd offsets, invalid names, wrong inode kinds, stale handles: typed errors,
//!   never a panic.
//! * `concurrency`: threads on shared names with a watchdog.
//! * `memory_limit`: the RAM budget of a live filesystem raised and cut (`set_memory_limit`).
//! * `memory_budget`: `usage` accounts for data, metadata, buffers and the heap; the memory
//!   housekeeping gives a deleted file's pages back unasked; host facts come through `Config`.
//! * `parity`: the engine's side of the issue-10 fixes (O_APPEND, listings while renaming,
//!   atime rules, xattr flags, file flags).
//! * `remount`: the run-time switches a FUSE server needs (remount, `CAP_FSETID`, capability
//!   stripping, lookup references).
//! * `readdir_batches`: `readdir`/`readdirplus` batches, resumable by cookie; the lookup
//!   references `readdirplus` takes.
//! * `setid_clearing`: `SetIdClearing`, who clears set-id bits on a data change (engine or
//!   client), through every data-changing call.
//! * `compress`: the compressed tier: every page-state transition through the pool, zero and
//!   incompressible pages, `noswap`, a failing swap device.
//! * `swap`: the RAM budget and the swap tier with in-memory and fault-injecting backends.
//! * `read_nowait`: one-pass READ: `ReadMode::NoWait` does no swap I/O and answers `WouldBlock`.
//! * `shuttle_tests` (feature `shuttle`): schedule exploration of write × read × truncate × punch,
//!   and under a RAM budget of eviction, swap-in, read-ahead and a dying swap device; run with
//!   `cargo test -p rtmpfs-core --features shuttle --test tests shuttle`.
//!
//! Seeds: every random test is seeded (`RTMPFS_SEED`, default fixed) and prints its seed and the
//! shrunk input when it fails. `RTMPFS_CASES` / `RTMPFS_DIFF_CASES` raise the case counts.

#[cfg(not(feature = "shuttle"))]
mod acl;
#[cfg(not(feature = "shuttle"))]
mod bad_input;
#[cfg(not(feature = "shuttle"))]
mod bug_classes;
#[cfg(not(feature = "shuttle"))]
mod common;
#[cfg(not(feature = "shuttle"))]
mod compress;
#[cfg(not(feature = "shuttle"))]
mod concurrency;
#[cfg(not(feature = "shuttle"))]
mod differential;
#[cfg(not(feature = "shuttle"))]
mod image;
#[cfg(not(feature = "shuttle"))]
mod memory_budget;
#[cfg(not(feature = "shuttle"))]
mod memory_limit;
#[cfg(not(feature = "shuttle"))]
mod model;
#[cfg(not(feature = "shuttle"))]
mod parity;
#[cfg(not(feature = "shuttle"))]
mod read_nowait;
#[cfg(not(feature = "shuttle"))]
mod readdir_batches;
#[cfg(not(feature = "shuttle"))]
mod regressions;
#[cfg(not(feature = "shuttle"))]
mod remount;
#[cfg(not(feature = "shuttle"))]
mod setid_clearing;
#[cfg(feature = "shuttle")]
mod shuttle_tests;
#[cfg(not(feature = "shuttle"))]
mod swap;
