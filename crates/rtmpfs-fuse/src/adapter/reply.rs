//! Replies: the one place an engine error becomes an errno ([`reply_errno`]), and the one place
//! an error reply is sent ([`fail`]), which also counts the failed request and logs it at debug
//! level with the request's name and errno. Every handler answers through these helpers (or
//! replies success directly), so no error reply escapes the count.

use super::Adapter;
use crate::attr::file_attr;
use crate::stats::{RequestType, Stats};
use fuser::{
    Errno, Generation, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatx, ReplyWrite, ReplyXattr,
};
use rtmpfs_core::{fit_xattr_reply, Attr, FsError, XattrFit};
use std::time::Instant;

/// The one place an engine error becomes a FUSE errno.
pub(super) fn reply_errno(e: FsError) -> Errno {
    Errno::from_i32(e.errno())
}

/// An error as the adapter answers it: the engine's [`FsError`] through [`reply_errno`], or an
/// errno the adapter decides itself (EINVAL for an argument the engine never sees, ESTALE).
pub(super) trait ToErrno {
    fn to_errno(self) -> Errno;
}

impl ToErrno for FsError {
    fn to_errno(self) -> Errno {
        reply_errno(self)
    }
}

impl ToErrno for Errno {
    fn to_errno(self) -> Errno {
        self
    }
}

/// A fuser reply that can carry an errno (every reply type has an inherent `error`; fuser has
/// no trait for it).
pub(super) trait ErrorReply {
    fn send_error(self, errno: Errno);
}

macro_rules! error_reply {
    ($($t:ty),* $(,)?) => {
        $(impl ErrorReply for $t {
            fn send_error(self, errno: Errno) {
                self.error(errno);
            }
        })*
    };
}

error_reply!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyIoctl,
    ReplyLseek,
    ReplyOpen,
    ReplyStatx,
    ReplyWrite,
    ReplyXattr,
);

/// One request being served, named for the log (the FUSE opcode, lower case). Made by
/// [`Adapter::begin`], which has counted it and noted when it arrived.
///
/// Invariant: a `Call` lives until the request's reply has been sent (every reply helper takes
/// it by value and drops it after replying; a handler that replies itself holds it to its
/// end), and its drop records the request's latency in its kind's histogram. A READ handed to
/// another thread carries it there as a [`CallState`] and is recorded where it is answered.
#[derive(Debug)]
pub(super) struct Call<'a> {
    pub(super) name: &'static str,
    op: RequestType,
    /// When the request arrived; None when latency accounting is off.
    start: Option<Instant>,
    stats: &'a Stats,
}

/// A [`Call`] between threads: what it needs to be resumed where the reply is sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallState {
    name: &'static str,
    op: RequestType,
    start: Option<Instant>,
}

impl<'a> Call<'a> {
    /// A request of kind `op` that arrived now.
    #[inline]
    pub(super) fn start(stats: &'a Stats, op: RequestType, name: &'static str) -> Call<'a> {
        let start = stats.latency.enabled().then(Instant::now);
        Call { name, op, start, stats }
    }

    /// Hand the call to another thread: this `Call` records nothing; [`Call::resume`] there
    /// does.
    pub(super) fn detach(mut self) -> CallState {
        CallState {
            name: self.name,
            op: self.op,
            start: self.start.take(),
        }
    }

    /// The call handed over by [`Call::detach`].
    pub(super) fn resume(stats: &'a Stats, state: CallState) -> Call<'a> {
        Call {
            name: state.name,
            op: state.op,
            start: state.start,
            stats,
        }
    }
}

impl Drop for Call<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(start) = self.start {
            self.stats.latency.record(self.op, start.elapsed());
        }
    }
}

/// Answer `call` with an error: count it as failed, log it at debug level, reply.
#[allow(clippy::needless_pass_by_value)] // taken by value: dropping the Call records its latency
pub(super) fn fail(stats: &Stats, call: Call<'_>, reply: impl ErrorReply, e: impl ToErrno) {
    let errno = e.to_errno();
    stats.count_failed();
    tracing::debug!(request = call.name, errno = errno.code(), "request failed");
    reply.send_error(errno);
}

/// Answer `call` with `ok` on success, else with the error through [`fail`].
pub(super) fn answer<R: ErrorReply, T, E: ToErrno>(
    stats: &Stats,
    call: Call<'_>,
    reply: R,
    result: Result<T, E>,
    ok: impl FnOnce(R, T),
) {
    match result {
        Ok(v) => ok(reply, v),
        Err(e) => fail(stats, call, reply, e),
    }
}

impl Adapter {
    /// The preamble of every request: count it by kind, and name it for the error log.
    /// A request that changes the file system starts with [`begin_change!`] instead.
    pub(super) fn begin(&self, op: RequestType, name: &'static str) -> Call<'_> {
        self.stats.count(op);
        Call::start(&self.stats, op, name)
    }

    /// [`fail`] with this adapter's counters.
    pub(super) fn fail(&self, call: Call<'_>, reply: impl ErrorReply, e: impl ToErrno) {
        fail(&self.stats, call, reply, e);
    }

    /// [`answer`] with this adapter's counters.
    pub(super) fn answer<R: ErrorReply, T, E: ToErrno>(
        &self,
        call: Call<'_>,
        reply: R,
        result: Result<T, E>,
        ok: impl FnOnce(R, T),
    ) {
        answer(&self.stats, call, reply, result, ok);
    }

    /// Reply with an entry: its attributes and generation, trusted for the mount's TTL.
    pub(super) fn entry(&self, reply: ReplyEntry, attr: &Attr) {
        reply.entry(&self.opts.ttl, &file_attr(attr), Generation(attr.generation));
    }

    /// Reply with an inode's attributes, or the error.
    pub(super) fn reply_attr(&self, call: Call<'_>, reply: ReplyAttr, result: Result<Attr, FsError>) {
        self.answer(call, reply, result, |r, a| r.attr(&self.opts.ttl, &file_attr(&a)));
    }

    /// Reply to an operation that makes or finds an entry: the entry, or the error.
    pub(super) fn reply_entry(&self, call: Call<'_>, reply: ReplyEntry, result: Result<Attr, FsError>) {
        self.answer(call, reply, result, |r, a| self.entry(r, &a));
    }

    /// Reply to an operation with no result but success: ok, or the error.
    pub(super) fn reply_empty<E: ToErrno>(&self, call: Call<'_>, reply: ReplyEmpty, result: Result<(), E>) {
        self.answer(call, reply, result, |r, ()| r.ok());
    }

    /// Answer getxattr/listxattr with the engine's rule for the size-0 probe and ERANGE.
    pub(super) fn reply_xattr(&self, call: Call<'_>, reply: ReplyXattr, value: &[u8], size: u32) {
        self.answer(
            call,
            reply,
            fit_xattr_reply(value.len(), size as usize),
            |r, fit| match fit {
                XattrFit::Size(n) => r.size(n as u32),
                XattrFit::Data => r.data(value),
            },
        );
    }
}

/// The preamble of a request that changes the file system: [`Adapter::begin`], then, on a
/// read-only mount (`ro`, `mount -o remount,ro`), the EROFS answer and a return from the
/// handler. The kernel refuses writes on a read-only mount before they reach us and the engine
/// refuses them too; this only answers early. Evaluates to the [`Call`].
macro_rules! begin_change {
    ($adapter:expr, $op:expr, $name:literal, $reply:ident) => {{
        let call = $adapter.begin($op, $name);
        if $adapter.fs.is_read_only() {
            return $adapter.fail(call, $reply, ::fuser::Errno::EROFS);
        }
        call
    }};
}
pub(super) use begin_change;
