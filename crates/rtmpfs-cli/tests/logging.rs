//! Say what happened, once (issue 15, item 6): a daemon started by the mount helper logs to the
//! system log (its stderr is /dev/null); a failing swap device is one "swap device failing"
//! line and rate-limited per-I/O warnings, not thousands; `isatty()` on the mount is ENOTTY and
//! logs nothing.

mod common;

use common::{c_path, can_mount, errno, rtmpfs_bin, run, Daemon, MountDir, Tmpfs};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn isatty_on_the_mount_is_enotty_and_logs_nothing() {
    if !can_mount("isatty_on_the_mount_is_enotty_and_logs_nothing") {
        return;
    }
    let d = Daemon::start("size=8m");
    let f = d.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    let p = c_path(&f);
    for _ in 0..100 {
        // SAFETY: a valid path; the descriptor is closed below.
        let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
        assert!(fd >= 0);
        // SAFETY: an open descriptor.
        let tty = unsafe { libc::isatty(fd) };
        let e = errno();
        // SAFETY: closing our descriptor.
        unsafe { libc::close(fd) };
        assert_eq!((tty, e), (0, libc::ENOTTY));
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = d.stderr();
    assert!(!log.contains("ioctl"), "isatty was logged: {log}");
}

/// Everything the daemon sent to the syslog socket so far (waits up to `wait` for `until`).
fn drain(sock: &UnixDatagram, wait: Duration, until: impl Fn(&[String]) -> bool, got: &mut Vec<String>) {
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end && !until(got) {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn detached_daemon_logs_to_syslog_once_per_state_change() {
    if !can_mount("detached_daemon_logs_to_syslog_once_per_state_change") {
        return;
    }
    let logdir = tempfile::tempdir().unwrap();
    let sock_path = logdir.path().join("log");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // The swap file's filesystem is 1 MiB: swap writes fail once it is full. Without the
    // compressed tier: with it, the constant pages below go to swap as records of a few bytes
    // each and 16 MiB of them fit in 1 MiB (the tier under a failing swap is core's
    // tests/compress.rs).
    let small = Tmpfs::mount("size=1m");
    let mnt = MountDir::new();
    let out = run(
        Command::new(rtmpfs_bin())
            .arg0("mount.fuse.rtmpfs")
            .arg("tagged")
            .arg(mnt.path())
            .args([
                "-o",
                &format!("size=64m,memory=1m,compress=off,swap={}", small.path().display()),
            ])
            .env("RTMPFS_SYSLOG_SOCKET", &sock_path),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut got = Vec::new();
    // The mount-time warning (default swap size larger than the free space) is in the log.
    drain(
        &sock,
        Duration::from_secs(5),
        |g| g.iter().any(|l| l.contains("swap_size")),
        &mut got,
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("<28>rtmpfs[") && l.contains("the default, size - memory")),
        "{got:?}"
    );
    // 8 MiB through a 1 MiB budget with 1 MiB of swap space: many failed swap writes.
    let data = vec![5u8; 8 << 20];
    let _ = std::fs::write(mnt.path().join("big"), &data);
    let _ = std::fs::write(mnt.path().join("big2"), &data);
    drain(
        &sock,
        Duration::from_secs(5),
        |g| g.iter().any(|l| l.contains("swap device failing")),
        &mut got,
    );
    drain(&sock, Duration::from_secs(2), |_| false, &mut got);
    let count = |s: &str| got.iter().filter(|l| l.contains(s)).count();
    assert_eq!(count("swap device failing"), 1, "{got:#?}");
    // Hundreds of failed swap writes (760 when written), at most two lines of the engine's
    // per-I/O warning (not required to exist: the engine may stop warning per I/O).
    assert!(
        count("swap write failed") <= 2,
        "not rate-limited: {} lines",
        count("swap write failed")
    );
    assert!(got.len() < 20, "{} lines: {got:#?}", got.len());
    let m = common::c_path(mnt.path());
    // SAFETY: a valid path; our own mount.
    unsafe { libc::umount2(m.as_ptr(), libc::MNT_DETACH) };
}
