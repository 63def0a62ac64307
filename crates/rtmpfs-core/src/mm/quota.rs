//! The `size` and `nr_inodes` limits, as reservations on atomic counters.
//!
//! Reserve before you allocate: every charge is a compare-and-swap loop that fails with
//! `NoSpace` without side effects, so a failed operation leaves the counters as they were.

use crate::error::{FsError, Result};
use crossbeam_utils::CachePadded;

use crate::ids::Striped;
use crate::sync::{AtomicU64, Ordering};

/// A counter with an optional ceiling, charged by compare-and-swap. Whether there is a ceiling
/// is fixed when the quota is made (tmpfs refuses to limit an unlimited instance on remount, and
/// `size=0` means unlimited, so `Filesystem::set_limits` never adds or removes one); its value can
/// change at run time (remount).
///
/// Without a ceiling there is nothing to compare against, so charges and uncharges go to the
/// calling thread's stripe of a `Striped` counter instead of one shared atomic (which every
/// create and unlink would otherwise bounce between CPUs). With one, `used` is shared and exact,
/// and the stripes stay unused.
pub(crate) struct Quota {
    /// The ceiling, or `UNLIMITED` for ever.
    max: AtomicU64,
    /// Units charged, with a ceiling.
    used: CachePadded<AtomicU64>,
    /// Units charged, without one.
    striped: Striped,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Quota {{ max: {:?}, used: {} }}", self.max(), self.used())
    }
}

const UNLIMITED: u64 = u64::MAX;

impl Quota {
    pub(crate) fn new(max: Option<u64>) -> Self {
        Quota {
            max: AtomicU64::new(max.unwrap_or(UNLIMITED)),
            used: CachePadded::new(AtomicU64::new(0)),
            striped: Striped::new(),
        }
    }

    /// Change the ceiling (remount); the caller checked it is not below what is used.
    ///
    /// # Errors
    /// `Invalid` for a quota made without a ceiling (which keeps none).
    pub(crate) fn set_max(&self, max: u64) -> Result<()> {
        if self.max().is_none() {
            return Err(FsError::Invalid);
        }
        self.max.store(max, Ordering::Relaxed);
        Ok(())
    }

    /// Charge `n` units, or fail with `NoSpace` and charge nothing.
    pub(crate) fn charge(&self, n: u64) -> Result<()> {
        let Some(max) = self.max() else {
            self.striped.add(i64::try_from(n).map_err(|_| FsError::NoSpace)?);
            return Ok(());
        };
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let next = cur.checked_add(n).filter(|&v| v <= max).ok_or(FsError::NoSpace)?;
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
        if self.max().is_none() {
            self.striped.add(-i64::try_from(n).unwrap_or(i64::MAX));
            return;
        }
        let prev = self.used.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(prev >= n, "uncharge {n} below zero (was {prev})");
    }

    pub(crate) fn used(&self) -> u64 {
        if self.max().is_none() {
            u64::try_from(self.striped.sum()).unwrap_or(0)
        } else {
            self.used.load(Ordering::Relaxed)
        }
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
        let b = Quota::new(Some(10));
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
    fn a_ceiling_changes_but_is_never_added_to_an_unlimited_quota() {
        let b = Quota::new(None);
        b.charge(6).unwrap();
        assert_eq!(b.set_max(10), Err(FsError::Invalid));
        assert_eq!((b.max(), b.used()), (None, 6));
        b.charge(1 << 40).unwrap();
        b.uncharge((1 << 40) + 6);
        assert_eq!(b.used(), 0);
        let l = Quota::new(Some(10));
        l.charge(6).unwrap();
        l.set_max(8).unwrap();
        assert_eq!(l.charge(3), Err(FsError::NoSpace));
        l.charge(2).unwrap();
        l.uncharge(8);
        assert_eq!(l.used(), 0);
        l.charge(8).unwrap();
    }

    #[test]
    fn unlimited_never_fails() {
        let b = Quota::new(None);
        b.charge(1 << 40).unwrap();
        assert_eq!(b.free(), None);
    }
}
