//! The C heap (glibc malloc), where everything but file data lives: inodes, directory entries,
//! page maps and frame headers (metadata), and the FUSE request and reply buffers.
//!
//! Measured with `scripts/rss-bench.sh` (a mount with `memory=64m` under
//! `../shared/bench/workloads.sh`): the daemon's RSS peaked 100 MiB above its budget, and the
//! excess was glibc's, not the engine's. Two habits of glibc cause it:
//! - **Per-thread arenas.** A thread that finds the main arena locked gets an arena of its own
//!   (up to 8 per core), and each arena keeps what it freed. Every FUSE worker grew one.
//!   [`configure`] caps them at [`ARENA_MAX`].
//! - **Retention.** Freed memory in the middle of an arena stays mapped until `malloc_trim`, and
//!   the dynamic mmap threshold rises to the largest buffer freed (so after one 1 MiB request
//!   buffer, every later one comes from the arena and stays). [`configure`] fixes the
//!   threshold at [`MMAP_THRESHOLD`] so large buffers are their own mappings, given back when
//!   freed; [`trim`] returns the arenas' free pages, and the engine's housekeeping calls it
//!   when [`stats`] shows enough free heap.
//!
//! On other C libraries every function here does nothing and [`stats`] returns `None`.

/// Most malloc arenas: the main one plus one more, so two threads allocate without waiting for
/// each other (the engine's hot paths allocate little; the FUSE workers' buffers are mmapped).
pub const ARENA_MAX: i32 = 2;
/// Allocations of at least this many bytes get their own mapping, returned to the kernel when
/// freed (glibc's default starts at 128 KiB but rises up to 32 MiB as large blocks are freed).
pub const MMAP_THRESHOLD: i32 = 256 * 1024;

/// What the C heap holds, process-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Bytes in use in the arenas: allocations below [`MMAP_THRESHOLD`] (metadata, small
    /// buffers).
    pub small_in_use_bytes: u64,
    /// Bytes in use in allocations with their own mapping (at least [`MMAP_THRESHOLD`]: I/O
    /// buffers, large vectors).
    pub mapped_in_use_bytes: u64,
    /// Bytes free in the arenas: RAM until [`trim`] gives their pages back (or reused).
    pub free_bytes: u64,
    /// Bytes the arenas span (in use plus free).
    pub arena_bytes: u64,
}

/// Tune glibc malloc for a long-running server that holds little on the heap: at most
/// [`ARENA_MAX`] arenas and a fixed [`MMAP_THRESHOLD`]. Process-wide; call it early (arenas
/// already created stay). Idempotent.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static DONE: std::sync::Once = std::sync::Once::new();
        DONE.call_once(|| {
            // SAFETY: mallopt only sets glibc's tunables under its own lock; it takes no
            // pointers. A refused value (returns 0) leaves glibc's default, which is correct,
            // merely less frugal.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        });
    }
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
