//! The FUSE adapter: decode a request, call the engine, reply. All semantics live in the engine;
//! this module only converts types, counts lookups the way the kernel does, picks cache flags,
//! and answers through [`reply`] (errno mapping, failed-request counting and logging).
//!
//! Every handler has the same shape: a preamble ([`Adapter::begin`], or [`begin_change!`] for a
//! request that changes the file system, which also refuses it on a read-only mount), one call
//! into the engine, and one reply through the helpers of [`reply`]. The jobs that are more
//! than that live in their own modules: [`swap_in`] (READs that wait on swap), [`readdirplus`]
//! (the lookup references of READDIRPLUS), [`privs`] (set-id clearing, KILLPRIV) and [`flags`]
//! (the file-flag ioctls).
//!
//! Threads: fuser calls these methods from `threads=` event loops (or io_uring ring threads) at
//! once; the engine is thread-safe and no lock is held here across requests, so a request that
//! the kernel issues while serving another (a page fault on a mapping of the file being
//! written, a lookup during a readdir) never waits for this one.

mod flags;
mod privs;
mod readdirplus;
mod reply;
mod swap_in;

use crate::attr::{file_attr, negative_attr, set_time};
use crate::stats::{RequestType, Stats};
use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileHandle, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags as FuseOpenFlags, RenameFlags as FuseRenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyStatx,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use privs::KernelWord;
use reply::begin_change;
use rtmpfs_core::{
    Attr, Ctx, FallocateMode, Fh, Filesystem, FsError, Ino, OpenFlags, RenameFlags, SeekWhence, SetAttr, SetIdClearing,
    Timespec, XattrSetMode,
};
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use swap_in::{ReadRequest, ReadServer, SwapIn};

/// How long the kernel may trust entries and attributes. Everything that changes a name or an
/// attribute goes through this mount (the kernel invalidates what its own requests change), so
/// the only bound is memory: one day, as libfuse's passthrough_hp.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Largest read or write the kernel sends (`max_write`, and the 256-page `max_pages_limit`).
pub const MAX_IO: u32 = 1 << 20;

/// The largest `copy_file_range` served at once: the reply's count is 32 bits.
const MAX_COPY: u64 = 1 << 30;

/// How the adapter serves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterOptions {
    /// `FOPEN_DIRECT_IO` on every open file: no kernel page cache for file data (mmap still
    /// works through `FUSE_DIRECT_IO_ALLOW_MMAP`). Otherwise `FOPEN_KEEP_CACHE`.
    pub direct_io: bool,
    /// The FUSE writeback cache (`-o writeback`): see docs/fuse.md for the trade.
    pub writeback: bool,
    /// Entry and attribute timeout.
    pub ttl: Duration,
    /// How many event loops (`threads=`) serve requests: up to all but one of them may wait on
    /// swap I/O themselves (see `SwapIn::serve`).
    pub event_loops: usize,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        AdapterOptions {
            direct_io: false,
            writeback: false,
            ttl: DEFAULT_TTL,
            event_loops: 1,
        }
    }
}

/// The `fuser::Filesystem` over an engine.
pub struct Adapter {
    fs: Arc<Filesystem>,
    opts: AdapterOptions,
    stats: Arc<Stats>,
    /// The engine and counters a READ is served with, on any thread.
    reads: ReadServer,
    /// Where READs that must wait for swap I/O are served, so that the event loops keep
    /// serving everything else (only when the engine has a RAM budget).
    swap_in: Option<SwapIn>,
    /// `FUSE_HANDLE_KILLPRIV_V2` was negotiated: the daemon, not the kernel, clears set-id bits
    /// on write, truncate, fallocate and copy_file_range (see [`privs`]).
    daemon_kills_privs: bool,
    /// `FUSE_DONT_MASK` was negotiated: the kernel leaves the umask to the daemon, which applies
    /// it to a new inode's mode only when the parent has no default ACL (`posix_acl_create`).
    daemon_applies_umask: bool,
    /// The session's notifier, set once the session exists ([`Adapter::notifier_slot`]): used
    /// to drop the kernel's cached attributes where a request changes them without the kernel
    /// knowing (the file-flag ioctls change ctime; the kernel keeps attributes for the TTL).
    notifier: Arc<OnceLock<fuser::Notifier>>,
}

impl Adapter {
    /// An adapter serving `fs`. Read-only state is the engine's (`set_read_only` on remount).
    #[must_use]
    pub fn new(fs: Arc<Filesystem>, opts: AdapterOptions, stats: Arc<Stats>) -> Adapter {
        let reads = ReadServer {
            fs: fs.clone(),
            stats: stats.clone(),
        };
        let swap_in = fs
            .config()
            .memory_bytes
            .map(|_| SwapIn::start(&reads, opts.event_loops));
        Adapter {
            fs,
            opts,
            stats,
            reads,
            swap_in,
            daemon_kills_privs: false,
            daemon_applies_umask: false,
            notifier: Arc::new(OnceLock::new()),
        }
    }

    /// Where the daemon puts the session's notifier once the session is made (the adapter
    /// moves into the session, so it cannot be given the notifier at construction).
    #[must_use]
    pub fn notifier_slot(&self) -> Arc<OnceLock<fuser::Notifier>> {
        self.notifier.clone()
    }

    /// Drop the kernel's cached attributes of `i` (FUSE_NOTIFY_INVAL_INODE with a negative
    /// offset: attributes only, no page cache). It takes no inode lock in the kernel, so it may
    /// be sent while the request that changed them is still unanswered, which is what makes
    /// the change visible to the caller's next stat.
    fn invalidate_attrs(&self, i: Ino) {
        if let Some(n) = self.notifier.get() {
            if let Err(e) = n.inval_inode(INodeNo(i.0), -1, 0) {
                tracing::debug!("attribute invalidation of inode {} failed: {e}", i.0);
            }
        }
    }

    /// The engine's open flags for a handle the kernel will use. With the writeback cache the
    /// kernel writes pages back through any open handle of the file, reads before a partial
    /// page write, and places O_APPEND writes itself (from the size it keeps): such a handle
    /// must read, and must not append on its own (libfuse's passthrough does the same).
    fn engine_open_flags(&self, flags: i32) -> OpenFlags {
        let mut of = OpenFlags::from_libc(flags);
        if self.opts.writeback {
            of.read |= of.write;
            of.append = false;
        }
        of
    }

    fn file_open_flags(&self, of: OpenFlags) -> FopenFlags {
        let base = if self.opts.direct_io {
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        };
        // NOFLUSH lets `close` skip the kernel's fuse_flush, which is where the kernel writes
        // back dirty mapped pages and returns their pending writeback error (ENOSPC from a store
        // through a shared mapping) before sending FLUSH. Only a handle open for reading and
        // writing can carry a writable shared mapping (mmap needs O_RDWR for that), so only
        // those do without it; every other close stays free of a round trip (write(2) reports
        // its own errors).
        if of.read && of.write {
            base
        } else {
            base | FopenFlags::FOPEN_NOFLUSH
        }
    }

    /// Reply to CREATE or TMPFILE: the new file's entry and its open handle.
    fn created(&self, reply: ReplyCreate, attr: &Attr, h: Fh, of: OpenFlags) {
        reply.created(
            &self.opts.ttl,
            &file_attr(attr),
            Generation(attr.generation),
            FileHandle(h.0),
            self.file_open_flags(of),
        );
    }
}

/// The caller's credentials as the request header has them (under `FUSE_ALLOW_IDMAP` only
/// for requests that create an inode: see [`caller`]). Supplementary groups are not sent by FUSE (the kernel checks
/// permissions with them, `default_permissions`). No umask: creating requests pass theirs
/// through [`Adapter::ctx_creating`]. Whether the caller holds `CAP_FSETID` is unknown here (the
/// engine's rule: exactly when root).
fn ctx(req: &Request) -> Ctx {
    Ctx::user(req.uid(), req.gid())
}

/// The caller's credentials where the engine's answer depends on them (owner and capability
/// rules, the `trusted.` namespace, set-id clearing). Under `FUSE_ALLOW_IDMAP` the kernel sends
/// the caller's ids only with requests that create an inode (already mapped through the
/// mount's idmap) and `FUSE_INVALID_UIDGID` with every other one; then they are read from
/// /proc/TID/status (the fs ids, the groups, and `CAP_FSETID` from the effective set), which
/// costs a file read (~35 µs here, three times a round trip), so only the requests whose answer
/// depends on who asks call this (see [`kernel_checked`] and [`Adapter::caller_for_setid`]).
/// Each read is counted (`credential_reads` in `rtmpfs --stats`).
/// A caller gone meanwhile gets no privilege.
fn caller(stats: &Stats, req: &Request) -> Ctx {
    if !ids_missing(req) {
        return ctx(req);
    }
    stats.count_credential_read();
    let status = std::fs::read_to_string(format!("/proc/{}/status", req.pid())).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // Uid:/Gid: list real, effective, saved and filesystem ids; permission checks use the last.
    let fs_id = |name: &str| field(name).get(3).and_then(|v| v.parse().ok());
    let (Some(uid), Some(gid)) = (fs_id("Uid:"), fs_id("Gid:")) else {
        return ctx(req);
    };
    let cap_eff = field("CapEff:")
        .first()
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    Ctx {
        uid,
        gid,
        groups: field("Groups:").iter().filter_map(|g| g.parse().ok()).collect(),
        umask: 0,
        cap_fsetid: Some(cap_eff & (1 << CAP_FSETID) != 0),
    }
}

impl Adapter {
    /// Credentials for a request on which the kernel has decided everything that depends on
    /// who asks, but possibly one thing: the request's own ids when it carries them; when it
    /// came without ([`ids_missing`]), the caller's, read from /proc ([`caller`]), only if
    /// `at_stake()` says that one thing is decided by them, else [`kernel_checked`]. Each
    /// request kind names its one thing: set-id clearing ([`Adapter::caller_for_setid`]), a
    /// chown's set-group-ID bit (`privs::ctx_changing_attrs`), a `trusted.` name in a list.
    fn caller_if(&self, req: &Request, at_stake: impl FnOnce() -> bool) -> Ctx {
        if !ids_missing(req) {
            ctx(req)
        } else if at_stake() {
            caller(&self.stats, req)
        } else {
            kernel_checked()
        }
    }

    /// [`Adapter::caller_if`] for a request on inode `i` whose only dependence on who asks is
    /// the clearing of `i`'s set-user-ID/set-group-ID bits (SETATTR, the kernel's privilege
    /// clearing, fallocate, copy_file_range, setting an ACL): the engine does not check
    /// permissions here (`default_permissions`: the kernel has), so an inode with neither
    /// bit gets the same answer whoever asks, and the credentials are read only when one is
    /// set. The bits cannot appear meanwhile: the kernel holds the inode's lock across each of
    /// these requests and across every chmod and ACL change that could set them.
    fn caller_for_setid(&self, req: &Request, i: Ino) -> Ctx {
        let has_setid = |a: &Attr| a.perm & (libc::S_ISUID | libc::S_ISGID) != 0;
        self.caller_if(req, || self.fs.getattr(i).is_ok_and(|a| has_setid(&a)))
    }
}

/// The caller's credentials for an xattr request on `name`: only the `trusted.` namespace
/// (root only) depends on who asks, so only it pays for [`caller`].
fn ctx_for_xattr(stats: &Stats, req: &Request, name: &OsStr) -> Ctx {
    if name.as_encoded_bytes().starts_with(b"trusted.") {
        caller(stats, req)
    } else {
        ctx(req)
    }
}

/// The id the kernel sends for "no caller" (`FUSE_INVALID_UIDGID`, `(uid_t)-1`).
const FUSE_INVALID_UIDGID: u32 = u32::MAX;

/// Whether the request came without the caller's ids (`FUSE_ALLOW_IDMAP`, every request that
/// creates no inode): then only [`caller`]'s /proc read says who asks.
fn ids_missing(req: &Request) -> bool {
    req.uid() == FUSE_INVALID_UIDGID || req.gid() == FUSE_INVALID_UIDGID
}

/// Credentials for the engine where the kernel has already decided everything that depends
/// on the caller: permission (every rtmpfs mount has `default_permissions`) and, for a chmod,
/// the set-group-ID bit (`setattr_prepare` strips it from the mode it sends). The engine then
/// only repeats checks that pass. For requests that came without the caller's ids (see
/// [`ids_missing`]), so that the common ones (chmod, utimens, listxattr) do not pay for a
/// /proc read that decides nothing: it cost 28% of the daemon's CPU while untarring.
fn kernel_checked() -> Ctx {
    Ctx::root()
}
/// `CAP_FSETID`'s bit in a capability set.
const CAP_FSETID: u32 = 4;

impl Adapter {
    /// The caller's credentials for CREATE/MKDIR/MKNOD/TMPFILE, with the request's `umask`
    /// when the daemon applies it (`FUSE_DONT_MASK`; else the kernel has masked the mode).
    fn ctx_creating(&self, req: &Request, umask: u32) -> Ctx {
        Ctx {
            umask: if self.daemon_applies_umask { umask } else { 0 },
            ..ctx(req)
        }
    }
}

/// Whether an xattr name is one of the two POSIX ACLs.
fn is_acl_name(name: &OsStr) -> bool {
    matches!(
        name.as_encoded_bytes(),
        b"system.posix_acl_access" | b"system.posix_acl_default"
    )
}

fn fh(h: FileHandle) -> Fh {
    Fh(h.0)
}

fn ino(i: INodeNo) -> Ino {
    Ino(i.0)
}

/// Capabilities we ask for when the kernel offers them; see `docs/fuse.md` for why each.
/// Never ask for what fuser 0.18 cannot honour (SECURITY_CTX, CREATE_SUPP_GROUP,
/// OVER_IO_URING, HAS_RESEND, REQUEST_TIMEOUT, SETXATTR_EXT, locks without lock support).
/// POSIX_ACL, DONT_MASK and ALLOW_IDMAP are asked for in `init`: ACLs as tmpfs has them, the kernel
/// enforcing them (`default_permissions`) and the engine inheriting default ACLs. HANDLE_KILLPRIV_V2 is asked for in `init`: the engine clears
/// set-id bits and capabilities itself on every path that needs it.
fn wanted_capabilities(direct_io: bool) -> Vec<(InitFlags, &'static str)> {
    // Not FUSE_ATOMIC_O_TRUNC, although it spares the SETATTR of every O_TRUNC open: with it
    // the server truncates in OPEN, before the kernel's checks that come after `->open` (a
    // running executable's ETXTBSY for `O_RDONLY|O_TRUNC`, the LSMs' file_truncate hook such
    // as Landlock's truncate right). Those refusals then arrive with the file already empty
    // (docs/fuse.md, "Not requested: `ATOMIC_O_TRUNC`"; tests/parity.rs).
    let mut v = vec![
        (InitFlags::FUSE_EXPORT_SUPPORT, "export_support"),
        (InitFlags::FUSE_DO_READDIRPLUS, "readdirplus"),
        (InitFlags::FUSE_READDIRPLUS_AUTO, "readdirplus_auto"),
        (InitFlags::FUSE_PARALLEL_DIROPS, "parallel_dirops"),
        (InitFlags::FUSE_CACHE_SYMLINKS, "cache_symlinks"),
    ];
    if direct_io {
        v.push((InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP, "direct_io_allow_mmap"));
    }
    v
}

impl fuser::Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Not FUSE_NO_OPENDIR_SUPPORT, although it would save an OPENDIR and a RELEASEDIR per
        // directory opened: a listing ends where the directory ended when it began, and that
        // end lives in the engine's directory handle (as Linux keeps it in the open file);
        // without OPENDIR there is no per-stream place for it (docs/fuse.md, "Requests left").
        if self.opts.writeback && config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE).is_err() {
            tracing::warn!("kernel does not offer FUSE capability writeback_cache: writes go through");
        }
        for (cap, name) in wanted_capabilities(self.opts.direct_io) {
            if config.add_capabilities(cap).is_err() {
                tracing::warn!("kernel does not offer FUSE capability {name}");
            }
        }
        // Set-id and capability clearing in the daemon: it spares a GETXATTR of
        // security.capability before every write(2) (see docs/fuse.md, "Who clears set-id
        // bits"). A kernel without it (before 5.11) keeps clearing them itself.
        self.daemon_kills_privs = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2).is_ok();
        // POSIX ACLs (docs/fuse.md, "POSIX ACLs"): the kernel checks access ACLs and caches
        // them; the daemon stores them, inherits default ACLs at create and so must see the
        // umask unapplied (DONT_MASK), since a default ACL replaces it.
        if config.add_capabilities(InitFlags::FUSE_POSIX_ACL).is_err() {
            tracing::warn!("kernel does not offer FUSE capability posix_acl: no ACLs");
        }
        self.daemon_applies_umask = config.add_capabilities(InitFlags::FUSE_DONT_MASK).is_ok();
        // Idmapped mounts (Linux 6.12+; the kernel requires default_permissions, which every
        // rtmpfs mount has): the kernel maps ids itself and sends a new inode's owner already
        // mapped; other requests then come without the caller's ids (see `caller`).
        if config.add_capabilities(InitFlags::FUSE_ALLOW_IDMAP).is_err() {
            tracing::debug!("kernel does not offer FUSE capability allow_idmap");
        }
        if let Err(max) = config.set_max_write(MAX_IO) {
            let _ = config.set_max_write(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        tracing::debug!(
            "FUSE INIT: kernel ABI {:?}, capabilities {:?}",
            config.kernel_abi(),
            config.capabilities()
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let call = self.begin(RequestType::Lookup, "lookup");
        match self.fs.lookup(&ctx(req), ino(parent), name) {
            Ok(a) => self.entry(reply, &a),
            // A negative entry with the same timeout: names change only through this mount,
            // and the kernel drops the negative dentry when it creates the name itself.
            Err(FsError::NotFound) => {
                reply.entry(&self.opts.ttl, &negative_attr(), Generation(0));
            }
            Err(e) => self.fail(call, reply, e),
        }
    }

    fn forget(&self, _req: &Request, i: INodeNo, nlookup: u64) {
        let _call = self.begin(RequestType::Forget, "forget");
        self.fs.forget(ino(i), nlookup);
    }

    // batch_forget: fuser's default calls `forget` for each node (its `ForgetOne` type is not
    // exported in 0.18, so it cannot be overridden).

    fn getattr(&self, _req: &Request, i: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let call = self.begin(RequestType::Getattr, "getattr");
        self.reply_attr(call, reply, self.fs.getattr(ino(i)));
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        req: &Request,
        i: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        h: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        kill_suidgid: bool,
        reply: ReplyAttr,
    ) {
        let call = begin_change!(self, RequestType::Setattr, "setattr", reply);
        let set = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ctime: ctime.map(Timespec::from_system_time),
            // The kernel truncates an O_TRUNC open with a SETATTR of size 0 carrying no times
            // (`update_mtime` leaves the stamp of an ATTR_OPEN truncation to the server) and no
            // handle. A truncate(2) to 0 by path looks the same, so it gets O_TRUNC's stamp
            // too: a deviation only when the file is already empty (docs/semantics.md), and
            // POSIX requires the stamp of O_TRUNC, not the absence of truncate's.
            open_trunc: size == Some(0)
                && h.is_none_or(|h| h.0 == 0)
                && atime.is_none()
                && mtime.is_none()
                && ctime.is_none()
                && mode.is_none()
                && uid.is_none()
                && gid.is_none(),
        };
        // Under KILLPRIV_V2 the kernel turns its own privilege clearing (file_remove_privs
        // before a change, and chown(-1, -1)) into a SETATTR that sets nothing: clear what a
        // caller without CAP_FSETID must lose. Root keeps its bits (the kernel does not say
        // whether this was a chown(-1, -1), which would clear them for root too: see
        // docs/semantics.md).
        //
        // Otherwise, set-id bits on truncate: FATTR_KILL_SUIDGID is the kernel's word (see
        // `privs`). On chown the engine clears them whoever asks (the kernel sends
        // FATTR_KILL_SUIDGID unconditionally there, so it says nothing about the caller, or,
        // without KILLPRIV_V2, the mode change in this same request). The engine drops
        // security.capability on truncate and chown, as Linux does.
        let word = if set.size.is_some() && set.uid.is_none() && set.gid.is_none() {
            KernelWord::KillSuidgid(kill_suidgid)
        } else {
            KernelWord::Silent
        };
        let r = if self.daemon_kills_privs && self.is_kernels_priv_clearing(&set) {
            let c = self.with_groups_for_setid(req, self.caller_for_setid(req, ino(i)), ino(i));
            self.fs.remove_privs(&c, ino(i))
        } else {
            // Handle 0: no handle of ours (e.g. fchmod of a descriptor the kernel holds without
            // one); the inode suffices.
            let h = h.filter(|h| h.0 != 0).map(fh);
            let (c, clearing) = if set.size.is_none() {
                // No data change (chmod, chown, utimens): as `Silent` below, without a /proc
                // read where the kernel has decided what depends on the caller.
                if self.daemon_kills_privs {
                    let c = self.ctx_changing_attrs(req, &set, ino(i));
                    (self.with_groups_for_setid(req, c, ino(i)), SetIdClearing::Engine)
                } else {
                    (self.ctx_changing_attrs(req, &set, ino(i)), SetIdClearing::Kernel)
                }
            } else {
                self.ctx_changing_data_of(req, word, ino(i))
            };
            self.fs.setattr_with(&c, ino(i), &set, h, clearing)
        };
        self.reply_attr(call, reply, r);
    }

    fn readlink(&self, _req: &Request, i: INodeNo, reply: ReplyData) {
        let call = self.begin(RequestType::Other, "readlink");
        self.answer(call, reply, self.fs.readlink(ino(i)), |r, t| r.data(&t));
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let call = begin_change!(self, RequestType::Create, "mknod", reply);
        let r = self
            .fs
            .mknod(&self.ctx_creating(req, umask), ino(parent), name, mode, u64::from(rdev));
        self.reply_entry(call, reply, r);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let call = begin_change!(self, RequestType::Create, "mkdir", reply);
        let r = self
            .fs
            .mkdir(&self.ctx_creating(req, umask), ino(parent), name, mode & 0o7777);
        self.reply_entry(call, reply, r);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let call = begin_change!(self, RequestType::Remove, "unlink", reply);
        // The kernel drops the victim's nlink and invalidates its attributes itself; the
        // protocol has no attributes in this reply.
        self.reply_empty(call, reply, self.fs.unlink(&ctx(req), ino(parent), name));
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let call = begin_change!(self, RequestType::Remove, "rmdir", reply);
        self.reply_empty(call, reply, self.fs.rmdir(&ctx(req), ino(parent), name));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let call = begin_change!(self, RequestType::Create, "symlink", reply);
        let r = self.fs.symlink(&ctx(req), ino(parent), link_name, target.as_os_str());
        self.reply_entry(call, reply, r);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: FuseRenameFlags,
        reply: ReplyEmpty,
    ) {
        let call = begin_change!(self, RequestType::Rename, "rename", reply);
        let r = RenameFlags::from_libc(flags.bits())
            .and_then(|f| self.fs.rename(&ctx(req), ino(parent), name, ino(newparent), newname, f));
        self.reply_empty(call, reply, r);
    }

    fn link(&self, req: &Request, i: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let call = begin_change!(self, RequestType::Create, "link", reply);
        // The entry carries the inode's fresh attributes (nlink, ctime) and adds a lookup.
        self.reply_entry(call, reply, self.fs.link(&ctx(req), ino(i), ino(newparent), newname));
    }

    fn open(&self, req: &Request, i: INodeNo, flags: FuseOpenFlags, _kill_suidgid: bool, reply: ReplyOpen) {
        let call = self.begin(RequestType::Open, "open");
        let mut of = self.engine_open_flags(flags.0);
        // OPEN never truncates: without ATOMIC_O_TRUNC the kernel strips O_TRUNC from OPEN and
        // truncates by SETATTR once its own checks have passed (see `wanted_capabilities`).
        // Ignoring the flag here keeps that true whatever a kernel sends; so OPEN changes no
        // data, and its set-id word (FUSE_OPEN_KILL_SUIDGID, sent only with O_TRUNC) has
        // nothing to apply to.
        of.truncate = false;
        if self.fs.is_read_only() && of.write {
            return self.fail(call, reply, Errno::EROFS);
        }
        self.answer(call, reply, self.fs.open(&ctx(req), ino(i), of), |r, h| {
            r.opened(FileHandle(h.0), self.file_open_flags(of));
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _req: &Request,
        _i: INodeNo,
        h: FileHandle,
        offset: u64,
        size: u32,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let call = self.begin(RequestType::Read, "read");
        let rq = ReadRequest {
            call: call.detach(),
            fh: fh(h),
            offset,
            size,
        };
        match &self.swap_in {
            Some(swap_in) => swap_in.serve(&self.reads, rq, reply),
            None => self.reads.serve(rq, reply),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let call = begin_change!(self, RequestType::Write, "write", reply);
        // Who clears set-user-ID/set-group-ID on a write: the kernel sets
        // FUSE_WRITE_KILL_SUIDGID exactly when the writer lacks CAP_FSETID, on the cached path
        // under FUSE_HANDLE_KILLPRIV_V2 and on the direct path always; then the engine clears
        // them. Otherwise the kernel has cleared them before the write (file_remove_privs
        // sends a SETATTR). The engine drops security.capability on every write, as Linux
        // does, except mmap writeback (FUSE_WRITE_CACHE): a store through a mapping clears
        // nothing on Linux. The kernel applied O_APPEND (and F_SETFL, RWF_NOAPPEND) itself, so
        // the offset it sends is where the data goes: `write_at`, never the handle's open flags.
        let r = if write_flags.contains(WriteFlags::FUSE_WRITE_CACHE) {
            self.fs.write_back(fh(h), offset, data)
        } else {
            let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
            let (wctx, clearing) = self.ctx_changing_data_of(req, KernelWord::KillSuidgid(kill), ino(i));
            self.fs.write_at(&wctx, fh(h), offset, data, clearing)
        };
        self.answer(call, reply, r, |r, n| r.written(n as u32));
    }

    fn flush(&self, _req: &Request, _i: INodeNo, _h: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // The kernel sends FLUSH on the close of a read-write handle (see `file_open_flags`)
        // after it has written back the dirty pages and returned their error itself: the daemon
        // has nothing left to do (no locks are kept here, WRITE reported its own errors).
        // ENOSYS makes the kernel stop sending FLUSH for this mount (fc->no_flush) while it
        // keeps doing that writeback and error check on every such close. Under `writeback`
        // the kernel ignores NOFLUSH and writes dirty pages back at every close the same way.
        // Not a failure (nothing failed, the kernel is told a fact), so not counted as one.
        let _call = self.begin(RequestType::Flush, "flush");
        reply.error(Errno::ENOSYS);
    }

    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        req: &Request,
        i: INodeNo,
        _h: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // The file flags (chattr/lsattr, see `flags`). Any other ioctl is ENOTTY, what Linux
        // answers for an ioctl a file does not support and what isatty() expects of a regular
        // file: every isatty() on the mount sends TCGETS here. That answer is the expected
        // one, not a failed request: it is neither counted as failed nor logged (fuser's
        // default logged each one as a warning).
        let call = self.begin(RequestType::Other, "ioctl");
        match self.file_flags_ioctl(req, ino(i), cmd, in_data) {
            Some(r) => self.answer(call, reply, r, |r, data| r.ioctl(0, &data)),
            None => reply.error(Errno::ENOTTY),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _i: INodeNo,
        h: FileHandle,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let call = self.begin(RequestType::Release, "release");
        self.reply_empty(call, reply, self.fs.release(fh(h)));
    }

    fn fsync(&self, _req: &Request, _i: INodeNo, h: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let call = self.begin(RequestType::Other, "fsync");
        self.reply_empty(call, reply, self.fs.fsync(fh(h)));
    }

    fn opendir(&self, req: &Request, i: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        let call = self.begin(RequestType::Open, "opendir");
        // CACHE_DIR: the kernel keeps listings in its page cache and drops them when the
        // directory changes through it; KEEP_CACHE: opendir does not drop them.
        self.answer(call, reply, self.fs.opendir(&ctx(req), ino(i)), |r, h| {
            r.opened(
                FileHandle(h.0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            );
        });
    }

    fn readdir(&self, _req: &Request, _i: INodeNo, h: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let call = self.begin(RequestType::Readdir, "readdir");
        // Each entry's offset is its engine cookie: the kernel resumes after it.
        let r = self.fill_readdir(fh(h), offset, &mut reply);
        self.answer(call, reply, r, |r, ()| r.ok());
    }

    fn readdirplus(&self, _req: &Request, _i: INodeNo, h: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let call = self.begin(RequestType::Readdirplus, "readdirplus");
        let r = self.fill_readdirplus(fh(h), offset, &mut reply);
        self.answer(call, reply, r, |r, ()| r.ok());
    }

    fn releasedir(&self, _req: &Request, _i: INodeNo, h: FileHandle, _flags: FuseOpenFlags, reply: ReplyEmpty) {
        let call = self.begin(RequestType::Release, "releasedir");
        self.reply_empty(call, reply, self.fs.releasedir(fh(h)));
    }

    fn fsyncdir(&self, _req: &Request, _i: INodeNo, h: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let call = self.begin(RequestType::Other, "fsyncdir");
        self.reply_empty(call, reply, self.fs.fsync(fh(h)));
    }

    fn statfs(&self, _req: &Request, _i: INodeNo, reply: ReplyStatfs) {
        let _call = self.begin(RequestType::Other, "statfs");
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        i: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let call = begin_change!(self, RequestType::Xattr, "setxattr", reply);
        if position != 0 {
            return self.fail(call, reply, Errno::EINVAL);
        }
        let c = if is_acl_name(name) {
            self.ctx_setting_acl(req, ino(i))
        } else {
            ctx_for_xattr(&self.stats, req, name)
        };
        let r = XattrSetMode::from_libc(flags).and_then(|m| self.fs.setxattr(&c, ino(i), name, value, m));
        self.reply_empty(call, reply, r);
    }

    fn getxattr(&self, req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let call = self.begin(RequestType::Getxattr, "getxattr");
        match self.fs.getxattr(&ctx_for_xattr(&self.stats, req, name), ino(i), name) {
            Ok(v) => self.reply_xattr(call, reply, &v, size),
            Err(e) => self.fail(call, reply, e),
        }
    }

    fn listxattr(&self, req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        let call = self.begin(RequestType::Xattr, "listxattr");
        // As Linux: the size query answers the length even past 64 KiB; a list that does not
        // fit the buffer is ERANGE, which the kernel turns into E2BIG for a 64 KiB buffer.
        // Without the caller's ids, list once as root, who sees every name: only a list with
        // a `trusted.` name (root's alone) depends on who asks; only then is it listed again
        // with the caller's credentials, read from /proc. A root list too long to answer may
        // still fit the caller's, so it is asked again too.
        let c = if ids_missing(req) {
            match self.fs.listxattr(&kernel_checked(), ino(i)) {
                Ok(v) if !v.split(|&b| b == 0).any(|n| n.starts_with(b"trusted.")) => {
                    if size == 0 {
                        return self.answer(call, reply, Ok::<_, FsError>(v.len()), |r, n| {
                            r.size(u32::try_from(n).unwrap_or(u32::MAX));
                        });
                    }
                    return self.reply_xattr(call, reply, &v, size);
                }
                Ok(_) | Err(FsError::TooBig) => caller(&self.stats, req),
                Err(e) => return self.fail(call, reply, e),
            }
        } else {
            ctx(req)
        };
        if size == 0 {
            let len = self.fs.listxattr_len(&c, ino(i));
            return self.answer(call, reply, len, |r, n| r.size(u32::try_from(n).unwrap_or(u32::MAX)));
        }
        match self.fs.listxattr(&c, ino(i)) {
            Ok(v) => self.reply_xattr(call, reply, &v, size),
            Err(FsError::TooBig) => self.fail(call, reply, Errno::ERANGE),
            Err(e) => self.fail(call, reply, e),
        }
    }

    fn removexattr(&self, req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let call = begin_change!(self, RequestType::Xattr, "removexattr", reply);
        let c = if is_acl_name(name) {
            self.ctx_setting_acl(req, ino(i))
        } else {
            ctx_for_xattr(&self.stats, req, name)
        };
        self.reply_empty(call, reply, self.fs.removexattr(&c, ino(i), name));
    }

    fn access(&self, req: &Request, i: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Not sent with default_permissions (the kernel answers access(2) itself).
        let call = self.begin(RequestType::Other, "access");
        if self.fs.is_read_only() && mask.contains(AccessFlags::W_OK) {
            return self.fail(call, reply, Errno::EROFS);
        }
        self.reply_empty(call, reply, self.fs.access(&ctx(req), ino(i), mask.bits() as u32));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        _kill_suidgid: bool,
        reply: ReplyCreate,
    ) {
        // `_kill_suidgid`: CREATE makes a new file (an existing name answers ESTALE or
        // EEXIST below), so there are no set-id bits to clear.
        let call = begin_change!(self, RequestType::Create, "create", reply);
        let of = self.engine_open_flags(flags);
        match self
            .fs
            .create(&self.ctx_creating(req, umask), ino(parent), name, mode & 0o7777, of)
        {
            Ok((a, h)) => self.created(reply, &a, h, of),
            // The name appeared after the kernel's lookup (another creator won the race).
            // Without O_EXCL, open(2) must open the existing file, with the permission checks
            // of an ordinary open: ESTALE makes the kernel redo the whole open with a fresh
            // lookup (do_filp_open retries with LOOKUP_REVAL).
            Err(FsError::Exists) if flags & libc::O_EXCL == 0 => self.fail(call, reply, Errno::ESTALE),
            Err(e) => self.fail(call, reply, e),
        }
    }

    fn tmpfile(&self, req: &Request, parent: INodeNo, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        let call = begin_change!(self, RequestType::Create, "tmpfile", reply);
        // The engine's anonymous file: nlink 0, one lookup reference for the kernel's entry,
        // an open handle. The kernel alone decides whether it may be linked later (O_EXCL).
        let of = self.engine_open_flags(flags);
        let r = self
            .fs
            .tmpfile(&self.ctx_creating(req, umask), ino(parent), mode & 0o7777, of);
        self.answer(call, reply, r, |r, (a, h)| self.created(r, &a, h, of));
    }

    fn statx(&self, _req: &Request, i: INodeNo, _fh: Option<FileHandle>, _flags: u32, _mask: u32, reply: ReplyStatx) {
        // The kernel asks only for what it lacks (the birth time, or everything after an
        // invalidation); the engine has all fields at once, so every reply carries them all
        // and the kernel caches them like GETATTR's.
        let call = self.begin(RequestType::Getattr, "statx");
        self.answer(call, reply, self.fs.getattr(ino(i)), |r, a| {
            r.statx(&self.opts.ttl, &file_attr(&a));
        });
    }

    fn fallocate(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let call = begin_change!(self, RequestType::Other, "fallocate", reply);
        // Set-id bits: see `privs`.
        let r = FallocateMode::from_libc(mode).and_then(|m| {
            let (c, clearing) = self.ctx_changing_data_of(req, KernelWord::Silent, ino(i));
            self.fs.fallocate_with(&c, fh(h), offset, length, m, clearing)
        });
        self.reply_empty(call, reply, r);
    }

    fn lseek(&self, _req: &Request, _i: INodeNo, h: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        // The kernel answers SEEK_SET/CUR/END itself; only SEEK_DATA/SEEK_HOLE come here.
        let call = self.begin(RequestType::Other, "lseek");
        let whence = match whence {
            libc::SEEK_DATA => SeekWhence::Data,
            libc::SEEK_HOLE => SeekWhence::Hole,
            _ => return self.fail(call, reply, Errno::EINVAL),
        };
        self.answer(call, reply, self.fs.lseek(fh(h), offset, whence), |r, o| {
            r.offset(o as i64);
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let call = begin_change!(self, RequestType::Write, "copy_file_range", reply);
        if !flags.is_empty() {
            return self.fail(call, reply, Errno::EINVAL);
        }
        // Like a write, a copy by a caller without CAP_FSETID clears set-id bits of the
        // target (see `privs`). The kernel refused an O_APPEND target itself
        // (generic_copy_file_checks, seeing F_SETFL changes), so the engine does not check.
        let (c, clearing) = self.ctx_changing_data_of(req, KernelWord::Silent, ino(ino_out));
        let r = self.fs.copy_file_range_at(
            &c,
            fh(fh_in),
            offset_in,
            fh(fh_out),
            offset_out,
            len.min(MAX_COPY),
            clearing,
        );
        self.answer(call, reply, r, |r, n| r.written(n as u32));
    }
}
