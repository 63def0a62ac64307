//! The swap tier's storage: page-sized slots in a private file, sealed with AES-256-GCM.
//!
//! * [`SwapBackend`] stores whole pages by slot number. [`FileSwap`] is the real one: an
//!   anonymous (`O_TMPFILE`, mode 0600) file that no other process can open and that disappears
//!   when the process ends, even on `kill -9`, written with `O_DIRECT` so that the host's page
//!   cache does not keep the data we evicted (or with `POSIX_FADV_DONTNEED` after each write where
//!   `O_DIRECT` is refused). [`MemorySwap`] and [`FaultySwap`] serve tests.
//! * [`Swap`] adds the slot allocator (freed slots are reused, lowest first, so the file stays
//!   compact) and sealing: every page written is encrypted and authenticated under a key made at
//!   start and held only in memory; the nonce is a per-instance counter (never repeated under one
//!   key) and the associated data binds the ciphertext to its slot, file and page, so a page read
//!   back from the wrong place, torn or altered fails authentication and the page is poisoned.

mod backend;
mod seal;
mod slots;

pub use backend::{AlignedPage, FaultySwap, FileSwap, MemorySwap, SwapBackend};
pub(crate) use seal::Sealer;

use crate::sync::{AtomicU64, LockRank, Mutex, Ordering};
use crate::types::PAGE_SIZE;
use slots::SlotAllocator;

/// Where a swapped-out page is and how to verify it: kept in the page map's `Swapped` slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwapEntry {
    pub slot: u64,
    pub nonce: u64,
    pub tag: [u8; 16],
}

/// Identity of a page, bound into the seal: (inode number, page index).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageId {
    pub ino: u64,
    pub idx: u64,
}

/// Why a page could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// No free slot (swap_size reached).
    Full,
    /// The backend failed to write.
    Io,
}

/// Counters of swap activity.
#[derive(Debug, Default)]
pub(crate) struct SwapStats {
    pub writes: AtomicU64,
    pub reads: AtomicU64,
    pub write_errors: AtomicU64,
    pub read_errors: AtomicU64,
}

/// Slots + sealing over a backend.
pub(crate) struct Swap {
    backend: Box<dyn SwapBackend>,
    /// Rank `Swap`: a leaf.
    slots: Mutex<SlotAllocator>,
    sealer: Sealer,
    pub stats: SwapStats,
}

impl Swap {
    pub(crate) fn new(backend: Box<dyn SwapBackend>, capacity_slots: Option<u64>, sealer: Sealer) -> Swap {
        let cap = match (capacity_slots, backend.capacity_slots()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Swap {
            backend,
            slots: Mutex::new(LockRank::Swap, SlotAllocator::new(cap)),
            sealer,
            stats: SwapStats::default(),
        }
    }

    /// Seal and write one page. No engine lock may be held (this does I/O).
    pub(crate) fn store(&self, data: &[u8; PAGE_SIZE as usize], id: PageId) -> Result<SwapEntry, StoreError> {
        let slot = self.slots.lock().alloc().ok_or(StoreError::Full)?;
        let mut page = AlignedPage::boxed();
        page.0.copy_from_slice(data);
        let (nonce, tag) = self.sealer.seal(&mut page.0, slot, id);
        match self.backend.write_page(slot, &page) {
            Ok(()) => {
                self.stats.writes.fetch_add(1, Ordering::Relaxed);
                Ok(SwapEntry { slot, nonce, tag })
            }
            Err(e) => {
                tracing::warn!(slot, error = %e, "swap write failed");
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                self.free(slot);
                Err(StoreError::Io)
            }
        }
    }

    /// Read and verify one page into `out`. No engine lock may be held (this does I/O).
    ///
    /// # Errors
    /// `Err(())` when the read fails or the page does not authenticate: the caller poisons it.
    pub(crate) fn load(&self, entry: SwapEntry, id: PageId, out: &mut [u8; PAGE_SIZE as usize]) -> Result<(), ()> {
        let mut page = AlignedPage::boxed();
        if let Err(e) = self.backend.read_page(entry.slot, &mut page) {
            tracing::warn!(slot = entry.slot, error = %e, "swap read failed");
            self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
            return Err(());
        }
        if self.sealer.open(&mut page.0, entry, id).is_err() {
            tracing::warn!(
                slot = entry.slot,
                ino = id.ino,
                idx = id.idx,
                "swap page failed authentication"
            );
            self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
            return Err(());
        }
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        out.copy_from_slice(&page.0);
        Ok(())
    }

    /// Give a slot back for reuse.
    pub(crate) fn free(&self, slot: u64) {
        self.slots.lock().free(slot);
    }

    /// Slots in use.
    pub(crate) fn used_slots(&self) -> u64 {
        self.slots.lock().used()
    }

    /// Slot capacity, if bounded.
    pub(crate) fn capacity_slots(&self) -> Option<u64> {
        self.slots.lock().capacity()
    }

    /// Bytes the backing file spans (highest slot ever in use since the last shrink).
    pub(crate) fn file_bytes(&self) -> u64 {
        self.slots.lock().high_water() * PAGE_SIZE
    }

    pub(crate) fn encrypted(&self) -> bool {
        self.sealer.encrypts()
    }
}
