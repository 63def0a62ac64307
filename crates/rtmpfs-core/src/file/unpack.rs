//! Bringing a compressed page back from the pool: a fault (read) or a write on a `Compressed`
//! slot. The entry is cloned under the page-map lock and decompressed with no lock held; the
//! frame is published by compare-and-set against the entry seen, as a swap-in is.

use super::page_map::{Slot, SlotState};
use super::FileData;
use crate::error::{FsError, Result};
use crate::mm::{MemoryManager, Packed, PageState, UnpackCharge, PAGE};
use crate::sync::Arc;

impl FileData {
    /// Page `idx` was seen holding pool entry `packed`: decompress it into a new frame, charged
    /// as `how` allows, and publish it resident, unless the slot changed meanwhile (then the
    /// caller looks again). Returns `false` when no frame could be had: the page stays
    /// compressed, and a reader copies its bytes straight from the entry
    /// ([`FileData::unpack_into_buffer`]).
    ///
    /// # Errors
    /// `Io` if the entry does not decompress (a bug: entries never change).
    pub(super) fn unpack(&self, mm: &MemoryManager, idx: u64, packed: &Arc<Packed>, how: UnpackCharge) -> Result<bool> {
        let Some(frame) = mm.unpack_frame(packed, how)? else {
            return Ok(false);
        };
        let mut map = self.pages.write();
        if map.state(idx) != SlotState::Compressed(packed.id()) {
            // Faulted in by another thread, rewritten, removed or written back: look again.
            return Ok(true);
        }
        mm.count_moved(PageState::Compressed, PageState::Resident);
        let old = map.insert(idx, Slot::Resident(frame.clone()));
        drop(map);
        // The pool entry's charge goes back here (if no one else holds it), with no lock held.
        drop(old);
        mm.track(&self.owner, idx, &frame, false);
        Ok(true)
    }

    /// Copy bytes `[from, from + out.len())` of compressed page `packed` into `out`, with no
    /// frame: for a reader that could not have one.
    ///
    /// # Errors
    /// `Io` if the entry does not decompress.
    pub(super) fn unpack_into_buffer(mm: &MemoryManager, packed: &Packed, from: usize, out: &mut [u8]) -> Result<()> {
        let mut page = [0u8; PAGE];
        packed.unpack_into(&mut page).map_err(|()| FsError::Io)?;
        out.copy_from_slice(&page[from..from + out.len()]);
        mm.note_pool_hit();
        Ok(())
    }
}
