//! Options are honest (issue 15, item 7): swap options the host cannot honour, or that
//! contradict each other, are refused at mount with a one-line message and nothing mounted; a
//! default swap size larger than the free space is mounted with a warning; a remount refuses
//! options fixed at mount instead of answering ok while ignoring them.

mod common;

use common::{can_mount, rtmpfs_bin, run, Daemon, MountDir, Tmpfs};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Run `rtmpfs DIR -o opts` expecting a refusal: exit 1, one line on stderr, nothing mounted.
fn refused(opts: &str) -> String {
    let mnt = MountDir::new();
    let out = run(Command::new(rtmpfs_bin()).arg(mnt.path()).args(["-o", opts]), T);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{opts}: mounted");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{opts}: {stderr}");
    assert!(common::mounted_at(mnt.path()).is_none(), "{opts}: left a mount");
    stderr
}

#[test]
fn swap_options_the_host_cannot_honour_are_refused() {
    if !can_mount("swap_options_the_host_cannot_honour_are_refused") {
        return;
    }
    let e = refused("size=64m,memory=4m,swap=/nonexistent-rtmpfs-swap");
    assert!(
        e.contains("swap directory /nonexistent-rtmpfs-swap: No such file"),
        "{e}"
    );
    let e = refused("size=64m,memory=4m,noswap,swap_size=1m");
    assert!(e.contains("'noswap' and 'swap_size=' contradict"), "{e}");
    // A 4 MiB filesystem cannot hold a 64 MiB swap file.
    let small = Tmpfs::mount("size=4m");
    let e = refused(&format!(
        "size=128m,memory=4m,swap={},swap_size=64m",
        small.path().display()
    ));
    assert!(
        e.contains("swap_size 64.0 MiB is more than the") && e.contains("refusing"),
        "{e}"
    );
    // The default size (size - memory = 124 MiB) only warns.
    let d = Daemon::start(&format!("size=128m,memory=4m,swap={}", small.path().display()));
    std::fs::write(d.path().join("f"), b"x").unwrap();
    assert!(
        d.stderr().contains("the default, size - memory"),
        "no warning: {}",
        d.stderr()
    );
}

fn remount(dir: &Path, opts: &str) -> std::process::Output {
    run(
        Command::new(rtmpfs_bin())
            .arg0("mount.fuse.rtmpfs")
            .arg("rtmpfs")
            .arg(dir)
            .args(["-o", &format!("remount,{opts}")]),
        T,
    )
}

#[test]
fn remount_refuses_options_fixed_at_mount() {
    if !can_mount("remount_refuses_options_fixed_at_mount") {
        return;
    }
    let d = Daemon::start("size=8m,mode=1777");
    // The daemon's transport is the harness's (common::transport()); ask for the other one.
    let (uring_now, uring_other) = match common::transport() {
        common::Transport::DevFuse => ("io_uring=off", "io_uring=on"),
        common::Transport::IoUring => ("io_uring=on", "io_uring=off"),
    };
    for (opts, name) in [
        (uring_other, "io_uring="),
        ("swap=/var/tmp", "swap="),
        ("fsname=other", "fsname="),
        ("mode=700", "mode="),
        ("uid=12345", "uid="),
        ("threads=3", "threads="),
        ("direct_io", "direct_io"),
        ("memory=4m", "memory="),
        ("swap_size=1m", "swap_size="),
        ("readahead=1m", "readahead="),
    ] {
        let out = remount(d.path(), opts);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(32), "remount,{opts} was accepted: {stderr}");
        assert!(
            stderr.contains(&format!("{name} cannot change on remount")),
            "{opts}: {stderr}"
        );
    }
    // Repeating current values (as fstab-driven remounts do) is fine, and limits still change.
    let out = remount(
        d.path(),
        &format!("mode=1777,fsname=rtmpfs,threads=2,{uring_now},size=4m"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(common::stat_of(d.path(), "charged_pages"), 0);
    let st = nix_statvfs(d.path());
    assert_eq!(st, 4 << 20, "size=4m not applied");
}

/// Total bytes of the filesystem at `p` (`f_blocks * f_frsize`).
fn nix_statvfs(p: &Path) -> u64 {
    let c = common::c_path(p);
    // SAFETY: plain data that statvfs fills, and a valid path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_blocks * st.f_frsize
}
