//! What our fuser fork adds, through a mount, against kernel tmpfs (the oracle) in the same run:
//! `O_TMPFILE` (`FUSE_TMPFILE`), the birth time of `statx` (`FUSE_STATX`), and the kernel's
//! `KILL_SUIDGID` flags on truncate and `O_TRUNC` (`FATTR_KILL_SUIDGID`,
//! `FUSE_OPEN_KILL_SUIDGID`), which fuser 0.18 dropped.

mod common;

use common::{c_path, can_mount, Daemon, Tmpfs};
use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Owner of the set-id files (not root, so that root's privilege is what decides).
const USER: u32 = 65534;
/// `CAP_FSETID`, the capability to keep set-id bits on a change.
const CAP_FSETID: u32 = 4;

fn errno_of(r: i64) -> i32 {
    if r < 0 {
        common::errno()
    } else {
        0
    }
}

/// What an `O_TMPFILE` file looks like, step by step (everything that must match tmpfs).
#[derive(Debug, PartialEq, Eq)]
struct TmpfileOutcome {
    /// errno of the open, 0 on success.
    open: i32,
    written: isize,
    read_back: Vec<u8>,
    /// nlink, mode, size of the open anonymous file.
    fstat_before: (u64, u32, i64),
    /// errno of `linkat(fd, "", dir, name, AT_EMPTY_PATH)`.
    linkat_empty_path: i32,
    /// errno of `linkat(AT_FDCWD, "/proc/self/fd/N", dir, name2, AT_SYMLINK_FOLLOW)`.
    linkat_proc_fd: i32,
    /// nlink after the links, through the fd.
    nlink_after: u64,
    /// Contents and mode of the linked names, when they exist.
    linked: Vec<Option<(Vec<u8>, u32)>>,
    /// Whether the directory lists the linked names (and nothing else).
    listing: Vec<String>,
}

const TMP_DATA: &[u8] = b"anonymous contents, then a name";

/// Create an anonymous file in `dir` with `extra` open flags, write, read, fstat, link it
/// under two names, and look at the result.
fn tmpfile_scenario(dir: &Path, extra: i32) -> TmpfileOutcome {
    let d = c_path(dir);
    let names = ["linked", "linked2"];
    // SAFETY: plain syscalls on valid paths, fds and buffers of the stated lengths; the fd is
    // closed before return.
    let mut out = unsafe {
        let fd = libc::open(d.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | extra, 0o640);
        let mut out = TmpfileOutcome {
            open: if fd < 0 { common::errno() } else { 0 },
            written: 0,
            read_back: Vec::new(),
            fstat_before: (0, 0, 0),
            linkat_empty_path: -1,
            linkat_proc_fd: -1,
            nlink_after: 0,
            linked: Vec::new(),
            listing: Vec::new(),
        };
        if fd < 0 {
            return out;
        }
        out.written = libc::pwrite(fd, TMP_DATA.as_ptr().cast(), TMP_DATA.len(), 0);
        let mut buf = vec![0u8; 64];
        let n = libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
        buf.truncate(n.max(0) as usize);
        out.read_back = buf;
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fd, &raw mut st), 0);
        out.fstat_before = (st.st_nlink, st.st_mode, st.st_size);
        let dfd = libc::open(d.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
        assert!(dfd >= 0);
        let n0 = CString::new(names[0]).unwrap();
        let empty = CString::new("").unwrap();
        out.linkat_empty_path = errno_of(i64::from(libc::linkat(
            fd,
            empty.as_ptr(),
            dfd,
            n0.as_ptr(),
            libc::AT_EMPTY_PATH,
        )));
        let proc_path = CString::new(format!("/proc/self/fd/{fd}")).unwrap();
        let n1 = CString::new(names[1]).unwrap();
        out.linkat_proc_fd = errno_of(i64::from(libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            dfd,
            n1.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )));
        assert_eq!(libc::fstat(fd, &raw mut st), 0);
        out.nlink_after = st.st_nlink;
        libc::close(dfd);
        libc::close(fd);
        out
    };
    for name in names {
        let p = dir.join(name);
        out_push(&mut out.linked, &p);
    }
    let mut listing: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listing.sort();
    out.listing = listing;
    out
}

fn out_push(linked: &mut Vec<Option<(Vec<u8>, u32)>>, p: &Path) {
    use std::os::unix::fs::MetadataExt;
    linked.push(
        std::fs::read(p)
            .ok()
            .map(|data| (data, std::fs::metadata(p).unwrap().mode())),
    );
}

#[test]
fn o_tmpfile_then_linkat_matches_kernel_tmpfs() {
    if !can_mount("o_tmpfile_then_linkat_matches_kernel_tmpfs") {
        return;
    }
    let tmpfs = Tmpfs::mount("size=16m");
    let d = Daemon::start("size=16m");
    for (case, extra) in [("plain", 0), ("O_EXCL", libc::O_EXCL)] {
        let (t, r) = (tmpfs.path().join(case), d.path().join(case));
        std::fs::create_dir(&t).unwrap();
        std::fs::create_dir(&r).unwrap();
        let want = tmpfile_scenario(&t, extra);
        let got = tmpfile_scenario(&r, extra);
        assert_eq!(got, want, "O_TMPFILE {case}: rtmpfs vs tmpfs");
        // The oracle says what a case means: plain is linked twice, O_EXCL never.
        if extra == 0 {
            assert_eq!((want.open, want.fstat_before.0, want.nlink_after), (0, 0, 2));
            assert_eq!(want.linked[0].as_ref().unwrap().0, TMP_DATA);
        } else {
            assert_eq!(
                (want.linkat_empty_path, want.linkat_proc_fd),
                (libc::ENOENT, libc::ENOENT)
            );
            assert!(want.listing.is_empty());
        }
    }
}

/// `statx` with `STATX_BTIME` of `path`: (whether btime is in the result mask, btime in ns).
fn statx_btime(path: &Path) -> (bool, i128) {
    let p = c_path(path);
    // SAFETY: a valid path and a zeroed statx buffer.
    unsafe {
        let mut sx: libc::statx = std::mem::zeroed();
        let r = libc::statx(
            libc::AT_FDCWD,
            p.as_ptr(),
            0,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            &raw mut sx,
        );
        assert_eq!(r, 0, "statx {}: errno {}", path.display(), common::errno());
        (
            sx.stx_mask & libc::STATX_BTIME != 0,
            i128::from(sx.stx_btime.tv_sec) * 1_000_000_000 + i128::from(sx.stx_btime.tv_nsec),
        )
    }
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// The birth time `statx` reports must be the one the engine recorded at creation: inside the
/// creating call's time window, unchanged by writes, chmod, rename and a dropped attribute
/// cache, and distinct for a file created later. Kernel tmpfs reports one too (the oracle).
#[test]
fn statx_reports_the_engines_birth_time() {
    if !can_mount("statx_reports_the_engines_birth_time") {
        return;
    }
    let tmpfs = Tmpfs::mount("size=16m");
    let d = Daemon::start("size=16m");
    let (has_btime, _) = statx_btime(&tmpfs.path().join("."));
    assert!(has_btime, "kernel tmpfs reports STATX_BTIME");
    for dir in [tmpfs.path(), d.path()] {
        let before = now_ns();
        std::fs::write(dir.join("f"), b"x").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        let after = now_ns();
        let (has, born) = statx_btime(&dir.join("f"));
        assert!(has, "{}: no STATX_BTIME", dir.display());
        // Coarse clocks: allow the kernel's 10 ms tick below the window.
        assert!(
            born >= before - 10_000_000 && born <= after,
            "{}: btime {born} outside [{before}, {after}]",
            dir.display()
        );
        let (has_dir, dir_born) = statx_btime(&dir.join("sub"));
        assert!(has_dir && dir_born >= before - 10_000_000 && dir_born <= after);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.join("f"), b"changed contents").unwrap();
        let p = c_path(&dir.join("f"));
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::chmod(p.as_ptr(), 0o600) }, 0);
        std::fs::rename(dir.join("f"), dir.join("g")).unwrap();
        // Drop the kernel's cached attributes so that rtmpfs is asked again.
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        assert_eq!(
            statx_btime(&dir.join("g")),
            (true, born),
            "{}: btime moved",
            dir.display()
        );
        std::fs::write(dir.join("h"), b"later").unwrap();
        let (_, later) = statx_btime(&dir.join("h"));
        assert!(later > born, "{}: a later file is born later", dir.display());
    }
}

/// Set this thread's effective capabilities: `keep_fsetid` decides `CAP_FSETID`, everything
/// else permitted stays. Raw capget/capset on the calling thread only (pid 0).
fn set_cap_fsetid(keep_fsetid: bool) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a version-3 header and two data words, as the ABI says.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut h, data.as_mut_ptr()), 0);
        if keep_fsetid {
            data[0].permitted |= 1 << CAP_FSETID;
            data[0].effective |= 1 << CAP_FSETID;
        } else {
            data[0].effective &= !(1 << CAP_FSETID);
        }
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut h, data.as_ptr()),
            0,
            "capset: errno {}",
            common::errno()
        );
    }
}

/// Who truncates: root without `CAP_FSETID` (a capability-dropped container), or an
/// unprivileged user that holds `CAP_FSETID`. These are the two cases where the engine's own
/// guess (`CAP_FSETID` exactly when root) is wrong and only the kernel's flag tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    RootWithoutFsetid,
    UserWithFsetid,
}

/// Run `f` on a new thread with `actor`'s credentials (that thread only: raw syscalls).
fn as_actor<T: Send>(actor: Actor, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            match actor {
                Actor::RootWithoutFsetid => set_cap_fsetid(false),
                Actor::UserWithFsetid => {
                    // SAFETY: raw credential syscalls on the calling thread only; KEEPCAPS
                    // keeps the permitted set across the uid change.
                    unsafe {
                        assert_eq!(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0), 0);
                        assert_eq!(libc::syscall(libc::SYS_setresgid, USER, USER, USER), 0);
                        assert_eq!(libc::syscall(libc::SYS_setresuid, USER, USER, USER), 0);
                    }
                    set_cap_fsetid(true);
                }
            }
            f()
        })
        .join()
        .unwrap()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truncation {
    Ftruncate,
    TruncatePath,
    OpenTrunc,
}

/// Truncate `path` the given way; errno, 0 on success.
fn truncate(how: Truncation, path: &Path) -> i32 {
    let p = c_path(path);
    // SAFETY: plain syscalls on a valid path; the fd is closed before return.
    unsafe {
        match how {
            Truncation::TruncatePath => errno_of(i64::from(libc::truncate(p.as_ptr(), 100))),
            Truncation::Ftruncate | Truncation::OpenTrunc => {
                let extra = if how == Truncation::OpenTrunc { libc::O_TRUNC } else { 0 };
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | extra);
                if fd < 0 {
                    return common::errno();
                }
                let r = if how == Truncation::Ftruncate {
                    errno_of(i64::from(libc::ftruncate(fd, 100)))
                } else {
                    0
                };
                libc::close(fd);
                r
            }
        }
    }
}

/// (errno, mode after) for each actor and truncation of a 06755 file owned by USER.
fn truncations(dir: &Path) -> Vec<(Actor, Truncation, i32, u32)> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut out = Vec::new();
    for actor in [Actor::RootWithoutFsetid, Actor::UserWithFsetid] {
        for how in [Truncation::Ftruncate, Truncation::TruncatePath, Truncation::OpenTrunc] {
            let path = dir.join(format!("{actor:?}-{how:?}"));
            std::fs::write(&path, vec![1u8; 8192]).unwrap();
            let p = c_path(&path);
            // SAFETY: a valid path.
            assert_eq!(unsafe { libc::chown(p.as_ptr(), USER, USER) }, 0);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o6755)).unwrap();
            let e = as_actor(actor, || truncate(how, &path));
            out.push((actor, how, e, std::fs::metadata(&path).unwrap().mode() & 0o7777));
        }
    }
    out
}

#[test]
fn truncate_clears_setid_bits_by_the_kernels_word() {
    if !can_mount("truncate_clears_setid_bits_by_the_kernels_word") {
        return;
    }
    let tmpfs = Tmpfs::mount("size=16m");
    let want = truncations(tmpfs.path());
    // The oracle: without CAP_FSETID root loses the bits, with it a user keeps them.
    for (actor, how, e, mode) in &want {
        let expect = match actor {
            Actor::RootWithoutFsetid => 0o755,
            Actor::UserWithFsetid => 0o6755,
        };
        assert_eq!((*e, *mode), (0, expect), "tmpfs {actor:?} {how:?}");
    }
    for opts in ["size=16m", "size=16m,direct_io"] {
        let d = Daemon::start(opts);
        assert_eq!(truncations(d.path()), want, "rtmpfs -o {opts} vs tmpfs");
    }
}

/// The birth time costs one request per inode: the kernel caches the STATX reply like a
/// GETATTR's (both count as `getattr` in `rtmpfs --stats`), and `stat` without
/// `STATX_BTIME` never sends STATX.
#[test]
fn statx_birth_time_is_asked_once_per_inode() {
    if !can_mount("statx_birth_time_is_asked_once_per_inode") {
        return;
    }
    let d = Daemon::start("size=16m");
    let f = d.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    // Plain stat(2) (`std::fs::metadata` would ask statx for the birth time too).
    let plain_stat = || {
        let p = c_path(&f);
        // SAFETY: a valid path and a zeroed stat buffer.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            assert_eq!(libc::stat(p.as_ptr(), &raw mut st), 0);
        }
    };
    plain_stat();
    let getattrs = || common::stat_of(d.path(), "getattr");
    let before = getattrs();
    for _ in 0..10 {
        plain_stat();
    }
    assert_eq!(getattrs(), before, "plain stat is served from the kernel's cache");
    let first = statx_btime(&f);
    assert!(first.0);
    assert_eq!(getattrs(), before + 1, "one STATX for the birth time");
    for _ in 0..10 {
        assert_eq!(statx_btime(&f), first);
    }
    assert_eq!(getattrs(), before + 1, "the birth time is cached");
}
