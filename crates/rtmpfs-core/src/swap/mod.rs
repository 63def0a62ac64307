//! The swap tier's storage: page-sized slots in a private file, sealed with AES-256-GCM.
//!
//! * [`SwapBackend`] stores whole pages by slot number. [`FileSwap`] is the real one: an
//!   anonymous (`O_TMPFILE`, mode 0600) file that no other process can open and that disappears
//!   when the process ends, even on `kill -9`, written with `O_DIRECT` so that the host's page
//!   cache does not keep the data we evicted (or with `POSIX_FADV_DONTNEED` after each write where
//!   `O_DIRECT` is refused). `MemorySwap` and `FaultySwap` (feature `test-util`) serve tests.
//! * `Swap` (crate-private) adds the slot allocator (freed slots are reused, lowest first, so the
//!   file stays compact) and sealing: every page written is encrypted and authenticated under a key
//!   made at start and held only in memory; the nonce is a per-instance counter (never repeated
//!   under one key) and the associated data binds the ciphertext to its slot, file and page, so a
//!   page read back from the wrong place, torn or altered fails authentication and the page is
//!   poisoned.
//! * Compressed records (`store_records`): pages of the compressed pool written back to swap
//!   keep their compressed bytes. Each is sealed on its own (its own nonce and tag; its slot,
//!   offset and length in the associated data) and packed with others into a slot, first fit
//!   within the batch being written; a slot of records is freed when its last record dies
//!   (`slots.rs`). A record is read back alone: only the 512-byte sectors that hold it
//!   (`load_record`).

mod backend;
mod seal;
mod slots;
#[cfg(any(test, feature = "test-util"))]
mod test_backends;

pub use backend::{AlignedPage, FileSwap, SwapBackend};
pub(crate) use seal::Sealer;
#[cfg(any(test, feature = "test-util"))]
pub use test_backends::{FaultControl, FaultySwap, MemorySwap};

use crate::sync::{AtomicBool, AtomicU64, LockRank, Mutex, Ordering};
use crate::types::PAGE_SIZE;
use slots::SlotAllocator;

/// Where a swapped-out page is and how to verify it: kept in the page map's `Swapped` slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwapEntry {
    pub slot: u64,
    pub nonce: u64,
    pub tag: [u8; 16],
}

/// A page's still-valid copy in swap, kept by its frame after a swap-in (Linux's swap cache):
/// evicting the unchanged page again needs no I/O (and, for a record, no compression). The
/// first change of the frame frees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwapCopy {
    /// A whole page in its own slot.
    Page(SwapEntry),
    /// A compressed record (the compressed tier's write-back).
    Record(RecordEntry),
}

/// Where a compressed record is in the swap file and how to verify it: kept in the page map's
/// `SwappedRecord` slot. Its slot, offset and length are packed in one word (40, 12 and 12
/// bits), so the entry is no larger than a whole page's [`SwapEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordEntry {
    place: u64,
    pub nonce: u64,
    pub tag: [u8; 16],
}

/// Most slots a swap file of records can address: 2^40 (4 PiB).
const RECORD_SLOT_LIMIT: u64 = 1 << 40;
/// The sector size records are read in: `O_DIRECT`'s usual alignment.
const SECTOR: usize = 512;

impl RecordEntry {
    fn at(slot: u64, offset: usize, len: usize) -> RecordEntry {
        debug_assert!(slot < RECORD_SLOT_LIMIT && offset < 4096 && len > 0 && len < 4096);
        RecordEntry {
            place: slot << 24 | (offset as u64) << 12 | len as u64,
            nonce: 0,
            tag: [0; 16],
        }
    }

    pub(crate) fn slot(&self) -> u64 {
        self.place >> 24
    }

    pub(crate) fn offset(&self) -> u16 {
        ((self.place >> 12) & 0xfff) as u16
    }

    #[allow(clippy::len_without_is_empty)]
    pub(crate) fn len(&self) -> u16 {
        (self.place & 0xfff) as u16
    }

    /// The sectors that hold it: (offset of the first in its slot, bytes).
    fn sectors(&self) -> (usize, usize) {
        let start = usize::from(self.offset()) / SECTOR * SECTOR;
        let end = (usize::from(self.offset()) + usize::from(self.len())).div_ceil(SECTOR) * SECTOR;
        (start, end - start)
    }
}

/// Identity of a page, bound into the seal: (inode number, page index).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageId {
    pub ino: u64,
    pub idx: u64,
}

/// Why a page could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// No free slot (swap_size reached), or the swap file's filesystem is full (`ENOSPC`,
    /// `EDQUOT`): the pages stored so far stay readable.
    Full,
    /// The backend failed to write for another reason: the device may be failing.
    Io,
}

/// Whether a backend write error means "no space" (the swap is full) rather than a failing device.
fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Counters of swap activity.
#[derive(Debug, Default)]
pub(crate) struct SwapStats {
    pub writes: AtomicU64,
    pub reads: AtomicU64,
    pub write_errors: AtomicU64,
    pub read_errors: AtomicU64,
    /// Bytes written to the swap file (whole slots).
    pub bytes_written: AtomicU64,
    /// Bytes read from it (whole slots, or a record's sectors).
    pub bytes_read: AtomicU64,
    /// Compressed records written, and read back.
    pub records_written: AtomicU64,
    pub records_read: AtomicU64,
}

/// Slots + sealing over a backend.
pub(crate) struct Swap {
    backend: Box<dyn SwapBackend>,
    /// Rank `SwapSlots`: a leaf.
    slots: Mutex<SlotAllocator>,
    sealer: Sealer,
    /// The last I/O failed (a read, or a write for another reason than "no space"): the device
    /// may be dying, so reclaim stops dropping clean frames whose only other copy is there.
    /// Cleared by an I/O that succeeds.
    failing: AtomicBool,
    pub stats: SwapStats,
}

impl Swap {
    pub(crate) fn new(backend: Box<dyn SwapBackend>, capacity_slots: Option<u64>, sealer: Sealer) -> Swap {
        let cap = match (capacity_slots, backend.capacity_slots()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Swap {
            backend,
            slots: Mutex::new(LockRank::SwapSlots, SlotAllocator::new(cap)),
            sealer,
            failing: AtomicBool::new(false),
            stats: SwapStats::default(),
        }
    }

    /// Seal (in place) and write several pages, in as few I/Os as the free slots allow:
    /// contiguous runs of slots are written with one vectored write. Returns one result per
    /// page, in order. No engine lock may be held.
    /// Each page may carry a slot hint (the slot after its predecessor's): a page whose
    /// predecessor is also in the batch goes right after it.
    pub(crate) fn store_batch(
        &self,
        pages: &mut [(AlignedPage, PageId, Option<u64>)],
    ) -> Vec<Result<SwapEntry, StoreError>> {
        let slots: Vec<u64> = {
            let mut alloc = self.slots.lock();
            let mut slots: Vec<u64> = Vec::with_capacity(pages.len());
            for (i, (_, id, hint)) in pages.iter().enumerate() {
                let follows = i > 0 && pages[i - 1].1.ino == id.ino && pages[i - 1].1.idx + 1 == id.idx;
                let hint = if follows { slots.last().map(|s| s + 1) } else { *hint };
                match alloc.alloc_near(hint) {
                    Some(s) => slots.push(s),
                    None => break,
                }
            }
            slots
        };
        let mut out: Vec<Result<SwapEntry, StoreError>> = Vec::with_capacity(pages.len());
        for (&slot, (page, id, _)) in slots.iter().zip(pages.iter_mut()) {
            let (nonce, tag) = self.sealer.seal(&mut page[..], slot, *id);
            out.push(Ok(SwapEntry { slot, nonce, tag }));
        }
        let written = {
            let refs: Vec<&AlignedPage> = pages.iter().map(|(p, _, _)| p).collect();
            self.write_runs(&slots, &refs)
        };
        let mut alloc = None;
        for (r, w) in out.iter_mut().zip(written) {
            if let (Err(why), Ok(e)) = (w, &r) {
                alloc.get_or_insert_with(|| self.slots.lock()).free(e.slot);
                *r = Err(why);
            }
        }
        drop(alloc);
        out.resize(pages.len(), Err(StoreError::Full));
        out
    }

    /// Write `pages` to `slots` (one each), consecutive slots with one vectored write; one
    /// result per page. Counts what it wrote; on a "no space" failure, tells the allocator to
    /// prefer slots the file already spans. The caller frees the slots of failed pages.
    fn write_runs(&self, slots: &[u64], pages: &[&AlignedPage]) -> Vec<Result<(), StoreError>> {
        let mut out = vec![Ok(()); slots.len()];
        let mut start = 0;
        while start < slots.len() {
            let mut end = start + 1;
            while end < slots.len() && slots[end] == slots[end - 1] + 1 {
                end += 1;
            }
            if let Err(e) = self.backend.write_pages(slots[start], &pages[start..end]) {
                tracing::warn!(first = slots[start], pages = end - start, error = %e, "swap write failed");
                self.stats
                    .write_errors
                    .fetch_add((end - start) as u64, Ordering::Relaxed);
                let why = if is_no_space(&e) {
                    StoreError::Full
                } else {
                    self.failing.store(true, Ordering::Relaxed);
                    StoreError::Io
                };
                out[start..end].fill(Err(why));
                if why == StoreError::Full {
                    // Slots the file already spans can still be rewritten: prefer those while any
                    // is free.
                    self.slots.lock().block_growth();
                }
            } else {
                self.failing.store(false, Ordering::Relaxed);
                let n = (end - start) as u64;
                self.stats.writes.fetch_add(n, Ordering::Relaxed);
                self.stats.bytes_written.fetch_add(n * PAGE_SIZE, Ordering::Relaxed);
            }
            start = end;
        }
        out
    }

    /// Seal and write compressed records (`records[i]`: the compressed bytes of page `id`, at
    /// most 3072 bytes), packed several to a slot: first fit within this batch, each record
    /// sealed on its own. Returns one result per record, in order; the records of a slot that
    /// could not be had or written fail together. No engine lock may be held.
    pub(crate) fn store_records(&self, records: &[(&[u8], PageId)]) -> Vec<Result<RecordEntry, StoreError>> {
        let page = PAGE_SIZE as usize;
        // First fit: each record goes into the first slot of the batch with room for it.
        let mut bins: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut offsets = vec![0usize; records.len()];
        for (i, (data, _)) in records.iter().enumerate() {
            debug_assert!(!data.is_empty() && data.len() < page);
            if let Some((used, members)) = bins.iter_mut().find(|(used, _)| used + data.len() <= page) {
                offsets[i] = *used;
                *used += data.len();
                members.push(i);
            } else {
                offsets[i] = 0;
                bins.push((data.len(), vec![i]));
            }
        }
        let mut out: Vec<Result<RecordEntry, StoreError>> = vec![Err(StoreError::Full); records.len()];
        let mut bufs: Vec<AlignedPage> = Vec::with_capacity(bins.len());
        for _ in &bins {
            match AlignedPage::zeroed() {
                Ok(p) => bufs.push(p),
                Err(_) => return out,
            }
        }
        let slots: Vec<u64> = {
            let mut alloc = self.slots.lock();
            let mut slots: Vec<u64> = Vec::with_capacity(bins.len());
            for (_, members) in &bins {
                let Some(s) = alloc.alloc_near(slots.last().map(|s| s + 1)) else {
                    break;
                };
                if s >= RECORD_SLOT_LIMIT {
                    alloc.free(s);
                    break;
                }
                let lens: Vec<u32> = members.iter().map(|&i| records[i].0.len() as u32).collect();
                alloc.hold_records(s, &lens);
                slots.push(s);
            }
            slots
        };
        bufs.truncate(slots.len());
        for ((buf, &slot), (_, members)) in bufs.iter_mut().zip(&slots).zip(&bins) {
            for &i in members {
                let (data, id) = records[i];
                let mut e = RecordEntry::at(slot, offsets[i], data.len());
                let place = &mut buf[offsets[i]..offsets[i] + data.len()];
                place.copy_from_slice(data);
                (e.nonce, e.tag) = self.sealer.seal_record(place, e, id);
                out[i] = Ok(e);
            }
        }
        let written = {
            let refs: Vec<&AlignedPage> = bufs.iter().collect();
            self.write_runs(&slots, &refs)
        };
        for ((w, &slot), (_, members)) in written.into_iter().zip(&slots).zip(&bins) {
            match w {
                Ok(()) => {
                    self.stats
                        .records_written
                        .fetch_add(members.len() as u64, Ordering::Relaxed);
                }
                Err(why) => {
                    let mut alloc = self.slots.lock();
                    for &i in members {
                        alloc.free_record(slot, records[i].0.len() as u32);
                        out[i] = Err(why);
                    }
                }
            }
        }
        out
    }

    /// Read record `entry` of page `id` (only the sectors that hold it) into `buf`, verify and
    /// decrypt it; returns the range of `buf` that holds its compressed bytes. Failures are not
    /// counted here (see `FileData::swap_in_record`). No engine lock may be held.
    pub(crate) fn load_record(
        &self,
        entry: RecordEntry,
        id: PageId,
        buf: &mut AlignedPage,
    ) -> Result<std::ops::Range<usize>, ()> {
        let (start, len) = entry.sectors();
        if let Err(e) = self.backend.read_part(entry.slot(), start, &mut buf[..len]) {
            tracing::warn!(slot = entry.slot(), error = %e, "swap record read failed");
            self.failing.store(true, Ordering::Relaxed);
            return Err(());
        }
        self.failing.store(false, Ordering::Relaxed);
        self.stats.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
        let from = usize::from(entry.offset()) - start;
        let range = from..from + usize::from(entry.len());
        self.sealer.open_record(&mut buf[range.clone()], entry, id)?;
        self.stats.records_read.fetch_add(1, Ordering::Relaxed);
        Ok(range)
    }

    /// Read record slots `first..first + outs.len()` whole, with one I/O (read-ahead of a window
    /// whose records sit in consecutive slots); each record in them is then opened with
    /// [`Swap::open_record_in`]. No engine lock may be held.
    pub(crate) fn load_record_slots(&self, first: u64, outs: &mut [&mut AlignedPage]) -> Result<(), ()> {
        if let Err(e) = self.backend.read_pages(first, outs) {
            tracing::warn!(first, slots = outs.len(), error = %e, "swap record read failed");
            self.failing.store(true, Ordering::Relaxed);
            return Err(());
        }
        self.failing.store(false, Ordering::Relaxed);
        self.stats
            .bytes_read
            .fetch_add(outs.len() as u64 * PAGE_SIZE, Ordering::Relaxed);
        Ok(())
    }

    /// Verify and decrypt record `entry` of page `id` in place in `slot`, the whole slot as
    /// [`Swap::load_record_slots`] read it; returns the range of `slot` that holds its
    /// compressed bytes.
    pub(crate) fn open_record_in(
        &self,
        entry: RecordEntry,
        id: PageId,
        slot: &mut AlignedPage,
    ) -> Result<std::ops::Range<usize>, ()> {
        let from = usize::from(entry.offset());
        let range = from..from + usize::from(entry.len());
        self.sealer.open_record(&mut slot[range.clone()], entry, id)?;
        self.stats.records_read.fetch_add(1, Ordering::Relaxed);
        Ok(range)
    }

    /// A record is dead (overwritten, removed, or its page changed after a read back): its slot
    /// is freed with its last one.
    pub(crate) fn free_record(&self, entry: RecordEntry) {
        self.slots.lock().free_record(entry.slot(), u32::from(entry.len()));
    }

    /// Record slots in use, the live records in them, and those records' bytes.
    pub(crate) fn record_usage(&self) -> (u64, u64, u64) {
        self.slots.lock().record_usage()
    }

    /// Read and verify the pages stored in slots `first..first + entries.len()` with one I/O,
    /// straight into `outs` (decrypted in place). `entries[i]` describes slot `first + i`; `None`
    /// is a gap: a slot read only to keep the I/O in one piece, whose bytes are ignored. Returns
    /// one result per slot (gaps always `Ok`); a page that failed leaves its `out` with undefined
    /// bytes. Failures are not counted here (see `FileData::swap_in`). If the one I/O fails and
    /// there are gaps (a gap slot may be unreadable, e.g. past the end of the file), the stored
    /// pages' runs are read again on their own before anything counts as failed. No engine lock
    /// may be held.
    pub(crate) fn load_span(
        &self,
        first: u64,
        entries: &[Option<(SwapEntry, PageId)>],
        outs: &mut [&mut AlignedPage],
    ) -> Vec<Result<(), ()>> {
        debug_assert_eq!(entries.len(), outs.len());
        debug_assert!(entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.is_none_or(|(e, _)| e.slot == first + i as u64)));
        let mut results: Vec<Result<(), ()>> = vec![Ok(()); entries.len()];
        if let Err(e) = self.backend.read_pages(first, outs) {
            if entries.iter().all(Option::is_some) {
                tracing::warn!(first, pages = entries.len(), error = %e, "swap read failed");
                self.failing.store(true, Ordering::Relaxed);
                return vec![Err(()); entries.len()];
            }
            let mut start = 0;
            while start < entries.len() {
                if entries[start].is_none() {
                    start += 1;
                    continue;
                }
                let end = (start..entries.len())
                    .find(|&i| entries[i].is_none())
                    .unwrap_or(entries.len());
                if let Err(e) = self.backend.read_pages(first + start as u64, &mut outs[start..end]) {
                    tracing::warn!(first = first + start as u64, pages = end - start, error = %e, "swap read failed");
                    results[start..end].fill(Err(()));
                }
                start = end;
            }
        }
        // (A gap slot that cannot be read is no news of the device: only the stored pages count.)
        let read_failed = entries.iter().zip(&results).any(|(e, r)| e.is_some() && r.is_err());
        self.failing.store(read_failed, Ordering::Relaxed);
        for ((page, entry), result) in outs.iter_mut().zip(entries).zip(&mut results) {
            let (Some((entry, id)), Ok(())) = (entry, &result) else {
                continue;
            };
            if self.sealer.open(&mut page[..], *entry, *id).is_err() {
                // Not counted or reported here: the slot may have been freed and reused since
                // the caller looked (its page truncated or rewritten), and then the caller's
                // compare-and-set drops this result. `swap_in` reports what it poisons.
                *result = Err(());
            } else {
                self.stats.reads.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_read.fetch_add(PAGE_SIZE, Ordering::Relaxed);
            }
        }
        results
    }

    /// Whether the last swap I/O failed (other than a write refused for lack of space).
    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Give a slot back for reuse (deferred while a snapshot's capture pins it).
    pub(crate) fn free(&self, slot: u64) {
        self.slots.lock().free(slot);
    }

    /// Keep `slots` (in use) from being reused until unpinned: a snapshot will read them.
    pub(crate) fn pin(&self, slots: impl IntoIterator<Item = u64>) {
        let mut alloc = self.slots.lock();
        for s in slots {
            alloc.pin(s);
        }
    }

    /// Let go of pinned `slots`; frees deferred meanwhile happen now.
    pub(crate) fn unpin(&self, slots: impl IntoIterator<Item = u64>) {
        let mut alloc = self.slots.lock();
        for s in slots {
            alloc.unpin(s);
        }
    }

    #[cfg(any(test, feature = "test-util"))]
    /// Slots pinned now.
    pub(crate) fn pinned_slots(&self) -> usize {
        self.slots.lock().pinned()
    }

    /// Whether no slot is free at all (capacity reached): a store would fail at once.
    pub(crate) fn is_full(&self) -> bool {
        self.slots.lock().is_full()
    }

    /// Slots in use.
    pub(crate) fn used_slots(&self) -> u64 {
        self.slots.lock().used()
    }

    /// Slot capacity, if bounded.
    pub(crate) fn capacity_slots(&self) -> Option<u64> {
        self.slots.lock().capacity()
    }

    /// Bytes the backing file spans (highest slot ever in use since the last shrink).
    pub(crate) fn file_bytes(&self) -> u64 {
        self.slots.lock().high_water() * PAGE_SIZE
    }

    pub(crate) fn encrypted(&self) -> bool {
        self.sealer.encrypts()
    }
}
