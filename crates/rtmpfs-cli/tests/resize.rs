//! `rtmpfs resize MOUNTPOINT size=… nr_inodes=… memory=…` (issue 12 item 4): each limit up and
//! down on a live mount, each refusal with its figures (and nothing changed), nothing lost (data
//! read back after every step), `mount -o remount,size=` still working for root with the same
//! figures, and fsx running across a `memory=` cut that forces eviction, without an error.

mod common;

use common::{can_mount, rtmpfs_bin, run, Daemon};
use serde_json::Value;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// `rtmpfs resize MNT ARGS...`.
fn resize(mnt: &Path, args: &[&str]) -> Output {
    run(Command::new(rtmpfs_bin()).arg("resize").arg(mnt).args(args), T)
}

/// A resize that must succeed; its stdout.
fn resized(mnt: &Path, args: &[&str]) -> String {
    let out = resize(mnt, args);
    assert!(
        out.status.success(),
        "resize {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A resize that must be refused: its one-line message.
fn refused(mnt: &Path, args: &[&str]) -> String {
    let out = resize(mnt, args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "resize {args:?} was accepted: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(out.stdout.is_empty());
    stderr
}

fn status(mnt: &Path) -> Value {
    let out = run(Command::new(rtmpfs_bin()).args(["status", "--json"]).arg(mnt), T);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn field(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_u64().unwrap_or_else(|| panic!("{path} in {v}"))
}

/// (f_blocks * f_frsize, f_files) as statvfs(2) (`df`) sees them.
fn statvfs(mnt: &Path) -> (u64, u64) {
    let c = CString::new(mnt.as_os_str().as_bytes()).unwrap();
    // SAFETY: zeroed statvfs is valid plain data; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers for the call's duration.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &raw mut st) }, 0);
    (st.f_blocks * st.f_frsize, st.f_files)
}

fn block(i: u64) -> Vec<u8> {
    (0..MIB)
        .map(|b| (b as u8).wrapping_mul(29).wrapping_add(i as u8))
        .collect()
}

/// `mib` MiB of a known pattern, O_DIRECT (every byte reaches the daemon before this returns).
fn write_pattern(path: &Path, mib: u64) {
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    for i in 0..mib {
        f.write_all(&block(i)).unwrap();
    }
}

fn check_pattern(path: &Path, mib: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..mib {
        f.read_exact(&mut buf).unwrap();
        assert!(buf == block(i), "{}: MiB {i} differs", path.display());
    }
}

#[test]
fn memory_up_and_down_with_swap() {
    if !can_mount("memory_up_and_down_with_swap") {
        return;
    }
    // Without the compressed tier: the cut must move pages to swap.
    let d = Daemon::start("size=64m,memory=8m,compress=off,direct_io");
    let f = d.path().join("f");
    write_pattern(&f, 6);
    let before = status(d.path());
    assert_eq!(field(&before, "pages.resident"), 6 * MIB / PAGE, "all in RAM at first");
    // The swap is there before its first page.
    assert!(before["limits"]["swap"]["enabled"].as_bool().unwrap(), "{before}");
    assert_eq!(field(&before, "limits.swap.used_bytes"), 0);

    // Down: evicts to 2 MiB before returning.
    let out = resized(d.path(), &["memory=2m"]);
    assert!(out.starts_with("memory 8.00 MiB -> 2.00 MiB ("), "{out}");
    let s = status(d.path());
    assert_eq!(field(&s, "limits.memory.limit_bytes"), 2 * MIB);
    assert!(field(&s, "limits.memory.used_bytes") <= 2 * MIB, "{s}");
    assert!(field(&s, "pages.swapped") >= 4 * MIB / PAGE, "{s}");
    assert!(field(&s, "totals.evictions") >= 4 * MIB / PAGE, "{s}");
    check_pattern(&f, 6);

    // Up: at once; 8 MiB more then fit without a single eviction.
    let out = resized(d.path(), &["memory=32m"]);
    assert_eq!(out, "memory 2.00 MiB -> 32.0 MiB\n");
    let evictions = field(&status(d.path()), "totals.evictions");
    write_pattern(&d.path().join("g"), 8);
    let s = status(d.path());
    assert_eq!(field(&s, "limits.memory.limit_bytes"), 32 * MIB);
    assert_eq!(field(&s, "totals.evictions"), evictions, "{s}");
    check_pattern(&f, 6);
    check_pattern(&d.path().join("g"), 8);
}

#[test]
fn memory_cut_without_swap_is_refused_with_the_figures() {
    if !can_mount("memory_cut_without_swap_is_refused_with_the_figures") {
        return;
    }
    // Without the compressed tier, with noswap, nothing can leave RAM.
    let d = Daemon::start("size=64m,memory=8m,noswap,compress=off,direct_io");
    let f = d.path().join("f");
    write_pattern(&f, 6);
    let msg = refused(d.path(), &["memory=2m"]);
    assert!(
        msg.contains("memory=2.0 MiB is below the 6.0 MiB (1536 pages) in RAM") && msg.contains("noswap"),
        "{msg}"
    );
    assert_eq!(field(&status(d.path()), "limits.memory.limit_bytes"), 8 * MIB);
    // A cut that fits what is resident is taken; a raise too.
    assert_eq!(
        resized(d.path(), &["memory=7m"]),
        "memory 8.00 MiB -> 7.00 MiB (6.00 MiB now in RAM, 0 pages evicted)\n"
    );
    assert_eq!(resized(d.path(), &["memory=16m"]), "memory 7.00 MiB -> 16.0 MiB\n");
    check_pattern(&f, 6);
    // Without memory= there is no budget to change.
    let plain = Daemon::start("size=8m");
    let msg = refused(plain.path(), &["memory=4m"]);
    assert!(msg.contains("no memory= budget"), "{msg}");
}

#[test]
fn size_up_and_down_and_below_use_refused() {
    if !can_mount("size_up_and_down_and_below_use_refused") {
        return;
    }
    let d = Daemon::start("size=16m,direct_io");
    let f = d.path().join("f");
    write_pattern(&f, 6);
    let msg = refused(d.path(), &["size=4m"]);
    assert!(
        msg.contains("size=4.00 MiB is below the 6.00 MiB (1536 pages) in use; size unchanged"),
        "{msg}"
    );
    assert_eq!(statvfs(d.path()).0, 16 * MIB);
    assert_eq!(resized(d.path(), &["size=32m"]), "size 16.0 MiB -> 32.0 MiB\n");
    assert_eq!(statvfs(d.path()).0, 32 * MIB);
    assert_eq!(resized(d.path(), &["size=8m"]), "size 32.0 MiB -> 8.00 MiB\n");
    assert_eq!(statvfs(d.path()).0, 8 * MIB);
    // The new size holds: 2 MiB more fit, a third does not.
    let mut g = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(d.path().join("g"))
        .unwrap();
    g.write_all(&vec![1u8; 2 * MIB as usize]).unwrap();
    let e = g
        .write_all(&vec![1u8; MIB as usize])
        .and_then(|()| g.sync_all())
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    drop(g);
    check_pattern(&f, 6);
    // Unlimited is not a size a live mount can take, as tmpfs; nor another option.
    assert!(refused(d.path(), &["size=0"]).contains("cannot become unlimited"));
    assert!(refused(d.path(), &["mode=0700"]).contains("not mode"));
    assert!(refused(d.path(), &["size=banana"]).contains("size"));
    assert_eq!(statvfs(d.path()).0, 8 * MIB);
}

#[test]
fn nr_inodes_up_and_down_and_below_use_refused() {
    if !can_mount("nr_inodes_up_and_down_and_below_use_refused") {
        return;
    }
    let d = Daemon::start("size=8m,nr_inodes=100");
    for i in 0..10 {
        fs::write(d.path().join(format!("f{i}")), b"x").unwrap();
    }
    // The root and 10 files.
    let msg = refused(d.path(), &["nr_inodes=5"]);
    assert!(msg.contains("nr_inodes=5 is below the 11 in use (11 inodes"), "{msg}");
    assert_eq!(statvfs(d.path()).1, 100);
    assert_eq!(resized(d.path(), &["nr_inodes=20"]), "nr_inodes 100 -> 20\n");
    assert_eq!(statvfs(d.path()).1, 20);
    assert_eq!(resized(d.path(), &["nr_inodes=200"]), "nr_inodes 20 -> 200\n");
    assert_eq!(statvfs(d.path()).1, 200);
    // Several limits at once, in one list or apart.
    let out = resized(d.path(), &["size=16m,nr_inodes=50"]);
    assert_eq!(out, "size 8.00 MiB -> 16.0 MiB\nnr_inodes 200 -> 50\n");
    assert_eq!(statvfs(d.path()), (16 * MIB, 50));
    for i in 0..10 {
        assert_eq!(fs::read(d.path().join(format!("f{i}"))).unwrap(), b"x");
    }
    // A refusal of one limit changes none.
    let msg = refused(d.path(), &["size=32m", "nr_inodes=3"]);
    assert!(msg.contains("nr_inodes=3 is below the 11 in use"), "{msg}");
    assert_eq!(statvfs(d.path()), (16 * MIB, 50));
}

#[test]
fn remount_size_keeps_working_for_root_with_the_figures() {
    if !can_mount("remount_size_keeps_working_for_root_with_the_figures") {
        return;
    }
    let d = Daemon::start("size=16m,direct_io");
    write_pattern(&d.path().join("f"), 6);
    let remount = |opts: &str| {
        run(
            Command::new(rtmpfs_bin())
                .arg0("mount.fuse.rtmpfs")
                .arg("rtmpfs")
                .arg(d.path())
                .args(["-o", &format!("remount,{opts}")]),
            T,
        )
    };
    let out = remount("size=4m");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("size=4.00 MiB is below the 6.00 MiB (1536 pages) in use"),
        "{stderr}"
    );
    let out = remount("size=24m");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(statvfs(d.path()).0, 24 * MIB);
    check_pattern(&d.path().join("f"), 6);
}

#[test]
fn fsx_runs_across_a_memory_cut_that_forces_eviction() {
    if !can_mount("fsx_runs_across_a_memory_cut_that_forces_eviction") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fsx.sh");
    let fsx_found = Command::new("sh")
        .args([
            "-c",
            "command -v fsx || test -x \"${CARGO_HOME:-$HOME/.cargo}/bin/fsx\"",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(fsx_found, "fsx is not installed: run scripts/install-test-tools.sh");
    // fsx on two files of up to 4 MiB beside 8 MiB of known data, in a 32 MiB budget; cut to
    // 1 MiB while fsx runs: the cut must evict (the known data alone is 8 MiB), and fsx then
    // goes on with its files swapping in and out.
    let d = Daemon::start("size=64m,memory=32m");
    write_pattern(&d.path().join("ballast"), 8);
    let results = tempfile::tempdir().unwrap();
    let mut fsx = Command::new("bash")
        .arg(&script)
        .arg(d.path())
        .arg("15000")
        .env("FSX_FLEN", (4 * MIB).to_string())
        .env("FSX_TIMEOUT", "600")
        .env("RESULTS_DIR", results.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Cut once fsx is well under way (some hundreds of writes done).
    let start = Instant::now();
    let writes = |s: &Value| {
        s["requests"]["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == "write")
            .and_then(|k| k["count"].as_u64())
            .unwrap()
    };
    let writes_before = writes(&status(d.path()));
    while writes(&status(d.path())) < writes_before + 500 {
        assert!(start.elapsed() < Duration::from_secs(60), "fsx wrote nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(fsx.try_wait().unwrap().is_none(), "fsx ended before the cut");
    let evictions = field(&status(d.path()), "totals.evictions");
    let out = resized(d.path(), &["memory=1m"]);
    assert!(out.starts_with("memory 32.0 MiB -> 1.00 MiB"), "{out}");
    let s = status(d.path());
    assert!(
        field(&s, "totals.evictions") > evictions,
        "the cut evicted nothing: {s}"
    );
    let out = fsx.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "fsx failed across the cut: {log}");
    let s = status(d.path());
    assert_eq!(field(&s, "limits.memory.limit_bytes"), MIB);
    assert_eq!(
        field(&s, "totals.swap_read_errors") + field(&s, "totals.swap_write_errors"),
        0
    );
    assert_eq!(field(&s, "pages.poisoned"), 0);
    assert!(
        field(&s, "totals.swap_ins") > 0,
        "fsx never swapped in after the cut: {s}"
    );
    check_pattern(&d.path().join("ballast"), 8);
}
