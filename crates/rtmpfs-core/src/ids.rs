//! Unique 64-bit numbers (inode numbers, file handles) handed out in per-thread batches.
//!
//! One shared counter bumped by every create would bounce its cache line between CPUs on every
//! operation, and consecutive numbers handed to different threads would spread each thread's
//! objects over every shard of the tables keyed by them. So, as Linux's `get_next_ino` does with
//! per-CPU batches, each thread slot takes `BATCH` numbers at a time from the shared counter:
//! numbers stay unique and are never reused (they are not dense, nor in creation order across
//! threads), and the objects one thread creates are neighbours — `shard_of` puts them in the
//! same shard, away from another thread's.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicI64, AtomicU64, LockRank, Mutex, Ordering};

/// Numbers taken from the shared counter at a time.
const BATCH: u64 = 64;
/// Thread slots (threads beyond this share slots, correctly: a slot is a mutex).
const SLOTS: usize = 16;

/// The table shard for `n` among `shards`: one batch of numbers per shard, batches round-robin.
pub(crate) fn shard_of(n: u64, shards: usize) -> usize {
    ((n / BATCH) % shards as u64) as usize
}

/// A thread slot's current batch, `[next, end)`. Rank `IdBatch` (a leaf).
type Batch = CachePadded<Mutex<(u64, u64)>>;

/// A source of unique numbers.
pub(crate) struct Ids {
    next: CachePadded<AtomicU64>,
    slots: Box<[Batch]>,
}

impl Ids {
    /// Numbers from `first` upwards.
    pub(crate) fn new(first: u64) -> Ids {
        Ids {
            next: CachePadded::new(AtomicU64::new(first)),
            slots: (0..SLOTS)
                .map(|_| CachePadded::new(Mutex::new(LockRank::IdBatch, (0, 0))))
                .collect(),
        }
    }

    /// A number never returned before.
    pub(crate) fn next(&self) -> u64 {
        let mut batch = self.slots[thread_slot()].lock();
        if batch.0 == batch.1 {
            let start = self.next.fetch_add(BATCH, Ordering::Relaxed);
            *batch = (start, start + BATCH);
        }
        let n = batch.0;
        batch.0 += 1;
        n
    }
}

/// A counter that threads change without sharing a cache line: each thread slot adds to its own
/// stripe; reading sums the stripes (not a consistent cut while others change it).
pub(crate) struct Striped {
    stripes: Box<[CachePadded<AtomicI64>]>,
}

impl Striped {
    pub(crate) fn new() -> Striped {
        Striped {
            stripes: (0..SLOTS).map(|_| CachePadded::new(AtomicI64::new(0))).collect(),
        }
    }

    pub(crate) fn add(&self, n: i64) {
        self.stripes[thread_slot()].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> i64 {
        self.stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's slot: threads are numbered as they first get here.
fn thread_slot() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SLOT.with(|s| {
        s.get().unwrap_or_else(|| {
            let slot = NEXT.fetch_add(1, StdOrdering::Relaxed) % SLOTS;
            s.set(Some(slot));
            slot
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_are_unique_across_threads_and_a_threads_numbers_share_shards() {
        let ids = std::sync::Arc::new(Ids::new(2));
        let per_thread: Vec<Vec<u64>> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || (0..1000).map(|_| ids.next()).collect::<Vec<_>>())
            })
            .map(|t| t.join().unwrap())
            .collect();
        let mut all = HashSet::new();
        for v in &per_thread {
            for &n in v {
                assert!(n >= 2);
                assert!(all.insert(n), "{n} handed out twice");
            }
            // Consecutive within a batch: 64 numbers per shard change.
            let shard_changes = v
                .windows(2)
                .filter(|w| shard_of(w[0], 64) != shard_of(w[1], 64))
                .count();
            assert!(
                shard_changes <= 1000 / BATCH as usize + 1,
                "{shard_changes} shard changes"
            );
        }
    }
}
