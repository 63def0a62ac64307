//! The single import point for locks, atomics and `Arc`, and the lock-rank checker.
//!
//! Every lock in the engine is a [`Mutex`] or [`RwLock`] from this module, created with a
//! [`LockRank`]. In debug builds each thread keeps the ranks it holds, and taking a lock whose rank
//! is not greater than every rank held panics with both ranks named: an inversion of the lock
//! order documented in the crate root is a bug found by any test that exercises the path, not a
//! deadlock waiting for the right schedule. `try_*` acquisitions cannot deadlock and are exempt
//! from the check (the evictor relies on this), but they are recorded while held.
//!
//! With the `shuttle` feature every primitive comes from `shuttle::sync`, so that shuttle can
//! explore schedules deterministically. Shuttle runs its threads as coroutines on one OS thread,
//! which would confuse a thread-local rank stack, so rank checking is off under shuttle; the
//! ordinary debug test run checks ranks.
//!
//! The module is public, and not behind `test-util`, because it is the switch itself: the engine
//! is built on it in every build, and a shuttle test (`tests/shuttle_tests.rs`) must spawn its
//! threads and share the filesystem with the very primitives the engine was built with
//! (`rtmpfs_core::sync::{thread, Arc}`), which are std's or shuttle's by the feature.

use std::fmt;
use std::ops::{Deref, DerefMut};

#[cfg(not(feature = "shuttle"))]
pub use std::sync::{
    atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    Arc, Weak,
};
#[cfg(not(feature = "shuttle"))]
pub use std::thread;

#[cfg(feature = "shuttle")]
pub use shuttle::sync::{
    atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    Arc, Weak,
};
#[cfg(feature = "shuttle")]
pub use shuttle::thread;

/// The engine's lock order. A thread may only take a lock whose rank is greater than every rank it
/// already holds (nested ranks are allowed only through the `*_nested` methods, whose callers
/// state the order that makes them safe). See the crate root for the tree and the reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum LockRank {
    /// Filesystem-wide: one snapshot at a time (held across the snapshot's I/O; no change
    /// takes it).
    SnapshotRun = 2,
    /// Filesystem-wide: every change to the tree holds it shared; a snapshot holds it
    /// exclusively while it copies the tree (`image/save.rs`).
    Snapshot = 5,
    /// Filesystem-wide lock held by cross-directory renames; makes parent pointers stable.
    Rename = 10,
    /// A directory's entries. Nested: parent before child, else ascending inode number.
    Dir = 20,
    /// A regular file's I/O lock (the `i_rwsem` role): writes, size changes, truncate, punch,
    /// fallocate. Never taken by reads, page faults or the evictor.
    FileIo = 30,
    /// An inode's attributes (mode, owners, times, link and open counts, xattrs).
    Meta = 40,
    /// A shard of the inode table (ino -> inode). Leaf-like: nothing is taken while held.
    InodeTable = 50,
    /// A shard of the open-handle table. Leaf-like.
    Handles = 55,
    /// A file's page map (page index -> slot). Held only for lookups and slot transitions, never
    /// across I/O, allocation or a wait for memory.
    PageMap = 60,
    /// One page frame's data.
    Frame = 70,
    /// The frame budget's wait lock (guards only its condition variables). A leaf.
    FrameBudget = 80,
    /// The CLOCK ring of resident frames. A leaf.
    ClockRing = 81,
    /// The CLOCK's list of clean frames (swapped in, swap copy kept). A leaf, never held with
    /// the ring.
    CleanList = 82,
    /// The compressed pool's queue of entries, coldest first. A leaf.
    PoolQueue = 83,
    /// A file's swap read-ahead state. Only the read-ahead queue is taken inside.
    ReadAhead = 84,
    /// The read-ahead job queue. A leaf.
    ReadAheadQueue = 86,
    /// A frame's still-valid swap copy. A leaf.
    SwapCopy = 88,
    /// A frame's bytes as a snapshot's capture saw them, copied before a change. A leaf.
    PreImage = 89,
    /// The swap slot allocator. A leaf.
    SwapSlots = 90,
    /// The in-memory swap backend's pages (tests). A leaf.
    MemoryBackend = 92,
    /// A thread slot's batch of inode or handle numbers. A leaf.
    IdBatch = 95,
    /// The pre-images a snapshot's changers captured, by inode (`Filesystem::snap_store`). A
    /// leaf.
    SnapStore = 96,
    /// The snapshot test hook (`Filesystem::snapshot_hook`, feature `test-util`). A leaf.
    SnapshotHook = 97,
    /// The memory manager's list of background threads (taken only to start and stop them). A
    /// leaf.
    Threads = 99,
}

impl LockRank {
    /// Whether nothing may be taken while a lock of this rank is held (checked in debug builds,
    /// as the order is): short holds over plain data, which call out to nothing.
    #[must_use]
    pub const fn is_leaf(self) -> bool {
        matches!(
            self,
            LockRank::InodeTable
                | LockRank::Handles
                | LockRank::FrameBudget
                | LockRank::ClockRing
                | LockRank::CleanList
                | LockRank::PoolQueue
                | LockRank::ReadAheadQueue
                | LockRank::SwapCopy
                | LockRank::PreImage
                | LockRank::SwapSlots
                | LockRank::MemoryBackend
                | LockRank::IdBatch
                | LockRank::SnapStore
                | LockRank::SnapshotHook
                | LockRank::Threads
        )
    }
}

#[cfg(all(debug_assertions, not(feature = "shuttle")))]
mod rank_check {
    use super::LockRank;
    use std::cell::RefCell;

    thread_local! {
        static HELD: RefCell<Vec<LockRank>> = const { RefCell::new(Vec::new()) };
    }

    /// Check that `rank` may be taken now (no leaf held, and strictly above everything held,
    /// or equal to the highest held when `nested`), then record it.
    pub fn acquire(rank: LockRank, nested: bool) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(&leaf) = h.iter().find(|r| r.is_leaf()) {
                panic!(
                    "lock order violation: taking {rank:?} while holding the leaf {leaf:?} (held: {:?})",
                    *h
                );
            }
            if let Some(&top) = h.iter().max() {
                let ok = if nested { rank >= top } else { rank > top };
                assert!(
                    ok,
                    "lock order violation: taking {rank:?} while holding {top:?} (held: {:?})",
                    *h
                );
            }
            h.push(rank);
        });
    }

    /// Record a lock taken by `try_*`, which cannot deadlock and so is not checked.
    pub fn record(rank: LockRank) {
        HELD.with(|h| h.borrow_mut().push(rank));
    }

    pub fn release(rank: LockRank) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(pos) = h.iter().rposition(|&r| r == rank) {
                h.remove(pos);
            }
        });
    }

    /// The ranks held by this thread (for assertions such as "no lock held here").
    pub fn held() -> Vec<LockRank> {
        HELD.with(|h| h.borrow().clone())
    }
}

#[cfg(not(all(debug_assertions, not(feature = "shuttle"))))]
mod rank_check {
    use super::LockRank;
    #[inline]
    pub fn acquire(_rank: LockRank, _nested: bool) {}
    #[inline]
    pub fn record(_rank: LockRank) {}
    #[inline]
    pub fn release(_rank: LockRank) {}
    #[inline]
    pub fn held() -> Vec<LockRank> {
        Vec::new()
    }
}

/// Assert (in debug builds) that the calling thread holds no engine lock of rank `rank` or below
/// it... precisely: holds no lock whose rank is `>= floor`. Used before blocking waits, such as
/// waiting for memory, which must not happen with a page-map or frame lock held.
pub fn assert_not_held_at_or_above(floor: LockRank) {
    let held = rank_check::held();
    debug_assert!(
        held.iter().all(|&r| r < floor),
        "blocking while holding {held:?} (floor {floor:?})"
    );
}

/// Marker kept inside each guard; releases the rank record on drop.
struct RankToken(LockRank);

impl Drop for RankToken {
    fn drop(&mut self) {
        rank_check::release(self.0);
    }
}

#[cfg(not(feature = "shuttle"))]
mod raw {
    use std::time::Duration;

    pub type Condvar = parking_lot::Condvar;
    pub fn wait_timeout<'a, T>(c: &Condvar, mut g: MutexGuard<'a, T>, d: Duration) -> MutexGuard<'a, T> {
        c.wait_for(&mut g, d);
        g
    }
    pub type Mutex<T> = parking_lot::Mutex<T>;
    pub type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
    pub type RwLock<T> = parking_lot::RwLock<T>;
    pub type ReadGuard<'a, T> = parking_lot::RwLockReadGuard<'a, T>;
    pub type WriteGuard<'a, T> = parking_lot::RwLockWriteGuard<'a, T>;

    pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock()
    }
    pub fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
        m.try_lock()
    }
    pub fn read<T>(l: &RwLock<T>) -> ReadGuard<'_, T> {
        l.read()
    }
    pub fn write<T>(l: &RwLock<T>) -> WriteGuard<'_, T> {
        l.write()
    }
    pub fn try_read<T>(l: &RwLock<T>) -> Option<ReadGuard<'_, T>> {
        l.try_read()
    }
    pub fn try_write<T>(l: &RwLock<T>) -> Option<WriteGuard<'_, T>> {
        l.try_write()
    }
}

#[cfg(feature = "shuttle")]
mod raw {
    use std::time::Duration;

    pub type Condvar = shuttle::sync::Condvar;
    pub fn wait_timeout<'a, T>(c: &Condvar, g: MutexGuard<'a, T>, d: Duration) -> MutexGuard<'a, T> {
        match c.wait_timeout(g, d) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }
    pub type Mutex<T> = shuttle::sync::Mutex<T>;
    pub type MutexGuard<'a, T> = shuttle::sync::MutexGuard<'a, T>;
    pub type RwLock<T> = shuttle::sync::RwLock<T>;
    pub type ReadGuard<'a, T> = shuttle::sync::RwLockReadGuard<'a, T>;
    pub type WriteGuard<'a, T> = shuttle::sync::RwLockWriteGuard<'a, T>;

    pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
        m.try_lock().ok()
    }
    pub fn read<T>(l: &RwLock<T>) -> ReadGuard<'_, T> {
        l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn write<T>(l: &RwLock<T>) -> WriteGuard<'_, T> {
        l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn try_read<T>(l: &RwLock<T>) -> Option<ReadGuard<'_, T>> {
        l.try_read().ok()
    }
    pub fn try_write<T>(l: &RwLock<T>) -> Option<WriteGuard<'_, T>> {
        l.try_write().ok()
    }
}

/// A mutual-exclusion lock with a rank in the engine's lock order.
pub struct Mutex<T> {
    rank: LockRank,
    inner: raw::Mutex<T>,
}

/// Guard of a [`Mutex`].
pub struct MutexGuard<'a, T> {
    guard: raw::MutexGuard<'a, T>,
    _token: RankToken,
}

impl<T> Mutex<T> {
    /// A new lock of rank `rank`.
    pub fn new(rank: LockRank, value: T) -> Self {
        Mutex {
            rank,
            inner: raw::Mutex::new(value),
        }
    }

    /// Lock, checking the rank order in debug builds.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        rank_check::acquire(self.rank, false);
        MutexGuard {
            guard: raw::lock(&self.inner),
            _token: RankToken(self.rank),
        }
    }

    /// Lock if free now; never blocks, so never part of a deadlock.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let guard = raw::try_lock(&self.inner)?;
        rank_check::record(self.rank);
        Some(MutexGuard {
            guard,
            _token: RankToken(self.rank),
        })
    }
}

impl<T: fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("rank", &self.rank)
            .finish_non_exhaustive()
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A condition variable for [`Mutex`]. Waiting keeps the mutex's rank recorded (the thread is
/// blocked, so it takes nothing meanwhile).
#[derive(Default)]
pub struct Condvar {
    inner: raw::Condvar,
}

impl Condvar {
    /// A new condition variable.
    #[must_use]
    pub fn new() -> Self {
        Condvar {
            inner: raw::Condvar::default(),
        }
    }

    /// Release `guard`, wait for a notification or `timeout`, and re-lock.
    pub fn wait_timeout<'a, T>(&self, guard: MutexGuard<'a, T>, timeout: std::time::Duration) -> MutexGuard<'a, T> {
        let MutexGuard { guard, _token: token } = guard;
        MutexGuard {
            guard: raw::wait_timeout(&self.inner, guard, timeout),
            _token: token,
        }
    }

    /// Wake every waiter.
    pub fn notify_all(&self) {
        self.inner.notify_all();
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Condvar")
    }
}

/// A reader-writer lock with a rank in the engine's lock order.
pub struct RwLock<T> {
    rank: LockRank,
    inner: raw::RwLock<T>,
}

/// Shared guard of a [`RwLock`].
pub struct ReadGuard<'a, T> {
    guard: raw::ReadGuard<'a, T>,
    _token: RankToken,
}

/// Exclusive guard of a [`RwLock`].
pub struct WriteGuard<'a, T> {
    guard: raw::WriteGuard<'a, T>,
    _token: RankToken,
}

impl<T> RwLock<T> {
    /// A new lock of rank `rank`.
    pub fn new(rank: LockRank, value: T) -> Self {
        RwLock {
            rank,
            inner: raw::RwLock::new(value),
        }
    }

    /// Lock shared, checking the rank order in debug builds.
    pub fn read(&self) -> ReadGuard<'_, T> {
        rank_check::acquire(self.rank, false);
        ReadGuard {
            guard: raw::read(&self.inner),
            _token: RankToken(self.rank),
        }
    }

    /// Lock exclusive, checking the rank order in debug builds.
    pub fn write(&self) -> WriteGuard<'_, T> {
        rank_check::acquire(self.rank, false);
        WriteGuard {
            guard: raw::write(&self.inner),
            _token: RankToken(self.rank),
        }
    }

    /// Lock exclusive while already holding a lock of the same rank. The caller guarantees an
    /// order among same-rank locks (for directories: parent before child, else ascending ino).
    pub fn write_nested(&self) -> WriteGuard<'_, T> {
        rank_check::acquire(self.rank, true);
        WriteGuard {
            guard: raw::write(&self.inner),
            _token: RankToken(self.rank),
        }
    }

    /// Lock shared if possible now; never blocks.
    pub fn try_read(&self) -> Option<ReadGuard<'_, T>> {
        let guard = raw::try_read(&self.inner)?;
        rank_check::record(self.rank);
        Some(ReadGuard {
            guard,
            _token: RankToken(self.rank),
        })
    }

    /// Lock exclusive if possible now; never blocks.
    pub fn try_write(&self) -> Option<WriteGuard<'_, T>> {
        let guard = raw::try_write(&self.inner)?;
        rank_check::record(self.rank);
        Some(WriteGuard {
            guard,
            _token: RankToken(self.rank),
        })
    }
}

impl<T: fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("rank", &self.rank)
            .finish_non_exhaustive()
    }
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(all(test, debug_assertions, not(feature = "shuttle")))]
mod tests {
    use super::*;

    #[test]
    fn ascending_ranks_are_allowed() {
        let a = Mutex::new(LockRank::Dir, ());
        let b = RwLock::new(LockRank::PageMap, ());
        let _ga = a.lock();
        let _gb = b.write();
    }

    #[test]
    #[should_panic(expected = "lock order violation")]
    fn inversion_panics() {
        let a = Mutex::new(LockRank::Dir, ());
        let b = RwLock::new(LockRank::PageMap, ());
        let _gb = b.read();
        let _ga = a.lock();
    }

    #[test]
    #[should_panic(expected = "lock order violation")]
    fn same_rank_without_nested_panics() {
        let a = RwLock::new(LockRank::Dir, ());
        let b = RwLock::new(LockRank::Dir, ());
        let _ga = a.write();
        let _gb = b.write();
    }

    #[test]
    #[should_panic(expected = "while holding the leaf SwapSlots")]
    fn taking_anything_under_a_leaf_panics() {
        // Above the leaf in rank, so only the leaf check catches it.
        let leaf = Mutex::new(LockRank::SwapSlots, ());
        let above = Mutex::new(LockRank::IdBatch, ());
        let _g = leaf.lock();
        let _h = above.lock();
    }

    #[test]
    fn try_lock_is_exempt_and_released() {
        let a = Mutex::new(LockRank::Dir, ());
        let b = RwLock::new(LockRank::PageMap, ());
        let gb = b.read();
        let ga = a.try_lock().expect("free");
        drop(ga);
        drop(gb);
        assert!(rank_check::held().is_empty());
    }
}
