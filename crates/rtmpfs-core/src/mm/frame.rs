//! One page of file data in RAM, as the memory manager sees it.

use rtmpfs_pages::PageBuf;

use super::budget::FrameCharge;
use crate::swap::SwapCopy;
use crate::sync::{Arc, AtomicBool, AtomicU64, LockRank, Mutex, Ordering, ReadGuard, RwLock};

/// Bytes in one page, as `usize`: the page pool's page (the one definition of the page size;
/// [`crate::PAGE_SIZE`] is the same as `u64`).
pub(crate) const PAGE: usize = rtmpfs_pages::PAGE;

/// One page of file data in RAM.
///
/// Rule: the bytes change only under the owning page map's **read** lock plus the frame's write
/// lock (through [`Frame::change`], which bumps `version`); slot transitions happen only under
/// the page map's **write** lock. So a thread holding the map's write lock sees a stable
/// `version`, which is how the evictor knows that the copy it wrote to swap is still the page's
/// content.
pub(crate) struct Frame {
    /// Rank `Frame`. The page comes from the page pool (`rtmpfs-pages`), which gives freed
    /// pages' RAM back to the kernel.
    data: RwLock<PageBuf>,
    /// Bumped by every change to `data`.
    version: AtomicU64,
    /// CLOCK reference bit: set on every access, cleared by the evictor's sweep.
    referenced: AtomicBool,
    /// A swap copy identical to `data` (swapped in, not changed since): evicting the page again
    /// needs no I/O. Rank `SwapCopy` (a leaf). Taken (and its slot or record freed) by the first
    /// change.
    swap_copy: Mutex<Option<SwapCopy>>,
    /// The compressed tier found these bytes incompressible once: evictions send the page
    /// straight to swap without trying again (see `mm/pool.rs`).
    incompressible: AtomicBool,
    /// A snapshot's capture holds this frame and has not read it yet: the first change copies
    /// the bytes to `pre_image` first (copy-on-write, `docs/design.md` "Snapshots").
    pinned: AtomicBool,
    /// The bytes as the capture saw them, copied by the first change while `pinned`. Rank
    /// `PreImage` (a leaf), taken under the bytes' lock.
    pre_image: Mutex<Option<Box<[u8]>>>,
    /// The RAM budget this frame is charged to, released when it is dropped.
    _charge: FrameCharge,
}

impl Frame {
    /// A frame holding `data`, charged by `charge` (released when the frame is dropped).
    pub(crate) fn new(charge: FrameCharge, data: PageBuf) -> Arc<Frame> {
        Arc::new(Frame {
            data: RwLock::new(LockRank::Frame, data),
            version: AtomicU64::new(0),
            referenced: AtomicBool::new(true),
            swap_copy: Mutex::new(LockRank::SwapCopy, None),
            incompressible: AtomicBool::new(false),
            pinned: AtomicBool::new(false),
            pre_image: Mutex::new(LockRank::PreImage, None),
            _charge: charge,
        })
    }

    /// Whether the compressed tier gave up on these bytes (see `mm/pool.rs`).
    pub(crate) fn incompressible(&self) -> bool {
        self.incompressible.load(Ordering::Relaxed)
    }

    /// Remember that these bytes do not compress: later evictions go straight to swap.
    pub(crate) fn mark_incompressible(&self) {
        self.incompressible.store(true, Ordering::Relaxed);
    }

    /// Mark as used (CLOCK).
    pub(crate) fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// Clear the reference bit; returns whether it was set (the frame gets a second chance).
    pub(crate) fn take_referenced(&self) -> bool {
        self.referenced.swap(false, Ordering::Relaxed)
    }

    /// The bytes, for reading. Caller holds the owning page map's lock (read or write).
    pub(crate) fn bytes(&self) -> ReadGuard<'_, PageBuf> {
        self.data.read()
    }

    /// The bytes, for reading, if no writer holds them (the evictor's snapshot).
    pub(crate) fn try_bytes(&self) -> Option<ReadGuard<'_, PageBuf>> {
        self.data.try_read()
    }

    /// Apply `change` to the bytes and bump the version; marks the frame used. Caller holds the
    /// owning page map's read lock. Returns the swap copy the page had, now stale: the caller
    /// frees its slot.
    pub(crate) fn change(&self, change: impl FnOnce(&mut [u8; PAGE])) -> Option<SwapCopy> {
        let mut bytes = self.data.write();
        if self.pinned.load(Ordering::Acquire) {
            let mut pre = self.pre_image.lock();
            if pre.is_none() {
                *pre = Some(bytes[..].into());
            }
        }
        change(&mut bytes);
        self.version.fetch_add(1, Ordering::AcqRel);
        self.touch();
        // Still under the bytes' write lock: no snapshot can see the new version with the old
        // swap copy.
        let stale = self.take_swap_copy();
        drop(bytes);
        stale
    }

    /// A snapshot's capture holds this frame: changes copy the bytes first, until
    /// [`Frame::take_for_image`] or [`Frame::unpin`]. Caller holds the owning page map's lock.
    pub(crate) fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// Append the bytes as they were when pinned to `out` (the pre-image if a change came
    /// since, else the bytes), and let go of the pin. Returns whether a pre-image was used.
    pub(crate) fn take_for_image(&self, out: &mut Vec<u8>) -> bool {
        let bytes = self.data.read();
        self.pinned.store(false, Ordering::Release);
        let pre = self.pre_image.lock().take();
        if let Some(p) = pre {
            out.extend_from_slice(&p);
            true
        } else {
            out.extend_from_slice(&bytes[..]);
            false
        }
    }

    /// Let go of the pin without reading (a capture dropped before its walk reached it).
    pub(crate) fn unpin(&self) {
        let _bytes = self.data.read();
        self.pinned.store(false, Ordering::Release);
        self.pre_image.lock().take();
    }

    /// The version: how many changes the bytes have seen.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The still-valid swap copy of these bytes, if any.
    pub(crate) fn swap_copy(&self) -> Option<SwapCopy> {
        *self.swap_copy.lock()
    }

    /// Record that `e` holds the same bytes (the frame was just read back from it).
    pub(crate) fn set_swap_copy(&self, e: SwapCopy) {
        *self.swap_copy.lock() = Some(e);
    }

    /// Forget the swap copy and return it (its slot or record is the caller's to free).
    pub(crate) fn take_swap_copy(&self) -> Option<SwapCopy> {
        self.swap_copy.lock().take()
    }
}
