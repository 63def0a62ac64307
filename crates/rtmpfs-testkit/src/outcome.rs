//! What an operation returned, and what a whole filesystem looks like: the values compared
//! between the model, the engine and the kernel.

use std::collections::BTreeMap;

pub use rtmpfs_core::FileKind;

/// A backend-specific inode identity (an inode number, or the model's id). Compared between
/// backends only through a bijection that must stay consistent for the whole run.
pub type Id = u64;

/// The result of one operation: a value, or an errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success.
    Ok(Value),
    /// Failure with this errno.
    Err(i32),
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Nothing to report.
    Unit,
    /// A new handle was opened (appended to the handle list).
    Opened,
    /// A byte count or offset.
    Count(u64),
    /// Bytes read, or an xattr value.
    Bytes(Vec<u8>),
    /// Xattr names (sorted).
    Names(Vec<Vec<u8>>),
    /// Directory entries by name: kind and inode identity (`.` and `..` included).
    Entries(BTreeMap<Vec<u8>, (FileKind, Id)>),
    /// statfs figures.
    Statfs(FsStat),
    /// The operation names a handle but none is open: nothing happened.
    NoHandle,
    /// The harness does not open (or truncate through) nodes of this kind: nothing happened.
    /// Opening a fifo, socket or device is the kernel's business, not tmpfs's, and a path
    /// truncate would follow a symlink.
    NotOpened(FileKind),
}

/// The statfs fields tmpfs defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStat {
    /// Block size.
    pub bsize: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Longest name.
    pub namelen: u64,
}

/// The state of one inode as seen through a path or a handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnap {
    /// Backend-specific identity.
    pub id: Id,
    /// Kind.
    pub kind: FileKind,
    /// Permission bits (`mode & 0o7777`).
    pub perm: u32,
    /// Link count.
    pub nlink: u32,
    /// Size.
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// Device number.
    pub rdev: u64,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Regular-file data, when it could be read.
    pub content: Option<Content>,
    /// Extended attributes (not collected for handles).
    pub xattrs: Option<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// (mtime, ctime) as (seconds, nanoseconds), where the backend has clocks.
    pub times: Option<((i64, u32), (i64, u32))>,
}

/// A regular file's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Data extents as `SEEK_DATA`/`SEEK_HOLE` report them: `[start, end)` pairs.
    pub extents: Vec<(u64, u64)>,
    /// The whole file when it is at most [`WHOLE_FILE_LIMIT`] bytes, else the bytes of the
    /// extents, concatenated.
    pub bytes: Vec<u8>,
}

/// Files up to this size are read whole for comparison (holes included).
pub const WHOLE_FILE_LIMIT: u64 = 512 * 1024;

/// A whole filesystem: every node reachable by path (without following symlinks), every open
/// handle's inode, and statfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Nodes by path (`""` is the root).
    pub nodes: BTreeMap<String, NodeSnap>,
    /// The inode of each open handle, in handle order.
    pub handles: Vec<NodeSnap>,
    /// statfs, where the backend's figures are predictable (limited instances).
    pub statfs: Option<FsStat>,
}
