//! Requests per operation, counted with `rtmpfs --stats` around each step: deterministic
//! counts, not timings. Each test also checks that what a removed round trip used to do is
//! still done right (the data, the size, the listing), since a cache or a skipped request that
//! loses coherence would pass a count alone. docs/fuse.md has the table of what is left.

mod common;

use common::{c_path, can_mount, stat_of, stats, Daemon, MountDir};
use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// All counters of a mount.
fn counts(mnt: &Path) -> HashMap<String, u64> {
    stats(mnt).into_iter().collect()
}

/// The request counters of `rtmpfs --stats` (the other lines are usage figures).
const REQUEST_KINDS: [&str; 17] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "create",
    "remove",
    "rename",
    "open",
    "release",
    "read",
    "write",
    "flush",
    "readdir",
    "readdirplus",
    "getxattr",
    "xattr",
    "other",
];

/// How many requests of each kind `f` cost (only kinds that changed).
fn requests_of(mnt: &Path, f: impl FnOnce()) -> HashMap<String, u64> {
    let before = counts(mnt);
    f();
    let after = counts(mnt);
    REQUEST_KINDS
        .iter()
        .filter_map(|k| {
            let d = after[*k] - before[*k];
            (d > 0).then(|| (k.to_string(), d))
        })
        .collect()
}

fn get(m: &HashMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

/// Files keep OPEN and RELEASE (no-open would lose `O_TRUNC` under `ATOMIC_O_TRUNC`, the
/// RELEASE of created files and the open-time refusals of immutable and append-only files:
/// docs/fuse.md, "The open and release of a file"), but no FLUSH (FOPEN_NOFLUSH),
/// and reads of a cached file reach the daemon not at all (FOPEN_KEEP_CACHE).
#[test]
fn open_and_close_cost_open_and_release_only() {
    if !can_mount("open_and_close_cost_open_and_release_only") {
        return;
    }
    let d = Daemon::start("size=16m");
    let f = d.path().join("f");
    std::fs::write(&f, b"hello").unwrap();
    let _ = std::fs::read(&f).unwrap();
    let n = 50;
    let r = requests_of(d.path(), || {
        for _ in 0..n {
            assert_eq!(std::fs::read(&f).unwrap(), b"hello");
        }
    });
    // One GETATTR: the READ before the loop reached the daemon, after which the kernel holds
    // the atime stale, and the first `fstat` of `fs::read` refreshes it.
    let expected: HashMap<String, u64> = [
        ("open".to_string(), n),
        ("release".to_string(), n),
        ("getattr".to_string(), 1),
    ]
    .into();
    assert_eq!(r, expected);
}

/// Listing a cached directory costs its OPENDIR and RELEASEDIR only (not
/// `FUSE_NO_OPENDIR_SUPPORT`: the engine's directory handle holds where a listing ends), the
/// kernel keeps the listing (CACHE_DIR) and drops it when the directory changes.
#[test]
fn directory_listings_cost_open_and_release_only_and_stay_coherent() {
    if !can_mount("directory_listings_cost_open_and_release_only_and_stay_coherent") {
        return;
    }
    let d = Daemon::start("size=16m");
    let dir = d.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..100 {
        std::fs::write(dir.join(format!("f{i}")), b"").unwrap();
    }
    let list = |dir: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let _ = list(&dir);
    let r = requests_of(d.path(), || {
        for _ in 0..10 {
            assert_eq!(list(&dir).len(), 100);
        }
    });
    assert_eq!(
        (get(&r, "open"), get(&r, "release")),
        (10, 10),
        "one OPENDIR and RELEASEDIR per listing: {r:?}"
    );
    for kind in ["readdir", "readdirplus", "lookup"] {
        assert_eq!(get(&r, kind), 0, "cached listings: {r:?}");
    }
    // At most one GETATTR: the kernel refreshes the directory's atime, which it marked stale
    // after the last READDIRPLUS reached us.
    assert!(get(&r, "getattr") <= 1, "{r:?}");
    std::fs::write(dir.join("new"), b"").unwrap();
    std::fs::remove_file(dir.join("f0")).unwrap();
    std::fs::rename(dir.join("f1"), dir.join("g1")).unwrap();
    let after = list(&dir);
    assert_eq!(after.len(), 100);
    assert!(after.contains(&"new".into()) && after.contains(&"g1".into()));
    assert!(!after.contains(&"f0".into()) && !after.contains(&"f1".into()));
    // Requests on a directory descriptor.
    let h = std::fs::File::open(&dir).unwrap();
    h.sync_all().expect("fsync of a directory descriptor");
    h.set_permissions(std::fs::Permissions::from_mode(0o700))
        .expect("fchmod of a directory descriptor");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777, 0o700);
}

/// A missing name is asked once (a negative entry, node 0, cached for the entry timeout), and
/// creating it through the mount replaces the negative entry.
#[test]
fn missing_names_are_asked_once() {
    if !can_mount("missing_names_are_asked_once") {
        return;
    }
    let d = Daemon::start("size=16m");
    let missing = d.path().join("missing");
    let _ = std::fs::metadata(&missing);
    let r = requests_of(d.path(), || {
        for _ in 0..20 {
            assert!(std::fs::metadata(&missing).is_err());
        }
    });
    assert_eq!(get(&r, "lookup"), 0, "{r:?}");
    std::fs::write(&missing, b"now here").unwrap();
    assert_eq!(std::fs::read(&missing).unwrap(), b"now here");
}

/// A request answered with an errno moves `failed` in `rtmpfs --stats` and is logged at debug
/// level with its name and errno. A missing name is not a failure: the daemon answers it with
/// a negative entry, and the kernel makes the ENOENT.
#[test]
fn failed_requests_are_counted_and_logged() {
    if !can_mount("failed_requests_are_counted_and_logged") {
        return;
    }
    let d = Daemon::start_with(MountDir::new(), "size=16m", &[("RUST_LOG", "rtmpfs_fuse=debug")]);
    let dir = d.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("f"), b"x").unwrap();
    let before = stat_of(d.path(), "failed");
    let err = std::fs::metadata(d.path().join("missing")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(
        stat_of(d.path(), "failed"),
        before,
        "a negative entry counted as failed"
    );
    let err = std::fs::remove_dir(&dir).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    assert_eq!(stat_of(d.path(), "failed"), before + 1);
    let log = without_colours(&d.stderr());
    let line = log
        .lines()
        .find(|l| l.contains("request failed") && l.contains("rmdir"))
        .unwrap_or_else(|| panic!("no debug line for the failed RMDIR in: {log}"));
    assert!(line.contains(&format!("errno={}", libc::ENOTEMPTY)), "{line}");
}

/// `s` without ANSI colour sequences (`ESC [ ... m`), which the log carries around field names.
fn without_colours(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Writeback cache (`-o writeback`): a write beyond `size=` succeeds into the kernel's cache and
/// the ENOSPC surfaces at fsync, or at close when nothing called fsync; data written before,
/// within the limit, is all there.
#[test]
fn writeback_reports_a_full_mount_at_fsync_and_close() {
    if !can_mount("writeback_reports_a_full_mount_at_fsync_and_close") {
        return;
    }
    let d = Daemon::start("size=1m,writeback");
    let kept = d.path().join("kept");
    let data: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(&kept, &data).unwrap();
    let big = vec![1u8; 2 << 20];
    // fsync reports it.
    let mut f = std::fs::File::create(d.path().join("big")).unwrap();
    f.write_all(&big).expect("writes land in the kernel's cache");
    let err = f.sync_all().expect_err("fsync must report the full mount");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(f);
    std::fs::remove_file(d.path().join("big")).unwrap();
    // close reports it when nothing called fsync.
    let p = c_path(&d.path().join("big2"));
    // SAFETY: plain syscalls on a valid path and buffer; the fd is closed once.
    let close_errno = unsafe {
        let fd = libc::open(p.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
        assert!(fd >= 0);
        assert_eq!(libc::write(fd, big.as_ptr().cast(), big.len()), big.len() as isize);
        if libc::close(fd) == 0 {
            0
        } else {
            common::errno()
        }
    };
    assert_eq!(close_errno, libc::ENOSPC);
    std::fs::remove_file(d.path().join("big2")).unwrap();
    // Nothing else lost: the first file, read back from the engine.
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    assert_eq!(std::fs::read(&kept).unwrap(), data);
    // And the mount takes data again once there is room.
    std::fs::write(d.path().join("again"), vec![3u8; 256 * 1024]).unwrap();
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    assert_eq!(std::fs::read(d.path().join("again")).unwrap(), vec![3u8; 256 * 1024]);
}

/// Without `writeback` the same full mount fails the write itself (the default's promise).
#[test]
fn without_writeback_the_write_itself_fails() {
    if !can_mount("without_writeback_the_write_itself_fails") {
        return;
    }
    let d = Daemon::start("size=1m");
    let mut f = std::fs::File::create(d.path().join("big")).unwrap();
    let err = f.write_all(&vec![1u8; 2 << 20]).expect_err("write must fail");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
}

/// `O_WRONLY|O_APPEND` files under the writeback cache: the kernel places appends and reads
/// pages before partial writes through the same handle; contents must match a plain model.
#[test]
fn writeback_append_and_partial_pages_stay_right() {
    if !can_mount("writeback_append_and_partial_pages_stay_right") {
        return;
    }
    let d = Daemon::start("size=16m,writeback");
    let f = d.path().join("f");
    std::fs::write(&f, vec![b'a'; 5000]).unwrap();
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let mut model = vec![b'a'; 5000];
    {
        let mut h = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(0)
            .open(&f)
            .unwrap();
        h.write_all(b"tail").unwrap();
        model.extend_from_slice(b"tail");
        let mut w = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        w.seek(SeekFrom::Start(4094)).unwrap();
        w.write_all(b"XYZ").unwrap();
        model[4094..4097].copy_from_slice(b"XYZ");
        w.sync_all().unwrap();
        h.write_all(b"more").unwrap();
        model.extend_from_slice(b"more");
    }
    let created = d.path().join("created");
    {
        let mut c = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&created)
            .unwrap();
        c.write_all(b"one").unwrap();
        c.write_all(b"two").unwrap();
        c.sync_all().unwrap();
    }
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), model);
    assert_eq!(std::fs::read(&created).unwrap(), b"onetwo");
}

/// `setxattr(2)` through libc (std has no xattr calls).
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and live; value/len describe a live buffer.
    let r = unsafe { libc::setxattr(c_path(path).as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(r, 0, "setxattr {name}: {}", std::io::Error::last_os_error());
}

/// `listxattr(2)`: the names, NUL-separated.
fn list_xattr(path: &Path) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: the path is NUL-terminated; buf is live and its length is passed.
    let n = unsafe { libc::listxattr(c_path(path).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(usize::try_from(n).unwrap());
    buf
}

/// Under `FUSE_ALLOW_IDMAP` the kernel sends the caller's ids only with requests that create an
/// inode, so the adapter reads them from /proc (a file read, ~3 round trips' worth) where the
/// engine's answer depends on who asks. What `tar x` and `cp -a` do to each file (chown, chmod,
/// utimes, listxattr, an access ACL, fallocate, copy_file_range) reads them nowhere on a file
/// without set-id bits or `trusted.` names (`credential_reads` in `--stats`); a file with a
/// set-group-ID bit, where root's chown keeps it and anyone else's would drop it, still reads them,
/// and so does listing a file with a `trusted.` name, which only root sees.
#[test]
fn credentials_are_read_only_where_the_answer_depends_on_them() {
    if !can_mount("credentials_are_read_only_where_the_answer_depends_on_them") {
        return;
    }
    let d = Daemon::start("size=16m");
    let reads = || counts(d.path())["credential_reads"];
    let f = d.path().join("f");
    let g = d.path().join("g");
    std::fs::write(&f, b"hello").unwrap();
    std::fs::write(&g, b"").unwrap();
    // An access ACL equal to mode 0640, as cp -a copies it.
    let acl: [u8; 28] = [
        2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 4, 0, 4, 0, 255, 255, 255, 255, 32, 0, 0, 0, 255, 255, 255, 255,
    ];
    let before = reads();
    std::os::unix::fs::chown(&f, Some(1), Some(2)).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(list_xattr(&f), b"");
    set_xattr(&f, "system.posix_acl_access", &acl);
    set_xattr(&f, "user.note", b"x");
    assert_eq!(list_xattr(&f), b"user.note\0");
    {
        use std::os::fd::AsRawFd;
        let src = std::fs::File::open(&f).unwrap();
        let dst = std::fs::File::options().write(true).open(&g).unwrap();
        // SAFETY: two live descriptors; null offsets use the file positions.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                5,
                0,
            )
        };
        assert_eq!(n, 5, "copy_file_range: {}", std::io::Error::last_os_error());
        // SAFETY: a live descriptor.
        assert_eq!(unsafe { libc::fallocate(dst.as_raw_fd(), 0, 0, 8192) }, 0);
    }
    assert_eq!(reads() - before, 0, "no credential read for a file without set-id bits");
    let m = std::fs::metadata(&f).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777, m.mtime()),
        (1, 2, 0o640, 1_000_000)
    );
    assert_eq!(std::fs::read(&g).unwrap()[..5], *b"hello");

    // Set-group-ID without group-execute: root keeps it across chown (it holds CAP_FSETID);
    // the engine needs to know who asks, so it reads the credentials.
    std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o2644)).unwrap();
    let before = reads();
    std::os::unix::fs::chown(&g, Some(3), Some(4)).unwrap();
    assert!(
        reads() > before,
        "a chown of a set-group-ID file reads the caller's credentials"
    );
    assert_eq!(
        std::fs::metadata(&g).unwrap().mode() & 0o7777,
        0o2644,
        "root's chown keeps it"
    );

    // trusted. names are listed for root only.
    set_xattr(&g, "trusted.t", b"1");
    let before = reads();
    assert_eq!(list_xattr(&g), b"trusted.t\0");
    assert!(
        reads() > before,
        "listing a trusted. name reads the caller's credentials"
    );
}
