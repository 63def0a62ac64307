//! State changes of the swap file, logged once each: "swap full" and "swap device failing",
//! and their recovery. The engine counts swap errors (`Usage`); this watches those figures
//! once a second instead of logging per failed I/O, so a full or dying swap device is one
//! warning, not thousands (the engine's own per-I/O warnings are rate-limited by the log
//! writer, see rtmpfs-cli's `logging.rs`).

use rtmpfs_core::{Filesystem, Usage};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long without a new swap error before the device counts as working again.
pub const RECOVERY_QUIET: Duration = Duration::from_secs(30);

/// How serious a state change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something went wrong.
    Warn,
    /// It went right again.
    Info,
}

/// The swap file's state as last seen.
#[derive(Debug, Default)]
pub struct SwapHealth {
    full: bool,
    /// Since when the device is failing (the last new error), if it is.
    failing_since_error: Option<Instant>,
    errors_seen: u64,
}

impl SwapHealth {
    /// Take one look at the figures; returns the state changes to log.
    pub fn observe(&mut self, u: &Usage, now: Instant) -> Vec<(Severity, String)> {
        let mut out = Vec::new();
        let full = u
            .swap_capacity_pages
            .is_some_and(|cap| cap > 0 && u.swap_slots_used >= cap);
        if full != self.full {
            self.full = full;
            out.push(if full {
                (
                    Severity::Warn,
                    format!(
                        "swap full: all {} pages of swap_size= in use; writes beyond memory= now fail with ENOSPC",
                        u.swap_slots_used
                    ),
                )
            } else {
                (Severity::Info, "swap no longer full".to_string())
            });
        }
        let errors = u.swap_read_errors + u.swap_write_errors;
        if errors > self.errors_seen {
            if self.failing_since_error.is_none() {
                out.push((
                    Severity::Warn,
                    format!(
                        "swap device failing: {} write and {} read errors so far; pages that cannot be read back give EIO",
                        u.swap_write_errors, u.swap_read_errors
                    ),
                ));
            }
            self.failing_since_error = Some(now);
            self.errors_seen = errors;
        } else if self
            .failing_since_error
            .is_some_and(|t| now.saturating_duration_since(t) >= RECOVERY_QUIET)
        {
            self.failing_since_error = None;
            out.push((
                Severity::Info,
                format!(
                    "swap device working again: no new error for {} s ({} write and {} read errors in all)",
                    RECOVERY_QUIET.as_secs(),
                    u.swap_write_errors,
                    u.swap_read_errors
                ),
            ));
        }
        out
    }
}

/// Watch `fs` once a second on a thread of its own until it is dropped.
pub fn start_swap_watch(fs: &Arc<Filesystem>) {
    let fs: Weak<Filesystem> = Arc::downgrade(fs);
    let spawned = std::thread::Builder::new().name("rtmpfs-health".into()).spawn(move || {
        let mut health = SwapHealth::default();
        while let Some(usage) = fs.upgrade().map(|fs| fs.usage()) {
            for (severity, msg) in health.observe(&usage, Instant::now()) {
                match severity {
                    Severity::Warn => tracing::warn!("{msg}"),
                    Severity::Info => tracing::info!("{msg}"),
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("no swap watch thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(used: u64, cap: Option<u64>, werr: u64, rerr: u64) -> Usage {
        Usage {
            swap_slots_used: used,
            swap_capacity_pages: cap,
            swap_write_errors: werr,
            swap_read_errors: rerr,
            ..Usage::default()
        }
    }

    #[test]
    fn each_state_change_is_said_once() {
        let mut h = SwapHealth::default();
        let t = Instant::now();
        assert!(h.observe(&usage(10, Some(256), 0, 0), t).is_empty());
        let full = h.observe(&usage(256, Some(256), 0, 0), t);
        assert_eq!(full.len(), 1);
        assert!(full[0].1.starts_with("swap full"));
        assert!(h.observe(&usage(256, Some(256), 0, 0), t).is_empty(), "said once");
        let fail = h.observe(&usage(256, Some(256), 5, 0), t);
        assert!(
            fail.len() == 1 && fail[0].1.starts_with("swap device failing"),
            "{fail:?}"
        );
        // More errors: nothing new to say.
        for s in 1..20 {
            assert!(h
                .observe(&usage(256, Some(256), 5 + s, 1), t + Duration::from_secs(s))
                .is_empty());
        }
        // Quiet for the recovery time, and no longer full: both said once.
        let later = t + Duration::from_secs(19) + RECOVERY_QUIET;
        let back = h.observe(&usage(100, Some(256), 24, 1), later);
        assert_eq!(back.len(), 2, "{back:?}");
        assert!(back.iter().all(|(s, _)| *s == Severity::Info));
        assert!(h.observe(&usage(100, Some(256), 24, 1), later).is_empty());
        // Unlimited or absent swap is never full.
        assert!(SwapHealth::default().observe(&usage(0, None, 0, 0), t).is_empty());
        assert!(SwapHealth::default().observe(&usage(0, Some(0), 0, 0), t).is_empty());
    }
}
