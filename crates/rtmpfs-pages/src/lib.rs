//! Page-sized buffers for file data, and the pool they come from.
//!
//! Why not `Box<[u8; 4096]>`: glibc serves 4 KiB allocations from its heaps, and a heap whose
//! pages were freed in random order (eviction, truncation, deleting files) keeps nearly all of
//! them: the daemon's RSS stayed at the high-water mark of file data, far above the RAM budget.
//! Every allocation also zeroed a page that a full-page write then overwrote.
//!
//! So pages come from 2 MiB anonymous mappings (`MADV_NOHUGEPAGE`, so that khugepaged never
//! fills freed pages back in), and freed pages go to a LIFO free list that keeps them with their
//! old contents, for reuse without a page fault. Free pages are handed back to the kernel with
//! `MADV_DONTNEED` (in sorted, coalesced batches) once they have been free for [`IDLE`], or at
//! once beyond [`HOT_CAP`] pages; [`HOT_LIMIT`] pages stay regardless. So a file truncated and
//! rewritten at once reuses its pages as they were (faulting 4 KiB pages in again costs more than
//! the copy), while a deleted tree's RAM goes back within about `IDLE` of the next call into the
//! pool or of [`trim_idle`], which the engine's and the daemon's background threads call
//! periodically. The RSS held by free pages is bounded by `HOT_CAP` pages plus the per-thread
//! caches, and by `HOT_LIMIT` pages once idle.
//!
//! A page given back reads as zeros when next touched, so a pool page is either *known zero*
//! (fresh or given back) or *dirty* (old contents): [`PageBuf::zeroed`] zeroes only dirty ones,
//! and [`PageBuf::for_overwrite`] zeroes nothing, for callers that overwrite the whole page
//! before anyone can read it.
//!
//! Each thread keeps a small cache of free pages in front of the shared list, so allocation and
//! release take the pool's lock once per [`CACHE_BATCH`] pages, not per page. The pool is global
//! to the process, as the C allocator is: RAM is a process-wide resource.
//!
//! This crate holds the engine's only `unsafe` code: the mappings and the raw pages handed out
//! as owned buffers, and the C heap's tuning and figures ([`heap`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustix::mm::{Advice, MapFlags, ProtFlags};

pub mod heap;

/// Bytes in a page.
pub const PAGE: usize = 4096;
/// Pages per mapping.
const CHUNK_PAGES: usize = 512;
/// Free pages the shared list keeps with their contents however long they stay free (4 MiB).
pub const HOT_LIMIT: usize = 1024;
/// Most free pages kept with their contents (256 MiB): beyond, the oldest go back at once.
pub const HOT_CAP: usize = 65_536;
/// How long a free page beyond `HOT_LIMIT` keeps its RAM.
pub const IDLE: Duration = Duration::from_secs(1);
/// Pages given back to the kernel per trim.
const TRIM_BATCH: usize = 256;
/// Pages moved between a thread's cache and the shared list at a time.
pub const CACHE_BATCH: usize = 32;
/// Most pages a thread's cache holds.
const CACHE_MAX: usize = 2 * CACHE_BATCH;

/// No memory could be mapped for a new page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no memory for a page")
    }
}

impl std::error::Error for OutOfMemory {}

/// A free page: its address and whether it is known to read as zeros.
#[derive(Clone, Copy)]
struct FreePage {
    addr: usize,
    zero: bool,
}

/// The shared free list and the pool's figures.
struct Shared {
    /// Dirty pages and when they were freed (ms since `EPOCH`), most recent at the back. At most
    /// `HOT_CAP + TRIM_BATCH`.
    hot: VecDeque<(usize, u64)>,
    /// Pages known to be zero (fresh, or given back to the kernel).
    cold: Vec<usize>,
    mapped_pages: u64,
    /// Pages handed out and not yet returned to the shared list (in use, or in a thread cache).
    out: u64,
    given_back: u64,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    hot: VecDeque::new(),
    cold: Vec::new(),
    mapped_pages: 0,
    out: 0,
    given_back: 0,
});

/// The pool's clock origin.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the pool's clock origin.
fn now_ms() -> u64 {
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A thread's cache of free pages. Flushed to the shared list when the thread exits.
struct ThreadCache {
    pages: Vec<FreePage>,
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        give_to_shared(self.pages.drain(..));
    }
}

thread_local! {
    static CACHE: RefCell<ThreadCache> = const { RefCell::new(ThreadCache { pages: Vec::new() }) };
}

/// The pool's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Bytes of address space mapped for pages (not all of it is RAM: see `free_bytes_given_back`).
    pub mapped_bytes: u64,
    /// Bytes in pages handed out (in use, or cached by a thread for reuse).
    pub out_bytes: u64,
    /// Bytes of free pages kept with their contents (RAM the pool holds for quick reuse).
    pub free_hot_bytes: u64,
    /// Bytes of free pages given back to the kernel (no RAM).
    pub free_cold_bytes: u64,
    /// Pages given back to the kernel so far.
    pub pages_given_back: u64,
}

/// The pool's figures now.
pub fn stats() -> PoolStats {
    let s = SHARED.lock();
    let page = PAGE as u64;
    PoolStats {
        mapped_bytes: s.mapped_pages * page,
        out_bytes: s.out * page,
        free_hot_bytes: s.hot.len() as u64 * page,
        free_cold_bytes: s.cold.len() as u64 * page,
        pages_given_back: s.given_back,
    }
}

/// One page of memory, owned. Dropping it returns the page to the pool.
pub struct PageBuf {
    ptr: NonNull<[u8; PAGE]>,
}

// SAFETY: a `PageBuf` owns its page exclusively, as a `Box<[u8; PAGE]>` would; nothing else
// holds its address until it is dropped and the page goes back to the free list.
unsafe impl Send for PageBuf {}
// SAFETY: shared access only reads through `&[u8; PAGE]` (`Deref`); mutation needs `&mut`.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// A page of zeros.
    ///
    /// # Errors
    /// `OutOfMemory` when no free page is left and no new mapping can be made.
    pub fn zeroed() -> Result<PageBuf, OutOfMemory> {
        let free = take()?;
        let mut page = PageBuf::from_free(free);
        if !free.zero {
            page.fill(0);
        }
        Ok(page)
    }

    /// A page with unspecified contents (bytes of a page freed earlier, possibly another file's):
    /// for a caller that overwrites all of it before anyone else can read it. Saves zeroing.
    ///
    /// # Errors
    /// `OutOfMemory` as [`PageBuf::zeroed`].
    pub fn for_overwrite() -> Result<PageBuf, OutOfMemory> {
        take().map(PageBuf::from_free)
    }

    fn from_free(free: FreePage) -> PageBuf {
        // `take` never returns address 0: pages come from successful mmaps.
        let ptr = NonNull::new(free.addr as *mut [u8; PAGE]).unwrap_or_else(|| unreachable!("null page"));
        PageBuf { ptr }
    }
}

impl Deref for PageBuf {
    type Target = [u8; PAGE];
    fn deref(&self) -> &[u8; PAGE] {
        // SAFETY: `ptr` is a page-aligned, mapped, readable and writable page owned by `self`
        // (see `take`); every byte of an anonymous mapping is initialised (zero or written).
        unsafe { self.ptr.as_ref() }
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8; PAGE] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { self.ptr.as_mut() }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        put(FreePage {
            addr: self.ptr.as_ptr() as usize,
            zero: false,
        });
    }
}

impl fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageBuf({:p})", self.ptr)
    }
}

/// Return this thread's cached free pages to the shared list (a thread's exit does this too):
/// for a thread about to idle for long, or a test that reads the figures.
pub fn flush_thread_cache() {
    let _ = CACHE.try_with(|c| give_to_shared(c.borrow_mut().pages.drain(..)));
}

/// A free page for the caller: from the thread's cache, else a batch from the shared list, else
/// a new mapping.
fn take() -> Result<FreePage, OutOfMemory> {
    let cached = CACHE
        .try_with(|c| {
            let mut c = c.borrow_mut();
            if c.pages.is_empty() {
                refill(&mut c.pages)?;
            }
            Ok(c.pages.pop())
        })
        .unwrap_or_else(|_| {
            // The thread is exiting and its cache is gone: go to the shared list directly.
            let mut one = Vec::with_capacity(CACHE_BATCH);
            refill(&mut one)?;
            let page = one.pop();
            give_to_shared(one.drain(..));
            Ok(page)
        })?;
    cached.ok_or(OutOfMemory)
}

/// Return a page: to the thread's cache, whose excess goes to the shared list.
fn put(page: FreePage) {
    let spilled = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        c.pages.push(page);
        if c.pages.len() > CACHE_MAX {
            // The oldest half goes; the most recently freed (warm in the CPU cache) stay.
            give_to_shared(c.pages.drain(..CACHE_BATCH));
        }
    });
    if spilled.is_err() {
        give_to_shared(std::iter::once(page));
    }
}

/// Move up to `CACHE_BATCH` pages from the shared list into `into`, mapping a chunk if the list
/// is empty. Dirty pages first: reusing them costs no page fault.
fn refill(into: &mut Vec<FreePage>) -> Result<(), OutOfMemory> {
    loop {
        {
            let mut s = SHARED.lock();
            let have = s.hot.len() + s.cold.len();
            if have > 0 {
                let n = have.min(CACHE_BATCH);
                // Cold (zero) pages first into the vector, so the hot ones end on top of the
                // thread's LIFO stack and are used first.
                let from_hot = s.hot.len().min(n);
                let from_cold = n - from_hot;
                let cold_at = s.cold.len() - from_cold;
                into.extend(s.cold.drain(cold_at..).map(|addr| FreePage { addr, zero: true }));
                let hot_at = s.hot.len() - from_hot;
                into.extend(s.hot.drain(hot_at..).map(|(addr, _)| FreePage { addr, zero: false }));
                s.out += n as u64;
                return Ok(());
            }
        }
        let base = map_chunk()?;
        let mut s = SHARED.lock();
        s.mapped_pages += CHUNK_PAGES as u64;
        // Lowest address on top, so a fresh chunk is used in address order.
        s.cold.extend((0..CHUNK_PAGES).rev().map(|i| base + i * PAGE));
    }
}

/// Give free pages back to the shared list, then trim it.
fn give_to_shared(pages: impl Iterator<Item = FreePage>) {
    let now = now_ms();
    let mut s = SHARED.lock();
    for p in pages {
        s.out -= 1;
        if p.zero {
            s.cold.push(p.addr);
        } else {
            s.hot.push_back((p.addr, now));
        }
    }
    trim(s, now);
}

/// Hand back to the kernel the RAM of free pages that have been free for longer than [`IDLE`]
/// (beyond the [`HOT_LIMIT`] kept regardless). Cheap when there is nothing to do: call it
/// periodically from a thread that is awake anyway.
pub fn trim_idle() {
    let now = now_ms();
    trim(SHARED.lock(), now);
}

/// Trim the dirty list: pages beyond `HOT_CAP`, and pages beyond `HOT_LIMIT` free for longer
/// than `IDLE`, are given back in batches (with the lock released during the `madvise`).
fn trim(mut s: parking_lot::MutexGuard<'_, Shared>, now: u64) {
    let idle_ms = u64::try_from(IDLE.as_millis()).unwrap_or(u64::MAX);
    loop {
        let over_cap = s.hot.len().saturating_sub(HOT_CAP);
        let idle = s.hot.len() > HOT_LIMIT && s.hot.front().is_some_and(|&(_, t)| now.saturating_sub(t) >= idle_ms);
        if over_cap < TRIM_BATCH.min(s.hot.len()) && !idle {
            return;
        }
        let mut n = 0;
        while n < TRIM_BATCH && s.hot.len() - n > HOT_LIMIT {
            let Some(&(_, t)) = s.hot.get(n) else { break };
            if n >= over_cap && now.saturating_sub(t) < idle_ms {
                break;
            }
            n += 1;
        }
        if n == 0 {
            return;
        }
        let batch: Vec<usize> = s.hot.drain(..n).map(|(addr, _)| addr).collect();
        drop(s);
        // The batch is in neither list while it is being given back: nobody can take it meanwhile.
        let trimmed = give_back(batch);
        s = SHARED.lock();
        s.given_back += trimmed.len() as u64;
        s.cold.extend(trimmed);
    }
}

/// Hand the pages' RAM back to the kernel (they read as zeros afterwards), coalescing adjacent
/// pages into one `madvise`. Returns the pages.
fn give_back(mut pages: Vec<usize>) -> Vec<usize> {
    pages.sort_unstable();
    let mut i = 0;
    while i < pages.len() {
        let start = pages[i];
        let mut j = i + 1;
        while j < pages.len() && pages[j] == start + (j - i) * PAGE {
            j += 1;
        }
        // SAFETY: `[start, start + (j - i) * PAGE)` are free pages of our own private anonymous
        // mappings: nothing references them (they are in no list and no `PageBuf`), so
        // discarding their contents is invisible to everyone. DONTNEED on private anonymous
        // memory cannot fail for a valid range; if it did, the pages would merely keep their RAM
        // and contents, and since they go to the zero list below, that would be a bug — so it
        // is checked.
        let done = unsafe { rustix::mm::madvise(start as *mut c_void, (j - i) * PAGE, Advice::LinuxDontNeed) };
        if done.is_err() {
            // Keep the pages correct rather than "known zero": zero them by hand.
            for &addr in &pages[i..j] {
                // SAFETY: as above, the page is free, mapped writable and referenced by nobody.
                unsafe { std::ptr::write_bytes(addr as *mut u8, 0, PAGE) };
            }
        }
        i = j;
    }
    pages
}

/// Map a new chunk of `CHUNK_PAGES` pages; returns its address.
fn map_chunk() -> Result<usize, OutOfMemory> {
    let len = CHUNK_PAGES * PAGE;
    // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing aliases
    // no existing memory.
    let ptr = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }
    .map_err(|_| OutOfMemory)?;
    // SAFETY: `ptr..ptr+len` is the mapping just made. NOHUGEPAGE only changes how the kernel
    // backs it; failure (a kernel without THP) is harmless and ignored.
    let _ = unsafe { rustix::mm::madvise(ptr, len, Advice::LinuxNoHugepage) };
    // Fault the whole chunk in with one call rather than one page fault per 4 KiB as it is
    // first written (a fresh 1 GiB file: a quarter of the daemon's time was fault handling).
    // SAFETY: as above; POPULATE_WRITE only allocates the pages. Before Linux 5.14 it fails and
    // the pages fault in one by one as before.
    let _ = unsafe { rustix::mm::madvise(ptr, len, Advice::LinuxPopulateWrite) };
    Ok(ptr as usize)
}

#[cfg(test)]
mod tests;
