//! Reading and writing a file's bytes: the one-pass read, writes, and making a page resident.

use super::page_map::{Slot, SlotState};
use super::{FileData, IoGuard};
use crate::error::{FsError, Result};
use crate::mm::{FrameFor, MemoryManager, PageState, UnpackCharge, PAGE};
use crate::sync::Ordering;
use crate::types::{ReadMode, ReadOutcome, MAX_FILE_SIZE, PAGE_SIZE};

/// Pages copied per hold of the page-map read lock on the read path, to bound how long a large
/// read keeps slot transitions (eviction, swap-in) waiting.
const READ_BATCH_PAGES: u64 = 64;

/// How `make_resident` left the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resident {
    /// It was resident already (possibly made so by another thread meanwhile).
    Already,
    /// It was made resident with its old contents (zeros, or read back from swap).
    Made,
    /// It was made resident holding the caller's `fill`.
    Filled,
}

impl FileData {
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
            let mut unpack = None;
            let mut record = None;
            {
                let map = self.pages.read();
                let batch_end = end.min((pos / PAGE_SIZE + READ_BATCH_PAGES) * PAGE_SIZE);
                while pos < batch_end {
                    let idx = pos / PAGE_SIZE;
                    let in_page = (pos % PAGE_SIZE) as usize;
                    let n = (PAGE - in_page).min((batch_end - pos) as usize);
                    let out = &mut buf[(pos - offset) as usize..(pos - offset) as usize + n];
                    match map.get(idx) {
                        None | Some(Slot::Reserved | Slot::Zero) => out.fill(0),
                        Some(Slot::Compressed(p)) => {
                            unpack = Some(p.clone());
                            break;
                        }
                        Some(Slot::Resident(frame)) => {
                            out.copy_from_slice(&frame.bytes()[in_page..in_page + n]);
                            frame.touch();
                        }
                        Some(Slot::Swapped(_) | Slot::SwappedRecord(_)) if mode == ReadMode::NoWait => {
                            return Ok(ReadOutcome::WouldBlock)
                        }
                        Some(Slot::SwappedRecord(r)) => {
                            record = Some(Self::record_run(&map, mm, idx, *r, swap_in_last));
                            break;
                        }
                        Some(Slot::Swapped(e)) => {
                            swap_in = Some(Self::swapped_run(&map, mm, idx, *e, swap_in_last));
                            break;
                        }
                        Some(Slot::Poisoned) => return Err(FsError::Io),
                    }
                    pos += n as u64;
                }
            }
            if let Some(packed) = unpack {
                // Decompressed with no lock held: into a frame, or straight into `buf` when no
                // frame can be had. A first read takes a frame only if one is free (a one-pass
                // scan then leaves the pool as it was); a second read may reclaim one (one
                // sweep: a reader never waits for memory for these); a `NoWait` read never
                // reclaims (no I/O).
                let idx = pos / PAGE_SIZE;
                let how = match (mode, packed.note_read()) {
                    (ReadMode::Wait, true) => UnpackCharge::Reclaim,
                    _ => UnpackCharge::Now,
                };
                if !self.unpack(mm, idx, &packed, how)? {
                    let in_page = (pos % PAGE_SIZE) as usize;
                    let n = (PAGE - in_page).min((end - pos) as usize);
                    let out = &mut buf[(pos - offset) as usize..(pos - offset) as usize + n];
                    Self::unpack_into_buffer(mm, &packed, in_page, out)?;
                    pos += n as u64;
                }
                continue;
            }
            if swap_in.is_some() || record.is_some() {
                // Read-ahead is fetching this page: wait for it rather than read it twice.
                if mm.readahead_queue().is_some() && self.ra.wait_for(pos / PAGE_SIZE) {
                    continue;
                }
            }
            if let Some(run) = swap_in {
                self.swap_in(mm, &run, FrameFor::SwapIn)?;
            }
            if let Some(run) = record {
                if let [(idx, r)] = run[..] {
                    self.swap_in_record(mm, idx, r, FrameFor::SwapIn)?;
                } else {
                    self.swap_in_records(mm, run, Some(pos / PAGE_SIZE), FrameFor::SwapInExtra)?;
                }
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
    pub(super) fn modify_page(
        &self,
        mm: &MemoryManager,
        idx: u64,
        mut change: impl FnMut(&mut [u8; PAGE]),
    ) -> Result<()> {
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
    pub(super) fn overwrite_page(&self, mm: &MemoryManager, idx: u64, data: &[u8; PAGE]) -> Result<()> {
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
    pub(super) fn change_resident(&self, mm: &MemoryManager, idx: u64, change: impl FnOnce(&mut [u8; PAGE])) -> bool {
        let map = self.pages.read();
        let Some(Slot::Resident(frame)) = map.get(idx) else {
            return false;
        };
        mm.drop_swap_copy(frame.change(change));
        true
    }

    /// Make page `idx` resident: allocate (and charge) a hole, materialise a reserved or zero
    /// page, swap a swapped one in, decompress a compressed one. Holds no lock while
    /// allocating, decompressing or doing I/O.
    ///
    /// With `fill`, a page that is not resident gets a new frame holding `fill` instead (a
    /// swapped page is not read back: its swap copy is dropped; a compressed one is not
    /// decompressed), and the result says so.
    pub(super) fn make_resident(&self, mm: &MemoryManager, idx: u64, fill: Option<&[u8; PAGE]>) -> Result<Resident> {
        loop {
            let (seen, packed) = {
                let map = self.pages.read();
                match map.get(idx) {
                    Some(Slot::Resident(_)) => return Ok(Resident::Already),
                    Some(Slot::Poisoned) => return Err(FsError::Io),
                    Some(Slot::Compressed(p)) => (SlotState::Compressed(p.id()), Some(p.clone())),
                    other => (other.map_or(SlotState::Hole, Slot::state), None),
                }
            };
            if let (SlotState::Swapped(e), None) = (seen, fill) {
                self.swap_in(mm, &[(idx, e)], FrameFor::SwapIn)?;
                continue;
            }
            if let (SlotState::SwappedRecord(r), None) = (seen, fill) {
                self.swap_in_record(mm, idx, r, FrameFor::SwapIn)?;
                continue;
            }
            if let (Some(p), None) = (&packed, fill) {
                // No frame for it: as a swap-in that finds none, `Io` (the page stays stored).
                if !self.unpack(mm, idx, p, UnpackCharge::Wait)? {
                    return Err(FsError::Io);
                }
                continue;
            }
            drop(packed);
            if seen == SlotState::Hole {
                mm.charge_pages(1)?;
            }
            // A page whose data is stored (swapped, compressed) may overdraw as a swap-in does.
            let stored = matches!(
                seen,
                SlotState::Swapped(_) | SlotState::SwappedRecord(_) | SlotState::Compressed(_)
            );
            let frame = match mm.new_frame(fill, stored) {
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
            let old = map.insert(idx, new);
            if let Some(old) = &old {
                mm.count_moved(old.counted(), PageState::Resident);
            } else {
                mm.count_added(PageState::Resident);
                self.charged.fetch_add(1, Ordering::Relaxed);
            }
            drop(map);
            // (A pool entry overwritten gives its charge back here, with no lock held.)
            drop(old);
            match seen {
                // Overwritten without being read back: the swap copy is garbage now.
                SlotState::Swapped(e) => mm.free_swap_slot(e),
                SlotState::SwappedRecord(r) => mm.free_swap_record(r),
                _ => {}
            }
            mm.track(&self.owner, idx, &frame, false);
            return Ok(if fill.is_some() {
                Resident::Filled
            } else {
                Resident::Made
            });
        }
    }
}
