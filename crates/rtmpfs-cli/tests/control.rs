//! The control socket cannot be impersonated nor stalled (issue 15, items 3 and 4).
//!
//! - An impostor (uid 65534) holding a mount's control socket name is refused by the client:
//!   `rtmpfs --stats` and `mount -o remount,...` fail naming it, and never print its figures nor
//!   report success. The real daemon runs in its own network namespace (abstract socket names are
//!   per network namespace), so the impostor holds the name the client looks up.
//! - A daemon whose name is already taken by another user fails the mount with a message.
//! - A request beyond 64 KiB is refused without being echoed, and the daemon's RSS does not grow
//!   with it; a slow client and 1,000 idle connections do not keep `--stats` waiting.

mod common;

use common::{can_mount, rtmpfs_bin, run, wait_until, Daemon, MountDir};
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// The tests of this file run one at a time: one squats the names other mounts will get.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
/// What the impostor answers: figures no real daemon would have.
const FAKE_ANSWER: &[u8] = b"charged_pages 987654321\nok\n";

/// The control socket name of the mount at `path`.
fn ctl_name(path: &Path) -> String {
    let entry = rtmpfs_fuse::mountinfo::mounted_at(path).unwrap().expect("mounted");
    rtmpfs_fuse::control::socket_name(&entry)
}

/// A sockaddr_un for an abstract name, built before fork (the child must not allocate).
fn abstract_addr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; zero is valid for every field.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path[1..].iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    (sa, len as libc::socklen_t)
}

/// A forked child running as uid/gid 65534 that binds and listens on abstract names; with one
/// name it also answers every connection with `FAKE_ANSWER`. Killed on drop.
struct Squatter(libc::pid_t);

impl Squatter {
    fn start(names: &[String]) -> Squatter {
        let addrs: Vec<_> = names.iter().map(|n| abstract_addr(n)).collect();
        let mut pipe = [0; 2];
        // SAFETY: a writable array of two ints.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes async-signal-safe calls (setgid, setuid, socket, bind,
        // listen, read, write, accept, close, pause, _exit) on data prepared before the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: see above.
            unsafe { squat(&addrs, pipe[1]) }
        }
        // SAFETY: our pipe's ends; the write end belongs to the child now.
        unsafe { libc::close(pipe[1]) };
        let mut ready = [0u8; 1];
        // SAFETY: reading one byte into a one-byte buffer.
        let n = unsafe { libc::read(pipe[0], ready.as_mut_ptr().cast(), 1) };
        // SAFETY: closing our read end.
        unsafe { libc::close(pipe[0]) };
        let s = Squatter(pid);
        assert_eq!((n, ready[0]), (1, b'y'), "the squatter could not bind its names");
        s
    }
}

/// The squatter's body (in the forked child).
///
/// # Safety
/// Only in a child just forked; never returns.
unsafe fn squat(addrs: &[(libc::sockaddr_un, libc::socklen_t)], ready: i32) -> ! {
    // SAFETY: async-signal-safe calls on data made before the fork (see Squatter::start).
    unsafe {
        if libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
            libc::_exit(1);
        }
        let mut last = -1;
        for (sa, len) in addrs {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                libc::_exit(2);
            }
            // A name already bound is a live mount's (another test's): leave it.
            if libc::bind(fd, std::ptr::addr_of!(*sa).cast(), *len) == 0 && libc::listen(fd, 128) == 0 {
                last = fd;
            } else {
                libc::close(fd);
            }
        }
        if last < 0 {
            libc::_exit(3);
        }
        libc::write(ready, b"y".as_ptr().cast(), 1);
        if addrs.len() == 1 {
            loop {
                let c = libc::accept(last, std::ptr::null_mut(), std::ptr::null_mut());
                if c >= 0 {
                    // Read the request first, as a server does (a client that gets the answer
                    // before it wrote would see EPIPE instead).
                    let mut req = [0u8; 4096];
                    libc::read(c, req.as_mut_ptr().cast(), req.len());
                    libc::write(c, FAKE_ANSWER.as_ptr().cast(), FAKE_ANSWER.len());
                    libc::close(c);
                }
            }
        }
        loop {
            libc::pause();
        }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// `rtmpfs DIR -o opts` started as `unshare -n rtmpfs ...`: its control socket is in a network
/// namespace of its own, out of reach of this one.
fn daemon_in_own_netns(opts: &str) -> Daemon {
    let mnt = MountDir::new();
    let stderr_path = std::env::temp_dir().join(format!("rtmpfs-ctl-test-{}.stderr", std::process::id()));
    let child = Command::new("unshare")
        .arg("-n")
        .arg(rtmpfs_bin())
        .arg(mnt.path())
        .args(["-o", opts])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("unshare -n");
    let mut d = Daemon {
        child: Some(child),
        mnt,
        stderr_path,
        uring_switch: None,
    };
    let path = d.path().to_path_buf();
    let up = wait_until(Duration::from_secs(10), || {
        common::mounted_at(&path).is_some_and(|m| m.fstype.starts_with("fuse"))
            || d.child.as_mut().unwrap().try_wait().unwrap().is_some()
    });
    assert!(up && common::mounted_at(&path).is_some(), "not mounted: {}", d.stderr());
    d
}

/// Run the binary as the mount helper (argv[0] `mount.fuse.rtmpfs`).
fn helper(args: &[&str], dir: &Path) -> std::process::Output {
    run(
        Command::new(rtmpfs_bin())
            .arg0("mount.fuse.rtmpfs")
            .arg("rtmpfs")
            .arg(dir)
            .args(args),
        Duration::from_secs(20),
    )
}

#[test]
fn client_refuses_an_impostor_holding_the_name() {
    if !can_mount("client_refuses_an_impostor_holding_the_name") {
        return;
    }
    let _serial = serial();
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("SKIP client_refuses_an_impostor_holding_the_name: no unshare(1) (util-linux)");
        return;
    }
    let d = daemon_in_own_netns("size=8m");
    let _squatter = Squatter::start(&[ctl_name(d.path())]);

    let out = run(
        Command::new(rtmpfs_bin()).arg("--stats").arg(d.path()),
        Duration::from_secs(20),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "--stats believed an impostor: {stdout}");
    assert!(
        !stdout.contains("987654321"),
        "the impostor's figures were printed: {stdout}"
    );
    assert!(
        stderr.contains("uid 65534") && stderr.contains("refusing"),
        "no clear message: {stderr}"
    );

    for opts in ["remount,size=2m", "remount,ro"] {
        let out = helper(&["-o", opts], d.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(32),
            "{opts} reported success to an impostor: {stderr}"
        );
        assert!(stderr.contains("uid 65534"), "{opts}: no clear message: {stderr}");
    }
    // Nothing changed: the kernel's mount is still read-write.
    let m = common::mounted_at(d.path()).unwrap();
    assert!(
        m.options.split(',').any(|o| o == "rw"),
        "the mount changed: {}",
        m.options
    );
}

/// The mount id and anonymous device minor the next mount will most likely get: the kernel
/// hands out the lowest free one of each, so a throwaway tmpfs mounted and unmounted just
/// before shows them (ids hidden from a container, or taken by a parallel test, make guessing
/// from mountinfo unreliable).
fn next_mount_ids() -> (u64, u32) {
    let probe = MountDir::new();
    let out = run(
        Command::new("mount")
            .args(["-t", "tmpfs", "rtmpfs_ctl_probe"])
            .arg(probe.path()),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "mount tmpfs: {out:?}");
    let m = rtmpfs_fuse::mountinfo::mounted_at(probe.path()).unwrap().unwrap();
    common::force_unmount(probe.path());
    (m.id, m.minor)
}

/// Start `rtmpfs DIR -o size=8m` and return its stderr once it exits. If it mounts instead,
/// fail: saying so, or, when its name is not among the squatted ones (another mount took the
/// predicted ids meanwhile), that the run proved nothing.
fn mount_expecting_failure(mnt: &MountDir, squatted: &[String]) -> String {
    let stderr_path = std::env::temp_dir().join(format!("rtmpfs-squat-test-{}.stderr", std::process::id()));
    let child = Command::new(rtmpfs_bin())
        .arg(mnt.path())
        .args(["-o", "size=8m"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // Killed on drop; its (empty) directory is not the mount point, which `mnt` cleans up.
    let mut d = Daemon {
        child: Some(child),
        mnt: MountDir::new(),
        stderr_path,
        uring_switch: None,
    };
    let mut exited = None;
    let mounted = wait_until(Duration::from_secs(15), || {
        exited = d.child.as_mut().unwrap().try_wait().unwrap();
        exited.is_some() || common::mounted_at(mnt.path()).is_some_and(|m| m.fstype.starts_with("fuse"))
    });
    assert!(mounted, "the daemon neither mounted nor exited: {}", d.stderr());
    if exited.is_none() {
        let name = ctl_name(mnt.path());
        let msg = if squatted.contains(&name) {
            "the daemon served a mount whose control socket name was taken"
        } else {
            "INCONCLUSIVE: another mount took the predicted ids; rerun"
        };
        panic!("{msg} (@{name}): {}", d.stderr());
    }
    let stderr = d.stderr();
    d.child = None;
    assert!(stderr.contains("control socket"), "unexpected failure: {stderr}");
    stderr
}

#[test]
fn daemon_fails_the_mount_when_its_name_is_taken() {
    if !can_mount("daemon_fails_the_mount_when_its_name_is_taken") {
        return;
    }
    let _serial = serial();
    // Squat every name the next mount is likely to get (8 mount ids times 4 minors from the
    // next free ones, room for parallel tests' mounts), as a hostile user would.
    let (id, minor) = next_mount_ids();
    let names: Vec<String> = (id..id + 8)
        .flat_map(|id| (minor..minor + 4).map(move |mi| format!("rtmpfs-ctl/0:{mi}/{id}")))
        .collect();
    let _squatter = Squatter::start(&names);

    let mnt = MountDir::new();
    let stderr = mount_expecting_failure(&mnt, &names);
    assert!(
        stderr.contains("uid 65534") && stderr.contains("refusing to mount"),
        "no clear message: {stderr}"
    );
    assert!(common::mounted_at(mnt.path()).is_none(), "a mount was left behind");

    // The same through the mount helper: its daemon's message reaches mount(8).
    let out = helper(&["-o", "size=8m"], mnt.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(32), "helper: {stderr}");
    assert!(stderr.contains("uid 65534"), "helper: no clear message: {stderr}");
    assert!(common::mounted_at(mnt.path()).is_none(), "a mount was left behind");
}

/// Connect to the control socket `name`. The mount shows in mountinfo a moment before its daemon
/// has bound the socket (the name needs the mount's id), so a refusal is retried for 5 s.
fn connect(name: &str) -> UnixStream {
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match UnixStream::connect_addr(&addr) {
            Ok(s) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect @{name}: {e}"),
        }
    }
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn oversized_request_is_refused_without_echo() {
    if !can_mount("oversized_request_is_refused_without_echo") {
        return;
    }
    let _serial = serial();
    let d = Daemon::start("size=8m");
    let name = ctl_name(d.path());
    let before = rss_kib(d.pid());
    // 256 MiB of one line, from a thread; the daemon must stop reading long before the end.
    let mut conn = connect(&name);
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        for _ in 0..256 {
            match writer.write_all(&chunk) {
                Ok(()) => sent += chunk.len(),
                Err(_) => break,
            }
        }
        sent
    });
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = Vec::new();
    let _ = (&mut conn).take(1 << 20).read_to_end(&mut answer);
    let sent = sender.join().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("err request too long"), "answer: {answer:.200}");
    assert!(
        answer.len() < 256,
        "the request was echoed ({} bytes back)",
        answer.len()
    );
    assert!(sent < 64 << 20, "the daemon kept reading: {sent} bytes accepted");
    let after = rss_kib(d.pid());
    assert!(
        after < before + 8 * 1024,
        "daemon RSS grew from {before} KiB to {after} KiB"
    );
    // Still serving.
    assert!(common::stat_of(d.path(), "charged_pages") < 1 << 30);
}

/// Raise this process's open-file limit to at least `n` (the soft limit is often 1024).
fn allow_open_files(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) }, 0);
    if lim.rlim_cur < n {
        lim.rlim_cur = n.min(lim.rlim_max);
        // SAFETY: a valid rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) }, 0);
    }
}

#[test]
fn slow_and_idle_clients_do_not_block_stats() {
    if !can_mount("slow_and_idle_clients_do_not_block_stats") {
        return;
    }
    let _serial = serial();
    allow_open_files(4096);
    let d = Daemon::start("size=8m");
    let name = ctl_name(d.path());
    // A slow client: one byte of a request, then silence.
    let mut slow = connect(&name);
    slow.write_all(b"s").unwrap();
    // 1,000 idle connections, made before the --stats below.
    let idle: Vec<UnixStream> = (0..1000).map(|_| connect(&name)).collect();
    for round in 0..3 {
        let t = Instant::now();
        let out = run(
            Command::new(rtmpfs_bin()).arg("--stats").arg(d.path()),
            Duration::from_secs(3),
        );
        assert!(
            out.status.success(),
            "round {round}: --stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("charged_pages"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "round {round}: --stats took {:?}",
            t.elapsed()
        );
    }
    // The daemon holds a bounded number of descriptors for them all.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", d.pid())).unwrap().count();
    assert!(fds < 200, "the daemon holds {fds} descriptors");
    drop(idle);
}
