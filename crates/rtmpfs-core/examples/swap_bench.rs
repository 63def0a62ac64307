//! Swap-tier benchmark, in process: a file 4x the RAM budget read back sequentially (1 MiB) and
//! at random (4 KiB) through the engine, beside the same reads of a plain file on the same disk
//! with O_DIRECT (the swap device's own limit), and encryption on vs off, in one run.
//!
//! `cargo run --release -p rtmpfs-core --example swap_bench -- [DIR] [BUDGET_MIB]`
//! (DIR defaults to /var/tmp: a real disk, not tmpfs.)

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rtmpfs_core::swap::AlignedPage;
use rtmpfs_core::{Config, Ctx, Filesystem, OpenFlags, SwapConfig};

const MIB: usize = 1 << 20;

fn rng(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

struct Figures {
    seq_mib_s: f64,
    rand_iops: f64,
}

fn engine_run(dir: &Path, budget_mib: usize, encrypt: bool) -> Figures {
    let total = 4 * budget_mib * MIB;
    let cfg = Config {
        size_bytes: Some(8 * total as u64),
        memory_bytes: Some((budget_mib * MIB) as u64),
        swap: Some(SwapConfig {
            dir: dir.to_path_buf(),
            size_bytes: None,
            encrypt,
        }),
        ..Config::default()
    };
    let fs = Filesystem::new(cfg).expect("filesystem");
    let ctx = Ctx::root();
    let (_, fh) = fs
        .create(&ctx, fs.root(), OsStr::new("big"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let chunk: Vec<u8> = (0..MIB).map(|i| (i * 7 + 3) as u8).collect();
    for i in 0..total / MIB {
        fs.write(&ctx, fh, (i * MIB) as u64, &chunk).unwrap();
    }
    let mut buf = vec![0u8; MIB];
    // Sequential: two passes, the second timed (the first settles the layout).
    for pass in 0..2 {
        let start = Instant::now();
        for i in 0..total / MIB {
            let n = fs.read(fh, (i * MIB) as u64, &mut buf).unwrap();
            assert_eq!(n, MIB);
            assert_eq!(buf[12345], chunk[12345]);
        }
        if pass == 1 {
            let secs = start.elapsed().as_secs_f64();
            let seq = total as f64 / MIB as f64 / secs;
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let n = 20_000;
            let start = Instant::now();
            for _ in 0..n {
                let page = rng(&mut x) % (total as u64 / 4096);
                fs.read(fh, page * 4096, &mut buf[..4096]).unwrap();
            }
            let rand = f64::from(n) / start.elapsed().as_secs_f64();
            let u = fs.usage();
            eprintln!(
                "  engine encrypt={encrypt}: evictions {} clean {} swap-ins {} frames {} / {}",
                u.evictions,
                u.clean_evictions,
                u.swap_ins,
                u.frames_in_use,
                u.memory_limit_pages.unwrap_or(0)
            );
            return Figures {
                seq_mib_s: seq,
                rand_iops: rand,
            };
        }
    }
    unreachable!()
}

fn direct_run(dir: &Path, budget_mib: usize) -> Figures {
    let total = 4 * budget_mib * MIB;
    let path = dir.join(format!("rtmpfs-swap-bench-{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("plain file");
    std::fs::remove_file(&path).ok();
    let mut pages: Vec<AlignedPage> = (0..MIB / 4096)
        .map(|_| {
            let mut p = AlignedPage::for_overwrite().expect("memory");
            p.fill(0x5a);
            p
        })
        .collect();
    for i in 0..total / MIB {
        for (j, p) in pages.iter().enumerate() {
            file.write_all_at(&p[..], (i * MIB + j * 4096) as u64).unwrap();
        }
    }
    // 1 MiB O_DIRECT reads: one preadv of 256 aligned pages.
    let start = Instant::now();
    for i in 0..total / MIB {
        let mut iov: Vec<std::io::IoSliceMut<'_>> =
            pages.iter_mut().map(|p| std::io::IoSliceMut::new(&mut p[..])).collect();
        let n = rustix::io::preadv(&file, &mut iov, (i * MIB) as u64).unwrap();
        assert_eq!(n, MIB);
    }
    let seq = total as f64 / MIB as f64 / start.elapsed().as_secs_f64();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        let page = rng(&mut x) % (total as u64 / 4096);
        file.read_exact_at(&mut pages[0][..], page * 4096).unwrap();
    }
    let rand = f64::from(n) / start.elapsed().as_secs_f64();
    Figures {
        seq_mib_s: seq,
        rand_iops: rand,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let budget_mib: usize = args.next().map_or(64, |s| s.parse().expect("budget MiB"));
    println!(
        "working set {} MiB, RAM budget {budget_mib} MiB, swap dir {}",
        4 * budget_mib,
        dir.display()
    );
    let direct = direct_run(&dir, budget_mib);
    let enc = engine_run(&dir, budget_mib, true);
    let plain = engine_run(&dir, budget_mib, false);
    println!("{:<28} {:>12} {:>12}", "", "seq MiB/s", "rand 4k IOPS");
    println!(
        "{:<28} {:>12.0} {:>12.0}",
        "plain file O_DIRECT", direct.seq_mib_s, direct.rand_iops
    );
    println!(
        "{:<28} {:>12.0} {:>12.0}",
        "engine, encrypted swap", enc.seq_mib_s, enc.rand_iops
    );
    println!(
        "{:<28} {:>12.0} {:>12.0}",
        "engine, plain swap", plain.seq_mib_s, plain.rand_iops
    );
    println!(
        "ratios vs O_DIRECT: encrypted seq {:.2} rand {:.2}; plain seq {:.2} rand {:.2}; encryption cost on seq {:.1}%",
        enc.seq_mib_s / direct.seq_mib_s,
        enc.rand_iops / direct.rand_iops,
        plain.seq_mib_s / direct.seq_mib_s,
        plain.rand_iops / direct.rand_iops,
        100.0 * (1.0 - enc.seq_mib_s / plain.seq_mib_s)
    );
}
