//! Regular-file data: a sparse page map behind two locks.
//!
//! * `io` (rank `FileIo`, the role of Linux's `i_rwsem`) serialises everything that changes the
//!   size or allocates: write, truncate, punch, fallocate. Reads never take it, nor do swap-in
//!   and the evictor: that is the rule that makes the 2001 deadlock impossible here — a reader
//!   (a page fault served over FUSE) never waits for a writer's `io` lock.
//! * `pages` (rank `PageMap`) is held only to look up or change slots and to copy bytes in or
//!   out of resident frames — never across allocation, swap I/O, or a wait for memory. A thread
//!   that let go of it to do slow work re-checks the slot before publishing (compare-and-set
//!   against the state it saw) and retries on a mismatch.
//!
//! `size` is written only under `io` (exclusive) and read lock-free. Invariant: bytes of a page
//! beyond `size` are zero (truncate zeroes the tail of the last page), so extending a file never
//! exposes stale bytes.

#[cfg(all(test, debug_assertions, not(feature = "shuttle")))]
mod io_guard_tests;
pub(crate) mod page_map;

use crate::error::{FsError, Result};
use crate::inode::Inode;
use crate::mm::{
    EvictOutcome, EvictPage, EvictSnapshot, FileReadAhead, Frame, FrameFor, MemoryManager, PageOwner, PageState,
    SlotCounts, SwapTarget, Window, PAGE,
};
use crate::swap::{AlignedPage, PageId, SwapEntry};
use crate::sync::{Arc, AtomicU64, LockRank, Ordering, RwLock, Weak, WriteGuard};
use crate::types::{ReadMode, ReadOutcome, SeekWhence, MAX_FILE_SIZE, PAGE_SIZE};
use page_map::{PageMap, Slot, SlotState};

/// Pages copied per hold of the page-map read lock on the read path, to bound how long a large
/// read keeps slot transitions (eviction, swap-in) waiting.
const READ_BATCH_PAGES: u64 = 64;

/// Read-ahead reads across gaps of up to this many slots (ignoring them) rather than splitting
/// a read: a few extra 4 KiB in one I/O cost less than another I/O.
const READ_AHEAD_MAX_GAP: u64 = 16;

/// Proof that the caller holds *this* file's I/O lock exclusively: made only by
/// [`FileData::lock_io`], and carrying the file it locks, which every method that needs it checks
/// by pointer identity (debug builds), so another file's guard is never accepted.
pub(crate) struct IoGuard<'a> {
    file: &'a FileData,
    _held: WriteGuard<'a, ()>,
}

/// How `make_resident` left the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resident {
    /// It was resident already (possibly made so by another thread meanwhile).
    Already,
    /// It was made resident with its old contents (zeros, or read back from swap).
    Made,
    /// It was made resident holding the caller's `fill`.
    Filled,
}

/// Whether page `idx` of `map` is resident in exactly `frame`.
fn is_frame_at(map: &PageMap, idx: u64, frame: &Arc<Frame>) -> bool {
    matches!(map.get(idx), Some(Slot::Resident(f)) if Arc::ptr_eq(f, frame))
}

/// The data of one regular file.
pub(crate) struct FileData {
    /// Immutable: the inode number (bound into swap seals).
    ino: u64,
    /// Immutable: the owning inode, for the evictor's CLOCK entries and read-ahead jobs.
    owner: Weak<dyn PageOwner>,
    /// Rank `FileIo`. See the module docs.
    io: RwLock<()>,
    /// Written under `io`; read lock-free.
    size: AtomicU64,
    /// Rank `PageMap`.
    pages: RwLock<PageMap>,
    /// Non-hole slots of this file (for `st_blocks`). Changed under `pages`.
    charged: AtomicU64,
    /// Where the last read ended: a read starting there is sequential, and may bring swapped
    /// pages back ahead of the reader (swap read-ahead). A hint only; races are harmless.
    read_cursor: AtomicU64,
    /// Asynchronous swap read-ahead windows posted for this file.
    ra: FileReadAhead,
}

impl FileData {
    pub(crate) fn new(ino: u64, owner: Weak<Inode>) -> Self {
        let owner: Weak<dyn PageOwner> = owner;
        FileData {
            ino,
            owner,
            io: RwLock::new(LockRank::FileIo, ()),
            size: AtomicU64::new(0),
            pages: RwLock::new(LockRank::PageMap, PageMap::default()),
            charged: AtomicU64::new(0),
            read_cursor: AtomicU64::new(u64::MAX),
            ra: FileReadAhead::new(),
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn charged_pages(&self) -> u64 {
        self.charged.load(Ordering::Relaxed)
    }

    /// Take the I/O lock exclusively (write, truncate, punch, fallocate).
    pub(crate) fn lock_io(&self) -> IoGuard<'_> {
        IoGuard {
            file: self,
            _held: self.io.write(),
        }
    }

    /// Check (debug builds) that `io` is this file's I/O guard.
    fn check_io(&self, io: &IoGuard<'_>) {
        debug_assert!(std::ptr::eq(io.file, self), "the I/O guard of another file");
    }

    fn page_id(&self, idx: u64) -> PageId {
        PageId { ino: self.ino, idx }
    }

    /// Read into `buf` from `offset`; returns bytes read, which is fewer than asked only at EOF
    /// (callers, and FUSE's kernel above them, take a short read for the end of the file). Takes
    /// no I/O lock. With `ReadMode::Wait` it swaps pages in as needed, with no lock held during
    /// the I/O; with `ReadMode::NoWait` it returns `WouldBlock` at the first page that needs swap
    /// I/O (or a read-ahead window in flight), having done no I/O and changed no page: the
    /// caller retries with `Wait` where waiting is fine (Linux's `IOCB_NOWAIT`). A sequential
    /// reader's read-ahead windows are posted either way, so the retry finds them under way.
    ///
    /// # Errors
    /// `Io` when any page of the range cannot be read: poisoned, its swap read failed, or no
    /// frame could be had to bring it back (see `MemoryManager::charge_frame`). The whole read fails,
    /// even if pages before it were copied: returning those as a short count would read as EOF
    /// and hide the rest of the file.
    pub(crate) fn read(&self, mm: &MemoryManager, offset: u64, buf: &mut [u8], mode: ReadMode) -> Result<ReadOutcome> {
        let size = self.size();
        if offset >= size || buf.is_empty() {
            return Ok(ReadOutcome::Done(0));
        }
        let end = size.min(offset.saturating_add(buf.len() as u64));
        // A `NoWait` attempt that would block leaves the cursor where it was, so that its `Wait`
        // retry is still seen as sequential.
        let sequential = match mode {
            ReadMode::Wait => self.read_cursor.swap(end, Ordering::Relaxed) == offset,
            ReadMode::NoWait => self.read_cursor.load(Ordering::Relaxed) == offset,
        };
        // A sequential reader posts the next window to the read-ahead thread before it starts on
        // its own pages, so the swap reads overlap its work. Without that thread, its own swap-ins
        // read ahead (synchronously) up to EOF; other reads swap in only what they read.
        let last_page = (size - 1) / PAGE_SIZE;
        let async_ahead = match (mm.readahead_queue(), sequential) {
            (Some(queue), true) => {
                let window = mm.swap_in_run_limit() as u64;
                self.ra
                    .advance(queue, &self.owner, (end - 1) / PAGE_SIZE, last_page, window);
                true
            }
            _ => false,
        };
        let swap_in_last = if sequential && !async_ahead {
            last_page
        } else {
            (end - 1) / PAGE_SIZE
        };
        let mut pos = offset;
        while pos < end {
            let mut swap_in = None;
            {
                let map = self.pages.read();
                let batch_end = end.min((pos / PAGE_SIZE + READ_BATCH_PAGES) * PAGE_SIZE);
                while pos < batch_end {
                    let idx = pos / PAGE_SIZE;
                    let in_page = (pos % PAGE_SIZE) as usize;
                    let n = (PAGE - in_page).min((batch_end - pos) as usize);
                    let out = &mut buf[(pos - offset) as usize..(pos - offset) as usize + n];
                    match map.get(idx) {
                        None | Some(Slot::Reserved) => out.fill(0),
                        Some(Slot::Resident(frame)) => {
                            out.copy_from_slice(&frame.bytes()[in_page..in_page + n]);
                            frame.touch();
                        }
                        Some(Slot::Swapped(_)) if mode == ReadMode::NoWait => return Ok(ReadOutcome::WouldBlock),
                        Some(Slot::Swapped(e)) => {
                            swap_in = Some(self.swapped_run(&map, mm, idx, *e, swap_in_last));
                            break;
                        }
                        Some(Slot::Poisoned) => return Err(FsError::Io),
                    }
                    pos += n as u64;
                }
            }
            if let Some(run) = swap_in {
                // Read-ahead is fetching this page: wait for it rather than read it twice.
                if mm.readahead_queue().is_some() && self.ra.wait_for(pos / PAGE_SIZE) {
                    continue;
                }
                self.swap_in(mm, &run, FrameFor::SwapIn)?;
            }
        }
        if mode == ReadMode::NoWait {
            self.read_cursor.store(end, Ordering::Relaxed);
        }
        Ok(ReadOutcome::Done((end - offset) as usize))
    }

    /// [`FileData::read`] with `ReadMode::Wait`, which always completes (it never answers
    /// `WouldBlock`; were it to, that would be reported as `Io`, not as a short read).
    pub(crate) fn read_waiting(&self, mm: &MemoryManager, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match self.read(mm, offset, buf, ReadMode::Wait)? {
            ReadOutcome::Done(n) => Ok(n),
            ReadOutcome::WouldBlock => Err(FsError::Io),
        }
    }

    /// Write `data` at `offset`, allocating pages as needed; extends the size. Returns bytes
    /// written, which is short only if space ran out (or a page was lost) after some bytes landed.
    ///
    /// # Errors
    /// `FileTooBig` at or past the maximum size; `NoSpace` if not even the first page could be
    /// charged; `Io` on a poisoned first page.
    pub(crate) fn write(&self, io: &IoGuard<'_>, mm: &MemoryManager, offset: u64, data: &[u8]) -> Result<usize> {
        self.check_io(io);
        if data.is_empty() {
            return Ok(0);
        }
        if offset >= MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let len = (data.len() as u64).min(MAX_FILE_SIZE - offset);
        let mut done: u64 = 0;
        while done < len {
            let pos = offset + done;
            let idx = pos / PAGE_SIZE;
            let in_page = (pos % PAGE_SIZE) as usize;
            let n = (PAGE - in_page).min((len - done) as usize);
            let src = &data[done as usize..done as usize + n];
            let written = match <&[u8; PAGE]>::try_from(src) {
                Ok(whole) => self.overwrite_page(mm, idx, whole),
                Err(_) => self.modify_page(mm, idx, |page| page[in_page..in_page + n].copy_from_slice(src)),
            };
            match written {
                Ok(()) => done += n as u64,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        let end = offset + done;
        if end > self.size() {
            self.size.store(end, Ordering::Release);
        }
        Ok(done as usize)
    }

    /// Apply `change` to the bytes of page `idx`, making it resident first (allocating a hole or
    /// reserved page, or swapping it in). The change is made under the page-map read lock and
    /// the frame's write lock, and bumps the frame's version; a swap copy it had is dropped.
    fn modify_page(&self, mm: &MemoryManager, idx: u64, mut change: impl FnMut(&mut [u8; PAGE])) -> Result<()> {
        loop {
            if self.change_resident(mm, idx, &mut change) {
                return Ok(());
            }
            self.make_resident(mm, idx, None)?;
        }
    }

    /// Replace all of page `idx` with `data`. Unlike `modify_page`, a page that is not resident
    /// is not read back from swap nor zeroed first: a new frame is filled with `data` and
    /// published in its place.
    fn overwrite_page(&self, mm: &MemoryManager, idx: u64, data: &[u8; PAGE]) -> Result<()> {
        loop {
            if self.change_resident(mm, idx, |page| page.copy_from_slice(data)) {
                return Ok(());
            }
            if self.make_resident(mm, idx, Some(data))? == Resident::Filled {
                return Ok(());
            }
        }
    }

    /// If page `idx` is resident, apply `change` to it (see `modify_page`) and return true.
    fn change_resident(&self, mm: &MemoryManager, idx: u64, change: impl FnOnce(&mut [u8; PAGE])) -> bool {
        let map = self.pages.read();
        let Some(Slot::Resident(frame)) = map.get(idx) else {
            return false;
        };
        mm.drop_swap_copy(frame.change(change));
        true
    }

    /// Make page `idx` resident: allocate (and charge) a hole, materialise a reserved page,
    /// swap a swapped one in. Holds no lock while allocating or doing I/O.
    ///
    /// With `fill`, a page that is not resident gets a new frame holding `fill` instead (a
    /// swapped page is not read back: its swap copy is dropped), and the result says so.
    fn make_resident(&self, mm: &MemoryManager, idx: u64, fill: Option<&[u8; PAGE]>) -> Result<Resident> {
        loop {
            let seen = {
                let map = self.pages.read();
                match map.get(idx) {
                    Some(Slot::Resident(_)) => return Ok(Resident::Already),
                    Some(Slot::Poisoned) => return Err(FsError::Io),
                    other => other.map_or(SlotState::Hole, Slot::state),
                }
            };
            if let (SlotState::Swapped(e), None) = (seen, fill) {
                self.swap_in(mm, &[(idx, e)], FrameFor::SwapIn)?;
                continue;
            }
            if seen == SlotState::Hole {
                mm.charge_pages(1)?;
            }
            let frame = match mm.new_frame(fill, matches!(seen, SlotState::Swapped(_))) {
                Ok(f) => f,
                Err(e) => {
                    if seen == SlotState::Hole {
                        mm.uncharge_pages(1);
                    }
                    return Err(e);
                }
            };
            let mut map = self.pages.write();
            if map.state(idx) != seen {
                drop(map);
                if seen == SlotState::Hole {
                    mm.uncharge_pages(1);
                }
                continue;
            }
            let new = Slot::Resident(frame.clone());
            match map.insert(idx, new) {
                Some(old) => mm.count_moved(old.counted(), PageState::Resident),
                None => {
                    mm.count_added(PageState::Resident);
                    self.charged.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(map);
            if let SlotState::Swapped(e) = seen {
                // Overwritten without being read back: the swap copy is garbage now.
                mm.free_swap_slot(e);
            }
            mm.track(&self.owner, idx, &frame, false);
            return Ok(if fill.is_some() {
                Resident::Filled
            } else {
                Resident::Made
            });
        }
    }

    /// The read-ahead thread's job: swap in the swapped pages of `[first, last]` (grouped by
    /// slot, one read per group), then mark window `seq` done. Failures are left for a
    /// reader to meet (a page that fails to load is poisoned, as it would be for the reader).
    pub(crate) fn read_ahead(&self, mm: &MemoryManager, window: Window) {
        let Window { first, last, seq } = window;
        // The window's swapped pages in slot order. Eviction does not always give consecutive
        // pages consecutive slots (concurrent sweeps interleave), so grouping by slot, with small
        // gaps read and ignored, turns a window into a few large reads instead of many small.
        let mut swapped: Vec<(u64, SwapEntry)> = {
            let map = self.pages.read();
            map.range(first, last)
                .filter_map(|(i, s)| match s {
                    Slot::Swapped(e) => Some((i, *e)),
                    _ => None,
                })
                .collect()
        };
        swapped.sort_unstable_by_key(|&(_, e)| e.slot);
        let limit = mm.swap_in_run_limit();
        let mut start = 0;
        while start < swapped.len() {
            let mut end = start + 1;
            while end < swapped.len()
                && end - start < limit
                && swapped[end].1.slot - swapped[end - 1].1.slot <= READ_AHEAD_MAX_GAP
                && swapped[end].1.slot - swapped[start].1.slot < 2 * limit as u64
            {
                end += 1;
            }
            // Speculative: waits for memory like new data, never overdraws the reserve.
            match self.swap_in(mm, &swapped[start..end], FrameFor::NewPage) {
                Ok(n) => mm.note_readahead_swap_ins(n as u64),
                Err(_) => break,
            }
            start = end;
        }
        self.ra.finished(seq);
    }

    /// Read-ahead window `seq` will not be run (the threads stopped): release its waiters.
    pub(crate) fn read_ahead_abandoned(&self, seq: u64) {
        self.ra.finished(seq);
    }

    /// The run of swapped pages starting at `idx` (seen as `first`) whose swap slots are
    /// consecutive, up to page `last` and the memory manager's read-ahead limit: read back with one I/O.
    fn swapped_run(
        &self,
        map: &PageMap,
        mm: &MemoryManager,
        idx: u64,
        first: SwapEntry,
        last: u64,
    ) -> Vec<(u64, SwapEntry)> {
        let mut run = vec![(idx, first)];
        let limit = mm.swap_in_run_limit();
        let mut next = idx + 1;
        while next <= last && run.len() < limit {
            match map.get(next) {
                Some(Slot::Swapped(e)) if e.slot == first.slot + run.len() as u64 => run.push((next, *e)),
                _ => break,
            }
            next += 1;
        }
        run
    }

    /// Bring the swapped pages `run` (page index, entry seen) back into RAM with one read, or
    /// poison those whose copy cannot be read or does not authenticate. `run` is in ascending
    /// slot order; slots between its pages (gaps, at most a few: see `read_ahead`) are read into
    /// scratch pages and ignored. Each page is published only if its slot still holds the entry
    /// seen; otherwise someone else changed it and the caller looks again. Holds no lock during
    /// allocation or I/O.
    ///
    /// `first`: how the frame for `run[0]` is charged (`SwapIn` for a page someone needs, which
    /// may overdraw the budget; `NewPage` for read-ahead); the rest of the run only if reclaim
    /// frees frames at once.
    ///
    /// Returns how many pages it published.
    ///
    /// # Errors
    /// `Io` if `run[0]` was poisoned, or no frame could be had for it (the page stays swapped).
    fn swap_in(&self, mm: &MemoryManager, run: &[(u64, SwapEntry)], first: FrameFor) -> Result<usize> {
        debug_assert!(run.windows(2).all(|w| w[0].1.slot < w[1].1.slot));
        let swap = mm.swap()?;
        // Charge and allocate first (this may reclaim or wait: no lock is held); the pages are
        // read straight into the buffers that become the frames.
        let mut bufs = Vec::with_capacity(run.len());
        for _ in run {
            let purpose = if bufs.is_empty() { first } else { FrameFor::SwapInExtra };
            match mm.new_swap_in_buffer(purpose) {
                Ok(b) => bufs.push(b),
                Err(e) if bufs.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        let run = &run[..bufs.len()];
        let first_slot = run[0].1.slot;
        let span = usize::try_from(run[run.len() - 1].1.slot - first_slot + 1).unwrap_or(usize::MAX);
        // (On failure the charges in `bufs` go back as it is dropped.)
        let mut gaps: Vec<AlignedPage> = (run.len()..span)
            .map(|_| AlignedPage::for_overwrite())
            .collect::<Result<_, _>>()
            .map_err(|_| FsError::Io)?;
        let mut entries = Vec::with_capacity(span);
        let mut outs: Vec<&mut AlignedPage> = Vec::with_capacity(span);
        {
            let mut pages = run.iter().peekable();
            let mut frame_bufs = bufs.iter_mut().map(|(_, page)| page);
            let mut gap_bufs = gaps.iter_mut();
            for slot in first_slot..first_slot + span as u64 {
                let out = match pages.peek() {
                    Some(&&(idx, e)) if e.slot == slot => {
                        pages.next();
                        entries.push(Some((e, self.page_id(idx))));
                        frame_bufs.next()
                    }
                    _ => {
                        entries.push(None);
                        gap_bufs.next()
                    }
                };
                outs.push(out.expect("one buffer per slot of the span"));
            }
        }
        let loaded = swap.load_span(first_slot, &entries, &mut outs);
        drop(outs);
        drop(gaps);
        // A page that failed to load holds garbage: its frame is never published (it is
        // poisoned below) and goes straight back to the pool.
        let frames: Vec<Arc<Frame>> = bufs
            .into_iter()
            .map(|(charge, page)| Frame::new(charge, page.into_page()))
            .collect();
        let mut first_poisoned = false;
        let mut published = Vec::with_capacity(run.len());
        let mut freed = Vec::new();
        {
            let mut map = self.pages.write();
            for (i, (&(idx, entry), frame)) in run.iter().zip(&frames).enumerate() {
                if map.state(idx) != SlotState::Swapped(entry) {
                    continue;
                }
                let new = if loaded[(entry.slot - first_slot) as usize].is_ok() {
                    frame.set_swap_copy(entry);
                    published.push((idx, frame.clone()));
                    Slot::Resident(frame.clone())
                } else {
                    // The slot still holds what was read: the copy really is bad.
                    tracing::warn!(
                        ino = self.ino,
                        idx,
                        slot = entry.slot,
                        "swap page lost: read failed or did not authenticate"
                    );
                    first_poisoned |= i == 0;
                    freed.push(entry.slot);
                    mm.note_lost_page();
                    Slot::Poisoned
                };
                let new_state = new.counted();
                if let Some(old) = map.insert(idx, new) {
                    mm.count_moved(old.counted(), new_state);
                }
            }
        }
        for slot in freed {
            swap.free(slot);
        }
        mm.note_swap_ins(published.len() as u64);
        for (idx, frame) in &published {
            mm.track(&self.owner, *idx, frame, true);
        }
        if first_poisoned {
            Err(FsError::Io)
        } else {
            Ok(published.len())
        }
    }

    /// See [`PageOwner::evict_snapshot`].
    fn evict_snapshot(&self, idx: u64, frame: &Arc<Frame>) -> Result<EvictSnapshot, EvictOutcome> {
        let map = self.pages.try_read().ok_or(EvictOutcome::Busy)?;
        if !is_frame_at(&map, idx, frame) {
            return Err(EvictOutcome::Gone);
        }
        let bytes = frame.try_bytes().ok_or(EvictOutcome::Busy)?;
        let version = frame.version();
        let slot_hint = match idx.checked_sub(1).and_then(|prev| map.get(prev)) {
            Some(Slot::Swapped(e)) => Some(e.slot + 1),
            Some(Slot::Resident(f)) => f.swap_copy().map(|o| o.slot + 1),
            _ => None,
        };
        let id = self.page_id(idx);
        Ok(match frame.swap_copy() {
            Some(o) => EvictSnapshot {
                version,
                swap_copy: Some(o),
                copy: None,
                id,
                slot_hint,
            },
            None => {
                let mut copy = AlignedPage::for_overwrite().map_err(|_| EvictOutcome::Busy)?;
                copy.copy_from_slice(&bytes[..]);
                EvictSnapshot {
                    version,
                    swap_copy: None,
                    copy: Some(copy),
                    id,
                    slot_hint,
                }
            }
        })
    }

    /// See [`PageOwner::evict_publish`].
    fn evict_publish(&self, mm: &MemoryManager, page: EvictPage<'_>, target: SwapTarget) -> EvictOutcome {
        let EvictPage { idx, frame, version } = page;
        let give_up = |outcome| {
            if let SwapTarget::Written(e) = target {
                mm.free_swap_slot(e);
            }
            outcome
        };
        let Some(mut map) = self.pages.try_write() else {
            return give_up(EvictOutcome::Busy);
        };
        if !is_frame_at(&map, idx, frame) {
            return give_up(EvictOutcome::Gone);
        }
        if frame.version() != version {
            return give_up(EvictOutcome::Busy);
        }
        if let SwapTarget::Kept(e) = target {
            if frame.take_swap_copy() != Some(e) {
                return EvictOutcome::Busy;
            }
        }
        let entry = target.entry();
        mm.count_moved(PageState::Resident, PageState::Swapped);
        let old = map.insert(idx, Slot::Swapped(entry));
        drop(map);
        drop(old);
        match target {
            SwapTarget::Written(_) => EvictOutcome::Evicted,
            SwapTarget::Kept(_) => EvictOutcome::Clean,
        }
    }

    /// Set the size. Shrinking frees whole pages past the new end and zeroes the tail of the
    /// last partial page; growing allocates nothing.
    ///
    /// # Errors
    /// `FileTooBig` past the maximum size.
    pub(crate) fn truncate(&self, io: &IoGuard<'_>, mm: &MemoryManager, new_size: u64) -> Result<()> {
        self.check_io(io);
        if new_size > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let old = self.size();
        if new_size < old && new_size % PAGE_SIZE != 0 {
            // Zero the tail first: if that fails (no frame to swap the page in), nothing changed.
            self.zero_in_page(mm, new_size / PAGE_SIZE, (new_size % PAGE_SIZE) as usize, PAGE)?;
        }
        self.size.store(new_size, Ordering::Release);
        if new_size <= old {
            // Also when the size is unchanged: reserved pages past EOF go (shmem_setattr).
            self.remove_pages(mm, new_size.div_ceil(PAGE_SIZE), u64::MAX);
        }
        Ok(())
    }

    /// Free the byte range `[offset, offset + len)`: whole pages go, partial pages are zeroed.
    /// The size does not change (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`).
    ///
    /// # Errors
    /// `NoSpace`/`Io` if a partial page that is swapped out cannot be brought back to be zeroed;
    /// whole pages may have been freed by then (as a partly done punch on Linux).
    pub(crate) fn punch(&self, io: &IoGuard<'_>, mm: &MemoryManager, offset: u64, len: u64) -> Result<()> {
        self.check_io(io);
        let end = offset.saturating_add(len).min(MAX_FILE_SIZE);
        if end <= offset {
            return Ok(());
        }
        let first_full = offset.div_ceil(PAGE_SIZE);
        let end_full = end / PAGE_SIZE;
        if first_full < end_full {
            self.remove_pages(mm, first_full, end_full);
        }
        let head_page = offset / PAGE_SIZE;
        let tail_page = end / PAGE_SIZE;
        if head_page == tail_page {
            if offset % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
                self.zero_in_page(mm, head_page, (offset % PAGE_SIZE) as usize, (end % PAGE_SIZE) as usize)?;
            }
            return Ok(());
        }
        if offset % PAGE_SIZE != 0 {
            self.zero_in_page(mm, head_page, (offset % PAGE_SIZE) as usize, PAGE)?;
        }
        if end % PAGE_SIZE != 0 {
            self.zero_in_page(mm, tail_page, 0, (end % PAGE_SIZE) as usize)?;
        }
        Ok(())
    }

    /// Reserve (charge) every page of `[offset, offset + len)` that is a hole, all or nothing,
    /// and extend the size to the end of the range unless `keep_size`.
    ///
    /// # Errors
    /// `Invalid` for an empty range, `FileTooBig` past the maximum size, `NoSpace` when the
    /// holes in the range do not fit: then nothing changed.
    pub(crate) fn reserve(
        &self,
        io: &IoGuard<'_>,
        mm: &MemoryManager,
        offset: u64,
        len: u64,
        keep_size: bool,
    ) -> Result<()> {
        self.check_io(io);
        if len == 0 {
            return Err(FsError::Invalid);
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(FsError::FileTooBig)?;
        let first = offset / PAGE_SIZE;
        let last = (end - 1) / PAGE_SIZE;
        let total = last - first + 1;
        {
            let mut map = self.pages.write();
            let present = map.range(first, last).count() as u64;
            let holes = total - present;
            mm.charge_pages(holes)?;
            if holes > 0 {
                for idx in first..=last {
                    if map.get(idx).is_none() {
                        mm.count_added(PageState::Reserved);
                        map.insert(idx, Slot::Reserved);
                    }
                }
                self.charged.fetch_add(holes, Ordering::Relaxed);
            }
        }
        if !keep_size && end > self.size() {
            self.size.store(end, Ordering::Release);
        }
        Ok(())
    }

    /// `SEEK_DATA` / `SEEK_HOLE` from `offset`.
    ///
    /// # Errors
    /// `NoDeviceOrAddress` at or past EOF, or when no data follows `offset`.
    pub(crate) fn seek(&self, offset: u64, whence: SeekWhence) -> Result<u64> {
        let _io = self.io.read();
        let size = self.size();
        if offset >= size {
            return Err(FsError::NoDeviceOrAddress);
        }
        let map = self.pages.read();
        let start_idx = offset / PAGE_SIZE;
        match whence {
            SeekWhence::Data => {
                let idx = map
                    .range(start_idx, u64::MAX)
                    .find(|(_, s)| s.is_data())
                    .map(|(i, _)| i);
                match idx.map(|i| (i * PAGE_SIZE).max(offset)) {
                    Some(at) if at < size => Ok(at),
                    _ => Err(FsError::NoDeviceOrAddress),
                }
            }
            SeekWhence::Hole => {
                let mut expect = start_idx;
                for (i, s) in map.range(start_idx, u64::MAX) {
                    if i != expect || !s.is_data() {
                        break;
                    }
                    expect += 1;
                }
                Ok((expect * PAGE_SIZE).max(offset).min(size))
            }
        }
    }

    /// Free every page (the file's last link and handle are gone). Needs no I/O lock: nobody can
    /// reach the file any more.
    pub(crate) fn release_all(&self, mm: &MemoryManager) {
        self.remove_pages(mm, 0, u64::MAX);
    }

    /// Remove pages `[start, end)` from the map, uncharge them and free their swap slots; the
    /// frames are dropped after the map lock is released.
    fn remove_pages(&self, mm: &MemoryManager, start: u64, end: u64) {
        let removed = self.pages.write().take_range(start, end);
        let mut counts = SlotCounts::default();
        for s in &removed {
            counts.add(s.counted());
            // Their swap slots (and the swap copies of clean frames) are free now.
            match s {
                Slot::Swapped(e) => mm.free_swap_slot(*e),
                Slot::Resident(f) => mm.drop_swap_copy(f.take_swap_copy()),
                Slot::Reserved | Slot::Poisoned => {}
            }
        }
        mm.count_removed(counts);
        self.charged.fetch_sub(counts.total(), Ordering::Relaxed);
        drop(removed);
    }

    /// Zero bytes `[from, to)` of page `idx` if it holds data (holes and reserved pages read
    /// zero already; a swapped page is brought back first; a poisoned one stays poisoned and
    /// unreadable, so no old byte can reappear from it).
    fn zero_in_page(&self, mm: &MemoryManager, idx: u64, from: usize, to: usize) -> Result<()> {
        let needs = matches!(
            self.pages.read().state(idx),
            SlotState::Resident | SlotState::Swapped(_)
        );
        if !needs {
            return Ok(());
        }
        match self.modify_page(mm, idx, |page| page[from..to].fill(0)) {
            // Poisoned: nothing can be read from it. Any other `Io` (no frame to swap it in)
            // left the page swapped with its old bytes, so the caller must fail.
            Err(FsError::Io) if self.pages.read().state(idx) == SlotState::Poisoned => Ok(()),
            other => other,
        }
    }

    /// Per-state slot counts of this file.
    pub(crate) fn slot_counts(&self) -> SlotCounts {
        let map = self.pages.read();
        let mut c = SlotCounts::default();
        for (_, s) in map.iter() {
            c.add(s.counted());
        }
        c
    }
}

/// The memory manager reaches a file's pages through its inode (the `Weak` it holds).
impl PageOwner for Inode {
    fn evict_snapshot(&self, idx: u64, frame: &Arc<Frame>) -> Result<EvictSnapshot, EvictOutcome> {
        self.file().ok_or(EvictOutcome::Gone)?.evict_snapshot(idx, frame)
    }

    fn evict_publish(&self, mm: &MemoryManager, page: EvictPage<'_>, target: SwapTarget) -> EvictOutcome {
        match self.file() {
            Some(f) => f.evict_publish(mm, page, target),
            None => {
                if let SwapTarget::Written(e) = target {
                    mm.free_swap_slot(e);
                }
                EvictOutcome::Gone
            }
        }
    }

    fn read_ahead(&self, mm: &MemoryManager, window: Window) {
        if let Some(f) = self.file() {
            f.read_ahead(mm, window);
        }
    }

    fn read_ahead_abandoned(&self, seq: u64) {
        if let Some(f) = self.file() {
            f.read_ahead_abandoned(seq);
        }
    }
}
