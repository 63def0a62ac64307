//! Requests the kernel sends without the caller's ids (under `FUSE_ALLOW_IDMAP`, every request
//! that creates no inode), over the mount, against kernel tmpfs (the oracle) in the same run.
//!
//! The daemon reads the caller's ids, groups and capabilities from /proc only where they
//! decide the answer; everywhere else it relies on what the kernel already decided
//! (`default_permissions`, and `setattr_prepare` stripping set-group-ID from a chmod). The
//! /proc read cost 28% of the daemon's CPU while untarring, so chmod, utimens, an ordinary
//! chown and listxattr no longer pay it. This test pins that nothing the caller decides was
//! lost: `trusted.` names listed to root only, set-group-ID stripped from a non-member's chmod,
//! a chown's set-id clearing for root, a member and a non-member, and utimens permissions.
//!
//! The transport comes from `RTMPFS_TEST_TRANSPORT` (see `common`); run it with both.

mod common;

use common::{c_path, can_mount, Daemon, Tmpfs};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The owner of the test files (a plain user, no capabilities once switched to).
const OWNER: u32 = 65531;
/// A user in no group of the files.
const STRANGER: u32 = 65530;
/// A supplementary group of OWNER in the chown cases.
const SIDE_GROUP: u32 = 65529;

fn errno_of(r: libc::c_int) -> i32 {
    if r < 0 {
        common::errno()
    } else {
        0
    }
}

/// The xattr names of `path` (sorted), or the errno; and whether the size query agrees.
fn list(path: &Path) -> String {
    let p = c_path(path);
    // SAFETY: valid path; a null buffer of size 0 asks for the size.
    let size = unsafe { libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        return format!("errno {}", common::errno());
    }
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid path; the buffer is writable for its length.
    let n = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return format!("errno {}", common::errno());
    }
    buf.truncate(usize::try_from(n).unwrap());
    let mut names: Vec<String> = buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    format!(
        "{} (size query {})",
        names.join(","),
        if size == n { "agrees" } else { "differs" }
    )
}

fn set_xattr(path: &Path, name: &str) {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    // SAFETY: valid path and name; the value outlives the call.
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    assert_eq!(r, 0, "setxattr {name}: errno {}", common::errno());
}

fn chown(path: &Path, uid: u32, gid: u32) -> i32 {
    let p = c_path(path);
    // SAFETY: valid path.
    errno_of(unsafe { libc::chown(p.as_ptr(), uid, gid) })
}

fn chmod(path: &Path, mode: u32) -> i32 {
    let p = c_path(path);
    // SAFETY: valid path.
    errno_of(unsafe { libc::chmod(p.as_ptr(), mode) })
}

/// utimensat to now (`times` null) or to a fixed time.
fn utimens(path: &Path, now: bool) -> i32 {
    let p = c_path(path);
    let fixed = [libc::timespec {
        tv_sec: 1_000_000,
        tv_nsec: 0,
    }; 2];
    let times = if now { std::ptr::null() } else { fixed.as_ptr() };
    // SAFETY: valid path; `times` is null or two timespecs.
    errno_of(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times, 0) })
}

fn file(dir: &Path, name: &str, uid: u32, gid: u32, mode: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, b"x").unwrap();
    assert_eq!(chown(&p, uid, gid), 0);
    assert_eq!(chmod(&p, mode), 0);
    p
}

fn mode(path: &Path) -> String {
    let m = std::fs::metadata(path).unwrap();
    format!("{:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid())
}

/// One line per step.
fn scenario(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    // listxattr: trusted. names for CAP_SYS_ADMIN only.
    let f = file(dir, "xattrs", OWNER, OWNER, 0o666);
    set_xattr(&f, "trusted.t");
    set_xattr(&f, "user.u");
    let plain = file(dir, "plain", OWNER, OWNER, 0o666);
    set_xattr(&plain, "user.u");
    out.push(format!("root lists xattrs: {}", list(&f)));
    out.push(format!(
        "owner lists xattrs: {}",
        common::as_ids(OWNER, OWNER, &[], || list(&f))
    ));
    out.push(format!(
        "stranger lists xattrs: {}",
        common::as_ids(STRANGER, STRANGER, &[], || list(&f))
    ));
    out.push(format!(
        "stranger lists plain: {}",
        common::as_ids(STRANGER, STRANGER, &[], || list(&plain))
    ));

    // chmod g+s by an owner outside the file's group: the kernel strips set-group-ID.
    let g = file(dir, "chmod-outside", OWNER, 0, 0o644);
    let e = common::as_ids(OWNER, OWNER, &[], || chmod(&g, 0o2644));
    out.push(format!("owner outside group chmod 2644: errno {e}, {}", mode(&g)));
    let g2 = file(dir, "chmod-inside", OWNER, OWNER, 0o644);
    let e = common::as_ids(OWNER, OWNER, &[], || chmod(&g2, 0o2644));
    out.push(format!("owner in group chmod 2644: errno {e}, {}", mode(&g2)));
    let e = common::as_ids(STRANGER, STRANGER, &[], || chmod(&g2, 0o600));
    out.push(format!("stranger chmod: errno {e}, {}", mode(&g2)));

    // chown: set-user-ID always goes; set-group-ID without group-execute stays for root and
    // for a member of the file's group, goes for anyone else.
    for (name, start) in [("sgid", 0o2644), ("sgid-gx", 0o2754), ("suid-sgid", 0o6755)] {
        let h = file(dir, &format!("chown-root-{name}"), OWNER, OWNER, start);
        let e = chown(&h, 0, 0);
        out.push(format!("root chown {start:o} to 0:0: errno {e}, {}", mode(&h)));
        let h = file(dir, &format!("chgrp-member-{name}"), OWNER, OWNER, start);
        let e = common::as_ids(OWNER, OWNER, &[SIDE_GROUP], || chown(&h, u32::MAX, SIDE_GROUP));
        out.push(format!(
            "owner chgrp {start:o} to a group of its: errno {e}, {}",
            mode(&h)
        ));
        let h = file(dir, &format!("chgrp-outside-{name}"), OWNER, 0, start);
        let e = common::as_ids(OWNER, OWNER, &[SIDE_GROUP], || chown(&h, u32::MAX, SIDE_GROUP));
        out.push(format!("owner outside group chgrp {start:o}: errno {e}, {}", mode(&h)));
        let e = common::as_ids(STRANGER, STRANGER, &[], || chown(&h, u32::MAX, STRANGER));
        out.push(format!("stranger chgrp: errno {e}, {}", mode(&h)));
    }

    // utimens: to now with write access; to a chosen time only as the owner.
    let t = file(dir, "times", OWNER, OWNER, 0o666);
    out.push(format!(
        "stranger touch now: errno {}",
        common::as_ids(STRANGER, STRANGER, &[], || utimens(&t, true))
    ));
    out.push(format!(
        "stranger touch -d: errno {}",
        common::as_ids(STRANGER, STRANGER, &[], || utimens(&t, false))
    ));
    out.push(format!(
        "owner touch -d: errno {}",
        common::as_ids(OWNER, OWNER, &[], || utimens(&t, false))
    ));
    out
}

#[test]
fn requests_without_the_callers_ids_answer_as_kernel_tmpfs() {
    if !can_mount("requests_without_the_callers_ids_answer_as_kernel_tmpfs") {
        return;
    }
    let tmpfs = Tmpfs::mount("mode=1777");
    let oracle = scenario(tmpfs.path());
    let d = Daemon::start("mode=1777");
    let ours = scenario(d.path());
    // The scenario exercises what it claims, on the oracle itself.
    for want in [
        "root lists xattrs: trusted.t,user.u (size query agrees)",
        "owner lists xattrs: user.u (size query agrees)",
        "owner outside group chmod 2644: errno 0, 644 65531:0",
        "owner in group chmod 2644: errno 0, 2644 65531:65531",
        &format!("stranger chmod: errno {}, 2644 65531:65531", libc::EPERM),
        "root chown 2644 to 0:0: errno 0, 2644 0:0",
        "root chown 6755 to 0:0: errno 0, 755 0:0",
        &format!("stranger touch -d: errno {}", libc::EPERM),
        "stranger touch now: errno 0",
    ] {
        assert!(oracle.iter().any(|l| l == want), "oracle lacks {want:?}: {oracle:#?}");
    }
    let diffs: Vec<String> = oracle
        .iter()
        .zip(&ours)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("tmpfs: {a}\nrtmpfs: {b}"))
        .collect();
    assert_eq!(oracle.len(), ours.len());
    assert!(diffs.is_empty(), "differences from kernel tmpfs:\n{}", diffs.join("\n"));
}
