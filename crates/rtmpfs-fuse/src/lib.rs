//! # rtmpfs-fuse: the engine served through FUSE
//!
//! A thin adapter ([`Adapter`], an `impl fuser::Filesystem` over `Arc<rtmpfs_core::Filesystem>`)
//! plus what it takes to run it like tmpfs: tmpfs-style mount options ([`MountOptions`]), the
//! mount itself and its lifecycle ([`daemon::serve`]), and the control socket through which a
//! remount reaches the daemon ([`control`]). See `docs/fuse.md` for the caching modes and their
//! trade-offs.

#![deny(missing_docs)]

mod adapter;
mod attr;
pub mod control;
mod control_handler;
pub mod daemon;
mod health;
pub mod latency;
pub mod mountinfo;
pub mod options;
pub mod persist;
mod stats;
pub mod status;
mod tar_import;
pub mod unprivileged;

pub use adapter::{Adapter, AdapterOptions, DEFAULT_TTL, MAX_IO};
pub use options::{Host, MountOptions, OptionError};
pub use stats::{RequestType, Stats, OP_COUNT};
