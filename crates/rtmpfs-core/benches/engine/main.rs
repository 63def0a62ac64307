//! rtmpfs-core in process beside the same work done with system calls on a kernel tmpfs, in one
//! run: `cargo bench -p rtmpfs-core --bench engine` (or `scripts/bench-engine.sh`).
//!
//! Two passes over the same fixture (see docs/benchmarks-engine.md):
//! 1. criterion, one benchmark per (operation, side), for the per-operation figures with
//!    criterion's statistics and its change detection between runs;
//! 2. a paired loop of our own: for each comparison, several rounds that each time engine and
//!    kernel (and memcpy, and 1 vs 2 threads) back to back, alternating which goes first; the
//!    ratio of a row is the median of the per-round ratios, so that a load spike on this shared
//!    2-CPU machine hits both sides of a ratio instead of one.
//!
//! The summary table at the end takes its figures and ratios from pass 2, and shows pass 1's
//! ratio beside them as a cross-check.
//!
//! Environment: `RTMPFS_BENCH_ROUNDS` (paired rounds, default 11; 0: criterion only),
//! `RTMPFS_BENCH_ROUND_MS` (target milliseconds per side per round, default 30),
//! `RTMPFS_BENCH_TMPDIR` (where the kernel tmpfs is mounted, default the system temporary
//! directory), `RTMPFS_BENCH_SUMMARY` (also write the summary table, as Markdown, to this file).

mod mount;
mod ops;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use ops::{run_threads, run_threads_timed, Fixture, Op, Side, Timing, MIB, READDIR_ENTRIES, THREADS};

/// Criterion samples per benchmark (its minimum is 10).
const SAMPLE_SIZE: usize = 20;

/// One criterion benchmark: group, id, side, operation, threads.
type Bench = (&'static str, &'static str, Side, Op, usize);

fn criterion_benches() -> Vec<Bench> {
    use Op::{
        CreateUnlink, FloorRead4k, FloorWrite4k, FreshWrite1m, Memcpy1m, Pread4k, Pwrite4k, Readdir, SeqRead1m,
        SeqWrite1m, StatGetattr, StatLookup,
    };
    use Side::{Engine, Kernel, Mem};
    vec![
        ("pread_4k_random", "engine", Engine, Pread4k, 1),
        ("pread_4k_random", "kernel", Kernel, Pread4k, 1),
        ("pread_4k_random", "memcpy_floor", Mem, FloorRead4k, 1),
        ("pwrite_4k_random", "engine", Engine, Pwrite4k, 1),
        ("pwrite_4k_random", "kernel", Kernel, Pwrite4k, 1),
        ("pwrite_4k_random", "memcpy_floor", Mem, FloorWrite4k, 1),
        ("seq_read_1m", "engine", Engine, SeqRead1m, 1),
        ("seq_read_1m", "kernel", Kernel, SeqRead1m, 1),
        ("seq_write_1m", "engine", Engine, SeqWrite1m, 1),
        ("seq_write_1m", "kernel", Kernel, SeqWrite1m, 1),
        ("fresh_write_1m", "engine", Engine, FreshWrite1m, 1),
        ("fresh_write_1m", "kernel", Kernel, FreshWrite1m, 1),
        ("memcpy_1m", "memcpy", Mem, Memcpy1m, 1),
        ("create_unlink", "engine", Engine, CreateUnlink, 1),
        ("create_unlink", "kernel", Kernel, CreateUnlink, 1),
        ("stat", "engine_getattr", Engine, StatGetattr, 1),
        ("stat", "engine_lookup_getattr", Engine, StatLookup, 1),
        ("stat", "kernel_fstatat", Kernel, StatLookup, 1),
        ("readdir_20000", "engine", Engine, Readdir, 1),
        ("readdir_20000", "kernel", Kernel, Readdir, 1),
        ("2threads_memcpy_floor_4k", "memcpy", Mem, FloorRead4k, THREADS),
        ("2threads_pread_4k", "engine", Engine, Pread4k, THREADS),
        ("2threads_pread_4k", "kernel", Kernel, Pread4k, THREADS),
        ("2threads_pwrite_4k", "engine", Engine, Pwrite4k, THREADS),
        ("2threads_pwrite_4k", "kernel", Kernel, Pwrite4k, THREADS),
        ("2threads_create_unlink", "engine", Engine, CreateUnlink, THREADS),
        ("2threads_create_unlink", "kernel", Kernel, CreateUnlink, THREADS),
        ("2threads_stat_lookup", "engine", Engine, StatLookup, THREADS),
        ("2threads_stat_lookup", "kernel", Kernel, StatLookup, THREADS),
    ]
}

fn throughput(op: Op, threads: usize) -> Throughput {
    match op {
        Op::SeqRead1m | Op::SeqWrite1m | Op::FreshWrite1m | Op::Memcpy1m => Throughput::Bytes(MIB as u64),
        Op::Readdir => Throughput::Elements(READDIR_ENTRIES as u64),
        _ => Throughput::Elements(threads as u64),
    }
}

/// Pass 1. Returns the median time per iteration (ns) of each benchmark that ran, keyed
/// "group/id", from the samples criterion measured (its last `SAMPLE_SIZE` calls of the routine;
/// the calls before them are its warm-up).
fn criterion_pass(fx: &Fixture, c: &mut Criterion) -> HashMap<String, f64> {
    let samples: RefCell<HashMap<String, Vec<(u64, Duration)>>> = RefCell::default();
    let benches = criterion_benches();
    let mut i = 0;
    while i < benches.len() {
        let group_name = benches[i].0;
        let mut group = c.benchmark_group(group_name);
        while i < benches.len() && benches[i].0 == group_name {
            let (_, id, side, op, threads) = benches[i];
            group.throughput(throughput(op, threads));
            let key = format!("{group_name}/{id}");
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let d = run_threads(fx, side, op, threads, iters);
                    samples.borrow_mut().entry(key.clone()).or_default().push((iters, d));
                    d
                });
            });
            i += 1;
        }
        group.finish();
    }
    samples
        .into_inner()
        .into_iter()
        .map(|(k, v)| {
            let from = v.len().saturating_sub(SAMPLE_SIZE);
            let per_iter: Vec<f64> = v[from..].iter().map(|&(n, d)| d.as_nanos() as f64 / n as f64).collect();
            (k, median(per_iter))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
        (lo.min(x), hi.max(x))
    })
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// How many operations make about `ms` milliseconds (single thread); also warms the path up.
fn calibrate(fx: &Fixture, side: Side, op: Op, ms: u64) -> u64 {
    let mut n = 1u64;
    loop {
        let d = run_threads(fx, side, op, 1, n);
        if d >= Duration::from_millis(5) || n >= 1 << 30 {
            let per_op = d.as_nanos() as f64 / n as f64;
            return ((ms as f64 * 1e6 / per_op) as u64).max(1);
        }
        n *= 2;
    }
}

/// ns per operation.
fn ns_per_op(d: Duration, ops: u64) -> f64 {
    d.as_nanos() as f64 / ops as f64
}

/// MiB/s for `ops` 1 MiB operations.
fn mibps(d: Duration, ops: u64) -> f64 {
    ops as f64 / d.as_secs_f64()
}

/// What a summary row compares.
#[derive(Clone, Copy)]
enum Kind {
    /// Engine vs kernel, ns/op; ratio = kernel / engine (how many times faster in process).
    Small(Op),
    /// Engine vs memcpy (and kernel), MiB/s; ratio = engine / memcpy.
    Bandwidth(Op),
    /// Throughput with 2 threads / 1 thread; ratio = the engine's.
    Scaling(Op),
    /// Reference only: memcpy of 4 KiB from/to random pages (the floor of pread/pwrite).
    Floor(Op),
    /// Reference only: the same memcpy from 2 threads / 1 thread (what the memory system allows).
    FloorScaling(Op),
}

struct Row {
    name: &'static str,
    kind: Kind,
    /// Criterion's ratio computed the same way, from pass-1 keys (numerator, denominator).
    crit: Option<(&'static str, &'static str)>,
    target: Option<f64>,
    engine: Vec<f64>,
    kernel: Vec<f64>,
    reference: Vec<f64>,
    ratio: Vec<f64>,
    kernel_ratio: Vec<f64>,
    /// Scaling rows: the same scaling computed from CPU time per operation (engine, kernel).
    cpu_engine: Vec<f64>,
    cpu_kernel: Vec<f64>,
    /// Scaling rows: CPU time of the 2-thread run / (2 x its wall time): how much of the time
    /// both threads were actually on a CPU (engine, kernel).
    oncpu_engine: Vec<f64>,
    oncpu_kernel: Vec<f64>,
}

fn rows() -> Vec<Row> {
    let row = |name, kind, crit, target| Row {
        name,
        kind,
        crit,
        target,
        engine: Vec::new(),
        kernel: Vec::new(),
        reference: Vec::new(),
        ratio: Vec::new(),
        kernel_ratio: Vec::new(),
        cpu_engine: Vec::new(),
        cpu_kernel: Vec::new(),
        oncpu_engine: Vec::new(),
        oncpu_kernel: Vec::new(),
    };
    vec![
        row(
            "pread 4 KiB random",
            Kind::Small(Op::Pread4k),
            Some(("pread_4k_random/kernel", "pread_4k_random/engine")),
            Some(5.0),
        ),
        row(
            "pwrite 4 KiB random",
            Kind::Small(Op::Pwrite4k),
            Some(("pwrite_4k_random/kernel", "pwrite_4k_random/engine")),
            Some(5.0),
        ),
        row(
            "create+close+unlink",
            Kind::Small(Op::CreateUnlink),
            Some(("create_unlink/kernel", "create_unlink/engine")),
            Some(5.0),
        ),
        row(
            "stat: getattr(ino) vs fstatat",
            Kind::Small(Op::StatGetattr),
            Some(("stat/kernel_fstatat", "stat/engine_getattr")),
            Some(5.0),
        ),
        row(
            "stat: lookup+getattr vs fstatat",
            Kind::Small(Op::StatLookup),
            Some(("stat/kernel_fstatat", "stat/engine_lookup_getattr")),
            Some(5.0),
        ),
        row(
            "readdir 20,000 (per pass)",
            Kind::Small(Op::Readdir),
            Some(("readdir_20000/kernel", "readdir_20000/engine")),
            Some(5.0),
        ),
        row(
            "floor: memcpy 4 KiB from random page",
            Kind::Floor(Op::FloorRead4k),
            None,
            None,
        ),
        row(
            "floor: memcpy 4 KiB to random page",
            Kind::Floor(Op::FloorWrite4k),
            None,
            None,
        ),
        row(
            "seq read 1 MiB",
            Kind::Bandwidth(Op::SeqRead1m),
            Some(("memcpy_1m/memcpy", "seq_read_1m/engine")),
            Some(0.8),
        ),
        row(
            "seq write 1 MiB (overwrite)",
            Kind::Bandwidth(Op::SeqWrite1m),
            Some(("memcpy_1m/memcpy", "seq_write_1m/engine")),
            Some(0.8),
        ),
        row(
            "seq write 1 MiB (fresh file)",
            Kind::Bandwidth(Op::FreshWrite1m),
            Some(("memcpy_1m/memcpy", "fresh_write_1m/engine")),
            Some(0.8),
        ),
        row(
            "2 threads / 1: memcpy 4 KiB from random page",
            Kind::FloorScaling(Op::FloorRead4k),
            None,
            None,
        ),
        row(
            "2 threads / 1: pread 4 KiB",
            Kind::Scaling(Op::Pread4k),
            Some(("pread_4k_random/engine", "2threads_pread_4k/engine")),
            Some(1.7),
        ),
        row(
            "2 threads / 1: pwrite 4 KiB",
            Kind::Scaling(Op::Pwrite4k),
            Some(("pwrite_4k_random/engine", "2threads_pwrite_4k/engine")),
            Some(1.7),
        ),
        row(
            "2 threads / 1: create+unlink",
            Kind::Scaling(Op::CreateUnlink),
            Some(("create_unlink/engine", "2threads_create_unlink/engine")),
            Some(1.7),
        ),
        row(
            "2 threads / 1: lookup+getattr",
            Kind::Scaling(Op::StatLookup),
            Some(("stat/engine_lookup_getattr", "2threads_stat_lookup/engine")),
            Some(1.7),
        ),
    ]
}

/// Pass 2: `rounds` rounds of every row, each side timed back to back.
fn paired_pass(fx: &Fixture, rounds: u64, ms: u64) -> Vec<Row> {
    let mut rows = rows();
    // Calibrate every (side, op) once: the same count of operations in every round.
    let mut counts: HashMap<(u8, u8), u64> = HashMap::new();
    let mut count = |side: Side, op: Op| -> u64 {
        *counts
            .entry((side as u8, op as u8))
            .or_insert_with(|| calibrate(fx, side, op, ms))
    };
    for r in 0..rounds {
        let flip = r % 2 == 1;
        for row in &mut rows {
            match row.kind {
                Kind::Small(op) => {
                    let (ne, nk) = (count(Side::Engine, op), count(Side::Kernel, op));
                    let mut e = 0.0;
                    let mut k = 0.0;
                    for first in [!flip, flip] {
                        if first {
                            e = ns_per_op(run_threads(fx, Side::Engine, op, 1, ne), ne);
                        } else {
                            k = ns_per_op(run_threads(fx, Side::Kernel, op, 1, nk), nk);
                        }
                    }
                    row.engine.push(e);
                    row.kernel.push(k);
                    row.ratio.push(k / e);
                }
                Kind::Floor(op) => {
                    let n = count(Side::Mem, op);
                    row.reference.push(ns_per_op(run_threads(fx, Side::Mem, op, 1, n), n));
                }
                Kind::FloorScaling(op) => {
                    let n = count(Side::Mem, op);
                    let one = run_threads(fx, Side::Mem, op, 1, n);
                    let two = run_threads(fx, Side::Mem, op, THREADS, n);
                    row.reference
                        .push(THREADS as f64 * one.as_secs_f64() / two.as_secs_f64());
                }
                Kind::Bandwidth(op) => {
                    let (ne, nk, nm) = (
                        count(Side::Engine, op),
                        count(Side::Kernel, op),
                        count(Side::Mem, Op::Memcpy1m),
                    );
                    let order = if flip {
                        [Side::Mem, Side::Kernel, Side::Engine]
                    } else {
                        [Side::Engine, Side::Kernel, Side::Mem]
                    };
                    let (mut e, mut k, mut m) = (0.0, 0.0, 0.0);
                    for side in order {
                        match side {
                            Side::Engine => e = mibps(run_threads(fx, side, op, 1, ne), ne),
                            Side::Kernel => k = mibps(run_threads(fx, side, op, 1, nk), nk),
                            Side::Mem => {
                                m = mibps(run_threads(fx, side, Op::Memcpy1m, 1, nm), nm);
                            }
                        }
                    }
                    row.engine.push(e);
                    row.kernel.push(k);
                    row.reference.push(m);
                    row.ratio.push(e / m);
                    row.kernel_ratio.push(k / m);
                }
                Kind::Scaling(op) => {
                    // (wall-clock scaling, CPU-time scaling) of one side.
                    let mut scale = |side: Side| {
                        let n = count(side, op);
                        let (one, two): (Timing, Timing) = if flip {
                            let two = run_threads_timed(fx, side, op, THREADS, n);
                            (run_threads_timed(fx, side, op, 1, n), two)
                        } else {
                            let one = run_threads_timed(fx, side, op, 1, n);
                            (one, run_threads_timed(fx, side, op, THREADS, n))
                        };
                        let t = THREADS as f64;
                        (
                            t * one.wall.as_secs_f64() / two.wall.as_secs_f64(),
                            t * t * one.cpu.as_secs_f64() / two.cpu.as_secs_f64(),
                            two.cpu.as_secs_f64() / (t * two.wall.as_secs_f64()),
                        )
                    };
                    let ((e, ec, eo), (k, kc, ko)) = if flip {
                        let k = scale(Side::Kernel);
                        (scale(Side::Engine), k)
                    } else {
                        let e = scale(Side::Engine);
                        (e, scale(Side::Kernel))
                    };
                    row.engine.push(e);
                    row.kernel.push(k);
                    row.cpu_engine.push(ec);
                    row.cpu_kernel.push(kc);
                    row.oncpu_engine.push(eo);
                    row.oncpu_kernel.push(ko);
                    row.ratio.push(e);
                    row.kernel_ratio.push(k);
                }
            }
        }
        eprintln!("paired round {}/{rounds} done", r + 1);
    }
    rows
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_ratio(v: &[f64]) -> String {
    let (lo, hi) = min_max(v);
    format!("{} ({}..{})", fmt_num(median(v.to_vec())), fmt_num(lo), fmt_num(hi))
}

/// The summary table as Markdown lines.
fn summary(rows: &[Row], crit: &HashMap<String, f64>) -> Vec<String> {
    let mut out = vec![
        "| operation | engine | kernel tmpfs (syscalls) | ratio: median (min..max) | criterion ratio | target | met? |"
            .to_string(),
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |".to_string(),
    ];
    for row in rows {
        let crit_ratio = row
            .crit
            .and_then(|(num, den)| Some(crit.get(num)? / crit.get(den)?))
            .map(|r| match row.kind {
                // Pass-1 numbers are ns per iteration; one 2-thread iteration is one op per thread.
                Kind::Scaling(_) => r * THREADS as f64,
                _ => r,
            })
            .map_or_else(|| "-".to_string(), fmt_num);
        let (engine, kernel, ratio, target) = match row.kind {
            Kind::Small(op) => {
                let unit = if op == Op::Readdir { "µs/pass" } else { "ns/op" };
                let scale = if op == Op::Readdir { 1e-3 } else { 1.0 };
                (
                    format!("{} {unit}", fmt_num(median(row.engine.clone()) * scale)),
                    format!("{} {unit}", fmt_num(median(row.kernel.clone()) * scale)),
                    format!("{}x faster", fmt_ratio(&row.ratio)),
                    "≥ 5x faster",
                )
            }
            Kind::Floor(_) => (
                format!("{} ns/op (memcpy)", fmt_num(median(row.reference.clone()))),
                "-".into(),
                "-".into(),
                "reference",
            ),
            Kind::FloorScaling(_) => (
                format!("{}x (memcpy)", fmt_ratio(&row.reference)),
                "-".into(),
                "-".into(),
                "reference",
            ),
            Kind::Bandwidth(_) => (
                format!("{} MiB/s", fmt_num(median(row.engine.clone()))),
                format!(
                    "{} MiB/s ({} of memcpy)",
                    fmt_num(median(row.kernel.clone())),
                    fmt_num(median(row.kernel_ratio.clone()))
                ),
                format!(
                    "{} of memcpy {} MiB/s",
                    fmt_ratio(&row.ratio),
                    fmt_num(median(row.reference.clone()))
                ),
                "≥ 0.8 of memcpy",
            ),
            Kind::Scaling(_) => (
                format!(
                    "{}x (CPU-time bound {}x; on CPU {:.0}%)",
                    fmt_num(median(row.engine.clone())),
                    fmt_num(median(row.cpu_engine.clone())),
                    100.0 * median(row.oncpu_engine.clone())
                ),
                format!(
                    "{}x (CPU-time bound {}x; on CPU {:.0}%)",
                    fmt_ratio(&row.kernel),
                    fmt_num(median(row.cpu_kernel.clone())),
                    100.0 * median(row.oncpu_kernel.clone())
                ),
                format!("{}x", fmt_ratio(&row.ratio)),
                "engine ≥ 1.7x",
            ),
        };
        let met = match row.target {
            Some(t) if median(row.ratio.clone()) >= t => "yes",
            Some(_) => "NO",
            None => "",
        };
        out.push(format!(
            "| {} | {engine} | {kernel} | {ratio} | {crit_ratio} | {target} | {met} |",
            row.name
        ));
    }
    out
}

fn main() {
    let rounds = env_u64("RTMPFS_BENCH_ROUNDS", 11);
    let ms = env_u64("RTMPFS_BENCH_ROUND_MS", 30);
    let load_start = loadavg();
    let kernel = mount::KernelTmpfs::new();
    eprintln!("kernel side: {}", kernel.what);
    eprintln!("building the fixture (2 x 256 MiB files on each side, 20,000-entry directories)");
    let fx = Fixture::new(kernel.path());

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(SAMPLE_SIZE)
        .without_plots()
        .configure_from_args();
    let crit = criterion_pass(&fx, &mut c);
    c.final_summary();
    let load_mid = loadavg();

    if rounds == 0 {
        eprintln!("RTMPFS_BENCH_ROUNDS=0: no paired pass, no summary");
        return;
    }
    eprintln!("paired pass: {rounds} rounds, ~{ms} ms per side per round");
    let rows = paired_pass(&fx, rounds, ms);
    let load_end = loadavg();

    let mut text = String::new();
    let _ = writeln!(
        text,
        "\n## rtmpfs-core engine vs kernel tmpfs: summary\n\n\
         * kernel side: {}\n\
         * load average (1/5/15 min): start {load_start}, after criterion {load_mid}, end {load_end}; {} CPUs\n\
         * paired pass: {rounds} rounds, ~{ms} ms per side per round; ratio = median of per-round ratios (min..max)\n\
         * small ops: ratio = kernel time / engine time; 1 MiB: engine MiB/s / memcpy MiB/s (memcpy of 1 MiB chunks between two 256 MiB buffers, same round); threads: 2-thread throughput / 1-thread throughput (wall clock; \"CPU-time bound\": the same from CPU time per operation, i.e. what the 2 threads would reach if the machine's other work left them both CPUs — an upper bound, since time asleep on a lock is not counted; \"on CPU\": CPU time of the 2-thread run / (2 x its wall time), 100% when both threads had a CPU throughout)\n",
        kernel.what,
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
    );
    for line in summary(&rows, &crit) {
        let _ = writeln!(text, "{line}");
    }
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.target.is_some_and(|t| median(r.ratio.clone()) < t))
        .map(|r| r.name)
        .collect();
    let _ = writeln!(
        text,
        "\ntargets missed: {}",
        if missed.is_empty() {
            "none".to_string()
        } else {
            missed.join("; ")
        }
    );
    println!("{text}");
    if let Ok(path) = std::env::var("RTMPFS_BENCH_SUMMARY") {
        if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("writing {path}: {e}");
        }
    }
    drop(fx);
    drop(kernel);
}
