//! Changing the RAM budget (`memory=`) of a live filesystem: `rtmpfs resize MOUNTPOINT memory=`.
//!
//! Invariant (docs/design.md, "Accounting invariants"): the budget's frames in use may exceed a
//! new, lower budget only while this call runs; it returns once they fit (evicting with swap),
//! or puts the old budget back and refuses. No page is ever dropped to make room: eviction
//! writes to swap (or drops a clean page whose swap copy is valid), so nothing is lost either way.
//! The shrink itself is `MemoryManager::set_frame_budget` (mm/resize.rs).

use super::Filesystem;

/// Why the RAM budget was not changed. Figures are in 4 KiB pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimitError {
    /// The filesystem was made without a RAM budget: one cannot be added later (as tmpfs
    /// refuses to limit an unlimited instance on remount).
    NoBudget,
    /// A budget of zero pages.
    Zero,
    /// No swap (`noswap`): what is resident cannot go anywhere.
    NoSwap {
        /// Frames in use now.
        in_use: u64,
        /// The budget asked for.
        asked: u64,
    },
    /// Eviction stopped short of the new budget (the swap is full or failing).
    Stuck {
        /// Frames in use when it stopped.
        in_use: u64,
        /// The budget asked for.
        asked: u64,
        /// Swap slots in use.
        swap_used: u64,
        /// Swap capacity in slots, if bounded.
        swap_capacity: Option<u64>,
    },
}

/// `n` pages as MiB, one decimal.
fn mib(pages: u64) -> String {
    format!(
        "{:.1} MiB",
        (pages * crate::types::PAGE_SIZE) as f64 / f64::from(1 << 20)
    )
}

impl std::fmt::Display for MemoryLimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            MemoryLimitError::NoBudget => write!(f, "the mount has no memory= budget (one cannot be added to a live mount)"),
            MemoryLimitError::Zero => write!(f, "memory= must be at least one page"),
            MemoryLimitError::NoSwap { in_use, asked } => write!(
                f,
                "memory={} is below the {} ({in_use} pages) in RAM, and with noswap it cannot go anywhere",
                mib(asked),
                mib(in_use)
            ),
            MemoryLimitError::Stuck {
                in_use,
                asked,
                swap_used,
                swap_capacity,
            } => write!(
                f,
                "memory={}: could only evict down to {} ({in_use} pages); the swap holds {}{} and takes no more; memory= unchanged",
                mib(asked),
                mib(in_use),
                mib(swap_used),
                swap_capacity.map_or_else(String::new, |c| format!(" of {}", mib(c)))
            ),
        }
    }
}

impl std::error::Error for MemoryLimitError {}

impl Filesystem {
    /// Set the RAM budget to `pages` 4 KiB pages. A raise takes effect at once (writers waiting
    /// for a frame are woken). A cut evicts down to the new budget before it returns (this
    /// thread sweeps, and the background evictor is kicked); without swap it is refused when
    /// more than `pages` frames are in use. On any refusal the budget stays as it was.
    ///
    /// # Errors
    /// [`MemoryLimitError`], with the figures.
    pub fn set_memory_limit(&self, pages: u64) -> Result<(), MemoryLimitError> {
        self.mm.set_frame_budget(pages)
    }
}
