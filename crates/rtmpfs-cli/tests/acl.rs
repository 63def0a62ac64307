//! POSIX ACLs over the mount, against kernel tmpfs (the oracle) in the same run: one shell
//! scenario (`acl_scenario.sh`, with `setfacl`/`getfacl` from the `acl` package and
//! `setpriv` to act as other users) runs on both, and every line must match. It covers access
//! allowed and denied by named user and group entries and the mask, chmod keeping the mask in
//! step, setfacl by root, by the owner and by a non-owner (EPERM), default ACLs on a file
//! (refused), an ACL equal to the mode (not stored: no `+`), default ACL inheritance by files,
//! fifos and directories (umask ignored, mode masked), umask applied without one, symlinks
//! untouched, set-group-ID dropped by setfacl from an owner outside the group and kept by a
//! member and by root, and removing ACLs (`-b`, `-k`, `-x`, recursive).
//!
//! The transport comes from `RTMPFS_TEST_TRANSPORT` (see `common`); run it with both.

mod common;

use common::{can_mount, run, Daemon, Tmpfs};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SCENARIO: &str = include_str!("acl_scenario.sh");

fn run_scenario(dir: &Path) -> String {
    let out = run(
        Command::new("sh").arg("-c").arg(SCENARIO).arg("sh").arg(dir),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "scenario failed on {}: {out:?}", dir.display());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn acls_as_kernel_tmpfs() {
    if !can_mount("acls_as_kernel_tmpfs") {
        return;
    }
    for tool in ["setfacl", "getfacl", "setpriv"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is missing: run scripts/install-test-tools.sh (apt package acl)"
        );
    }
    let tmpfs = Tmpfs::mount("mode=0755");
    let oracle = run_scenario(tmpfs.path());
    let d = Daemon::start("");
    let ours = run_scenario(d.path());
    // The scenario must have exercised what it claims, on the oracle itself.
    for line in [
        "ok: as 1001 cat f",
        "denied: as 1002 cat f",
        "group:1003:rw-\t#effective:r--",
        "denied: as 1001 setfacl -m u:1002:r f",
        "-rwxr-x--x 751 0 0   eq",
        "-rw-rw---- 660 0 0 + dd/f",
        "default:user:1001:rwx",
        "-rw-r----- 640 0 0   plain",
        "-rwxrwx--- 770 1000 2000 + sg",
        "-rwxrws--- 2770 1000 2000 + sg",
    ] {
        assert!(oracle.contains(line), "kernel tmpfs output lacks {line:?}:\n{oracle}");
    }
    let diff: Vec<String> = oracle
        .lines()
        .zip(ours.lines())
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("line {}: tmpfs {a:?}, rtmpfs {b:?}", i + 1))
        .collect();
    assert!(
        diff.is_empty() && oracle.lines().count() == ours.lines().count(),
        "rtmpfs differs from kernel tmpfs:\n{}\n--- rtmpfs output:\n{ours}",
        diff.join("\n")
    );
}
