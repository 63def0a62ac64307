//! Swap backends for tests, behind the `test-util` feature: [`MemorySwap`] keeps pages in a map
//! (the swap tier without a disk), [`FaultySwap`] wraps another backend and fails its I/O on
//! command ([`FaultControl`]). Neither is part of the daemon.

use std::collections::HashMap;
use std::io;

use super::{AlignedPage, SwapBackend};
use crate::sync::{Arc, AtomicBool, AtomicU64, LockRank, Mutex, Ordering};

/// Pages kept in a map in memory: for tests and for measuring the engine without a disk.
pub struct MemorySwap {
    pages: Mutex<HashMap<u64, Box<[u8]>>>,
    capacity: Option<u64>,
}

impl MemorySwap {
    /// An in-memory backend holding at most `capacity` slots.
    #[must_use]
    pub fn new(capacity: Option<u64>) -> MemorySwap {
        MemorySwap {
            pages: Mutex::new(LockRank::MemoryBackend, HashMap::new()),
            capacity,
        }
    }
}

impl SwapBackend for MemorySwap {
    fn write_page(&self, slot: u64, page: &AlignedPage) -> io::Result<()> {
        self.pages.lock().insert(slot, page.to_vec().into_boxed_slice());
        Ok(())
    }

    fn read_page(&self, slot: u64, page: &mut AlignedPage) -> io::Result<()> {
        let pages = self.pages.lock();
        let data = pages
            .get(&slot)
            .ok_or_else(|| io::Error::other(format!("slot {slot} never written")))?;
        page.copy_from_slice(data);
        Ok(())
    }

    fn capacity_slots(&self) -> Option<u64> {
        self.capacity
    }
}

/// Switches of a [`FaultySwap`], shared with the test that flips them.
#[derive(Debug, Default)]
pub struct FaultControl {
    /// Fail every write with an I/O error.
    pub fail_writes: AtomicBool,
    /// Fail every read with an I/O error.
    pub fail_reads: AtomicBool,
    /// Flip a bit of every page read (authentication must catch it).
    pub corrupt_reads: AtomicBool,
    /// Fail writes as a full filesystem does (`ENOSPC`): a write that would grow the file
    /// (past every slot written so far) fails; a slot already written can be rewritten.
    pub disk_full: AtomicBool,
    /// Writes that failed because of a switch.
    pub injected: AtomicU64,
}

/// A backend that injects faults into another, for tests.
pub struct FaultySwap {
    inner: Box<dyn SwapBackend>,
    control: Arc<FaultControl>,
    /// One past the highest slot written: the file's size, for `disk_full`.
    spanned: AtomicU64,
}

impl FaultySwap {
    /// Wrap `inner`; the returned control flips faults on and off.
    #[must_use]
    pub fn new(inner: Box<dyn SwapBackend>) -> (FaultySwap, Arc<FaultControl>) {
        let control = Arc::new(FaultControl::default());
        (
            FaultySwap {
                inner,
                control: control.clone(),
                spanned: AtomicU64::new(0),
            },
            control,
        )
    }
}

impl SwapBackend for FaultySwap {
    fn write_page(&self, slot: u64, page: &AlignedPage) -> io::Result<()> {
        if self.control.disk_full.load(Ordering::Relaxed) && slot >= self.spanned.load(Ordering::Relaxed) {
            self.control.injected.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if self.control.fail_writes.load(Ordering::Relaxed) {
            self.control.injected.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.write_page(slot, page)?;
        self.spanned.fetch_max(slot + 1, Ordering::Relaxed);
        Ok(())
    }

    fn read_page(&self, slot: u64, page: &mut AlignedPage) -> io::Result<()> {
        if self.control.fail_reads.load(Ordering::Relaxed) {
            self.control.injected.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.read_page(slot, page)?;
        if self.control.corrupt_reads.load(Ordering::Relaxed) {
            page[17] ^= 0x40;
        }
        Ok(())
    }

    fn capacity_slots(&self) -> Option<u64> {
        self.inner.capacity_slots()
    }

    // write_pages/read_pages: the trait's page-by-page defaults, so that every page goes through
    // the fault switches above.
}
