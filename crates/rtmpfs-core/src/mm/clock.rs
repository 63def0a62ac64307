//! CLOCK: the ring of resident frames the evictor sweeps.
//!
//! Entries hold weak references, so the ring never keeps a file or a frame alive; an entry whose
//! frame is gone (truncated, evicted, file deleted) is dropped when the hand reaches it, and the
//! ring is pruned when it grows to twice the live frames, so it stays bounded by them.

use std::collections::VecDeque;

use super::{Frame, PageOwner};
use crate::sync::{LockRank, Mutex, Weak};

/// One resident page as the evictor sees it.
pub(crate) struct ClockEntry {
    pub owner: Weak<dyn PageOwner>,
    pub idx: u64,
    pub frame: Weak<Frame>,
}

/// The ring (rank `ClockRing`) and its clean list (rank `CleanList`): leaves, nothing is
/// locked while either is held.
pub(crate) struct Clock {
    ring: Mutex<VecDeque<ClockEntry>>,
    /// Frames swapped in with their swap copy kept (clean when pushed; a write makes them dirty
    /// and they are then skipped): what reclaim takes when the swap cannot take dirty pages,
    /// without a pass over the whole ring. Never held with `ring`.
    clean: Mutex<VecDeque<ClockEntry>>,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            ring: Mutex::new(LockRank::ClockRing, VecDeque::new()),
            clean: Mutex::new(LockRank::CleanList, VecDeque::new()),
        }
    }

    /// Add a newly resident frame behind the hand. `live_frames` bounds pruning.
    pub(crate) fn push(&self, entry: ClockEntry, live_frames: u64) {
        push_pruned(&mut self.ring.lock(), entry, live_frames);
    }

    /// Also list a frame that was swapped in and kept its swap copy as a clean candidate.
    pub(crate) fn push_clean(&self, entry: ClockEntry, live_frames: u64) {
        push_pruned(&mut self.clean.lock(), entry, live_frames);
    }

    /// Take the oldest clean candidate.
    pub(crate) fn pop_clean(&self) -> Option<ClockEntry> {
        self.clean.lock().pop_front()
    }

    /// Put a clean candidate back (second chance, or busy).
    pub(crate) fn requeue_clean(&self, entry: ClockEntry) {
        self.clean.lock().push_back(entry);
    }

    pub(crate) fn clean_len(&self) -> usize {
        self.clean.lock().len()
    }

    /// Take the entry under the hand.
    pub(crate) fn pop(&self) -> Option<ClockEntry> {
        self.ring.lock().pop_front()
    }

    /// Put an entry back behind the hand (second chance, or busy).
    pub(crate) fn requeue(&self, entry: ClockEntry) {
        self.ring.lock().push_back(entry);
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.lock().len()
    }
}

/// Push `entry`, first dropping entries whose frame is gone once the queue has grown to twice
/// the live frames (plus slack), so that it stays bounded by them.
fn push_pruned(queue: &mut VecDeque<ClockEntry>, entry: ClockEntry, live_frames: u64) {
    if queue.len() as u64 > 2 * live_frames + 1024 {
        queue.retain(|e| e.frame.strong_count() > 0);
    }
    queue.push_back(entry);
}

/// The replacement policy on its own, over plain keys: used to measure CLOCK against exact LRU.
#[cfg(test)]
pub(crate) mod sim {
    use std::collections::{HashMap, VecDeque};

    /// Hit ratio of CLOCK with `capacity` frames over `trace`.
    pub fn clock_hits(trace: &[u64], capacity: usize) -> f64 {
        let mut ring: VecDeque<u64> = VecDeque::new();
        let mut referenced: HashMap<u64, bool> = HashMap::new();
        let mut hits = 0usize;
        for &k in trace {
            if let Some(r) = referenced.get_mut(&k) {
                *r = true;
                hits += 1;
                continue;
            }
            while ring.len() >= capacity {
                let victim = ring.pop_front().expect("non-empty");
                if std::mem::replace(referenced.get_mut(&victim).expect("tracked"), false) {
                    ring.push_back(victim);
                } else {
                    referenced.remove(&victim);
                }
            }
            ring.push_back(k);
            referenced.insert(k, false);
        }
        hits as f64 / trace.len() as f64
    }

    /// Hit ratio of exact LRU with `capacity` frames over `trace`.
    pub fn lru_hits(trace: &[u64], capacity: usize) -> f64 {
        let mut last_use: HashMap<u64, usize> = HashMap::new();
        let mut by_time: std::collections::BTreeMap<usize, u64> = std::collections::BTreeMap::new();
        let mut hits = 0usize;
        for (t, &k) in trace.iter().enumerate() {
            if let Some(old) = last_use.insert(k, t) {
                by_time.remove(&old);
                hits += 1;
            } else if last_use.len() > capacity {
                let (_, victim) = by_time.pop_first().expect("non-empty");
                last_use.remove(&victim);
            }
            by_time.insert(t, k);
        }
        hits as f64 / trace.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::sim::{clock_hits, lru_hits};

    /// A Zipf(1.0)-like trace over `n` pages from a fixed-seed generator.
    fn zipf_trace(n: u64, len: usize, seed: u64) -> Vec<u64> {
        let weights: Vec<f64> = (1..=n).map(|i| 1.0 / i as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut cdf = Vec::with_capacity(weights.len());
        let mut acc = 0.0;
        for w in &weights {
            acc += w / total;
            cdf.push(acc);
        }
        let mut x = seed;
        (0..len)
            .map(|_| {
                // xorshift64*
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let u = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|&c| c < u) as u64
            })
            .collect()
    }

    #[test]
    fn clock_vs_lru_on_zipf() {
        let trace = zipf_trace(10_000, 200_000, 42);
        for cap in [100, 500, 2000] {
            let c = clock_hits(&trace, cap);
            let l = lru_hits(&trace, cap);
            println!(
                "capacity {cap}: CLOCK hit ratio {c:.4}, exact LRU {l:.4}, CLOCK/LRU {:.3}",
                c / l
            );
            assert!(c > 0.0 && l > 0.0);
            // CLOCK approximates LRU; on a skewed workload it should be within a few percent.
            assert!(c / l > 0.95, "CLOCK hit ratio {c} far below LRU {l} at capacity {cap}");
        }
    }
}
