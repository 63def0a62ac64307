//! `rtmpfs status`: the status object (schema in docs/status.md), built by the daemon from the
//! engine's live figures, its request counters and latency histograms, and its rate samples;
//! sent as one JSON line over the control socket (request `status-json`) and rendered by the
//! client as JSON or as a table.
//!
//! Rates: the daemon samples the eviction and swap-in counters once a second into a ring of
//! [`RING`] samples ([`RateRing`], one small thread), and a status request divides the change
//! since the oldest sample by the time elapsed: a rate over the last few seconds that one
//! request can read at once (a client sampling twice would have to wait a second).

use crate::latency::percentile;
use crate::stats::{RequestType, Stats};
use rtmpfs_core::{Filesystem, Usage};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The version of the status object; a change that removes or retypes a field bumps it
/// (adding a field does not).
pub const SCHEMA: u32 = 1;

/// Samples kept for the rates: one a second, so rates cover the last `RING - 1` seconds.
pub const RING: usize = 6;

/// Bytes per page in the figures counted in pages: the engine's page.
pub const PAGE_SIZE: u64 = rtmpfs_core::PAGE_SIZE;

/// The status object (`rtmpfs status --json`). Field by field in docs/status.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The mount's source (`fsname=`).
    pub source: String,
    /// Mounted or remounted read-only.
    pub read_only: bool,
    /// Seconds since the daemon mounted.
    pub uptime_seconds: f64,
    /// Each limit with its use.
    pub limits: Limits,
    /// Where the data pages are.
    pub pages: Pages,
    /// Open handles (files and directories).
    pub open_files: u64,
    /// Evictions and swap-ins per second over the last few seconds.
    pub rates: Rates,
    /// Counters since mount.
    pub totals: Totals,
    /// The compressed tier (`compress=`).
    pub compressed_pool: CompressedPool,
    /// Requests since mount, per kind.
    pub requests: Requests,
}

/// A limit in bytes and its use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByteLimit {
    /// The limit; `null` when unlimited.
    pub limit_bytes: Option<u64>,
    /// In use.
    pub used_bytes: u64,
}

/// A limit counted in inodes and its use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountLimit {
    /// The limit; `null` when unlimited.
    pub limit: Option<u64>,
    /// In use.
    pub used: u64,
}

/// The swap file: its limit and use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapLimit {
    /// Whether the mount has a swap file (`memory=` without `noswap`).
    pub enabled: bool,
    /// `swap_size=`; `null` when unbounded (or no swap).
    pub limit_bytes: Option<u64>,
    /// Bytes of swap slots in use (swapped pages, plus swap copies kept by clean resident ones).
    pub used_bytes: u64,
    /// Bytes the swap file spans.
    pub file_bytes: u64,
    /// `swap_encrypt`.
    pub encrypted: bool,
}

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `size=` and the data charged against it (as `df`).
    pub size: ByteLimit,
    /// `nr_inodes=` and the inodes charged against it (as `df -i`: hard links and xattrs count).
    pub inodes: CountLimit,
    /// `memory=` (the RAM budget) and the RAM file data holds now.
    pub memory: ByteLimit,
    /// The swap file.
    pub swap: SwapLimit,
}

/// Data pages by place, in pages of [`PAGE_SIZE`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pages {
    /// Pages whose data is in RAM.
    pub resident: u64,
    /// Pages whose data is only in the swap file.
    pub swapped: u64,
    /// Pages compressed in the pool (RAM); `null` without a compressed tier (`compress=off`).
    pub compressed: Option<u64>,
    /// Pages of zeros evicted as nothing (no RAM, no swap); `null` without a compressed tier.
    pub zero: Option<u64>,
    /// Pages reserved by fallocate and never written.
    pub reserved: u64,
    /// Pages lost to a failed swap read.
    pub poisoned: u64,
}

/// Rates over the last few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// The window the rates are measured over (0 in the first second after mount).
    pub window_seconds: f64,
    /// Pages evicted (written to swap, or dropped clean) per second.
    pub evictions_per_second: f64,
    /// Pages read back from swap per second.
    pub swap_ins_per_second: f64,
}

/// Counters since mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Pages written to swap and dropped from RAM.
    pub evictions: u64,
    /// Pages dropped from RAM without I/O (their swap copy was valid).
    pub clean_evictions: u64,
    /// Pages read back from swap.
    pub swap_ins: u64,
    /// Of those, read ahead of a sequential reader.
    pub readahead_swap_ins: u64,
    /// Times a request had to reclaim or wait for RAM itself.
    pub direct_reclaims: u64,
    /// Failed swap reads.
    pub swap_read_errors: u64,
    /// Failed swap writes.
    pub swap_write_errors: u64,
    /// Bytes written to the swap file (whole 4 KiB slots).
    pub swap_bytes_written: u64,
    /// Bytes read from it (whole slots, or the 512-byte sectors of a compressed record).
    pub swap_bytes_read: u64,
}

/// The compressed tier: its pool in RAM and what it did since mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressedPool {
    /// The compressor: `lz4`, `zstd`, or `off` (no compressed tier; every other field is then
    /// 0 or `null`).
    pub compression: String,
    /// `compress_max=`: the most RAM the pool may hold now; `null` without a pool.
    pub limit_bytes: Option<u64>,
    /// RAM the pool holds (compressed bytes and allocator overhead), charged to `memory=`.
    pub used_bytes: u64,
    /// Pages it holds.
    pub pages: u64,
    /// The bytes of those pages over the RAM they take; `null` while it holds none.
    pub ratio: Option<f64>,
    /// Reads and faults served from the pool (a decompression, no I/O).
    pub hits: u64,
    /// Pages stored in it.
    pub stores: u64,
    /// Pages of zeros evicted as nothing.
    pub zero_stores: u64,
    /// Pages that did not compress well enough and went to swap instead.
    pub rejected: u64,
    /// Of those, the pages rejected by the estimate, without a compressor's trial.
    pub rejected_by_estimate: u64,
    /// Pages written from the full pool to swap (as compressed records).
    pub writebacks: u64,
    /// Compressed records live in swap (pages written back and not read since).
    pub swap_records: u64,
    /// Their bytes (sealed compressed data).
    pub swap_record_bytes: u64,
    /// Swap slots holding them (part of `limits.swap.used_bytes`, 4096 bytes each).
    pub swap_record_slots: u64,
    /// Records read back from swap.
    pub swap_records_read: u64,
}

/// Requests since mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requests {
    /// Whether latencies are recorded (false under `RTMPFS_LATENCY=off`: every percentile is
    /// then `null`).
    pub latency_recorded: bool,
    /// Requests answered with an errno, of any kind.
    pub failed: u64,
    /// Every request kind, in a fixed order, whether it ran or not.
    pub kinds: Vec<RequestKind>,
}

/// One request kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestKind {
    /// Its name (`lookup`, `write`, ...; docs/status.md lists the opcodes of each).
    pub kind: String,
    /// Requests received.
    pub count: u64,
    /// Median latency in ns, from arrival to reply (the upper bound of its histogram bucket,
    /// within 25%); `null` when none was timed.
    pub p50_ns: Option<u64>,
    /// 99th percentile, likewise.
    pub p99_ns: Option<u64>,
}

/// One sample of the counters the rates come from.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    evictions: u64,
    swap_ins: u64,
}

impl Sample {
    fn of(u: &Usage, at: Instant) -> Sample {
        Sample {
            at,
            evictions: u.evictions + u.clean_evictions,
            swap_ins: u.swap_ins,
        }
    }
}

/// The last [`RING`] samples, oldest first.
#[derive(Debug, Default)]
pub struct RateRing {
    samples: Mutex<VecDeque<Sample>>,
}

impl RateRing {
    fn push(&self, s: Sample) {
        if let Ok(mut q) = self.samples.lock() {
            if q.len() == RING {
                q.pop_front();
            }
            q.push_back(s);
        }
    }

    /// The rates from the oldest sample to `now`.
    fn rates(&self, now: Sample) -> Rates {
        let oldest = self.samples.lock().ok().and_then(|q| q.front().copied());
        let Some(old) = oldest else {
            return Rates {
                window_seconds: 0.0,
                evictions_per_second: 0.0,
                swap_ins_per_second: 0.0,
            };
        };
        let secs = now.at.saturating_duration_since(old.at).as_secs_f64();
        let per_second = |a: u64, b: u64| {
            if secs > 0.0 {
                a.saturating_sub(b) as f64 / secs
            } else {
                0.0
            }
        };
        Rates {
            window_seconds: secs,
            evictions_per_second: per_second(now.evictions, old.evictions),
            swap_ins_per_second: per_second(now.swap_ins, old.swap_ins),
        }
    }

    /// Sample `fs` now and every second after, on a thread of its own that ends with the
    /// engine (it holds a weak reference).
    pub fn start_sampling(self: &Arc<Self>, fs: &Arc<Filesystem>) {
        let ring = self.clone();
        ring.push(Sample::of(&fs.usage(), Instant::now()));
        let fs = Arc::downgrade(fs);
        let spawned = std::thread::Builder::new()
            .name("rtmpfs-rates".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(fs) = fs.upgrade() else { return };
                ring.push(Sample::of(&fs.usage(), Instant::now()));
            });
        if let Err(e) = spawned {
            tracing::warn!("no rate sampling thread (status rates stay 0): {e}");
        }
    }
}

/// What the daemon knows besides the engine, for [`build`].
pub struct Sources<'a> {
    /// The engine.
    pub fs: &'a Filesystem,
    /// Request counters and latencies.
    pub stats: &'a Stats,
    /// Rate samples.
    pub rates: &'a RateRing,
    /// When the daemon mounted.
    pub started: Instant,
    /// `fsname=`.
    pub source: String,
    /// `size=` in bytes (None: unlimited).
    pub size_limit: Option<u64>,
    /// `nr_inodes=` (None: unlimited).
    pub inode_limit: Option<u64>,
    /// `swap_size=` in bytes.
    pub swap_limit: Option<u64>,
}

/// The status object now.
#[must_use]
pub fn build(src: &Sources<'_>) -> Status {
    let now = Instant::now();
    let u = src.fs.usage();
    let sf = src.fs.statfs();
    let page = |n: u64| n.saturating_mul(PAGE_SIZE);
    // A swap file exists with a RAM budget and without `noswap` (from mount on, before the first
    // page goes there).
    let config = src.fs.config();
    let swap_enabled = config.memory_bytes.is_some() && config.swap.is_some();
    let compressing = u.compression != rtmpfs_core::Compression::Off;
    let kinds = RequestType::ALL
        .iter()
        .map(|&op| {
            let counts = src.stats.latency.histogram(op).snapshot();
            RequestKind {
                kind: op.name().to_string(),
                count: src.stats.get(op),
                p50_ns: percentile(&counts, 0.50),
                p99_ns: percentile(&counts, 0.99),
            }
        })
        .collect();
    Status {
        schema: SCHEMA,
        source: src.source.clone(),
        read_only: src.fs.is_read_only(),
        uptime_seconds: now.saturating_duration_since(src.started).as_secs_f64(),
        limits: Limits {
            size: ByteLimit {
                limit_bytes: src.size_limit,
                used_bytes: page(u.charged_pages),
            },
            inodes: CountLimit {
                limit: src.inode_limit,
                used: sf.files.saturating_sub(sf.ffree),
            },
            memory: ByteLimit {
                limit_bytes: u.memory_limit_pages.map(page),
                used_bytes: page(u.frames_in_use.max(u.resident_pages)) + u.pool_bytes,
            },
            swap: SwapLimit {
                enabled: swap_enabled,
                limit_bytes: if swap_enabled { src.swap_limit } else { None },
                used_bytes: page(u.swap_slots_used),
                file_bytes: u.swap_file_bytes,
                encrypted: u.swap_encrypted,
            },
        },
        pages: Pages {
            resident: u.resident_pages,
            swapped: u.swapped_pages,
            compressed: compressing.then_some(u.compressed_pages),
            zero: compressing.then_some(u.zero_pages),
            reserved: u.reserved_pages,
            poisoned: u.poisoned_pages,
        },
        open_files: src.fs.open_handles(),
        rates: src.rates.rates(Sample::of(&u, now)),
        totals: Totals {
            evictions: u.evictions,
            clean_evictions: u.clean_evictions,
            swap_ins: u.swap_ins,
            readahead_swap_ins: u.readahead_swap_ins,
            direct_reclaims: u.direct_reclaims,
            swap_read_errors: u.swap_read_errors,
            swap_write_errors: u.swap_write_errors,
            swap_bytes_written: u.swap_bytes_written,
            swap_bytes_read: u.swap_bytes_read,
        },
        compressed_pool: CompressedPool {
            compression: u.compression.name().to_string(),
            limit_bytes: u.pool_limit_bytes,
            used_bytes: u.pool_bytes,
            pages: u.compressed_pages,
            ratio: u.pool_ratio(),
            hits: u.pool_hits,
            stores: u.pool_stores,
            zero_stores: u.pool_zero_pages_stored,
            rejected: u.pool_rejected,
            rejected_by_estimate: u.pool_rejected_by_estimate,
            writebacks: u.pool_writebacks,
            swap_records: u.swap_records,
            swap_record_bytes: u.swap_record_bytes,
            swap_record_slots: u.swap_record_slots,
            swap_records_read: u.swap_records_read,
        },
        requests: Requests {
            latency_recorded: src.stats.latency.enabled(),
            failed: src.stats.failed(),
            kinds,
        },
    }
}

/// `n` bytes for a person: `512 B`, `1.5 KiB`, `20.0 MiB`, `2.00 GiB`.
#[must_use]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// A latency for a person: `850 ns`, `12.3 us`, `4.1 ms`, `2.0 s`; `-` when none.
fn human_ns(ns: Option<u64>) -> String {
    let Some(ns) = ns else { return "-".into() };
    let n = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} us", n / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", n / 1e6)
    } else {
        format!("{:.1} s", n / 1e9)
    }
}

/// The human table of `rtmpfs status` for the mount at `mount_point`.
#[must_use]
pub fn render_table(s: &Status, mount_point: &str) -> String {
    let mut out = String::new();
    let uptime = Duration::from_secs_f64(s.uptime_seconds.max(0.0)).as_secs();
    let _ = writeln!(
        out,
        "{mount_point}: rtmpfs ({}), {}, up {}h{:02}m{:02}s",
        s.source,
        if s.read_only { "read-only" } else { "read-write" },
        uptime / 3600,
        uptime / 60 % 60,
        uptime % 60
    );
    let bytes_limit = |l: &ByteLimit| {
        let limit = l.limit_bytes.map_or_else(|| "unlimited".to_string(), human_bytes);
        let pct = l.limit_bytes.filter(|&m| m > 0).map_or_else(String::new, |m| {
            format!("  {:.0}%", l.used_bytes as f64 * 100.0 / m as f64)
        });
        (human_bytes(l.used_bytes), limit, pct)
    };
    let _ = writeln!(out, "\n{:<10} {:>12} {:>12}", "limit", "used", "of");
    let (used, limit, pct) = bytes_limit(&s.limits.size);
    let _ = writeln!(out, "{:<10} {used:>12} {limit:>12}{pct}", "size");
    let i = &s.limits.inodes;
    let ilimit = i.limit.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let ipct = i
        .limit
        .filter(|&m| m > 0)
        .map_or_else(String::new, |m| format!("  {:.0}%", i.used as f64 * 100.0 / m as f64));
    let _ = writeln!(out, "{:<10} {:>12} {ilimit:>12}{ipct}", "inodes", i.used);
    if s.limits.memory.limit_bytes.is_some() {
        let (used, limit, pct) = bytes_limit(&s.limits.memory);
        let _ = writeln!(out, "{:<10} {used:>12} {limit:>12}{pct}", "memory");
    } else {
        let _ = writeln!(out, "{:<10} {:>12} {:>12}", "memory", "-", "no memory=");
    }
    let sw = &s.limits.swap;
    if sw.enabled {
        let (used, limit, pct) = bytes_limit(&ByteLimit {
            limit_bytes: sw.limit_bytes,
            used_bytes: sw.used_bytes,
        });
        let _ = writeln!(
            out,
            "{:<10} {used:>12} {limit:>12}{pct}  (file {}{})",
            "swap",
            human_bytes(sw.file_bytes),
            if sw.encrypted { ", encrypted" } else { "" }
        );
    } else {
        let _ = writeln!(out, "{:<10} {:>12} {:>12}", "swap", "-", "none");
    }
    let c = &s.compressed_pool;
    if c.compression == "off" {
        let _ = writeln!(out, "{:<10} {:>12} {:>12}", "pool", "-", "compress=off");
    } else {
        let (used, limit, pct) = bytes_limit(&ByteLimit {
            limit_bytes: c.limit_bytes,
            used_bytes: c.used_bytes,
        });
        let ratio = c.ratio.map_or_else(|| "—".to_string(), |r| format!("{r:.2}"));
        let _ = writeln!(
            out,
            "{:<10} {used:>12} {limit:>12}{pct}  ({}, ratio {ratio}, hits {})",
            "pool", c.compression, c.hits
        );
    }
    let p = &s.pages;
    let dash = |v: Option<u64>| v.map_or_else(|| "—".to_string(), |n| n.to_string());
    let _ = writeln!(
        out,
        "\npages      resident {}  swapped {}  compressed {}  zero {}  reserved {}  poisoned {}",
        p.resident,
        p.swapped,
        dash(p.compressed),
        dash(p.zero),
        p.reserved,
        p.poisoned
    );
    let _ = writeln!(out, "open files {}", s.open_files);
    let _ = writeln!(
        out,
        "rates      {:.1} evictions/s  {:.1} swap-ins/s  (last {:.0} s)",
        s.rates.evictions_per_second, s.rates.swap_ins_per_second, s.rates.window_seconds
    );
    let t = &s.totals;
    let _ = writeln!(
        out,
        "totals     evictions {} (+{} clean)  swap-ins {} ({} read ahead)  direct reclaims {}  swap errors {} read / {} write",
        t.evictions, t.clean_evictions, t.swap_ins, t.readahead_swap_ins, t.direct_reclaims, t.swap_read_errors, t.swap_write_errors
    );
    if c.compression != "off" {
        let _ = writeln!(
            out,
            "pool       stores {}  zero pages {}  rejected {} ({} by the estimate)  written back {}",
            c.stores, c.zero_stores, c.rejected, c.rejected_by_estimate, c.writebacks
        );
        let _ = writeln!(
            out,
            "records    {} in swap ({} in {} slots)  read back {}",
            c.swap_records,
            human_bytes(c.swap_record_bytes),
            c.swap_record_slots,
            c.swap_records_read
        );
    }
    let r = &s.requests;
    let _ = writeln!(
        out,
        "\n{:<12} {:>12} {:>10} {:>10}{}",
        "request",
        "count",
        "p50",
        "p99",
        if r.latency_recorded {
            ""
        } else {
            "   (RTMPFS_LATENCY=off: not timed)"
        }
    );
    for k in r.kinds.iter().filter(|k| k.count > 0) {
        let _ = writeln!(
            out,
            "{:<12} {:>12} {:>10} {:>10}",
            k.kind,
            k.count,
            human_ns(k.p50_ns),
            human_ns(k.p99_ns)
        );
    }
    let _ = writeln!(out, "{:<12} {:>12}", "failed", r.failed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_cmp)] // whole seconds, exact in f64
    fn rates_divide_the_change_since_the_oldest_sample() {
        let ring = RateRing::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            ring.rates(Sample {
                at: t0,
                evictions: 5,
                swap_ins: 0
            })
            .window_seconds,
            0.0
        );
        for s in 0..10 {
            ring.push(Sample {
                at: at(s),
                evictions: 100 * s,
                swap_ins: 10 * s,
            });
        }
        // The ring keeps the last RING samples: the oldest is at 10 - RING seconds.
        let r = ring.rates(Sample {
            at: at(10),
            evictions: 1000,
            swap_ins: 100,
        });
        assert_eq!(r.window_seconds, RING as f64);
        assert!((r.evictions_per_second - 100.0).abs() < 1e-9, "{r:?}");
        assert!((r.swap_ins_per_second - 10.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn human_figures() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(20 << 20), "20.0 MiB");
        assert_eq!(human_bytes(300 << 30), "300 GiB");
        assert_eq!(human_ns(Some(850)), "850 ns");
        assert_eq!(human_ns(Some(12_300)), "12.3 us");
        assert_eq!(human_ns(None), "-");
    }
}
