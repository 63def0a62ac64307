//! Swap slot allocator: lowest free slot first, so the swap file stays compact, and no leak:
//! `used() == allocated - freed` at all times.

use std::collections::{BTreeSet, HashMap};

/// Protected by `Swap::slots` (rank `Swap`).
#[derive(Debug)]
pub(crate) struct SlotAllocator {
    capacity: Option<u64>,
    /// Slots below `next` that are free.
    free: BTreeSet<u64>,
    /// Every slot `>= next` is free.
    next: u64,
    /// The filesystem refused to grow the file (`ENOSPC`): while slots below the high-water
    /// mark (space the file already holds) are free, they are used even against a hint to grow.
    /// Cleared when no such slot is left and growing is tried again.
    growth_blocked: bool,
    /// Slots a snapshot's capture still has to read (`docs/design.md`, "Snapshots"): a free of
    /// one of them is deferred (the flag says it was asked for) until the capture lets go, so
    /// the slot is not reused under the walker.
    pinned: HashMap<u64, bool>,
}

impl SlotAllocator {
    pub(crate) fn new(capacity: Option<u64>) -> Self {
        SlotAllocator {
            capacity,
            free: BTreeSet::new(),
            next: 0,
            growth_blocked: false,
            pinned: HashMap::new(),
        }
    }

    pub(crate) fn alloc(&mut self) -> Option<u64> {
        if let Some(slot) = self.free.pop_first() {
            return Some(slot);
        }
        if self.capacity.is_some_and(|c| self.next >= c) {
            return None;
        }
        // Nothing free below the high-water mark: try growing the file again.
        self.growth_blocked = false;
        self.next += 1;
        Some(self.next - 1)
    }

    /// The filesystem refused to grow the swap file (`ENOSPC`): prefer the slots below the
    /// high-water mark, whose space the file already holds, until none is free.
    pub(crate) fn block_growth(&mut self) {
        self.growth_blocked = true;
    }

    /// A slot, `hint` if it is free (to keep a file's pages consecutive in the swap file, so that
    /// they come back with one read), else the lowest free one.
    pub(crate) fn alloc_near(&mut self, hint: Option<u64>) -> Option<u64> {
        if let Some(h) = hint {
            if self.free.remove(&h) {
                return Some(h);
            }
            let prefer_free = self.growth_blocked && !self.free.is_empty();
            if h == self.next && !prefer_free && self.capacity.is_none_or(|c| h < c) {
                self.growth_blocked = false;
                self.next += 1;
                return Some(h);
            }
        }
        self.alloc()
    }

    pub(crate) fn free(&mut self, slot: u64) {
        if let Some(freed) = self.pinned.get_mut(&slot) {
            debug_assert!(!*freed, "double free of pinned swap slot {slot}");
            *freed = true;
            return;
        }
        self.free_now(slot);
    }

    /// Keep `slot` from being reused until [`SlotAllocator::unpin`]: a free meanwhile is
    /// deferred. The slot is in use (it holds a page) when pinned.
    pub(crate) fn pin(&mut self, slot: u64) {
        debug_assert!(
            slot < self.next && !self.free.contains(&slot),
            "pinning free slot {slot}"
        );
        let prev = self.pinned.insert(slot, false);
        debug_assert!(prev.is_none(), "swap slot {slot} pinned twice");
    }

    /// Let go of a pinned slot; a free asked for meanwhile happens now.
    pub(crate) fn unpin(&mut self, slot: u64) {
        if self.pinned.remove(&slot) == Some(true) {
            self.free_now(slot);
        }
    }

    /// Slots pinned now (a capture in progress).
    pub(crate) fn pinned(&self) -> usize {
        self.pinned.len()
    }

    fn free_now(&mut self, slot: u64) {
        debug_assert!(
            slot < self.next && !self.free.contains(&slot),
            "double free of swap slot {slot}"
        );
        self.free.insert(slot);
        while self.next > 0 && self.free.last() == Some(&(self.next - 1)) {
            self.free.pop_last();
            self.next -= 1;
        }
    }

    /// No slot free and none can be added (capacity reached).
    pub(crate) fn is_full(&self) -> bool {
        self.free.is_empty() && self.capacity.is_some_and(|c| self.next >= c)
    }

    pub(crate) fn used(&self) -> u64 {
        self.next - self.free.len() as u64
    }

    pub(crate) fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    pub(crate) fn high_water(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_lowest_and_shrinks() {
        let mut a = SlotAllocator::new(Some(3));
        assert_eq!(
            (a.alloc(), a.alloc(), a.alloc(), a.alloc()),
            (Some(0), Some(1), Some(2), None)
        );
        a.free(1);
        assert_eq!(a.used(), 2);
        assert_eq!(a.alloc(), Some(1));
        a.free(2);
        a.free(1);
        assert_eq!(a.high_water(), 1);
        a.free(0);
        assert_eq!((a.used(), a.high_water()), (0, 0));
    }

    #[test]
    fn blocked_growth_prefers_freed_slots() {
        let mut a = SlotAllocator::new(None);
        for _ in 0..3 {
            a.alloc();
        }
        a.free(1);
        a.block_growth();
        assert_eq!(
            a.alloc_near(Some(3)),
            Some(1),
            "a slot the file already spans, not the hint"
        );
        assert_eq!(
            a.alloc_near(Some(3)),
            Some(3),
            "none left below: growing is tried again"
        );
        a.free(0);
        assert_eq!(
            a.alloc_near(Some(4)),
            Some(4),
            "growth worked last time: hints are followed"
        );
    }
}
