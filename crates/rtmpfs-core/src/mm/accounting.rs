//! Page accounting for the whole filesystem.
//!
//! Invariant (checked by [`crate::Filesystem::check_invariants`], in debug builds after every
//! model-test step):
//!
//! ```text
//! charged == resident + swapped + reserved + poisoned + compressed + zero   (filesystem-wide)
//! charged == Σ over live files of their non-hole slots
//! ```
//!
//! and both return to 0 when every file is deleted and closed. `charged` is what the `size` limit
//! bounds; `resident` is what the RAM budget ([`super::FrameBudget`]) bounds, and `swapped`
//! what the swap tier holds; `compressed` is what the compressed pool holds (its bytes are
//! charged to the RAM budget, see `pool.rs`) and `zero` the pages stored as nothing.

use super::quota::Quota;
use crate::sync::{AtomicU64, Ordering};

/// The state of a page that is not a hole, as the counters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageState {
    Resident,
    Reserved,
    Swapped,
    Poisoned,
    Compressed,
    Zero,
}

/// Pages per state: of one file, or of the whole filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SlotCounts {
    pub resident: u64,
    pub reserved: u64,
    pub swapped: u64,
    pub poisoned: u64,
    pub compressed: u64,
    pub zero: u64,
}

impl SlotCounts {
    /// Count one page in `state`.
    pub(crate) fn add(&mut self, state: PageState) {
        *match state {
            PageState::Resident => &mut self.resident,
            PageState::Reserved => &mut self.reserved,
            PageState::Swapped => &mut self.swapped,
            PageState::Poisoned => &mut self.poisoned,
            PageState::Compressed => &mut self.compressed,
            PageState::Zero => &mut self.zero,
        } += 1;
    }

    /// Every page counted.
    pub(crate) fn total(&self) -> u64 {
        self.resident + self.reserved + self.swapped + self.poisoned + self.compressed + self.zero
    }

    /// The sum of two counts.
    pub(crate) fn plus(self, o: SlotCounts) -> SlotCounts {
        SlotCounts {
            resident: self.resident + o.resident,
            reserved: self.reserved + o.reserved,
            swapped: self.swapped + o.swapped,
            poisoned: self.poisoned + o.poisoned,
            compressed: self.compressed + o.compressed,
            zero: self.zero + o.zero,
        }
    }
}

/// Filesystem-wide page counters.
#[derive(Debug)]
pub(crate) struct Accounting {
    /// Pages charged against `size` (every non-hole slot), with the limit.
    pages: Quota,
    resident: AtomicU64,
    reserved: AtomicU64,
    swapped: AtomicU64,
    poisoned: AtomicU64,
    compressed: AtomicU64,
    zero: AtomicU64,
}

impl Accounting {
    pub(crate) fn new(max_pages: Option<u64>) -> Self {
        Accounting {
            pages: Quota::new(max_pages),
            resident: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            swapped: AtomicU64::new(0),
            poisoned: AtomicU64::new(0),
            compressed: AtomicU64::new(0),
            zero: AtomicU64::new(0),
        }
    }

    /// The `size` limit's counter.
    pub(crate) fn pages(&self) -> &Quota {
        &self.pages
    }

    fn counter(&self, state: PageState) -> &AtomicU64 {
        match state {
            PageState::Resident => &self.resident,
            PageState::Reserved => &self.reserved,
            PageState::Swapped => &self.swapped,
            PageState::Poisoned => &self.poisoned,
            PageState::Compressed => &self.compressed,
            PageState::Zero => &self.zero,
        }
    }

    /// Count a slot that was just published in place of a hole (its page was charged before).
    pub(crate) fn add(&self, state: PageState) {
        self.counter(state).fetch_add(1, Ordering::Relaxed);
    }

    /// A slot changed state in place (no charge change).
    pub(crate) fn moved(&self, from: PageState, to: PageState) {
        self.counter(to).fetch_add(1, Ordering::Relaxed);
        self.counter(from).fetch_sub(1, Ordering::Relaxed);
    }

    /// Slots removed from a page map: uncount and uncharge them.
    pub(crate) fn remove(&self, removed: SlotCounts) {
        for (state, n) in [
            (PageState::Resident, removed.resident),
            (PageState::Reserved, removed.reserved),
            (PageState::Swapped, removed.swapped),
            (PageState::Poisoned, removed.poisoned),
            (PageState::Compressed, removed.compressed),
            (PageState::Zero, removed.zero),
        ] {
            if n > 0 {
                self.counter(state).fetch_sub(n, Ordering::Relaxed);
            }
        }
        let n = removed.total();
        if n > 0 {
            self.pages.uncharge(n);
        }
    }

    /// The filesystem-wide counters now.
    pub(crate) fn counts(&self) -> SlotCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SlotCounts {
            resident: get(&self.resident),
            reserved: get(&self.reserved),
            swapped: get(&self.swapped),
            poisoned: get(&self.poisoned),
            compressed: get(&self.compressed),
            zero: get(&self.zero),
        }
    }
}
