//! The RAM budget: how many frames may be live, and where threads wait for one.
//!
//! [`FrameBudget`] counts live frames. A frame is charged before it is allocated
//! (`MemoryManager::charge_frame`, which `new_frame` and `new_swap_in_buffer` call) and released
//! when it is dropped, so the figure is exactly the RAM held by file data, including frames
//! briefly held by the evictor (and a swap-in's reserve, see docs/design.md).

use std::time::Duration;

use crate::sync::{Arc, AtomicBool, AtomicU64, Condvar, LockRank, Mutex, Ordering};

/// One frame's charge against the RAM budget (`None` without a budget), given back when it is
/// dropped: with the frame it went into, or on whatever path gave up before making one.
pub(crate) struct FrameCharge(pub(super) Option<Arc<FrameBudget>>);

impl Drop for FrameCharge {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.release();
        }
    }
}

/// Counts frames against the RAM budget, and parks threads waiting for a frame.
pub(crate) struct FrameBudget {
    /// The budget in frames. Atomic so that `Filesystem::set_memory_limit` can change it while
    /// the mount runs; every reader loads it afresh (relaxed: a charge racing a change sees
    /// either value, and both are valid budgets at that moment).
    max: AtomicU64,
    /// Pages of `max` lent to the process's C heap (metadata), set by the memory housekeeping
    /// with `Config::own_process_memory`; frames get the rest, and never less than
    /// [`FrameBudget::frame_floor`]. See `set_heap_pages`.
    heap_pages: AtomicU64,
    /// Whether the heap's share is taken from the frames now: not while the swap is full or
    /// failing (`set_lending`), when frames could not leave RAM to make room for it.
    lending: AtomicBool,
    used: AtomicU64,
    /// Bytes of RAM the compressed pool holds (its entries' real cost, see `mm/pool.rs`): they
    /// come off the frames' share, rounded up to whole pages (`pool_pages`).
    pool_bytes: AtomicU64,
    /// Threads parked in [`FrameBudget::wait_for_progress`].
    waiters: AtomicU64,
    /// Bumped whenever a frame is released: a thread that found nothing to evict sleeps only if
    /// no frame was released since it looked (no lost wake-up).
    progress: AtomicU64,
    /// Rank `FrameBudget` (a leaf). Guards nothing but the condition variables' waits.
    lock: Mutex<()>,
    released: Condvar,
    /// Wakes the background evictor.
    kick: Condvar,
    kicked: AtomicBool,
}

impl FrameBudget {
    pub(crate) fn new(max_pages: u64) -> FrameBudget {
        FrameBudget {
            max: AtomicU64::new(max_pages),
            heap_pages: AtomicU64::new(0),
            lending: AtomicBool::new(true),
            used: AtomicU64::new(0),
            pool_bytes: AtomicU64::new(0),
            waiters: AtomicU64::new(0),
            progress: AtomicU64::new(0),
            lock: Mutex::new(LockRank::FrameBudget, ()),
            released: Condvar::new(),
            kick: Condvar::new(),
            kicked: AtomicBool::new(false),
        }
    }

    /// Charge one frame if the budget allows (the frames it leaves after the heap's share).
    pub(crate) fn try_charge(&self) -> bool {
        self.try_charge_within(self.frame_limit())
    }

    /// Charge one frame within the whole budget (less the compressed pool's pages), taking back
    /// the pages lent to the heap: for
    /// when no frame can leave RAM (swap full or failing). Lending the heap's share is only a
    /// reason to move data to swap; it must never make stored data unreadable or refuse new
    /// data that the budget itself has room for.
    pub(crate) fn try_charge_unlent(&self) -> bool {
        self.try_charge_within(self.max().saturating_sub(self.pool_pages()))
    }

    fn try_charge_within(&self, max: u64) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if max - (cur + 1) < self.target_free() / 2 + 1 {
                        self.kick();
                    }
                    return true;
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Charge one frame beyond the budget, within the swap-in reserve: for a swap-in that found
    /// nothing to reclaim (every resident page dirty and the swap full or failing). Without it a
    /// full swap would make stored data unreadable. The reserve is `max / 64`, 1 to 16 frames;
    /// the overdraft is paid back by the next sweeps (a page swapped in keeps its swap copy, so
    /// it can always leave again without I/O).
    pub(crate) fn try_overdraw(&self) -> bool {
        let limit = self.frame_limit() + (self.max() / 64).clamp(1, 16);
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur >= limit {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.kick();
                    return true;
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Give back one frame (called when a `FrameCharge` is dropped).
    fn release(&self) {
        let prev = self.used.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(prev > 0, "frame budget released below zero");
        self.note_progress();
    }

    /// The progress counter, read before an eviction attempt.
    pub(crate) fn progress(&self) -> u64 {
        self.progress.load(Ordering::Acquire)
    }

    /// A frame was released: wake the waiters.
    fn note_progress(&self) {
        self.progress.fetch_add(1, Ordering::AcqRel);
        if self.waiters.load(Ordering::Acquire) > 0 {
            let _g = self.lock.lock();
            self.released.notify_all();
        }
    }

    /// Park until a frame is released after `seen` or `timeout` passes. Returns at once if the
    /// budget has room or a release already happened. Returns whether anything happened (false:
    /// the whole timeout passed with no frame released anywhere).
    pub(crate) fn wait_for_progress(&self, seen: u64, timeout: Duration) -> bool {
        crate::sync::assert_not_held_at_or_above(LockRank::PageMap);
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let g = self.lock.lock();
        if self.used.load(Ordering::Acquire) >= self.frame_limit() && self.progress.load(Ordering::Acquire) == seen {
            drop(self.released.wait_timeout(g, timeout));
        } else {
            drop(g);
        }
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        self.used.load(Ordering::Acquire) < self.frame_limit() || self.progress.load(Ordering::Acquire) != seen
    }

    /// Ask the background evictor to run.
    pub(crate) fn kick(&self) {
        if !self.kicked.swap(true, Ordering::AcqRel) {
            let _g = self.lock.lock();
            self.kick.notify_all();
        }
    }

    /// The background evictor's wait: until kicked or `timeout`.
    pub(crate) fn wait_for_kick(&self, timeout: Duration) {
        let g = self.lock.lock();
        if !self.kicked.swap(false, Ordering::AcqRel) {
            let g = self.kick.wait_timeout(g, timeout);
            self.kicked.store(false, Ordering::Release);
            drop(g);
        }
    }

    /// Wake everyone (shutdown). Sets `kicked` first, as `kick` does: an evictor between its
    /// check of the stop flag and its wait would otherwise sleep through this notification.
    pub(crate) fn wake_all(&self) {
        self.kicked.store(true, Ordering::Release);
        let _g = self.lock.lock();
        self.kick.notify_all();
        self.released.notify_all();
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// Set a new budget (`Filesystem::set_memory_limit`, which checked it and evicts down to
    /// it). Waiters and the evictor are woken: a raise frees writers waiting for a frame, a cut
    /// gives the evictor a deficit.
    pub(crate) fn set_max(&self, max_pages: u64) {
        self.max.store(max_pages, Ordering::Relaxed);
        self.note_progress();
        self.kick();
    }

    /// Free frames the background evictor tries to keep, so writers rarely wait: 1/16 of the
    /// budget, 1 to 4096 frames.
    fn target_free(&self) -> u64 {
        (self.max() / 16).clamp(1, 4096)
    }

    /// Frames the background evictor should free now to restore its headroom.
    pub(crate) fn deficit(&self) -> u64 {
        (self.used() + self.target_free()).saturating_sub(self.frame_limit())
    }

    /// Frames the budget allows now: `max` less the compressed pool's pages, less the pages lent
    /// to the heap (never below the floor of what the pool leaves).
    pub(crate) fn frame_limit(&self) -> u64 {
        let data = self.max().saturating_sub(self.pool_pages());
        if !self.lending.load(Ordering::Relaxed) {
            return data;
        }
        data.saturating_sub(self.heap_pages.load(Ordering::Relaxed))
            .max(frame_floor_of(data))
    }

    /// Charge `bytes` of compressed pool, if the pool stays within `cap` bytes.
    pub(crate) fn try_charge_pool(&self, bytes: u64, cap: u64) -> bool {
        let mut cur = self.pool_bytes.load(Ordering::Relaxed);
        loop {
            if cur + bytes > cap {
                return false;
            }
            match self
                .pool_bytes
                .compare_exchange_weak(cur, cur + bytes, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Give back `bytes` of compressed pool (a pool entry was dropped): room for frames.
    pub(crate) fn release_pool(&self, bytes: u64) {
        let prev = self.pool_bytes.fetch_sub(bytes, Ordering::AcqRel);
        debug_assert!(prev >= bytes, "compressed pool released below zero");
        self.note_progress();
    }

    /// Bytes the compressed pool holds.
    pub(crate) fn pool_bytes(&self) -> u64 {
        self.pool_bytes.load(Ordering::Relaxed)
    }

    /// Pages of the budget the compressed pool takes: its bytes rounded up.
    pub(crate) fn pool_pages(&self) -> u64 {
        self.pool_bytes().div_ceil(crate::types::PAGE_SIZE)
    }

    /// RAM the budget's data holds, in pages: live frames plus the compressed pool's pages. What
    /// a cut of the budget evicts down to.
    pub(crate) fn in_use(&self) -> u64 {
        self.used() + self.pool_pages()
    }

    /// Frames the budget keeps for file data however large the heap grows: an eighth of it,
    /// at least 64 frames (or all of a smaller budget), so data still moves when metadata
    /// dominates.
    pub(crate) fn frame_floor(&self) -> u64 {
        frame_floor_of(self.max())
    }

    /// Count `pages` of process heap against the budget (capped so that `frame_floor` frames
    /// stay): the evictor then keeps frames within the rest. Growing it kicks the evictor;
    /// shrinking it wakes writers waiting for a frame.
    pub(crate) fn set_heap_pages(&self, pages: u64) {
        let lent = pages.min(self.max() - self.frame_floor());
        let before = self.heap_pages.swap(lent, Ordering::Relaxed);
        if lent > before {
            self.kick();
        } else if lent < before {
            self.note_progress();
        }
    }

    /// Take the heap's share from the frames (`true`) or not: the memory manager suspends it
    /// while the swap is full or failing, where it would only push frames that cannot leave.
    /// Suspending wakes writers waiting for a frame.
    pub(crate) fn set_lending(&self, on: bool) {
        if self.lending.swap(on, Ordering::Relaxed) != on && !on {
            self.note_progress();
        }
    }

    /// Pages of the budget lent to the heap now.
    pub(crate) fn heap_pages(&self) -> u64 {
        self.heap_pages.load(Ordering::Relaxed)
    }
}

/// [`FrameBudget::frame_floor`] of a budget of `max` pages.
pub(crate) fn frame_floor_of(max: u64) -> u64 {
    (max / 8).max(max.min(64))
}
