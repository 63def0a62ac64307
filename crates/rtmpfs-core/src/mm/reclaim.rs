//! Reclaim: charging frames to the RAM budget (direct reclaim when it is full), the CLOCK sweep
//! that writes cold pages to swap, the clean-frame sweep, and the background evictor and
//! read-ahead threads.

use std::time::Duration;

use rtmpfs_pages::{OutOfMemory, PageBuf};

use super::budget::FrameCharge;
use super::clock::ClockEntry;
use super::pool::{entry_cost, Packing, Pool, PoolEntry};
use super::{
    EvictOutcome, EvictPage, EvictSnapshot, EvictTarget, Frame, MemTier, MemoryManager, Packed, PageOwner, PAGE,
};
use crate::error::{FsError, Result};
use crate::swap::{AlignedPage, PageId, StoreError, Swap};
use crate::sync::{Arc, Ordering};

/// When a thread that needs a frame gives up with `NoSpace`: after this many sweeps in a row
/// that found the swap full or failing, or this many waits of `FRAME_WAIT_STEP` during which no
/// frame was released anywhere. Losing races to threads that do make progress never counts:
/// `NoSpace` means memory is really exhausted.
const FRAME_WAIT_ROUNDS: u32 = 100;
const FRAME_WAIT_STEP: Duration = Duration::from_millis(10);
const EXHAUSTED_SWEEPS: u32 = 3;
/// Fruitless sweeps (every candidate busy, or held by another thread's sweep) answered by
/// yielding and looking again before sleeping: the other thread usually needs only a moment.
const YIELD_RETRIES: u32 = 64;

/// What one eviction sweep did.
#[derive(Debug, Clone, Copy, Default)]
struct Sweep {
    /// Frames that left RAM.
    pub evicted: usize,
    /// A page could not be written out because the swap is full (no slot, or its filesystem
    /// has no space).
    pub full: bool,
    /// A page could not be written out because the swap device failed the write, or a clean
    /// page was kept in RAM because the device is failing.
    pub io_error: bool,
}

impl Sweep {
    /// Nothing left RAM because pages could not be written out.
    fn swap_exhausted(&self) -> bool {
        self.evicted == 0 && (self.full || self.io_error)
    }
}

/// What a frame is charged for: it decides how far `MemoryManager::charge_frame` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameFor {
    /// New data (a hole or reserved page written), or a page read ahead that nobody waits for
    /// yet: fails when memory and swap are full.
    NewPage,
    /// The page a reader (or a writer changing part of it) needs back from swap: may overdraw
    /// the budget, so stored data stays readable when the swap is full.
    SwapIn,
    /// A further page of a swap-in run (read-ahead): only if a frame is freed at once.
    SwapInExtra,
}

/// How a frame for a page coming back from the compressed pool is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnpackCharge {
    /// Only if the budget has room at once: a `NoWait` read (no reclaim, so no I/O).
    Now,
    /// After one reclaim sweep at most: a reader, who can copy the bytes straight from the
    /// entry if there is no frame, so it never waits for memory.
    Reclaim,
    /// As a swap-in (`FrameFor::SwapIn`): a writer, who needs the frame.
    Wait,
}

/// Least pool bytes one write-back writes to swap: 16 slots' worth, so that its records are
/// packed into full slots (one small entry alone would take a slot that is mostly padding).
const WRITE_BACK_MIN: u64 = 16 * PAGE as u64;

/// Pages examined per eviction attempt before giving up on a sweep.
const SWEEP_FACTOR: usize = 4;
/// Most pages written out by one sweep, or read back by one swap-in (one vectored I/O of up to
/// 1 MiB when their slots are consecutive).
const MAX_BATCH: usize = 256;

/// A page chosen for eviction, between its snapshot and its publication.
struct Candidate {
    entry: ClockEntry,
    owner: Arc<dyn PageOwner>,
    frame: Arc<Frame>,
    snap: EvictSnapshot,
}

/// Where a candidate goes, as the sweep decides it.
enum Plan {
    /// Decided: publish this.
    To(EvictTarget),
    /// Compressed, waiting for room in the pool (its copy is kept in case there is none).
    Packed(Box<[u8]>),
    /// To swap, with the copy in the candidate's snapshot.
    Swap,
    /// Compressed, with no room in the pool even after a write-back: to swap as a compressed
    /// record.
    Record(Box<[u8]>),
}

impl MemoryManager {
    /// A frame charged to the RAM budget, holding a copy of `init`, or zeros. When the budget
    /// is full this reclaims frames itself (direct reclaim) and then waits for others to release
    /// frames.
    ///
    /// # Preconditions
    /// No `PageMap`, `Frame` or higher lock held (checked in debug builds): the evictor needs
    /// them, and waiting for memory while holding them is the classic deadlock.
    ///
    /// # Errors
    /// `NoSpace` when memory and swap are both full (see `charge_frame`) or the host has no
    /// memory left; `Io` when nothing can be reclaimed because the swap device is failing.
    ///
    /// `replaces_swapped`: the frame takes the place of a swapped page (a whole-page overwrite),
    /// whose slot it frees: it may overdraw the budget as a swap-in does (see `charge_frame`).
    pub(crate) fn new_frame(&self, init: Option<&[u8; PAGE]>, replaces_swapped: bool) -> Result<Arc<Frame>> {
        let purpose = if replaces_swapped {
            FrameFor::SwapIn
        } else {
            FrameFor::NewPage
        };
        let charge = self.charge_frame(purpose)?;
        let page = match init {
            // The whole page is overwritten before the frame is visible: no need to zero it.
            Some(src) => PageBuf::for_overwrite().map(|mut p| {
                p.copy_from_slice(src);
                p
            }),
            None => PageBuf::zeroed(),
        };
        Ok(Frame::new(charge, page.map_err(|OutOfMemory| FsError::NoSpace)?))
    }

    /// A buffer for a page read back from swap, charged to the RAM budget like a frame (the
    /// charge goes with it into `Frame::new`) as `purpose` allows (see `FrameFor`). Same
    /// preconditions as `new_frame`.
    ///
    /// # Errors
    /// `Io` when no frame can be had: a swap-in failure is never `NoSpace` (a read would report
    /// it as "no space") nor a short read.
    pub(crate) fn new_swap_in_buffer(&self, purpose: FrameFor) -> Result<(FrameCharge, AlignedPage)> {
        let charge = self.charge_frame(purpose).map_err(|_| FsError::Io)?;
        let page = AlignedPage::for_overwrite().map_err(|OutOfMemory| FsError::Io)?;
        Ok((charge, page))
    }

    /// A frame holding compressed page `packed`, decompressed with no lock held, counted as a
    /// pool hit, charged as `how` allows. `None`: no frame could be had. Same preconditions as
    /// `new_frame`.
    ///
    /// # Errors
    /// `Io` if the entry does not decompress.
    pub(crate) fn unpack_frame(&self, packed: &Packed, how: UnpackCharge) -> Result<Option<Arc<Frame>>> {
        let charge = match how {
            UnpackCharge::Now => self.try_charge_frame_now(),
            UnpackCharge::Reclaim => self.try_charge_frame_reclaiming(),
            UnpackCharge::Wait => self.charge_frame(FrameFor::SwapIn).ok(),
        };
        let Some(charge) = charge else { return Ok(None) };
        let Ok(mut page) = PageBuf::for_overwrite() else {
            return Ok(None);
        };
        packed.unpack_into(&mut page).map_err(|()| FsError::Io)?;
        self.note_pool_hit();
        Ok(Some(Frame::new(charge, page)))
    }

    /// A frame's charge, after one reclaim sweep if the budget is full; no wait, and no
    /// overdraft (a reader of a compressed page can do without a frame).
    fn try_charge_frame_reclaiming(&self) -> Option<FrameCharge> {
        crate::sync::assert_not_held_at_or_above(crate::sync::LockRank::PageMap);
        if let Some(c) = self.try_charge_frame_now() {
            return Some(c);
        }
        if self.sweep(8).evicted == 0 {
            return None;
        }
        self.try_charge_frame_now()
    }

    /// A frame's charge if the budget has room now: no reclaim, no wait.
    fn try_charge_frame_now(&self) -> Option<FrameCharge> {
        match &self.tier {
            None => Some(FrameCharge(None)),
            Some(tier) => tier.budget.try_charge().then(|| FrameCharge(Some(tier.budget.clone()))),
        }
    }

    /// Count a read served from the compressed pool.
    pub(crate) fn note_pool_hit(&self) {
        if let Some(pool) = self.tier.as_ref().and_then(|t| t.pool.as_ref()) {
            pool.stats.hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Charge one frame to the RAM budget, if there is one. See `new_frame`.
    ///
    /// Reclaim order when the budget is full: a CLOCK sweep (dirty pages are written to swap,
    /// clean ones leave without I/O); if that freed nothing because the swap is full or failing,
    /// the clean frames wherever they are in the ring (`sweep_clean`: a still-valid swap copy, so
    /// no I/O and no new slot); if there are none, a swap-in overdraws the budget by a few frames
    /// (`FrameBudget::try_overdraw`) so stored data stays readable, while a new page gives up
    /// (first, though, any frame takes back the budget's pages lent to the heap,
    /// `FrameBudget::try_charge_unlent`: lending never makes data unreachable):
    /// `NoSpace` when the swap is full, `Io` when its device is failing, after
    /// `EXHAUSTED_SWEEPS` such rounds. Otherwise (every candidate busy) it yields, then waits for
    /// other threads to release frames, and gives up after `FRAME_WAIT_ROUNDS` waits in which no
    /// frame was released anywhere.
    fn charge_frame(&self, purpose: FrameFor) -> Result<FrameCharge> {
        let Some(tier) = &self.tier else {
            return Ok(FrameCharge(None));
        };
        crate::sync::assert_not_held_at_or_above(crate::sync::LockRank::PageMap);
        let charged = || FrameCharge(Some(tier.budget.clone()));
        let mut idle_waits = 0;
        let mut exhausted = 0;
        let mut fruitless = 0;
        loop {
            if tier.budget.try_charge() {
                return Ok(charged());
            }
            tier.stats.direct_reclaims.fetch_add(1, Ordering::Relaxed);
            if !tier.can_evict() {
                return Err(FsError::NoSpace);
            }
            let seen = tier.budget.progress();
            let want = if purpose == FrameFor::SwapInExtra { 1 } else { 8 };
            let mut sweep = self.sweep(want);
            if let (true, Some(swap)) = (sweep.evicted == 0 && sweep.swap_exhausted(), &tier.swap) {
                sweep.evicted = self.sweep_clean(tier, swap, want);
            }
            if sweep.evicted > 0 {
                exhausted = 0;
                fruitless = 0;
                continue;
            }
            if purpose == FrameFor::SwapInExtra {
                return Err(FsError::NoSpace);
            }
            if sweep.swap_exhausted() {
                tier.budget.set_lending(false);
                if tier.budget.try_charge_unlent() {
                    return Ok(charged());
                }
                if purpose == FrameFor::SwapIn && tier.budget.try_overdraw() {
                    return Ok(charged());
                }
                exhausted += 1;
                if exhausted >= EXHAUSTED_SWEEPS && purpose == FrameFor::NewPage {
                    return Err(if sweep.io_error { FsError::Io } else { FsError::NoSpace });
                }
            }
            fruitless += 1;
            if fruitless <= YIELD_RETRIES {
                crate::sync::thread::yield_now();
                continue;
            }
            fruitless = 0;
            tier.budget.kick();
            if !tier.budget.wait_for_progress(seen, FRAME_WAIT_STEP) {
                idle_waits += 1;
                if idle_waits > FRAME_WAIT_ROUNDS {
                    return Err(FsError::NoSpace);
                }
            }
        }
    }

    /// Most swapped pages brought back by one read: up to `MAX_BATCH` (1 MiB), and no more than
    /// a quarter of the RAM budget, so that read-ahead never crowds out the working set.
    pub(crate) fn swap_in_run_limit(&self) -> usize {
        self.tier.as_ref().map_or(1, |t| {
            usize::try_from((t.budget.max() / 4).clamp(1, MAX_BATCH as u64)).unwrap_or(1)
        })
    }

    /// Evict up to `want` pages now. Returns how many frames left RAM.
    pub(crate) fn evict_now(&self, want: usize) -> usize {
        self.sweep(want).evicted
    }

    /// Sweep the CLOCK ring for up to `want` victims, giving referenced frames a second chance
    /// and skipping (requeueing) anything busy.
    fn sweep(&self, want: usize) -> Sweep {
        match &self.tier {
            Some(tier) if tier.can_evict() => self.sweep_ring(tier, want),
            _ => Sweep::default(),
        }
    }

    fn sweep_ring(&self, tier: &MemTier, want: usize) -> Sweep {
        let want = want.min(MAX_BATCH);
        let swap = tier.swap.as_ref();
        if let (Some(pool), Some(swap)) = (&tier.pool, swap) {
            // A cut of the budget left the pool above its cap: its coldest entries go first.
            let excess = pool.excess(&tier.budget);
            if excess > 0 {
                self.write_back(tier, pool, swap, excess);
            }
        }
        let pool_room = tier
            .pool
            .as_ref()
            .map(|p| p.cap(&tier.budget).saturating_sub(tier.budget.pool_bytes()));
        if swap.is_none_or(Swap::is_full) && pool_room.is_none_or(|room| room < entry_cost(0)) {
            // No slot for a dirty page and no room in the pool: only clean frames could leave,
            // and `sweep_clean` finds those without copying (or compressing) dirty candidates
            // for nothing.
            return Sweep {
                full: true,
                ..Sweep::default()
            };
        }
        let mut batch = Self::pick(tier, want);
        // Write every dirty page of the batch together, in file order: consecutive slots, few I/Os.
        batch.sort_by_key(|c| (c.snap.id.ino, c.snap.id.idx));
        let mut plans = self.plan(tier, &mut batch);
        let mut dirty: Vec<(AlignedPage, PageId, Option<u64>)> = batch
            .iter_mut()
            .zip(&plans)
            .filter(|(_, plan)| matches!(plan, Plan::Swap))
            .filter_map(|(c, _)| c.snap.copy.take().map(|copy| (copy, c.snap.id, c.snap.slot_hint)))
            .collect();
        let mut stored = match swap {
            Some(swap) if !dirty.is_empty() => swap.store_batch(&mut dirty).into_iter(),
            _ => Vec::new().into_iter(),
        };
        let mut records = {
            let packed: Vec<(&[u8], PageId)> = batch
                .iter()
                .zip(&plans)
                .filter_map(|(c, plan)| match plan {
                    Plan::Record(data) => Some((&data[..], c.snap.id)),
                    _ => None,
                })
                .collect();
            match swap {
                Some(swap) if !packed.is_empty() => swap.store_records(&packed).into_iter(),
                _ => Vec::new().into_iter(),
            }
        };
        // After this batch's own writes: they are the freshest news of the device.
        let failing = swap.is_some_and(Swap::failing);
        let (mut done, mut full, mut io_error) = (0, false, false);
        for (c, plan) in batch.into_iter().zip(plans.drain(..)) {
            let target = match plan {
                // The swap copy may be unreadable: keep the page in RAM (see `sweep_clean`).
                Plan::To(EvictTarget::Kept(_)) if failing => {
                    io_error = true;
                    tier.clock.requeue(c.entry);
                    continue;
                }
                Plan::To(t) => t,
                Plan::Packed(_) => unreachable!("`plan` settles every packed page"),
                Plan::Swap | Plan::Record(_) => match if matches!(plan, Plan::Swap) {
                    stored.next().map(|r| r.map(EvictTarget::Written))
                } else {
                    records.next().map(|r| r.map(EvictTarget::Record))
                } {
                    Some(Ok(target)) => target,
                    Some(Err(StoreError::Full)) | None => {
                        full = true;
                        tier.clock.requeue(c.entry);
                        continue;
                    }
                    Some(Err(StoreError::Io)) => {
                        io_error = true;
                        tier.clock.requeue(c.entry);
                        continue;
                    }
                },
            };
            if self.publish(tier, c, target) {
                done += 1;
            }
        }
        Sweep {
            evicted: done,
            full,
            io_error,
        }
    }

    /// Take up to `want` eviction candidates from the CLOCK ring, snapshotted.
    fn pick(tier: &MemTier, want: usize) -> Vec<Candidate> {
        let examine_limit = (tier.clock.len() + want)
            .min(want * SWEEP_FACTOR * 64)
            .max(want * SWEEP_FACTOR);
        let mut batch: Vec<Candidate> = Vec::with_capacity(want);
        let mut examined = 0;
        while batch.len() < want && examined < examine_limit {
            let Some(entry) = tier.clock.pop() else { break };
            examined += 1;
            let (Some(owner), Some(frame)) = (entry.owner.upgrade(), entry.frame.upgrade()) else {
                continue;
            };
            if frame.take_referenced() {
                tier.clock.requeue(entry);
                continue;
            }
            match owner.evict_snapshot(entry.idx, &frame) {
                Ok(snap) => batch.push(Candidate {
                    entry,
                    owner,
                    frame,
                    snap,
                }),
                Err(EvictOutcome::Busy) => tier.clock.requeue(entry),
                Err(_) => {}
            }
        }
        batch
    }

    /// Decide where each candidate goes: its swap copy (clean), nothing (zeros), the pool
    /// (compressed, if it fits: else the pool's coldest entries go to swap to make room), or
    /// swap. Compression runs here, with no lock held.
    fn plan(&self, tier: &MemTier, batch: &mut [Candidate]) -> Vec<Plan> {
        let mut plans: Vec<Plan> = batch
            .iter()
            .map(|c| match (c.snap.swap_copy, &tier.pool, &c.snap.copy) {
                (Some(kept), _, _) => Plan::To(EvictTarget::Kept(kept)),
                (None, Some(pool), Some(copy)) if !c.frame.incompressible() => match pool.pack(copy) {
                    Packing::Zero => Plan::To(EvictTarget::Zero),
                    Packing::Packed(data) => Plan::Packed(data),
                    Packing::Incompressible => {
                        c.frame.mark_incompressible();
                        Plan::Swap
                    }
                },
                _ => Plan::Swap,
            })
            .collect();
        let Some(pool) = &tier.pool else { return plans };
        let need: u64 = plans
            .iter()
            .map(|p| match p {
                Plan::Packed(data) => entry_cost(data.len()),
                _ => 0,
            })
            .sum();
        let room = pool.cap(&tier.budget).saturating_sub(tier.budget.pool_bytes());
        if let (true, Some(swap)) = (need > room, &tier.swap) {
            self.write_back(tier, pool, swap, need - room);
        }
        for (c, plan) in batch.iter().zip(plans.iter_mut()) {
            if let Plan::Packed(data) = plan {
                let data = std::mem::take(data);
                *plan = match pool.admit(&tier.budget, data, &c.entry.owner, c.snap.id) {
                    Ok(packed) => Plan::To(EvictTarget::Pool(packed)),
                    // The pool is full and its write-back made too little room (this batch is
                    // larger than the pool, or the swap is full or failing): to swap, still
                    // compressed, as a record.
                    Err(data) => Plan::Record(data),
                };
            }
        }
        plans
    }

    /// Publish candidate `c`'s eviction to `target`; returns whether its frame left RAM.
    fn publish(&self, tier: &MemTier, c: Candidate, target: EvictTarget) -> bool {
        let page = EvictPage {
            idx: c.entry.idx,
            frame: &c.frame,
            version: c.snap.version,
        };
        let counter = match (&target, &tier.pool) {
            (EvictTarget::Pool(_), Some(pool)) => &pool.stats.stores,
            (EvictTarget::Zero, Some(pool)) => &pool.stats.zero_pages,
            (EvictTarget::Kept(_), _) => &tier.stats.clean_evictions,
            _ => &tier.stats.evictions,
        };
        match c.owner.evict_publish(self, page, target) {
            EvictOutcome::Evicted | EvictOutcome::Clean => {
                counter.fetch_add(1, Ordering::Relaxed);
                true
            }
            EvictOutcome::Busy => {
                tier.clock.requeue(c.entry);
                false
            }
            EvictOutcome::Gone => false,
        }
    }

    /// The pool is full (or above its cap): write its coldest entries, at least `bytes` of
    /// them (and at least `WRITE_BACK_MIN`, so that their records fill slots), to swap as
    /// compressed records (`Swap::store_records`: each sealed on its own, several to a slot),
    /// and publish each `SwappedRecord` in place of its `Compressed` slot by compare-and-set.
    /// Sealing and the write run with no engine lock held. A fault on one of them meanwhile
    /// decompresses from the entry it still holds and never waits for this write; it then wins
    /// the compare-and-set and the record written is freed. Entries that could not be written
    /// stay in the pool, coldest still.
    fn write_back(&self, tier: &MemTier, pool: &Pool, swap: &Swap, bytes: u64) {
        if swap.is_full() {
            return;
        }
        let bytes = bytes.max(WRITE_BACK_MIN);
        let mut victims: Vec<(PoolEntry, Arc<dyn PageOwner>, Arc<Packed>)> = Vec::new();
        let mut freed = 0;
        while freed < bytes && victims.len() < MAX_BATCH {
            let Some(e) = pool.pop_coldest() else { break };
            let (Some(owner), Some(packed)) = (e.owner.upgrade(), e.packed.upgrade()) else {
                continue;
            };
            freed += packed.cost();
            victims.push((e, owner, packed));
        }
        victims.sort_by_key(|(e, _, _)| (e.id.ino, e.id.idx));
        let stored = {
            let records: Vec<(&[u8], PageId)> = victims.iter().map(|(e, _, p)| (p.data(), e.id)).collect();
            swap.store_records(&records)
        };
        let mut keep = Vec::new();
        for ((e, owner, packed), result) in victims.into_iter().zip(stored) {
            match result {
                Ok(entry) => {
                    if owner.pool_written_back(self, e.id.idx, packed.id(), entry) {
                        pool.stats.writebacks.fetch_add(1, Ordering::Relaxed);
                        tier.stats.evictions.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // Faulted back, rewritten or removed meanwhile.
                        swap.free_record(entry);
                    }
                }
                Err(_) => keep.push(e),
            }
        }
        pool.requeue_coldest(keep);
    }

    /// Reclaim when the swap cannot take more pages: up to `want` clean frames — swapped in,
    /// their swap copy still valid — leave RAM without I/O, taken from the clock's clean list
    /// (gone through twice, so that a referenced frame gets its second chance; a frame written
    /// since is dirty and dropped from the list). Does nothing while the swap device is failing:
    /// a clean frame's other copy is on that device, and a page in RAM should stay readable.
    /// Returns frames freed.
    fn sweep_clean(&self, tier: &MemTier, swap: &Swap, want: usize) -> usize {
        if swap.failing() {
            return 0;
        }
        let mut done = 0;
        let mut left = 2 * tier.clock.clean_len();
        while done < want && left > 0 {
            left -= 1;
            let Some(entry) = tier.clock.pop_clean() else { break };
            let (Some(owner), Some(frame)) = (entry.owner.upgrade(), entry.frame.upgrade()) else {
                continue;
            };
            let Some(kept) = frame.swap_copy() else { continue };
            if frame.take_referenced() {
                tier.clock.requeue_clean(entry);
                continue;
            }
            let page = EvictPage {
                idx: entry.idx,
                frame: &frame,
                version: frame.version(),
            };
            match owner.evict_publish(self, page, EvictTarget::Kept(kept)) {
                EvictOutcome::Clean => {
                    tier.stats.clean_evictions.fetch_add(1, Ordering::Relaxed);
                    done += 1;
                }
                EvictOutcome::Busy => tier.clock.requeue_clean(entry),
                _ => {}
            }
        }
        done
    }

    /// The swap read-ahead thread: swaps in the windows sequential readers post, until the
    /// queue is stopped.
    pub(super) fn run_readahead(&self) {
        let Some(queue) = &self.readahead else { return };
        while let Some(job) = queue.pop() {
            if let Some(owner) = job.owner.upgrade() {
                owner.read_ahead(self, job.window);
            }
        }
    }

    /// The background evictor: keeps `target_free` frames free so writers rarely wait.
    pub(super) fn run_evictor(&self) {
        let Some(tier) = &self.tier else { return };
        while !self.stop.load(Ordering::Acquire) {
            // Awake anyway (at least every 200 ms): give long-free pool pages back to the kernel,
            // and forget the compressed pool's dead entries.
            rtmpfs_pages::trim_idle();
            if let Some(pool) = &tier.pool {
                pool.prune();
            }
            if let Some(swap) = &tier.swap {
                // The heap's share is taken from the frames only while they can go to swap.
                tier.budget.set_lending(!(swap.is_full() || swap.failing()));
            }
            let deficit = tier.budget.deficit();
            if deficit == 0 || !tier.can_evict() {
                tier.budget.wait_for_kick(Duration::from_millis(200));
                continue;
            }
            let want = usize::try_from(deficit.min(MAX_BATCH as u64)).unwrap_or(MAX_BATCH);
            let mut sweep = self.sweep(want);
            if let (true, Some(swap)) = (sweep.swap_exhausted(), &tier.swap) {
                // Pay back a swap-in overdraft, keep headroom: clean frames leave without I/O.
                sweep.evicted = self.sweep_clean(tier, swap, want);
            }
            if sweep.evicted == 0 {
                // Nothing evictable now (all busy or swap full): back off.
                tier.budget.wait_for_kick(Duration::from_millis(20));
            }
        }
    }
}
