//! The per-file sparse page map and its page states.
//!
//! ```text
//!            write / fault-in                 evict (issue 4: swap tier)
//!   (hole) ─────────────────▶ Resident ───────────────────────▶ Swapped(slot)
//!     │  ▲                     ▲   │  ◀─────────────────────────    │
//!     │  │ punch / truncate    │   │        swap-in                 │ swap read fails
//!     │  └─────────────────────┼───┘                                ▼
//!     │ fallocate              │ write                           Poisoned (reads: EIO)
//!     └──────────▶ Reserved ───┘
//! ```
//!
//! * absent: a hole; reads zero; costs nothing.
//! * `Reserved`: allocated by fallocate and not written: charged against `size`, reads zero, costs
//!   no RAM, and counts as a hole for `SEEK_DATA`/`SEEK_HOLE` (as tmpfs's not-uptodate folios).
//! * `Resident(frame)`: data in RAM.
//! * `Swapped(slot)`: data in the swap file (constructed only by the swap tier).
//! * `Poisoned`: the data was lost (a failed swap read): reads and writes of the page get EIO, the
//!   rest of the file is unaffected. Truncate and punch remove it like any page.
//!
//! Every transition is made under the page-map lock, and a thread that dropped the lock to do
//! something slow (allocate, do I/O) re-checks that the slot is still in the state it saw before
//! publishing a new one — a compare-and-set; a loser retries from the lookup. That is the rule
//! that lets faults and the evictor work without the file's I/O lock.

use std::collections::BTreeMap;

use rtmpfs_pages::PageBuf;

use crate::mem::MemBudget;
use crate::swap::SwapEntry;
use crate::sync::{Arc, AtomicBool, AtomicU64, LockRank, Mutex, Ordering, RwLock};
use crate::types::PAGE_SIZE;

/// Bytes in one page, as `usize`.
pub(crate) const PAGE: usize = PAGE_SIZE as usize;

/// One page of file data in RAM.
///
/// Rule: the bytes change only under the owning page map's **read** lock plus `data`'s write
/// lock, and every change bumps `version`; slot transitions happen only under the page map's
/// **write** lock. So a thread holding the map's write lock sees a stable `version`, which is how
/// the evictor knows that the copy it wrote to swap is still the page's content.
pub(crate) struct Frame {
    /// Rank `Frame`. The page comes from the page pool (`rtmpfs-pages`), which gives freed
    /// pages' RAM back to the kernel.
    pub data: RwLock<PageBuf>,
    /// Bumped by every change to `data`.
    pub version: AtomicU64,
    /// CLOCK reference bit: set on every access, cleared by the evictor's sweep.
    pub referenced: AtomicBool,
    /// A swap copy identical to `data` (swapped in, not changed since): evicting the page again
    /// needs no I/O. Rank `Swap` (a leaf). Taken (and its slot freed) by the first change.
    origin: Mutex<Option<SwapEntry>>,
    /// The RAM budget this frame is charged to, released when it is dropped.
    budget: Option<Arc<MemBudget>>,
}

impl Frame {
    /// A frame holding `data`; `budget` must already be charged for it (released when the frame
    /// is dropped).
    pub(crate) fn new(budget: Option<Arc<MemBudget>>, data: PageBuf) -> Arc<Frame> {
        Arc::new(Frame {
            data: RwLock::new(LockRank::Frame, data),
            version: AtomicU64::new(0),
            referenced: AtomicBool::new(true),
            origin: Mutex::new(LockRank::Swap, None),
            budget,
        })
    }

    /// Mark as used (CLOCK).
    pub(crate) fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn origin(&self) -> Option<SwapEntry> {
        *self.origin.lock()
    }

    pub(crate) fn set_origin(&self, e: SwapEntry) {
        *self.origin.lock() = Some(e);
    }

    pub(crate) fn take_origin(&self) -> Option<SwapEntry> {
        self.origin.lock().take()
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.release();
        }
    }
}

/// The state of one page that is not a hole.
pub(crate) enum Slot {
    /// Data in RAM.
    Resident(Arc<Frame>),
    /// Charged by fallocate, never written: reads zero, no RAM.
    Reserved,
    /// Data in the swap file.
    Swapped(SwapEntry),
    /// Data lost to a failed swap read: EIO on access.
    Poisoned,
}

/// What a slot looked like when a thread let go of the map lock: the `expected` value of the
/// compare-and-set that publishes its change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    Hole,
    Resident,
    Reserved,
    Swapped(SwapEntry),
    Poisoned,
}

impl Slot {
    pub(crate) fn state(&self) -> SlotState {
        match self {
            Slot::Resident(_) => SlotState::Resident,
            Slot::Reserved => SlotState::Reserved,
            Slot::Swapped(s) => SlotState::Swapped(*s),
            Slot::Poisoned => SlotState::Poisoned,
        }
    }

    /// Whether `SEEK_DATA` treats the page as data (swapped pages are data, reserved ones holes).
    pub(crate) fn is_data(&self) -> bool {
        !matches!(self, Slot::Reserved)
    }
}

/// Page index -> slot; absence is a hole. Protected by `FileData::pages` (rank `PageMap`).
#[derive(Default)]
pub(crate) struct PageMap {
    pub slots: BTreeMap<u64, Slot>,
}

impl PageMap {
    pub(crate) fn state(&self, idx: u64) -> SlotState {
        self.slots.get(&idx).map_or(SlotState::Hole, Slot::state)
    }

    /// Remove every slot with index in `range` and return them.
    pub(crate) fn take_range(&mut self, start: u64, end: u64) -> Vec<Slot> {
        if start >= end {
            return Vec::new();
        }
        let mut tail = self.slots.split_off(&start);
        let mut keep = tail.split_off(&end);
        self.slots.append(&mut keep);
        tail.into_values().collect()
    }
}
