//! The C heap (glibc malloc), where everything but file data lives: inodes, directory entries,
//! page maps and frame headers (metadata), and the FUSE request and reply buffers.
//!
//! Measured with `scripts/rss-bench.sh` (a mount with `memory=64m` under
//! `../shared/bench/workloads.sh`, 26,000 files at its peak): the daemon's RSS peaked at
//! 151 MiB, 87 MiB above its budget, and nearly all of the excess was metadata in use (about
//! 1.5 KiB per small file: inode, name, directory entry, a 640-byte page-map leaf), not heap
//! that glibc kept. Capping glibc's arenas (`M_ARENA_MAX` 2, tried through `GLIBC_TUNABLES`) and
//! fixing the mmap threshold at 256 KiB changed the peak by less than 1 MiB (151.2 and 151.5 MiB
//! against 151.5), so the daemon leaves glibc's defaults alone. What bounds the RSS is counting
//! the metadata against the RAM budget, which needs [`stats`]; and what brings it back after a
//! large delete is [`trim`], which the engine's housekeeping calls when the heap's free bytes grow.
//!
//! On other C libraries [`trim`] does nothing and [`stats`] returns `None`.

/// What the C heap holds, process-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Bytes in use in the arenas: allocations below glibc's mmap threshold (128 KiB, rising
    /// up to 32 MiB after large frees): metadata and small buffers.
    pub small_in_use_bytes: u64,
    /// Bytes in use in allocations with their own mapping (large I/O buffers, such as the FUSE
    /// threads' request buffers; address space, only partly touched).
    pub mapped_in_use_bytes: u64,
    /// Bytes free in the arenas: RAM until [`trim`] gives their pages back (or reused).
    pub free_bytes: u64,
    /// Bytes the arenas span (in use plus free).
    pub arena_bytes: u64,
}

/// The heap's figures now. Costs a walk of the arenas' free lists under their locks (well under
/// a millisecond for the engine's heaps): call it at most every few hundred milliseconds.
#[must_use]
pub fn stats() -> Option<HeapStats> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 (glibc 2.33+) returns a struct by value and takes each arena's own
        // lock; it reads no memory of ours.
        let m = unsafe { libc::mallinfo2() };
        let b = |n: usize| n as u64;
        Some(HeapStats {
            small_in_use_bytes: b(m.uordblks),
            mapped_in_use_bytes: b(m.hblkhd),
            free_bytes: b(m.fordblks),
            arena_bytes: b(m.arena),
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Give the arenas' free pages back to the kernel (`malloc_trim(0)`). Costs a walk of the free
/// chunks: call it when [`stats`] shows much free heap, not on every free.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap under its own locks; it takes no pointer
    // from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
