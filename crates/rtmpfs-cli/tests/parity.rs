//! Behaviours where rtmpfs once differed from kernel tmpfs (issue 10), each run over the mount
//! and on a kernel tmpfs (the oracle) in the same run; the two transcripts must be identical.
//!
//! Every scenario returns lines of text describing what it saw (return values, errnos, bytes,
//! modes, times); a scenario knows nothing of which filesystem it runs on.

mod common;

use common::{c_path, can_mount, Daemon, Tmpfs};
use std::path::Path;

/// Open `path` with `flags` (mode 0644 when created); panics on failure.
fn open(path: &Path, flags: i32) -> i32 {
    let p = c_path(path);
    // SAFETY: valid NUL-terminated path; flags and mode are plain integers.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    assert!(fd >= 0, "open {}: errno {}", path.display(), common::errno());
    fd
}

fn close(fd: i32) {
    // SAFETY: closing our own fd once.
    unsafe { libc::close(fd) };
}

/// `pwrite` as text: the count, or the errno.
fn pwrite(fd: i32, data: &[u8], off: i64) -> String {
    // SAFETY: `data` is a valid buffer of its length.
    let r = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), off) };
    ret(r as i64)
}

/// A return value as text: the value, or `-1 errno N`.
fn ret(r: i64) -> String {
    if r < 0 {
        format!("-1 errno {}", common::errno())
    } else {
        r.to_string()
    }
}

/// The whole file as text (read through a fresh descriptor).
fn content(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
}

/// Run `scenario` on a kernel tmpfs and on rtmpfs (mounted with `opts`); the transcripts must
/// be the same.
fn same_as_tmpfs(test: &str, opts: &str, scenario: impl Fn(&Path) -> Vec<String>) {
    same_as_tmpfs_but(test, opts, scenario, std::string::ToString::to_string);
}

/// As `same_as_tmpfs`, with each tmpfs line passed through `over_fuse` first: what the kernel's
/// FUSE client makes of it (a documented difference that no server can avoid).
fn same_as_tmpfs_but(
    test: &str,
    opts: &str,
    scenario: impl Fn(&Path) -> Vec<String>,
    over_fuse: impl Fn(&str) -> String,
) {
    if !can_mount(test) {
        return;
    }
    let tmpfs = Tmpfs::mount("size=64m");
    let want: Vec<String> = scenario(tmpfs.path()).iter().map(|l| over_fuse(l)).collect();
    let daemon = Daemon::start(opts);
    let got = scenario(daemon.path());
    for (w, g) in want.iter().zip(&got) {
        eprintln!("tmpfs : {w}\nrtmpfs: {g}");
    }
    assert_eq!(want, got, "rtmpfs ({opts}) differs from kernel tmpfs");
}

/// Item 1: after `fcntl(F_SETFL)` clears O_APPEND, a pwrite lands at its offset.
fn append_cleared_by_setfl(dir: &Path) -> Vec<String> {
    let path = dir.join("setfl");
    std::fs::write(&path, "abcdef").unwrap();
    let fd = open(&path, libc::O_RDWR | libc::O_APPEND);
    let mut out = vec![format!("append: {}", pwrite(fd, b"12", 0))];
    // SAFETY: plain fcntl on our fd.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
    out.push(format!("setfl: {}", ret(r.into())));
    out.push(format!("at 0: {}", pwrite(fd, b"XY", 0)));
    // SAFETY: plain fcntl on our fd.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_APPEND) };
    out.push(format!("setfl append: {}", ret(r.into())));
    out.push(format!("append again: {}", pwrite(fd, b"34", 0)));
    close(fd);
    out.push(format!("content: {}", content(&path)));
    out
}

/// Item 1: `pwritev2(RWF_NOAPPEND)` on an O_APPEND descriptor writes at the offset.
fn rwf_noappend(dir: &Path) -> Vec<String> {
    let path = dir.join("noappend");
    std::fs::write(&path, "abcdef").unwrap();
    let fd = open(&path, libc::O_WRONLY | libc::O_APPEND);
    let data = b"XY";
    let iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: one valid iovec over `data`.
    let r = unsafe { libc::pwritev2(fd, &raw const iov, 1, 1, libc::RWF_NOAPPEND) };
    let mut out = vec![format!("pwritev2 noappend at 1: {}", ret(r as i64))];
    // SAFETY: as above.
    let r = unsafe { libc::pwritev2(fd, &raw const iov, 1, 1, 0) };
    out.push(format!("pwritev2 at 1: {}", ret(r as i64)));
    close(fd);
    out.push(format!("content: {}", content(&path)));
    out
}

/// Item 1: copy_file_range into a descriptor whose O_APPEND was cleared by F_SETFL works (with
/// O_APPEND set it is EBADF).
fn copy_into_cleared_append(dir: &Path) -> Vec<String> {
    let (src, dst) = (dir.join("cfr_src"), dir.join("cfr_dst"));
    std::fs::write(&src, "0123456789").unwrap();
    std::fs::write(&dst, "abcdefghij").unwrap();
    let fin = open(&src, libc::O_RDONLY);
    let fout = open(&dst, libc::O_WRONLY | libc::O_APPEND);
    let copy = || {
        let (mut oi, mut oo) = (0i64, 2i64);
        // SAFETY: valid fds and offsets.
        ret(unsafe { libc::copy_file_range(fin, &raw mut oi, fout, &raw mut oo, 3, 0) } as i64)
    };
    let mut out = vec![format!("with O_APPEND: {}", copy())];
    // SAFETY: plain fcntl on our fd.
    unsafe { libc::fcntl(fout, libc::F_SETFL, 0) };
    out.push(format!("after F_SETFL: {}", copy()));
    close(fin);
    close(fout);
    out.push(format!("content: {}", content(&dst)));
    out
}

#[test]
fn o_append_cleared_by_setfl_matches_tmpfs() {
    same_as_tmpfs("o_append_cleared_by_setfl_matches_tmpfs", "", append_cleared_by_setfl);
}

#[test]
fn rwf_noappend_matches_tmpfs() {
    same_as_tmpfs("rwf_noappend_matches_tmpfs", "", rwf_noappend);
}

#[test]
fn rwf_noappend_direct_io_matches_tmpfs() {
    same_as_tmpfs("rwf_noappend_direct_io_matches_tmpfs", "direct_io", rwf_noappend);
}

#[test]
fn copy_file_range_into_cleared_append_matches_tmpfs() {
    same_as_tmpfs(
        "copy_file_range_into_cleared_append_matches_tmpfs",
        "",
        copy_into_cleared_append,
    );
}

/// Item 3: list a directory of 5,000 files, renaming every returned entry to a new name and
/// back as it comes; the listing ends (at the directory's end as it began), each file once.
fn list_while_renaming(dir: &Path) -> Vec<String> {
    const FILES: usize = 5000;
    const CAP: usize = 3 * FILES;
    let d = dir.join("big");
    std::fs::create_dir(&d).unwrap();
    for i in 0..FILES {
        std::fs::File::create(d.join(format!("f{i}"))).unwrap();
    }
    let mut seen = Vec::new();
    for e in std::fs::read_dir(&d).unwrap() {
        let name = e.unwrap().file_name();
        let (p, tmp) = (d.join(&name), d.join("renamed-away"));
        std::fs::rename(&p, &tmp).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        seen.push(name);
        if seen.len() > CAP {
            break;
        }
    }
    let listed = seen.len();
    seen.sort();
    seen.dedup();
    vec![format!("listed {listed}, distinct {}", seen.len())]
}

#[test]
fn listing_while_renaming_ends_as_on_tmpfs() {
    same_as_tmpfs("listing_while_renaming_ends_as_on_tmpfs", "", list_while_renaming);
}

/// Item 5: `ls` in a current directory that was removed (by the same process here; the kernel
/// keeps its reference as the process's cwd).
fn list_removed_cwd(dir: &Path) -> Vec<String> {
    let d = dir.join("gone");
    std::fs::create_dir(&d).unwrap();
    let script = "cd \"$1\" && rmdir \"$1\" && ls -a; echo \"ls: $?\"; touch x 2>/dev/null; echo \"touch: $?\"";
    let out = common::run(
        std::process::Command::new("sh").args(["-c", script, "sh"]).arg(&d),
        std::time::Duration::from_secs(10),
    );
    vec![String::from_utf8_lossy(&out.stdout).replace('\n', " | ")]
}

/// Item 5: reopen an unlinked file through `/proc/self/fd/N` of an `O_PATH` descriptor (the
/// only reference left: the kernel's lookup), read it, write it, set an xattr on it.
fn reopen_unlinked_through_o_path(dir: &Path) -> Vec<String> {
    let free = || {
        // SAFETY: a zeroed statvfs filled by the call on a valid path.
        let mut sv: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::statvfs(c_path(dir).as_ptr(), &raw mut sv) }, 0);
        (sv.f_ffree, sv.f_bfree)
    };
    let before = free();
    let path = dir.join("unlinked");
    std::fs::write(&path, "hello").unwrap();
    let opath = open(&path, libc::O_PATH);
    std::fs::remove_file(&path).unwrap();
    let proc_path = std::path::PathBuf::from(format!("/proc/self/fd/{opath}"));
    let p = c_path(&proc_path);
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    let mut out = vec![format!("reopen: {}", ret(fd.min(0).into()))];
    if fd >= 0 {
        let mut buf = [0u8; 16];
        // SAFETY: `buf` is a valid buffer of its length.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        out.push(format!("read: {}", String::from_utf8_lossy(&buf[..n.max(0) as usize])));
        out.push(format!("write: {}", pwrite(fd, b"XY", 0)));
        // SAFETY: as above.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        out.push(format!("read: {}", String::from_utf8_lossy(&buf[..n.max(0) as usize])));
        close(fd);
    }
    let name = std::ffi::CString::new("user.k").unwrap();
    // SAFETY: valid path and name; a 1-byte value.
    let r = unsafe { libc::setxattr(p.as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    out.push(format!("setxattr: {}", ret(r.into())));
    // SAFETY: a zeroed stat buffer filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: our O_PATH fd and a writable stat.
    let r = unsafe { libc::fstat(opath, &raw mut st) };
    out.push(format!(
        "fstat: {} nlink {} size {}",
        ret(r.into()),
        st.st_nlink,
        st.st_size
    ));
    let held = free() != before;
    close(opath);
    // The kernel's FORGET (sent when it drops the inode) gives the inode and its data back.
    let back = common::wait_until(std::time::Duration::from_secs(5), || free() == before);
    out.push(format!("space held while referenced {held}, back after close {back}"));
    out
}

/// The lifetime of an unlinked file's data (what a no-open mount would rely on, docs/fuse.md
/// "Tried and withdrawn: `FUSE_NO_OPEN_SUPPORT`"): while two descriptors are open it keeps its data and
/// space through `unlink` and the first `close`; after the last `close` (RELEASE and FORGET
/// over FUSE, both asynchronous) the space comes back, and so does that of a file removed
/// while closed (FORGET alone). Space waits are bounded.
fn unlinked_data_lives_until_last_close(dir: &Path) -> Vec<String> {
    let free = || {
        // SAFETY: a zeroed statvfs filled by the call on a valid path.
        let mut sv: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::statvfs(c_path(dir).as_ptr(), &raw mut sv) }, 0);
        (sv.f_ffree, sv.f_bfree)
    };
    let before = free();
    let back = || common::wait_until(std::time::Duration::from_secs(5), || free() == before);
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let path = dir.join("big");
    std::fs::write(&path, &data).unwrap();
    let (rw, ro) = (open(&path, libc::O_RDWR), open(&path, libc::O_RDONLY));
    std::fs::remove_file(&path).unwrap();
    let mut out = vec![format!("held after unlink: {}", free() != before)];
    out.push(format!("write after unlink: {}", pwrite(rw, b"XY", 0)));
    close(rw);
    let mut buf = vec![0u8; data.len()];
    // SAFETY: `buf` is a valid buffer of its length; `ro` is our open descriptor.
    let n = unsafe { libc::pread(ro, buf.as_mut_ptr().cast(), buf.len(), 0) };
    out.push(format!(
        "read after first close: {} intact {}",
        ret(n as i64),
        buf[..2] == *b"XY" && buf[2..] == data[2..]
    ));
    out.push(format!("held after first close: {}", free() != before));
    close(ro);
    out.push(format!("back after last close: {}", back()));
    std::fs::write(dir.join("closed"), &data).unwrap();
    out.push(format!("closed file charged: {}", free() != before));
    std::fs::remove_file(dir.join("closed")).unwrap();
    out.push(format!("back after rm of a closed file: {}", back()));
    out
}

#[test]
fn unlinked_data_lives_until_last_close_as_on_tmpfs() {
    same_as_tmpfs(
        "unlinked_data_lives_until_last_close_as_on_tmpfs",
        "",
        unlinked_data_lives_until_last_close,
    );
}

#[test]
fn removed_cwd_lists_as_on_tmpfs() {
    same_as_tmpfs("removed_cwd_lists_as_on_tmpfs", "", list_removed_cwd);
}

#[test]
fn unlinked_file_reopens_through_o_path_as_on_tmpfs() {
    same_as_tmpfs(
        "unlinked_file_reopens_through_o_path_as_on_tmpfs",
        "",
        reopen_unlinked_through_o_path,
    );
}

/// Item 6: times before 1970 with a fraction of a second are stored as given.
fn times_before_1970(dir: &Path) -> Vec<String> {
    let path = dir.join("old");
    std::fs::write(&path, "x").unwrap();
    let p = c_path(&path);
    let mut out = Vec::new();
    // -1 ns, -1.5 s, -0.5 s, -3 s, and one just after 1970.
    for (sec, nsec) in [(-1, 999_999_999), (-2, 500_000_000), (-1, 500_000_000), (-3, 0), (0, 1)] {
        let ts = [
            libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            },
            libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            },
        ];
        // SAFETY: valid path and two timespecs.
        let r = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) };
        // SAFETY: a zeroed stat buffer filled by stat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid path and writable stat.
        assert_eq!(unsafe { libc::stat(p.as_ptr(), &raw mut st) }, 0);
        out.push(format!(
            "set ({sec} s, {nsec} ns): {} -> atime ({} s, {} ns) mtime ({} s, {} ns)",
            ret(r.into()),
            st.st_atime,
            st.st_atime_nsec,
            st.st_mtime,
            st.st_mtime_nsec
        ));
    }
    out
}

#[test]
fn times_before_1970_match_tmpfs() {
    same_as_tmpfs("times_before_1970_match_tmpfs", "", times_before_1970);
}

/// (mtime, ctime) of `path` as (sec, nsec) pairs.
fn mctime(path: &Path) -> ((i64, i64), (i64, i64)) {
    // SAFETY: a zeroed stat buffer filled by stat on a valid path.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::stat(c_path(path).as_ptr(), &raw mut st) }, 0);
    ((st.st_mtime, st.st_mtime_nsec), (st.st_ctime, st.st_ctime_nsec))
}

/// Item 7: which truncations stamp mtime and ctime: `ftruncate` always (to the same size too),
/// `O_TRUNC` always, `truncate(path)` when the size changes or the file has pages (tmpfs's
/// `shmem_truncate_range` stamps them), so not for a same-size truncate of a sparse file.
fn truncate_stamps(dir: &Path) -> Vec<String> {
    let path = dir.join("stamps");
    let mut out = Vec::new();
    let cases: [(&str, i64); 9] = [
        ("ftruncate same size", 5),
        ("ftruncate shorter", 2),
        ("ftruncate same size of a sparse file", 4096),
        ("truncate(path) same size", 5),
        ("truncate(path) same size of a sparse file", 4096),
        ("truncate(path) longer", 9),
        ("truncate(path) to 0 of an empty file", 0),
        ("O_TRUNC of an empty file", 0),
        ("O_TRUNC", 5),
    ];
    for (what, to) in cases {
        let initial = if what.ends_with("of an empty file") {
            ""
        } else {
            "hello"
        };
        std::fs::write(&path, initial).unwrap();
        if what.ends_with("sparse file") {
            std::fs::File::create(&path).unwrap().set_len(4096).unwrap();
        }
        let ts = [libc::timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        }; 2];
        // SAFETY: valid path and two timespecs.
        unsafe { libc::utimensat(libc::AT_FDCWD, c_path(&path).as_ptr(), ts.as_ptr(), 0) };
        let before = mctime(&path);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let r = if what.starts_with("ftruncate") {
            let fd = open(&path, libc::O_WRONLY);
            // SAFETY: plain syscall on our fd.
            let r = unsafe { libc::ftruncate(fd, to) };
            close(fd);
            r
        } else if what.starts_with("truncate") {
            // SAFETY: valid path.
            unsafe { libc::truncate(c_path(&path).as_ptr(), to) }
        } else {
            close(open(&path, libc::O_WRONLY | libc::O_TRUNC));
            0
        };
        let after = mctime(&path);
        out.push(format!(
            "{what}: {} mtime changed {} ctime changed {}",
            ret(r.into()),
            after.0 != before.0,
            after.1 != before.1
        ));
    }
    out
}

#[test]
fn truncate_stamps_times_as_tmpfs() {
    // One documented difference (docs/semantics.md): over FUSE, without ATOMIC_O_TRUNC, the
    // kernel's SETATTR for `open(O_TRUNC)` is the same as for `truncate(path, 0)`, and the
    // server gives both O_TRUNC's stamp; it shows only on a file that is already empty.
    same_as_tmpfs_but("truncate_stamps_times_as_tmpfs", "", truncate_stamps, |line| {
        if line.starts_with("truncate(path) to 0 of an empty file") {
            line.replace("changed false", "changed true")
        } else {
            line.to_string()
        }
    });
}

/// Item 8: `setxattr` with XATTR_CREATE|XATTR_REPLACE together, and `listxattr` of a list
/// over 64 KiB: the size query, a 64 KiB buffer, a small buffer.
fn xattr_errnos(dir: &Path) -> Vec<String> {
    let path = dir.join("xattrs");
    std::fs::write(&path, "x").unwrap();
    let p = c_path(&path);
    let set = |name: &str, flags: i32| {
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid path and name; a 1-byte value.
        let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), b"v".as_ptr().cast(), 1, flags) };
        ret(r.into())
    };
    let both = libc::XATTR_CREATE | libc::XATTR_REPLACE;
    let mut out = vec![
        format!("both flags, missing: {}", set("user.a", both)),
        format!("create: {}", set("user.a", libc::XATTR_CREATE)),
        format!("both flags, present: {}", set("user.a", both)),
    ];
    // 300 names of 240 bytes: a list of about 72 KiB.
    for i in 0..300 {
        let name = format!("user.{i:03}{}", "n".repeat(232));
        let r = set(&name, 0);
        assert_eq!(r, "0", "setxattr {i}");
    }
    let list = |size: usize| {
        let mut buf = vec![0u8; size];
        let ptr = if size == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        // SAFETY: `buf` is a valid buffer of `size` bytes (or none for the size query).
        ret(unsafe { libc::listxattr(p.as_ptr(), ptr, size) } as i64)
    };
    out.push(format!("list size: {}", list(0)));
    out.push(format!("list into 64 KiB: {}", list(65536)));
    out.push(format!("list into 100 bytes: {}", list(100)));
    out
}

/// The kernel's FUSE client caps the answer to a `listxattr` size query at 64 KiB
/// (`fuse_listxattr`: `min(outarg.size, XATTR_LIST_MAX)`), whatever the server says; the
/// daemon answers the real length. Documented in docs/semantics.md.
fn listxattr_size_capped_by_fuse(line: &str) -> String {
    match line.strip_prefix("list size: ").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => format!("list size: {}", n.min(65536)),
        None => line.to_string(),
    }
}

#[test]
fn xattr_errnos_match_tmpfs() {
    same_as_tmpfs_but(
        "xattr_errnos_match_tmpfs",
        "",
        xattr_errnos,
        listxattr_size_capped_by_fuse,
    );
}

/// Item 9 (a documented difference, so rtmpfs only): a store through a shared mapping into a
/// hole of a full filesystem. tmpfs raises SIGBUS at the store; over FUSE the store lands in
/// the kernel's page cache and the daemon can only refuse the writeback, so `msync` and
/// `fsync` must report ENOSPC (and the data must not appear).
#[test]
fn mapped_store_into_a_hole_of_a_full_mount_reports_enospc_at_sync() {
    if !can_mount("mapped_store_into_a_hole_of_a_full_mount_reports_enospc_at_sync") {
        return;
    }
    let d = Daemon::start("size=1m");
    let (hole, filler) = (d.path().join("sparse"), d.path().join("filler"));
    std::fs::File::create(&hole).unwrap().set_len(8 * 4096).unwrap();
    let fd_fill = open(&filler, libc::O_WRONLY | libc::O_CREAT);
    let page = [7u8; 4096];
    let mut off = 0i64;
    while pwrite(fd_fill, &page, off) == "4096" {
        off += 4096;
    }
    assert_eq!(pwrite(fd_fill, &page, off), format!("-1 errno {}", libc::ENOSPC));
    close(fd_fill);
    let fd = open(&hole, libc::O_RDWR);
    let len = 8 * 4096;
    // SAFETY: a new shared mapping of our fd, `len` bytes of a file that long.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    let map = map.cast::<u8>();
    // SAFETY: page 0 lies inside the mapping; the store succeeds (no SIGBUS over FUSE).
    unsafe { map.write(0xaa) };
    // SAFETY: our own mapping, of this length.
    let r = unsafe { libc::msync(map.cast(), len, libc::MS_SYNC) };
    assert_eq!(ret(r.into()), format!("-1 errno {}", libc::ENOSPC), "msync");
    // SAFETY: page 4 lies inside the mapping.
    unsafe { map.add(4 * 4096).write(0xbb) };
    // SAFETY: plain syscall on our fd.
    let r = unsafe { libc::fsync(fd) };
    assert_eq!(ret(r.into()), format!("-1 errno {}", libc::ENOSPC), "fsync");
    // SAFETY: our own mapping, of this length; nothing refers into it afterwards.
    unsafe { libc::munmap(map.cast(), len) };
    close(fd);
    // Nothing was stored: the file is still a hole of zeros.
    let fd = open(&hole, libc::O_RDONLY);
    // SAFETY: plain syscall on our fd.
    unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
    close(fd);
    assert!(std::fs::read(&hole).unwrap().iter().all(|&b| b == 0));
}

/// Item 11: file flags through `FS_IOC_GETFLAGS`/`SETFLAGS` and `FS_IOC_FSGETXATTR`, and what
/// append-only and immutable files and directories refuse. The kernel enforces none of it for
/// FUSE: every refusal on rtmpfs is the daemon's.
fn file_flags(dir: &Path) -> Vec<String> {
    const GETFLAGS: libc::c_ulong = 0x8008_6601;
    const SETFLAGS: libc::c_ulong = 0x4008_6602;
    const FSGETXATTR: libc::c_ulong = 0x801c_581f;
    const APPEND: i32 = 0x20;
    const IMMUTABLE: i32 = 0x10;
    let (f, d) = (dir.join("flagged"), dir.join("flagged-dir"));
    std::fs::write(&f, "abc").unwrap();
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("in"), "").unwrap();
    let setflags = |p: &Path, flags: i32| {
        let fd = open(p, libc::O_RDONLY);
        // SAFETY: FS_IOC_SETFLAGS reads an int from a valid pointer.
        let r = unsafe { libc::ioctl(fd, SETFLAGS, &flags) };
        close(fd);
        ret(r.into())
    };
    let getflags = |p: &Path| {
        let fd = open(p, libc::O_RDONLY);
        let mut flags: i32 = -1;
        // SAFETY: FS_IOC_GETFLAGS writes an int to a valid pointer.
        let r = unsafe { libc::ioctl(fd, GETFLAGS, &mut flags) };
        let mut fsx = [0u32; 7];
        // SAFETY: FS_IOC_FSGETXATTR writes a 28-byte struct fsxattr.
        let r2 = unsafe { libc::ioctl(fd, FSGETXATTR, fsx.as_mut_ptr()) };
        close(fd);
        format!(
            "{} flags {flags:#x}, {} xflags {:#x}",
            ret(r.into()),
            ret(r2.into()),
            fsx[0]
        )
    };
    let try_open = |p: &Path, flags: i32| {
        let c = c_path(p);
        // SAFETY: valid path; flags are plain integers.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd >= 0 {
            let w = pwrite(fd, b"Z", 0);
            close(fd);
            format!("ok, pwrite at 0: {w}")
        } else {
            ret(fd.into())
        }
    };
    let errno_of = |r: std::io::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(0)),
    };
    let mut out = vec![format!("initial: {}", getflags(&f))];
    out.push(format!("unsupported flag (compress): {}", setflags(&f, 0x4)));
    out.push(format!("set append-only: {}", setflags(&f, APPEND)));
    out.push(format!("flags: {}", getflags(&f)));
    out.push(format!("open for writing: {}", try_open(&f, libc::O_WRONLY)));
    out.push(format!(
        "open O_APPEND: {}",
        try_open(&f, libc::O_WRONLY | libc::O_APPEND)
    ));
    out.push(format!(
        "O_TRUNC: {}",
        try_open(&f, libc::O_WRONLY | libc::O_APPEND | libc::O_TRUNC)
    ));
    out.push(format!(
        "truncate: {}",
        errno_of(std::fs::File::open(&f).and_then(|_| {
            // SAFETY: valid path.
            let r = unsafe { libc::truncate(c_path(&f).as_ptr(), 1) };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }))
    ));
    out.push(format!("unlink: {}", errno_of(std::fs::remove_file(&f))));
    out.push(format!("content: {}", content(&f)));
    out.push(format!("set immutable: {}", setflags(&f, IMMUTABLE)));
    out.push(format!("open read-only: {}", try_open(&f, libc::O_RDONLY)));
    out.push(format!(
        "open O_APPEND: {}",
        try_open(&f, libc::O_WRONLY | libc::O_APPEND)
    ));
    let chmod = std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    out.push(format!("chmod: {}", errno_of(chmod)));
    out.push(format!(
        "link: {}",
        errno_of(std::fs::hard_link(&f, dir.join("flagged-link")))
    ));
    out.push(format!(
        "rename: {}",
        errno_of(std::fs::rename(&f, dir.join("flagged-moved")))
    ));
    let name = std::ffi::CString::new("user.k").unwrap();
    // SAFETY: valid path and name; a 1-byte value.
    let r = unsafe { libc::setxattr(c_path(&f).as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    out.push(format!("setxattr: {}", ret(r.into())));
    out.push(format!("clear: {}", setflags(&f, 0)));
    out.push(format!("unlink: {}", errno_of(std::fs::remove_file(&f))));
    out.push(format!("directory immutable: {}", setflags(&d, IMMUTABLE)));
    out.push(format!("create in it: {}", errno_of(std::fs::write(d.join("new"), ""))));
    out.push(format!(
        "remove from it: {}",
        errno_of(std::fs::remove_file(d.join("in")))
    ));
    out.push(format!("directory append-only: {}", setflags(&d, APPEND)));
    out.push(format!("create in it: {}", errno_of(std::fs::write(d.join("new"), ""))));
    out.push(format!(
        "remove from it: {}",
        errno_of(std::fs::remove_file(d.join("in")))
    ));
    out.push(format!("clear: {}", setflags(&d, 0)));
    // A caller without CAP_LINUX_IMMUTABLE may not set immutable, even as the owner.
    std::fs::write(&f, "x").unwrap();
    // SAFETY: valid path.
    unsafe { libc::chown(c_path(&f).as_ptr(), 65534, 65534) };
    let f2 = f.clone();
    let by_user = common::as_ids(65534, 65534, &[], || {
        let fd = open(&f2, libc::O_RDONLY);
        let flags = IMMUTABLE;
        // SAFETY: an open descriptor and a flags word the ioctl reads.
        let r = unsafe { libc::ioctl(fd, SETFLAGS, &flags) };
        let e = ret(r.into());
        close(fd);
        e
    });
    out.push(format!("owner sets immutable: {by_user}"));
    out
}

#[test]
fn file_flags_match_tmpfs() {
    same_as_tmpfs("file_flags_match_tmpfs", "", file_flags);
}

#[test]
fn o_append_cases_with_writeback_cache_match_tmpfs() {
    same_as_tmpfs("o_append_cases_with_writeback_cache_match_tmpfs", "writeback", |dir| {
        let mut out = append_cleared_by_setfl(dir);
        out.extend(rwf_noappend(dir));
        out.extend(copy_into_cleared_append(dir));
        out
    });
}

/// Why every regular-file open reaches the daemon (docs/fuse.md, "Tried and withdrawn:
/// `FUSE_NO_OPEN_SUPPORT`"): the kernel does not know the file flags of a FUSE inode, so only
/// OPEN can refuse writing to an immutable or append-only file at `open`, as tmpfs does. Without
/// it (an OPEN answered ENOSYS) `open(O_RDWR)` of an immutable file succeeds, a store through a
/// shared mapping lands in the page cache, and readers see content the daemon refused.
fn flagged_files_refuse_write_opens(dir: &Path) -> Vec<String> {
    const SETFLAGS: libc::c_ulong = 0x4008_6602;
    const APPEND: i32 = 0x20;
    const IMMUTABLE: i32 = 0x10;
    let (a, i) = (dir.join("append-only"), dir.join("immutable"));
    std::fs::write(&a, "abc").unwrap();
    std::fs::write(&i, vec![b'x'; 4096]).unwrap();
    let setflags = |p: &Path, flags: i32| {
        let fd = open(p, libc::O_RDONLY);
        // SAFETY: FS_IOC_SETFLAGS reads an int from a valid pointer.
        let r = unsafe { libc::ioctl(fd, SETFLAGS, &flags) };
        close(fd);
        ret(r.into())
    };
    let try_open = |p: &Path, flags: i32| {
        let c = c_path(p);
        // SAFETY: valid path; flags are plain integers.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        (fd, ret(fd.min(0).into()))
    };
    let mut out = vec![
        format!("set append-only: {}", setflags(&a, APPEND)),
        format!("set immutable: {}", setflags(&i, IMMUTABLE)),
    ];
    let (fd, r) = try_open(&a, libc::O_WRONLY);
    out.push(format!("append-only, O_WRONLY: {r}"));
    if fd >= 0 {
        close(fd);
    }
    let (fd, r) = try_open(&i, libc::O_RDWR);
    out.push(format!("immutable, O_RDWR: {r}"));
    if fd >= 0 {
        // SAFETY: a new shared mapping of our fd, one page of a file that long.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map != libc::MAP_FAILED {
            // SAFETY: byte 0 lies inside the mapping.
            unsafe { map.cast::<u8>().write(b'Z') };
            // SAFETY: our own mapping, of this length; nothing refers into it afterwards.
            unsafe {
                libc::msync(map, 4096, libc::MS_SYNC);
                libc::munmap(map, 4096);
            }
        }
        close(fd);
    }
    out.push(format!("immutable starts with: {}", &content(&i)[..1]));
    out.push(format!("clear: {} {}", setflags(&a, 0), setflags(&i, 0)));
    out
}

#[test]
fn flagged_files_refuse_write_opens_as_on_tmpfs() {
    same_as_tmpfs(
        "flagged_files_refuse_write_opens_as_on_tmpfs",
        "",
        flagged_files_refuse_write_opens,
    );
}

/// `open` as text: `fd` on success (the descriptor is closed at once), or `-1 errno N`.
fn try_open(path: &Path, flags: i32) -> String {
    let p = c_path(path);
    // SAFETY: valid NUL-terminated path; flags and mode are plain integers.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd >= 0 {
        close(fd);
        "fd".to_string()
    } else {
        ret(-1)
    }
}

/// A copy of `sleep` in `dir`, executable.
fn copy_of_sleep(dir: &Path, name: &str) -> (std::path::PathBuf, Vec<u8>) {
    let src = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("no sleep binary");
    let exe = dir.join(name);
    std::fs::copy(src, &exe).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bytes = std::fs::read(&exe).unwrap();
    (exe, bytes)
}

/// How a child ended, as text.
fn ended(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".to_string(),
    }
}

/// A file being executed refuses every way of writing it with ETXTBSY and keeps its bytes.
/// `open(O_RDONLY|O_TRUNC)` is the case a FUSE server can get wrong: the kernel checks for a
/// running executable only after `->open`, so a server that truncates in OPEN
/// (`FUSE_ATOMIC_O_TRUNC`) has already emptied the file when the kernel refuses the open, and
/// the running program dies on its next page fault (pjdfstest `open::etxtbsy` caught it, as a
/// race with `exec`).
fn running_executable_refuses_writes(dir: &Path) -> Vec<String> {
    let (exe, bytes) = copy_of_sleep(dir, "running");
    let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
    let c = c_path(&exe);
    // SAFETY: valid NUL-terminated path.
    let trunc = unsafe { libc::truncate(c.as_ptr(), 0) };
    let out = vec![
        format!("O_WRONLY: {}", try_open(&exe, libc::O_WRONLY)),
        format!("O_RDWR: {}", try_open(&exe, libc::O_RDWR)),
        format!("O_RDONLY|O_TRUNC: {}", try_open(&exe, libc::O_RDONLY | libc::O_TRUNC)),
        format!("O_WRONLY|O_TRUNC: {}", try_open(&exe, libc::O_WRONLY | libc::O_TRUNC)),
        format!("truncate: {}", ret(i64::from(trunc))),
        format!("bytes kept: {}", std::fs::read(&exe).unwrap() == bytes),
        format!("still running: {}", child.try_wait().unwrap().is_none()),
    ];
    child.kill().unwrap();
    let mut out = out;
    out.push(format!("ended by: {}", ended(child.wait().unwrap())));
    out.push(format!(
        "after exit O_RDONLY|O_TRUNC: {}",
        try_open(&exe, libc::O_RDONLY | libc::O_TRUNC)
    ));
    out.push(format!("size after exit: {}", std::fs::metadata(&exe).unwrap().len()));
    out
}

#[test]
fn running_executable_refuses_writes_as_on_tmpfs() {
    same_as_tmpfs(
        "running_executable_refuses_writes_as_on_tmpfs",
        "",
        running_executable_refuses_writes,
    );
}

/// Landlock's `LANDLOCK_ACCESS_FS_TRUNCATE` (ABI 3, Linux 6.2): with truncation handled and no
/// rule granting it, `open(O_TRUNC)` fails with EACCES and the file keeps its bytes. The kernel
/// asks the LSM after `->open`, so here too a server that truncates in OPEN would have
/// truncated already. Raw syscalls in `pre_exec` (between fork and exec of a multi-threaded
/// test process only async-signal-safe calls are allowed, so no crate that allocates).
fn landlock_truncate_denied(dir: &Path) -> Vec<String> {
    use std::os::unix::process::CommandExt;
    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
    }
    const LANDLOCK_ACCESS_FS_TRUNCATE: u64 = 1 << 14;
    let f = dir.join("kept");
    std::fs::write(&f, "precious").unwrap();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", ": > \"$1\"", "sh"])
        .arg(&f)
        .stderr(std::process::Stdio::null());
    // SAFETY: only raw syscalls (no allocation, no locks) run in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let attr = RulesetAttr {
                handled_access_fs: LANDLOCK_ACCESS_FS_TRUNCATE,
            };
            let fd = libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::from_ref(&attr),
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    vec![format!("shell: {}", ended(status)), format!("content: {}", content(&f))]
}

/// The running kernel's Landlock ABI version (0 without Landlock): asked of the kernel itself
/// (`LANDLOCK_CREATE_RULESET_VERSION`), which needs no securityfs mount.
fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: the version query takes no attribute pointer and size 0.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    v.max(0)
}

#[test]
fn landlock_truncate_denial_keeps_the_file_as_on_tmpfs() {
    let abi = landlock_abi();
    if abi < 3 {
        // Said, not passed silently: the truncate right needs Landlock ABI 3 (Linux 6.2).
        eprintln!("SKIP landlock_truncate_denial_keeps_the_file_as_on_tmpfs: Landlock ABI {abi}, need 3");
        return;
    }
    same_as_tmpfs(
        "landlock_truncate_denial_keeps_the_file_as_on_tmpfs",
        "",
        landlock_truncate_denied,
    );
}
