//! The per-file sparse page map and its page states.
//!
//! ```text
//!            write / fault-in                 evict (the swap tier)
//!   (hole) ─────────────────▶ Resident ───────────────────────▶ Swapped(slot)
//!     │  ▲                     ▲   │  ◀─────────────────────────    │
//!     │  │ punch / truncate    │   │        swap-in                 │ swap read fails
//!     │  └─────────────────────┼───┘                                ▼
//!     │ fallocate              │ write                           Poisoned (reads: EIO)
//!     └──────────▶ Reserved ───┘
//!
//!   with a compressed tier, eviction goes through the pool first:
//!   Resident ──evict──▶ Compressed(entry) ──pool full──▶ SwappedRecord(record)
//!      ▲  ▲                  │ fault / write (decompress)          │
//!      │  └──────────────────┘                                     │ fault / write: read the
//!      ├────────────────────────────────────────────────────────────┘ record, decompress
//!      │                                                             (read fails: Poisoned)
//!      │ write           Resident ──evict, all zeros──▶ Zero
//!      └──────────────── Zero
//! ```
//!
//! * absent: a hole; reads zero; costs nothing.
//! * `Reserved`: allocated by fallocate and not written: charged against `size`, reads zero, costs
//!   no RAM, and counts as a hole for `SEEK_DATA`/`SEEK_HOLE` (as tmpfs's not-uptodate folios).
//! * `Resident(frame)`: data in RAM.
//! * `Swapped(slot)`: data in the swap file (constructed only by the swap tier).
//! * `Poisoned`: the data was lost (a failed swap read): reads and writes of the page get EIO, the
//!   rest of the file is unaffected. Truncate and punch remove it like any page.
//! * `Compressed(entry)`: data compressed in the pool, in RAM (constructed only by eviction with
//!   a compressed tier); a fault decompresses it into a frame.
//! * `SwappedRecord(record)`: data compressed in a sealed record in the swap file, packed with
//!   others in one slot (a pool entry written back when the pool was full); counted as swapped.
//! * `Zero`: data that is all zeros, evicted as nothing: reads zero, costs no RAM, is data for
//!   `SEEK_DATA` (unlike `Reserved`).
//!
//! Every transition is made under the page-map lock, and a thread that dropped the lock to do
//! something slow (allocate, do I/O) re-checks that the slot is still in the state it saw before
//! publishing a new one — a compare-and-set; a loser retries from the lookup. That is the rule
//! that lets faults and the evictor work without the file's I/O lock.

use std::collections::BTreeMap;

use crate::mm::{Frame, Packed, PageState};
use crate::swap::{RecordEntry, SwapEntry};
use crate::sync::Arc;

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
    /// Data compressed in the pool (RAM).
    Compressed(Arc<Packed>),
    /// Data compressed in a record in the swap file.
    SwappedRecord(RecordEntry),
    /// Data that is all zeros, stored as nothing.
    Zero,
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
    /// The pool entry's unique id.
    Compressed(u64),
    SwappedRecord(RecordEntry),
    Zero,
}

impl Slot {
    pub(crate) fn state(&self) -> SlotState {
        match self {
            Slot::Resident(_) => SlotState::Resident,
            Slot::Reserved => SlotState::Reserved,
            Slot::Swapped(s) => SlotState::Swapped(*s),
            Slot::Poisoned => SlotState::Poisoned,
            Slot::Compressed(p) => SlotState::Compressed(p.id()),
            Slot::SwappedRecord(r) => SlotState::SwappedRecord(*r),
            Slot::Zero => SlotState::Zero,
        }
    }

    /// The state as the page counters see it.
    pub(crate) fn counted(&self) -> PageState {
        match self {
            Slot::Resident(_) => PageState::Resident,
            Slot::Reserved => PageState::Reserved,
            Slot::Swapped(_) | Slot::SwappedRecord(_) => PageState::Swapped,
            Slot::Poisoned => PageState::Poisoned,
            Slot::Compressed(_) => PageState::Compressed,
            Slot::Zero => PageState::Zero,
        }
    }

    /// Whether `SEEK_DATA` treats the page as data (swapped pages are data, reserved ones holes).
    pub(crate) fn is_data(&self) -> bool {
        !matches!(self, Slot::Reserved)
    }
}

/// Slots per leaf of the page table: 16 (640 bytes), so that a one-page file costs about what a
/// B-tree node did, while a dense file costs less per page than a B-tree.
const LEAF_SHIFT: u32 = 4;
const LEAF: usize = 1 << LEAF_SHIFT;
/// The dense top level may span up to this many leaf pointers per leaf present (plus
/// `DENSE_SLACK`): 8 bytes each, so a sparse file cannot make it large.
const DENSE_PER_LEAF: usize = 4;
const DENSE_SLACK: usize = 64;

/// One leaf: `LEAF` consecutive slots.
struct Leaf {
    slots: [Option<Slot>; LEAF],
    /// Slots that are `Some`.
    count: usize,
}

impl Leaf {
    fn new() -> Box<Leaf> {
        Box::new(Leaf {
            slots: std::array::from_fn(|_| None),
            count: 0,
        })
    }
}

/// Page index -> slot; absence is a hole. Protected by `FileData::pages` (rank `PageMap`).
///
/// A two-level page table, like the kernel's xarray for a file's pages: a lookup is an index
/// into `dense` and one into a leaf — two dependent loads, where the B-tree this replaces took
/// one cache miss per level (five or six for a 256 MiB file). `dense` covers leaf indices from 0
/// and grows only while it stays small next to the leaves present (`DENSE_PER_LEAF`); leaves
/// beyond it, in sparse files, live in `sparse`. Invariant: every key of `sparse` is at least
/// `dense.len()` (growing `dense` moves the leaves it now covers), and no leaf is empty.
#[derive(Default)]
pub(crate) struct PageMap {
    dense: Vec<Option<Box<Leaf>>>,
    sparse: BTreeMap<u64, Box<Leaf>>,
    leaves: usize,
}

impl PageMap {
    pub(crate) fn state(&self, idx: u64) -> SlotState {
        self.get(idx).map_or(SlotState::Hole, Slot::state)
    }

    fn leaf(&self, l: u64) -> Option<&Leaf> {
        match usize::try_from(l) {
            Ok(i) if i < self.dense.len() => self.dense[i].as_deref(),
            _ => self.sparse.get(&l).map(|b| &**b),
        }
    }

    /// The slot of page `idx`, `None` for a hole.
    pub(crate) fn get(&self, idx: u64) -> Option<&Slot> {
        self.leaf(idx >> LEAF_SHIFT)?.slots[(idx as usize) & (LEAF - 1)].as_ref()
    }

    /// Set the slot of page `idx`; returns the previous one.
    pub(crate) fn insert(&mut self, idx: u64, slot: Slot) -> Option<Slot> {
        let leaf = self.leaf_or_new(idx >> LEAF_SHIFT);
        let old = leaf.slots[(idx as usize) & (LEAF - 1)].replace(slot);
        if old.is_none() {
            leaf.count += 1;
        }
        old
    }

    /// Leaf `l`, created if absent.
    fn leaf_or_new(&mut self, l: u64) -> &mut Leaf {
        let dense_ok = usize::try_from(l)
            .ok()
            .filter(|&i| i < self.dense.len() || i < DENSE_PER_LEAF * (self.leaves + 1) + DENSE_SLACK);
        if let Some(i) = dense_ok {
            if i >= self.dense.len() {
                self.grow_dense(i + 1);
            }
            let leaves = &mut self.leaves;
            self.dense[i].get_or_insert_with(|| {
                *leaves += 1;
                Leaf::new()
            })
        } else {
            let leaves = &mut self.leaves;
            self.sparse.entry(l).or_insert_with(|| {
                *leaves += 1;
                Leaf::new()
            })
        }
    }

    /// Extend `dense` to `len` leaf pointers, moving the sparse leaves it now covers.
    fn grow_dense(&mut self, len: usize) {
        self.dense.resize_with(len, || None);
        let high = self.sparse.split_off(&(len as u64));
        for (l, leaf) in std::mem::replace(&mut self.sparse, high) {
            // Keys below `len` fit in usize.
            self.dense[l as usize] = Some(leaf);
        }
    }

    /// The slots of pages `first..=last`, in page order.
    pub(crate) fn range(&self, first: u64, last: u64) -> impl Iterator<Item = (u64, &Slot)> + '_ {
        let (fl, ll) = (first >> LEAF_SHIFT, last >> LEAF_SHIFT);
        let dense_len = self.dense.len() as u64;
        let dense = (fl..dense_len.min(ll.saturating_add(1)))
            .filter_map(move |l| self.dense[l as usize].as_deref().map(|leaf| (l, leaf)));
        let lo = fl.max(dense_len);
        let sparse = (lo <= ll)
            .then(|| self.sparse.range(lo..=ll).map(|(&l, leaf)| (l, &**leaf)))
            .into_iter()
            .flatten();
        dense.chain(sparse).flat_map(move |(l, leaf)| {
            leaf.slots.iter().enumerate().filter_map(move |(i, s)| {
                let idx = (l << LEAF_SHIFT) + i as u64;
                s.as_ref().filter(|_| idx >= first && idx <= last).map(|s| (idx, s))
            })
        })
    }

    /// Every slot, in page order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Slot)> + '_ {
        self.range(0, u64::MAX)
    }

    /// Remove every slot with index in `start..end` and return them.
    pub(crate) fn take_range(&mut self, start: u64, end: u64) -> Vec<Slot> {
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let last = end - 1;
        let (fl, ll) = (start >> LEAF_SHIFT, last >> LEAF_SHIFT);
        let take = |l: u64, leaf: &mut Leaf, out: &mut Vec<Slot>| {
            for (i, s) in leaf.slots.iter_mut().enumerate() {
                let idx = (l << LEAF_SHIFT) + i as u64;
                if idx >= start && idx <= last {
                    if let Some(slot) = s.take() {
                        leaf.count -= 1;
                        out.push(slot);
                    }
                }
            }
        };
        let dense_len = self.dense.len() as u64;
        for l in fl..dense_len.min(ll.saturating_add(1)) {
            let entry = &mut self.dense[l as usize];
            if let Some(leaf) = entry.as_deref_mut() {
                take(l, leaf, &mut out);
                if leaf.count == 0 {
                    *entry = None;
                    self.leaves -= 1;
                }
            }
        }
        let lo = fl.max(dense_len);
        if lo <= ll {
            let keys: Vec<u64> = self.sparse.range(lo..=ll).map(|(&l, _)| l).collect();
            for l in keys {
                if let Some(leaf) = self.sparse.get_mut(&l) {
                    take(l, leaf, &mut out);
                    if leaf.count == 0 {
                        self.sparse.remove(&l);
                        self.leaves -= 1;
                    }
                }
            }
        }
        if self.leaves == 0 {
            // Give the top level's memory back too (a file truncated to nothing).
            self.dense = Vec::new();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Model;

    fn states(m: &PageMap) -> Vec<(u64, SlotState)> {
        m.iter().map(|(i, s)| (i, s.state())).collect()
    }

    /// The page table against a BTreeMap, over dense, sparse and huge indices, with the
    /// top level growing across sparse leaves.
    #[test]
    fn page_table_matches_a_btreemap() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut m = PageMap::default();
        let mut model: Model<u64, SlotState> = Model::new();
        let pick = |r: u64| match r % 4 {
            0 => r % 64,
            1 => r % 5000,
            2 => (r % 50) << 20,
            _ => u64::MAX - (r % 40),
        };
        for step in 0..20_000 {
            let r = next();
            let idx = pick(next());
            match r % 7 {
                0..=2 => {
                    let slot = if r % 2 == 0 { Slot::Reserved } else { Slot::Poisoned };
                    let st = slot.state();
                    let old = m.insert(idx, slot).map(|s| s.state());
                    assert_eq!(old, model.insert(idx, st), "step {step}: insert {idx}");
                }
                3 => assert_eq!(
                    m.get(idx).map(Slot::state),
                    model.get(&idx).copied(),
                    "step {step}: get {idx}"
                ),
                4 => {
                    let end = idx.saturating_add(next() % 300);
                    let got: Vec<_> = m.range(idx, end).map(|(i, s)| (i, s.state())).collect();
                    let want: Vec<_> = model.range(idx..=end).map(|(&i, &s)| (i, s)).collect();
                    assert_eq!(got, want, "step {step}: range {idx}..={end}");
                }
                5 => {
                    let end = idx.saturating_add(next() % 200);
                    let got = m.take_range(idx, end).len();
                    let keys: Vec<u64> = model.range(idx..end).map(|(&i, _)| i).collect();
                    for k in &keys {
                        model.remove(k);
                    }
                    assert_eq!(got, keys.len(), "step {step}: take {idx}..{end}");
                }
                _ => {
                    if r % 500 == 0 {
                        m.take_range(0, u64::MAX);
                        m.take_range(u64::MAX - 1, u64::MAX);
                        model.retain(|&k, _| k == u64::MAX);
                        if let Some(s) = m.get(u64::MAX) {
                            assert_eq!(Some(&s.state()), model.get(&u64::MAX));
                        }
                    }
                }
            }
            if step % 1000 == 0 {
                let want: Vec<_> = model.iter().map(|(&i, &s)| (i, s)).collect();
                assert_eq!(states(&m), want, "step {step}: whole map");
                assert!(
                    m.sparse.keys().all(|&k| k >= m.dense.len() as u64),
                    "sparse below dense"
                );
            }
        }
    }
}
