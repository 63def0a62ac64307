//! Changing which pages exist: truncate, punch, fallocate's reservation, and release.

use super::page_map::{Slot, SlotState};
use super::{FileData, IoGuard};
use crate::error::{FsError, Result};
use crate::mm::{MemoryManager, PageState, SlotCounts, PAGE};
use crate::sync::Ordering;
use crate::types::{MAX_FILE_SIZE, PAGE_SIZE};

impl FileData {
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

    /// Free every page (the file's last link and handle are gone). Needs no I/O lock: nobody can
    /// reach the file any more.
    pub(crate) fn release_all(&self, mm: &MemoryManager) {
        self.remove_pages(mm, 0, u64::MAX);
    }

    /// Remove pages `[start, end)` from the map, uncharge them and free their swap slots; the
    /// frames are dropped after the map lock is released.
    pub(super) fn remove_pages(&self, mm: &MemoryManager, start: u64, end: u64) {
        let removed = self.pages.write().take_range(start, end);
        let mut counts = SlotCounts::default();
        for s in &removed {
            counts.add(s.counted());
            // Their swap slots (and the swap copies of clean frames) are free now.
            match s {
                Slot::Swapped(e) => mm.free_swap_slot(*e),
                Slot::SwappedRecord(r) => mm.free_swap_record(*r),
                Slot::Resident(f) => mm.drop_swap_copy(f.take_swap_copy()),
                // (A pool entry's charge goes back as `removed` is dropped, with no lock held.)
                Slot::Reserved | Slot::Poisoned | Slot::Compressed(_) | Slot::Zero => {}
            }
        }
        mm.count_removed(counts);
        self.charged.fetch_sub(counts.total(), Ordering::Relaxed);
        drop(removed);
    }

    /// Zero bytes `[from, to)` of page `idx` if it holds data (holes, reserved and zero pages
    /// read zero already; a swapped or compressed page is brought back first; a poisoned one stays poisoned and
    /// unreadable, so no old byte can reappear from it).
    pub(super) fn zero_in_page(&self, mm: &MemoryManager, idx: u64, from: usize, to: usize) -> Result<()> {
        let needs = matches!(
            self.pages.read().state(idx),
            SlotState::Resident | SlotState::Swapped(_) | SlotState::SwappedRecord(_) | SlotState::Compressed(_)
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
}
