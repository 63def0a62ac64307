//! A file's pages as an image sees them: captured by reference at the snapshot's epoch, then
//! read as runs of data and of reserved pages, in page order, without charging the RAM budget.
//!
//! [`FileData::capture`] takes the page list under the page-map read lock (the caller captures
//! the file's record for a snapshot, before any change alters it: `image/cow.rs`): resident
//! frames by `Arc` and *pinned* (a change to a pinned frame copies its bytes first, `Frame::change`), swapped pages
//! by their entry with the slot pinned (a free of it is deferred, so it is not reused under the
//! walker), compressed pages by their immutable pool entry, reserved and zero pages as they are. The
//! walker then reads the capture with no engine lock held across I/O: a frame's bytes (or its
//! pre-image) under its read lock, swapped pages with one `load_span` per run of consecutive
//! slots into scratch pages that are not frames (nothing is charged, nothing is published, the
//! page stays swapped), pool entries decompressed with no lock held, and compressed records in
//! swap (their slot pinned once per record, as a record slot holds several) read by their
//! sectors and decompressed the same way.

use super::page_map::Slot;
use super::FileData;
use crate::error::FsError;
use crate::mm::{Frame, MemoryManager, Packed, PAGE};
use crate::swap::{AlignedPage, PageId, RecordEntry, SwapEntry};
use crate::sync::Arc;

/// Pages looked at per batch, and most pages in one [`ImageRun::Data`].
const BATCH_PAGES: usize = 64;

/// A run of a file's pages, as the image records it.
pub(crate) enum ImageRun<'a> {
    /// Pages `first..first + bytes.len() / PAGE` hold `bytes` (data for `SEEK_DATA`).
    Data { first: u64, bytes: &'a [u8] },
    /// Pages `first..first + count` are reserved (fallocated, never written: zeros, no RAM).
    Reserved { first: u64, count: u64 },
}

/// One page of a capture.
enum Captured {
    /// A pinned frame: its bytes, or its pre-image if changed since.
    Resident(Arc<Frame>),
    Reserved,
    /// A pinned swap slot.
    Swapped(SwapEntry),
    /// An immutable pool entry.
    Packed(Arc<Packed>),
    /// A compressed record in swap, its slot pinned.
    Record(RecordEntry),
    Zero,
    Poisoned,
}

/// What captured pages hold beyond themselves: a swap slot pin per swapped page or record,
/// pinned frames, and the bytes of pool entries (`MemoryManager::hold_capture`).
#[derive(Default)]
struct Holds {
    slots: Vec<u64>,
    frames: u64,
    pool_bytes: u64,
}

impl Holds {
    fn add(&mut self, c: &Captured) {
        match c {
            Captured::Resident(_) => self.frames += 1,
            Captured::Swapped(e) => self.slots.push(e.slot),
            Captured::Record(r) => self.slots.push(r.slot()),
            Captured::Packed(p) => self.pool_bytes += p.cost(),
            Captured::Reserved | Captured::Zero | Captured::Poisoned => {}
        }
    }

    fn hold(&self, mm: &MemoryManager) {
        mm.hold_capture(&self.slots, self.frames, self.pool_bytes);
    }

    fn release(&self, mm: &MemoryManager) {
        mm.release_capture(&self.slots, self.frames, self.pool_bytes);
    }
}

/// A file's size and pages at a snapshot's epoch, holding what it references (frames and swap
/// slots pinned) until read or dropped.
pub(crate) struct CapturedFile {
    ino: u64,
    pages: Vec<(u64, Captured)>,
    /// Pages before this index are read (their pins let go).
    done: usize,
    mm: Arc<MemoryManager>,
}

/// One page of a batch, before its bytes are known.
enum Seen {
    Copied,
    Reserved,
    Swapped(SwapEntry),
    /// In the compressed pool: unpacked with no lock held.
    Packed(Arc<Packed>),
    /// A compressed record in swap: read and unpacked with no lock held.
    Record(RecordEntry),
    /// All zeros, stored as nothing.
    Zero,
}

impl FileData {
    /// Capture the size and the page list by reference (see the module docs).
    ///
    /// # Preconditions
    /// The caller holds the file's `Meta` lock and captures the file for the walking snapshot
    /// (`image/cow.rs`): no change has altered the file since the epoch (each captures it
    /// first), and none alters it during the call; eviction and swap-in, which only move pages,
    /// are held off by the page-map read lock taken here.
    pub(crate) fn capture(&self, mm: &Arc<MemoryManager>) -> CapturedFile {
        let map = self.pages.read();
        let mut pages = Vec::with_capacity(usize::try_from(self.charged_pages()).unwrap_or(0));
        let mut holds = Holds::default();
        for (idx, slot) in map.range(0, u64::MAX) {
            let c = match slot {
                Slot::Resident(f) => {
                    f.pin();
                    Captured::Resident(f.clone())
                }
                Slot::Reserved => Captured::Reserved,
                Slot::Swapped(e) => Captured::Swapped(*e),
                Slot::SwappedRecord(r) => Captured::Record(*r),
                Slot::Poisoned => Captured::Poisoned,
                Slot::Compressed(p) => Captured::Packed(p.clone()),
                Slot::Zero => Captured::Zero,
            };
            holds.add(&c);
            pages.push((idx, c));
        }
        // Under the map lock: a swap-in cannot move these pages (and free nothing) meanwhile.
        holds.hold(mm);
        drop(map);
        CapturedFile {
            ino: self.ino,
            pages,
            done: 0,
            mm: mm.clone(),
        }
    }
}

impl CapturedFile {
    /// Call `visit` for each run of non-hole pages in page order, as they were at the epoch.
    /// Resident, swapped, compressed and zero pages are data; reserved pages are their own runs.
    /// Each page's pin is let go once it is read. Called with no engine lock held.
    ///
    /// # Errors
    /// `Io` for a page whose data is lost (poisoned, or its swap copy unreadable); `visit`'s
    /// error, which ends the walk. Returns the number of pre-images used (pages changed after
    /// the epoch, read from their copy).
    pub(crate) fn for_each_image_run<E: From<FsError>>(
        &mut self,
        mut visit: impl FnMut(ImageRun<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<u64, E> {
        let mut data: Vec<u8> = Vec::new();
        let mut data_first = 0u64;
        let mut pre_images = 0u64;
        while self.done < self.pages.len() {
            let end = (self.done + BATCH_PAGES).min(self.pages.len());
            let mut batch: Vec<(u64, Seen)> = Vec::with_capacity(end - self.done);
            let mut copies: Vec<u8> = Vec::new();
            let mut holds = Holds::default();
            if self.pages[self.done..end]
                .iter()
                .any(|(_, c)| matches!(c, Captured::Poisoned))
            {
                return Err(FsError::Io.into());
            }
            for (idx, c) in &self.pages[self.done..end] {
                holds.add(c);
                let seen = match c {
                    Captured::Resident(f) => {
                        pre_images += u64::from(f.take_for_image(&mut copies));
                        Seen::Copied
                    }
                    Captured::Reserved => Seen::Reserved,
                    Captured::Swapped(e) => Seen::Swapped(*e),
                    Captured::Record(r) => Seen::Record(*r),
                    Captured::Packed(p) => Seen::Packed(p.clone()),
                    Captured::Zero | Captured::Poisoned => Seen::Zero,
                };
                batch.push((*idx, seen));
            }
            let loaded = self.load_swapped(&batch);
            // Records are read (while their slots are pinned) and unpacked with pool entries.
            let unpacked = self.unpack_pooled(&mut batch, &mut copies);
            // The batch is read (or lost): its pins go.
            holds.release(&self.mm);
            // Frames read are let go now, not when the whole file is: a frame eviction already
            // took out of the map stays charged while held.
            for (_, c) in &mut self.pages[self.done..end] {
                *c = Captured::Zero;
            }
            self.done = end;
            let loaded = loaded?;
            unpacked?;
            emit(&batch, &copies, &loaded, &mut data, &mut data_first, &mut visit)?;
        }
        if !data.is_empty() {
            visit(ImageRun::Data {
                first: data_first,
                bytes: &data,
            })?;
        }
        Ok(pre_images)
    }

    /// Let go of the pins of pages `from..` (a walk that stopped, or a capture never read).
    fn release_from(&mut self, from: usize) {
        let mut holds = Holds::default();
        for (_, c) in &self.pages[from..] {
            holds.add(c);
            if let Captured::Resident(f) = c {
                f.unpin();
            }
        }
        holds.release(&self.mm);
        self.done = self.pages.len();
    }

    /// Turn `batch`'s pooled, record and zero pages into copied ones, in page order within
    /// `copies`: the record reads and the decompression run here, with no lock held
    /// (design.md's lock order); the records' slots are pinned by the caller.
    fn unpack_pooled(&self, batch: &mut [(u64, Seen)], copies: &mut Vec<u8>) -> Result<(), FsError> {
        if !batch
            .iter()
            .any(|(_, s)| matches!(s, Seen::Packed(_) | Seen::Record(_) | Seen::Zero))
        {
            return Ok(());
        }
        let old = std::mem::take(copies);
        let mut old_pages = old.chunks_exact(PAGE);
        for (idx, seen) in batch.iter_mut() {
            match seen {
                Seen::Copied => copies.extend_from_slice(old_pages.next().ok_or(FsError::Io)?),
                Seen::Packed(p) => {
                    let mut page = Box::new([0u8; PAGE]);
                    p.unpack_into(&mut page).map_err(|()| FsError::Io)?;
                    copies.extend_from_slice(&page[..]);
                    *seen = Seen::Copied;
                }
                Seen::Record(r) => {
                    let swap = self.mm.swap()?;
                    let mut buf = AlignedPage::for_overwrite().map_err(|_| FsError::Io)?;
                    let id = PageId {
                        ino: self.ino,
                        idx: *idx,
                    };
                    let range = swap.load_record(*r, id, &mut buf).map_err(|()| FsError::Io)?;
                    let mut page = Box::new([0u8; PAGE]);
                    self.mm.unpack_record(&buf[range], &mut page)?;
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
    /// into scratch pages that are not charged to the budget. Their slots are pinned.
    fn load_swapped(&self, batch: &[(u64, Seen)]) -> Result<Vec<AlignedPage>, FsError> {
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
        let swap = self.mm.swap()?;
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
                bufs.push(AlignedPage::for_overwrite().map_err(|_| FsError::Io)?);
            }
            let entries: Vec<_> = run
                .iter()
                .map(|&(i, e)| Some((e, PageId { ino: self.ino, idx: i })))
                .collect();
            let results = {
                let mut outs: Vec<&mut AlignedPage> = bufs.iter_mut().collect();
                swap.load_span(run[0].1.slot, &entries, &mut outs)
            };
            if results.iter().any(Result::is_err) {
                return Err(FsError::Io);
            }
            pages.extend(bufs);
            start = end;
        }
        Ok(pages)
    }
}

impl Drop for CapturedFile {
    fn drop(&mut self) {
        if self.done < self.pages.len() {
            self.release_from(self.done);
        }
    }
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
