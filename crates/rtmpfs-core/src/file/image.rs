//! A file's pages as an image sees them: runs of data and of reserved pages, in page order,
//! read without charging the RAM budget.
//!
//! Resident pages are copied under the page-map read lock (as [`FileData::read`] copies them);
//! swapped pages are read, as `swap_in` reads them, with one `load_span` per run of consecutive
//! slots, but into scratch pages that are not frames: nothing is charged to the budget, nothing
//! is published, and the page stays swapped. The caller holds the snapshot gate, so no page's
//! *contents* change meanwhile; eviction and swap-in (which only move a page) may, and a swapped
//! page whose load failed is looked at again before it counts as lost. A compressed record in
//! swap is read and decompressed into the batch's copies, with no lock held, the same way.

use super::page_map::{Slot, SlotState};
use super::FileData;
use crate::error::FsError;
use crate::mm::{MemoryManager, PAGE};
use crate::swap::{AlignedPage, RecordEntry, SwapEntry};

/// Pages looked at per hold of the page-map lock, and most pages in one [`ImageRun::Data`].
const BATCH_PAGES: usize = 64;

/// A run of a file's pages, as the image records it.
pub(crate) enum ImageRun<'a> {
    /// Pages `first..first + bytes.len() / PAGE` hold `bytes` (data for `SEEK_DATA`).
    Data { first: u64, bytes: &'a [u8] },
    /// Pages `first..first + count` are reserved (fallocated, never written: zeros, no RAM).
    Reserved { first: u64, count: u64 },
}

/// One page of a batch, before its bytes are known.
enum Seen {
    Copied,
    Reserved,
    Swapped(SwapEntry),
    /// In the compressed pool: unpacked once the map lock is let go (never under it).
    Packed(crate::sync::Arc<crate::mm::Packed>),
    /// A compressed record in swap: read and unpacked once the map lock is let go.
    Record(RecordEntry),
    /// All zeros, stored as nothing.
    Zero,
}

impl FileData {
    /// Call `visit` for each run of non-hole pages in page order. Resident and swapped pages are
    /// data; reserved pages are their own runs.
    ///
    /// # Preconditions
    /// No page's contents change during the call (the caller holds the snapshot gate). No lock
    /// is held by the caller.
    ///
    /// # Errors
    /// `Io` for a page whose data is lost (poisoned, or its swap copy unreadable); `visit`'s
    /// error, which ends the walk.
    pub(crate) fn for_each_image_run<E: From<FsError>>(
        &self,
        mm: &MemoryManager,
        mut visit: impl FnMut(ImageRun<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut next = 0u64;
        let mut data: Vec<u8> = Vec::new();
        let mut data_first = 0u64;
        loop {
            let mut batch: Vec<(u64, Seen)> = Vec::with_capacity(BATCH_PAGES);
            let mut copies: Vec<u8> = Vec::new();
            {
                let map = self.pages.read();
                for (idx, slot) in map.range(next, u64::MAX).take(BATCH_PAGES) {
                    let seen = match slot {
                        Slot::Resident(frame) => {
                            copies.extend_from_slice(&frame.bytes()[..]);
                            Seen::Copied
                        }
                        Slot::Reserved => Seen::Reserved,
                        Slot::Swapped(e) => Seen::Swapped(*e),
                        Slot::Poisoned => return Err(FsError::Io.into()),
                        Slot::Compressed(p) => Seen::Packed(p.clone()),
                        Slot::SwappedRecord(r) => Seen::Record(*r),
                        Slot::Zero => Seen::Zero,
                    };
                    batch.push((idx, seen));
                }
            }
            let loaded = match self
                .unpack_pooled(mm, &mut batch, &mut copies)
                .and_then(|()| self.load_swapped(mm, &batch))
            {
                Ok(pages) => pages,
                // A page that failed to load is lost if its slot still holds what was read;
                // otherwise it moved (swapped in, evicted again): the batch is looked at again.
                Err(Retry(idx, seen)) => {
                    if self.pages.read().state(idx) == seen {
                        return Err(FsError::Io.into());
                    }
                    continue;
                }
            };
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            Self::emit(&batch, &copies, &loaded, &mut data, &mut data_first, &mut visit)?;
            next = last + 1;
        }
        if !data.is_empty() {
            visit(ImageRun::Data {
                first: data_first,
                bytes: &data,
            })?;
        }
        Ok(())
    }

    /// Turn `batch`'s pooled, zero and record pages into copied ones, in page order within
    /// `copies`: the reads and decompression run here, with no lock held (design.md's lock
    /// order). A page that fails is `Retry` (the caller decides whether it moved or is lost).
    fn unpack_pooled(
        &self,
        mm: &MemoryManager,
        batch: &mut [(u64, Seen)],
        copies: &mut Vec<u8>,
    ) -> std::result::Result<(), Retry> {
        if !batch
            .iter()
            .any(|(_, s)| matches!(s, Seen::Packed(_) | Seen::Record(_) | Seen::Zero))
        {
            return Ok(());
        }
        let old = std::mem::take(copies);
        let mut old_pages = old.chunks_exact(PAGE);
        for (idx, seen) in batch.iter_mut() {
            let retry = Retry(*idx, SlotState::Hole);
            match seen {
                Seen::Copied => copies.extend_from_slice(old_pages.next().ok_or(retry)?),
                Seen::Packed(p) => {
                    let mut page = Box::new([0u8; PAGE]);
                    p.unpack_into(&mut page)
                        .map_err(|()| Retry(*idx, SlotState::Compressed(p.id())))?;
                    copies.extend_from_slice(&page[..]);
                    *seen = Seen::Copied;
                }
                Seen::Record(r) => {
                    let retry = Retry(*idx, SlotState::SwappedRecord(*r));
                    let swap = mm.swap().map_err(|_| retry)?;
                    let mut buf = AlignedPage::for_overwrite().map_err(|_| retry)?;
                    let range = swap.load_record(*r, self.page_id(*idx), &mut buf).map_err(|()| retry)?;
                    let mut page = Box::new([0u8; PAGE]);
                    mm.unpack_record(&buf[range], &mut page).map_err(|_| retry)?;
                    copies.extend_from_slice(&page[..]);
                    *seen = Seen::Copied;
                }
                Seen::Zero => {
                    copies.resize(copies.len() + PAGE, 0);
                    *seen = Seen::Copied;
                }
                Seen::Reserved | Seen::Swapped(_) => {}
            }
        }
        Ok(())
    }

    /// Read the swapped pages of `batch` (consecutive slots of consecutive pages in one I/O),
    /// into scratch pages that are not charged to the budget. The first page that fails to load
    /// is `Retry` (the caller decides whether it moved or is lost).
    fn load_swapped(&self, mm: &MemoryManager, batch: &[(u64, Seen)]) -> std::result::Result<Vec<AlignedPage>, Retry> {
        let swapped: Vec<(u64, SwapEntry)> = batch
            .iter()
            .filter_map(|(i, s)| match s {
                Seen::Swapped(e) => Some((*i, *e)),
                _ => None,
            })
            .collect();
        let mut pages = Vec::with_capacity(swapped.len());
        if swapped.is_empty() {
            return Ok(pages);
        }
        let Ok(swap) = mm.swap() else {
            return Err(Retry(swapped[0].0, SlotState::Swapped(swapped[0].1)));
        };
        let mut start = 0;
        while start < swapped.len() {
            let mut end = start + 1;
            while end < swapped.len()
                && swapped[end].0 == swapped[end - 1].0 + 1
                && swapped[end].1.slot == swapped[end - 1].1.slot + 1
            {
                end += 1;
            }
            let run = &swapped[start..end];
            let mut bufs: Vec<AlignedPage> = Vec::with_capacity(run.len());
            for _ in run {
                bufs.push(AlignedPage::for_overwrite().map_err(|_| Retry(run[0].0, SlotState::Swapped(run[0].1)))?);
            }
            let entries: Vec<_> = run.iter().map(|&(i, e)| Some((e, self.page_id(i)))).collect();
            let results = {
                let mut outs: Vec<&mut AlignedPage> = bufs.iter_mut().collect();
                swap.load_span(run[0].1.slot, &entries, &mut outs)
            };
            if let Some(bad) = results.iter().position(Result::is_err) {
                return Err(Retry(run[bad].0, SlotState::Swapped(run[bad].1)));
            }
            pages.extend(bufs);
            start = end;
        }
        Ok(pages)
    }

    /// Hand the pages of `batch` to `visit`, data pages gathered into runs of consecutive pages
    /// (`data` starting at page `data_first`), reserved pages as runs of their own.
    fn emit<E: From<FsError>>(
        batch: &[(u64, Seen)],
        copies: &[u8],
        loaded: &[AlignedPage],
        data: &mut Vec<u8>,
        data_first: &mut u64,
        visit: &mut impl FnMut(ImageRun<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let (mut copied, mut swapped) = (copies.chunks_exact(PAGE), loaded.iter());
        let mut reserved: Option<(u64, u64)> = None;
        for (idx, seen) in batch {
            let bytes: &[u8] = match seen {
                Seen::Reserved => {
                    match &mut reserved {
                        Some((first, count)) if *first + *count == *idx => *count += 1,
                        _ => {
                            if let Some((first, count)) = reserved.replace((*idx, 1)) {
                                visit(ImageRun::Reserved { first, count })?;
                            }
                        }
                    }
                    continue;
                }
                Seen::Copied => copied.next().ok_or(FsError::Io)?,
                // Unpacked into copies by `unpack_pooled` before the batch gets here.
                Seen::Packed(_) | Seen::Record(_) | Seen::Zero => return Err(FsError::Io.into()),
                Seen::Swapped(_) => &swapped.next().ok_or(FsError::Io)?[..],
            };
            let contiguous = *data_first + (data.len() / PAGE) as u64 == *idx;
            if !data.is_empty() && (!contiguous || data.len() >= BATCH_PAGES * PAGE) {
                visit(ImageRun::Data {
                    first: *data_first,
                    bytes: data,
                })?;
                data.clear();
            }
            if data.is_empty() {
                *data_first = *idx;
            }
            data.extend_from_slice(bytes);
        }
        if let Some((first, count)) = reserved {
            visit(ImageRun::Reserved { first, count })?;
        }
        Ok(())
    }
}

/// A stored page (index, state seen) that failed to load.
#[derive(Clone, Copy)]
struct Retry(u64, SlotState);
