//! Test support for `rtmpfs-core`.
//!
//! * [`op`]: the operation language ([`Op`]), small enough that random sequences collide and
//!   reach the limits.
//! * [`model`]: a reference model of Linux tmpfs semantics as seen through system calls — a
//!   `BTreeMap` tree, sparse page maps, and the `size`/`nr_inodes` accounting — that predicts
//!   every result, errno, byte and attribute.
//! * [`engine`]: the same operations run on a [`rtmpfs_core::Filesystem`] through a thin
//!   system-call shim (path walk, `O_NOFOLLOW`, the VFS's argument checks), as the FUSE kernel
//!   module would call it.
//! * [`dir`]: the same operations through system calls on any directory: a private kernel
//!   tmpfs ([`tmpfs`], the oracle) or an rtmpfs FUSE mount.
//! * [`runner`]: runs one sequence on two backends, compares every outcome and, after every
//!   step, a full snapshot of each; inode identities are matched through a bijection that must
//!   hold for the whole run.
//! * [`differential`]: model, engine and any number of directory backends on one sequence,
//!   with the list of accepted deviations from Linux.
//! * `strategies` (feature `strategies`): the proptest strategies that generate sequences and
//!   the seeded runner that prints a shrunk failing sequence.

#![deny(missing_docs)]

pub mod acl;
pub mod differential;
pub mod dir;
pub mod engine;
pub mod model;
pub mod op;
pub mod outcome;
pub mod runner;
#[cfg(feature = "strategies")]
pub mod strategies;
pub mod tmpfs;

pub use op::{at, DirSel, Loc, NodeKind, Op, OpenMode, Whence};
pub use outcome::{Content, FsStat, Id, NodeSnap, Outcome, Snapshot, Value};
pub use runner::{Backend, Runner};
