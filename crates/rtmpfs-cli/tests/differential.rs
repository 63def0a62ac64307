//! The differential test through the whole stack: the random operation sequences of the
//! engine's differential test (`crates/rtmpfs-core/tests/differential.rs`) run on the model, the
//! engine in process, a private kernel tmpfs and a real rtmpfs mount (this crate's binary, over
//! the transport `RTMPFS_TEST_TRANSPORT` selects, see `tests/common`), all with the same `size`,
//! `nr_inodes` and root mode. After every step every result, errno, byte, attribute and statfs
//! figure, and whether each inode's mtime and ctime changed, must agree; the deviations list of
//! `rtmpfs_testkit::differential` (each with its reason, per side where only one side differs)
//! is the only way out. A failure prints the seed and the shrunk sequence, ready to paste.
//!
//! `RTMPFS_MOUNT_DIFF_CASES` sets the number of sequences (default 256, about a minute on two
//! loaded cores); `RTMPFS_SEED` the seed. Needs root and /dev/fuse: without them the test fails
//! saying why, it never passes silently.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use common::Daemon;
use rtmpfs_testkit::differential::{diff_config, reason, Differential, RTMPFS};
use rtmpfs_testkit::dir::DirBackend;
use rtmpfs_testkit::model::ModelConfig;
use rtmpfs_testkit::strategies::{check, env_usize, ops};
use rtmpfs_testkit::tmpfs::mount_options;

fn must_mount() {
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "the mount differential test needs /dev/fuse"
    );
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the mount differential test needs root");
}

/// An rtmpfs mount with the limits of `cfg`, as a directory backend that keeps the daemon (and
/// so the mount) until it is dropped.
fn rtmpfs_backend(cfg: &ModelConfig) -> Result<DirBackend, String> {
    let daemon = Daemon::start(&mount_options(cfg));
    let path = daemon.path().to_path_buf();
    Ok(DirBackend::new(RTMPFS, &path, cfg.umask)?
        .deferred_release()
        .keeping(Box::new(daemon)))
}

/// Model, engine, kernel tmpfs and rtmpfs through FUSE on one sequence.
fn four_way(cfg: ModelConfig) -> Result<Differential, String> {
    let kernel = DirBackend::tmpfs(&cfg)?;
    Ok(Differential::new(cfg, vec![kernel, rtmpfs_backend(&cfg)?]))
}

#[test]
fn mount_differential_random_sequences() {
    must_mount();
    let cases = env_usize("RTMPFS_MOUNT_DIFF_CASES", 256);
    let used = Mutex::new(BTreeMap::<&str, usize>::new());
    let started = std::time::Instant::now();
    check("mount_differential_random_sequences", cases, ops(50, true), |ops| {
        let mut d = four_way(diff_config())?;
        let r = d.run(&ops);
        d.tally(&mut used.lock().unwrap());
        r
    });
    eprintln!(
        "{cases} sequences on model, engine, kernel tmpfs and rtmpfs ({:?}) in {:.1} s",
        common::transport(),
        started.elapsed().as_secs_f64()
    );
    for (name, n) in used.into_inner().unwrap() {
        eprintln!("deviation {name}: {n} times. {}", reason(name));
    }
}
