//! Request counters: how many round trips of each kind the kernel sent. Cheap (one relaxed
//! atomic add per request) and readable from outside through the control socket
//! (`rtmpfs status --raw MOUNTPOINT`), which is how the docs' round-trip claims are checked.
//! Beside the counts, each kind's latency histogram ([`Latency`]).

use crate::latency::Latency;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of FUSE request counted and timed separately (each groups one or more opcodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum RequestType {
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

/// How many request kinds there are.
pub const OP_COUNT: usize = 17;

impl RequestType {
    /// Every kind, in the order of their names.
    pub const ALL: [RequestType; OP_COUNT] = [
        RequestType::Lookup,
        RequestType::Forget,
        RequestType::Getattr,
        RequestType::Setattr,
        RequestType::Create,
        RequestType::Remove,
        RequestType::Rename,
        RequestType::Open,
        RequestType::Release,
        RequestType::Read,
        RequestType::Write,
        RequestType::Flush,
        RequestType::Readdir,
        RequestType::Readdirplus,
        RequestType::Getxattr,
        RequestType::Xattr,
        RequestType::Other,
    ];

    /// The kind's name, as `rtmpfs status` shows it.
    #[must_use]
    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }
}

const NAMES: [&str; OP_COUNT] = [
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
#[derive(Debug)]
pub struct Stats {
    counts: [AtomicU64; OP_COUNT],
    /// Requests answered with an errno, of any kind (each is also counted by its kind).
    failed: AtomicU64,
    /// Callers' credentials read from /proc (see `adapter::caller`): a file read each, so
    /// counted to check that only the requests whose answer depends on them pay it.
    credential_reads: AtomicU64,
    /// Each kind's latency, from the request's arrival to its reply.
    pub latency: Latency,
}

impl Default for Stats {
    /// Counters with latency accounting on.
    fn default() -> Self {
        Stats::new(true)
    }
}

impl Stats {
    /// Zeroed counters; latency histograms kept only if `latency` (see
    /// [`Latency::enabled_by_env`]).
    #[must_use]
    pub fn new(latency: bool) -> Stats {
        Stats {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            failed: AtomicU64::new(0),
            credential_reads: AtomicU64::new(0),
            latency: Latency::new(latency),
        }
    }

    /// Count one request.
    pub fn count(&self, op: RequestType) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One request kind's count.
    #[must_use]
    pub fn get(&self, op: RequestType) -> u64 {
        self.counts[op as usize].load(Ordering::Relaxed)
    }

    /// Count one request answered with an errno.
    pub fn count_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// How many requests were answered with an errno.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Count one read of a caller's credentials from /proc.
    pub fn count_credential_read(&self) {
        self.credential_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times a caller's credentials were read from /proc.
    #[must_use]
    pub fn credential_reads(&self) -> u64 {
        self.credential_reads.load(Ordering::Relaxed)
    }

    /// `name count` lines, one per kind, then `failed count` and `credential_reads count`.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, c) in NAMES.iter().zip(&self.counts) {
            let _ = writeln!(s, "{name} {}", c.load(Ordering::Relaxed));
        }
        let _ = writeln!(s, "failed {}", self.failed());
        let _ = writeln!(s, "credential_reads {}", self.credential_reads());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_requests_are_counted_apart_and_rendered_last() {
        let s = Stats::default();
        s.count(RequestType::Lookup);
        s.count_failed();
        s.count_failed();
        assert_eq!((s.get(RequestType::Lookup), s.failed()), (1, 2));
        // The 17 request kinds keep their lines and order; `failed` and `credential_reads`
        // come after them.
        s.count_credential_read();
        let text = s.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), NAMES.len() + 2);
        assert_eq!(lines[0], "lookup 1");
        assert_eq!(lines[NAMES.len()], "failed 2");
        assert_eq!(lines[NAMES.len() + 1], "credential_reads 1");
    }
}
