//! Request latency: one log-bucketed histogram per request kind ([`RequestType`]), recorded when the
//! reply has been sent (see `adapter/reply.rs`, `Call`'s `Drop`), read by `rtmpfs status`.
//!
//! Cost: two `Instant::now()` (vDSO `clock_gettime`, ~20-40 ns each) and two relaxed atomic
//! adds per request; no lock, no allocation. `RTMPFS_LATENCY=off` in the daemon's environment
//! (read once, at mount) skips all of it, so the cost can be measured (docs/benchmarks.md).
//!
//! Buckets: values below 4 ns have a bucket each; from 4 ns on, each power of two is split in
//! four (the two bits after the leading one), so a bucket spans at most 25% of its lower bound
//! and a percentile read from it is within 25% of the true value. The last power with buckets
//! of its own is 2^36 ns (68.7 s): values from 7 * 2^34 ns (120 s) on share the last bucket.

use crate::stats::{RequestType, OP_COUNT};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 2;
const SUB: usize = 1 << SUB_BITS;
/// The largest power of two with buckets of its own (2^36 ns = 68.7 s).
const MAX_EXP: u32 = 36;
/// Buckets per histogram.
pub const BUCKETS: usize = SUB + (MAX_EXP as usize - SUB_BITS as usize + 1) * SUB;

/// The bucket of a value in nanoseconds.
#[must_use]
pub fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = ns.ilog2();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((ns >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (exp - SUB_BITS) as usize * SUB + sub
}

/// The largest value (ns) that falls in bucket `i` (for the last bucket, 2^37 - 1: the larger
/// values that also land there are not told apart).
#[must_use]
pub fn bucket_upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i - SUB) / SUB + SUB_BITS as usize;
    let sub = ((i - SUB) % SUB) as u64;
    let width = 1u64 << (exp - SUB_BITS as usize);
    ((SUB as u64 + sub) << (exp - SUB_BITS as usize)) + width - 1
}

/// One request kind's histogram.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    /// Count one request that took `d`.
    #[inline]
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, bucket by bucket (each read on its own: a request recorded meanwhile may be
    /// in some and not others, which moves a percentile by at most one request).
    #[must_use]
    pub fn snapshot(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
}

/// Percentile `q` (0 < q <= 1) of a snapshot, in ns: the upper bound of the bucket holding the
/// request of rank ceil(q * n). None when the histogram is empty.
#[must_use]
pub fn percentile(counts: &[u64; BUCKETS], q: f64) -> Option<u64> {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return None;
    }
    // Rank of the request wanted, 1-based; at least 1.
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bucket_upper(i));
        }
    }
    Some(bucket_upper(BUCKETS - 1))
}

/// The histograms of every request kind, and whether they are kept at all.
#[derive(Debug)]
pub struct Latency {
    enabled: bool,
    kinds: [Histogram; OP_COUNT],
}

impl Latency {
    /// Histograms, recorded only if `enabled`.
    #[must_use]
    pub fn new(enabled: bool) -> Latency {
        Latency {
            enabled,
            kinds: std::array::from_fn(|_| Histogram::default()),
        }
    }

    /// Whether `RTMPFS_LATENCY` leaves latency accounting on: anything but `off`, `0`, `no`,
    /// `false` (or unset) means on.
    #[must_use]
    pub fn enabled_by_env() -> bool {
        let v = std::env::var("RTMPFS_LATENCY").unwrap_or_default();
        !matches!(v.trim().to_ascii_lowercase().as_str(), "off" | "0" | "no" | "false")
    }

    /// Whether requests are timed.
    #[inline]
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Count one request of kind `op` that took `d`.
    #[inline]
    pub fn record(&self, op: RequestType, d: Duration) {
        self.kinds[op as usize].record(d);
    }

    /// Kind `op`'s histogram.
    #[must_use]
    pub fn histogram(&self, op: RequestType) -> &Histogram {
        &self.kinds[op as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_within_25_percent() {
        let mut prev_upper = None;
        for i in 0..BUCKETS {
            let up = bucket_upper(i);
            if let Some(p) = prev_upper {
                assert_eq!(bucket_of(p + 1), i, "bucket {i} starts right after {p}");
            }
            assert_eq!(bucket_of(up), i, "bucket {i}'s upper bound {up}");
            if i >= SUB {
                let low = prev_upper.map_or(0, |p| p + 1);
                assert!(
                    (up - low) * 4 <= low.max(1),
                    "bucket {i} [{low}, {up}] spans more than 25%"
                );
            }
            prev_upper = Some(up);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(1 << (MAX_EXP + 1)), BUCKETS - 1);
        assert_eq!(bucket_upper(BUCKETS - 1), (1 << (MAX_EXP + 1)) - 1);
        assert_eq!(bucket_of(0), 0);
    }

    #[test]
    fn percentiles_read_the_right_bucket() {
        let h = Histogram::default();
        assert_eq!(percentile(&h.snapshot(), 0.5), None);
        // 98 fast requests (1 us) and 2 slow ones (1 ms): p50 is about 1 us, p99 about 1 ms.
        for _ in 0..98 {
            h.record(Duration::from_micros(1));
        }
        for _ in 0..2 {
            h.record(Duration::from_millis(1));
        }
        let s = h.snapshot();
        let p50 = percentile(&s, 0.5).unwrap();
        let p99 = percentile(&s, 0.99).unwrap();
        assert!((1000..1250).contains(&p50), "p50 {p50}");
        assert!((1_000_000..1_250_000).contains(&p99), "p99 {p99}");
        assert_eq!(percentile(&s, 1.0), Some(p99));
    }

    #[test]
    fn the_switch_reads_off() {
        assert!(Latency::new(true).enabled());
        assert!(!Latency::new(false).enabled());
    }
}
