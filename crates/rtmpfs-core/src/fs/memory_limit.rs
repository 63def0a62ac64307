//! Changing the RAM budget (`memory=`) of a live filesystem: `rtmpfs resize MOUNTPOINT memory=`.
//!
//! Invariant (docs/design.md, "Accounting invariants"): the budget's frames in use may exceed a
//! new, lower budget only while this call runs; it returns once they fit (evicting with swap),
//! or puts the old budget back and refuses. No page is ever dropped to make room: eviction
//! writes to swap (or drops a clean page whose swap copy is valid), so nothing is lost either way.

use std::time::{Duration, Instant};

use super::Filesystem;

/// How long the shrink may go without freeing a single frame before it gives up (swap full or
/// failing, every resident page busy).
const STALL_LIMIT: Duration = Duration::from_secs(3);
/// The longest a shrink may take in all (frames freed and taken again by others, endlessly).
/// Below the 30 s that `rtmpfs resize` waits for the daemon's answer, so the command always
/// hears the outcome.
const SHRINK_LIMIT: Duration = Duration::from_secs(25);
/// Most pages asked of one eviction sweep.
const SHRINK_BATCH: u64 = 256;

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
    format!("{:.1} MiB", pages as f64 * 4096.0 / f64::from(1 << 20))
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
        let tier = self.pager.tier.as_ref().ok_or(MemoryLimitError::NoBudget)?;
        if pages == 0 {
            return Err(MemoryLimitError::Zero);
        }
        let old = tier.budget.max();
        if pages >= old {
            tier.budget.set_max(pages);
            return Ok(());
        }
        // From here new charges see the new budget, so the figure below can only fall.
        tier.budget.set_max(pages);
        let Some(swap) = &tier.swap else {
            let in_use = tier.budget.used();
            if in_use > pages {
                tier.budget.set_max(old);
                return Err(MemoryLimitError::NoSwap { in_use, asked: pages });
            }
            return Ok(());
        };
        let started = Instant::now();
        let mut last_progress = started;
        loop {
            let in_use = tier.budget.used();
            if in_use <= pages {
                return Ok(());
            }
            let seen = tier.budget.progress();
            let want = usize::try_from((in_use - pages).min(SHRINK_BATCH)).unwrap_or(1);
            if self.pager.evict_batch(want) > 0 {
                last_progress = Instant::now();
                continue;
            }
            // Nothing evicted by this sweep (pages busy, or the swap full: then the background
            // evictor drops clean pages). Wait for any frame to be freed, for a while.
            if tier.budget.wait_for_progress(seen, Duration::from_millis(20)) && tier.budget.progress() != seen {
                last_progress = Instant::now();
            }
            if last_progress.elapsed() > STALL_LIMIT || started.elapsed() > SHRINK_LIMIT {
                let in_use = tier.budget.used();
                tier.budget.set_max(old);
                return Err(MemoryLimitError::Stuck {
                    in_use,
                    asked: pages,
                    swap_used: swap.used_slots(),
                    swap_capacity: swap.capacity_slots(),
                });
            }
        }
    }
}
