//! Swap slot allocator: lowest free slot first, so the swap file stays compact, and no leak:
//! `used() == allocated - freed` at all times.
//!
//! A slot either holds one whole page or is a *record slot*: several compressed records packed
//! into it (`Swap::store_records`). A record slot keeps a count of its live records and is freed
//! when the last one dies (zbud's rule, with up to as many records as fit): its dead records'
//! bytes are not reused meanwhile (no compaction).

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
    /// Record slots: slot -> (live records, their bytes).
    records: HashMap<u64, (u32, u32)>,
    /// Live records and their bytes, over all record slots.
    live_records: u64,
    live_record_bytes: u64,
    /// Slots a snapshot's capture still has to read (`docs/design.md`, "Snapshots"): slot ->
    /// (pins held, a free was asked for). A free of a pinned slot is deferred until its last
    /// pin goes, so the slot is not reused under the walker. A record slot is pinned once per
    /// captured record in it.
    pinned: HashMap<u64, (u32, bool)>,
}

impl SlotAllocator {
    pub(crate) fn new(capacity: Option<u64>) -> Self {
        SlotAllocator {
            capacity,
            free: BTreeSet::new(),
            next: 0,
            growth_blocked: false,
            records: HashMap::new(),
            live_records: 0,
            live_record_bytes: 0,
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
        if let Some((_, freed)) = self.pinned.get_mut(&slot) {
            debug_assert!(!*freed, "double free of pinned swap slot {slot}");
            *freed = true;
            return;
        }
        self.free_now(slot);
    }

    /// Keep `slot` from being reused until as many [`SlotAllocator::unpin`]s: a free meanwhile
    /// is deferred. The slot is in use (it holds a page or records) when pinned.
    pub(crate) fn pin(&mut self, slot: u64) {
        debug_assert!(
            slot < self.next && !self.free.contains(&slot),
            "pinning free slot {slot}"
        );
        let (pins, freed) = self.pinned.entry(slot).or_insert((0, false));
        debug_assert!(!*freed, "pinning swap slot {slot} after its free");
        *pins += 1;
    }

    /// Let go of one pin of `slot`; a free asked for meanwhile happens with the last.
    pub(crate) fn unpin(&mut self, slot: u64) {
        let Some((pins, freed)) = self.pinned.get_mut(&slot) else {
            debug_assert!(false, "swap slot {slot} is not pinned");
            return;
        };
        *pins -= 1;
        if *pins > 0 {
            return;
        }
        let freed = *freed;
        self.pinned.remove(&slot);
        if freed {
            self.free_now(slot);
        }
    }

    #[cfg(any(test, feature = "test-util"))]
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

    /// Make allocated `slot` a record slot holding records of `lens` bytes.
    pub(crate) fn hold_records(&mut self, slot: u64, lens: &[u32]) {
        let bytes: u32 = lens.iter().sum();
        let n = u32::try_from(lens.len()).unwrap_or(u32::MAX);
        let old = self.records.insert(slot, (n, bytes));
        debug_assert!(old.is_none(), "swap slot {slot} already holds records");
        self.live_records += u64::from(n);
        self.live_record_bytes += u64::from(bytes);
    }

    /// A record of `len` bytes in `slot` is dead; the slot is freed with its last one.
    /// Returns whether the slot was freed.
    pub(crate) fn free_record(&mut self, slot: u64, len: u32) -> bool {
        let Some((live, bytes)) = self.records.get_mut(&slot) else {
            debug_assert!(false, "swap slot {slot} holds no records");
            return false;
        };
        debug_assert!(*live > 0 && *bytes >= len);
        *live -= 1;
        *bytes -= len;
        self.live_records -= 1;
        self.live_record_bytes -= u64::from(len);
        if *live > 0 {
            return false;
        }
        self.records.remove(&slot);
        self.free(slot);
        true
    }

    /// Record slots in use, the live records in them, and those records' bytes.
    pub(crate) fn record_usage(&self) -> (u64, u64, u64) {
        (self.records.len() as u64, self.live_records, self.live_record_bytes)
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
    fn a_record_slot_is_freed_with_its_last_record_in_any_order() {
        for order in [[0usize, 1, 2], [2, 0, 1], [1, 2, 0]] {
            let mut a = SlotAllocator::new(Some(4));
            let s = a.alloc().unwrap();
            let lens = [1000u32, 700, 1200];
            a.hold_records(s, &lens);
            assert_eq!(a.record_usage(), (1, 3, 2900));
            for (k, &i) in order.iter().enumerate() {
                let freed = a.free_record(s, lens[i]);
                assert_eq!(freed, k == 2, "{order:?}: freed only with the last record");
                if k < 2 {
                    assert_eq!(a.used(), 1, "{order:?}: a slot with a live record stays in use");
                    assert_ne!(
                        a.alloc_near(Some(s)),
                        Some(s),
                        "{order:?}: not reused while a record lives"
                    );
                    // (the slot just allocated is given back)
                    let other = a.high_water() - 1;
                    a.free(other);
                }
            }
            assert_eq!((a.used(), a.record_usage()), (0, (0, 0, 0)), "{order:?}");
            assert_eq!(a.alloc(), Some(s), "{order:?}: reused once all are dead");
        }
    }

    #[test]
    fn a_pinned_record_slot_is_freed_with_its_last_pin_after_its_last_record() {
        let mut a = SlotAllocator::new(None);
        let s = a.alloc().unwrap();
        a.hold_records(s, &[100, 200]);
        // A capture took both records: the slot is pinned twice.
        a.pin(s);
        a.pin(s);
        assert!(!a.free_record(s, 100) && a.free_record(s, 200));
        assert_eq!(a.used(), 1, "freed records, slot kept for the capture");
        a.unpin(s);
        assert_eq!((a.used(), a.pinned()), (1, 1));
        a.unpin(s);
        assert_eq!((a.used(), a.pinned()), (0, 0), "the last pin frees it");
        assert_eq!(a.alloc(), Some(s));
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
