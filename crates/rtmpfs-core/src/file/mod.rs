//! Regular-file data: a sparse page map behind two locks.
//!
//! * `io` (rank `FileIo`, the role of Linux's `i_rwsem`) serialises everything that changes the
//!   size or allocates: write, truncate, punch, fallocate. Reads never take it, nor do swap-in
//!   and the evictor: that is the rule that makes the 2001 deadlock impossible here — a reader
//!   (a page fault served over FUSE) never waits for a writer's `io` lock.
//! * `pages` (rank `PageMap`) is held only to look up or change slots and to copy bytes in or
//!   out of resident frames — never across allocation, swap I/O, or a wait for memory. A thread
//!   that let go of it to do slow work re-checks the slot before publishing (compare-and-set
//!   against the state it saw) and retries on a mismatch.
//!
//! `size` is written only under `io` (exclusive) and read lock-free. Invariant: bytes of a page
//! beyond `size` are zero (truncate zeroes the tail of the last page), so extending a file never
//! exposes stale bytes.
//!
//! The methods are split by topic: `rw` (read, write, making a page resident), `resize`
//! (truncate, punch, fallocate's reservation, release), `swap_in` (a reader's swap-in run and
//! read-ahead windows), `evict` (the file side of eviction), `unpack` (bringing a compressed
//! page back from the pool).

mod evict;
pub(crate) mod image;
#[cfg(all(test, debug_assertions, not(feature = "shuttle")))]
mod io_guard_tests;
pub(crate) mod page_map;
mod resize;
mod rw;
mod swap_in;
mod unpack;

use crate::error::{FsError, Result};
use crate::mm::{FileReadAhead, PageOwner, SlotCounts};
use crate::swap::PageId;
use crate::sync::{AtomicU64, LockRank, Ordering, RwLock, Weak, WriteGuard};
use crate::types::{SeekWhence, PAGE_SIZE};
use page_map::PageMap;

/// Proof that the caller holds *this* file's I/O lock exclusively: made only by
/// [`FileData::lock_io`], and carrying the file it locks, which every method that needs it checks
/// by pointer identity (debug builds), so another file's guard is never accepted.
pub(crate) struct IoGuard<'a> {
    file: &'a FileData,
    _held: WriteGuard<'a, ()>,
}

/// The data of one regular file.
pub(crate) struct FileData {
    /// Immutable: the inode number (bound into swap seals).
    ino: u64,
    /// Immutable: the owning inode, for the evictor's CLOCK entries and read-ahead jobs.
    owner: Weak<dyn PageOwner>,
    /// Rank `FileIo`. See the module docs.
    io: RwLock<()>,
    /// Written under `io`; read lock-free.
    size: AtomicU64,
    /// Rank `PageMap`.
    pages: RwLock<PageMap>,
    /// Non-hole slots of this file (for `st_blocks`). Changed under `pages`.
    charged: AtomicU64,
    /// Where the last read ended: a read starting there is sequential, and may bring swapped
    /// pages back ahead of the reader (swap read-ahead). A hint only; races are harmless.
    read_cursor: AtomicU64,
    /// Asynchronous swap read-ahead windows posted for this file.
    ra: FileReadAhead,
}

impl FileData {
    /// The data of file `ino`, owned by `owner` (the inode, which implements [`PageOwner`]).
    pub(crate) fn new<O: PageOwner + 'static>(ino: u64, owner: Weak<O>) -> Self {
        let owner: Weak<dyn PageOwner> = owner;
        FileData {
            ino,
            owner,
            io: RwLock::new(LockRank::FileIo, ()),
            size: AtomicU64::new(0),
            pages: RwLock::new(LockRank::PageMap, PageMap::default()),
            charged: AtomicU64::new(0),
            read_cursor: AtomicU64::new(u64::MAX),
            ra: FileReadAhead::new(),
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn charged_pages(&self) -> u64 {
        self.charged.load(Ordering::Relaxed)
    }

    /// Take the I/O lock exclusively (write, truncate, punch, fallocate).
    pub(crate) fn lock_io(&self) -> IoGuard<'_> {
        IoGuard {
            file: self,
            _held: self.io.write(),
        }
    }

    /// Check (debug builds) that `io` is this file's I/O guard.
    pub(super) fn check_io(&self, io: &IoGuard<'_>) {
        debug_assert!(std::ptr::eq(io.file, self), "the I/O guard of another file");
    }

    pub(super) fn page_id(&self, idx: u64) -> PageId {
        PageId { ino: self.ino, idx }
    }

    /// `SEEK_DATA` / `SEEK_HOLE` from `offset`.
    ///
    /// # Errors
    /// `NoDeviceOrAddress` at or past EOF, or when no data follows `offset`.
    pub(crate) fn seek(&self, offset: u64, whence: SeekWhence) -> Result<u64> {
        let _io = self.io.read();
        let size = self.size();
        if offset >= size {
            return Err(FsError::NoDeviceOrAddress);
        }
        let map = self.pages.read();
        let start_idx = offset / PAGE_SIZE;
        match whence {
            SeekWhence::Data => {
                let idx = map
                    .range(start_idx, u64::MAX)
                    .find(|(_, s)| s.is_data())
                    .map(|(i, _)| i);
                match idx.map(|i| (i * PAGE_SIZE).max(offset)) {
                    Some(at) if at < size => Ok(at),
                    _ => Err(FsError::NoDeviceOrAddress),
                }
            }
            SeekWhence::Hole => {
                let mut expect = start_idx;
                for (i, s) in map.range(start_idx, u64::MAX) {
                    if i != expect || !s.is_data() {
                        break;
                    }
                    expect += 1;
                }
                Ok((expect * PAGE_SIZE).max(offset).min(size))
            }
        }
    }

    /// What this file's compressed pages are charged to the RAM budget, in bytes.
    pub(crate) fn pool_bytes(&self) -> u64 {
        let map = self.pages.read();
        map.iter()
            .map(|(_, s)| match s {
                page_map::Slot::Compressed(p) => p.cost(),
                _ => 0,
            })
            .sum()
    }

    /// This file's compressed records in swap (in its map, and kept as its frames' swap
    /// copies): how many, and their bytes.
    pub(crate) fn swap_records(&self) -> (u64, u64) {
        let map = self.pages.read();
        map.iter().fold((0, 0), |(n, b), (_, s)| match s {
            page_map::Slot::SwappedRecord(r) => (n + 1, b + u64::from(r.len())),
            // A record kept as a resident frame's swap copy is live in swap too.
            page_map::Slot::Resident(f) => match f.swap_copy() {
                Some(crate::swap::SwapCopy::Record(r)) => (n + 1, b + u64::from(r.len())),
                _ => (n, b),
            },
            _ => (n, b),
        })
    }

    /// Per-state slot counts of this file.
    pub(crate) fn slot_counts(&self) -> SlotCounts {
        let map = self.pages.read();
        let mut c = SlotCounts::default();
        for (_, s) in map.iter() {
            c.add(s.counted());
        }
        c
    }
}
