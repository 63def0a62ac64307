//! Request counters: how many round trips of each kind the kernel sent. Cheap (one relaxed
//! atomic add per request) and readable from outside through the control socket
//! (`rtmpfs --stats MOUNTPOINT`), which is how the docs' round-trip claims are checked.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Request kinds counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Op {
    /// LOOKUP.
    Lookup,
    /// FORGET and BATCH_FORGET.
    Forget,
    /// GETATTR, STATX.
    Getattr,
    /// SETATTR.
    Setattr,
    /// CREATE, TMPFILE, MKNOD, MKDIR, SYMLINK, LINK.
    Create,
    /// UNLINK, RMDIR.
    Remove,
    /// RENAME, RENAME2.
    Rename,
    /// OPEN, OPENDIR.
    Open,
    /// RELEASE, RELEASEDIR.
    Release,
    /// READ.
    Read,
    /// WRITE, COPY_FILE_RANGE.
    Write,
    /// FLUSH.
    Flush,
    /// READDIR.
    Readdir,
    /// READDIRPLUS.
    Readdirplus,
    /// GETXATTR.
    Getxattr,
    /// SETXATTR, LISTXATTR, REMOVEXATTR.
    Xattr,
    /// Everything else.
    Other,
}

const NAMES: [&str; 17] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "create",
    "remove",
    "rename",
    "open",
    "release",
    "read",
    "write",
    "flush",
    "readdir",
    "readdirplus",
    "getxattr",
    "xattr",
    "other",
];

/// The counters.
#[derive(Debug, Default)]
pub struct Stats {
    counts: [AtomicU64; 17],
}

impl Stats {
    /// Count one request.
    pub fn count(&self, op: Op) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One request kind's count.
    #[must_use]
    pub fn get(&self, op: Op) -> u64 {
        self.counts[op as usize].load(Ordering::Relaxed)
    }

    /// `name count` lines, one per kind.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, c) in NAMES.iter().zip(&self.counts) {
            let _ = writeln!(s, "{name} {}", c.load(Ordering::Relaxed));
        }
        s
    }
}
