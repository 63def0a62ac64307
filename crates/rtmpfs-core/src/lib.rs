//! # rtmpfs-core: a tmpfs engine in process
//!
//! An in-memory filesystem with Linux tmpfs semantics — inodes, directories with stable readdir
//! cookies, hard links, symlinks, device nodes, sparse paged files, xattrs, permissions, `size`
//! and `nr_inodes` limits — usable from any Rust program, and the engine behind the `rtmpfs`
//! FUSE mount. It knows nothing of FUSE.
//!
//! ```
//! use rtmpfs_core::{Config, Ctx, Filesystem, OpenFlags};
//! use std::ffi::OsStr;
//!
//! let fs = Filesystem::new(Config::default()).unwrap();
//! let ctx = Ctx::root();
//! let (attr, fh) = fs.create(&ctx, fs.root(), OsStr::new("hello"), 0o644, OpenFlags::READ_WRITE).unwrap();
//! fs.write(&ctx, fh, 0, b"hello, world").unwrap();
//! assert_eq!(fs.read_vec(fh, 7, 100).unwrap(), b"world");
//! fs.release(fh).unwrap();
//! assert_eq!(fs.getattr(attr.ino).unwrap().size, 12);
//! ```
//!
//! # Lock order
//!
//! One order, checked in debug builds by [`sync`]'s ranked locks (an inversion panics naming both
//! locks; every lock class has its own rank). A thread only ever takes locks downward in this
//! tree, and nothing at all while it holds a *leaf* (`LockRank::is_leaf`, also checked); `try_*`
//! acquisitions are exempt because they cannot wait.
//!
//! ```text
//! SnapshotRun       one snapshot at a time (held across its I/O; no change takes it)
//! Snapshot          filesystem-wide gate: every change holds it shared, a snapshot exclusively
//!                   only to start its epoch (inodes are captured after, copy-on-write:
//!                   image/cow.rs)
//! Rename            filesystem-wide; cross-directory rename only (freezes parent pointers)
//!  └─ Dir           directory entries; nested: parent before child (rmdir, rename victim),
//!      │            else ancestor first, else ascending ino (rename's two parents)
//!      └─ FileIo    a file's i_rwsem role: write, truncate, punch, fallocate, seek.
//!          │        NEVER taken by read, page fault (a FUSE READ) or the evictor.
//!          └─ Meta  attributes, link/open/lookup counts, xattrs (short holds)
//!              └─ InodeTable, Handles                 leaves: inode and handle table shards
//!              └─ PageMap   slot lookups and transitions; never held across allocation,
//!                  │        I/O, or a wait for memory
//!                  └─ Frame one page's bytes
//!                      └─ FrameBudget, ClockRing, CleanList   leaves (mm: frame waits, CLOCK)
//!                      └─ PoolQueue                           leaf (the compressed pool's order)
//!                      └─ ReadAhead → ReadAheadQueue (leaf)    a file's read-ahead windows
//!                      └─ SwapCopy, SwapSlots, MemoryBackend  leaves (swap tier)
//!                      └─ PreImage                            leaf (a pinned frame's copy)
//!                      └─ SnapStore                           leaf (a snapshot's pre-images,
//!                                                             taken under Dir or Meta)
//!                      └─ IdBatch, SnapshotHook, Threads      leaves (ino/fh batches; test hook;
//!                                                             mm threads)
//! ```
//!
//! Compression and decompression (the compressed tier, `mm/pool.rs`) run with no `PageMap`,
//! `Frame` or lower lock held (checked in debug builds): a pool entry is immutable and shared by
//! `Arc`, so a fault clones it under `PageMap` and decompresses after letting go.
//!
//! The read-ahead locks are leaves taken with nothing above `FileIo` held; a reader waiting for
//! a read-ahead window holds no lock, and the read-ahead thread never waits for a reader.
//!
//! Why this order makes the 2001 tmpfs deadlock impossible: the deadlock was a cycle *write
//! holds the inode lock → fault on the source buffer needs page lookup → page lookup needs the
//! inode lock*. Here the read/fault path ([`Filesystem::read`]) takes only `PageMap` and `Frame`,
//! below `FileIo`, so a writer holding `FileIo` can wait for a reader but a reader can never wait
//! for `FileIo`; page-state changes are compare-and-set against the state seen (a loser retries),
//! and nothing waits for memory with a `PageMap` or `Frame` lock held. See `docs/design.md`.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod acl;
mod config;
mod dir;
mod error;
mod file;
mod fs;
mod housekeeping;
mod ids;
mod image;
mod inode;
mod limits;
mod mm;
mod name;
mod perm;
pub mod swap;
#[doc(hidden)]
pub mod bench {
    //! The compressed tier's classification, for `examples/compress_bench.rs` (which measures
    //! it against the compressors' own verdicts): not a stable API.
    use crate::mm::{Packing, PAGE};
    use crate::Compression;

    /// Whether the compressed tier's estimate calls `page` incompressible without a trial.
    #[must_use]
    pub fn looks_incompressible(page: &[u8; PAGE]) -> bool {
        crate::mm::looks_incompressible(page)
    }

    /// `algo`'s trial on `page` alone (no zero test, no estimate): the compressed length if it
    /// is at most the pool's limit (3,072 bytes), else `None`.
    #[must_use]
    pub fn trial_len(algo: Compression, page: &[u8; PAGE]) -> Option<usize> {
        match crate::mm::trial(algo, page) {
            Packing::Packed(data) => Some(data.len()),
            Packing::Zero | Packing::Incompressible => None,
        }
    }

    /// The largest compressed page the pool stores.
    pub const MAX_PACKED: usize = crate::mm::MAX_PACKED;
}
pub mod sync;
mod types;
mod xattr;

pub use config::{Compression, Config, HostFacts, SwapConfig};
pub use error::{ConfigError, FsError, Result};
pub use fs::MemoryLimitError;
pub use fs::{file_flags, AtimeRule, Filesystem};
pub use fs::{fit_xattr_reply, XattrFit};
pub use image::{ImageError, ImageKey, LimitSource, RestoreOptions, SnapshotOptions, SnapshotStats, IMAGE_VERSION};
pub use types::{
    access, Attr, Ctx, DirEntry, DirEntryPlus, EntryName, FallocateMode, Fh, FileKind, Ino, OpenFlags, ReadMode,
    ReadOutcome, RenameFlags, SeekWhence, SetAttr, SetIdClearing, SetTime, StatFs, Timespec, Usage, MAX_FILE_SIZE,
    NAME_MAX, PAGE_SIZE, SYMLINK_MAX,
};
pub use xattr::{XattrSetMode, XATTR_LIST_MAX, XATTR_NAME_MAX, XATTR_SIZE_MAX};
