//! The compressed tier: a pool of compressed pages in RAM, between the frames and swap (as
//! Linux's zswap). With `Config::compression`, eviction compresses a cold page and keeps it here
//! instead of writing it to swap; a fault on it decompresses it back into a frame, with no I/O.
//!
//! * **What goes in.** A page of zeros is stored as nothing (`Slot::Zero`). A page whose
//!   compressed form is at most [`MAX_PACKED`] bytes (three quarters of a page: the pool must
//!   save at least a quarter of what it holds, allocator rounding included) is stored. A page
//!   that does not compress that well is *incompressible*: it goes straight to swap, and its
//!   frame is marked (`Frame::mark_incompressible`) so that later sweeps do not try it again
//!   (the mark lives as long as the frame: a page read back from swap and changed is tried once
//!   more).
//! * **What it costs.** Each entry is charged to the RAM budget at its real cost
//!   ([`entry_cost`]: the compressed bytes and the entry's header as glibc's malloc rounds
//!   them, plus its place in the pool's queue), and the pool's bytes, rounded up to pages, come
//!   off the frames' share (`FrameBudget::frame_limit`). The pool may hold at most its cap
//!   (`compress_max=`, a quarter of `memory=` by default), kept as the same share of the budget
//!   when the budget is resized.
//! * **When it is full**, the sweep writes its coldest entries (the oldest: a fault takes an
//!   entry out, so the queue is in order of last use) to swap before it stores new ones, still
//!   compressed: each as its own sealed record, several packed to a slot
//!   (`Swap::store_records`); a fault reads back only the record's sectors and decompresses it
//!   (docs/design.md, "The compressed tier").
//! * **Locks.** An entry ([`Packed`]) is immutable and shared by `Arc` between the page map's
//!   slot and whoever decompresses it, so compression and decompression run with no `PageMap`,
//!   `Frame` or lower lock held (asserted in debug builds); a fault never waits for a write of
//!   the entry to swap in progress (the slot keeps the entry until that write is published).

use std::cell::RefCell;
use std::collections::VecDeque;

use super::budget::FrameBudget;
use super::{PageOwner, PAGE};
use crate::config::Compression;
use crate::swap::PageId;
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, LockRank, Mutex, Ordering, Weak};

/// A page that compresses to more than this many bytes is incompressible: three quarters of a
/// page, so every entry saves at least a quarter of a page (zswap's own rule, "compressed size
/// not below the page size", would keep entries that save nothing once the allocator rounds).
pub(crate) const MAX_PACKED: usize = PAGE * 3 / 4;

/// Zstandard's level: 1, its fastest standard level; on 4 KiB pages the higher levels gain
/// little (the window is the page) and cost several times the time.
const ZSTD_LEVEL: i32 = 1;

/// glibc malloc's cost of an allocation of `n` bytes: 8 bytes of header, rounded up to 16, at
/// least 32 (the allocator the daemon runs on; other allocators round similarly).
fn malloc_chunk(n: usize) -> u64 {
    ((n + 8 + 15) & !15).max(32) as u64
}

/// The RAM an entry of `len` compressed bytes costs: its bytes and its `Arc` header, as the
/// allocator rounds them, and its place in the pool's queue.
pub(crate) fn entry_cost(len: usize) -> u64 {
    malloc_chunk(len) + malloc_chunk(2 * size_of::<usize>() + size_of::<Packed>()) + size_of::<PoolEntry>() as u64
}

/// One compressed page in the pool. Immutable; the page map's `Compressed` slot holds it, and
/// a fault or a write-back to swap holds a clone while it decompresses. Its charge to the RAM
/// budget is given back when the last holder drops it.
pub(crate) struct Packed {
    /// Unique for the filesystem's life: what the page map's compare-and-set compares.
    id: u64,
    algo: Compression,
    data: Box<[u8]>,
    cost: u64,
    budget: Arc<FrameBudget>,
    /// The pool's count of dead entries still in its queue (see [`Pool::prune`]).
    dead: Arc<AtomicUsize>,
    /// Read since it was stored: a second read brings it back into a frame even at the cost of
    /// evicting another page; a first one only if a frame is free (so a one-pass scan does not
    /// churn the pool). CLOCK's second chance, on the pool's side.
    read_once: AtomicBool,
}

impl Drop for Packed {
    fn drop(&mut self) {
        self.budget.release_pool(self.cost);
        self.dead.fetch_add(1, Ordering::Relaxed);
    }
}

impl Packed {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Note a read of this entry; returns whether it had been read before.
    pub(crate) fn note_read(&self) -> bool {
        self.read_once.swap(true, Ordering::Relaxed)
    }

    /// What this entry is charged to the budget, in bytes.
    pub(crate) fn cost(&self) -> u64 {
        self.cost
    }

    /// Decompress into `out`. No `PageMap` or lower lock may be held (checked in debug builds).
    ///
    /// # Errors
    /// The entry does not decompress to a whole page (a bug: entries are made in process and
    /// never change).
    pub(crate) fn unpack_into(&self, out: &mut [u8; PAGE]) -> Result<(), ()> {
        unpack(self.algo, &self.data, out)
    }

    /// Its compressed bytes: what a write-back stores in swap.
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }
}

/// Decompress `data` (compressed with `algo`) into `out`. No `PageMap` or lower lock may be
/// held (checked in debug builds).
///
/// # Errors
/// `data` does not decompress to a whole page.
pub(crate) fn unpack(algo: Compression, data: &[u8], out: &mut [u8; PAGE]) -> Result<(), ()> {
    crate::sync::assert_not_held_at_or_above(LockRank::PageMap);
    let n = match algo {
        Compression::Lz4 => lz4_flex::block::decompress_into(data, &mut out[..]).map_err(|_| ())?,
        Compression::Zstd => CODECS.with(|c| {
            let mut c = c.borrow_mut();
            let d = c.zstd_decompressor().ok_or(())?;
            d.decompress_to_buffer(data, &mut out[..]).map_err(|_| ())
        })?,
        Compression::Off => return Err(()),
    };
    if n == PAGE {
        Ok(())
    } else {
        Err(())
    }
}

/// What compressing a page gave.
pub(crate) enum Packing {
    /// Every byte is zero: store nothing.
    Zero,
    /// Compressed to at most `MAX_PACKED` bytes.
    Packed(Box<[u8]>),
    /// Does not compress well enough: to swap.
    Incompressible,
}

/// Per-thread compression state: a scratch buffer and zstd's contexts (made on first use).
struct Codecs {
    scratch: Vec<u8>,
    zstd_c: Option<zstd::bulk::Compressor<'static>>,
    zstd_d: Option<zstd::bulk::Decompressor<'static>>,
}

impl Codecs {
    fn zstd_decompressor(&mut self) -> Option<&mut zstd::bulk::Decompressor<'static>> {
        if self.zstd_d.is_none() {
            self.zstd_d = zstd::bulk::Decompressor::new().ok();
        }
        self.zstd_d.as_mut()
    }
}

thread_local! {
    static CODECS: RefCell<Codecs> = const {
        RefCell::new(Codecs {
            scratch: Vec::new(),
            zstd_c: None,
            zstd_d: None,
        })
    };
}

/// Whether every byte of `page` is zero.
fn is_zero(page: &[u8; PAGE]) -> bool {
    page.chunks_exact(16).all(|c| c == [0u8; 16])
}

/// How many bytes of a page [`looks_incompressible`] samples: 64 runs of [`SAMPLE_RUN`] bytes,
/// one every 64 bytes, so that every part of the page (a zero tail, a text head) is seen.
const SAMPLE_LEN: usize = 1024;
/// The length of one sampled run (btrfs samples 16 bytes every 256 of its larger ranges).
const SAMPLE_RUN: usize = 16;

/// Whether `page` is sure not to compress to [`MAX_PACKED`] bytes, by a test far cheaper than
/// a compressor's trial (after btrfs's `btrfs_compress_heuristic`, fs/btrfs/compression.c):
///
/// * if the page's two halves are equal, it compresses (btrfs's repeated-pattern check);
/// * else the byte histogram of a sample of 1,024 bytes (16 every 64) gives the sample's
///   *collision entropy* `H2 = log2(n² / Σ count²)` (Rényi's entropy of order 2: integers only,
///   no logarithm, and never above Shannon's, so it errs towards trying). The page is
///   incompressible when `H2 ≥ 7` bits per byte, i.e. `128 · Σ count² ≤ n²`: uniformly random
///   bytes measure 7.6–7.7 at this sample size, source text 1–5, and a page whose tail of even
///   7 % is zeros falls below 7 (LZ needs a quarter of the page in zeros or repeats to fit
///   `MAX_PACKED`, so every page this test rejects would have been rejected by the trial too).
///
/// Pages between (a zero tail of 7–25 %, or hex and base64, 4–6 bits, which lz4 cannot pack but
/// zstd can) are left to the trial, as before.
pub(crate) fn looks_incompressible(page: &[u8; PAGE]) -> bool {
    let (head, tail) = page.split_at(PAGE / 2);
    if head == tail {
        return false;
    }
    let mut counts = [[0u32; 256]; 4];
    for run in page.chunks_exact(PAGE / (SAMPLE_LEN / SAMPLE_RUN)) {
        for quad in run[..SAMPLE_RUN].chunks_exact(4) {
            for (table, &b) in counts.iter_mut().zip(quad) {
                table[usize::from(b)] += 1;
            }
        }
    }
    let squares: u64 = (0..256)
        .map(|b| {
            let c = u64::from(counts[0][b] + counts[1][b] + counts[2][b] + counts[3][b]);
            c * c
        })
        .sum();
    let n = SAMPLE_LEN as u64;
    128 * squares <= n * n
}

/// Compress `page` with `algo`, with no zero test and no estimate: a compressor's trial. No
/// `PageMap` or lower lock may be held.
pub(crate) fn trial(algo: Compression, page: &[u8; PAGE]) -> Packing {
    crate::sync::assert_not_held_at_or_above(LockRank::PageMap);
    CODECS.with(|c| {
        let mut c = c.borrow_mut();
        let n = match algo {
            Compression::Lz4 => {
                let bound = lz4_flex::block::get_maximum_output_size(PAGE);
                c.scratch.resize(bound, 0);
                let Codecs { scratch, .. } = &mut *c;
                lz4_flex::block::compress_into(&page[..], scratch).ok()
            }
            Compression::Zstd => {
                let bound = zstd::zstd_safe::compress_bound(PAGE);
                c.scratch.resize(bound, 0);
                let Codecs { scratch, zstd_c, .. } = &mut *c;
                if zstd_c.is_none() {
                    *zstd_c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
                }
                zstd_c
                    .as_mut()
                    .and_then(|z| z.compress_to_buffer(&page[..], &mut scratch[..]).ok())
            }
            Compression::Off => None,
        };
        match n {
            Some(n) if n <= MAX_PACKED => Packing::Packed(c.scratch[..n].into()),
            _ => Packing::Incompressible,
        }
    })
}

/// A pool entry as the pool's queue sees it (weakly: a fault or a truncate drops the entry,
/// and the queue forgets it when it reaches it).
pub(crate) struct PoolEntry {
    pub owner: Weak<dyn PageOwner>,
    pub id: PageId,
    pub packed: Weak<Packed>,
}

/// The queue and when to prune it of dead entries (at the latest: the evictor prunes it sooner,
/// see [`Pool::prune`]).
struct Queue {
    entries: VecDeque<PoolEntry>,
    prune_at: usize,
}

/// Counters of the compressed tier.
#[derive(Debug, Default)]
pub(crate) struct PoolStats {
    /// Pages stored compressed.
    pub stores: AtomicU64,
    /// Zero pages stored as nothing.
    pub zero_pages: AtomicU64,
    /// Pages that did not compress well enough (marked, sent to swap).
    pub rejected: AtomicU64,
    /// Of those, the pages [`looks_incompressible`] rejected (no trial).
    pub estimated: AtomicU64,
    /// Faults served from the pool.
    pub hits: AtomicU64,
    /// Entries written to swap because the pool was full.
    pub writebacks: AtomicU64,
}

/// The compressed pool: its compressor, its cap and its entries in order of coldness.
pub(crate) struct Pool {
    algo: Compression,
    /// The cap in bytes when the budget was `cap_of_pages` pages: a resize keeps the share.
    cap_bytes: u64,
    cap_of_pages: u64,
    /// Rank `PoolQueue` (a leaf). Oldest (coldest) first.
    queue: Mutex<Queue>,
    /// Entries that died (faulted back, written back, truncated, their file removed) since the
    /// last prune: each still holds its place in the queue, and through its `Weak`s the
    /// allocations of its `Packed` and of its file's inode, none of it charged to the budget.
    dead: Arc<AtomicUsize>,
    next_id: AtomicU64,
    pub stats: PoolStats,
}

impl Pool {
    /// A pool compressing with `algo` (not `Off`), holding at most `cap_bytes` of a budget of
    /// `budget_pages`.
    pub(crate) fn new(algo: Compression, cap_bytes: u64, budget_pages: u64) -> Pool {
        Pool {
            algo,
            cap_bytes,
            cap_of_pages: budget_pages.max(1),
            queue: Mutex::new(
                LockRank::PoolQueue,
                Queue {
                    entries: VecDeque::new(),
                    prune_at: 1024,
                },
            ),
            dead: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
            stats: PoolStats::default(),
        }
    }

    pub(crate) fn algo(&self) -> Compression {
        self.algo
    }

    /// The cap now, in bytes: the configured share of the budget's `max` pages, leaving at
    /// least one page to frames.
    pub(crate) fn cap(&self, budget: &FrameBudget) -> u64 {
        let max = budget.max();
        let share = u128::from(self.cap_bytes) * u128::from(max) / u128::from(self.cap_of_pages);
        u64::try_from(share)
            .unwrap_or(u64::MAX)
            .min(max.saturating_sub(1) * PAGE as u64)
    }

    /// Bytes the pool holds beyond its cap (after a cut of the budget).
    pub(crate) fn excess(&self, budget: &FrameBudget) -> u64 {
        budget.pool_bytes().saturating_sub(self.cap(budget))
    }

    /// Classify `page`: zeros, incompressible by [`looks_incompressible`] (no trial), else
    /// compressed by a trial (incompressible if over [`MAX_PACKED`]); count the outcome. No
    /// `PageMap` or lower lock may be held (checked in debug builds).
    pub(crate) fn pack(&self, page: &[u8; PAGE]) -> Packing {
        crate::sync::assert_not_held_at_or_above(LockRank::PageMap);
        if is_zero(page) {
            return Packing::Zero;
        }
        if looks_incompressible(page) {
            self.stats.estimated.fetch_add(1, Ordering::Relaxed);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Packing::Incompressible;
        }
        let p = trial(self.algo, page);
        if matches!(p, Packing::Incompressible) {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    /// Store `data` (compressed page `id` of `owner`) if it fits under the cap: charge it and
    /// queue it as the warmest entry.
    ///
    /// # Errors
    /// The pool is full: `data` comes back.
    pub(crate) fn admit(
        &self,
        budget: &Arc<FrameBudget>,
        data: Box<[u8]>,
        owner: &Weak<dyn PageOwner>,
        id: PageId,
    ) -> Result<Arc<Packed>, Box<[u8]>> {
        let cost = entry_cost(data.len());
        if !budget.try_charge_pool(cost, self.cap(budget)) {
            return Err(data);
        }
        let packed = Arc::new(Packed {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            algo: self.algo,
            data,
            cost,
            budget: budget.clone(),
            dead: self.dead.clone(),
            read_once: AtomicBool::new(false),
        });
        let mut q = self.queue.lock();
        if q.entries.len() >= q.prune_at {
            self.drop_dead(&mut q);
        }
        q.entries.push_back(PoolEntry {
            owner: owner.clone(),
            id,
            packed: Arc::downgrade(&packed),
        });
        Ok(packed)
    }

    /// Drop the queue's dead entries once they are an eighth of it (or 256, whichever is more),
    /// which frees what their `Weak`s keep allocated: the `Packed` headers and the inodes of
    /// removed files. Called by the evictor on every wake-up (at least every 200 ms), so a
    /// removed tree's entries go within a fraction of a second, not at the next admission
    /// (which, after an `rm -rf`, may never come). Returns the entries dropped.
    pub(crate) fn prune(&self) -> usize {
        let dead = self.dead.load(Ordering::Relaxed);
        if dead < 256 {
            return 0;
        }
        let mut q = self.queue.lock();
        if dead * 8 < q.entries.len() {
            return 0;
        }
        let before = q.entries.len();
        self.drop_dead(&mut q);
        before - q.entries.len()
    }

    /// Drop the dead entries of `q` (the queue, locked) and reset the count of them; entries
    /// that die from here on are counted again and caught by a later prune.
    fn drop_dead(&self, q: &mut Queue) {
        self.dead.store(0, Ordering::Relaxed);
        q.entries.retain(|e| e.packed.strong_count() > 0);
        q.prune_at = 2 * q.entries.len() + 1024;
    }

    /// Entries in the queue, dead ones included (tests).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().entries.len()
    }

    /// Take the coldest live entry (dead ones on the way are dropped, and uncounted).
    pub(crate) fn pop_coldest(&self) -> Option<PoolEntry> {
        let mut q = self.queue.lock();
        while let Some(e) = q.entries.pop_front() {
            if e.packed.strong_count() > 0 {
                return Some(e);
            }
            let _ = self
                .dead
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
        }
        None
    }

    /// Put entries back as the coldest (their write-back failed), in their order.
    pub(crate) fn requeue_coldest(&self, entries: Vec<PoolEntry>) {
        let mut q = self.queue.lock();
        for e in entries.into_iter().rev() {
            q.entries.push_front(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    fn pack(algo: Compression, page: &[u8; PAGE]) -> Packing {
        Pool::new(algo, PAGE as u64, 4).pack(page)
    }

    fn text_page() -> Box<[u8; PAGE]> {
        let line = b"2026-12-05T11:35:14Z INFO rtmpfs: evicted page 42 of inode 7 to swap\n";
        let mut p = Box::new([0u8; PAGE]);
        for (i, b) in p.iter_mut().enumerate() {
            *b = line[i % line.len()];
        }
        p
    }

    fn random_page(seed: u64) -> Box<[u8; PAGE]> {
        let mut x = seed | 1;
        let mut p = Box::new([0u8; PAGE]);
        for b in p.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
        p
    }

    #[test]
    fn text_compresses_and_round_trips_with_both_algorithms() {
        let budget = Arc::new(FrameBudget::new(64));
        for algo in [Compression::Lz4, Compression::Zstd] {
            let page = text_page();
            let Packing::Packed(data) = pack(algo, &page) else {
                panic!("{algo:?}: a text page did not compress");
            };
            assert!(data.len() < PAGE / 4, "{algo:?}: {} bytes", data.len());
            let pool = Pool::new(algo, 16 * PAGE as u64, 64);
            let owner: Weak<dyn PageOwner> = Weak::<crate::inode::Inode>::new();
            let packed = pool.admit(&budget, data, &owner, PageId { ino: 1, idx: 0 }).unwrap();
            assert_eq!(budget.pool_bytes(), packed.cost());
            let mut out = [0u8; PAGE];
            packed.unpack_into(&mut out).unwrap();
            assert_eq!(&out, &*page);
            drop(packed);
            assert_eq!(budget.pool_bytes(), 0, "dropping an entry gives its bytes back");
        }
    }

    #[test]
    fn zero_and_random_pages_are_not_stored() {
        for algo in [Compression::Lz4, Compression::Zstd] {
            assert!(matches!(pack(algo, &[0u8; PAGE]), Packing::Zero));
            assert!(matches!(pack(algo, &random_page(7)), Packing::Incompressible));
            let mut one = [0u8; PAGE];
            one[PAGE - 1] = 1;
            assert!(
                matches!(pack(algo, &one), Packing::Packed(_)),
                "one non-zero byte is not zero"
            );
        }
    }

    /// A page of generated log lines with varying fields (not one repeated line).
    fn log_page(seed: u64) -> Box<[u8; PAGE]> {
        let mut x = seed | 1;
        let mut text = String::new();
        while text.len() < PAGE {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = writeln!(
                text,
                "2026-12-06T00:{:02}:{:02}Z {} app: request id={} took {}ms status={}",
                x % 60,
                (x >> 8) % 60,
                ["INFO", "WARN", "DEBUG"][(x >> 16) as usize % 3],
                (x >> 20) % 100_000,
                (x >> 40) % 500,
                [200, 404, 500][(x >> 50) as usize % 3]
            );
        }
        let mut p = Box::new([0u8; PAGE]);
        p.copy_from_slice(&text.as_bytes()[..PAGE]);
        p
    }

    #[test]
    fn the_estimate_rejects_random_pages_and_passes_text_logs_and_zero_tails() {
        for seed in 1..50 {
            assert!(looks_incompressible(&random_page(seed)), "random page {seed}");
            assert!(!looks_incompressible(&log_page(seed)), "log page {seed}");
            // Random with a zero tail of a quarter: LZ packs it under `MAX_PACKED`.
            let mut tail = random_page(seed);
            tail[PAGE * 3 / 4..].fill(0);
            assert!(!looks_incompressible(&tail), "zero-tail page {seed}");
        }
        assert!(!looks_incompressible(&text_page()));
        let source = include_bytes!("pool.rs");
        for page in source.chunks_exact(PAGE) {
            assert!(!looks_incompressible(page.try_into().unwrap()), "this source file");
        }
        // Two equal random halves: high entropy, but LZ halves it (the repeated-pattern check).
        let mut twice = random_page(3);
        let (a, b) = twice.split_at_mut(PAGE / 2);
        b.copy_from_slice(a);
        assert!(!looks_incompressible(&twice));
        assert!(matches!(pack(Compression::Lz4, &twice), Packing::Packed(_)));
    }

    #[test]
    fn every_page_the_estimate_rejects_fails_both_trials() {
        // Random pages with zero tails of every length in 64-byte steps: wherever the estimate
        // says incompressible, each compressor's own trial says so too (the estimate never costs
        // the pool a page it could have held).
        let mut rejected = 0;
        for zeros in (0..=PAGE).step_by(64) {
            let mut page = random_page(zeros as u64 + 11);
            page[PAGE - zeros..].fill(0);
            if looks_incompressible(&page) {
                rejected += 1;
                for algo in [Compression::Lz4, Compression::Zstd] {
                    assert!(
                        matches!(trial(algo, &page), Packing::Incompressible),
                        "{algo:?}: a zero tail of {zeros} bytes packs, but the estimate rejected it"
                    );
                }
            }
        }
        assert!(rejected >= 4, "the estimate rejected only {rejected} pages");
    }

    #[test]
    fn the_cap_bounds_the_pool_and_follows_the_budget() {
        let budget = Arc::new(FrameBudget::new(8));
        let pool = Pool::new(Compression::Lz4, 2 * PAGE as u64, 8);
        let owner: Weak<dyn PageOwner> = Weak::<crate::inode::Inode>::new();
        let mut kept = Vec::new();
        while let Ok(p) = pool.admit(&budget, vec![7u8; 1000].into(), &owner, PageId { ino: 1, idx: 0 }) {
            kept.push(p);
        }
        assert!(budget.pool_bytes() <= 2 * PAGE as u64);
        assert!(
            budget.pool_bytes() + entry_cost(1000) > 2 * PAGE as u64,
            "stopped before full"
        );
        assert_eq!(budget.frame_limit(), 8 - budget.pool_pages());
        budget.set_max(4);
        assert_eq!(pool.cap(&budget), PAGE as u64, "a cut keeps the pool's share");
        assert!(pool.excess(&budget) > 0);
    }
}
