//! The compressed tier's in-process figures (issue 14, "Speed"), for scripts/compress-bench.sh:
//! never a timed test.
//!
//! `compress_bench SET MIB SWAPDIR`, where SET is `src:DIR` (the files under DIR, as files, up
//! to MIB MiB), `logs` (generated text logs) or `random`. For each of `off`, `lz4` and `zstd`,
//! with `memory=` a quarter of the data and a real (encrypted, `O_DIRECT`) swap file in SWAPDIR:
//!
//! * `held_mib`: data written before the first page was written to swap;
//! * `write_mb_s`: throughput of writing it all;
//! * then 4,000 random 4 KiB reads, each classed by what served it (the pool, a whole page from
//!   swap, a compressed record from swap, RAM) by the counters around it: the median time of
//!   each class, in microseconds (`pool_us`, `swap_us`, `record_us`, `ram_us`); and of the swap
//!   reads that evicted no page themselves (`swap_bare_us`, `record_bare_us`: the swap-in
//!   alone, where the others include the eviction that made room for it: compressing a page,
//!   or writing it to swap).
//!
//! One line per compressor, `key=value` fields. `COMPRESS_MAX_PCT` sets the pool's cap as a
//! percentage of `memory=` (default: the engine's, 25 %).
//!
//! `compress_bench classify SET MIB`: the incompressibility estimate's verdict on every page of
//! the set against lz4's and zstd's trials, and each test's cost per page (see [`classify`]).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rtmpfs_core::bench;
use rtmpfs_core::{Compression, Config, Ctx, Fh, Filesystem, OpenFlags, SwapConfig, PAGE_SIZE};

const MIB: usize = 1 << 20;
const READS: usize = 4000;
const PAGE: usize = PAGE_SIZE as usize;

/// The data set: file contents, one entry per file.
fn load(set: &str, mib: usize) -> Vec<Vec<u8>> {
    let budget = mib * MIB;
    if let Some(dir) = set.strip_prefix("src:") {
        let mut files = Vec::new();
        let mut total = 0;
        walk(Path::new(dir), &mut files, &mut total, budget);
        return files;
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let file_len = 4 * MIB;
    (0..budget / file_len)
        .map(|f| match set {
            "logs" => {
                let mut s = String::with_capacity(file_len + 200);
                let levels = ["INFO", "DEBUG", "WARN", "INFO", "ERROR"];
                let words = [
                    "request", "served", "cache", "miss", "upstream", "timeout", "user", "session",
                ];
                let mut line = 0u64;
                while s.len() < file_len {
                    let r = next();
                    line += 1;
                    let _ = writeln!(
                        s,
                        "2026-12-05T{:02}:{:02}:{:02}.{:03}Z {} app[{}]: {} {} id={} took {}ms status={}",
                        (line / 3600) % 24,
                        (line / 60) % 60,
                        line % 60,
                        r % 1000,
                        levels[(r >> 10) as usize % levels.len()],
                        1000 + f,
                        words[(r >> 14) as usize % words.len()],
                        words[(r >> 18) as usize % words.len()],
                        (r >> 22) % 100_000,
                        (r >> 40) % 500,
                        [200, 200, 200, 404, 500][(r >> 50) as usize % 5],
                    );
                }
                s.truncate(file_len);
                s.into_bytes()
            }
            _ => (0..file_len / 8).flat_map(|_| next().to_le_bytes()).collect(),
        })
        .collect()
}

fn walk(dir: &Path, files: &mut Vec<Vec<u8>>, total: &mut usize, budget: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        if *total >= budget {
            return;
        }
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(&e.path(), files, total, budget);
        } else if ft.is_file() {
            if let Ok(data) = std::fs::read(e.path()) {
                *total += data.len();
                files.push(data);
            }
        }
    }
}

/// Pages evicted between two `usage()` snapshots, by any route (to swap, clean, to the pool, as
/// zeros).
fn evicted(before: &rtmpfs_core::Usage, after: &rtmpfs_core::Usage) -> u64 {
    let sum = |u: &rtmpfs_core::Usage| u.evictions + u.clean_evictions + u.pool_stores + u.pool_zero_pages_stored;
    sum(after) - sum(before)
}

fn median_us(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    format!("{:.2}", v[v.len() / 2].as_secs_f64() * 1e6)
}

/// Write every file; returns the handles with their sizes, the bytes written before the first
/// swap write, and the time it all took.
fn write_all(fs: &Filesystem, files: &[Vec<u8>]) -> (Vec<(Fh, usize)>, usize, Duration) {
    let ctx = Ctx::root();
    let mut held = None;
    let mut written = 0;
    let mut handles = Vec::with_capacity(files.len());
    let start = Instant::now();
    for (i, data) in files.iter().enumerate() {
        let name = format!("f{i}");
        let (_, fh) = fs
            .create(&ctx, fs.root(), OsStr::new(&name), 0o644, OpenFlags::READ_WRITE)
            .expect("create");
        for (j, chunk) in data.chunks(MIB).enumerate() {
            fs.write(&ctx, fh, (j * MIB) as u64, chunk).expect("write");
        }
        written += data.len();
        if held.is_none() && fs.usage().evictions > 0 {
            held = Some(written);
        }
        handles.push((fh, data.len()));
    }
    (handles, held.unwrap_or(written), start.elapsed())
}

fn run(set: &str, files: &[Vec<u8>], algo: Compression, swap_dir: &Path) {
    let total: usize = files.iter().map(Vec::len).sum();
    let memory = (total as u64 / 4).next_multiple_of(PAGE_SIZE);
    let fs = Filesystem::new(Config {
        size_bytes: Some(4 * total as u64 + (64 << 20)),
        memory_bytes: Some(memory),
        swap: Some(SwapConfig {
            dir: swap_dir.to_path_buf(),
            size_bytes: None,
            encrypt: true,
        }),
        compression: algo,
        compress_max_bytes: std::env::var("COMPRESS_MAX_PCT")
            .ok()
            .and_then(|p| p.parse::<u64>().ok())
            .map(|p| memory * p / 100),
        background_threads: false,
        ..Config::default()
    })
    .expect("filesystem");
    let (handles, held, took) = write_all(&fs, files);
    let after_write = fs.usage();
    let mut x: u64 = 42;
    let (mut pool, mut swap, mut record, mut ram) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Swap reads (whole pages, records) that evicted no page to make room: the swap-in alone.
    let (mut swap_bare, mut record_bare, mut reclaiming) = (Vec::new(), Vec::new(), 0);
    let mut buf = vec![0u8; PAGE_SIZE as usize];
    let pages: Vec<(Fh, u64)> = handles
        .iter()
        .flat_map(|&(fh, len)| (0..(len as u64).div_ceil(PAGE_SIZE)).map(move |p| (fh, p)))
        .collect();
    for _ in 0..READS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (fh, page) = pages[(x % pages.len() as u64) as usize];
        let before = fs.usage();
        let t = Instant::now();
        fs.read(fh, page * PAGE_SIZE, &mut buf).expect("read");
        let dt = t.elapsed();
        let after = fs.usage();
        if evicted(&before, &after) > 0 {
            reclaiming += 1;
        }
        if after.pool_hits > before.pool_hits {
            pool.push(dt);
        } else if after.swap_records_read > before.swap_records_read {
            record.push(dt);
            if evicted(&before, &after) == 0 {
                record_bare.push(dt);
            }
        } else if after.swap_ins > before.swap_ins {
            swap.push(dt);
            if evicted(&before, &after) == 0 {
                swap_bare.push(dt);
            }
        } else {
            ram.push(dt);
        }
    }
    let u = fs.usage();
    println!(
        "set={set} data_mib={:.0} memory_mib={:.0} compress={} pool_cap_mib={} held_mib={:.1} write_mb_s={:.0} \
         pool_ratio={} reads_pool={} reads_swap={} reads_record={} reads_ram={} pool_us={} swap_us={} record_us={} ram_us={} \
         reads_evicting={reclaiming} swap_bare_us={} record_bare_us={} \
         swap_written_mib={:.1} swap_read_mib={:.2} swap_records={} swap_record_slots={}",
        total as f64 / MIB as f64,
        memory as f64 / MIB as f64,
        algo.name(),
        u.pool_limit_bytes
            .map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / MIB as f64)),
        held as f64 / MIB as f64,
        total as f64 / 1e6 / took.as_secs_f64(),
        u.pool_ratio().map_or_else(|| "-".into(), |r| format!("{r:.2}")),
        pool.len(),
        swap.len(),
        record.len(),
        ram.len(),
        median_us(&mut pool),
        median_us(&mut swap),
        median_us(&mut record),
        median_us(&mut ram),
        median_us(&mut swap_bare),
        median_us(&mut record_bare),
        after_write.swap_bytes_written as f64 / MIB as f64,
        (u.swap_bytes_read - after_write.swap_bytes_read) as f64 / MIB as f64,
        after_write.swap_records,
        after_write.swap_record_slots,
    );
}

/// The data set's pages as the engine stores them (a file's last page zero-padded), zero
/// pages left out (the tier stores those as nothing before any test).
fn pages_of(files: &[Vec<u8>]) -> Vec<[u8; PAGE]> {
    files
        .iter()
        .flat_map(|f| f.chunks(PAGE))
        .map(|c| {
            let mut p = [0u8; PAGE];
            p[..c.len()].copy_from_slice(c);
            p
        })
        .filter(|p| p.iter().any(|&b| b != 0))
        .collect()
}

/// Nanoseconds per page of `f` over `pages`, best of three passes.
fn ns_per_page(pages: &[[u8; PAGE]], mut f: impl FnMut(&[u8; PAGE]) -> bool) -> String {
    if pages.is_empty() {
        return "-".into();
    }
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            let n = pages.iter().filter(|p| f(std::hint::black_box(p))).count();
            std::hint::black_box(n);
            t.elapsed()
        })
        .min()
        .unwrap_or_default();
    format!("{:.0}", best.as_secs_f64() * 1e9 / pages.len() as f64)
}

/// `classify`: how the incompressibility estimate's verdicts compare with the compressors'
/// own (a page is incompressible for a compressor when it packs to more than `MAX_PACKED`), and
/// what each test costs per page: on all the set's non-zero pages, and on the pages the
/// estimate rejects (the trials it saves). Also lz4's trial as a filter before zstd.
fn classify(set: &str, files: &[Vec<u8>]) {
    let pages = pages_of(files);
    let est: Vec<bool> = pages.iter().map(bench::looks_incompressible).collect();
    let lz4: Vec<bool> = pages
        .iter()
        .map(|p| bench::trial_len(Compression::Lz4, p).is_none())
        .collect();
    let zstd: Vec<bool> = pages
        .iter()
        .map(|p| bench::trial_len(Compression::Zstd, p).is_none())
        .collect();
    let count = |v: &[bool]| v.iter().filter(|&&x| x).count();
    let both = |a: &[bool], b: &[bool], want_b: bool| a.iter().zip(b).filter(|&(&x, &y)| x && y == want_b).count();
    let rejected: Vec<[u8; PAGE]> = pages.iter().zip(&est).filter(|&(_, &e)| e).map(|(p, _)| *p).collect();
    println!(
        "classify set={set} pages={} est_incompressible={} lz4_rejects={} zstd_rejects={} \
         est_wrong_lz4={} est_wrong_zstd={} est_missed_lz4={} est_missed_zstd={} lz4_wrong_for_zstd={} \
         est_ns={} lz4_ns={} zstd_ns={} on_est_rejected: est_ns={} lz4_ns={} zstd_ns={}",
        pages.len(),
        count(&est),
        count(&lz4),
        count(&zstd),
        both(&est, &lz4, false),
        both(&est, &zstd, false),
        both(&lz4, &est, false),
        both(&zstd, &est, false),
        both(&lz4, &zstd, false),
        ns_per_page(&pages, bench::looks_incompressible),
        ns_per_page(&pages, |p| bench::trial_len(Compression::Lz4, p).is_none()),
        ns_per_page(&pages, |p| bench::trial_len(Compression::Zstd, p).is_none()),
        ns_per_page(&rejected, bench::looks_incompressible),
        ns_per_page(&rejected, |p| bench::trial_len(Compression::Lz4, p).is_none()),
        ns_per_page(&rejected, |p| bench::trial_len(Compression::Zstd, p).is_none()),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, set, mib] = args.as_slice() {
        if mode == "classify" {
            let Ok(mib) = mib.parse::<usize>() else {
                eprintln!("compress_bench: MIB must be a number");
                std::process::exit(2);
            };
            let label = if set.starts_with("src:") { "src" } else { set.as_str() };
            classify(label, &load(set, mib));
            return;
        }
    }
    let [_, set, mib, swap_dir] = args.as_slice() else {
        eprintln!("usage: compress_bench src:DIR|logs|random MIB SWAPDIR | compress_bench classify SET MIB");
        std::process::exit(2);
    };
    let Ok(mib) = mib.parse::<usize>() else {
        eprintln!("compress_bench: MIB must be a number");
        std::process::exit(2);
    };
    let files = load(set, mib);
    let label = if set.starts_with("src:") { "src" } else { set.as_str() };
    for algo in [Compression::Off, Compression::Lz4, Compression::Zstd] {
        run(label, &files, algo, Path::new(swap_dir));
    }
}
