//! The `size` and `nr_inodes` limits, as reservations on atomic counters.
//!
//! Reserve before you allocate: every charge is a compare-and-swap loop that fails with
//! `NoSpace` without side effects, so a failed operation leaves the counters as they were.

use crate::error::{FsError, Result};
use crossbeam_utils::CachePadded;

use crate::ids::Striped;
use crate::sync::{AtomicU64, Ordering};

/// Inode space charged per inode and per extra hard link, as tmpfs's `BOGO_INODE_SIZE`.
pub(crate) const BOGO_INODE_SIZE: u64 = 1024;

/// Directory size per entry, as tmpfs's `BOGO_DIRENT_SIZE`.
pub(crate) const BOGO_DIRENT_SIZE: u64 = 20;

/// Inode space charged for an xattr, as Linux's `simple_xattr_space()`: a fixed 40 bytes plus the
/// full name and the value.
pub(crate) fn xattr_space(name_len: usize, value_len: usize) -> u64 {
    40 + name_len as u64 + value_len as u64
}

/// A counter with an optional ceiling, charged by compare-and-swap. The ceiling can change at
/// run time (remount); `UNLIMITED` stands for none.
///
/// Without a ceiling there is nothing to compare against, so charges and uncharges go to the
/// calling thread's stripe of a `Striped` counter instead of one shared atomic (which every
/// create and unlink would otherwise bounce between CPUs). With one, `used` is shared and exact;
/// what was charged to stripes before a ceiling was set still counts against it.
pub(crate) struct Budget {
    max: AtomicU64,
    used: CachePadded<AtomicU64>,
    striped: Striped,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Budget {{ max: {:?}, used: {} }}", self.max(), self.used())
    }
}

const UNLIMITED: u64 = u64::MAX;

impl Budget {
    pub(crate) fn new(max: Option<u64>) -> Self {
        Budget {
            max: AtomicU64::new(max.unwrap_or(UNLIMITED)),
            used: CachePadded::new(AtomicU64::new(0)),
            striped: Striped::new(),
        }
    }

    /// Change the ceiling (remount); the caller checked it is not below what is used.
    pub(crate) fn set_max(&self, max: u64) {
        self.max.store(max, Ordering::Relaxed);
    }

    fn striped_used(&self) -> u64 {
        u64::try_from(self.striped.sum()).unwrap_or(0)
    }

    /// Charge `n` units, or fail with `NoSpace` and charge nothing.
    pub(crate) fn charge(&self, n: u64) -> Result<()> {
        let Some(max) = self.max() else {
            self.striped.add(i64::try_from(n).map_err(|_| FsError::NoSpace)?);
            return Ok(());
        };
        let striped = self.striped_used();
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let next = cur
                .checked_add(n)
                .filter(|&v| v.saturating_add(striped) <= max)
                .ok_or(FsError::NoSpace)?;
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Give back `n` units charged earlier.
    pub(crate) fn uncharge(&self, n: u64) {
        let n_signed = i64::try_from(n).unwrap_or(i64::MAX);
        if self.max().is_none() {
            self.striped.add(-n_signed);
            return;
        }
        // Units charged to stripes before a ceiling was set come back there.
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let take = cur.min(n);
            match self
                .used
                .compare_exchange_weak(cur, cur - take, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if take < n {
                        self.striped.add(-i64::try_from(n - take).unwrap_or(i64::MAX));
                    }
                    return;
                }
                Err(seen) => cur = seen,
            }
        }
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed).saturating_add(self.striped_used())
    }

    pub(crate) fn max(&self) -> Option<u64> {
        Some(self.max.load(Ordering::Relaxed)).filter(|&m| m != UNLIMITED)
    }

    /// Units still free, or `None` when unlimited.
    pub(crate) fn free(&self) -> Option<u64> {
        self.max().map(|m| m.saturating_sub(self.used()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_respects_ceiling_and_fails_cleanly() {
        let b = Budget::new(Some(10));
        b.charge(7).unwrap();
        assert_eq!(b.charge(4), Err(FsError::NoSpace));
        assert_eq!(b.used(), 7);
        b.charge(3).unwrap();
        assert_eq!(b.free(), Some(0));
        b.uncharge(10);
        assert_eq!(b.used(), 0);
        assert_eq!(b.charge(u64::MAX), Err(FsError::NoSpace));
    }

    #[test]
    fn charges_made_while_unlimited_count_after_a_ceiling_is_set() {
        let b = Budget::new(None);
        b.charge(6).unwrap();
        b.set_max(10);
        assert_eq!(b.used(), 6);
        assert_eq!(b.charge(5), Err(FsError::NoSpace));
        b.charge(4).unwrap();
        b.uncharge(10);
        assert_eq!(b.used(), 0);
        b.charge(10).unwrap();
    }

    #[test]
    fn unlimited_never_fails() {
        let b = Budget::new(None);
        b.charge(1 << 40).unwrap();
        assert_eq!(b.free(), None);
    }
}
