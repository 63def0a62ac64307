//! Options are honest (issue 15, item 7): swap options the host cannot honour, or that
//! contradict each other, are refused at mount with a one-line message and nothing mounted; a
//! default swap size larger than the free space is mounted with a warning; a remount refuses
//! options fixed at mount instead of answering ok while ignoring them.

mod common;

use common::{can_mount, rtmpfs_bin, run, Daemon, MountDir, Tmpfs};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Run `rtmpfs DIR -o opts` expecting a refusal: exit 1, one line on stderr, nothing mounted.
fn refused(opts: &str) -> String {
    let mnt = MountDir::new();
    let out = run(Command::new(rtmpfs_bin()).arg(mnt.path()).args(["-o", opts]), T);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{opts}: mounted");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{opts}: {stderr}");
    assert!(common::mounted_at(mnt.path()).is_none(), "{opts}: left a mount");
    stderr
}

#[test]
fn swap_options_the_host_cannot_honour_are_refused() {
    if !can_mount("swap_options_the_host_cannot_honour_are_refused") {
        return;
    }
    let e = refused("size=64m,memory=4m,swap=/nonexistent-rtmpfs-swap");
    assert!(
        e.contains("swap directory /nonexistent-rtmpfs-swap: No such file"),
        "{e}"
    );
    let e = refused("size=64m,memory=4m,noswap,swap_size=1m");
    assert!(e.contains("'noswap' and 'swap_size=' contradict"), "{e}");
    // A 4 MiB filesystem cannot hold a 64 MiB swap file.
    let small = Tmpfs::mount("size=4m");
    let e = refused(&format!(
        "size=128m,memory=4m,swap={},swap_size=64m",
        small.path().display()
    ));
    assert!(
        e.contains("swap_size 64.0 MiB is more than the") && e.contains("refusing"),
        "{e}"
    );
    // The default size (size - memory = 124 MiB) only warns.
    let d = Daemon::start(&format!("size=128m,memory=4m,swap={}", small.path().display()));
    std::fs::write(d.path().join("f"), b"x").unwrap();
    assert!(
        d.stderr().contains("the default, size - memory"),
        "no warning: {}",
        d.stderr()
    );
}

fn remount(dir: &Path, opts: &str) -> std::process::Output {
    run(
        Command::new(rtmpfs_bin())
            .arg0("mount.fuse.rtmpfs")
            .arg("rtmpfs")
            .arg(dir)
            .args(["-o", &format!("remount,{opts}")]),
        T,
    )
}

#[test]
fn remount_refuses_options_fixed_at_mount() {
    if !can_mount("remount_refuses_options_fixed_at_mount") {
        return;
    }
    let d = Daemon::start("size=8m,mode=1777");
    // The daemon's transport is the harness's (common::transport()); ask for the other one.
    let (uring_now, uring_other) = match common::transport() {
        common::Transport::DevFuse => ("io_uring=off", "io_uring=on"),
        common::Transport::IoUring => ("io_uring=on", "io_uring=off"),
    };
    for (opts, name) in [
        (uring_other, "io_uring="),
        ("swap=/var/tmp", "swap="),
        ("fsname=other", "fsname="),
        ("mode=700", "mode="),
        ("uid=12345", "uid="),
        ("threads=3", "threads="),
        ("direct_io", "direct_io"),
        ("memory=4m", "memory="),
        ("swap_size=1m", "swap_size="),
        ("readahead=1m", "readahead="),
    ] {
        let out = remount(d.path(), opts);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(32), "remount,{opts} was accepted: {stderr}");
        assert!(
            stderr.contains(&format!("{name} cannot change on remount")),
            "{opts}: {stderr}"
        );
    }
    // Repeating current values (as fstab-driven remounts do) is fine, and limits still change.
    let out = remount(
        d.path(),
        &format!("mode=1777,fsname=rtmpfs,threads=2,{uring_now},size=4m"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(common::stat_of(d.path(), "charged_pages"), 0);
    let st = nix_statvfs(d.path());
    assert_eq!(st, 4 << 20, "size=4m not applied");
}

/// Total bytes of the filesystem at `p` (`f_blocks * f_frsize`).
fn nix_statvfs(p: &Path) -> u64 {
    let c = common::c_path(p);
    // SAFETY: plain data that statvfs fills, and a valid path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &raw mut st) }, 0);
    st.f_blocks * st.f_frsize
}

/// The directories of the daemon's deleted (anonymous) files: where its swap file lives.
fn deleted_file_dirs(pid: i32) -> Vec<std::path::PathBuf> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap();
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            let path = l.strip_suffix(" (deleted)")?;
            Some(Path::new(path).parent()?.to_path_buf())
        })
        .collect()
}

/// `statfs(2)`'s `f_type` of the filesystem holding `p`.
fn fs_magic(p: &Path) -> i64 {
    let c = common::c_path(p);
    // SAFETY: plain data that statfs fills, and a valid path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &raw mut st) }, 0);
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    magic
}

/// Write 16 MiB through a 4 MiB budget and read it back: pages go to the swap file and return.
fn swap_round_trip(dir: &Path) {
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("f"), &data).unwrap();
    assert!(common::stat_of(dir, "swapped_pages") > 0, "nothing swapped");
    assert!(
        std::fs::read(dir.join("f")).unwrap() == data,
        "data changed across swap"
    );
}

#[test]
fn swap_on_a_memory_filesystem_warns_in_one_line_and_works() {
    if !can_mount("swap_on_a_memory_filesystem_warns_in_one_line_and_works") {
        return;
    }
    let ram = Tmpfs::mount("size=64m");
    let d = Daemon::start(&format!("size=64m,memory=4m,swap={}", ram.path().display()));
    swap_round_trip(d.path());
    let stderr = d.stderr();
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("memory filesystem")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(&format!("swap={} is on tmpfs", ram.path().display())),
        "{stderr}"
    );
    assert!(
        deleted_file_dirs(d.pid()).contains(&ram.path().to_path_buf()),
        "swap file not in swap="
    );
}

#[test]
fn swap_on_an_rtmpfs_mount_warns_in_one_line() {
    if !can_mount("swap_on_an_rtmpfs_mount_warns_in_one_line") {
        return;
    }
    let inner = Daemon::start("size=64m");
    let d = Daemon::start(&format!("size=64m,memory=4m,swap={}", inner.path().display()));
    swap_round_trip(d.path());
    let stderr = d.stderr();
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("memory filesystem")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(&format!("swap={} is on an rtmpfs mount", inner.path().display())),
        "{stderr}"
    );
}

#[test]
fn default_swap_dir_of_root_is_not_in_memory() {
    if !can_mount("default_swap_dir_of_root_is_not_in_memory") {
        return;
    }
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    // Where $TMPDIR is a tmpfs (as /tmp is on many systems), the swap file must not go there.
    let ram = Tmpfs::mount("size=64m");
    let tmpdir = ram.path().to_str().unwrap();
    let d = Daemon::start_with(MountDir::new(), "size=64m,memory=4m", &[("TMPDIR", tmpdir)]);
    swap_round_trip(d.path());
    let dirs = deleted_file_dirs(d.pid());
    assert!(!dirs.is_empty(), "no swap file found among the daemon's fds");
    for dir in &dirs {
        let magic = fs_magic(dir);
        assert!(
            ![TMPFS_MAGIC, RAMFS_MAGIC, FUSE_SUPER_MAGIC].contains(&magic),
            "swap file in {} (f_type {magic:#x})",
            dir.display()
        );
    }
    assert!(!d.stderr().contains("memory filesystem"), "{}", d.stderr());
}
