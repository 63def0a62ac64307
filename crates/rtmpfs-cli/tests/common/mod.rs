//! Shared harness for the mount tests: start `rtmpfs` on a fresh temporary directory, wait for
//! the mount with a deadline, and always clean up (unmount, kill the daemon, remove the
//! directory) in `Drop`, even when the test fails.
//!
//! These tests mount, so they need root and `/dev/fuse`. Without `/dev/fuse` (or without root)
//! each test prints why and returns early; CI has both, so there they always run.
//!
//! Transport: `Daemon` mounts with `io_uring=off` unless `RTMPFS_TEST_TRANSPORT=io_uring`, then
//! with `io_uring=on`, holding `fuse.enable_uring` at Y for as long as the daemon runs (see
//! `UringSwitch`). So every mount test runs over either transport, unchanged.

#![allow(dead_code)]

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn rtmpfs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rtmpfs"))
}

/// Whether mount tests can run here; prints the reason when not.
pub fn can_mount(test: &str) -> bool {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIP {test}: /dev/fuse is absent");
        return false;
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP {test}: mounting needs root");
        return false;
    }
    true
}

/// The FUSE transport the mount tests run over, from `RTMPFS_TEST_TRANSPORT` (`dev_fuse`, the
/// default, or `io_uring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    DevFuse,
    IoUring,
}

pub fn transport() -> Transport {
    match std::env::var("RTMPFS_TEST_TRANSPORT").as_deref() {
        Err(_) | Ok("" | "dev_fuse") => Transport::DevFuse,
        Ok("io_uring") => Transport::IoUring,
        Ok(other) => panic!("RTMPFS_TEST_TRANSPORT={other}: expected dev_fuse or io_uring"),
    }
}

const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

/// Who holds `fuse.enable_uring` in this test process: any number of tests that need Y, or one
/// that needs N. The value found before the first holder is written back after the last.
struct SwitchState {
    y_holders: usize,
    n_held: bool,
    found: Option<String>,
}

static SWITCH: std::sync::Mutex<SwitchState> = std::sync::Mutex::new(SwitchState {
    y_holders: 0,
    n_held: false,
    found: None,
});
static SWITCH_FREED: std::sync::Condvar = std::sync::Condvar::new();

/// Holds `fuse.enable_uring` at a value; restores what it found when the last holder drops
/// (also when a test fails: the drop runs while unwinding). It is machine-wide, but a daemon
/// that does not ask for io_uring in INIT is not affected by it.
pub struct UringSwitch {
    on: bool,
}

impl UringSwitch {
    /// Hold the switch at Y (shared with other Y holders). Panics if it cannot be set.
    pub fn on() -> UringSwitch {
        let mut st = SWITCH.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while st.n_held {
            st = SWITCH_FREED.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if st.y_holders == 0 {
            st.found = Some(read_switch());
            write_switch("Y");
        }
        st.y_holders += 1;
        UringSwitch { on: true }
    }

    /// Hold the switch at N (exclusively). Panics if it cannot be set.
    pub fn off() -> UringSwitch {
        let mut st = SWITCH.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while st.n_held || st.y_holders > 0 {
            st = SWITCH_FREED.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st.found = Some(read_switch());
        write_switch("N");
        st.n_held = true;
        UringSwitch { on: false }
    }
}

impl Drop for UringSwitch {
    fn drop(&mut self) {
        let mut st = SWITCH.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.on {
            st.y_holders -= 1;
        } else {
            st.n_held = false;
        }
        if st.y_holders == 0 && !st.n_held {
            if let Some(v) = st.found.take() {
                write_switch(&v);
            }
        }
        SWITCH_FREED.notify_all();
    }
}

fn read_switch() -> String {
    std::fs::read_to_string(ENABLE_URING)
        .unwrap_or_else(|e| panic!("{ENABLE_URING}: {e} (kernel without FUSE over io_uring?)"))
        .trim()
        .to_string()
}

fn write_switch(v: &str) {
    std::fs::write(ENABLE_URING, v).unwrap_or_else(|e| panic!("writing {v} to {ENABLE_URING}: {e}"));
}

/// The threads of process `pid` whose name starts with `prefix`, with their voluntary context
/// switches (a thread that serves requests sleeps and wakes once per request at least).
pub fn threads_named(pid: i32, prefix: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let name = field("Name:");
        if name.starts_with(prefix) {
            out.push((name, field("voluntary_ctxt_switches:").parse().unwrap_or(0)));
        }
    }
    out
}

/// After the daemon of the mount at `path` died: wait (10 s at most) until a request there
/// ends in ENOTCONN, and return the errors seen before. Over /dev/fuse the kernel aborts the
/// connection as the daemon exits; over io_uring it does so from the ring's teardown, which
/// runs a moment after the daemon was reaped, and a request made in that window ends in
/// ECONNABORTED (ended by the abort) or ECANCELED (handed to an entry whose thread was gone).
pub fn dead_mount_errors(path: &Path) -> Vec<i32> {
    let mut seen = Vec::new();
    let dead = wait_until(Duration::from_secs(10), || {
        let e = std::fs::read_dir(path)
            .err()
            .and_then(|e| e.raw_os_error())
            .unwrap_or(0);
        if e == libc::ENOTCONN {
            return true;
        }
        seen.push(e);
        false
    });
    assert!(dead, "the mount did not end in ENOTCONN (saw {seen:?})");
    seen
}

/// Pin the calling thread (and the threads it starts later) to one CPU.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data set up by CPU_ZERO/CPU_SET; sched_setaffinity reads it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set)
    };
    assert_eq!(r, 0, "sched_setaffinity: {}", std::io::Error::last_os_error());
}

pub use rtmpfs_fuse::mountinfo::MountEntry;

/// The topmost mount at exactly `path` (the daemon's own mountinfo parser).
pub fn mounted_at(path: &Path) -> Option<MountEntry> {
    rtmpfs_fuse::mountinfo::mounted_at(path).expect("read /proc/self/mountinfo")
}

/// Poll `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The bytes free to an ordinary user (`f_bavail * f_frsize`), as `df` sees them; every call
/// reaches the daemon (FUSE keeps no statfs cache).
pub fn free_bytes(path: &Path) -> u64 {
    let c = c_path(path);
    // SAFETY: plain data that statvfs fills, and a valid NUL-terminated path.
    let mut sv: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `sv` outlives the call.
    let r = unsafe { libc::statvfs(c.as_ptr(), &raw mut sv) };
    assert_eq!(r, 0, "statvfs: {}", errno());
    sv.f_bavail * sv.f_frsize
}

/// Run `f` on a new thread whose credentials are `uid`/`gid` with supplementary `groups`, and
/// return what it returns. Raw syscalls, not glibc's process-wide wrappers: only that thread
/// changes, so the test's other threads (and the daemon it started) keep root; a non-zero uid
/// drops every capability.
pub fn as_ids<T: Send>(uid: u32, gid: u32, groups: &[u32], f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: raw credential syscalls on the calling thread only, with a valid array of
            // `groups.len()` group ids.
            unsafe {
                assert_eq!(libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()), 0);
                assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
                assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
            }
            f()
        })
        .join()
        .unwrap()
    })
}

/// Wait for a child with a deadline; kills it on timeout and returns None.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run a command to completion with a deadline (killed on timeout: a hang fails the test).
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_child(&mut child, timeout).unwrap_or_else(|| panic!("{cmd:?} did not finish within {timeout:?}"));
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// `path` for a libc call.
pub fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// Lazily unmount whatever is at `path` (best effort).
pub fn force_unmount(path: &Path) {
    let c = c_path(path);
    for _ in 0..4 {
        if mounted_at(path).is_none() {
            return;
        }
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A temporary directory that is unmounted (lazily, if need be) before it is removed.
pub struct MountDir {
    pub dir: tempfile::TempDir,
}

impl MountDir {
    pub fn new() -> MountDir {
        MountDir {
            dir: tempfile::Builder::new()
                .prefix("rtmpfs-test.")
                .tempdir_in("/tmp")
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MountDir {
    fn drop(&mut self) {
        force_unmount(self.dir.path());
    }
}

/// A running `rtmpfs` daemon in the foreground, killed and unmounted on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub mnt: MountDir,
    pub stderr_path: PathBuf,
    /// `fuse.enable_uring` held at Y while an `io_uring=on` daemon runs (dropped after it).
    pub uring_switch: Option<UringSwitch>,
}

impl Daemon {
    /// Start `rtmpfs DIR -o opts` on a fresh directory and wait (10 s at most) until mounted.
    pub fn start(opts: &str) -> Daemon {
        Daemon::start_in(MountDir::new(), opts)
    }

    pub fn start_in(mnt: MountDir, opts: &str) -> Daemon {
        Daemon::start_with(mnt, opts, &[])
    }

    /// `start_in` with extra environment variables for the daemon. Unless `opts` names
    /// `io_uring=`, the transport comes from `transport()`.
    pub fn start_with(mnt: MountDir, opts: &str, env: &[(&str, &str)]) -> Daemon {
        let mut opts = opts.to_string();
        let mut uring_switch = None;
        if !opts.contains("io_uring=") {
            let t = match transport() {
                Transport::DevFuse => "io_uring=off",
                Transport::IoUring => {
                    uring_switch = Some(UringSwitch::on());
                    "io_uring=on"
                }
            };
            opts = if opts.is_empty() {
                t.to_string()
            } else {
                format!("{opts},{t}")
            };
        }
        let opts = opts.as_str();
        let stderr_path = std::env::temp_dir().join(format!(
            "rtmpfs-test-{}-{}.stderr",
            std::process::id(),
            mnt.path().file_name().unwrap().to_string_lossy()
        ));
        let mut cmd = Command::new(rtmpfs_bin());
        cmd.arg(mnt.path());
        if !opts.is_empty() {
            cmd.arg("-o").arg(opts);
        }
        let child = cmd
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            mnt,
            stderr_path,
            uring_switch,
        };
        let path = d.path().to_path_buf();
        let ok = wait_until(Duration::from_secs(10), || {
            mounted_at(&path).is_some_and(|m| m.fstype.starts_with("fuse"))
                || d.child.as_mut().unwrap().try_wait().unwrap().is_some()
        });
        assert!(ok, "rtmpfs did not mount within 10 s");
        if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("rtmpfs exited at start ({st}): {}", d.stderr());
        }
        // The daemon mounts before its INIT handshake (and the io_uring REGISTERs in it); a
        // request answered means that is over.
        let _ = std::fs::metadata(&path);
        d
    }

    pub fn path(&self) -> &Path {
        self.mnt.path()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Wait for the daemon to exit (10 s at most: a hang fails).
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let st = wait_child(&mut child, Duration::from_secs(10));
        st.unwrap_or_else(|| panic!("rtmpfs did not exit within 10 s: {}", self.stderr()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            if wait_child(&mut c, Duration::from_secs(5)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        force_unmount(self.mnt.path());
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// A kernel tmpfs on a fresh directory (the oracle), unmounted on drop.
pub struct Tmpfs {
    pub mnt: MountDir,
}

impl Tmpfs {
    pub fn mount(opts: &str) -> Tmpfs {
        let mnt = MountDir::new();
        let out = run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", opts, "rtmpfs_test_oracle"])
                .arg(mnt.path()),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "mount tmpfs: {out:?}");
        Tmpfs { mnt }
    }

    pub fn path(&self) -> &Path {
        self.mnt.path()
    }
}

/// errno of the last failed libc call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `rtmpfs status --raw` of a mount (the daemon's raw counters), as (name, value) pairs.
pub fn stats(mnt: &Path) -> Vec<(String, u64)> {
    let out = run(
        Command::new(rtmpfs_bin()).args(["status", "--raw"]).arg(mnt),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "rtmpfs status --raw: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// One counter of `rtmpfs status --raw`.
pub fn stat_of(mnt: &Path, name: &str) -> u64 {
    stats(mnt)
        .into_iter()
        .find(|(k, _)| k == name)
        .map_or_else(|| panic!("no {name} in rtmpfs status --raw"), |(_, v)| v)
}
