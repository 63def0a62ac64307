//! FUSE over io_uring: when it is used, when the daemon falls back to `/dev/fuse` (and says
//! so), when `io_uring=on` refuses to mount, and that the end of a mount (kill -9, SIGTERM with
//! requests in flight) never hangs. Each test holds `fuse.enable_uring` at the value it needs
//! through `UringSwitch`, which restores what it found, also on failure.
//!
//! The other mount tests (lifecycle, self_mmap, setid, swap_stall) run over io_uring with
//! `RTMPFS_TEST_TRANSPORT=io_uring` (see docs/testing.md).

mod common;

use common::{can_mount, errno, mounted_at, run, threads_named, wait_until, Daemon, MountDir, UringSwitch};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The daemon's ring threads (one per possible CPU when io_uring is in use, none otherwise).
fn ring_threads(d: &Daemon) -> Vec<(String, u64)> {
    threads_named(d.pid(), "fuser-ring-")
}

fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    text.trim()
        .split([',', '-'])
        .filter_map(|n| n.parse::<usize>().ok())
        .max()
        .unwrap()
        + 1
}

/// Requests that must reach the daemon: creating fresh names.
fn make_files(dir: &Path, n: usize) {
    for i in 0..n {
        std::fs::write(dir.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    for i in 0..n {
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("f{i}"))).unwrap(),
            format!("{i}")
        );
    }
}

/// `rtmpfs DIR -o OPTS` run to completion (10 s at most): it must fail with one line on stderr
/// and leave nothing mounted.
fn refused(opts: &str, env: &[(&str, &str)]) -> String {
    let mnt = MountDir::new();
    let out = run(
        Command::new(common::rtmpfs_bin())
            .arg(mnt.path())
            .arg("-o")
            .arg(opts)
            .envs(env.iter().copied()),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "mounted although it should not: {err}");
    assert!(mounted_at(mnt.path()).is_none(), "left a mount behind");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    err
}

#[test]
fn io_uring_is_used_when_offered() {
    if !can_mount("io_uring_is_used_when_offered") {
        return;
    }
    let _y = UringSwitch::on();
    let d = Daemon::start("io_uring=on");
    let before = ring_threads(&d);
    assert_eq!(
        before.len(),
        possible_cpus(),
        "one ring thread per possible CPU: {before:?}"
    );
    make_files(d.path(), 200);
    let after = ring_threads(&d);
    let served = |v: &[(String, u64)]| v.iter().map(|t| t.1).sum::<u64>();
    // 200 creates and 200 reads are at least 800 requests; the ring threads sleep and wake for
    // most of them (the classic readers see none once the rings are ready).
    assert!(
        served(&after) >= served(&before) + 200,
        "the ring threads did not serve the requests: {before:?} -> {after:?}"
    );
}

#[test]
fn auto_falls_back_to_dev_fuse_when_the_kernel_does_not_offer_it() {
    if !can_mount("auto_falls_back_to_dev_fuse_when_the_kernel_does_not_offer_it") {
        return;
    }
    let _n = UringSwitch::off();
    let d = Daemon::start("io_uring=auto");
    make_files(d.path(), 20);
    assert!(ring_threads(&d).is_empty());
    let err = d.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("io_uring")).collect();
    assert_eq!(lines.len(), 1, "one line about io_uring: {err}");
    assert!(lines[0].contains("does not offer it"), "{err}");
    assert!(
        lines[0].contains("echo Y > /sys/module/fuse/parameters/enable_uring"),
        "{err}"
    );
}

#[test]
fn off_never_tries_and_says_nothing() {
    if !can_mount("off_never_tries_and_says_nothing") {
        return;
    }
    let _y = UringSwitch::on();
    let d = Daemon::start("io_uring=off");
    make_files(d.path(), 20);
    assert!(ring_threads(&d).is_empty());
    assert!(!d.stderr().contains("io_uring"), "{}", d.stderr());
}

#[test]
fn on_is_refused_when_the_kernel_does_not_offer_it() {
    if !can_mount("on_is_refused_when_the_kernel_does_not_offer_it") {
        return;
    }
    let _n = UringSwitch::off();
    let err = refused("io_uring=on", &[]);
    assert!(err.contains("FUSE over io_uring required but unavailable"), "{err}");
    assert!(err.contains("does not offer it"), "{err}");
}

const FAULT: (&str, &str) = ("RTMPFS_FAULT_URING_REGISTER", "1");

#[test]
fn auto_falls_back_cleanly_when_register_fails() {
    if !can_mount("auto_falls_back_cleanly_when_register_fails") {
        return;
    }
    let _y = UringSwitch::on();
    let d = Daemon::start_with(MountDir::new(), "io_uring=auto", &[FAULT]);
    // The kernel gave up on the rings and serves everything on /dev/fuse.
    make_files(d.path(), 50);
    assert!(ring_threads(&d).is_empty(), "ring threads left after the fallback");
    let err = d.stderr();
    assert!(err.contains("refused to REGISTER"), "{err}");
    assert!(err.contains("Invalid argument"), "{err}");
}

#[test]
fn on_fails_the_mount_cleanly_when_register_fails() {
    if !can_mount("on_fails_the_mount_cleanly_when_register_fails") {
        return;
    }
    let _y = UringSwitch::on();
    let err = refused("io_uring=on", &[FAULT]);
    assert!(err.contains("refused to REGISTER"), "{err}");
}

/// Threads that stat fresh names on `dir` (each a LOOKUP) until `stop`; each returns how its
/// last call ended (0 or the errno). A hang shows as a thread that never returns.
fn hammer(dir: &Path, stop: &Arc<AtomicBool>, n: usize) -> Vec<std::thread::JoinHandle<i32>> {
    (0..n)
        .map(|t| {
            let (dir, stop) = (dir.to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = common::c_path(&dir.join(format!("t{t}-{i}")));
                    // SAFETY: stat is plain data; all-zero is a valid value.
                    let mut st: libc::stat = unsafe { std::mem::zeroed() };
                    // SAFETY: a valid path and a writable stat buffer.
                    last = if unsafe { libc::stat(p.as_ptr(), &raw mut st) } == 0 {
                        0
                    } else {
                        errno()
                    };
                    if last != 0 && last != libc::ENOENT {
                        break;
                    }
                    i += 1;
                }
                last
            })
        })
        .collect()
}

/// Join `threads` within `timeout` in total, or fail: something hung.
fn join_all(threads: Vec<std::thread::JoinHandle<i32>>, timeout: Duration) -> Vec<i32> {
    let all_done = wait_until(timeout, || threads.iter().all(std::thread::JoinHandle::is_finished));
    assert!(all_done, "a request never returned: the mount hangs");
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn kill_9_with_requests_on_the_rings_ends_in_enotconn_and_unmount_recovers() {
    if !can_mount("kill_9_with_requests_on_the_rings_ends_in_enotconn_and_unmount_recovers") {
        return;
    }
    let _y = UringSwitch::on();
    let mut d = Daemon::start("io_uring=on");
    let path = d.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let threads = hammer(&path, &stop, 4);
    std::thread::sleep(Duration::from_millis(300));
    d.signal(libc::SIGKILL);
    d.wait();
    let ends = join_all(threads, Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    // In flight when the daemon died: ECONNABORTED (ended by the abort) or ECANCELED (its ring
    // entry's submitter was gone when the kernel copied it out); after that ENOTCONN.
    for e in ends {
        assert!(
            [libc::ENOTCONN, libc::ECONNABORTED, libc::ECANCELED].contains(&e),
            "a request ended with errno {e}"
        );
    }
    let before = common::dead_mount_errors(&path);
    assert!(
        before.iter().all(|e| [libc::ECONNABORTED, libc::ECANCELED].contains(e)),
        "errors before ENOTCONN: {before:?}"
    );
    // fusermount3 -u where installed (lifecycle.rs tests it over both transports), else umount -l.
    let tool: &[&str] = if Path::new("/usr/bin/fusermount3").exists() {
        &["fusermount3", "-u"]
    } else {
        &["umount", "-l"]
    };
    let out = run(Command::new(tool[0]).arg(tool[1]).arg(&path), Duration::from_secs(10));
    assert!(
        out.status.success(),
        "{tool:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(mounted_at(&path).is_none());
}

#[test]
fn sigterm_with_requests_in_flight_unmounts_without_hanging() {
    if !can_mount("sigterm_with_requests_in_flight_unmounts_without_hanging") {
        return;
    }
    let _y = UringSwitch::on();
    let mut d = Daemon::start("io_uring=on");
    let path = d.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let threads = hammer(&path, &stop, 4);
    std::thread::sleep(Duration::from_millis(300));
    d.signal(libc::SIGTERM);
    let status = d.wait();
    assert!(status.success(), "daemon exit: {status}");
    stop.store(true, Ordering::Relaxed);
    join_all(threads, Duration::from_secs(10));
    assert!(mounted_at(&path).is_none(), "still mounted");
}

#[test]
fn umount_with_requests_in_flight_ends_the_daemon() {
    if !can_mount("umount_with_requests_in_flight_ends_the_daemon") {
        return;
    }
    let _y = UringSwitch::on();
    let mut d = Daemon::start("io_uring=on");
    let path = d.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let threads = hammer(&path, &stop, 4);
    std::thread::sleep(Duration::from_millis(300));
    // Lazy: the stat calls in flight keep the mount busy for a plain umount.
    let out = run(Command::new("umount").arg("-l").arg(&path), Duration::from_secs(10));
    assert!(
        out.status.success(),
        "umount -l: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop.store(true, Ordering::Relaxed);
    join_all(threads, Duration::from_secs(10));
    let status = d.wait();
    assert!(status.success(), "daemon exit: {status}");
}

/// A signal to a caller whose request sits in the daemon makes the kernel send an INTERRUPT on
/// `/dev/fuse`. For a ring request no answer to it can be matched (the kernel looks the request
/// up among `/dev/fuse`'s own), so the daemon must not answer, and must not log a failed reply.
#[test]
fn interrupts_of_ring_requests_are_left_unanswered() {
    if !can_mount("interrupts_of_ring_requests_are_left_unanswered") {
        return;
    }
    let _y = UringSwitch::on();
    // A swap-in that hangs: the swap file is on a second mount whose daemon is stopped.
    let swapfs = Daemon::start("io_uring=off");
    let a = Daemon::start(&format!(
        "size=64m,memory=1m,swap={},io_uring=on",
        swapfs.path().display()
    ));
    let big = a.path().join("big");
    std::fs::write(&big, vec![7u8; 8 << 20]).unwrap();
    swapfs.signal(libc::SIGSTOP);
    struct Cont(i32);
    impl Drop for Cont {
        fn drop(&mut self) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    let cont = Cont(swapfs.pid());
    // dd catches SIGUSR1 (it prints its progress), so the signal interrupts the wait without
    // killing it; O_DIRECT makes the read reach the daemon.
    let mut dd = Command::new("dd")
        .arg(format!("if={}", big.display()))
        .args(["of=/dev/null", "bs=4096", "skip=64", "count=1", "iflag=direct"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        dd.try_wait().unwrap().is_none(),
        "the read did not wait for the swap device"
    );
    for _ in 0..3 {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(dd.id() as i32, libc::SIGUSR1) };
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(cont);
    let ok = wait_until(Duration::from_secs(30), || dd.try_wait().unwrap().is_some());
    assert!(ok, "the read did not finish after the swap device came back");
    assert!(dd.wait().unwrap().success());
    let err = a.stderr();
    assert!(!err.contains("Failed to send FUSE reply"), "{err}");
}
