//! Ordinary users mount through fusermount3 (issue 12 item 1, docs/fuse.md "Ordinary users").
//!
//! Each test creates ordinary users and runs rtmpfs, mount(8), umount(8) and fusermount3 as
//! them. What a test changes on the machine is put back by a guard's `Drop`, even when it
//! fails: the users, the mode of `/dev/fuse` (0600 root on the CI machine, so fusermount3
//! cannot open it for a user until the test opens it), `/etc/fuse.conf`, `/etc/fstab` and the
//! installed helper `/sbin/mount.fuse.rtmpfs`. The tests run one at a time (`SERIAL`), since
//! they share those files.

mod common;

use common::{can_mount, force_unmount, mounted_at, rtmpfs_bin, run, wait_child, wait_until};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());
const T: Duration = Duration::from_secs(20);
const FUSE_CONF: &str = "/etc/fuse.conf";
const FSTAB: &str = "/etc/fstab";
const HELPER: &str = "/sbin/mount.fuse.rtmpfs";
/// The fuse.conf every test starts from: no `user_allow_other`, no `mount_max`.
const PLAIN_CONF: &str = "# written by rtmpfs's tests/unprivileged.rs\n";

/// Whether these tests can run here (root, /dev/fuse, a setuid fusermount3, useradd);
/// prints why not.
fn can_run(test: &str) -> bool {
    if !can_mount(test) {
        return false;
    }
    let setuid = fs::metadata("/usr/bin/fusermount3")
        .or_else(|_| fs::metadata("/bin/fusermount3"))
        .is_ok_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0);
    if !setuid {
        eprintln!("SKIP {test}: no setuid-root fusermount3 in /usr/bin or /bin");
        return false;
    }
    if Command::new("useradd").arg("--help").output().is_err() {
        eprintln!("SKIP {test}: no useradd");
        return false;
    }
    true
}

// ---- guards --------------------------------------------------------------------------------

/// An ordinary user (with its own group), deleted on drop.
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

impl User {
    fn create(tag: &str) -> User {
        let name = format!("rtu{}{tag}", std::process::id() % 100_000);
        let out = run(
            Command::new("useradd")
                .args(["-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin"])
                .arg(&name),
            T,
        );
        assert!(out.status.success(), "useradd {name}: {out:?}");
        let id = |flag: &str| -> u32 {
            let out = run(Command::new("id").arg(flag).arg(&name), T);
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        User { name, uid, gid }
    }

    /// `prog` run as this user, with a small fixed environment (`PATH`, `HOME`, and the
    /// cache directory `cache`, which is where the swap file goes by default).
    fn cmd(&self, prog: impl AsRef<std::ffi::OsStr>, cache: &Path) -> Command {
        let mut c = Command::new(prog);
        // std drops root's supplementary groups (setgroups(0)) before setuid.
        c.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", "/nonexistent")
            .env("XDG_CACHE_HOME", cache)
            .current_dir("/");
        c
    }

    /// `sh -c script` as this user.
    fn sh(&self, script: &str, cache: &Path) -> Output {
        run(self.cmd("sh", cache).arg("-c").arg(script), T)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-U")
            .arg(self.uid.to_string())
            .status();
        let ok = Command::new("userdel")
            .arg(&self.name)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("userdel").arg("-f").arg(&self.name).status();
        }
    }
}

/// A file's contents (or its absence), put back on drop.
struct SavedFile {
    path: &'static str,
    saved: Option<Vec<u8>>,
}

impl SavedFile {
    fn new(path: &'static str) -> SavedFile {
        SavedFile {
            path,
            saved: fs::read(path).ok(),
        }
    }

    fn write(&self, contents: &str) {
        fs::write(self.path, contents).unwrap();
    }

    fn original(&self) -> String {
        String::from_utf8_lossy(self.saved.as_deref().unwrap_or_default()).into_owned()
    }
}

impl Drop for SavedFile {
    fn drop(&mut self) {
        match &self.saved {
            Some(b) => {
                let _ = fs::write(self.path, b);
            }
            None => {
                let _ = fs::remove_file(self.path);
            }
        }
    }
}

/// The mode of `/dev/fuse`, put back on drop.
struct DevFuseMode {
    saved: u32,
}

impl DevFuseMode {
    fn set(mode: u32) -> DevFuseMode {
        let saved = fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o7777;
        fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(mode)).unwrap();
        DevFuseMode { saved }
    }
}

impl Drop for DevFuseMode {
    fn drop(&mut self) {
        let _ = fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(self.saved));
    }
}

/// `/sbin/mount.fuse.rtmpfs` -> the binary under test; whatever was there is put back.
struct HelperInstall {
    saved: Option<PathBuf>,
}

impl HelperInstall {
    fn new() -> HelperInstall {
        let saved = fs::read_link(HELPER).ok();
        let _ = fs::remove_file(HELPER);
        std::os::unix::fs::symlink(rtmpfs_bin(), HELPER).unwrap();
        HelperInstall { saved }
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

/// Everything one test needs: the serial lock, /dev/fuse open to users, a plain fuse.conf, a
/// mounter `a` and another user `b`, and a scratch directory on disk (`/var/tmp`) with the
/// mount point `mnt` and the cache directory `cache`, both owned by `a`.
struct Setup {
    a: User,
    b: User,
    scratch: tempfile::TempDir,
    conf: SavedFile,
    dev_fuse: Option<DevFuseMode>,
    // Declared last: released after everything above is put back.
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Setup {
    fn new() -> Setup {
        let serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let conf = SavedFile::new(FUSE_CONF);
        conf.write(PLAIN_CONF);
        let dev_fuse = Some(DevFuseMode::set(0o666));
        let (a, b) = (User::create("a"), User::create("b"));
        let scratch = tempfile::Builder::new()
            .prefix("rtmpfs-unpriv.")
            .tempdir_in("/var/tmp")
            .unwrap();
        fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let s = Setup {
            a,
            b,
            scratch,
            conf,
            dev_fuse,
            _serial: serial,
        };
        for d in [s.mnt(), s.cache()] {
            fs::create_dir(&d).unwrap();
            std::os::unix::fs::chown(&d, Some(s.a.uid), Some(s.a.gid)).unwrap();
        }
        s
    }

    fn mnt(&self) -> PathBuf {
        self.scratch.path().join("mnt")
    }

    fn cache(&self) -> PathBuf {
        self.scratch.path().join("cache")
    }

    /// `rtmpfs MNT -o opts` as `a`, in the foreground; returns once it mounted or exited.
    fn start(&self, opts: &str) -> UserDaemon {
        let stderr = self.scratch.path().join("daemon.stderr");
        let child = self
            .a
            .cmd(rtmpfs_bin(), &self.cache())
            .arg(self.mnt())
            .arg("-o")
            .arg(opts)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut d = UserDaemon {
            child: Some(child),
            mnt: self.mnt(),
            stderr,
        };
        let mnt = self.mnt();
        let ok = wait_until(T, || {
            mounted_at(&mnt).is_some() || d.child.as_mut().unwrap().try_wait().unwrap().is_some()
        });
        assert!(ok, "rtmpfs did not mount within {T:?}: {}", d.stderr());
        d
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        force_unmount(&self.mnt());
    }
}

/// A daemon run as an ordinary user; killed and its mount taken away on drop.
struct UserDaemon {
    child: Option<Child>,
    mnt: PathBuf,
    stderr: PathBuf,
}

impl UserDaemon {
    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Wait for the daemon to exit; a hang fails.
    fn wait(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        wait_child(&mut c, T).unwrap_or_else(|| panic!("rtmpfs did not exit within {T:?}: {}", self.stderr()))
    }
}

impl Drop for UserDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            if wait_child(&mut c, Duration::from_secs(5)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        force_unmount(&self.mnt);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Live rtmpfs processes whose command line names `path`.
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
            v.push(pid);
        }
    }
    v
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn a_user_mounts_writes_reads_and_unmounts_with_fusermount3() {
    if !can_run("a_user_mounts_writes_reads_and_unmounts_with_fusermount3") {
        return;
    }
    let s = Setup::new();
    let mnt = s.mnt();
    let mut d = s.start("size=8M,io_uring=off");
    let m = mounted_at(&mnt).unwrap_or_else(|| panic!("not mounted: {}", d.stderr()));
    assert_eq!(m.fstype, "fuse.rtmpfs");
    assert_eq!(m.source, "rtmpfs");
    // fusermount3's rules: nosuid,nodev forced; the mount belongs to the user.
    assert!(m.options.contains("nosuid") && m.options.contains("nodev"), "{m:?}");
    assert!(m.super_options.contains(&format!("user_id={}", s.a.uid)), "{m:?}");
    assert!(!m.super_options.contains("allow_other"), "{m:?}");
    let warning = "only this user sees the files";
    assert_eq!(d.stderr().matches(warning).count(), 1, "{}", d.stderr());

    // Write, read, and the root directory: the user's, 0700.
    let m_s = mnt.display();
    let out = s.a.sh(
        &format!("echo hello > {m_s}/f && cat {m_s}/f && stat -c '%u:%g %a' {m_s}"),
        &s.cache(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), format!("hello\n{}:{} 700\n", s.a.uid, s.a.gid));
    // df shows the size.
    let out = s.a.sh(&format!("df -B1 --output=size {m_s} | tail -1"), &s.cache());
    assert_eq!(text(&out.stdout).trim(), "8388608", "{out:?}");
    // The control socket answers the mount's owner.
    let out = run(s.a.cmd(rtmpfs_bin(), &s.cache()).arg("--stats").arg(&mnt), T);
    assert!(out.status.success() && text(&out.stdout).contains("write "), "{out:?}");

    // Anyone else is refused by the kernel (no allow_other): another user, and root too.
    let out = s.b.sh(&format!("cat {m_s}/f"), &s.cache());
    assert!(
        !out.status.success() && text(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    let e = fs::metadata(mnt.join("f")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");

    // fusermount3 -u unmounts; the daemon exits 0.
    let out = run(s.a.cmd("fusermount3", &s.cache()).arg("-u").arg(&mnt), T);
    assert!(out.status.success(), "{out:?}");
    let st = d.wait();
    assert!(st.success(), "{st}: {}", d.stderr());
    assert!(mounted_at(&mnt).is_none());
    assert!(!d.stderr().contains("ERROR"), "{}", d.stderr());
}

#[test]
fn allow_other_is_used_where_fuse_conf_allows_it() {
    if !can_run("allow_other_is_used_where_fuse_conf_allows_it") {
        return;
    }
    let s = Setup::new();
    s.conf.write(&format!("{PLAIN_CONF}user_allow_other\n"));
    let mnt = s.mnt();
    let d = s.start("mode=755,io_uring=off,readahead=1M");
    let m = mounted_at(&mnt).unwrap_or_else(|| panic!("not mounted: {}", d.stderr()));
    assert!(m.super_options.contains("allow_other"), "{m:?}");
    assert!(!d.stderr().contains("only this user"), "{}", d.stderr());
    let m_s = mnt.display();
    let out = s.a.sh(&format!("umask 022; echo shared > {m_s}/f"), &s.cache());
    assert!(out.status.success(), "{out:?}");
    // Another user reads it, and is refused a write by the file's mode (EACCES from the
    // permission check, not from the mount).
    let out = s.b.sh(&format!("cat {m_s}/f"), &s.cache());
    assert_eq!(text(&out.stdout), "shared\n", "{out:?}");
    let out = s.b.sh(&format!("echo x > {m_s}/f"), &s.cache());
    assert!(
        !out.status.success() && text(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    // readahead= is root's (the bdi's sysfs file): one warning that says so; the mount works.
    assert!(
        wait_until(T, || d.stderr().contains("readahead= needs root")),
        "{}",
        d.stderr()
    );
    drop(d);
}

#[test]
fn sigterm_unmounts_and_memory_swaps_to_the_users_cache() {
    if !can_run("sigterm_unmounts_and_memory_swaps_to_the_users_cache") {
        return;
    }
    let s = Setup::new();
    let mnt = s.mnt();
    let mut d = s.start("size=32M,memory=1M,io_uring=off");
    assert!(mounted_at(&mnt).is_some(), "{}", d.stderr());
    let m_s = mnt.display();
    // 8 MiB against a 1 MiB budget: most of it must go to the swap file.
    let out = s.a.sh(
        &format!("head -c 8388608 /dev/urandom > {m_s}/big && cksum < {m_s}/big"),
        &s.cache(),
    );
    assert!(out.status.success(), "{out:?}");
    let sum = text(&out.stdout);
    let out = run(s.a.cmd(rtmpfs_bin(), &s.cache()).arg("--stats").arg(&mnt), T);
    let stats = text(&out.stdout);
    let swapped: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("swapped_pages "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no swapped_pages: {out:?}"));
    assert!(swapped >= 1024, "only {swapped} pages swapped out:\n{stats}");
    // The swap file is in the user's cache directory (the default for users): an anonymous
    // file the daemon holds open there.
    let in_cache = fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .any(|l| l.starts_with(s.cache()));
    assert!(in_cache, "no open file under {}", s.cache().display());
    // Read back through the swap file, uncached.
    let out = s.a.sh(&format!("cksum < {m_s}/big"), &s.cache());
    assert_eq!(text(&out.stdout), sum);

    // SIGTERM unmounts; the daemon exits 0 and leaves nothing in the cache directory.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.pid(), libc::SIGTERM) };
    let st = d.wait();
    assert!(st.success(), "{st}: {}", d.stderr());
    assert!(mounted_at(&mnt).is_none());
    assert_eq!(
        fs::read_dir(s.cache()).unwrap().count(),
        0,
        "something left in the cache dir"
    );
}

#[test]
fn an_fstab_user_line_mounts_with_mount_and_unmounts_with_umount() {
    if !can_run("an_fstab_user_line_mounts_with_mount_and_unmounts_with_umount") {
        return;
    }
    let mut s = Setup::new();
    let fstab = SavedFile::new(FSTAB);
    let _helper = HelperInstall::new();
    let mnt = s.mnt();
    let m_s = mnt.display();
    let mut table = fstab.original();
    if !table.is_empty() && !table.ends_with('\n') {
        table.push('\n');
    }
    writeln!(table, "rtu_tag {m_s} fuse.rtmpfs user,noauto,size=4M,io_uring=off 0 0").unwrap();
    fstab.write(&table);

    for unmount_with in ["umount", "fusermount3"] {
        let out = run(s.a.cmd("mount", &s.cache()).arg(&mnt), T);
        assert!(out.status.success(), "mount {m_s} as a user: {out:?}");
        let m = mounted_at(&mnt).expect("mounted");
        assert_eq!((m.fstype.as_str(), m.source.as_str()), ("fuse.rtmpfs", "rtu_tag"));
        assert!(m.super_options.contains(&format!("user_id={}", s.a.uid)), "{m:?}");
        let out = s.a.sh(&format!("echo via-fstab > {m_s}/f && cat {m_s}/f"), &s.cache());
        assert_eq!(text(&out.stdout), "via-fstab\n", "{out:?}");
        let out = match unmount_with {
            "umount" => run(s.a.cmd("umount", &s.cache()).arg(&mnt), T),
            _ => run(s.a.cmd("fusermount3", &s.cache()).arg("-u").arg(&mnt), T),
        };
        assert!(out.status.success(), "{unmount_with} {m_s} as the user: {out:?}");
        assert!(mounted_at(&mnt).is_none());
        assert!(
            wait_until(T, || daemons_for(&mnt).is_empty()),
            "the daemon did not exit after {unmount_with}"
        );
    }

    // A refusal through the helper is its one line (exit 32, mount(8)'s "mount failure").
    drop(s.dev_fuse.take());
    let _closed = DevFuseMode::set(0o600);
    let out = run(s.a.cmd("mount", &s.cache()).arg(&mnt), T);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(32), "{out:?}");
    assert!(
        err.lines().any(|l| l.starts_with("mount.fuse.rtmpfs: ")
            && l.contains("cannot mount as an ordinary user: /dev/fuse is not open to this user")),
        "{err}"
    );
    assert!(mounted_at(&mnt).is_none());
}

/// Run `rtmpfs MNT` as `a` and expect a refusal: exit 1, one line on stderr containing
/// `expect`, nothing mounted.
fn refused(s: &Setup, cmd: &mut Command, expect: &str) {
    let out = run(cmd.arg("-o").arg("io_uring=off"), T);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.contains(expect), "expected '{expect}' in: {err}");
    assert!(mounted_at(&s.mnt()).is_none());
}

#[test]
fn each_refusal_says_which_rule_in_one_line() {
    if !can_run("each_refusal_says_which_rule_in_one_line") {
        return;
    }
    let mut s = Setup::new();
    let mnt = s.mnt();

    // No fusermount3 on PATH.
    let empty = s.scratch.path().join("empty-bin");
    fs::create_dir(&empty).unwrap();
    let mut c = s.a.cmd(rtmpfs_bin(), &s.cache());
    c.env("PATH", &empty).arg(&mnt);
    refused(&s, &mut c, "fusermount3 is not on PATH");

    // A mount point the user may not write (root's, 0755).
    let roots = s.scratch.path().join("roots");
    fs::create_dir(&roots).unwrap();
    let mut c = s.a.cmd(rtmpfs_bin(), &s.cache());
    c.arg(&roots);
    refused(
        &s,
        &mut c,
        "the mount point must be a directory this user owns or may write",
    );

    // mount_max reached (0: no FUSE mount at all for users).
    s.conf.write(&format!("{PLAIN_CONF}mount_max = 0\n"));
    let mut c = s.a.cmd(rtmpfs_bin(), &s.cache());
    c.arg(&mnt);
    refused(&s, &mut c, "mount_max in /etc/fuse.conf");
    s.conf.write(PLAIN_CONF);

    // /dev/fuse closed to users (0600 root, as on this machine by default).
    drop(s.dev_fuse.take());
    let _closed = DevFuseMode::set(0o600);
    let mut c = s.a.cmd(rtmpfs_bin(), &s.cache());
    c.arg(&mnt);
    refused(&s, &mut c, "/dev/fuse is not open to this user");
}

#[test]
fn sigterm_detaches_a_busy_user_mount() {
    if !can_run("sigterm_detaches_a_busy_user_mount") {
        return;
    }
    let s = Setup::new();
    let mnt = s.mnt();
    let mut d = s.start("io_uring=off");
    assert!(mounted_at(&mnt).is_some(), "{}", d.stderr());
    // A process of the user with its cwd in the mount keeps it busy.
    let mut sleeper =
        s.a.cmd("sh", &s.cache())
            .arg("-c")
            .arg(format!("cd {} && exec sleep 60", mnt.display()))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
    let cwd = format!("/proc/{}/cwd", sleeper.id());
    let busy = wait_until(T, || fs::read_link(&cwd).is_ok_and(|p| p == mnt));
    assert!(busy, "the sleeper never entered {}", mnt.display());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.pid(), libc::SIGTERM) };
    let st = d.wait();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(st.success(), "{st}: {}", d.stderr());
    assert!(mounted_at(&mnt).is_none(), "still mounted after SIGTERM");
    assert!(d.stderr().contains("busy: detached lazily"), "{}", d.stderr());
}

#[test]
fn an_fstab_users_line_lets_another_user_unmount() {
    if !can_run("an_fstab_users_line_lets_another_user_unmount") {
        return;
    }
    let s = Setup::new();
    let fstab = SavedFile::new(FSTAB);
    let _helper = HelperInstall::new();
    let mnt = s.mnt();
    let mut table = fstab.original();
    if !table.is_empty() && !table.ends_with('\n') {
        table.push('\n');
    }
    writeln!(
        table,
        "rtu_tag {} fuse.rtmpfs users,noauto,io_uring=off 0 0",
        mnt.display()
    )
    .unwrap();
    fstab.write(&table);
    let out = run(s.a.cmd("mount", &s.cache()).arg(&mnt), T);
    assert!(out.status.success(), "mount as a: {out:?}");
    let m = mounted_at(&mnt).expect("mounted");
    assert!(m.super_options.contains(&format!("user_id={}", s.a.uid)), "{m:?}");
    // `users`: anyone may unmount it (mount(8)'s rule), the other user included.
    let out = run(s.b.cmd("umount", &s.cache()).arg(&mnt), T);
    assert!(out.status.success(), "umount as b: {out:?}");
    assert!(mounted_at(&mnt).is_none());
    assert!(
        wait_until(T, || daemons_for(&mnt).is_empty()),
        "the daemon did not exit after umount"
    );
}
