//! The cost of request latency accounting, per request: what the adapter's `Call` does (take
//! `Instant::now()` at the start, and at its drop the elapsed time into the kind's histogram),
//! with accounting on and with `RTMPFS_LATENCY=off`, on 1 thread and on 2 threads recording
//! into the same histograms at once (the shared-cache-line case on this 2-CPU machine).
//!
//! `cargo bench -p rtmpfs-fuse --bench latency`; figures in docs/benchmarks.md.

// criterion_group! with a config makes an undocumented pub fn.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use rtmpfs_fuse::latency::Latency;
use rtmpfs_fuse::RequestType;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One request's accounting, as `Call::start` then `Call::drop`.
#[inline]
fn account(lat: &Latency, op: RequestType) {
    let start = lat.enabled().then(Instant::now);
    if let Some(s) = start {
        lat.record(op, s.elapsed());
    }
}

/// ns per `account` call with `threads` threads recording `iters` times each.
fn timed(lat: &Latency, threads: usize, iters: u64) -> Duration {
    let t = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                for i in 0..iters {
                    account(
                        black_box(lat),
                        if i % 2 == 0 {
                            RequestType::Write
                        } else {
                            RequestType::Create
                        },
                    );
                }
            });
        }
    });
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    for (name, on) in [("on", true), ("off", false)] {
        let lat = Latency::new(on);
        c.bench_function(&format!("latency_account_{name}_1thread"), |b| {
            b.iter(|| account(black_box(&lat), black_box(RequestType::Write)));
        });
        c.bench_function(&format!("latency_account_{name}_2threads"), |b| {
            // Per call on each thread: both threads do `iters` calls at once.
            b.iter_custom(|iters| timed(&lat, 2, iters));
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
