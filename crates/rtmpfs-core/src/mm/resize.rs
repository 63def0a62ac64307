//! A new RAM budget for a live filesystem (`Filesystem::set_memory_limit`, fs/memory_limit.rs):
//! a raise at once, a cut evicted down to before returning, or refused with the old budget put
//! back (docs/design.md, invariant 6).

use std::time::{Duration, Instant};

use super::MemoryManager;
use crate::fs::MemoryLimitError;
use crate::swap::Swap;

/// How long the shrink may go without freeing a single frame before it gives up (swap full or
/// failing, every resident page busy).
const STALL_LIMIT: Duration = Duration::from_secs(3);
/// The longest a shrink may take in all (frames freed and taken again by others, endlessly).
/// Below the 30 s that `rtmpfs resize` waits for the daemon's answer, so the command always
/// hears the outcome.
const SHRINK_LIMIT: Duration = Duration::from_secs(25);
/// Most pages asked of one eviction sweep.
const SHRINK_BATCH: u64 = 256;

impl MemoryManager {
    /// Set the frame budget to `pages` (see `Filesystem::set_memory_limit`).
    ///
    /// # Errors
    /// [`MemoryLimitError`], with the figures; the budget is then unchanged.
    pub(crate) fn set_frame_budget(&self, pages: u64) -> Result<(), MemoryLimitError> {
        let tier = self.tier.as_ref().ok_or(MemoryLimitError::NoBudget)?;
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
        if !tier.can_evict() {
            let in_use = tier.budget.in_use();
            if in_use > pages {
                tier.budget.set_max(old);
                return Err(MemoryLimitError::NoSwap { in_use, asked: pages });
            }
            return Ok(());
        }
        let swap = tier.swap.as_ref();
        let started = Instant::now();
        let mut last_progress = started;
        loop {
            // Frames and the compressed pool's pages (a cut also cuts the pool's cap: the
            // sweep writes the excess back first).
            let in_use = tier.budget.in_use();
            if in_use <= pages {
                return Ok(());
            }
            let seen = tier.budget.progress();
            let want = usize::try_from((in_use - pages).min(SHRINK_BATCH)).unwrap_or(1);
            if self.evict_now(want) > 0 {
                last_progress = Instant::now();
                continue;
            }
            // Nothing evicted by this sweep (pages busy, or the swap full: then the background
            // evictor drops clean pages). Wait for any frame to be freed, for a while.
            if tier.budget.wait_for_progress(seen, Duration::from_millis(20)) && tier.budget.progress() != seen {
                last_progress = Instant::now();
            }
            if last_progress.elapsed() > STALL_LIMIT || started.elapsed() > SHRINK_LIMIT {
                let in_use = tier.budget.in_use();
                tier.budget.set_max(old);
                return Err(MemoryLimitError::Stuck {
                    in_use,
                    asked: pages,
                    swap_used: swap.map_or(0, Swap::used_slots),
                    swap_capacity: swap.and_then(Swap::capacity_slots),
                });
            }
        }
    }
}
