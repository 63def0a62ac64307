//! Bringing swapped pages back: a reader's swap-in run and the read-ahead threads' windows.

use super::page_map::{PageMap, Slot, SlotState};
use super::FileData;
use crate::error::{FsError, Result};
use crate::mm::{Frame, FrameFor, MemoryManager, Window};
use crate::swap::{AlignedPage, RecordEntry, SwapCopy, SwapEntry};
use crate::sync::Arc;

/// Read-ahead reads across gaps of up to this many slots (ignoring them) rather than splitting
/// a read: a few extra 4 KiB in one I/O cost less than another I/O.
const READ_AHEAD_MAX_GAP: u64 = 16;

impl FileData {
    /// The read-ahead thread's job: swap in the swapped pages of `[first, last]` (grouped by
    /// slot, one read per group), then mark window `seq` done. Failures are left for a
    /// reader to meet (a page that fails to load is poisoned, as it would be for the reader).
    pub(crate) fn read_ahead(&self, mm: &MemoryManager, window: Window) {
        let Window { first, last, seq } = window;
        // The window's swapped pages in slot order. Eviction does not always give consecutive
        // pages consecutive slots (concurrent sweeps interleave), so grouping by slot, with small
        // gaps read and ignored, turns a window into a few large reads instead of many small.
        let mut records: Vec<(u64, RecordEntry)> = Vec::new();
        let mut swapped: Vec<(u64, SwapEntry)> = {
            let map = self.pages.read();
            map.range(first, last)
                .filter_map(|(i, s)| match s {
                    Slot::Swapped(e) => Some((i, *e)),
                    Slot::SwappedRecord(r) => {
                        records.push((i, *r));
                        None
                    }
                    _ => None,
                })
                .collect()
        };
        swapped.sort_unstable_by_key(|&(_, e)| e.slot);
        let limit = mm.swap_in_run_limit();
        let mut start = 0;
        while start < swapped.len() {
            let end = slot_run_end(&swapped, start, |&(_, e)| e.slot, limit, 2 * limit as u64);
            // Speculative: waits for memory like new data, never overdraws the reserve.
            match self.swap_in(mm, &swapped[start..end], FrameFor::NewPage) {
                Ok(n) => mm.note_readahead_swap_ins(n as u64),
                Err(_) => break,
            }
            start = end;
        }
        if let Ok(n) = self.swap_in_records(mm, records, None, FrameFor::NewPage) {
            mm.note_readahead_swap_ins(n as u64);
        }
        self.ra.finished(seq);
    }

    /// Swap in compressed records `records` (page index, record seen), several per I/O: they
    /// are grouped by slot, and each run of consecutive record slots (small gaps read and
    /// ignored, as for whole pages) is read whole with one I/O; every record is then opened
    /// and unpacked from its slot's copy and published, as [`FileData::swap_in_record`] does
    /// with one small read. A pool written back in eviction order puts a file's consecutive
    /// pages into a few consecutive slots, so a sequential reader's window costs a few reads,
    /// not one per page. A slot freed and reused after the map was looked at fails to
    /// authenticate its record, and the page's compare-and-set then finds it changed (a
    /// record's slot is reused only after its last record died).
    ///
    /// `needed`: the page a reader waits for (charged as `SwapIn`; its failure is the result);
    /// the others are charged as `extra` and skipped from the first that fails. Returns how
    /// many pages were published.
    ///
    /// # Errors
    /// `Io` if `needed` was poisoned or no frame could be had for it.
    pub(super) fn swap_in_records(
        &self,
        mm: &MemoryManager,
        mut records: Vec<(u64, RecordEntry)>,
        needed: Option<u64>,
        extra: FrameFor,
    ) -> Result<usize> {
        let swap = mm.swap()?;
        records.sort_unstable_by_key(|&(i, r)| (r.slot(), i));
        let limit = mm.swap_in_run_limit() as u64;
        let mut published = 0;
        let mut extras_stopped = false;
        let mut start = 0;
        while start < records.len() {
            let first = records[start].1.slot();
            // No cap on records per run: the I/O is bounded by the slots it spans.
            let end = slot_run_end(&records, start, |&(_, r)| r.slot(), usize::MAX, limit);
            let run = &records[start..end];
            start = end;
            let has_needed = run.iter().any(|&(i, _)| Some(i) == needed);
            if extras_stopped && !has_needed {
                continue;
            }
            let count = run[run.len() - 1].1.slot() - first + 1;
            let mut slots: Vec<AlignedPage> = (0..count)
                .map(|_| AlignedPage::for_overwrite())
                .collect::<Result<_, _>>()
                .unwrap_or_default();
            let read = if slots.len() as u64 == count {
                swap.load_record_slots(first, &mut slots.iter_mut().collect::<Vec<_>>())
            } else {
                Err(())
            };
            if read.is_err() {
                // The device failed (or no buffer): the needed page is read alone, which
                // poisons it if it fails too; the others are left for their readers.
                extras_stopped = true;
                if let Some(&(idx, r)) = run.iter().find(|&&(i, _)| Some(i) == needed) {
                    published += usize::from(self.swap_in_record(mm, idx, r, FrameFor::SwapIn)?);
                }
                continue;
            }
            for &(idx, r) in run {
                let is_needed = Some(idx) == needed;
                if extras_stopped && !is_needed {
                    continue;
                }
                // Opened in place: a slot's records are disjoint byte ranges of it.
                let slot = usize::try_from(r.slot() - first)
                    .ok()
                    .and_then(|k| slots.get_mut(k))
                    .ok_or(FsError::Io)?;
                let id = self.page_id(idx);
                let purpose = if is_needed { FrameFor::SwapIn } else { extra };
                let result = self.publish_record(mm, idx, r, purpose, |page| {
                    let range = swap.open_record_in(r, id, slot).map_err(|()| FsError::Io)?;
                    mm.unpack_record(&slot[range], page)
                });
                match result {
                    Ok(p) => published += usize::from(p),
                    Err(e) if is_needed => return Err(e),
                    Err(_) => extras_stopped = true,
                }
            }
        }
        Ok(published)
    }

    /// Read-ahead window `seq` will not be run (the threads stopped): release its waiters.
    pub(crate) fn read_ahead_abandoned(&self, seq: u64) {
        self.ra.finished(seq);
    }

    /// The run of swapped pages starting at `idx` (seen as `first`) whose swap slots are
    /// consecutive, up to page `last` and the memory manager's read-ahead limit: read back with one I/O.
    pub(super) fn swapped_run(
        map: &PageMap,
        mm: &MemoryManager,
        idx: u64,
        first: SwapEntry,
        last: u64,
    ) -> Vec<(u64, SwapEntry)> {
        page_run(map, mm, idx, first, last, |slot, n| match slot {
            Slot::Swapped(e) if e.slot == first.slot + n as u64 => Some(*e),
            _ => None,
        })
    }

    /// The compressed records of pages `idx..=last` from `idx` (seen as `first`) up to the first
    /// page that is not one and the read-ahead limit: a sequential reader's synchronous
    /// read-ahead, swapped in a slot run per I/O by [`FileData::swap_in_records`].
    pub(super) fn record_run(
        map: &PageMap,
        mm: &MemoryManager,
        idx: u64,
        first: RecordEntry,
        last: u64,
    ) -> Vec<(u64, RecordEntry)> {
        page_run(map, mm, idx, first, last, |slot, _| match slot {
            Slot::SwappedRecord(r) => Some(*r),
            _ => None,
        })
    }

    /// Bring page `idx`, seen as compressed record `record` in swap, back into RAM: charge a
    /// frame as `purpose` allows, read only the record's sectors, verify and decompress it, all
    /// with no lock held, then publish it resident by compare-and-set (the record stays, as the
    /// frame's swap copy, until the page's first change). A record that cannot be read or does not
    /// authenticate poisons its page only: its slot-mates are sealed on their own. Returns
    /// whether it published; `false`: the slot changed meanwhile (the caller looks again).
    ///
    /// # Errors
    /// `Io` if the page was poisoned, or no frame could be had (the page stays swapped).
    pub(super) fn swap_in_record(
        &self,
        mm: &MemoryManager,
        idx: u64,
        record: RecordEntry,
        purpose: FrameFor,
    ) -> Result<bool> {
        let swap = mm.swap()?;
        let id = self.page_id(idx);
        self.publish_record(mm, idx, record, purpose, |page| {
            let mut buf = AlignedPage::for_overwrite().map_err(|_| FsError::Io)?;
            let range = swap.load_record(record, id, &mut buf).map_err(|()| FsError::Io)?;
            mm.unpack_record(&buf[range], page)
        })
    }

    /// The second half of [`FileData::swap_in_record`]: charge a frame as `purpose` allows,
    /// fill it with `load` (which reads, verifies and decompresses the record, with no lock
    /// held), and publish it by compare-and-set, or poison the page if `load` failed.
    fn publish_record(
        &self,
        mm: &MemoryManager,
        idx: u64,
        record: RecordEntry,
        purpose: FrameFor,
        load: impl FnOnce(&mut [u8; crate::mm::PAGE]) -> Result<()>,
    ) -> Result<bool> {
        let (charge, mut page) = mm.new_swap_in_buffer(purpose)?;
        let loaded = load(&mut page);
        let frame = Frame::new(charge, page.into_page());
        let mut map = self.pages.write();
        if map.state(idx) != SlotState::SwappedRecord(record) {
            // Swapped in by another thread, rewritten or removed: its record is not ours to free.
            return Ok(false);
        }
        let new = if loaded.is_ok() {
            // The record stays, as the frame's swap copy: evicting the page unchanged again
            // costs no compression and no write (and leaves the pool as it was, which is what
            // lets a scan larger than memory find the pool's pages still there).
            frame.set_swap_copy(SwapCopy::Record(record));
            Slot::Resident(frame.clone())
        } else {
            tracing::warn!(
                ino = self.ino,
                idx,
                slot = record.slot(),
                "swap record lost: read failed, did not authenticate or did not decompress"
            );
            mm.note_lost_page();
            Slot::Poisoned
        };
        let new_state = new.counted();
        if let Some(old) = map.insert(idx, new) {
            mm.count_moved(old.counted(), new_state);
        }
        drop(map);
        if loaded.is_err() {
            mm.free_swap_record(record);
        }
        loaded?;
        mm.note_swap_ins(1);
        mm.track(&self.owner, idx, &frame, false);
        Ok(true)
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
    pub(super) fn swap_in(&self, mm: &MemoryManager, run: &[(u64, SwapEntry)], first: FrameFor) -> Result<usize> {
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
                    frame.set_swap_copy(SwapCopy::Page(entry));
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
}

/// Pages `idx, idx + 1, ...` up to page `last` and the memory manager's read-ahead limit, for
/// as long as `next(slot, pages so far)` takes the next page's slot; `first` is `idx`'s.
fn page_run<T>(
    map: &PageMap,
    mm: &MemoryManager,
    idx: u64,
    first: T,
    last: u64,
    next: impl Fn(&Slot, usize) -> Option<T>,
) -> Vec<(u64, T)> {
    let mut run = vec![(idx, first)];
    let limit = mm.swap_in_run_limit();
    let mut page = idx + 1;
    while page <= last && run.len() < limit {
        match map.get(page).and_then(|slot| next(slot, run.len())) {
            Some(t) => run.push((page, t)),
            None => break,
        }
        page += 1;
    }
    run
}

/// The end of the run of `items` (in slot order) that starts at `start` and is read with one
/// I/O: slot gaps of at most [`READ_AHEAD_MAX_GAP`] (read and ignored), at most `max_items`
/// items, slots spanning less than `max_span`.
fn slot_run_end<T>(items: &[T], start: usize, slot: impl Fn(&T) -> u64, max_items: usize, max_span: u64) -> usize {
    let mut end = start + 1;
    while end < items.len()
        && end - start < max_items
        && slot(&items[end]) - slot(&items[end - 1]) <= READ_AHEAD_MAX_GAP
        && slot(&items[end]) - slot(&items[start]) < max_span
    {
        end += 1;
    }
    end
}
