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

use crate::sync::{Arc, LockRank, RwLock};
use crate::types::PAGE_SIZE;

/// Bytes in one page, as `usize`.
pub(crate) const PAGE: usize = PAGE_SIZE as usize;

/// One page of file data in RAM.
pub(crate) struct Frame {
    /// Rank `Frame`. Writers copy in under the write lock; readers copy out under the read lock.
    pub data: RwLock<Box<[u8; PAGE]>>,
}

impl Frame {
    pub(crate) fn new_zeroed() -> Arc<Frame> {
        let data: Box<[u8; PAGE]> = vec![0u8; PAGE]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        Arc::new(Frame {
            data: RwLock::new(LockRank::Frame, data),
        })
    }
}

/// Where the data of one swapped-out page lives in the swap file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwapSlot(pub u64);

/// The state of one page that is not a hole.
pub(crate) enum Slot {
    /// Data in RAM.
    Resident(Arc<Frame>),
    /// Charged by fallocate, never written: reads zero, no RAM.
    Reserved,
    /// Data in the swap file. Constructed by the swap tier only.
    #[allow(dead_code)]
    Swapped(SwapSlot),
    /// Data lost to a failed swap read: EIO on access.
    #[allow(dead_code)]
    Poisoned,
}

/// What a slot looked like when a thread let go of the map lock: the `expected` value of the
/// compare-and-set that publishes its change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    Hole,
    Resident,
    Reserved,
    Swapped(SwapSlot),
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
