//! The file side of eviction: the two phases the memory manager drives through
//! [`crate::mm::PageOwner`] (implemented by the inode, which delegates here).

use super::page_map::{PageMap, Slot, SlotState};
use super::FileData;
use crate::error::Result;
use crate::mm::{EvictOutcome, EvictPage, EvictSnapshot, EvictTarget, Frame, MemoryManager, PageState};
use crate::swap::{AlignedPage, RecordEntry, SwapCopy};
use crate::sync::Arc;

/// Whether page `idx` of `map` is resident in exactly `frame`.
fn is_frame_at(map: &PageMap, idx: u64, frame: &Arc<Frame>) -> bool {
    matches!(map.get(idx), Some(Slot::Resident(f)) if Arc::ptr_eq(f, frame))
}

impl FileData {
    /// See [`crate::mm::PageOwner::evict_snapshot`].
    pub(crate) fn evict_snapshot(&self, idx: u64, frame: &Arc<Frame>) -> Result<EvictSnapshot, EvictOutcome> {
        let map = self.pages.try_read().ok_or(EvictOutcome::Busy)?;
        if !is_frame_at(&map, idx, frame) {
            return Err(EvictOutcome::Gone);
        }
        let bytes = frame.try_bytes().ok_or(EvictOutcome::Busy)?;
        let version = frame.version();
        let slot_hint = match idx.checked_sub(1).and_then(|prev| map.get(prev)) {
            Some(Slot::Swapped(e)) => Some(e.slot + 1),
            Some(Slot::Resident(f)) => match f.swap_copy() {
                Some(SwapCopy::Page(o)) => Some(o.slot + 1),
                _ => None,
            },
            _ => None,
        };
        let id = self.page_id(idx);
        Ok(if let Some(o) = frame.swap_copy() {
            EvictSnapshot {
                version,
                swap_copy: Some(o),
                copy: None,
                id,
                slot_hint,
            }
        } else {
            let mut copy = AlignedPage::for_overwrite().map_err(|_| EvictOutcome::Busy)?;
            copy.copy_from_slice(&bytes[..]);
            EvictSnapshot {
                version,
                swap_copy: None,
                copy: Some(copy),
                id,
                slot_hint,
            }
        })
    }

    /// See [`crate::mm::PageOwner::evict_publish`].
    pub(crate) fn evict_publish(&self, mm: &MemoryManager, page: EvictPage<'_>, target: EvictTarget) -> EvictOutcome {
        let EvictPage { idx, frame, version } = page;
        let give_up = |outcome| {
            match target {
                EvictTarget::Written(e) => mm.free_swap_slot(e),
                EvictTarget::Record(r) => mm.free_swap_record(r),
                _ => {}
            }
            // (A pool entry's charge goes back as `target` is dropped.)
            outcome
        };
        let Some(mut map) = self.pages.try_write() else {
            return give_up(EvictOutcome::Busy);
        };
        if !is_frame_at(&map, idx, frame) {
            drop(map);
            return give_up(EvictOutcome::Gone);
        }
        if frame.version() != version {
            drop(map);
            return give_up(EvictOutcome::Busy);
        }
        if let EvictTarget::Kept(e) = target {
            if frame.take_swap_copy() != Some(e) {
                return EvictOutcome::Busy;
            }
        }
        let outcome = target.outcome();
        let new = match target {
            EvictTarget::Written(e) | EvictTarget::Kept(SwapCopy::Page(e)) => Slot::Swapped(e),
            EvictTarget::Record(r) | EvictTarget::Kept(SwapCopy::Record(r)) => Slot::SwappedRecord(r),
            EvictTarget::Pool(p) => Slot::Compressed(p),
            EvictTarget::Zero => Slot::Zero,
        };
        mm.count_moved(PageState::Resident, new.counted());
        let old = map.insert(idx, new);
        drop(map);
        drop(old);
        outcome
    }

    /// See [`crate::mm::PageOwner::pool_written_back`].
    pub(crate) fn pool_written_back(&self, mm: &MemoryManager, idx: u64, packed_id: u64, entry: RecordEntry) -> bool {
        let mut map = self.pages.write();
        if map.state(idx) != SlotState::Compressed(packed_id) {
            return false;
        }
        mm.count_moved(PageState::Compressed, PageState::Swapped);
        let old = map.insert(idx, Slot::SwappedRecord(entry));
        drop(map);
        // The pool entry's charge goes back here, with no lock held.
        drop(old);
        true
    }
}
