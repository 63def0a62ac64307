//! Regular-file data: a sparse page map behind two locks.
//!
//! * `io` (rank `FileIo`, the role of Linux's `i_rwsem`) serialises everything that changes the
//!   size or allocates: write, truncate, punch, fallocate. Reads never take it, and neither will
//!   the evictor or swap-in: that is the rule that makes the 2001 deadlock impossible here — a
//!   reader (a page fault served over FUSE) can never wait for a writer's `io` lock.
//! * `pages` (rank `PageMap`) is held only to look up or change slots, never across allocation,
//!   I/O, or a wait for memory. Page data sits behind each frame's own lock.
//!
//! `size` is written only under `io` (exclusive) and read lock-free. Invariant: bytes of a page
//! beyond `size` are zero (truncate zeroes the tail of the last page), so extending a file never
//! exposes stale bytes.

pub(crate) mod page_map;

use crate::accounting::Accounting;
use crate::error::{FsError, Result};
use crate::sync::{AtomicU64, LockRank, Ordering, RwLock, WriteGuard};
use crate::types::{SeekWhence, MAX_FILE_SIZE, PAGE_SIZE};
use page_map::{Frame, PageMap, Slot, SlotState, PAGE};

/// Pages copied per hold of the page-map read lock on the read path, to bound how long a large
/// read keeps slot transitions (eviction, swap-in) waiting.
const READ_BATCH_PAGES: u64 = 64;

/// Proof that the caller holds a file's I/O lock exclusively.
pub(crate) type IoGuard<'a> = WriteGuard<'a, ()>;

/// The data of one regular file.
pub(crate) struct FileData {
    /// Rank `FileIo`. See the module docs.
    io: RwLock<()>,
    /// Written under `io`; read lock-free.
    size: AtomicU64,
    /// Rank `PageMap`.
    pages: RwLock<PageMap>,
    /// Non-hole slots of this file (for `st_blocks`). Changed under `pages`.
    charged: AtomicU64,
}

impl FileData {
    pub(crate) fn new() -> Self {
        FileData {
            io: RwLock::new(LockRank::FileIo, ()),
            size: AtomicU64::new(0),
            pages: RwLock::new(LockRank::PageMap, PageMap::default()),
            charged: AtomicU64::new(0),
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
        self.io.write()
    }

    /// Read into `buf` from `offset`; returns bytes read (short at EOF). Takes no I/O lock.
    ///
    /// # Errors
    /// `Io` when the first page touched is poisoned; a poisoned page later in the range ends the
    /// read short before it.
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let size = self.size();
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let end = size.min(offset.saturating_add(buf.len() as u64));
        let mut pos = offset;
        while pos < end {
            let map = self.pages.read();
            let batch_end = end.min((pos / PAGE_SIZE + READ_BATCH_PAGES) * PAGE_SIZE);
            while pos < batch_end {
                let idx = pos / PAGE_SIZE;
                let in_page = (pos % PAGE_SIZE) as usize;
                let n = (PAGE - in_page).min((batch_end - pos) as usize);
                let out = &mut buf[(pos - offset) as usize..(pos - offset) as usize + n];
                match map.slots.get(&idx) {
                    None | Some(Slot::Reserved) => out.fill(0),
                    Some(Slot::Resident(frame)) => {
                        out.copy_from_slice(&frame.data.read()[in_page..in_page + n])
                    }
                    Some(Slot::Swapped(_) | Slot::Poisoned) => {
                        // No swap tier yet: a swapped page cannot exist. Poisoned pages are EIO.
                        return if pos == offset {
                            Err(FsError::Io)
                        } else {
                            Ok((pos - offset) as usize)
                        };
                    }
                }
                pos += n as u64;
            }
        }
        Ok((end - offset) as usize)
    }

    /// Write `data` at `offset`, allocating pages as needed; extends the size. Returns bytes
    /// written, which is short only if space ran out after some bytes landed.
    ///
    /// # Errors
    /// `FileTooBig` at or past the maximum size; `NoSpace` if not even the first page could be
    /// charged; `Io` on a poisoned first page.
    pub(crate) fn write(
        &self,
        _io: &IoGuard<'_>,
        acct: &Accounting,
        offset: u64,
        data: &[u8],
    ) -> Result<usize> {
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
            let frame = match self.frame_for_write(acct, idx) {
                Ok(f) => f,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            frame.data.write()[in_page..in_page + n]
                .copy_from_slice(&data[done as usize..done as usize + n]);
            done += n as u64;
        }
        let end = offset + done;
        if end > self.size() {
            self.size.store(end, Ordering::Release);
        }
        Ok(done as usize)
    }

    /// The resident frame of page `idx`, allocating (and charging) it if it is a hole or reserved.
    /// The page map is never locked while allocating: the state seen before is re-checked before
    /// the new frame is published, and a loser retries.
    fn frame_for_write(&self, acct: &Accounting, idx: u64) -> Result<crate::sync::Arc<Frame>> {
        loop {
            let seen = {
                let map = self.pages.read();
                match map.slots.get(&idx) {
                    Some(Slot::Resident(f)) => return Ok(f.clone()),
                    Some(Slot::Poisoned) => return Err(FsError::Io),
                    Some(Slot::Swapped(_)) => return Err(FsError::Io),
                    other => other.map_or(SlotState::Hole, Slot::state),
                }
            };
            if seen == SlotState::Hole {
                acct.pages.charge(1)?;
            }
            let frame = Frame::new_zeroed();
            let mut map = self.pages.write();
            if map.state(idx) != seen {
                drop(map);
                if seen == SlotState::Hole {
                    acct.pages.uncharge(1);
                }
                continue;
            }
            let new = Slot::Resident(frame.clone());
            match map.slots.insert(idx, new) {
                Some(old) => acct.moved(&old, &Slot::Resident(frame.clone())),
                None => {
                    acct.add(&Slot::Resident(frame.clone()));
                    self.charged.fetch_add(1, Ordering::Relaxed);
                }
            }
            return Ok(frame);
        }
    }

    /// Set the size. Shrinking frees whole pages past the new end and zeroes the tail of the
    /// last partial page; growing allocates nothing.
    ///
    /// # Errors
    /// `FileTooBig` past the maximum size.
    pub(crate) fn truncate(
        &self,
        _io: &IoGuard<'_>,
        acct: &Accounting,
        new_size: u64,
    ) -> Result<()> {
        if new_size > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let old = self.size();
        // Publish the new size first, so that racing readers clamp to it.
        self.size.store(new_size, Ordering::Release);
        if new_size < old {
            let first_gone = new_size.div_ceil(PAGE_SIZE);
            let removed = self.remove_pages(acct, first_gone, u64::MAX);
            drop(removed);
            if new_size % PAGE_SIZE != 0 {
                self.zero_in_page(new_size / PAGE_SIZE, (new_size % PAGE_SIZE) as usize, PAGE);
            }
        }
        Ok(())
    }

    /// Free the byte range `[offset, offset + len)`: whole pages go, partial pages are zeroed.
    /// The size does not change (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`).
    pub(crate) fn punch(&self, _io: &IoGuard<'_>, acct: &Accounting, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(MAX_FILE_SIZE);
        if end <= offset {
            return;
        }
        let first_full = offset.div_ceil(PAGE_SIZE);
        let end_full = end / PAGE_SIZE;
        if first_full < end_full {
            drop(self.remove_pages(acct, first_full, end_full));
        }
        let head_page = offset / PAGE_SIZE;
        let tail_page = end / PAGE_SIZE;
        if head_page == tail_page {
            // Both ends inside one page.
            if offset % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
                self.zero_in_page(
                    head_page,
                    (offset % PAGE_SIZE) as usize,
                    (end % PAGE_SIZE) as usize,
                );
            }
            return;
        }
        if offset % PAGE_SIZE != 0 {
            self.zero_in_page(head_page, (offset % PAGE_SIZE) as usize, PAGE);
        }
        if end % PAGE_SIZE != 0 {
            self.zero_in_page(tail_page, 0, (end % PAGE_SIZE) as usize);
        }
    }

    /// Reserve (charge) every page of `[offset, offset + len)` that is a hole, all or nothing,
    /// and extend the size to the end of the range unless `keep_size`.
    ///
    /// # Errors
    /// `Invalid` for an empty range, `FileTooBig` past the maximum size, `NoSpace` when the
    /// holes in the range do not fit: then nothing changed.
    pub(crate) fn reserve(
        &self,
        _io: &IoGuard<'_>,
        acct: &Accounting,
        offset: u64,
        len: u64,
        keep_size: bool,
    ) -> Result<()> {
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
            let present = map.slots.range(first..=last).count() as u64;
            let holes = total - present;
            acct.pages.charge(holes)?;
            if holes > 0 {
                for idx in first..=last {
                    map.slots.entry(idx).or_insert_with(|| {
                        acct.add(&Slot::Reserved);
                        Slot::Reserved
                    });
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
                    .slots
                    .range(start_idx..)
                    .find(|(_, s)| s.is_data())
                    .map(|(&i, _)| i);
                match idx {
                    Some(i) => {
                        let at = (i * PAGE_SIZE).max(offset);
                        if at < size {
                            Ok(at)
                        } else {
                            Err(FsError::NoDeviceOrAddress)
                        }
                    }
                    None => Err(FsError::NoDeviceOrAddress),
                }
            }
            SeekWhence::Hole => {
                let mut expect = start_idx;
                for (&i, s) in map.slots.range(start_idx..) {
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
    pub(crate) fn release_all(&self, acct: &Accounting) {
        drop(self.remove_pages(acct, 0, u64::MAX));
    }

    /// Remove pages `[start, end)` from the map, uncharge them, and return them so that the
    /// caller drops the frames after the map lock is released.
    fn remove_pages(&self, acct: &Accounting, start: u64, end: u64) -> Vec<Slot> {
        let removed = self.pages.write().take_range(start, end);
        let n = acct.remove(&removed);
        self.charged.fetch_sub(n, Ordering::Relaxed);
        removed
    }

    /// Zero bytes `[from, to)` of page `idx` if it is resident (holes and reserved pages read
    /// zero already).
    fn zero_in_page(&self, idx: u64, from: usize, to: usize) {
        let frame = match self.pages.read().slots.get(&idx) {
            Some(Slot::Resident(f)) => f.clone(),
            _ => return,
        };
        frame.data.write()[from..to].fill(0);
    }

    /// Per-state slot counts of this file: (resident, reserved, swapped, poisoned).
    pub(crate) fn slot_counts(&self) -> (u64, u64, u64, u64) {
        let map = self.pages.read();
        let mut c = (0, 0, 0, 0);
        for s in map.slots.values() {
            match s {
                Slot::Resident(_) => c.0 += 1,
                Slot::Reserved => c.1 += 1,
                Slot::Swapped(_) => c.2 += 1,
                Slot::Poisoned => c.3 += 1,
            }
        }
        c
    }
}
