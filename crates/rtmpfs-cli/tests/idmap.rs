//! Idmapped mounts of rtmpfs, against kernel tmpfs in the same run: an idmapped bind mount
//! (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)` + `move_mount`, what util-linux 2.39's
//! `X-mount.idmap=` does; this machine's 2.38 lacks it) whose user namespace swaps ids 0 and
//! 1000 is made of each, and one shell scenario (`idmap_scenario.sh`) runs on both: ownership
//! seen through either mount, new files, directories, fifos and symlinks owned by the mapped
//! ids, chown through the mapping, an ordinary user creating and writing, root keeping set-id
//! bits when it changes data (the daemon needs the caller's credentials, which the kernel no
//! longer sends: `caller` in the adapter), and a default ACL's named user mapped.

mod common;

use common::{can_mount, run, Daemon, MountDir, Tmpfs};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SCENARIO: &str = include_str!("idmap_scenario.sh");

/// A user namespace mapping ids 0 and 1000 to each other, held by a sleeping child.
struct UserNs {
    child: Child,
}

impl UserNs {
    fn new() -> UserNs {
        let child = Command::new("unshare")
            .args(["--user", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --user");
        let ns = UserNs { child };
        let pid = ns.child.id();
        // The child must have entered its namespace before the map is written.
        let own = std::fs::read_link("/proc/self/ns/user").unwrap();
        assert!(
            common::wait_until(Duration::from_secs(5), || {
                std::fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|l| l != own)
            }),
            "unshare did not enter a user namespace"
        );
        for map in ["uid_map", "gid_map"] {
            // One write: a map can be written once.
            std::fs::write(format!("/proc/{pid}/{map}"), "0 1000 1\n1000 0 1\n").expect(map);
        }
        ns
    }
}

impl Drop for UserNs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `struct mount_attr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// An idmapped bind mount of `src` on `dst` through `ns`'s user namespace, detached on drop.
struct IdmappedMount<'a> {
    dst: &'a Path,
}

fn check(r: libc::c_long, what: &str) -> libc::c_long {
    assert!(r >= 0, "{what}: {}", std::io::Error::last_os_error());
    r
}

impl<'a> IdmappedMount<'a> {
    fn new(src: &Path, dst: &'a Path, ns: &UserNs) -> IdmappedMount<'a> {
        let src_c = CString::new(src.as_os_str().as_bytes()).unwrap();
        let dst_c = CString::new(dst.as_os_str().as_bytes()).unwrap();
        let empty = CString::new("").unwrap();
        let nsfd = std::fs::File::open(format!("/proc/{}/ns/user", ns.child.id())).unwrap();
        // SAFETY: a valid path; the flags ask for a detached copy of the mount.
        let tree = check(
            unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    src_c.as_ptr(),
                    libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
                )
            },
            "open_tree",
        ) as libc::c_int;
        // SAFETY: `tree` is ours from here on.
        let tree_fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(tree) };
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: std::os::fd::AsRawFd::as_raw_fd(&nsfd) as u64,
        };
        // SAFETY: `tree` is an open mount; `attr` is a valid mount_attr of the size passed.
        check(
            unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    tree,
                    empty.as_ptr(),
                    libc::AT_EMPTY_PATH,
                    &raw const attr,
                    std::mem::size_of::<MountAttr>(),
                )
            },
            "mount_setattr(MOUNT_ATTR_IDMAP)",
        );
        // SAFETY: `tree` is an open detached mount; `dst` a valid directory path.
        check(
            unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    tree,
                    empty.as_ptr(),
                    libc::AT_FDCWD,
                    dst_c.as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH,
                )
            },
            "move_mount",
        );
        drop(tree_fd);
        IdmappedMount { dst }
    }
}

impl Drop for IdmappedMount<'_> {
    fn drop(&mut self) {
        let c = CString::new(self.dst.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path; detaching only our own mount.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn run_scenario(fs: &Path, ns: &UserNs) -> String {
    let target = MountDir::new();
    let _m = IdmappedMount::new(fs, target.path(), ns);
    let out = run(
        Command::new("sh")
            .arg("-c")
            .arg(SCENARIO)
            .arg("sh")
            .arg(fs)
            .arg(target.path()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "scenario failed on {}: {out:?}", fs.display());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn idmapped_mount_as_kernel_tmpfs() {
    if !can_mount("idmapped_mount_as_kernel_tmpfs") {
        return;
    }
    let ns = UserNs::new();
    let tmpfs = Tmpfs::mount("mode=0755");
    let oracle = run_scenario(tmpfs.path(), &ns);
    let d = Daemon::start("");
    let ours = run_scenario(d.path(), &ns);
    for line in [
        "1000 1000 644 R/pre",
        "0 0 644 I/pre",
        "1000 1000 644 R/new",
        "0 0 644 I/new",
        "1000 1000 755 R/nd/sub",
        "0 0 644 R/byuser",
        "0 0 6755 R/s",
        "user:0:rwx\t#effective:rw-",
    ] {
        assert!(oracle.contains(line), "kernel tmpfs output lacks {line:?}:\n{oracle}");
    }
    assert_eq!(
        oracle, ours,
        "rtmpfs differs from kernel tmpfs through an idmapped mount"
    );
}
