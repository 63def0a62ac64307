//! What the RAM budget bounds (issue 11 item 6): `usage` accounts for every part of the
//! daemon's memory (data pages, free pool pages, metadata, buffers, free heap), the memory
//! housekeeping gives a deleted tree's memory back without being asked, and host facts enter
//! through `Config`.
//!
//! The pool and the C heap are process-wide and the other tests of this binary run in parallel,
//! so the bounds here are loose (megabytes where the effect is tens of megabytes).

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use rtmpfs_core::{Config, Ctx, Filesystem, HostFacts, OpenFlags, SwapConfig, Usage};

const MIB: u64 = 1 << 20;

/// Held by the tests of this file: each frees tens of megabytes of pool pages or heap and
/// watches the process-wide figures, so one must not see another's frees.
static POOL_WATCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pool_watch() -> std::sync::MutexGuard<'static, ()> {
    POOL_WATCH.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn root() -> Ctx {
    Ctx::root()
}

/// Write a `mib` MiB file `name` in 1 MiB writes and close it.
fn write_file(fs: &Filesystem, name: &str, mib: usize) {
    let (_, fh) = fs
        .create(&root(), fs.root(), OsStr::new(name), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let chunk = vec![0x5a_u8; MIB as usize];
    for i in 0..mib {
        assert_eq!(fs.write(&root(), fh, i as u64 * MIB, &chunk).unwrap(), chunk.len());
    }
    fs.release(fh).unwrap();
}

/// Wait up to `timeout` for `cond` on the filesystem's usage; returns the last usage seen and
/// whether `cond` held.
fn wait_usage(fs: &Filesystem, timeout: Duration, cond: impl Fn(&Usage) -> bool) -> (Usage, bool) {
    let end = Instant::now() + timeout;
    loop {
        let u = fs.usage();
        if cond(&u) {
            return (u, true);
        }
        if Instant::now() >= end {
            return (u, false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with(prefix))
        .count()
}

#[test]
fn usage_accounts_for_data_metadata_and_the_heap() {
    let _watch = pool_watch();
    let fs = Filesystem::new(Config::default()).unwrap();
    write_file(&fs, "data", 16);
    let u = fs.usage();
    // Data pages live in the pool: the pool's RAM covers them, and its free part is part of it.
    assert!(u.resident_pages * 4096 >= 16 * MIB, "{u:?}");
    assert!(u.page_pool_ram_bytes >= u.resident_pages * 4096, "{u:?}");
    assert!(u.page_pool_free_bytes <= u.page_pool_ram_bytes, "{u:?}");
    assert_eq!(
        u.accounted_ram_bytes(),
        u.page_pool_ram_bytes + u.metadata_bytes + u.buffer_bytes + u.heap_free_bytes
    );
    if cfg!(not(target_env = "gnu")) {
        return; // no heap figures without glibc's mallinfo2
    }
    assert!(u.metadata_bytes > 0, "{u:?}");

    // 30,000 empty files: their inodes, names and directory entries are metadata on the heap
    // (about 650 bytes each in the daemon); 256 bytes each is a floor no parallel test can
    // mask (it would have to free 7 MiB in the same instant).
    const FILES: u64 = 30_000;
    let before = fs.usage().metadata_bytes;
    let dir = fs.mkdir(&root(), fs.root(), OsStr::new("many"), 0o755).unwrap().ino;
    for i in 0..FILES {
        let (_, fh) = fs
            .create(
                &root(),
                dir,
                OsStr::new(&format!("f{i:05}")),
                0o644,
                OpenFlags::READ_WRITE,
            )
            .unwrap();
        fs.release(fh).unwrap();
    }
    let grown = fs.usage().metadata_bytes.saturating_sub(before);
    assert!(
        grown >= FILES * 256,
        "{FILES} files grew the metadata by {grown} bytes only"
    );
    // Deleting them gives the metadata back.
    for i in 0..FILES {
        fs.unlink(&root(), dir, OsStr::new(&format!("f{i:05}"))).unwrap();
    }
    let after = fs.usage().metadata_bytes;
    assert!(
        after + grown / 2 <= before + grown,
        "metadata {before} -> +{grown} -> {after} after deleting every file"
    );
}

#[test]
fn housekeeping_gives_a_deleted_files_pages_back_unasked() {
    let _watch = pool_watch();
    let fs = Filesystem::new(Config {
        own_process_memory: true,
        ..Config::default()
    })
    .unwrap();
    // (A new thread names itself once it runs: give it a moment.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_named("rtmpfs-housekee") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(threads_named("rtmpfs-housekee"), 1, "no housekeeping thread");
    write_file(&fs, "big", 64);
    rtmpfs_pages::flush_thread_cache();
    fs.unlink(&root(), fs.root(), OsStr::new("big")).unwrap();
    rtmpfs_pages::flush_thread_cache();
    // Just freed: the pool keeps the pages with their contents for reuse...
    let freed = fs.usage().page_pool_free_bytes;
    assert!(freed >= 32 * MIB, "the pool kept only {freed} bytes of a 64 MiB file");
    // ...and, with nobody calling into the pool from here, the housekeeping gives them back
    // once idle (1 s), down to the 4 MiB kept regardless (plus what parallel tests just freed).
    let (u, ok) = wait_usage(&fs, Duration::from_secs(10), |u| u.page_pool_free_bytes <= 16 * MIB);
    assert!(ok, "pool pages of a deleted file not given back within 10 s: {u:?}");
    drop(fs);
    // The last filesystem that asked for housekeeping is gone: so is the thread.
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_named("rtmpfs-housekee") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        threads_named("rtmpfs-housekee"),
        0,
        "housekeeping thread outlived its filesystem"
    );
}

#[test]
fn the_budget_counts_the_heap_so_metadata_pushes_data_to_swap() {
    let _watch = pool_watch();
    if cfg!(not(target_env = "gnu")) {
        return; // no heap figures without glibc's mallinfo2
    }
    // A 4 MiB budget (1,024 frames) under 20,000 files' metadata (far more than 4 MiB).
    let fs = Filesystem::new(Config {
        size_bytes: Some(256 * MIB),
        memory_bytes: Some(4 * MIB),
        swap: Some(SwapConfig {
            dir: std::env::temp_dir(),
            size_bytes: None,
            encrypt: false,
        }),
        own_process_memory: true,
        ..Config::default()
    })
    .unwrap();
    let dir = fs.mkdir(&root(), fs.root(), OsStr::new("many"), 0o755).unwrap().ino;
    for i in 0..20_000 {
        let (_, fh) = fs
            .create(
                &root(),
                dir,
                OsStr::new(&format!("f{i:05}")),
                0o644,
                OpenFlags::READ_WRITE,
            )
            .unwrap();
        fs.release(fh).unwrap();
    }
    // The housekeeping lends the heap's bytes to the budget within a pass or two: the heap now
    // takes all of it but the floor (an eighth, 128 frames).
    let (u, ok) = wait_usage(&fs, Duration::from_secs(10), |u| u.memory_heap_pages == 1024 - 128);
    assert!(ok, "the heap was not counted against the budget: {u:?}");
    // So 8 MiB of data lives in 128 frames (plus the swap-in reserve), the rest in swap...
    write_file(&fs, "data", 8);
    let (u, ok) = wait_usage(&fs, Duration::from_secs(10), |u| u.frames_in_use <= 128 + 16);
    assert!(ok, "file data kept more frames than the heap left it: {u:?}");
    assert!(u.swapped_pages >= 2048 - 144, "{u:?}");
    // ...and reads back intact.
    let ino = fs.lookup(&root(), fs.root(), OsStr::new("data")).unwrap().ino;
    let fh = fs.open(&root(), ino, OpenFlags::READ).unwrap();
    for i in 0..8 {
        let mut got = vec![0u8; MIB as usize];
        assert_eq!(fs.read(fh, i * MIB, &mut got).unwrap(), got.len());
        assert!(got.iter().all(|&b| b == 0x5a), "MiB {i} damaged");
    }
    fs.release(fh).unwrap();
}

#[test]
fn release_free_memory_returns_the_pools_free_pages_at_once() {
    let _watch = pool_watch();
    let fs = Filesystem::new(Config::default()).unwrap();
    write_file(&fs, "big", 32);
    fs.unlink(&root(), fs.root(), OsStr::new("big")).unwrap();
    // Idle for longer than the pool's 1 s, then asked: everything beyond the 4 MiB kept goes.
    std::thread::sleep(Duration::from_millis(1100));
    fs.release_free_memory();
    let u = fs.usage();
    assert!(u.page_pool_free_bytes <= 16 * MIB, "{u:?}");
}

#[test]
fn an_unlimited_instance_reports_the_configured_host_ram_as_free_space() {
    let ram = 8 << 30;
    let fs = Filesystem::new(Config {
        host: HostFacts { ram_bytes: ram },
        ..Config::default()
    })
    .unwrap();
    let st = fs.statfs();
    assert_eq!(st.bfree, ram / 4096);
    assert_eq!(st.ffree, ram / 1024);
    assert!(HostFacts::current().ram_bytes > 0);
    assert_eq!(HostFacts::current(), HostFacts::current());
}
