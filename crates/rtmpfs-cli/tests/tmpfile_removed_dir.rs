//! `O_TMPFILE` in a directory that has been removed, through a descriptor still open on it:
//! Linux tmpfs makes the anonymous file (vfs_tmpfile checks permissions only, not whether the
//! directory is dead), which can then be written, read and linked into a live directory; a
//! plain create there is `ENOENT`. Run on kernel tmpfs and rtmpfs in the same run.

mod common;

use common::{c_path, can_mount, Daemon, Tmpfs};
use std::path::Path;

fn errno_of(r: libc::c_int) -> String {
    if r < 0 {
        format!("errno {}", common::errno())
    } else {
        "ok".to_string()
    }
}

fn scenario(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let d = root.join("d");
    std::fs::create_dir(&d).unwrap();
    let dir = std::fs::File::open(&d).unwrap();
    std::fs::remove_dir(&d).unwrap();
    let dfd = std::os::fd::AsRawFd::as_raw_fd(&dir);
    let dot = c".";
    // SAFETY: `dfd` is open; a valid path and flags.
    let fd = unsafe { libc::openat(dfd, dot.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o600) };
    out.push(format!("tmpfile in removed dir: {}", errno_of(fd)));
    let name = c"new";
    // SAFETY: as above.
    let created = unsafe { libc::openat(dfd, name.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600) };
    out.push(format!("create in removed dir: {}", errno_of(created)));
    if fd >= 0 {
        // SAFETY: `fd` is ours; the buffer outlives the call.
        let n = unsafe { libc::pwrite(fd, b"hello".as_ptr().cast(), 5, 0) };
        out.push(format!("write: {n}"));
        let target = c_path(&root.join("linked"));
        let empty = c"";
        // SAFETY: `fd` is open; valid paths.
        let r = unsafe { libc::linkat(fd, empty.as_ptr(), libc::AT_FDCWD, target.as_ptr(), libc::AT_EMPTY_PATH) };
        out.push(format!("link into root: {}", errno_of(r)));
        out.push(format!(
            "read linked: {:?}",
            std::fs::read_to_string(root.join("linked")).map_err(|e| e.raw_os_error())
        ));
        // SAFETY: closing our descriptor.
        unsafe { libc::close(fd) };
    }
    out
}

#[test]
fn tmpfile_in_removed_directory_as_kernel_tmpfs() {
    if !can_mount("tmpfile_in_removed_directory_as_kernel_tmpfs") {
        return;
    }
    let tmpfs = Tmpfs::mount("mode=0755");
    let oracle = scenario(tmpfs.path());
    assert_eq!(oracle[0], "tmpfile in removed dir: ok", "kernel tmpfs: {oracle:?}");
    let d = Daemon::start("");
    let ours = scenario(d.path());
    assert_eq!(oracle, ours, "rtmpfs differs from kernel tmpfs");
}
