//! How long a snapshot holds writers off, and how fast it and a restore run, in process.
//!
//! `cargo run --release -p rtmpfs-core --example snapshot_bench -- [FILES] [MIB] [OUT]`
//! (default 100000 files, 1024 MiB in all, image to /dev/null). Builds the tree (file sizes
//! spread around the mean, contents half compressible), starts two writer threads that time
//! every write (4 KiB at random offsets of their own files), takes a snapshot, and prints the
//! snapshot's own pause figure, the writers' longest write during it, the throughput, the
//! image size, and a restore of the image (when OUT is a file).
//!
//! `... --example snapshot_bench -- restore IMAGE [ROUNDS]` restores an existing image (one
//! written by `rtmpfs snapshot`, say) ROUNDS times (default 3) and prints each time.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtmpfs_core::{Config, Ctx, Filesystem, OpenFlags, RestoreOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("restore") {
        restore_only(
            args.get(2).expect("restore IMAGE [ROUNDS]"),
            args.get(3).map_or(3, |r| r.parse().expect("ROUNDS")),
        );
        return;
    }
    let files: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mib: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let out = args.get(3).cloned().unwrap_or_else(|| "/dev/null".into());
    let ctx = Ctx::root();
    let fs = Arc::new(Filesystem::new(Config::default()).expect("config"));
    let per_file = (mib << 20) / files;
    let t = Instant::now();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; (per_file * 2) as usize + 4096];
    for b in buf.iter_mut().step_by(2) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut total = 0u64;
    for i in 0..files {
        let dir = if i % 1000 == 0 {
            let d = fs.mkdir(&ctx, fs.root(), OsStr::new(&format!("d{}", i / 1000)), 0o755);
            d.map(|a| a.ino).ok()
        } else {
            None
        };
        let parent = dir.unwrap_or_else(|| {
            fs.lookup(&ctx, fs.root(), OsStr::new(&format!("d{}", i / 1000)))
                .unwrap()
                .ino
        });
        let (_, fh) = fs
            .create(&ctx, parent, OsStr::new(&format!("f{i}")), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        let len = (per_file / 2 + (i * 7919) % per_file.max(1)) as usize;
        let start = (i as usize * 61) % (buf.len() - len).max(1);
        fs.write(&ctx, fh, 0, &buf[start..start + len]).unwrap();
        total += len as u64;
        fs.release(fh).unwrap();
    }
    println!("built {files} files, {} MiB, in {:.1?}", total >> 20, t.elapsed());
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (fs, stop, worst, writes) = (fs.clone(), stop.clone(), worst.clone(), writes.clone());
            std::thread::spawn(move || {
                let ctx = Ctx::root();
                let (_, fh) = fs
                    .create(
                        &ctx,
                        fs.root(),
                        OsStr::new(&format!("w{w}")),
                        0o644,
                        OpenFlags::READ_WRITE,
                    )
                    .unwrap();
                let page = [w as u8; 4096];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    fs.write(&ctx, fh, (n % 256) * 4096, &page).unwrap();
                    let ns = t.elapsed().as_nanos() as u64;
                    worst.fetch_max(ns, Ordering::Relaxed);
                    writes.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    worst.store(0, Ordering::Relaxed);
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out).expect("output"));
    let t = Instant::now();
    let stats = fs.snapshot(file).expect("snapshot");
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let image = std::fs::metadata(&out).map_or(0, |m| m.len());
    println!(
        "snapshot: {:.2?} ({:.0} MiB/s of data), pause (gate held) {:.2?}, writers' longest write {:.2?} ({} writes), image {} MiB, {} inodes",
        took,
        (total as f64 / f64::from(1 << 20)) / took.as_secs_f64(),
        stats.pause,
        Duration::from_nanos(worst.load(Ordering::Relaxed)),
        writes.load(Ordering::Relaxed),
        image >> 20,
        stats.inodes
    );
    if out != "/dev/null" {
        drop(fs);
        let t = Instant::now();
        let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&out).unwrap());
        let back = Filesystem::from_image(Config::default(), input, &RestoreOptions::default()).expect("restore");
        let took = t.elapsed();
        println!(
            "restore: {:.2?} ({:.0} MiB/s of data), {} inodes",
            took,
            (total as f64 / f64::from(1 << 20)) / took.as_secs_f64(),
            back.usage().inodes
        );
    }
}

/// Restore `image` `rounds` times, each timed (the file read from the page cache after the first).
fn restore_only(image: &str, rounds: u32) {
    for _ in 0..rounds {
        let t = Instant::now();
        let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(image).expect("open IMAGE"));
        let back = Filesystem::from_image(Config::default(), input, &RestoreOptions::default()).expect("restore");
        let took = t.elapsed();
        let usage = back.usage();
        drop(back);
        println!(
            "restore: {took:.2?}, {} inodes, {} MiB of data",
            usage.inodes,
            usage.charged_pages >> 8
        );
    }
}
