//! The FUSE adapter: decode a request, call the engine, reply. All semantics live in the engine;
//! this file only converts types, counts lookups the way the kernel does, picks cache flags, and
//! turns [`FsError`] into an errno with [`reply_errno`] (the engine's table is the only one).
//!
//! Threads: fuser calls these methods from `threads=` event loops at once; the engine is
//! thread-safe and no lock is held here across requests, so a request that the kernel issues
//! while serving another (a page fault on a mapping of the file being written, a lookup during a
//! readdir) never waits for this one.

use crate::attr::{file_attr, negative_attr, set_time};
use crate::stats::{Op, Stats};
use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileHandle, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags as FuseOpenFlags, RenameFlags as FuseRenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyStatx,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use rtmpfs_core::{
    fit_xattr_reply, Attr, Ctx, DirEntry, FallocateMode, Fh, FileKind, Filesystem, FsError, Ino, OpenFlags,
    RenameFlags, SeekWhence, SetAttr, Timespec, XattrFit, XattrSetMode,
};
use std::cell::RefCell;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long the kernel may trust entries and attributes. Everything that changes a name or an
/// attribute goes through this mount (the kernel invalidates what its own requests change), so
/// the only bound is memory: one day, as libfuse's passthrough_hp.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Largest read or write the kernel sends (`max_write`, and the 256-page `max_pages_limit`).
pub const MAX_IO: u32 = 1 << 20;

/// Entries collected from the engine per batch in readdirplus (a 32 KiB getdents buffer holds
/// about 200 entries with attributes).
const READDIRPLUS_BATCH: usize = 256;

/// The largest `copy_file_range` served at once: the reply's count is 32 bits.
const MAX_COPY: u64 = 1 << 30;

thread_local! {
    /// Per-thread read buffer, grown once to the largest read seen (1 MiB), so that a READ
    /// costs no allocation.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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
    /// swap I/O themselves (see `Adapter::read`).
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
    /// Workers for READs that must wait for swap I/O, so that the event loops keep serving
    /// everything else (only when the engine has a RAM budget).
    swap_in: Option<SwapInPool>,
    /// Event loops serving a READ that waits on swap I/O themselves right now.
    inline_swap_ins: AtomicUsize,
    /// `FUSE_HANDLE_KILLPRIV_V2` was negotiated: the daemon, not the kernel, clears set-id bits
    /// on write, truncate, fallocate and copy_file_range (see [`Adapter::ctx_changing_data`]).
    daemon_kills_privs: bool,
}

impl Adapter {
    /// An adapter serving `fs`. Read-only state is the engine's (`set_read_only` on remount).
    #[must_use]
    pub fn new(fs: Arc<Filesystem>, opts: AdapterOptions, stats: Arc<Stats>) -> Adapter {
        let swap_in = fs
            .config()
            .memory_bytes
            .map(|_| SwapInPool::start(fs.clone(), SWAP_IN_WORKERS));
        Adapter {
            fs,
            opts,
            stats,
            swap_in,
            inline_swap_ins: AtomicUsize::new(0),
            daemon_kills_privs: false,
        }
    }

    /// Whether a SETATTR is the kernel's own clearing of privileges (file_remove_privs before
    /// a change, `chown(f, -1, -1)`), which under KILLPRIV_V2 sets nothing: with the writeback
    /// cache the kernel owns ctime and sends it along, so there "nothing" is "only ctime".
    fn is_kernels_priv_clearing(&self, set: &SetAttr) -> bool {
        let without_ctime = SetAttr { ctime: None, ..*set };
        without_ctime == SetAttr::default() && (set.ctime.is_none() || self.opts.writeback)
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

    /// The caller's credentials for a change of a file's data (write, truncate, O_TRUNC,
    /// fallocate, copy_file_range), which must clear set-user-ID/set-group-ID bits when the
    /// caller lacks `CAP_FSETID`. This is the adapter's one decision on privilege:
    ///
    /// * The request carries the kernel's flag (`FUSE_WRITE_KILL_SUIDGID` on WRITE,
    ///   `FATTR_KILL_SUIDGID` on a truncating SETATTR, `FUSE_OPEN_KILL_SUIDGID` on an O_TRUNC
    ///   OPEN): it is the kernel's word, set exactly when the caller lacks `CAP_FSETID` under
    ///   `FUSE_HANDLE_KILLPRIV_V2` (WRITE: also on the direct path without it). Unset, either
    ///   the caller holds the capability or the kernel has cleared the bits itself before
    ///   (file_remove_privs sends a SETATTR): the engine must leave them alone either way.
    /// * The kernel says nothing (fallocate, copy_file_range): under `KILLPRIV_V2` the
    ///   engine's own rule decides (`CAP_FSETID` exactly when root); without it the kernel
    ///   has cleared them already.
    fn ctx_changing_data(&self, req: &Request, word: KernelWord) -> Ctx {
        match word {
            KernelWord::KillSuidgid(kill) => Ctx {
                cap_fsetid: Some(!kill),
                ..ctx(req)
            },
            KernelWord::Silent if self.daemon_kills_privs => ctx(req),
            KernelWord::Silent => ctx_kernel_killed_privs(req),
        }
    }

    /// [`Adapter::ctx_changing_data`] for a change of inode `i`, with the supplementary groups
    /// when they decide its set-group-ID bit.
    fn ctx_changing_data_of(&self, req: &Request, word: KernelWord, i: Ino) -> Ctx {
        self.with_groups_for_setid(req, self.ctx_changing_data(req, word), i)
    }

    /// `c` with the caller's supplementary groups filled in when they decide a set-group-ID
    /// clearing on `i`: the file has set-group-ID without group-execute and is not of the
    /// caller's primary group, so Linux keeps the bit only for a member of its group
    /// (`setattr_should_drop_sgid`). FUSE sends no supplementary groups; they are read from
    /// /proc for this rare case only (a process gone meanwhile counts as in no group).
    fn with_groups_for_setid(&self, req: &Request, mut c: Ctx, i: Ino) -> Ctx {
        // A caller keeping its bits anyway needs no groups (and the common write costs no
        // attribute read).
        if c.has_fsetid() {
            return c;
        }
        let needs = self
            .fs
            .getattr(i)
            .is_ok_and(|a| a.perm & (libc::S_ISGID | 0o010) == libc::S_ISGID && a.gid != req.gid());
        if needs {
            c.groups = supplementary_groups(req.pid());
        }
        c
    }

    /// `chattr`: set the file flags as the caller; no data in the reply.
    fn set_file_flags(&self, req: &Request, i: Ino, flags: u32) -> Result<Vec<u8>, FsError> {
        if self.rofs() {
            return Err(FsError::ReadOnly);
        }
        self.fs.set_file_flags(&ctx(req), i, flags).map(|_| Vec::new())
    }

    fn count(&self, op: Op) {
        self.stats.count(op);
    }

    /// Read-only (`ro`, `mount -o remount,ro`): the kernel refuses writes on a read-only mount
    /// before they reach us and the engine refuses them too; this only answers early.
    fn rofs(&self) -> bool {
        self.fs.is_read_only()
    }

    fn entry(&self, reply: ReplyEntry, attr: &Attr) {
        reply.entry(&self.opts.ttl, &file_attr(attr), Generation(attr.generation));
    }

    /// Reply with an inode's attributes, or the error.
    fn reply_attr(&self, reply: ReplyAttr, result: Result<Attr, FsError>) {
        match result {
            Ok(a) => reply.attr(&self.opts.ttl, &file_attr(&a)),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    /// Reply to an operation that makes or finds an entry: the entry, or the error.
    fn reply_entry(&self, reply: ReplyEntry, result: Result<Attr, FsError>) {
        match result {
            Ok(a) => self.entry(reply, &a),
            Err(e) => reply.error(reply_errno(e)),
        }
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
}

/// What the kernel says, with a data change, about the caller's privilege to keep set-id bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelWord {
    /// The request's `KILL_SUIDGID` flag: set exactly when the bits must go.
    KillSuidgid(bool),
    /// The protocol has no flag for this change.
    Silent,
}

/// The caller's credentials. Supplementary groups are not sent by FUSE (the kernel checks
/// permissions with them, `default_permissions`). The kernel has applied the umask already
/// (we do not ask for `FUSE_DONT_MASK`), so none is passed on. Whether the caller holds
/// `CAP_FSETID` is unknown here (the engine's rule: exactly when root).
fn ctx(req: &Request) -> Ctx {
    Ctx::user(req.uid(), req.gid())
}

/// `FS_IOC_GETFLAGS` (`_IOR('f', 1, long)`): the kernel sends it with a 4-byte result.
const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
/// `FS_IOC_SETFLAGS` (`_IOW('f', 2, long)`): 4 bytes of flags in.
const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
/// `FS_IOC_FSGETXATTR` (`_IOR('X', 31, struct fsxattr)`): 28 bytes out.
const FS_IOC_FSGETXATTR: u32 = 0x801c_581f;
/// `FS_IOC_FSSETXATTR` (`_IOW('X', 32, struct fsxattr)`): 28 bytes in.
const FS_IOC_FSSETXATTR: u32 = 0x401c_5820;
/// `struct fsxattr`'s size: xflags, extsize, nextents, projid, cowextsize, 8 bytes of pad.
const FSXATTR_LEN: usize = 28;
/// `FS_XFLAG_*` for the flags tmpfs supports, paired with their `FS_*_FL` (fileattr.c).
const XFLAGS: [(u32, u32); 4] = [
    (0x08, rtmpfs_core::file_flags::IMMUTABLE),
    (0x10, rtmpfs_core::file_flags::APPEND),
    (0x80, rtmpfs_core::file_flags::NODUMP),
    (0x40, rtmpfs_core::file_flags::NOATIME),
];

fn flags_to_xflags(flags: u32) -> u32 {
    XFLAGS.iter().filter(|(_, f)| flags & f != 0).map(|(x, _)| x).sum()
}

/// A `struct fsxattr` carrying only `xflags`.
fn fsxattr_bytes(xflags: u32) -> Vec<u8> {
    let mut v = vec![0u8; FSXATTR_LEN];
    v[..4].copy_from_slice(&xflags.to_le_bytes());
    v
}

/// The file flags a `struct fsxattr` asks for, or `None` when it asks for more than tmpfs
/// keeps (other xflags, an extent size, a project id: `fileattr_has_fsx`, EOPNOTSUPP).
fn fsxattr_flags(data: &[u8]) -> Option<u32> {
    let word = |k: usize| {
        data.get(4 * k..4 * k + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let xflags = word(0)?;
    let known: u32 = XFLAGS.iter().map(|(x, _)| x).sum();
    if xflags & !known != 0 || word(1)? != 0 || word(3)? != 0 || word(4)? != 0 {
        return None;
    }
    Some(XFLAGS.iter().filter(|(x, _)| xflags & x != 0).map(|(_, f)| f).sum())
}

/// The supplementary groups of thread `tid` (the `Groups:` line of /proc/TID/status; FUSE's
/// request pid is the calling thread's id, and credentials are per thread); empty if unknown.
fn supplementary_groups(tid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

/// The caller's credentials for a data change after which the *kernel* has already cleared the
/// set-id bits if they had to go (the cached path: file_remove_privs/file_modified, or the
/// SETATTR it builds for truncate and chown): the engine must leave the mode alone.
fn ctx_kernel_killed_privs(req: &Request) -> Ctx {
    Ctx {
        cap_fsetid: Some(true),
        ..ctx(req)
    }
}

/// The one place an engine error becomes a FUSE errno.
fn reply_errno(e: FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn fh(h: FileHandle) -> Fh {
    Fh(h.0)
}

fn ino(i: INodeNo) -> Ino {
    Ino(i.0)
}

/// Capabilities we ask for when the kernel offers them; see `docs/fuse.md` for why each.
/// Never ask for what fuser 0.18 cannot honour (SECURITY_CTX, CREATE_SUPP_GROUP, ALLOW_IDMAP,
/// OVER_IO_URING, HAS_RESEND, REQUEST_TIMEOUT, SETXATTR_EXT, POSIX_ACL without ACL support,
/// locks without lock support). HANDLE_KILLPRIV_V2 is asked for in `init`: the engine clears
/// set-id bits and capabilities itself on every path that needs it.
fn wanted_capabilities(direct_io: bool) -> Vec<(InitFlags, &'static str)> {
    let mut v = vec![
        (InitFlags::FUSE_ATOMIC_O_TRUNC, "atomic_o_trunc"),
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
        self.count(Op::Lookup);
        match self.fs.lookup(&ctx(req), ino(parent), name) {
            Ok(a) => self.entry(reply, &a),
            // A negative entry with the same timeout: names change only through this mount,
            // and the kernel drops the negative dentry when it creates the name itself.
            Err(FsError::NotFound) => {
                reply.entry(&self.opts.ttl, &negative_attr(), Generation(0));
            }
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn forget(&self, _req: &Request, i: INodeNo, nlookup: u64) {
        self.count(Op::Forget);
        self.fs.forget(ino(i), nlookup);
    }

    // batch_forget: fuser's default calls `forget` for each node (its `ForgetOne` type is not
    // exported in 0.18, so it cannot be overridden).

    fn getattr(&self, _req: &Request, i: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.count(Op::Getattr);
        self.reply_attr(reply, self.fs.getattr(ino(i)));
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
        self.count(Op::Setattr);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        let set = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ctime: ctime.map(Timespec::from_system_time),
        };
        // Under KILLPRIV_V2 the kernel turns its own privilege clearing (file_remove_privs
        // before a change, and chown(-1, -1)) into a SETATTR that sets nothing: clear what a
        // caller without CAP_FSETID must lose. Root keeps its bits (the kernel does not say
        // whether this was a chown(-1, -1), which would clear them for root too: see
        // docs/semantics.md).
        //
        // Otherwise, set-id bits on truncate: FATTR_KILL_SUIDGID is the kernel's word (see
        // `ctx_changing_data`). On chown the engine clears them whoever asks (the kernel sends
        // FATTR_KILL_SUIDGID unconditionally there, so it says nothing about the caller, or,
        // without KILLPRIV_V2, the mode change in this same request). The engine drops
        // security.capability on truncate and chown, as Linux does.
        let word = if set.size.is_some() && set.uid.is_none() && set.gid.is_none() {
            KernelWord::KillSuidgid(kill_suidgid)
        } else {
            KernelWord::Silent
        };
        let r = if self.daemon_kills_privs && self.is_kernels_priv_clearing(&set) {
            let c = self.with_groups_for_setid(req, ctx(req), ino(i));
            self.fs.remove_privs(&c, ino(i))
        } else {
            // Handle 0: no handle of ours (e.g. fchmod of a descriptor the kernel holds without
            // one); the inode suffices.
            let h = h.filter(|h| h.0 != 0).map(fh);
            self.fs
                .setattr(&self.ctx_changing_data_of(req, word, ino(i)), ino(i), &set, h)
        };
        self.reply_attr(reply, r);
    }

    fn readlink(&self, _req: &Request, i: INodeNo, reply: ReplyData) {
        self.count(Op::Other);
        match self.fs.readlink(ino(i)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.count(Op::Create);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        self.reply_entry(
            reply,
            self.fs.mknod(&ctx(req), ino(parent), name, mode, u64::from(rdev)),
        );
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        self.count(Op::Create);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        self.reply_entry(reply, self.fs.mkdir(&ctx(req), ino(parent), name, mode & 0o7777));
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.count(Op::Remove);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        // The kernel drops the victim's nlink and invalidates its attributes itself; the
        // protocol has no attributes in this reply.
        reply_empty(reply, self.fs.unlink(&ctx(req), ino(parent), name));
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.count(Op::Remove);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        reply_empty(reply, self.fs.rmdir(&ctx(req), ino(parent), name));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.count(Op::Create);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        self.reply_entry(
            reply,
            self.fs.symlink(&ctx(req), ino(parent), link_name, target.as_os_str()),
        );
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
        self.count(Op::Rename);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        let result = RenameFlags::from_libc(flags.bits())
            .and_then(|f| self.fs.rename(&ctx(req), ino(parent), name, ino(newparent), newname, f));
        reply_empty(reply, result);
    }

    fn link(&self, req: &Request, i: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.count(Op::Create);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        // The entry carries the inode's fresh attributes (nlink, ctime) and adds a lookup.
        self.reply_entry(reply, self.fs.link(&ctx(req), ino(i), ino(newparent), newname));
    }

    fn open(&self, req: &Request, i: INodeNo, flags: FuseOpenFlags, kill_suidgid: bool, reply: ReplyOpen) {
        self.count(Op::Open);
        let of = self.engine_open_flags(flags.0);
        if self.rofs() && (of.write || of.truncate) {
            return reply.error(Errno::EROFS);
        }
        // O_TRUNC (ATOMIC_O_TRUNC): set-id bits go as on a truncate, by the kernel's word.
        let octx = self.ctx_changing_data_of(req, KernelWord::KillSuidgid(kill_suidgid), ino(i));
        match self.fs.open(&octx, ino(i), of) {
            Ok(h) => reply.opened(FileHandle(h.0), self.file_open_flags(of)),
            Err(e) => reply.error(reply_errno(e)),
        }
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
        self.count(Op::Read);
        if let Some(pool) = &self.swap_in {
            if self.fs.read_needs_swap_in(fh(h), offset, u64::from(size)) {
                // Wait for the swap I/O on this event loop only if another one stays free for
                // unrelated requests (at most all but one ever wait here); else hand the READ to
                // the swap-in workers. Serving it here saves two thread wake-ups, which is most of
                // a 4 KiB swap-in's cost on a virtual machine. An io_uring ring thread is its
                // CPU's only server: it always hands off.
                if !fuser::serving_on_ring_thread()
                    && self.inline_swap_ins.fetch_add(1, Ordering::AcqRel) + 1 < self.opts.event_loops
                {
                    serve_read(&self.fs, fh(h), offset, size, reply);
                    self.inline_swap_ins.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
                self.inline_swap_ins.fetch_sub(1, Ordering::AcqRel);
                return pool.submit(fh(h), offset, size, reply);
            }
        }
        serve_read(&self.fs, fh(h), offset, size, reply);
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
        self.count(Op::Write);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
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
            let wctx = self.ctx_changing_data_of(req, KernelWord::KillSuidgid(kill), ino(i));
            self.fs.write_at(&wctx, fh(h), offset, data)
        };
        match r {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn flush(&self, _req: &Request, _i: INodeNo, _h: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // The kernel sends FLUSH on the close of a read-write handle (see `file_open_flags`)
        // after it has written back the dirty pages and returned their error itself: the daemon
        // has nothing left to do (no locks are kept here, WRITE reported its own errors).
        // ENOSYS makes the kernel stop sending FLUSH for this mount (fc->no_flush) while it
        // keeps doing that writeback and error check on every such close. Under `writeback`
        // the kernel ignores NOFLUSH and writes dirty pages back at every close the same way.
        self.count(Op::Flush);
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
        // The file flags (chattr/lsattr): the kernel's fileattr_get/set send these four for a
        // FUSE inode, and enforces none of the flags itself; the engine does. Any other ioctl
        // is ENOTTY, what Linux answers for an ioctl a file does not support and what isatty()
        // expects of a regular file: every isatty() on the mount sends TCGETS here, so no log
        // line either (fuser's default logs each one as a warning).
        self.count(Op::Other);
        let r = match cmd {
            FS_IOC_GETFLAGS => self.fs.file_flags(ino(i)).map(|f| f.to_le_bytes().to_vec()),
            FS_IOC_SETFLAGS => match in_data.get(..4) {
                Some(b) => {
                    let flags = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    self.set_file_flags(req, ino(i), flags)
                }
                None => Err(FsError::Invalid),
            },
            FS_IOC_FSGETXATTR => self.fs.file_flags(ino(i)).map(|f| fsxattr_bytes(flags_to_xflags(f))),
            FS_IOC_FSSETXATTR => match fsxattr_flags(in_data) {
                Some(flags) => self.set_file_flags(req, ino(i), flags),
                None => Err(FsError::NotSupported),
            },
            _ => return reply.error(Errno::ENOTTY),
        };
        match r {
            Ok(data) => reply.ioctl(0, &data),
            Err(e) => reply.error(reply_errno(e)),
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
        self.count(Op::Release);
        reply_empty(reply, self.fs.release(fh(h)));
    }

    fn fsync(&self, _req: &Request, _i: INodeNo, h: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.count(Op::Other);
        reply_empty(reply, self.fs.fsync(fh(h)));
    }

    fn opendir(&self, req: &Request, i: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        self.count(Op::Open);
        match self.fs.opendir(&ctx(req), ino(i)) {
            // CACHE_DIR: the kernel keeps listings in its page cache and drops them when the
            // directory changes through it; KEEP_CACHE: opendir does not drop them.
            Ok(h) => reply.opened(
                FileHandle(h.0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn readdir(&self, _req: &Request, _i: INodeNo, h: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        self.count(Op::Readdir);
        // Each entry's offset is its engine cookie: the kernel resumes after it.
        let r = self.fs.readdir(fh(h), offset, |e| {
            !reply.add(
                INodeNo(e.ino.0),
                e.cookie,
                crate::attr::file_type(e.kind),
                OsStr::from_bytes(&e.name),
            )
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn readdirplus(&self, _req: &Request, _i: INodeNo, h: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        self.count(Op::Readdirplus);
        let r = self.fill_readdirplus(fh(h), offset, &mut reply);
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn releasedir(&self, _req: &Request, _i: INodeNo, h: FileHandle, _flags: FuseOpenFlags, reply: ReplyEmpty) {
        self.count(Op::Release);
        reply_empty(reply, self.fs.releasedir(fh(h)));
    }

    fn fsyncdir(&self, _req: &Request, _i: INodeNo, h: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.count(Op::Other);
        reply_empty(reply, self.fs.fsync(fh(h)));
    }

    fn statfs(&self, _req: &Request, _i: INodeNo, reply: ReplyStatfs) {
        self.count(Op::Other);
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
        self.count(Op::Xattr);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        if position != 0 {
            return reply.error(Errno::EINVAL);
        }
        let r = XattrSetMode::from_libc(flags).and_then(|m| self.fs.setxattr(&ctx(req), ino(i), name, value, m));
        reply_empty(reply, r);
    }

    fn getxattr(&self, req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.count(Op::Getxattr);
        match self.fs.getxattr(&ctx(req), ino(i), name) {
            Ok(v) => reply_xattr(reply, &v, size),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn listxattr(&self, req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        self.count(Op::Xattr);
        // As Linux: the size query answers the length even past 64 KiB; a list that does not
        // fit the buffer is ERANGE, which the kernel turns into E2BIG for a 64 KiB buffer.
        if size == 0 {
            return match self.fs.listxattr_len(&ctx(req), ino(i)) {
                Ok(n) => reply.size(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(e) => reply.error(reply_errno(e)),
            };
        }
        match self.fs.listxattr(&ctx(req), ino(i)) {
            Ok(v) => reply_xattr(reply, &v, size),
            Err(FsError::TooBig) => reply.error(Errno::ERANGE),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn removexattr(&self, req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.count(Op::Xattr);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        reply_empty(reply, self.fs.removexattr(&ctx(req), ino(i), name));
    }

    fn access(&self, req: &Request, i: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Not sent with default_permissions (the kernel answers access(2) itself).
        self.count(Op::Other);
        if self.rofs() && mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        reply_empty(reply, self.fs.access(&ctx(req), ino(i), mask.bits() as u32));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        _kill_suidgid: bool,
        reply: ReplyCreate,
    ) {
        // `_kill_suidgid`: CREATE makes a new file (an existing name answers ESTALE or
        // EEXIST below), so there are no set-id bits to clear.
        self.count(Op::Create);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        let of = self.engine_open_flags(flags);
        match self.fs.create(&ctx(req), ino(parent), name, mode & 0o7777, of) {
            Ok((a, h)) => reply.created(
                &self.opts.ttl,
                &file_attr(&a),
                Generation(a.generation),
                FileHandle(h.0),
                self.file_open_flags(of),
            ),
            // The name appeared after the kernel's lookup (another creator won the race).
            // Without O_EXCL, open(2) must open the existing file, with the permission checks
            // of an ordinary open: ESTALE makes the kernel redo the whole open with a fresh
            // lookup (do_filp_open retries with LOOKUP_REVAL).
            Err(FsError::Exists) if flags & libc::O_EXCL == 0 => reply.error(Errno::ESTALE),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn tmpfile(&self, req: &Request, parent: INodeNo, mode: u32, _umask: u32, flags: i32, reply: ReplyCreate) {
        self.count(Op::Create);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        // The engine's anonymous file: nlink 0, one lookup reference for the kernel's entry,
        // an open handle. The kernel alone decides whether it may be linked later (O_EXCL).
        let of = self.engine_open_flags(flags);
        match self.fs.tmpfile(&ctx(req), ino(parent), mode & 0o7777, of) {
            Ok((a, h)) => reply.created(
                &self.opts.ttl,
                &file_attr(&a),
                Generation(a.generation),
                FileHandle(h.0),
                self.file_open_flags(of),
            ),
            Err(e) => reply.error(reply_errno(e)),
        }
    }

    fn statx(&self, _req: &Request, i: INodeNo, _fh: Option<FileHandle>, _flags: u32, _mask: u32, reply: ReplyStatx) {
        // The kernel asks only for what it lacks (the birth time, or everything after an
        // invalidation); the engine has all fields at once, so every reply carries them all
        // and the kernel caches them like GETATTR's.
        self.count(Op::Getattr);
        match self.fs.getattr(ino(i)) {
            Ok(a) => reply.statx(&self.opts.ttl, &file_attr(&a)),
            Err(e) => reply.error(reply_errno(e)),
        }
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
        self.count(Op::Other);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        // Set-id bits: see `ctx_changing_data`.
        let r = FallocateMode::from_libc(mode).and_then(|m| {
            self.fs.fallocate(
                &self.ctx_changing_data_of(req, KernelWord::Silent, ino(i)),
                fh(h),
                offset,
                length,
                m,
            )
        });
        reply_empty(reply, r);
    }

    fn lseek(&self, _req: &Request, _i: INodeNo, h: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        // The kernel answers SEEK_SET/CUR/END itself; only SEEK_DATA/SEEK_HOLE come here.
        self.count(Op::Other);
        let whence = match whence {
            libc::SEEK_DATA => SeekWhence::Data,
            libc::SEEK_HOLE => SeekWhence::Hole,
            _ => return reply.error(Errno::EINVAL),
        };
        match self.fs.lseek(fh(h), offset, whence) {
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(reply_errno(e)),
        }
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
        self.count(Op::Write);
        if self.rofs() {
            return reply.error(Errno::EROFS);
        }
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        // Like a write, a copy by a caller without CAP_FSETID clears set-id bits of the
        // target (see `ctx_changing_data`). The kernel refused an O_APPEND target itself
        // (generic_copy_file_checks, seeing F_SETFL changes), so the engine does not check.
        match self.fs.copy_file_range_at(
            &self.ctx_changing_data_of(req, KernelWord::Silent, ino(ino_out)),
            fh(fh_in),
            offset_in,
            fh(fh_out),
            offset_out,
            len.min(MAX_COPY),
        ) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(reply_errno(e)),
        }
    }
}

impl Adapter {
    /// Fill a READDIRPLUS reply. Every entry the kernel receives, except `.` and `..`, becomes
    /// a kernel reference to its inode (fuse_direntplus_link counts it as a lookup), so each
    /// one takes a reference in the engine (`lookup_ino`) before it is added; one that does not
    /// fit is forgotten again. Entries are collected in batches first so that no directory
    /// lock is held while taking references.
    fn fill_readdirplus(&self, h: Fh, mut offset: u64, reply: &mut ReplyDirectoryPlus) -> Result<(), FsError> {
        let ttl = self.opts.ttl;
        let mut batch: Vec<DirEntry> = Vec::with_capacity(READDIRPLUS_BATCH);
        loop {
            batch.clear();
            self.fs.readdir(h, offset, |e| {
                batch.push(e);
                batch.len() < READDIRPLUS_BATCH
            })?;
            if batch.is_empty() {
                return Ok(());
            }
            let done = batch.len() < READDIRPLUS_BATCH;
            for e in batch.drain(..) {
                let name = OsStr::from_bytes(&e.name);
                let dots = e.name == b"." || e.name == b"..";
                let attr = if dots {
                    // Not a reference for the kernel: plain attributes, no lookup count.
                    match self.fs.getattr(e.ino) {
                        Ok(a) => a,
                        Err(_) => placeholder_dir_attr(e.ino),
                    }
                } else {
                    match self.fs.lookup_ino(e.ino) {
                        Ok(a) => a,
                        // Removed since the listing was taken: leave it out.
                        Err(FsError::NotFound) => {
                            offset = e.cookie;
                            continue;
                        }
                        Err(err) => return Err(err),
                    }
                };
                let full = reply.add(
                    INodeNo(attr.ino.0),
                    e.cookie,
                    name,
                    &ttl,
                    &file_attr(&attr),
                    Generation(attr.generation),
                );
                if full {
                    if !dots {
                        self.fs.forget(attr.ino, 1);
                    }
                    return Ok(());
                }
                offset = e.cookie;
            }
            if done {
                return Ok(());
            }
        }
    }
}

/// Attributes for a `.`/`..` entry whose inode vanished mid-listing (the kernel ignores the
/// attributes of these two entries).
fn placeholder_dir_attr(i: Ino) -> Attr {
    let t = Timespec::default();
    Attr {
        ino: i,
        generation: 0,
        kind: FileKind::Directory,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        size: 0,
        blocks: 0,
        blksize: 4096,
        atime: t,
        mtime: t,
        ctime: t,
        btime: t,
    }
}

/// Answer getxattr/listxattr with the engine's rule for the size-0 probe and ERANGE.
fn reply_xattr(reply: ReplyXattr, value: &[u8], size: u32) {
    match fit_xattr_reply(value.len(), size as usize) {
        Ok(XattrFit::Size(n)) => reply.size(n as u32),
        Ok(XattrFit::Data) => reply.data(value),
        Err(e) => reply.error(reply_errno(e)),
    }
}

/// Answer a READ from the engine through this thread's buffer.
/// Reply to an operation with no result but success: ok, or the error.
fn reply_empty(reply: ReplyEmpty, result: Result<(), FsError>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(reply_errno(e)),
    }
}

/// Serve one READ. A short reply means end of file to the kernel (it lowers the cached size and
/// marks the rest of a read-ahead page up to date, i.e. zeros): the engine's `read` is short only
/// at EOF and fails the whole range when any page of it cannot be read, so a lost page costs
/// an `EIO` for this request and the kernel retries the pages its reader needs one by one —
/// readable pages stay readable, only the bad one fails.
fn serve_read(fs: &Filesystem, h: Fh, offset: u64, size: u32, reply: ReplyData) {
    let size = size as usize;
    READ_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < size {
            buf.resize(size.max(MAX_IO as usize), 0);
        }
        match fs.read(h, offset, &mut buf[..size]) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(reply_errno(e)),
        }
    });
}

/// Threads that serve READs which must wait for swap I/O. fuser's replies are `Send`, so the
/// event loop hands the request over and goes back to reading /dev/fuse.
struct SwapInPool {
    fs: Arc<Filesystem>,
    tx: Mutex<mpsc::Sender<SwapInJob>>,
}

type SwapInJob = (Fh, u64, u32, ReplyData);

/// Swap-in workers: enough to overlap a couple of swap reads on a 2-core machine.
const SWAP_IN_WORKERS: usize = 2;

impl SwapInPool {
    fn start(fs: Arc<Filesystem>, workers: usize) -> SwapInPool {
        let (tx, rx) = mpsc::channel::<SwapInJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let (fs, rx) = (fs.clone(), rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("rtmpfs-swapin-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok((h, off, size, reply)) => serve_read(&fs, h, off, size, reply),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("swap-in worker: {e}");
            }
        }
        SwapInPool { fs, tx: Mutex::new(tx) }
    }

    fn submit(&self, h: Fh, offset: u64, size: u32, reply: ReplyData) {
        let job = (h, offset, size, reply);
        let unsent = match self.tx.lock() {
            Ok(tx) => tx.send(job).err().map(|e| e.0),
            Err(_) => Some(job),
        };
        // No worker could take it (none started): serve it on this thread.
        if let Some((h, off, size, reply)) = unsent {
            serve_read(&self.fs, h, off, size, reply);
        }
    }
}
