//! The differential test through the whole stack: the random operation sequences of the
//! engine's differential test (`crates/rtmpfs-core/tests/differential.rs`) run on the model, the
//! engine in process, a private kernel tmpfs and a real rtmpfs mount (this crate's binary, over
//! the transport `RTMPFS_TEST_TRANSPORT` selects, see `tests/common`), all with the same `size`,
//! `nr_inodes` and root mode. After every step every result, errno, byte, attribute and statfs
//! figure, and whether each inode's mtime and ctime changed, must agree; the deviations list of
//! `rtmpfs_testkit::differential` (each with its reason, per side where only one side differs)
//! is the only way out. A failure prints the seed and the shrunk sequence, ready to paste.
//!
//! `RTMPFS_MOUNT_DIFF_CASES` sets the number of sequences of each random test (defaults: 256,
//! and 64 with one page of RAM; 35-45 s together on two loaded cores); `RTMPFS_SEED` the seed. Needs root and /dev/fuse: without them the test fails
//! saying why, it never passes silently.

mod common;
// The engine's shrunk regressions (kept there, by name; each also runs on the model and on
// kernel tmpfs in the engine's tests), run here through the mount too.
#[path = "../../rtmpfs-core/tests/regressions.rs"]
#[allow(dead_code)] // `get` serves the engine's tests only
mod regressions;

use std::collections::BTreeMap;
use std::sync::Mutex;

use common::Daemon;
use rtmpfs_testkit::differential::{diff_config, reason, Differential, RTMPFS};
use rtmpfs_testkit::dir::DirBackend;
use rtmpfs_testkit::model::ModelConfig;
use rtmpfs_testkit::strategies::{check, env_usize, ops};
use rtmpfs_testkit::tmpfs::mount_options;

/// One test of this binary at a time. A daemon started (fork, then exec) by one test holds a
/// copy of every descriptor of this process until its exec, close-on-exec ones included: an
/// unlinked file another test has just closed on its kernel tmpfs would still hold its space
/// for that moment, and the statfs comparison would see it.
static SERIAL: Mutex<()> = Mutex::new(());

/// Take [`SERIAL`] (also after a failed test: the guard of a panicked test is fine to reuse)
/// and check that this process can mount.
fn must_mount() -> std::sync::MutexGuard<'static, ()> {
    let serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "the mount differential test needs /dev/fuse"
    );
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the mount differential test needs root");
    serial
}

/// An rtmpfs mount with the limits of `cfg` and the further options `extra`, as a directory
/// backend that keeps the daemon (and so the mount) until it is dropped.
fn rtmpfs_backend(cfg: &ModelConfig, extra: &str) -> Result<DirBackend, String> {
    let opts = if extra.is_empty() {
        mount_options(cfg)
    } else {
        format!("{},{extra}", mount_options(cfg))
    };
    let daemon = Daemon::start(&opts);
    let path = daemon.path().to_path_buf();
    Ok(DirBackend::new(RTMPFS, &path, cfg.umask)?
        .deferred_release()
        .keeping(Box::new(daemon)))
}

/// Model, engine, kernel tmpfs and rtmpfs (mounted with `extra` options) through FUSE on one
/// sequence.
fn four_way(cfg: ModelConfig, extra: &str) -> Result<Differential, String> {
    let kernel = DirBackend::tmpfs(&cfg)?;
    Ok(Differential::new(cfg, vec![kernel, rtmpfs_backend(&cfg, extra)?]))
}

#[test]
fn mount_differential_random_sequences() {
    run("mount_differential_random_sequences", 256, "");
}

/// The same with one page of RAM for file data and `direct_io`, so that every read and write
/// reaches the daemon (no page cache in between): nearly every page the sequences touch is
/// evicted to the daemon's swap file and read back, and nothing of it may show.
#[test]
fn mount_differential_random_sequences_tiny_ram() {
    run(
        "mount_differential_random_sequences_tiny_ram",
        64,
        "memory=4k,direct_io",
    );
}

/// Every shrunk regression of the engine's model test, on model, engine, kernel tmpfs and the
/// mount: the expectations written there are Linux's.
#[test]
fn mount_differential_regressions() {
    let _serial = must_mount();
    let mut failures = Vec::new();
    for (name, ops) in regressions::REGRESSIONS {
        if let Err(err) = four_way(diff_config(), "").and_then(|mut d| d.run(&ops())) {
            failures.push(format!("{name}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{} regressions passed through the mount",
        regressions::REGRESSIONS.len()
    );
}

/// `default_cases` sequences (or `RTMPFS_MOUNT_DIFF_CASES`) on a mount with `extra` options.
fn run(name: &str, default_cases: usize, extra: &str) {
    let _serial = must_mount();
    let cases = env_usize("RTMPFS_MOUNT_DIFF_CASES", default_cases);
    let used = Mutex::new(BTreeMap::<&str, usize>::new());
    let started = std::time::Instant::now();
    check(name, cases, ops(50, true), |ops| {
        let mut d = four_way(diff_config(), extra)?;
        // The failure message names what a rerun needs besides the seed.
        let r = d.run(&ops).map_err(|e| {
            format!(
                "rtmpfs -o {extra:?} over {:?} (RTMPFS_TEST_TRANSPORT):\n{e}",
                common::transport()
            )
        });
        d.tally(&mut used.lock().unwrap());
        let mut u = used.lock().unwrap();
        for counter in ["evictions", "swap_ins"] {
            *u.entry(counter).or_default() += common::stat_of(d.dirs[1].path(), counter) as usize;
        }
        r
    });
    eprintln!(
        "{name}: {cases} sequences on model, engine, kernel tmpfs and rtmpfs -o {extra:?} ({:?}) in {:.1} s",
        common::transport(),
        started.elapsed().as_secs_f64()
    );
    let mut used = used.into_inner().unwrap();
    let swapped = (
        used.remove("evictions").unwrap_or(0),
        used.remove("swap_ins").unwrap_or(0),
    );
    eprintln!("the daemons evicted {} pages and swapped in {}", swapped.0, swapped.1);
    if extra.contains("memory=") {
        assert!(swapped.0 > 0, "a RAM budget that never evicts tests nothing more");
    }
    for (name, n) in used {
        eprintln!("deviation {name}: {n} times. {}", reason(name));
    }
}
