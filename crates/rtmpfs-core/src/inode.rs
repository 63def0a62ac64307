//! Inodes: identity, metadata and body, and the sharded table that maps numbers to inodes.

use rustc_hash::FxHashMap;

use crossbeam_utils::CachePadded;

use crate::dir::DirBody;
use crate::file::FileData;
use crate::mm::{EvictOutcome, EvictPage, EvictSnapshot, EvictTarget, Frame, MemoryManager, PageOwner, Window};
use crate::perm::Owner;
use crate::swap::RecordEntry;
use crate::sync::{Arc, AtomicU64, LockRank, RwLock};
use crate::types::{Attr, FileKind, Ino, Timespec, PAGE_SIZE};
use crate::xattr::XattrMap;

/// An inode. Identity (`ino`, `generation`, `kind`) is immutable; attributes are behind `meta`;
/// the body depends on the kind.
pub(crate) struct Inode {
    /// Immutable.
    pub ino: Ino,
    /// Immutable.
    pub generation: u64,
    /// Immutable.
    pub kind: FileKind,
    /// Rank `Meta`. Protects every attribute and the link, open and lookup counts.
    pub meta: RwLock<Meta>,
    /// Immutable choice of body; each body has its own locks.
    pub body: Body,
    /// The epoch of the snapshot that has captured this inode's record, xattrs and pages (0:
    /// none). Set under `meta`, with the capture (`image/cow.rs`); an inode born during a
    /// snapshot starts at that snapshot's epoch (it is not in the image).
    pub snap_meta: AtomicU64,
}

/// The kind-specific part of an inode.
///
/// Not boxed: files are the common inode and every read and write goes through this body, so
/// the variants stay inline (one pointer chase fewer per I/O). Under shuttle its lock types are
/// much larger, which is what clippy's size lint sees there.
#[cfg_attr(feature = "shuttle", allow(clippy::large_enum_variant))]
pub(crate) enum Body {
    /// Regular file data (its own `FileIo` and `PageMap` locks).
    File(FileData),
    /// Directory entries (its own `Dir` lock).
    Dir(DirBody),
    /// Symlink target. Immutable.
    Symlink(Box<[u8]>),
    /// Fifo, socket or device node: no body.
    Special,
}

/// Attributes and reference counts of an inode. Protected by `Inode::meta`.
pub(crate) struct Meta {
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    /// Directory entries naming this inode (for directories: 2 + subdirectories, 0 once removed).
    pub nlink: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Timespec,
    pub xattrs: XattrMap,
    /// Inode space charged for `xattrs` (only when `nr_inodes` is limited).
    pub xattr_space: u64,
    /// Open handles.
    pub opens: u32,
    /// Kernel lookup references (only counted with `Config::track_lookups`).
    pub lookups: u64,
    /// An anonymous (`O_TMPFILE`) inode that may be linked in although its `nlink` is 0.
    pub linkable: bool,
    /// File flags (`chattr`): [`crate::file_flags`] bits, only those tmpfs supports.
    pub flags: u32,
    /// Data and inode space were given back and the inode left the table: set once, when
    /// `nlink == 0 && opens == 0` and no kernel lookup reference is left (when tracked).
    pub released: bool,
}

impl Meta {
    pub(crate) fn new(perm: u32, uid: u32, gid: u32, nlink: u32, now: Timespec) -> Self {
        Meta {
            perm,
            uid,
            gid,
            rdev: 0,
            nlink,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            xattrs: XattrMap::new(),
            xattr_space: 0,
            opens: 0,
            lookups: 0,
            linkable: false,
            flags: 0,
            released: false,
        }
    }

    /// `Perm` if the immutable flag is set (Linux: `inode_permission(MAY_WRITE)`).
    pub(crate) fn check_not_immutable(&self) -> crate::error::Result<()> {
        if self.flags & crate::file_flags::IMMUTABLE != 0 {
            return Err(crate::error::FsError::Perm);
        }
        Ok(())
    }

    /// `Perm` if the immutable or the append-only flag is set: what neither allows (changing
    /// attributes or xattrs, truncating, linking, removing).
    pub(crate) fn check_no_fixed_flags(&self) -> crate::error::Result<()> {
        if self.flags & (crate::file_flags::IMMUTABLE | crate::file_flags::APPEND) != 0 {
            return Err(crate::error::FsError::Perm);
        }
        Ok(())
    }

    /// Whether the inode has no links and no handles: its data can go.
    pub(crate) fn is_orphan(&self) -> bool {
        self.nlink == 0 && self.opens == 0
    }
}

impl Inode {
    pub(crate) fn new(ino: Ino, generation: u64, kind: FileKind, meta: Meta, body: Body) -> Self {
        Inode {
            ino,
            generation,
            kind,
            meta: RwLock::new(LockRank::Meta, meta),
            body,
            snap_meta: AtomicU64::new(0),
        }
    }

    pub(crate) fn file(&self) -> Option<&FileData> {
        match &self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn dir(&self) -> Option<&DirBody> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// Owner and mode for permission checks, from locked metadata.
    pub(crate) fn owner(&self, m: &Meta) -> Owner {
        Owner {
            perm: m.perm,
            uid: m.uid,
            gid: m.gid,
            is_dir: self.kind == FileKind::Directory,
        }
    }

    /// Attributes from locked metadata plus the body's lock-free size and block figures.
    pub(crate) fn attr(&self, m: &Meta) -> Attr {
        let (size, blocks) = match &self.body {
            Body::File(f) => (f.size(), f.charged_pages() * (PAGE_SIZE / 512)),
            Body::Dir(d) => (d.size(), 0),
            Body::Symlink(t) => (t.len() as u64, 0),
            Body::Special => (0, 0),
        };
        Attr {
            ino: self.ino,
            generation: self.generation,
            kind: self.kind,
            perm: m.perm,
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            rdev: m.rdev,
            size,
            blocks,
            blksize: PAGE_SIZE as u32,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            btime: m.btime,
        }
    }
}

const SHARDS: usize = 64;

/// Keyed by inode number with Fx hashing: the numbers come from our own counter, so there is
/// nothing for an attacker to collide (directory entries, keyed by user-chosen names, keep
/// the standard library's keyed SipHash).
type InodeShard = CachePadded<RwLock<FxHashMap<u64, Arc<Inode>>>>;

/// Inode number -> inode. Sharded so that unrelated operations do not contend. Rank
/// `InodeTable`: a leaf; no other lock is taken while a shard is held.
pub(crate) struct InodeTable {
    shards: Box<[InodeShard]>,
}

impl InodeTable {
    pub(crate) fn new() -> Self {
        InodeTable {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(RwLock::new(LockRank::InodeTable, FxHashMap::default())))
                .collect(),
        }
    }

    fn shard(&self, ino: Ino) -> &InodeShard {
        // Numbers come in per-thread batches (`ids`): one thread's inodes share a shard.
        &self.shards[crate::ids::shard_of(ino.0, SHARDS)]
    }

    pub(crate) fn get(&self, ino: Ino) -> Option<Arc<Inode>> {
        self.shard(ino).read().get(&ino.0).cloned()
    }

    pub(crate) fn insert(&self, inode: Arc<Inode>) {
        let prev = self.shard(inode.ino).write().insert(inode.ino.0, inode);
        debug_assert!(prev.is_none(), "inode number reused");
    }

    pub(crate) fn remove(&self, ino: Ino) -> Option<Arc<Inode>> {
        self.shard(ino).write().remove(&ino.0)
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Every inode, for invariant checks and snapshots (not a consistent cut under concurrency).
    pub(crate) fn all(&self) -> Vec<Arc<Inode>> {
        self.shards
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect()
    }
}

/// The memory manager reaches a file's pages through its inode (the `Weak` it holds), which
/// hands each call to the file's data: a page belongs to a regular file or to nothing.
impl PageOwner for Inode {
    fn evict_snapshot(&self, idx: u64, frame: &Arc<Frame>) -> Result<EvictSnapshot, EvictOutcome> {
        self.file().ok_or(EvictOutcome::Gone)?.evict_snapshot(idx, frame)
    }

    fn evict_publish(&self, mm: &MemoryManager, page: EvictPage<'_>, target: EvictTarget) -> EvictOutcome {
        if let Some(f) = self.file() {
            f.evict_publish(mm, page, target)
        } else {
            match target {
                EvictTarget::Written(e) => mm.free_swap_slot(e),
                EvictTarget::Record(r) => mm.free_swap_record(r),
                // (A pool entry's charge goes back as `target` is dropped.)
                EvictTarget::Kept(_) | EvictTarget::Pool(_) | EvictTarget::Zero => {}
            }
            EvictOutcome::Gone
        }
    }

    fn pool_written_back(&self, mm: &MemoryManager, idx: u64, packed_id: u64, entry: RecordEntry) -> bool {
        self.file()
            .is_some_and(|f| f.pool_written_back(mm, idx, packed_id, entry))
    }

    fn read_ahead(&self, mm: &MemoryManager, window: Window) {
        if let Some(f) = self.file() {
            f.read_ahead(mm, window);
        }
    }

    fn read_ahead_abandoned(&self, seq: u64) {
        if let Some(f) = self.file() {
            f.read_ahead_abandoned(seq);
        }
    }
}
