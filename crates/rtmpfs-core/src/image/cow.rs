//! Copy-on-write of the tree's metadata for a snapshot: what the walker reads after the gate.
//!
//! Under the gate (held exclusively, `save.rs`) a snapshot only sets its *epoch*
//! ([`Filesystem::snap_epoch`]) and an empty store of pre-images; it copies no inode. After it
//! lets go, each inode is *captured* once at that epoch, by whichever comes first:
//!
//! * the walker, when it reaches the inode; or
//! * a change, just before it alters the inode (every change holds the gate shared, so it sees
//!   one epoch for its whole length). The change puts the capture in the store
//!   ([`Filesystem::snap_store`], by inode number, with the inode itself so that a removed inode
//!   stays reachable); the walker takes it from there.
//!
//! An inode has two parts, each with its own marker (the epoch that captured it) and its own
//! lock, under which the marker is read, the part copied and the marker set, so exactly one of
//! the walker and the changers captures each part:
//!
//! * the *record* — attributes, link count, flags, xattrs, and for a regular file its size and
//!   page list (captured by reference, `file/image.rs`) — under the inode's `Meta` lock
//!   (marker `Inode::snap_meta`; changers take the lock for writing, the walker for reading);
//! * a directory's *entries*, under its `Dir` lock (marker `DirBody::snap_entries`; changers
//!   capture holding it for writing, as they are about to change the entries).
//!
//! Every change captures, before it alters anything, each part that it alters; so when a part
//! is captured it is still as it was at the epoch. Inodes born after the epoch are marked
//! captured at birth (they are not in the image: no entry of the epoch names them). See
//! docs/design.md, "Snapshots".

use std::collections::HashMap;

use super::record::InodeRecord;
use crate::dir::Dir;
use crate::file::image::CapturedFile;
use crate::fs::Filesystem;
use crate::inode::{Body, Inode, Meta};
use crate::sync::{Arc, Ordering};
use crate::types::Ino;

/// A directory's entries as captured: names and inodes, in cookie order.
pub(crate) type CapturedEntries = Vec<(std::sync::Arc<[u8]>, Ino)>;

/// An inode's record as captured (its image id is given when it is written).
pub(crate) struct CapturedMeta {
    pub(super) rec: InodeRecord,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A regular file's pages, by reference.
    pub(super) file: Option<CapturedFile>,
}

/// What changers captured of one inode.
pub(crate) struct PreImages {
    /// The inode: kept reachable after it is removed and released.
    inode: Arc<Inode>,
    meta: Option<CapturedMeta>,
    entries: Option<CapturedEntries>,
}

/// The changers' captures for the walking snapshot, by inode number.
pub(crate) type SnapStore = HashMap<u64, PreImages>;

/// Capture an inode's record under its `Meta` lock (either mode).
fn capture_meta(fs: &Filesystem, inode: &Inode, m: &Meta) -> CapturedMeta {
    let attr = inode.attr(m);
    let target = match &inode.body {
        Body::Symlink(t) => t.to_vec(),
        _ => Vec::new(),
    };
    let rec = InodeRecord {
        id: 0,
        kind: inode.kind,
        perm: m.perm,
        uid: m.uid,
        gid: m.gid,
        rdev: m.rdev,
        nlink: m.nlink,
        flags: m.flags,
        size: attr.size,
        atime: m.atime,
        mtime: m.mtime,
        ctime: m.ctime,
        btime: m.btime,
        target,
    };
    let xattrs = m.xattrs.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    CapturedMeta {
        rec,
        xattrs,
        file: inode.file().map(|f| f.capture(&fs.mm)),
    }
}

impl Filesystem {
    /// The epoch of the snapshot now walking, if any. Stable for a change's length (the caller
    /// holds the gate shared), except that it may drop to 0 when the walk ends.
    fn walking_epoch(&self) -> Option<u64> {
        match self.snap_epoch.load(Ordering::Acquire) {
            0 => None,
            e => Some(e),
        }
    }

    /// Mark an inode born now as captured: it is not in the walking snapshot's image. Called
    /// by the change that creates it (holding the gate), before the inode is published.
    pub(crate) fn snap_born(&self, inode: &Inode) {
        if let Some(e) = self.walking_epoch() {
            inode.snap_meta.store(e, Ordering::Release);
            if let Some(b) = inode.dir() {
                b.snap_entries.store(e, Ordering::Release);
            }
        }
    }

    /// Before a change alters `inode`'s record, xattrs or (a file) pages or size: capture them
    /// for the walking snapshot unless it already has. The caller holds the gate shared and no
    /// `Meta`, `PageMap` or lower lock (this takes `Meta` for writing, then `PageMap`).
    pub(crate) fn snap_meta(&self, inode: &Arc<Inode>) {
        let Some(e) = self.walking_epoch() else {
            return;
        };
        if inode.snap_meta.load(Ordering::Acquire) == e {
            return;
        }
        let m = inode.meta.write();
        if inode.snap_meta.load(Ordering::Acquire) == e {
            return;
        }
        let cap = capture_meta(self, inode, &m);
        let refused = self.snap_keep(inode, |p| {
            debug_assert!(p.meta.is_none(), "inode {} captured twice", inode.ino.0);
            p.meta = Some(cap);
        });
        inode.snap_meta.store(e, Ordering::Release);
        drop(m);
        // A walk that ended meanwhile: the capture's pins go, with no leaf lock held.
        drop(refused);
    }

    /// Before a change alters directory `inode`'s entries, held (for writing) as `d`: capture
    /// them for the walking snapshot unless it already has.
    pub(crate) fn snap_entries(&self, inode: &Arc<Inode>, d: &Dir) {
        let Some(e) = self.walking_epoch() else {
            return;
        };
        let Some(body) = inode.dir() else {
            return;
        };
        if body.snap_entries.load(Ordering::Acquire) == e {
            return;
        }
        let cap = d.names_and_inos();
        let refused = self.snap_keep(inode, |p| {
            debug_assert!(p.entries.is_none(), "directory {} captured twice", inode.ino.0);
            p.entries = Some(cap);
        });
        body.snap_entries.store(e, Ordering::Release);
        drop(refused);
    }

    /// Put a capture in the store; if no snapshot walks any more, hand it back (to be dropped
    /// once the store's leaf lock is let go).
    fn snap_keep(&self, inode: &Arc<Inode>, put: impl FnOnce(&mut PreImages)) -> Option<PreImages> {
        let mut store = self.snap_store.lock();
        let mut fresh = PreImages {
            inode: inode.clone(),
            meta: None,
            entries: None,
        };
        if let Some(map) = store.as_mut() {
            put(map.entry(inode.ino.0).or_insert(fresh));
            None
        } else {
            put(&mut fresh);
            Some(fresh)
        }
    }

    /// Start walking at a new epoch. Caller holds the gate exclusively (and `snapshot_run`).
    pub(super) fn snap_begin(&self, epoch: u64) {
        *self.snap_store.lock() = Some(SnapStore::new());
        self.snap_epoch.store(epoch, Ordering::Release);
    }

    /// End the walk: changers stop capturing, and what is left in the store is dropped (its
    /// pins go). Also on a failed walk.
    pub(super) fn snap_end(&self) {
        self.snap_epoch.store(0, Ordering::Release);
        let left = self.snap_store.lock().take();
        drop(left);
    }

    /// The walker: the inode numbered `ino` that an entry of the epoch names. A removed one is
    /// reachable through the store (its removal captured it).
    pub(super) fn snap_inode(&self, ino: Ino) -> Option<Arc<Inode>> {
        if let Some(i) = self.table.get(ino) {
            return Some(i);
        }
        self.snap_store
            .lock()
            .as_ref()
            .and_then(|s| s.get(&ino.0))
            .map(|p| p.inode.clone())
    }

    /// The walker: `inode`'s record at epoch `e`, captured now unless a change already did.
    pub(super) fn walk_meta(&self, inode: &Arc<Inode>, e: u64) -> Option<CapturedMeta> {
        let m = inode.meta.read();
        if inode.snap_meta.load(Ordering::Acquire) != e {
            debug_assert!(!self.snap_stored(inode.ino, |p| p.meta.is_some()), "captured twice");
            let cap = capture_meta(self, inode, &m);
            inode.snap_meta.store(e, Ordering::Release);
            return Some(cap);
        }
        drop(m);
        self.snap_take(inode.ino, |p| p.meta.take())
    }

    /// The walker: directory `inode`'s entries at epoch `e`, captured now unless a change
    /// already did.
    pub(super) fn walk_entries(&self, inode: &Arc<Inode>, e: u64) -> Option<CapturedEntries> {
        let body = inode.dir()?;
        let d = body.entries.read();
        if body.snap_entries.load(Ordering::Acquire) != e {
            debug_assert!(!self.snap_stored(inode.ino, |p| p.entries.is_some()), "captured twice");
            let cap = d.names_and_inos();
            body.snap_entries.store(e, Ordering::Release);
            return Some(cap);
        }
        drop(d);
        self.snap_take(inode.ino, |p| p.entries.take())
    }

    /// Whether the store holds what `has` looks for of `ino` (debug checks: one capture each).
    fn snap_stored(&self, ino: Ino, has: impl FnOnce(&PreImages) -> bool) -> bool {
        self.snap_store
            .lock()
            .as_ref()
            .and_then(|s| s.get(&ino.0))
            .is_some_and(has)
    }

    fn snap_take<T>(&self, ino: Ino, take: impl FnOnce(&mut PreImages) -> Option<T>) -> Option<T> {
        self.snap_store
            .lock()
            .as_mut()
            .and_then(|s| s.get_mut(&ino.0))
            .and_then(take)
    }
}
