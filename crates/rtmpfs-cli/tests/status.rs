//! `rtmpfs status` (issue 12 item 3): the figures of `--json` checked against known workloads
//! (N MiB written through a RAM budget of M MiB: resident, swapped, evictions, swap-ins and the
//! rates agree), percentiles for every request kind that ran, the object checked field by field
//! against docs/status.md (the schema), `RTMPFS_LATENCY=off`, `--watch`, the `--stats` alias, and
//! a user who is neither root nor the mount's owner refused.
//!
//! Schema check: by hand rather than with a JSON Schema validator crate. The test walks the
//! object, collects every field path with its JSON type, and requires that set to equal the
//! table of docs/status.md exactly (same paths, same types, nothing more, nothing less). That
//! proves the document and the output agree in both directions, which is what a checked-in JSON
//! Schema file would prove only if it were itself kept in step with the doc, and costs no
//! dependency tree (the `jsonschema` crate brings in dozens of crates for one test).

mod common;

use common::{can_mount, rtmpfs_bin, run, Daemon, MountDir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

fn rtmpfs(args: &[&str], mnt: &Path) -> Output {
    run(Command::new(rtmpfs_bin()).args(args).arg(mnt), T)
}

/// `rtmpfs status --json MNT`, parsed.
fn status(mnt: &Path) -> Value {
    let out = rtmpfs(&["status", "--json"], mnt);
    assert!(
        out.status.success(),
        "status --json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one object on one line: {text}");
    serde_json::from_str(&text).unwrap()
}

fn u(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_u64().unwrap_or_else(|| panic!("{path} is not a u64 in {v}"))
}

fn kind<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["requests"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == name)
        .unwrap_or_else(|| panic!("no request kind {name}"))
}

/// Write `mib` MiB of a known pattern to `path` (O_DIRECT: every byte reaches the daemon now).
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
    f.sync_all().unwrap();
}

fn block(i: u64) -> Vec<u8> {
    (0..MIB)
        .map(|b| (b as u8).wrapping_mul(13).wrapping_add(i as u8))
        .collect()
}

/// Read `path` back (O_DIRECT: from the daemon, not the page cache) and compare.
fn check_pattern(path: &Path, mib: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..mib {
        f.read_exact(&mut buf).unwrap();
        assert!(buf == block(i), "MiB {i} differs");
    }
}

#[test]
fn json_figures_agree_with_what_was_written() {
    if !can_mount("json_figures_agree_with_what_was_written") {
        return;
    }
    // 16 MiB through a RAM budget of 4 MiB, with direct_io so that reads reach the daemon; no
    // compressed tier (the next test has one), so every page that leaves RAM goes to swap.
    let d = Daemon::start("size=64m,memory=4m,compress=off,direct_io");
    let f = d.path().join("f");
    write_pattern(&f, 16);
    let s = status(d.path());
    let (resident, swapped) = (u(&s, "pages.resident"), u(&s, "pages.swapped"));
    assert_eq!(resident + swapped, 16 * MIB / PAGE, "every page is somewhere: {s}");
    assert_eq!(u(&s, "limits.size.used_bytes"), 16 * MIB);
    assert_eq!(u(&s, "limits.size.limit_bytes"), 64 * MIB);
    assert_eq!(u(&s, "limits.memory.limit_bytes"), 4 * MIB);
    // The budget holds (plus the swap-in reserve of max/64 frames).
    assert!(u(&s, "limits.memory.used_bytes") <= 4 * MIB + 16 * PAGE, "{s}");
    assert!(resident * PAGE <= 4 * MIB + 16 * PAGE, "{s}");
    // Every page that left RAM was evicted once (nothing was swapped in yet).
    assert_eq!(
        u(&s, "totals.evictions") + u(&s, "totals.clean_evictions"),
        swapped,
        "{s}"
    );
    assert_eq!(u(&s, "totals.swap_ins"), 0);
    assert_eq!(u(&s, "limits.swap.used_bytes"), swapped * PAGE);
    assert!(s["limits"]["swap"]["enabled"].as_bool().unwrap());
    // Within the last seconds: evictions, no swap-ins.
    assert!(s["rates"]["evictions_per_second"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["rates"]["swap_ins_per_second"].as_f64().unwrap().abs() < 1e-9, "{s}");
    assert!(s["pages"]["compressed"].is_null());

    check_pattern(&f, 16);
    let s = status(d.path());
    // Reading 16 MiB through 4 MiB swapped back at least what was out.
    assert!(u(&s, "totals.swap_ins") >= swapped, "{s}");
    assert!(s["rates"]["swap_ins_per_second"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(u(&s, "pages.resident") + u(&s, "pages.swapped"), 16 * MIB / PAGE);

    // Open handles: two files open now (RELEASE is asynchronous: the reader's may still be on
    // its way).
    let _a = File::open(&f).unwrap();
    let _b = File::open(&f).unwrap();
    assert!(
        common::wait_until(Duration::from_secs(5), || u(&status(d.path()), "open_files") == 2),
        "{}",
        status(d.path())
    );
}

#[test]
fn every_request_kind_that_ran_has_percentiles() {
    if !can_mount("every_request_kind_that_ran_has_percentiles") {
        return;
    }
    let d = Daemon::start("size=64m,direct_io");
    let dir = d.path().join("dir");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("a"), b"hello").unwrap();
    assert_eq!(fs::read(dir.join("a")).unwrap(), b"hello");
    fs::rename(dir.join("a"), dir.join("b")).unwrap();
    let _ = fs::read_dir(&dir).unwrap().count();
    fs::remove_file(dir.join("b")).unwrap();
    let s = status(d.path());
    let mut ran = 0;
    for k in s["requests"]["kinds"].as_array().unwrap() {
        let (p50, p99) = (&k["p50_ns"], &k["p99_ns"]);
        if k["count"].as_u64().unwrap() == 0 {
            assert!(p50.is_null() && p99.is_null(), "{k}");
            continue;
        }
        ran += 1;
        let (p50, p99) = (p50.as_u64().unwrap_or(0), p99.as_u64().unwrap_or(0));
        assert!(p50 > 0 && p50 <= p99 && p99 < 60_000_000_000, "{k}");
    }
    for name in [
        "lookup", "create", "write", "read", "open", "release", "rename", "remove",
    ] {
        assert!(u(kind(&s, name), "count") > 0, "no {name} ran: {s}");
    }
    assert!(u(kind(&s, "readdir"), "count") + u(kind(&s, "readdirplus"), "count") > 0);
    assert!(ran >= 9);
    assert!(s["requests"]["latency_recorded"].as_bool().unwrap());

    // The table shows the same kinds with their percentiles.
    let out = rtmpfs(&["status"], d.path());
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    for line in table
        .lines()
        .filter(|l| l.starts_with("write ") || l.starts_with("create "))
    {
        assert_eq!(
            line.split_whitespace().count(),
            6,
            "kind, count, p50 and p99 with units: {line}"
        );
    }
    assert!(table.lines().any(|l| l.starts_with("write ")), "{table}");
}

#[test]
fn latency_off_counts_but_does_not_time() {
    if !can_mount("latency_off_counts_but_does_not_time") {
        return;
    }
    let d = Daemon::start_with(MountDir::new(), "size=8m", &[("RTMPFS_LATENCY", "off")]);
    fs::write(d.path().join("a"), b"x").unwrap();
    let s = status(d.path());
    assert!(!s["requests"]["latency_recorded"].as_bool().unwrap());
    assert!(u(kind(&s, "create"), "count") > 0);
    for k in s["requests"]["kinds"].as_array().unwrap() {
        assert!(k["p50_ns"].is_null() && k["p99_ns"].is_null(), "{k}");
    }
}

/// The JSON type of `v` as docs/status.md names it.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() => "u64",
        Value::Number(_) => "f64",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every leaf of `v` as `path -> types seen` (array elements under `path[]`).
fn leaves(v: &Value, path: &str, out: &mut BTreeMap<String, Vec<&'static str>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(x, &p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                leaves(x, &format!("{path}[]"), out);
            }
        }
        _ => out.entry(path.to_string()).or_default().push(type_of(v)),
    }
}

/// The schema table of docs/status.md: field path -> documented type.
fn documented_schema() -> BTreeMap<String, String> {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/status.md")).unwrap();
    doc.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let field = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            let ty = cells.get(1)?.replace("\\|", "|");
            Some((field.to_string(), ty))
        })
        .collect()
}

/// Whether a value of JSON type `seen` fits the documented type (`f64` also takes integers).
fn fits(seen: &str, documented: &str) -> bool {
    documented
        .split('|')
        .any(|t| t == seen || (t == "f64" && seen == "u64"))
}

/// The compressed tier's figures (issue 14): 16 MiB of a compressible pattern through a RAM
/// budget of 4 MiB with the default `compress=lz4` and a 1 MiB pool: every page is somewhere,
/// the pool stays within its cap and the budget, the ratio is real, and reading back hits it.
#[test]
fn json_figures_of_the_compressed_pool() {
    if !can_mount("json_figures_of_the_compressed_pool") {
        return;
    }
    let d = Daemon::start("size=64m,memory=4m,direct_io");
    let f = d.path().join("f");
    write_pattern(&f, 16);
    let s = status(d.path());
    let pages =
        |s: &Value| u(s, "pages.resident") + u(s, "pages.swapped") + u(s, "pages.compressed") + u(s, "pages.zero");
    assert_eq!(pages(&s), 16 * MIB / PAGE, "every page is somewhere: {s}");
    assert_eq!(s["compressed_pool"]["compression"], "lz4");
    assert_eq!(u(&s, "compressed_pool.limit_bytes"), MIB, "25% of memory=");
    let pool = u(&s, "compressed_pool.used_bytes");
    assert!(pool > 0 && pool <= MIB, "{s}");
    assert_eq!(u(&s, "compressed_pool.pages"), u(&s, "pages.compressed"));
    assert!(u(&s, "compressed_pool.stores") >= u(&s, "pages.compressed"), "{s}");
    assert!(s["compressed_pool"]["ratio"].as_f64().unwrap() > 2.0, "{s}");
    // The budget holds, the pool's bytes included (plus the swap-in reserve of max/64 frames).
    assert!(u(&s, "limits.memory.used_bytes") <= 4 * MIB + 16 * PAGE, "{s}");
    assert!(u(&s, "limits.memory.used_bytes") >= pool, "{s}");
    check_pattern(&f, 16);
    let s = status(d.path());
    assert!(u(&s, "compressed_pool.hits") > 0, "{s}");
    assert_eq!(pages(&s), 16 * MIB / PAGE, "{s}");
    let table = String::from_utf8(rtmpfs(&["status"], d.path()).stdout).unwrap();
    assert!(
        table.contains("(lz4, ratio ") && table.contains("written back"),
        "{table}"
    );
}

#[test]
fn json_matches_the_documented_schema_field_by_field() {
    if !can_mount("json_matches_the_documented_schema_field_by_field") {
        return;
    }
    let schema = documented_schema();
    assert!(
        schema.len() >= 30,
        "the schema table of docs/status.md was not found: {schema:?}"
    );
    // Both kinds of mount, so that nullable fields are seen both ways.
    let a = Daemon::start("size=16m,nr_inodes=1000,memory=2m,swap_size=64m");
    let b = Daemon::start("");
    fs::write(a.path().join("f"), vec![7u8; 1 << 20]).unwrap();
    for d in [&a, &b] {
        let s = status(d.path());
        assert_eq!(s["schema"], 1);
        let mut seen = BTreeMap::new();
        leaves(&s, "", &mut seen);
        let fields: Vec<&String> = seen.keys().collect();
        let documented: Vec<&String> = schema.keys().collect();
        assert_eq!(
            fields, documented,
            "the object's fields and docs/status.md's table differ"
        );
        for (path, types) in &seen {
            for t in types {
                assert!(fits(t, &schema[path]), "{path}: {t} is not {}", schema[path]);
            }
        }
    }
    // The limited mount fills the nullable limits; the other leaves them null.
    let s = status(a.path());
    assert_eq!(u(&s, "limits.inodes.limit"), 1000);
    assert_eq!(u(&s, "limits.swap.limit_bytes"), 64 * MIB);
    let s = status(b.path());
    assert!(s["limits"]["memory"]["limit_bytes"].is_null(), "{s}");
    assert!(!s["limits"]["swap"]["enabled"].as_bool().unwrap());
    assert!(s["limits"]["swap"]["limit_bytes"].is_null());
}

#[test]
fn a_user_who_is_neither_root_nor_the_owner_is_refused() {
    if !can_mount("a_user_who_is_neither_root_nor_the_owner_is_refused") {
        return;
    }
    // allow_other (root's default): the user can see the mount point, only the socket refuses.
    let d = Daemon::start("size=8m");
    for args in [&["status"][..], &["status", "--json"], &["resize", "size=4m"]] {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(rtmpfs_bin())
            .args(&args[..1])
            .arg(d.path())
            .args(&args[1..]);
        let out = run(&mut cmd, T);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed figures");
        assert!(
            stderr.contains("permission denied: only root and the mount's owner (uid 0)"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // The size did not change.
    assert_eq!(u(&status(d.path()), "limits.size.limit_bytes"), 8 * MIB);
}

#[test]
fn stats_is_an_alias_and_watch_refreshes() {
    if !can_mount("stats_is_an_alias_and_watch_refreshes") {
        return;
    }
    let d = Daemon::start("size=8m");
    let alias = Command::new(rtmpfs_bin())
        .arg("--stats")
        .arg(d.path())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&alias.stdout);
    assert!(
        alias.status.success() && table.contains("limit") && table.contains("request"),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("size ")), "{table}");

    // --watch 0.2 --json: a new object every 0.2 s until killed.
    let mut child = Command::new(rtmpfs_bin())
        .args(["status", "--json", "--watch", "0.2"])
        .arg(d.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let objects: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(objects.len() >= 3, "{} refreshes in 1.5 s: {text}", objects.len());
    let up: Vec<f64> = objects.iter().map(|o| o["uptime_seconds"].as_f64().unwrap()).collect();
    assert!(up.windows(2).all(|w| w[1] > w[0]), "{up:?}");

    let bad = rtmpfs(&["status", "--watch", "0"], d.path());
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--watch SECS"));
}
