//! Page accounting for the whole filesystem.
//!
//! Invariant (checked by [`crate::Filesystem::check_invariants`], in debug builds after every
//! model-test step):
//!
//! ```text
//! charged == resident + swapped + reserved + poisoned      (filesystem-wide counters)
//! charged == Σ over live files of their non-hole slots
//! ```
//!
//! and both return to 0 when every file is deleted and closed. `charged` is what the `size` limit
//! bounds; `resident` is what the RAM budget (issue 4) will bound.

use crate::file::page_map::{Slot, SlotState};
use crate::limits::Budget;
use crate::sync::{AtomicU64, Ordering};

/// Filesystem-wide page counters.
#[derive(Debug)]
pub(crate) struct Accounting {
    /// Pages charged against `size` (every non-hole slot), with the limit.
    pub pages: Budget,
    pub resident: AtomicU64,
    pub reserved: AtomicU64,
    pub swapped: AtomicU64,
    pub poisoned: AtomicU64,
}

impl Accounting {
    pub(crate) fn new(max_pages: Option<u64>) -> Self {
        Accounting {
            pages: Budget::new(max_pages),
            resident: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            swapped: AtomicU64::new(0),
            poisoned: AtomicU64::new(0),
        }
    }

    /// The counter of a non-hole state (holes are not counted: callers never pass one).
    fn counter(&self, state: SlotState) -> &AtomicU64 {
        match state {
            SlotState::Resident => &self.resident,
            SlotState::Reserved => &self.reserved,
            SlotState::Swapped(_) => &self.swapped,
            SlotState::Poisoned => &self.poisoned,
            SlotState::Hole => unreachable!("holes have no counter"),
        }
    }

    /// Count a slot that was just published in place of a hole (its page was charged before).
    pub(crate) fn add(&self, state: SlotState) {
        self.counter(state).fetch_add(1, Ordering::Relaxed);
    }

    /// A slot changed state in place (no charge change).
    pub(crate) fn moved(&self, from: SlotState, to: SlotState) {
        self.counter(to).fetch_add(1, Ordering::Relaxed);
        self.counter(from).fetch_sub(1, Ordering::Relaxed);
    }

    /// Slots removed from a page map: uncount and uncharge them. Returns how many.
    pub(crate) fn remove(&self, slots: &[Slot]) -> u64 {
        for s in slots {
            self.counter(s.state()).fetch_sub(1, Ordering::Relaxed);
        }
        let n = slots.len() as u64;
        if n > 0 {
            self.pages.uncharge(n);
        }
        n
    }

    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
