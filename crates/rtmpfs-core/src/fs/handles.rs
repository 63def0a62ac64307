//! Open handles: open/release for files, opendir/readdir/releasedir for directories.

use rustc_hash::FxHashMap;

use crossbeam_utils::CachePadded;

use super::{relatime_due, AtimeRule, Filesystem};
use crate::error::{FsError, Result};
use crate::ids::{shard_of, Ids};
use crate::inode::Inode;
use crate::perm;
use crate::sync::{Arc, AtomicU64, LockRank, Mutex, Ordering};
use crate::types::{
    access, Ctx, DirEntry, DirEntryPlus, EntryName, Fh, FileKind, Ino, OpenFlags, SetIdClearing, Timespec,
};

const SHARDS: usize = 32;

/// One open handle: it keeps its inode alive (data included) until released.
pub(crate) struct Handle {
    pub inode: Arc<Inode>,
    pub flags: OpenFlags,
    /// A directory handle's listing end: the directory's end cookie when it was opened or last
    /// listed from offset 0 (a rewind); entries from it on are left out. 0 for other handles.
    /// Written by `readdir(fh, 0, ..)` under the directory's lock; one handle is listed by one
    /// reader at a time (the kernel holds `f_pos_lock`), so relaxed ordering suffices.
    listing_end: AtomicU64,
}

type HandleShard = CachePadded<Mutex<FxHashMap<u64, Arc<Handle>>>>;

/// Handle number -> handle. Sharded; rank `Handles`, a leaf.
pub(crate) struct Handles {
    shards: Box<[HandleShard]>,
    ids: Ids,
}

impl Handles {
    pub(crate) fn new() -> Self {
        Handles {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(LockRank::Handles, FxHashMap::default())))
                .collect(),
            ids: Ids::new(1),
        }
    }

    fn shard(&self, fh: u64) -> &HandleShard {
        &self.shards[shard_of(fh, SHARDS)]
    }

    pub(crate) fn insert(&self, h: Handle) -> Fh {
        let fh = self.ids.next();
        self.shard(fh).lock().insert(fh, Arc::new(h));
        Fh(fh)
    }

    pub(crate) fn get(&self, fh: Fh) -> Result<Arc<Handle>> {
        self.shard(fh.0).lock().get(&fh.0).cloned().ok_or(FsError::BadHandle)
    }

    pub(crate) fn remove(&self, fh: Fh) -> Result<Arc<Handle>> {
        self.shard(fh.0).lock().remove(&fh.0).ok_or(FsError::BadHandle)
    }

    /// Handles open now (files and directories): each shard counted under its own lock, so
    /// a figure for `rtmpfs status`, not a snapshot.
    pub(crate) fn count(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().len() as u64).sum()
    }
}

/// The file flags' refusals of an open (Linux `may_open`): an immutable file is not opened
/// for writing or truncation; an append-only one only with `append`, and never truncated.
fn check_open_flags(m: &crate::inode::Meta, flags: OpenFlags) -> Result<()> {
    if flags.write || flags.truncate {
        m.check_not_immutable()?;
    }
    let append_only = m.flags & crate::file_flags::APPEND != 0;
    if append_only && ((flags.write && !flags.append) || flags.truncate) {
        return Err(FsError::Perm);
    }
    Ok(())
}

impl Filesystem {
    /// Open a file (not a directory: use [`Filesystem::opendir`]). Checks read/write permission;
    /// `flags.truncate` truncates to zero (needs write permission, whatever the access mode).
    ///
    /// # Errors
    /// `IsDir` for a directory opened for writing, `Access`, `ReadOnly`, `NotFound`.
    pub fn open(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> Result<Fh> {
        self.open_with(ctx, ino, flags, SetIdClearing::Engine)
    }

    /// As [`Filesystem::open`], with `clearing` saying whether the engine clears set-id bits on
    /// `O_TRUNC` or the client already has (see [`SetIdClearing`]).
    ///
    /// # Errors
    /// As [`Filesystem::open`].
    pub fn open_with(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags, clearing: SetIdClearing) -> Result<Fh> {
        let _gate = self.change_gate();
        let inode = self.inode(ino)?;
        if inode.kind == FileKind::Directory && (flags.write || flags.truncate) {
            return Err(FsError::IsDir);
        }
        if (flags.write || flags.truncate) && self.is_read_only() && inode.kind == FileKind::RegularFile {
            return Err(FsError::ReadOnly);
        }
        check_open_flags(&inode.meta.read(), flags)?;
        if self.config.enforce_permissions {
            let mut mask = 0;
            if flags.read {
                mask |= access::R_OK;
            }
            if flags.write || flags.truncate {
                mask |= access::W_OK;
            }
            let m = inode.meta.read();
            crate::acl::check(ctx, inode.owner(&m), &m.xattrs, mask)?;
        }
        if flags.truncate {
            self.snap_meta(&inode);
            // O_TRUNC truncates whatever the access mode (the permission check above asked for
            // write access) and, like do_truncate with ATTR_MTIME|ATTR_CTIME, stamps the times
            // even when the file is already empty.
            if let Some(file) = inode.file() {
                let io = file.lock_io();
                file.truncate(&io, &self.mm, 0)?;
                drop(io);
                let now = Timespec::now();
                let mut m = inode.meta.write();
                m.mtime = now;
                m.ctime = now;
                m.perm &= !perm::setid_bits_to_kill_on_write(ctx, clearing, m.perm, m.gid, true);
                self.kill_priv(&mut m);
            }
        }
        self.open_inode(&inode, flags)
    }

    /// Register a handle on `inode`, refusing one that was already released.
    pub(crate) fn open_inode(&self, inode: &Arc<Inode>, flags: OpenFlags) -> Result<Fh> {
        {
            let mut m = inode.meta.write();
            if m.released {
                return Err(FsError::NotFound);
            }
            m.opens += 1;
        }
        let listing_end = inode.dir().map_or(0, |b| b.entries.read().end_cookie());
        Ok(self.handles.insert(Handle {
            inode: inode.clone(),
            flags,
            listing_end: AtomicU64::new(listing_end),
        }))
    }

    /// Close a handle. The last close of an unlinked file frees its data.
    ///
    /// # Errors
    /// `BadHandle` for an unknown handle.
    pub fn release(&self, fh: Fh) -> Result<()> {
        let h = self.handles.remove(fh)?;
        {
            let mut m = h.inode.meta.write();
            m.opens -= 1;
        }
        self.maybe_release(&h.inode);
        Ok(())
    }

    /// How many handles are open (files and directories), for `rtmpfs status`.
    #[must_use]
    pub fn open_handles(&self) -> u64 {
        self.handles.count()
    }

    /// The inode a handle refers to.
    ///
    /// # Errors
    /// `BadHandle` for an unknown handle.
    pub fn handle_ino(&self, fh: Fh) -> Result<Ino> {
        Ok(self.handles.get(fh)?.inode.ino)
    }

    /// Open a directory for reading.
    ///
    /// # Errors
    /// `NotDir`, `Access`, `NotFound`.
    pub fn opendir(&self, ctx: &Ctx, ino: Ino) -> Result<Fh> {
        let inode = self.inode(ino)?;
        if inode.kind != FileKind::Directory {
            return Err(FsError::NotDir);
        }
        self.check_perm(ctx, &inode, access::R_OK)?;
        self.open_inode(&inode, OpenFlags::READ)
    }

    /// Close a directory handle.
    ///
    /// # Errors
    /// `BadHandle` for an unknown handle.
    pub fn releasedir(&self, fh: Fh) -> Result<()> {
        self.release(fh)
    }

    /// List a directory from cookie `offset` (0 = from the start): `.` (cookie 1), `..` (cookie
    /// 2), then the entries in cookie order, at most `max` of them. The batch is copied out
    /// under the directory's lock and returned, so the caller's work on it (replying, taking
    /// references) holds no engine lock; continue from the last entry's cookie. An entry
    /// untouched during a listing is seen exactly once. A listing from offset 0 records the
    /// directory's end, and this handle's listings stop there until the next one from offset 0
    /// (as Linux tmpfs, which records it at open and rewind): entries created or renamed into
    /// the directory meanwhile may be left out, and a listing always ends. A removed directory
    /// lists nothing.
    ///
    /// # Errors
    /// `BadHandle`, `NotDir`.
    pub fn readdir(&self, fh: Fh, offset: u64, max: usize) -> Result<Vec<DirEntry>> {
        let h = self.handles.get(fh)?;
        let body = h.inode.dir().ok_or(FsError::NotDir)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let d = body.entries.read();
        if d.removed {
            return Ok(Vec::new());
        }
        // At most the whole directory with `.` and `..`: one allocation, no regrowth.
        let mut batch = Vec::with_capacity(max.min(d.len() + 2));
        let mut f = |e: DirEntry| {
            batch.push(e);
            batch.len() < max
        };
        let end = if offset == 0 {
            let end = d.end_cookie();
            h.listing_end.store(end, Ordering::Relaxed);
            end
        } else {
            h.listing_end.load(Ordering::Relaxed)
        };
        let full = (offset < 1
            && !f(DirEntry {
                ino: h.inode.ino,
                cookie: 1,
                kind: FileKind::Directory,
                name: EntryName::from(&b"."[..]),
            }))
            || (offset < 2
                && !f(DirEntry {
                    ino: body.parent(),
                    cookie: 2,
                    kind: FileKind::Directory,
                    name: EntryName::from(&b".."[..]),
                }));
        if full {
            // Stopped at `.` or `..`: as before batches, a listing that reads no entry does not
            // count as a read for atime.
            drop(d);
            return Ok(batch);
        }
        d.for_each_between(offset, end, &mut f);
        drop(d);
        self.touch_atime(&h.inode, false);
        Ok(batch)
    }

    /// As [`Filesystem::readdir`], each entry with its attributes, for a FUSE server's
    /// READDIRPLUS: every entry but `.` and `..` carries a lookup reference taken for it (the
    /// kernel counts each entry it receives as a lookup), after the directory's lock is
    /// released; an entry removed meanwhile is left out. The caller passes each entry on or
    /// returns its reference with [`Filesystem::forget`] (`.` and `..` carry none).
    ///
    /// # Errors
    /// As [`Filesystem::readdir`], and an error of [`Filesystem::lookup_ino`] other than
    /// `NotFound` (after returning the references this batch took).
    pub fn readdirplus(&self, fh: Fh, mut offset: u64, max: usize) -> Result<Vec<DirEntryPlus>> {
        let mut batch: Vec<DirEntryPlus> = Vec::new();
        // Empty only at the listing's end: a batch whose entries were all removed meanwhile is
        // followed by the next one.
        loop {
            let entries = self.readdir(fh, offset, max)?;
            let Some(last) = entries.last().map(|e| e.cookie) else {
                return Ok(batch);
            };
            batch.reserve(entries.len());
            for entry in entries {
                let attr = if entry.name == b"." || entry.name == b".." {
                    // No reference: the kernel does not count these two. An inode gone
                    // mid-listing (a removed parent) still gets an entry; the kernel ignores
                    // its attributes.
                    self.getattr(entry.ino).ok()
                } else {
                    match self.lookup_ino(entry.ino) {
                        Ok(a) => Some(a),
                        Err(FsError::NotFound) => continue,
                        Err(err) => {
                            for e in batch.iter().filter(|e| !e.is_dot()) {
                                self.forget(e.entry.ino, 1);
                            }
                            return Err(err);
                        }
                    }
                };
                batch.push(DirEntryPlus { entry, attr });
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
            offset = last;
        }
    }

    /// Number of entries in a directory (not counting `.` and `..`).
    ///
    /// # Errors
    /// `NotDir`, `NotFound`.
    pub fn dir_len(&self, ino: Ino) -> Result<usize> {
        let inode = self.inode(ino)?;
        let body = inode.dir().ok_or(FsError::NotDir)?;
        let n = body.entries.read().len();
        Ok(n)
    }

    /// Update atime after a read by the rule in force ([`Filesystem::set_atime_rule`]); not
    /// for a handle opened `noatime`, not on a read-only instance, not for a directory under
    /// `nodiratime`.
    pub(crate) fn touch_atime(&self, inode: &Inode, noatime: bool) {
        let (rule, nodiratime) = self.atime_rule();
        let dir_kept = nodiratime && inode.kind == FileKind::Directory;
        if noatime || dir_kept || rule == AtimeRule::Never || self.is_read_only() {
            return;
        }
        if inode.meta.read().flags & crate::file_flags::NOATIME != 0 {
            return;
        }
        let now = Timespec::now();
        let due = |m: &crate::inode::Meta| rule == AtimeRule::Strict || relatime_due(m, now);
        if !due(&inode.meta.read()) {
            return;
        }
        let mut m = inode.meta.write();
        if due(&m) {
            m.atime = now;
        }
    }
}
