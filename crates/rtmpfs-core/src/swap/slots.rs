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

    /// Up to `n` slots, as contiguous as the free space allows: from the end of the file when no
    /// freed slot is waiting, otherwise lowest freed first. Fewer than `n` when full.
    pub(crate) fn alloc_many(&mut self, n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.alloc() {
                Some(s) => out.push(s),
                None => break,
            }
        }
        out
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
