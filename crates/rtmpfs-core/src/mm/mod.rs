//! The memory manager: page accounting, the RAM budget, the CLOCK ring, reclaim (the eviction
//! sweep, direct and in the background), swap read-ahead, and the `size` limit's quota.
//!
//! * [`Accounting`] counts every non-hole page by state and charges it to the `size` [`Quota`].
//! * [`FrameBudget`] counts live frames against the RAM budget; a frame is charged before it is
//!   allocated and released when it is dropped ([`budget::FrameCharge`]).
//! * [`Clock`] is the replacement policy: CLOCK (second chance). Every access sets the frame's
//!   reference bit with one relaxed atomic store and no lock, so the read path stays lock-free
//!   with respect to the policy; the evictor sweeps the ring, giving referenced frames a second
//!   chance. Why CLOCK rather than exact LRU or S3-FIFO: exact LRU needs a list update (a lock)
//!   on every read, which would put a global lock on the data path; S3-FIFO resists scans better
//!   but needs three queues and a ghost set. CLOCK's hit ratio is measured against exact LRU on a
//!   skewed workload by `clock_vs_lru_on_zipf` in `clock.rs`.
//! * Reclaim (`reclaim.rs`: the background evictor thread, and direct reclaim by a thread that
//!   finds the budget full) never waits on a file lock: it only try-locks page maps and frames,
//!   and does swap I/O with no engine lock held.
//!
//! The memory manager reaches file pages only through [`PageOwner`], which the inode side
//! implements: it never names an inode or a file's data, and nothing outside `mm` touches its
//! fields. Dependencies go one way: `file/` and `fs/` use `mm`, `mm` uses `swap` and `sync`.

mod accounting;
mod budget;
mod clock;
mod frame;
mod pool;
mod quota;
mod readahead;
mod reclaim;
mod resize;

pub(crate) use accounting::{PageState, SlotCounts};
pub(crate) use frame::{Frame, PAGE};
pub(crate) use pool::Packed;
pub(crate) use pool::{looks_incompressible, trial, Packing, MAX_PACKED};
pub(crate) use quota::Quota;
pub(crate) use readahead::{FileReadAhead, Queue as ReadAheadQueue, Window};
pub(crate) use reclaim::{FrameFor, UnpackCharge};

use accounting::Accounting;
pub(crate) use budget::{frame_floor_of, FrameBudget};
use clock::{Clock, ClockEntry};
use pool::Pool;

use crate::config::{Compression, Config, SwapConfig};
use crate::error::{ConfigError, FsError, Result};
use crate::swap::{AlignedPage, PageId, RecordEntry, Sealer, Swap, SwapBackend, SwapCopy, SwapEntry};
use crate::sync::{thread::JoinHandle, Arc, AtomicBool, AtomicU64, LockRank, Mutex, Ordering, Weak};
use crate::types::{Usage, PAGE_SIZE};

/// The file side of the memory manager: what it asks of the owner of pages it evicts or reads
/// ahead. Implemented by the inode (a file's pages live in its page map); the memory manager
/// holds owners only through `Weak` references, so it never keeps a file alive.
pub(crate) trait PageOwner: Send + Sync {
    /// First phase of evicting page `idx`, expected to be `frame`: under try-locks only, record
    /// its version and either its still-valid swap copy or a copy of its bytes.
    ///
    /// # Errors
    /// `Busy` if a lock is held, `Gone` if the page is no longer this frame.
    fn evict_snapshot(&self, idx: u64, frame: &Arc<Frame>) -> Result<EvictSnapshot, EvictOutcome>;

    /// Last phase: publish `target` (swapped, compressed or zero) in place of `page` by
    /// compare-and-set, only if the slot still holds the frame at the version seen.
    fn evict_publish(&self, mm: &MemoryManager, page: EvictPage<'_>, target: EvictTarget) -> EvictOutcome;

    /// A compressed page was written to swap as a record (the pool was full): publish
    /// `SwappedRecord(entry)` in place of page `idx` by compare-and-set, only if the slot still
    /// holds pool entry `packed_id`. Returns whether it did; if not, the caller frees the record.
    fn pool_written_back(&self, mm: &MemoryManager, idx: u64, packed_id: u64, entry: RecordEntry) -> bool;

    /// Swap in the swapped pages of `window`, then mark it done (the read-ahead thread's job).
    fn read_ahead(&self, mm: &MemoryManager, window: Window);

    /// Read-ahead window `seq` will not be run (the threads stopped): release its waiters.
    fn read_ahead_abandoned(&self, seq: u64);
}

/// What became of one eviction attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvictOutcome {
    /// Written to swap and dropped from RAM.
    Evicted,
    /// Dropped from RAM without I/O: its swap copy was still valid.
    Clean,
    /// The page is no longer this frame (truncated, rewritten): forget the entry.
    Gone,
    /// In use or changed meanwhile: try later.
    Busy,
}

/// What the first phase of an eviction saw.
pub(crate) struct EvictSnapshot {
    /// The frame's version when copied: publishing needs it unchanged.
    pub version: u64,
    /// The frame's still-valid swap copy: evict without I/O.
    pub swap_copy: Option<SwapCopy>,
    /// Otherwise, the bytes to write out (in an I/O-aligned buffer, sealed in place).
    pub copy: Option<AlignedPage>,
    /// Bound into the seal.
    pub id: PageId,
    /// The swap slot after the previous page's, if that page is swapped out: writing there keeps
    /// the file's pages consecutive in the swap file.
    pub slot_hint: Option<u64>,
}

/// The page an eviction publishes: page `idx`, expected to be resident in `frame` at `version`.
#[derive(Clone, Copy)]
pub(crate) struct EvictPage<'a> {
    pub idx: u64,
    pub frame: &'a Arc<Frame>,
    pub version: u64,
}

/// Where an evicted page goes.
#[derive(Clone)]
pub(crate) enum EvictTarget {
    /// Just written to swap there by this eviction: the slot is freed if the eviction gives up.
    Written(SwapEntry),
    /// The frame's own still-valid swap copy (a page's slot or a record): eviction needs no
    /// I/O, and the copy stays the frame's if it gives up.
    Kept(SwapCopy),
    /// Compressed into the pool (the entry's charge goes back if the eviction gives up).
    Pool(Arc<Packed>),
    /// Just written to swap compressed, as a record (freed if the eviction gives up): the pool
    /// had no room.
    Record(RecordEntry),
    /// All zeros: stored as nothing.
    Zero,
}

impl EvictTarget {
    /// The outcome of publishing this target.
    pub(crate) fn outcome(&self) -> EvictOutcome {
        match self {
            EvictTarget::Kept(_) => EvictOutcome::Clean,
            _ => EvictOutcome::Evicted,
        }
    }
}

/// Counters of the memory tier.
#[derive(Debug, Default)]
struct TierStats {
    /// Pages moved to swap with a write.
    evictions: AtomicU64,
    /// Pages dropped from RAM without I/O: their swap copy was still valid.
    clean_evictions: AtomicU64,
    /// Pages read back from swap.
    swap_ins: AtomicU64,
    /// Of those, pages read back by the read-ahead thread ahead of a sequential reader.
    readahead_swap_ins: AtomicU64,
    /// Pages lost to failed swap reads.
    poisoned: AtomicU64,
    /// Times a thread had to reclaim or wait for memory itself.
    direct_reclaims: AtomicU64,
}

/// The RAM budget and what enforces it.
struct MemTier {
    budget: Arc<FrameBudget>,
    clock: Clock,
    /// `None` with `noswap`: the budget is then a hard cap (`NoSpace` when full), less what
    /// the compressed pool can take.
    swap: Option<Swap>,
    /// The compressed tier (`compress=`), if on.
    pool: Option<Pool>,
    stats: TierStats,
}

impl MemTier {
    /// Whether frames can leave RAM at all: to swap, or into the compressed pool.
    fn can_evict(&self) -> bool {
        self.swap.is_some() || self.pool.is_some()
    }
}

/// Everything the data path needs besides a file's own page map. Shared by the filesystem and
/// its background threads through an `Arc`.
pub(crate) struct MemoryManager {
    acct: Accounting,
    tier: Option<MemTier>,
    /// Set when the filesystem is dropped: stops the background evictor.
    stop: AtomicBool,
    /// Jobs for the swap read-ahead threads, when there are any (a swap tier and background
    /// threads): sequential readers then read ahead asynchronously, else synchronously.
    readahead: Option<ReadAheadQueue>,
    /// Rank `Threads`. The background evictor and the read-ahead threads, joined on stop.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Frames a snapshot's capture pins now (`file/image.rs`; 0 between snapshots).
    pinned_frames: AtomicU64,
    /// Bytes of pool entries a snapshot's capture holds now (in a page map or not any more:
    /// an entry taken out of its map stays charged until the capture lets go of it).
    captured_pool_bytes: AtomicU64,
}

impl MemoryManager {
    /// The memory manager `config` asks for, with its swap tier storing pages in `backend`
    /// (with `config.memory_bytes`), and its background threads started (with
    /// `config.background_threads` and a swap tier).
    ///
    /// # Errors
    /// A [`ConfigError`] if the swap key cannot be made or a thread cannot start.
    pub(crate) fn start(
        config: &Config,
        backend: Option<Box<dyn SwapBackend>>,
    ) -> std::result::Result<Arc<MemoryManager>, ConfigError> {
        let max_pages = config.size_bytes.map(|b| b / PAGE_SIZE);
        let tier = match config.memory_bytes {
            None => None,
            Some(mem) => {
                let swap = match backend {
                    None => None,
                    Some(backend) => {
                        let swap_cfg = config.swap.clone().unwrap_or_else(SwapConfig::in_temp_dir);
                        let cap = swap_cfg.size_bytes.map(|b| b / PAGE_SIZE).or_else(|| {
                            let frames = crate::housekeeping::frames_kept(config, mem / PAGE_SIZE);
                            max_pages.map(|size| size - frames)
                        });
                        let sealer = if swap_cfg.encrypt {
                            Sealer::random_key().map_err(|e| ConfigError(e.to_string()))?
                        } else {
                            Sealer::plain()
                        };
                        Some(Swap::new(backend, cap, sealer))
                    }
                };
                let pool = config
                    .compress_max()
                    .map(|cap| Pool::new(config.compression, cap, mem / PAGE_SIZE));
                Some(MemTier {
                    budget: Arc::new(FrameBudget::new(mem / PAGE_SIZE)),
                    clock: Clock::new(),
                    swap,
                    pool,
                    stats: TierStats::default(),
                })
            }
        };
        let background = config.background_threads && tier.as_ref().is_some_and(MemTier::can_evict);
        let swapping = tier.as_ref().is_some_and(|t| t.swap.is_some());
        let mm = Arc::new(MemoryManager {
            acct: Accounting::new(max_pages),
            tier,
            stop: AtomicBool::new(false),
            readahead: (background && swapping).then(ReadAheadQueue::new),
            threads: Mutex::new(LockRank::Threads, Vec::new()),
            pinned_frames: AtomicU64::new(0),
            captured_pool_bytes: AtomicU64::new(0),
        });
        if background {
            let spawn = |name: &str, run: fn(&Arc<MemoryManager>)| {
                let m = mm.clone();
                // `sync::thread`: under shuttle these become threads whose schedule it explores.
                crate::sync::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || run(&m))
                    .map_err(|e| ConfigError(format!("cannot start the {name} thread: {e}")))
            };
            let mut threads = vec![spawn("rtmpfs-evictor", |m| m.run_evictor())?];
            // Two read-ahead threads: one window's swap read overlaps the other's decryption.
            for name in ["rtmpfs-readahead-0", "rtmpfs-readahead-1"] {
                if swapping {
                    threads.push(spawn(name, |m| m.run_readahead())?);
                }
            }
            *mm.threads.lock() = threads;
        }
        Ok(mm)
    }

    /// Stop the background evictor and read-ahead threads and wait for them to exit. Read-ahead
    /// windows still queued are abandoned (their waiters released).
    /// The RAM budget when there is a swap tier: the one the memory housekeeping may lend the
    /// process heap from (see housekeeping.rs).
    pub(crate) fn swapping_budget(&self) -> Option<&Arc<FrameBudget>> {
        self.tier.as_ref().filter(|t| t.swap.is_some()).map(|t| &t.budget)
    }

    pub(crate) fn stop_background_threads(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(tier) = &self.tier {
            tier.budget.wake_all();
        }
        if let Some(q) = &self.readahead {
            // Windows that will never be read: release any reader waiting for them.
            for job in q.stop() {
                if let Some(owner) = job.owner.upgrade() {
                    owner.read_ahead_abandoned(job.window.seq);
                }
            }
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        for h in threads {
            let _ = h.join();
        }
    }

    // ----- accounting -----

    /// The `size` limit's counter of pages.
    pub(crate) fn pages_quota(&self) -> &Quota {
        self.acct.pages()
    }

    /// Charge `n` pages against `size`.
    ///
    /// # Errors
    /// `NoSpace`, and nothing is charged.
    pub(crate) fn charge_pages(&self, n: u64) -> Result<()> {
        self.acct.pages().charge(n)
    }

    /// Give back `n` pages charged with [`MemoryManager::charge_pages`] and never counted.
    pub(crate) fn uncharge_pages(&self, n: u64) {
        self.acct.pages().uncharge(n);
    }

    /// Count a page just published in place of a hole (charged before).
    pub(crate) fn count_added(&self, state: PageState) {
        self.acct.add(state);
    }

    /// A page changed state in place.
    pub(crate) fn count_moved(&self, from: PageState, to: PageState) {
        self.acct.moved(from, to);
    }

    /// Pages removed from a page map: uncount and uncharge them.
    pub(crate) fn count_removed(&self, removed: SlotCounts) {
        self.acct.remove(removed);
    }

    /// The filesystem-wide page counters.
    pub(crate) fn counts(&self) -> SlotCounts {
        self.acct.counts()
    }

    /// The memory tier's figures (budget, evictions, swap) into `u`; left as they are without
    /// a RAM budget.
    pub(crate) fn fill_usage(&self, u: &mut Usage) {
        let Some(tier) = &self.tier else {
            return;
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        u.memory_limit_pages = Some(tier.budget.max());
        u.frames_in_use = tier.budget.used();
        u.memory_heap_pages = tier.budget.heap_pages();
        u.evictions = get(&tier.stats.evictions);
        u.clean_evictions = get(&tier.stats.clean_evictions);
        u.swap_ins = get(&tier.stats.swap_ins);
        u.readahead_swap_ins = get(&tier.stats.readahead_swap_ins);
        u.direct_reclaims = get(&tier.stats.direct_reclaims);
        u.compression = tier.pool.as_ref().map_or(Compression::Off, Pool::algo);
        if let Some(pool) = &tier.pool {
            u.pool_bytes = tier.budget.pool_bytes();
            u.pool_limit_bytes = Some(pool.cap(&tier.budget));
            u.pool_stores = get(&pool.stats.stores);
            u.pool_zero_pages_stored = get(&pool.stats.zero_pages);
            u.pool_rejected = get(&pool.stats.rejected);
            u.pool_rejected_by_estimate = get(&pool.stats.estimated);
            u.pool_hits = get(&pool.stats.hits);
            u.pool_writebacks = get(&pool.stats.writebacks);
        }
        if let Some(swap) = &tier.swap {
            u.swap_slots_used = swap.used_slots();
            u.swap_capacity_pages = swap.capacity_slots();
            u.swap_file_bytes = swap.file_bytes();
            u.swap_encrypted = swap.encrypted();
            u.swap_read_errors = get(&swap.stats.read_errors);
            u.swap_write_errors = get(&swap.stats.write_errors);
            u.swap_bytes_written = get(&swap.stats.bytes_written);
            u.swap_bytes_read = get(&swap.stats.bytes_read);
            u.swap_records_written = get(&swap.stats.records_written);
            u.swap_records_read = get(&swap.stats.records_read);
            (u.swap_record_slots, u.swap_records, u.swap_record_bytes) = swap.record_usage();
        }
    }

    // ----- frames and the swap tier, for the file side -----

    /// Put a newly resident frame on the CLOCK ring, and on its clean list if it was swapped in
    /// with its swap copy kept (`clean`).
    pub(crate) fn track(&self, owner: &Weak<dyn PageOwner>, idx: u64, frame: &Arc<Frame>, clean: bool) {
        if let Some(tier) = &self.tier {
            let entry = || ClockEntry {
                owner: owner.clone(),
                idx,
                frame: Arc::downgrade(frame),
            };
            let live = tier.budget.used();
            if clean {
                tier.clock.push_clean(entry(), live);
            }
            tier.clock.push(entry(), live);
        }
    }

    /// The swap tier, for a swap-in.
    ///
    /// # Errors
    /// `Io` without one (a swapped page cannot exist then).
    pub(crate) fn swap(&self) -> Result<&Swap> {
        self.tier.as_ref().and_then(|t| t.swap.as_ref()).ok_or(FsError::Io)
    }

    /// Free the swap slot of a page that no longer needs it (removed, or overwritten without
    /// being read back).
    pub(crate) fn free_swap_slot(&self, entry: SwapEntry) {
        if let Some(swap) = self.tier.as_ref().and_then(|t| t.swap.as_ref()) {
            swap.free(entry.slot);
        }
    }

    /// Free a compressed record in swap that no longer holds a page (removed, overwritten
    /// without being read back, or changed since it was).
    pub(crate) fn free_swap_record(&self, entry: RecordEntry) {
        if let Some(swap) = self.tier.as_ref().and_then(|t| t.swap.as_ref()) {
            swap.free_record(entry);
        }
    }

    /// Decompress a page's compressed bytes (read back from a swap record) into `out`, with the
    /// pool's compressor. No `PageMap` or lower lock may be held.
    ///
    /// # Errors
    /// `Io` without a pool, or if `data` does not decompress to a page.
    pub(crate) fn unpack_record(&self, data: &[u8], out: &mut [u8; PAGE]) -> Result<()> {
        let pool = self.tier.as_ref().and_then(|t| t.pool.as_ref()).ok_or(FsError::Io)?;
        pool::unpack(pool.algo(), data, out).map_err(|()| FsError::Io)
    }

    /// A snapshot's capture takes hold of pages: swap `slots` are kept from being reused until
    /// [`MemoryManager::release_capture`] (frees meanwhile are deferred; a slot appears once
    /// per page or record captured in it, and is let go of as many times), and the `frames` it
    /// pinned and the `pool_bytes` of pool entries it holds are counted.
    pub(crate) fn hold_capture(&self, slots: &[u64], frames: u64, pool_bytes: u64) {
        if let (false, Some(swap)) = (slots.is_empty(), self.tier.as_ref().and_then(|t| t.swap.as_ref())) {
            swap.pin(slots.iter().copied());
        }
        self.pinned_frames.fetch_add(frames, Ordering::Relaxed);
        self.captured_pool_bytes.fetch_add(pool_bytes, Ordering::Relaxed);
    }

    /// Let go of what [`MemoryManager::hold_capture`] took (all of it, or part of it).
    pub(crate) fn release_capture(&self, slots: &[u64], frames: u64, pool_bytes: u64) {
        if let (false, Some(swap)) = (slots.is_empty(), self.tier.as_ref().and_then(|t| t.swap.as_ref())) {
            swap.unpin(slots.iter().copied());
        }
        self.pinned_frames.fetch_sub(frames, Ordering::Relaxed);
        self.captured_pool_bytes.fetch_sub(pool_bytes, Ordering::Relaxed);
    }

    /// Bytes of pool entries a snapshot's capture holds now.
    pub(crate) fn captured_pool_bytes(&self) -> u64 {
        self.captured_pool_bytes.load(Ordering::Relaxed)
    }

    #[cfg(any(test, feature = "test-util"))]
    /// Entries in the compressed pool's queue, dead ones included (0 without a pool).
    pub(crate) fn pool_queued(&self) -> usize {
        self.tier
            .as_ref()
            .and_then(|t| t.pool.as_ref())
            .map_or(0, pool::Pool::queued)
    }

    #[cfg(any(test, feature = "test-util"))]
    /// Frames pinned by a snapshot's capture now.
    pub(crate) fn pinned_frames(&self) -> u64 {
        self.pinned_frames.load(Ordering::Relaxed)
    }

    #[cfg(any(test, feature = "test-util"))]
    /// Swap slots pinned by a snapshot now (0 without swap).
    pub(crate) fn pinned_swap_slots(&self) -> usize {
        self.tier
            .as_ref()
            .and_then(|t| t.swap.as_ref())
            .map_or(0, crate::swap::Swap::pinned_slots)
    }

    /// A frame is changed or removed: its swap copy, if any, is stale; free its slot or
    /// record.
    pub(crate) fn drop_swap_copy(&self, stale: Option<SwapCopy>) {
        match stale {
            Some(SwapCopy::Page(e)) => self.free_swap_slot(e),
            Some(SwapCopy::Record(r)) => self.free_swap_record(r),
            None => {}
        }
    }

    /// Count pages read back from swap.
    pub(crate) fn note_swap_ins(&self, n: u64) {
        if let Some(tier) = &self.tier {
            tier.stats.swap_ins.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Count pages read back by the read-ahead threads (counted by `note_swap_ins` too).
    pub(crate) fn note_readahead_swap_ins(&self, n: u64) {
        if let Some(tier) = &self.tier {
            tier.stats.readahead_swap_ins.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Count a page lost to a failed swap read (poisoned).
    pub(crate) fn note_lost_page(&self) {
        if let Some(tier) = &self.tier {
            tier.stats.poisoned.fetch_add(1, Ordering::Relaxed);
            if let Some(swap) = &tier.swap {
                swap.stats.read_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The bytes the compressed pool is charged (0 without one): for the invariant check.
    pub(crate) fn pool_bytes(&self) -> u64 {
        self.tier.as_ref().map_or(0, |t| t.budget.pool_bytes())
    }

    /// The swap's record slots, live records and their bytes (zeros without swap): for the
    /// invariant check.
    pub(crate) fn swap_record_usage(&self) -> (u64, u64, u64) {
        self.tier
            .as_ref()
            .and_then(|t| t.swap.as_ref())
            .map_or((0, 0, 0), Swap::record_usage)
    }

    /// The queue to the read-ahead threads, if they run.
    pub(crate) fn readahead_queue(&self) -> Option<&ReadAheadQueue> {
        self.readahead.as_ref()
    }
}
