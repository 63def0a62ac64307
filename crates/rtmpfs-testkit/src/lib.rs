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
//! * [`runner`]: runs one sequence on several backends, compares every outcome and, after every
//!   step, a full snapshot of each; inode identities are matched through a bijection that must
//!   hold for the whole run.
//!
//! The kernel backend (libc on a real tmpfs mount) lives in the differential test, which is the
//! only user that mounts anything.

#![deny(missing_docs)]

pub mod acl;
pub mod engine;
pub mod model;
pub mod op;
pub mod outcome;
pub mod runner;

pub use op::{at, DirSel, Loc, NodeKind, Op, OpenMode, Whence};
pub use outcome::{Content, FsStat, Id, NodeSnap, Outcome, Snapshot, Value};
pub use runner::{Backend, Runner};
