//! Memory housekeeping: giving free memory back to the kernel while filesystems live.
//!
//! Two process-wide stores keep memory that nothing uses: the page pool (free data pages kept
//! with their contents for quick reuse, given back once idle) and the C heap (glibc keeps freed
//! metadata mapped until `malloc_trim`). Neither is the engine's to give back on every free —
//! that would cost a system call per page or a walk of the heap per unlink — so one thread does
//! it periodically: every [`PERIOD`], the pool's idle pages ([`rtmpfs_pages::trim_idle`]), and the
//! heap's free pages ([`rtmpfs_pages::heap::trim`]) once the heap's free bytes have grown by
//! [`TRIM_STEP`] since the last trim (deleting a large tree then shrinks the daemon's RSS within
//! a couple of seconds, and a steady workload costs one `mallinfo2` a second).
//!
//! Both stores are global to the process, so the thread is too: the first filesystem that asks
//! for housekeeping ([`crate::Config::own_process_memory`]) starts it, and it stops when the last
//! such filesystem is dropped (each holds a [`Housekeeping`] registration).
//!
//! **The budget counts the heap.** File data is not all of a daemon's RAM: each inode, name and
//! page map lives on the heap (about 1.5 KiB per small file, 40 bytes per stored page), and a
//! tree of 50,000 files holds 75 MB of it — more than a `memory=64m` budget. So on every pass the
//! thread also lends the heap's bytes in use (`mallinfo2`'s `uordblks`, i.e. metadata) to each
//! registered filesystem's RAM budget ([`FrameBudget::set_heap_pages`]), whose evictor then keeps
//! file data within what is left, down to a floor of an eighth of the budget. Only filesystems
//! with a swap tier take part: without swap, the budget is a hard cap on data and lending it
//! would turn metadata growth into `ENOSPC`. Heap in use is process-wide, so each registered
//! filesystem counts all of it: the setting is meant for the daemon, one filesystem per process.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rtmpfs_pages::{heap, PoolStats};

use crate::mm::{frame_floor_of, FrameBudget};
use crate::sync::{Arc, Weak};
use crate::{Config, ConfigError, Filesystem, Usage, PAGE_SIZE};

/// How often the thread looks.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);
/// Growth of the heap's free bytes (over the lowest level seen since the last trim) that
/// triggers a trim. Below it, a trim would return less than its walk of the heap costs.
pub(crate) const TRIM_STEP: u64 = 4 << 20;

/// The thread's state. Invariant: a thread runs iff `users > 0`, and it is the thread of the
/// current `generation` (an older one exits at its next wake-up, even if a new one started).
struct State {
    users: usize,
    generation: u64,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The RAM budgets that count the heap, by registration id.
    budgets: Vec<(u64, Weak<FrameBudget>)>,
    next_id: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    users: 0,
    generation: 0,
    thread: None,
    budgets: Vec::new(),
    next_id: 0,
});
/// Wakes the thread to stop.
static WAKE: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    // The state is three plain fields updated together under the lock; a panic elsewhere
    // cannot leave them inconsistent.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A filesystem's share in the housekeeping thread: the thread runs while one exists.
/// Holds the registration's id.
#[derive(Debug)]
pub(crate) struct Housekeeping(u64);

impl Housekeeping {
    /// What a filesystem built with `config` holds: with [`Config::own_process_memory`], a
    /// registration for housekeeping; otherwise nothing.
    ///
    /// # Errors
    /// The housekeeping thread could not be started.
    /// `budget`: the filesystem's RAM budget if it has a swap tier (it then counts the heap).
    pub(crate) fn for_config(
        config: &Config,
        budget: Option<&Arc<FrameBudget>>,
    ) -> Result<Option<Housekeeping>, ConfigError> {
        if !config.own_process_memory {
            return Ok(None);
        }
        Housekeeping::start(budget)
            .map(Some)
            .map_err(|e| ConfigError(format!("cannot start the housekeeping thread: {e}")))
    }

    /// Register for housekeeping, starting the thread if it is not running.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn start(budget: Option<&Arc<FrameBudget>>) -> std::io::Result<Housekeeping> {
        let mut s = state();
        if s.users == 0 {
            s.generation += 1;
            let generation = s.generation;
            let thread = std::thread::Builder::new()
                .name("rtmpfs-housekeeping".into())
                .spawn(move || run(generation))?;
            // A thread of an older generation that has not yet exited is not joined: it exits
            // on its own at its next wake-up (it was notified when its last user went).
            s.thread = Some(thread);
        }
        s.users += 1;
        s.next_id += 1;
        let id = s.next_id;
        if let Some(b) = budget {
            s.budgets.push((id, Arc::downgrade(b)));
        }
        Ok(Housekeeping(id))
    }
}

impl Drop for Housekeeping {
    fn drop(&mut self) {
        let thread = {
            let mut s = state();
            s.budgets.retain(|(id, _)| *id != self.0);
            s.users -= 1;
            if s.users > 0 {
                return;
            }
            s.generation += 1;
            s.thread.take()
        };
        WAKE.notify_all();
        if let Some(t) = thread {
            // Joined outside the lock: the thread takes it to check its generation.
            let _ = t.join();
        }
    }
}

/// The thread: a pass every `PERIOD` until its generation is over.
fn run(generation: u64) {
    let mut trimmer = HeapTrimmer::new();
    let mut s = state();
    loop {
        s = WAKE.wait_timeout(s, PERIOD).unwrap_or_else(PoisonError::into_inner).0;
        if s.generation != generation {
            return;
        }
        let budgets: Vec<Arc<FrameBudget>> = s.budgets.iter().filter_map(|(_, b)| b.upgrade()).collect();
        drop(s);
        rtmpfs_pages::trim_idle();
        trimmer.pass();
        lend_heap(&budgets);
        drop(budgets);
        s = state();
    }
}

/// Lend the heap's bytes in use to each budget (see the module doc).
fn lend_heap(budgets: &[Arc<FrameBudget>]) {
    if budgets.is_empty() {
        return;
    }
    let Some(h) = heap::stats() else { return };
    for b in budgets {
        // The compressed pool's entries are on the heap too, and the budget counts them already.
        b.set_heap_pages(h.small_in_use_bytes.saturating_sub(b.pool_bytes()).div_ceil(PAGE_SIZE));
    }
}

/// Frames of a `mem_pages` budget that file data is sure to get (the swap file's capacity is
/// sized from it): all of them, or with [`Config::own_process_memory`] and a swap tier, only the
/// floor the heap cannot take.
pub(crate) fn frames_kept(config: &Config, mem_pages: u64) -> u64 {
    if config.own_process_memory {
        frame_floor_of(mem_pages)
    } else {
        mem_pages
    }
}

/// When to trim the heap: once its free bytes grew by `TRIM_STEP` over the lowest level seen
/// since the last trim. (A trim returns the free pages but leaves the free bytes counted as
/// free, so the level after a trim is the new base.)
pub(crate) struct HeapTrimmer {
    base: u64,
}

impl HeapTrimmer {
    pub(crate) fn new() -> HeapTrimmer {
        HeapTrimmer {
            base: heap::stats().map_or(0, |h| h.free_bytes),
        }
    }

    /// Trim if due; returns whether it trimmed.
    pub(crate) fn pass(&mut self) -> bool {
        let Some(h) = heap::stats() else { return false };
        if h.free_bytes < self.base.saturating_add(TRIM_STEP) {
            self.base = self.base.min(h.free_bytes);
            return false;
        }
        heap::trim();
        self.base = heap::stats().map_or(h.free_bytes, |h| h.free_bytes);
        true
    }
}

/// Fill in `u`'s process-wide memory figures: the page pool's free pages and the C
/// heap's parts. Together with the pool's pages in use they account for the RAM the daemon
/// holds beyond its code, stacks and the kernel's buffers (see docs/design.md, "What the RAM
/// budget bounds").
pub(crate) fn fill_process_figures(u: &mut Usage, pool: &PoolStats) {
    let h = heap::stats().unwrap_or_default();
    u.page_pool_free_bytes = pool.free_hot_bytes;
    u.metadata_bytes = h.small_in_use_bytes;
    u.buffer_bytes = h.mapped_in_use_bytes;
    u.heap_free_bytes = h.free_bytes;
}

impl Filesystem {
    /// Give free memory back to the kernel now, as the housekeeping thread does periodically:
    /// this thread's cached pool pages, the pool's idle free pages, and the C heap's free pages
    /// (`malloc_trim`, whatever the level). Process-wide. For a "drop caches" control and for
    /// tests; costs a walk of the heap.
    pub fn release_free_memory(&self) {
        rtmpfs_pages::flush_thread_cache();
        rtmpfs_pages::trim_idle();
        heap::trim();
    }
}
