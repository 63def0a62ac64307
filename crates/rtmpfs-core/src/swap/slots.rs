//! Swap slot allocator: lowest free slot first, so the swap file stays compact, and no leak:
//! `used() == allocated - freed` at all times.

use std::collections::BTreeSet;

/// Protected by `Swap::slots` (rank `Swap`).
#[derive(Debug)]
pub(crate) struct SlotAllocator {
    capacity: Option<u64>,
    /// Slots below `next` that are free.
    free: BTreeSet<u64>,
    /// Every slot `>= next` is free.
    next: u64,
}

impl SlotAllocator {
    pub(crate) fn new(capacity: Option<u64>) -> Self {
        SlotAllocator {
            capacity,
            free: BTreeSet::new(),
            next: 0,
        }
    }

    pub(crate) fn alloc(&mut self) -> Option<u64> {
        if let Some(slot) = self.free.pop_first() {
            return Some(slot);
        }
        if self.capacity.is_some_and(|c| self.next >= c) {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }

    /// A slot, `hint` if it is free (to keep a file's pages consecutive in the swap file, so that
    /// they come back with one read), else the lowest free one.
    pub(crate) fn alloc_near(&mut self, hint: Option<u64>) -> Option<u64> {
        if let Some(h) = hint {
            if self.free.remove(&h) {
                return Some(h);
            }
            if h == self.next && self.capacity.is_none_or(|c| h < c) {
                self.next += 1;
                return Some(h);
            }
        }
        self.alloc()
    }

    pub(crate) fn free(&mut self, slot: u64) {
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
}
