//! Lifecycle of a mount: mount, use, and unmount by every route (SIGINT, SIGTERM, umount,
//! fusermount3 -u, the mount helper with umount, fstab), kill -9 and recovery, remount ro/rw
//! through the helper, and every bad input (each a one-line error, non-zero exit, nothing
//! mounted). Every wait is bounded; every mount is torn down in `Drop` even on failure.

mod common;

use common::{can_mount, mounted_at, run, Daemon, MountDir, Tmpfs};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Tests that install /sbin/mount.fuse.rtmpfs run one at a time.
static HELPER_LOCK: Mutex<()> = Mutex::new(());

fn use_mount(p: &Path) {
    let f = p.join("hello");
    fs::write(&f, b"hello, rtmpfs").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello, rtmpfs");
    fs::create_dir(p.join("d")).unwrap();
    fs::hard_link(&f, p.join("d/link")).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().nlink(), 2);
    fs::rename(p.join("d/link"), p.join("moved")).unwrap();
    fs::remove_file(p.join("moved")).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().nlink(), 1);
}

fn assert_gone(p: &Path) {
    assert!(
        common::wait_until(Duration::from_secs(5), || mounted_at(p).is_none()),
        "{} is still mounted",
        p.display()
    );
}

fn unmounted_by_signal(sig: i32, opts: &str) {
    let mut d = Daemon::start(opts);
    use_mount(d.path());
    d.signal(sig);
    let st = d.wait();
    assert!(st.success(), "exit status {st}: {}", d.stderr());
    assert_gone(d.path());
}

#[test]
fn sigint_unmounts_and_exits_0() {
    if can_mount("sigint_unmounts_and_exits_0") {
        unmounted_by_signal(libc::SIGINT, "");
    }
}

#[test]
fn sigterm_unmounts_and_exits_0() {
    if can_mount("sigterm_unmounts_and_exits_0") {
        unmounted_by_signal(libc::SIGTERM, "");
    }
}

#[test]
fn sigterm_with_ram_budget_unmounts_and_exits_0() {
    // The engine's evictor thread must not take the signal (it would kill the process).
    if can_mount("sigterm_with_ram_budget_unmounts_and_exits_0") {
        unmounted_by_signal(libc::SIGTERM, "size=64m,memory=64k,swap=/var/tmp");
    }
}

#[test]
fn sigterm_while_busy_detaches_and_exits_0() {
    if !can_mount("sigterm_while_busy_detaches_and_exits_0") {
        return;
    }
    let mut d = Daemon::start("");
    let f = fs::File::create(d.path().join("open")).unwrap();
    d.signal(libc::SIGTERM);
    let st = d.wait();
    assert!(st.success(), "exit status {st}: {}", d.stderr());
    assert_gone(d.path());
    drop(f);
}

fn unmounted_externally(cmd: &str, args: &[&str]) {
    let mut d = Daemon::start("");
    use_mount(d.path());
    let out = run(Command::new(cmd).args(args).arg(d.path()), T);
    assert!(out.status.success(), "{cmd}: {out:?}");
    let st = d.wait();
    assert!(st.success(), "exit status {st}: {}", d.stderr());
    assert_gone(d.path());
}

#[test]
fn umount_ends_the_daemon_with_0() {
    if can_mount("umount_ends_the_daemon_with_0") {
        unmounted_externally("umount", &[]);
    }
}

#[test]
fn fusermount3_u_ends_the_daemon_with_0() {
    if can_mount("fusermount3_u_ends_the_daemon_with_0") {
        unmounted_externally("fusermount3", &["-u"]);
    }
}

#[test]
fn mount_shows_source_type_and_flags() {
    if !can_mount("mount_shows_source_type_and_flags") {
        return;
    }
    let d = Daemon::start("fsname=scratch,size=10m,mode=0750,uid=65534,gid=65534,nosuid");
    let m = mounted_at(d.path()).unwrap();
    assert_eq!(m.source, "scratch");
    assert_eq!(m.fstype, "fuse.rtmpfs");
    let opts: Vec<&str> = m.options.split(',').collect();
    assert!(opts.contains(&"nosuid") && !opts.contains(&"nodev"), "{m:?}");
    assert!(m.super_options.contains("allow_other") && m.super_options.contains("default_permissions"));
    let meta = fs::metadata(d.path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    // statfs reports the size limit.
    let out = run(Command::new("df").args(["-B1", "--output=size"]).arg(d.path()), T);
    let size: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(size, 10 << 20);
}

#[test]
fn files_belong_to_the_caller() {
    if !can_mount("files_belong_to_the_caller") {
        return;
    }
    let d = Daemon::start("");
    // As nobody (65534), create a file in the 1777 root: it is owned by nobody.
    let out = run(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "touch"])
            .arg(d.path().join("mine")),
        T,
    );
    assert!(out.status.success(), "{out:?}");
    let meta = fs::metadata(d.path().join("mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
}

#[test]
fn kill_9_then_fusermount3_recovers() {
    if can_mount("kill_9_then_fusermount3_recovers") {
        kill_9_then(&["fusermount3", "-u"]);
    }
}

#[test]
fn kill_9_then_umount_recovers() {
    if can_mount("kill_9_then_umount_recovers") {
        kill_9_then(&["umount"]);
    }
}

fn kill_9_then(recover: &[&str]) {
    let mut d = Daemon::start("");
    use_mount(d.path());
    d.signal(libc::SIGKILL);
    let st = d.wait();
    assert!(!st.success());
    // The mount point is dead (ENOTCONN; a stat may still be answered from the kernel's
    // attribute cache, a directory listing is not), and a new mount is refused, naming the fix.
    let before = common::dead_mount_errors(d.path());
    match common::transport() {
        common::Transport::DevFuse => assert!(before.is_empty(), "errors before ENOTCONN: {before:?}"),
        common::Transport::IoUring => assert!(
            before.iter().all(|e| [libc::ECONNABORTED, libc::ECANCELED].contains(e)),
            "errors before ENOTCONN: {before:?}"
        ),
    }
    let out = run(Command::new(common::rtmpfs_bin()).arg(d.path()), T);
    assert!(!out.status.success());
    let msg = one_line(&out.stderr);
    assert!(msg.contains("fusermount3 -u"), "{msg}");
    let out = run(Command::new(recover[0]).args(&recover[1..]).arg(d.path()), T);
    assert!(out.status.success(), "{recover:?}: {out:?}");
    assert_gone(d.path());
    // The next mount works.
    let mnt = std::mem::replace(&mut d.mnt, MountDir::new());
    drop(d);
    let d2 = Daemon::start_in(mnt, "");
    use_mount(d2.path());
}

fn one_line(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr).into_owned();
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line of error, got: {s:?}");
    lines[0].to_string()
}

/// Run `rtmpfs ARGS` expecting a one-line error containing `needle` and nothing mounted at
/// `mnt`.
fn bad(args: &[&str], mnt: &Path, needle: &str) {
    let before = mounted_at(mnt).map(|m| m.major_minor);
    let out = run(Command::new(common::rtmpfs_bin()).args(args), T);
    assert!(!out.status.success(), "{args:?} succeeded");
    let msg = one_line(&out.stderr);
    assert!(msg.starts_with("rtmpfs: "), "{msg}");
    assert!(msg.contains(needle), "{args:?}: '{msg}' does not name '{needle}'");
    assert_eq!(mounted_at(mnt).map(|m| m.major_minor), before, "something got mounted");
}

#[test]
fn bad_input_is_one_line_and_mounts_nothing() {
    if !can_mount("bad_input_is_one_line_and_mounts_nothing") {
        return;
    }
    let dir = MountDir::new();
    let p = dir.path().to_str().unwrap().to_string();
    let missing = format!("{p}/missing");
    bad(&[&missing], Path::new(&missing), "does not exist");
    let file = format!("{p}/file");
    fs::write(&file, b"").unwrap();
    bad(&[&file], Path::new(&file), "not a directory");
    for (opt, needle) in [
        ("bogus", "bogus"),
        ("size=lots", "size"),
        ("size=1G,nr_inodes=x", "nr_inodes"),
        ("mode=999", "mode"),
        ("uid=alice", "uid"),
        ("threads=0", "threads"),
        ("ro=yes", "ro=yes"),
        ("mpol=interleave", "mpol"),
        ("remount", "remount"),
    ] {
        bad(&[&p, "-o", opt], dir.path(), needle);
    }
    bad(&[], dir.path(), "MOUNTPOINT");
    bad(&[&p, "--frobnicate"], dir.path(), "--frobnicate");
    // No permission: an unprivileged user may not mount.
    let out = run(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::rtmpfs_bin())
            .arg(dir.path()),
        T,
    );
    assert!(!out.status.success());
    let msg = one_line(&out.stderr);
    assert!(msg.contains("permission denied"), "{msg}");
    assert!(mounted_at(dir.path()).is_none());
}

#[test]
fn busy_mount_points_are_refused() {
    if !can_mount("busy_mount_points_are_refused") {
        return;
    }
    // Already a mount point (a kernel tmpfs).
    let t = Tmpfs::mount("size=1m");
    bad(&[t.path().to_str().unwrap()], t.path(), "busy");
    // Already an rtmpfs with the same source.
    let d = Daemon::start("fsname=dup");
    let p = d.path().to_str().unwrap().to_string();
    bad(&[&p, "-o", "fsname=dup"], d.path(), "already mounted");
    bad(&[&p], d.path(), "busy");
    use_mount(d.path());
}

#[test]
fn help_documents_every_option() {
    let out = run(Command::new(common::rtmpfs_bin()).arg("--help"), T);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "size=",
        "nr_blocks=",
        "nr_inodes=",
        "mode=",
        "uid=",
        "gid=",
        "ro,",
        "nosuid",
        "nodev",
        "noexec",
        "noatime",
        "relatime",
        "threads=",
        "direct_io",
        "writeback",
        "fsname=",
        "SIGINT",
        "fstab",
    ] {
        assert!(help.contains(opt), "--help does not mention {opt}");
    }
}

#[test]
fn stats_reach_the_daemon() {
    if !can_mount("stats_reach_the_daemon") {
        return;
    }
    let d = Daemon::start("");
    fs::write(d.path().join("f"), b"x").unwrap();
    let out = run(Command::new(common::rtmpfs_bin()).arg("--stats").arg(d.path()), T);
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("write 1") && s.contains("create 1"), "{s}");
    // Closing a file costs no FLUSH round trip (FOPEN_NOFLUSH).
    assert!(s.contains("flush 0"), "{s}");
}

// ---- the mount helper --------------------------------------------------------------------

/// Installs /sbin/mount.fuse.rtmpfs -> the binary under test for the duration of a test, and
/// puts back whatever was there.
struct HelperInstall {
    _guard: std::sync::MutexGuard<'static, ()>,
    saved: Option<PathBuf>,
}

const HELPER: &str = "/sbin/mount.fuse.rtmpfs";

impl HelperInstall {
    fn new() -> HelperInstall {
        let guard = HELPER_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let saved = fs::read_link(HELPER).ok();
        let _ = fs::remove_file(HELPER);
        std::os::unix::fs::symlink(common::rtmpfs_bin(), HELPER).unwrap();
        HelperInstall { _guard: guard, saved }
    }
}

impl Drop for HelperInstall {
    fn drop(&mut self) {
        let _ = fs::remove_file(HELPER);
        if let Some(p) = &self.saved {
            let _ = std::os::unix::fs::symlink(p, HELPER);
        }
    }
}

/// Daemons serving `path` (by command line), to check that remount starts none.
fn daemons_for(path: &Path) -> Vec<u32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_rtmpfs = args.first().is_some_and(|a| a.ends_with(b"rtmpfs"));
        if is_rtmpfs && args.contains(&path.as_os_str().as_encoded_bytes()) {
            // Zombies have an empty cmdline, so this is a live daemon.
            v.push(pid);
        }
    }
    v
}

fn wait_no_daemon(path: &Path) {
    assert!(
        common::wait_until(Duration::from_secs(10), || daemons_for(path).is_empty()),
        "daemon for {} still running",
        path.display()
    );
}

fn write_fails_erofs(p: &Path) {
    let e = fs::write(p.join("ro-test"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
}

#[test]
fn helper_mounts_remounts_and_unmounts() {
    if !can_mount("helper_mounts_remounts_and_unmounts") {
        return;
    }
    let _h = HelperInstall::new();
    let dir = MountDir::new();
    let p = dir.path();
    let out = run(
        Command::new("mount")
            .args(["-t", "fuse.rtmpfs", "TAG1"])
            .arg(p)
            .args(["-o", "size=64m"]),
        T,
    );
    assert!(out.status.success(), "{out:?}");
    // Live as soon as mount returns, the daemon in the background.
    let m = mounted_at(p).expect("mounted when mount(8) returns");
    assert_eq!(m.source, "TAG1");
    assert_eq!(m.fstype, "fuse.rtmpfs");
    let opts: Vec<&str> = m.options.split(',').collect();
    assert!(!opts.contains(&"nodev") && !opts.contains(&"nosuid"), "{m:?}");
    use_mount(p);
    let daemons = daemons_for(p);
    assert_eq!(daemons.len(), 1, "{daemons:?}");

    // remount ro and back, through the helper, without a second daemon.
    let out = run(Command::new("mount").args(["-o", "remount,ro"]).arg(p), T);
    assert!(out.status.success(), "{out:?}");
    assert!(mounted_at(p).unwrap().options.split(',').any(|o| o == "ro"));
    write_fails_erofs(p);
    assert_eq!(fs::read(p.join("hello")).unwrap(), b"hello, rtmpfs");
    let out = run(Command::new("mount").args(["-o", "remount,rw"]).arg(p), T);
    assert!(out.status.success(), "{out:?}");
    assert!(mounted_at(p).unwrap().options.split(',').any(|o| o == "rw"));
    fs::write(p.join("rw-again"), b"y").unwrap();
    assert_eq!(daemons_for(p), daemons);

    // The same TAG again on the same directory is refused with a clear error.
    let out = run(Command::new("mount").args(["-t", "fuse.rtmpfs", "TAG1"]).arg(p), T);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TAG1 is already mounted on"), "{err}");
    assert_eq!(daemons_for(p), daemons);

    let out = run(Command::new("umount").arg(p), T);
    assert!(out.status.success(), "{out:?}");
    assert_gone(p);
    wait_no_daemon(p);
}

#[test]
fn helper_honours_nodev_nosuid_and_reports_errors() {
    if !can_mount("helper_honours_nodev_nosuid_and_reports_errors") {
        return;
    }
    let _h = HelperInstall::new();
    let dir = MountDir::new();
    let p = dir.path();
    let out = run(
        Command::new("mount")
            .args(["-t", "fuse.rtmpfs", "TAG2"])
            .arg(p)
            .args(["-o", "nodev,nosuid,noexec,mode=700,_netdev,defaults"]),
        T,
    );
    assert!(out.status.success(), "{out:?}");
    let m = mounted_at(p).unwrap();
    for o in ["nodev", "nosuid", "noexec"] {
        assert!(m.options.split(',').any(|x| x == o), "{o} missing: {m:?}");
    }
    assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o7777, 0o700);
    let out = run(Command::new("umount").arg(p), T);
    assert!(out.status.success());
    assert_gone(p);
    wait_no_daemon(p);

    // A bad option: mount(8) fails, the helper's one-line message names it, nothing mounted.
    let out = run(
        Command::new("mount")
            .args(["-t", "fuse.rtmpfs", "TAG3"])
            .arg(p)
            .args(["-o", "size=huge"]),
        T,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("size"), "{err}");
    assert!(mounted_at(p).is_none());
    wait_no_daemon(p);
}

#[test]
fn fstab_line_mounts_and_remounts() {
    if !can_mount("fstab_line_mounts_and_remounts") {
        return;
    }
    let _h = HelperInstall::new();
    let dir = MountDir::new();
    let p = dir.path();
    // An alternative fstab (mount -T), so the system's /etc/fstab is left alone.
    let fstab = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        fstab.as_file(),
        "FSTAB_TAG {} fuse.rtmpfs size=32m,mode=1777,nofail,x-test.note=1 0 0",
        p.display()
    )
    .unwrap();
    let out = run(Command::new("mount").arg("-T").arg(fstab.path()).arg(p), T);
    assert!(out.status.success(), "{out:?}");
    let m = mounted_at(p).unwrap();
    assert_eq!(m.source, "FSTAB_TAG");
    use_mount(p);
    let daemons = daemons_for(p);
    let out = run(
        Command::new("mount")
            .arg("-T")
            .arg(fstab.path())
            .args(["-o", "remount,ro"])
            .arg(p),
        T,
    );
    assert!(out.status.success(), "{out:?}");
    write_fails_erofs(p);
    assert_eq!(daemons_for(p), daemons);
    let out = run(Command::new("umount").arg(p), T);
    assert!(out.status.success(), "{out:?}");
    assert_gone(p);
    wait_no_daemon(p);
}

#[test]
fn read_only_mount_refuses_writes() {
    if !can_mount("read_only_mount_refuses_writes") {
        return;
    }
    let d = Daemon::start("ro");
    write_fails_erofs(d.path());
    assert!(fs::read_dir(d.path()).unwrap().next().is_none());
}

#[test]
fn size_limit_gives_enospc_synchronously() {
    if !can_mount("size_limit_gives_enospc_synchronously") {
        return;
    }
    let d = Daemon::start("size=1m");
    let mut f = fs::File::create(d.path().join("big")).unwrap();
    let chunk = vec![7u8; 256 << 10];
    let mut written = 0;
    let err = loop {
        match f.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(written <= 1 << 20, "wrote past the limit");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(written, 1 << 20);
}

// ---- atime options on remount ------------------------------------------------------------

/// `utimensat` of `path` to (atime, mtime) in whole seconds.
fn set_times(path: &Path, atime: i64, mtime: i64) {
    let c = common::c_path(path);
    let ts = [
        libc::timespec {
            tv_sec: atime,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid path and two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) };
    assert_eq!(r, 0);
}

/// Read `path` so that the read reaches the filesystem (on FUSE the page cache is dropped
/// first; kernel tmpfs's cache is its store, so this is an ordinary read there).
fn read_through(path: &Path) {
    let f = fs::File::open(path).unwrap();
    // SAFETY: plain syscall on our fd.
    unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut buf).unwrap();
}

/// What a read does to atime under each atime option given to `mount -o remount,...`: for
/// each, whether a read of a file whose atime is older than its mtime (relatime updates), of
/// one whose atime is newer than its mtime and ctime and not a day old (only strictatime
/// updates), and a listing of a directory with an old atime changed the atime.
fn atime_under_remounts(p: &Path) -> Vec<String> {
    let (f, d) = (p.join("atime-file"), p.join("atime-dir"));
    fs::write(&f, b"data").unwrap();
    fs::create_dir(&d).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut out = Vec::new();
    for opt in ["relatime", "noatime", "strictatime", "relatime", "nodiratime"] {
        let r = run(Command::new("mount").args(["-o", &format!("remount,{opt}")]).arg(p), T);
        assert!(r.status.success(), "remount,{opt}: {r:?}");
        set_times(&f, 1000, 2000);
        read_through(&f);
        let older = fs::metadata(&f).unwrap().atime() != 1000;
        set_times(&f, now + 3600, now - 3600);
        read_through(&f);
        let recent = fs::metadata(&f).unwrap().atime() != now + 3600;
        set_times(&d, 1000, 2000);
        let _ = fs::read_dir(&d).unwrap().count();
        let dir = fs::metadata(&d).unwrap().atime() != 1000;
        out.push(format!(
            "{opt}: read older {older}, read recent {recent}, list dir {dir}"
        ));
    }
    out
}

#[test]
fn remount_applies_atime_options_as_kernel_tmpfs() {
    if !can_mount("remount_applies_atime_options_as_kernel_tmpfs") {
        return;
    }
    let oracle = Tmpfs::mount("size=16m");
    let want = atime_under_remounts(oracle.path());
    let _h = HelperInstall::new();
    let dir = MountDir::new();
    let out = run(
        Command::new("mount")
            .args(["-t", "fuse.rtmpfs", "ATIME"])
            .arg(dir.path())
            .args(["-o", "size=16m"]),
        T,
    );
    assert!(out.status.success(), "{out:?}");
    let got = atime_under_remounts(dir.path());
    let _ = run(Command::new("umount").arg(dir.path()), T);
    assert_gone(dir.path());
    for (w, g) in want.iter().zip(&got) {
        eprintln!("tmpfs : {w}\nrtmpfs: {g}");
    }
    assert_eq!(want, got);
    // Not vacuous: the options differ from one another on kernel tmpfs.
    assert_ne!(want[0], want[1]);
    assert_ne!(want[1], want[2]);
    assert_ne!(want[2], want[3]);
    assert_ne!(want[3], want[4]);
}
