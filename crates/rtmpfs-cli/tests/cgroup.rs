//! Headroom under a memory cgroup (issue 15, item 7): the daemon's memory beyond `memory=` (its
//! binary, thread stacks, the page pool's floor and I/O buffers, and per-page metadata) is
//! outside the budget; docs/fuse.md ("Memory limits of a container") says how much headroom a
//! container limit needs: `memory=` + 32 MiB + 12 MiB per GiB stored. Here the daemon runs in a
//! memory cgroup limited to exactly that for 256 MiB, `memory=16m`, stores 200 MiB (far more
//! than the budget: most of it swapped out) and reads it all back through `direct_io` (every
//! read reaches the daemon), without being OOM-killed.
//!
//! Needs a memory cgroup controller: cgroup v2 (`/sys/fs/cgroup` with `memory` in
//! `cgroup.controllers`) or v1 (`/sys/fs/cgroup/memory`). Without one the test prints why and
//! returns.

mod common;

use common::{can_mount, rtmpfs_bin, wait_until, Daemon, MountDir};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const MIB: u64 = 1 << 20;
const BUDGET: u64 = 16 * MIB;
const SIZE: u64 = 256 * MIB;
/// The documented headroom: 32 MiB plus 12 MiB per GiB of `size=`.
const LIMIT: u64 = BUDGET + 32 * MIB + SIZE * 12 / 1024;
const STORED: u64 = 200 * MIB;

/// A memory cgroup made for the test, removed on drop (once its processes are gone).
struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

impl Cgroup {
    fn make(limit: u64) -> Option<Cgroup> {
        let name = format!("rtmpfs-test-{}", std::process::id());
        let v2_root = Path::new("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(v2_root.join("cgroup.controllers")).is_ok_and(|c| c.contains("memory"));
        let (dir, limit_file) = if v2 {
            (v2_root.join(&name), "memory.max")
        } else if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
            (Path::new("/sys/fs/cgroup/memory").join(&name), "memory.limit_in_bytes")
        } else {
            return None;
        };
        std::fs::create_dir(&dir).ok()?;
        let cg = Cgroup { dir, v2 };
        std::fs::write(cg.dir.join(limit_file), limit.to_string()).unwrap();
        // No escape to the host's swap: the limit covers memory and swap alike.
        let memsw = if v2 {
            "memory.swap.max"
        } else {
            "memory.memsw.limit_in_bytes"
        };
        if cg.dir.join(memsw).exists() {
            let v = if v2 { "0".to_string() } else { limit.to_string() };
            std::fs::write(cg.dir.join(memsw), v).unwrap();
        }
        Some(cg)
    }

    fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    }

    fn peak(&self) -> u64 {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The daemon has exited (dropped before this); retry briefly while the kernel lets go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Start `rtmpfs DIR -o opts` inside the cgroup (it moves itself in before exec).
fn start_in(cg: &Cgroup, opts: &str) -> Daemon {
    let mnt = MountDir::new();
    let procs = CString::new(cg.dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap();
    let stderr_path = std::env::temp_dir().join(format!("rtmpfs-cgroup-test-{}.stderr", std::process::id()));
    let mut cmd = Command::new(rtmpfs_bin());
    cmd.arg(mnt.path())
        .args(["-o", opts])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    // SAFETY: only open/write/close (async-signal-safe) on a path prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn rtmpfs in the cgroup");
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

fn block(i: u64) -> Vec<u8> {
    (0..MIB)
        .map(|j| (i.wrapping_mul(131) ^ j.wrapping_mul(7) ^ (j >> 12)) as u8)
        .collect()
}

#[test]
fn daemon_survives_a_cgroup_limit_with_the_documented_headroom() {
    if !can_mount("daemon_survives_a_cgroup_limit_with_the_documented_headroom") {
        return;
    }
    let Some(cg) = Cgroup::make(LIMIT) else {
        eprintln!("SKIP daemon_survives_a_cgroup_limit_with_the_documented_headroom: no memory cgroup controller");
        return;
    };
    let mut d = start_in(&cg, &format!("size={SIZE},memory={BUDGET},direct_io"));
    let f = d.path().join("f");
    {
        let mut w = std::fs::File::create(&f).unwrap();
        for i in 0..STORED / MIB {
            w.write_all(&block(i)).unwrap();
        }
    }
    let mut r = std::fs::File::open(&f).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..STORED / MIB {
        r.read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("reading MiB {i}: {e}"));
        assert!(buf == block(i), "MiB {i} differs");
    }
    drop(r);
    assert!(
        d.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the daemon died: {}",
        d.stderr()
    );
    assert_eq!(cg.oom_kills(), 0, "OOM kills in the cgroup");
    eprintln!(
        "cgroup limit {} MiB, peak {:.1} MiB (memory={} MiB, {} MiB stored)",
        LIMIT / MIB,
        cg.peak() as f64 / MIB as f64,
        BUDGET / MIB,
        STORED / MIB
    );
    drop(d);
}
