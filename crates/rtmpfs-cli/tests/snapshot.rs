//! Images through the mount (issue 13): `rtmpfs snapshot MOUNTPOINT FILE` then `-o restore=FILE`
//! gives the same tree (attributes with nanosecond times, xattrs, `SEEK_DATA` map, bytes, link
//! structure); `-o persist=FILE` restores at mount and saves at SIGTERM and at umount; a damaged
//! or wrong-key image mounts nothing and says why in one line; a save into a full filesystem
//! fails with the reason and leaves the previous image intact. Every mount is unmounted (the
//! `Daemon` and `Tmpfs` guards), also on failure.

mod common;

use common::{can_mount, mounted_at, rtmpfs_bin, run, Daemon, MountDir, Tmpfs};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Metadata of one path, without inode numbers: (mode, uid, gid, nlink, size, blocks, rdev,
/// atime, mtime, ctime with nanoseconds).
type Meta = (u32, u32, u32, u64, u64, u64, u64, [(i64, i64); 3]);

fn meta_of(m: &fs::Metadata) -> Meta {
    (
        m.mode(),
        m.uid(),
        m.gid(),
        m.nlink(),
        m.size(),
        m.blocks(),
        m.rdev(),
        [
            (m.atime(), m.atime_nsec()),
            (m.mtime(), m.mtime_nsec()),
            (m.ctime(), m.ctime_nsec()),
        ],
    )
}

fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let cp = c(p);
    let mut names = vec![0u8; 65536];
    // SAFETY: valid path and buffer of the given length.
    let n = unsafe { libc::llistxattr(cp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {p:?}");
    names.truncate(n as usize);
    let mut out = BTreeMap::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: valid strings and buffer.
        let n = unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(n >= 0, "lgetxattr {p:?} {name:?}");
        v.truncate(n as usize);
        out.insert(name.to_vec(), v);
    }
    out
}

/// `SEEK_DATA`/`SEEK_HOLE` extents of a regular file and their bytes.
fn data_map(p: &Path) -> (Vec<(i64, i64)>, Vec<u8>) {
    let f = fs::File::open(p).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let (mut extents, mut bytes) = (Vec::new(), Vec::new());
    let mut at = 0;
    loop {
        // SAFETY: an open descriptor.
        let start = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if start < 0 {
            break;
        }
        // SAFETY: as above.
        let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
        let mut buf = vec![0u8; (end - start) as usize];
        f.read_exact_at(&mut buf, start as u64).unwrap();
        extents.push((start, end));
        bytes.extend(buf);
        at = end;
    }
    (extents, bytes)
}

/// A path's xattrs, symlink target, and data map (extents and their bytes).
type Detail = (BTreeMap<Vec<u8>, Vec<u8>>, Vec<u8>, (Vec<(i64, i64)>, Vec<u8>));

/// What a tree is: per path its metadata (first pass, before any read moves an atime), then
/// xattrs, symlink target or data map, and which paths share an inode.
#[derive(Debug, PartialEq, Eq)]
struct Tree {
    meta: BTreeMap<PathBuf, Meta>,
    detail: BTreeMap<PathBuf, Detail>,
    links: BTreeMap<PathBuf, PathBuf>,
}

fn walk(root: &Path) -> Tree {
    let mut paths = vec![PathBuf::new()];
    let mut i = 0;
    let mut meta = BTreeMap::new();
    let mut first: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut links = BTreeMap::new();
    while i < paths.len() {
        let rel = paths[i].clone();
        i += 1;
        let m = fs::symlink_metadata(root.join(&rel)).unwrap();
        meta.insert(rel.clone(), meta_of(&m));
        let f = first.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
        links.insert(rel.clone(), f);
        if m.is_dir() {
            let mut names: Vec<_> = fs::read_dir(root.join(&rel))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            paths.extend(names.into_iter().map(|n| rel.join(n)));
        }
    }
    let mut detail = BTreeMap::new();
    for rel in meta.keys() {
        let p = root.join(rel);
        let m = fs::symlink_metadata(&p).unwrap();
        let target = if m.file_type().is_symlink() {
            fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
        } else {
            Vec::new()
        };
        let data = if m.is_file() {
            data_map(&p)
        } else {
            (Vec::new(), Vec::new())
        };
        detail.insert(rel.clone(), (xattrs(&p), target, data));
    }
    Tree { meta, detail, links }
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let (cp, cn) = (c(p), CString::new(name).unwrap());
    // SAFETY: valid strings and buffer.
    let r = unsafe { libc::lsetxattr(cp.as_ptr(), cn.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(r, 0, "setxattr {name} on {p:?}: {}", std::io::Error::last_os_error());
}

fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: valid path and two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c(p).as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {p:?}");
}

/// A tree with every kind of inode, holes, xattrs, hard links, owners and exact times.
fn build(root: &Path) {
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/small"), b"hello").unwrap();
    let f = fs::File::create(root.join("d/sparse")).unwrap();
    f.write_all_at(&[7u8; 5000], 1 << 30).unwrap();
    f.write_all_at(b"start", 0).unwrap();
    drop(f);
    fs::hard_link(root.join("d/small"), root.join("hard")).unwrap();
    std::os::unix::fs::symlink("d/small", root.join("sym")).unwrap();
    // SAFETY: valid paths.
    unsafe {
        assert_eq!(libc::mkfifo(c(&root.join("fifo")).as_ptr(), 0o640), 0);
        assert_eq!(
            libc::mknod(
                c(&root.join("null")).as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(1, 3)
            ),
            0
        );
        assert_eq!(libc::chown(c(&root.join("d/small")).as_ptr(), 1234, 5678), 0);
        assert_eq!(libc::chmod(c(&root.join("d")).as_ptr(), 0o2751), 0);
    }
    set_xattr(&root.join("d/small"), "user.note", b"a note");
    set_xattr(&root.join("d/small"), "trusted.t", b"\x00\x01\x02");
    set_xattr(&root.join("d"), "user.dir", b"x");
    set_xattr(root, "user.root", b"r");
    set_times(
        &root.join("d/sparse"),
        (1_000_000_000, 111_111_111),
        (1_500_000_000, 999_999_999),
    );
    set_times(&root.join("sym"), (1_100_000_000, 5), (1_200_000_000, 6));
}

fn rtmpfs(args: &[&std::ffi::OsStr]) -> Output {
    run(Command::new(rtmpfs_bin()).args(args), T)
}

fn snapshot(mnt: &Path, file: &Path) -> Output {
    rtmpfs(&["snapshot".as_ref(), mnt.as_os_str(), file.as_os_str()])
}

/// Run `rtmpfs DIR -o OPTS` expecting it to refuse at start: its one stderr line; nothing
/// mounted.
fn refused_mount(opts: &str) -> String {
    let dir = MountDir::new();
    let out = rtmpfs(&[dir.path().as_os_str(), "-o".as_ref(), opts.as_ref()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "mounted with {opts}: {err}");
    assert!(mounted_at(dir.path()).is_none(), "something is mounted after a refusal");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.last().copied().unwrap_or_default().to_string()
}

#[test]
fn snapshot_then_restore_gives_the_same_tree() {
    if !can_mount("snapshot_then_restore_gives_the_same_tree") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("img");
    let a = Daemon::start("size=2g,nr_inodes=1000,mode=0750");
    build(a.path());
    let out = snapshot(a.path(), &image);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("saved"), "{out:?}");
    // Sparse: 1 GiB of hole costs nothing.
    assert!(fs::metadata(&image).unwrap().len() < 64 * 1024);
    let before = walk(a.path());
    // Again over the same file (atomic replace), after a change that must not be in the first.
    fs::write(a.path().join("later"), b"later").unwrap();
    let second = work.path().join("img2");
    assert!(snapshot(a.path(), &second).status.success());
    let b = Daemon::start(&format!("restore={}", image.display()));
    assert_eq!(walk(b.path()), before);
    // The limits came with the image.
    let (sa, sb) = (nix_statfs(a.path()), nix_statfs(b.path()));
    assert_eq!((sa.0, sa.1), (sb.0, sb.1));
    let c = Daemon::start(&format!("restore={}", second.display()));
    assert_eq!(fs::read(c.path().join("later")).unwrap(), b"later");
}

/// (blocks, files) of statfs.
fn nix_statfs(p: &Path) -> (u64, u64) {
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-parameter.
    assert_eq!(unsafe { libc::statvfs(c(p).as_ptr(), &raw mut s) }, 0);
    (s.f_blocks, s.f_files)
}

#[test]
fn persist_saves_at_sigterm_and_umount_and_restores_at_mount() {
    if !can_mount("persist_saves_at_sigterm_and_umount_and_restores_at_mount") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("persist.img");
    let key = work.path().join("key");
    fs::write(&key, [0x5au8; 32]).unwrap();
    let opts = format!("persist={},image_key={}", image.display(), key.display());
    // Absent image: an empty filesystem.
    let mut d = Daemon::start(&opts);
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    fs::write(d.path().join("one"), b"first run").unwrap();
    d.signal(libc::SIGTERM);
    assert!(d.wait().success(), "{}", d.stderr());
    assert!(image.exists(), "no image after SIGTERM: {}", d.stderr());
    drop(d);
    let mut d = Daemon::start(&opts);
    assert_eq!(fs::read(d.path().join("one")).unwrap(), b"first run");
    fs::write(d.path().join("two"), b"second run").unwrap();
    // umount(8)'s way: the daemon sees the session end.
    let out = run(Command::new("umount").arg(d.path()), T);
    assert!(out.status.success(), "{out:?}");
    assert!(d.wait().success(), "{}", d.stderr());
    drop(d);
    let d = Daemon::start(&opts);
    assert_eq!(fs::read(d.path().join("two")).unwrap(), b"second run");
    assert_eq!(fs::read(d.path().join("one")).unwrap(), b"first run");
    drop(d);
    // Encrypted: no plaintext in the file; without the key it is refused.
    let bytes = fs::read(&image).unwrap();
    assert!(!bytes.windows(10).any(|w| w == b"second run"));
    let line = refused_mount(&format!("restore={}", image.display()));
    assert!(line.contains("encrypted"), "{line}");
}

#[test]
fn damaged_and_wrong_key_images_mount_nothing() {
    if !can_mount("damaged_and_wrong_key_images_mount_nothing") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("key");
    let other = work.path().join("other");
    fs::write(&key, [1u8; 32]).unwrap();
    fs::write(&other, [2u8; 32]).unwrap();
    let image = work.path().join("img");
    {
        let d = Daemon::start(&format!("image_key={}", key.display()));
        fs::write(d.path().join("f"), vec![3u8; 100_000]).unwrap();
        assert!(snapshot(d.path(), &image).status.success());
    }
    let line = refused_mount(&format!("restore={},image_key={}", image.display(), other.display()));
    assert!(line.contains("wrong key"), "{line}");
    let good = fs::read(&image).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    let damaged = work.path().join("damaged");
    fs::write(&damaged, &bad).unwrap();
    let line = refused_mount(&format!("restore={},image_key={}", damaged.display(), key.display()));
    assert!(line.contains("corrupt"), "{line}");
    fs::write(&damaged, &good[..good.len() - 10]).unwrap();
    let line = refused_mount(&format!("restore={},image_key={}", damaged.display(), key.display()));
    assert!(line.contains("truncated"), "{line}");
    let mut newer = good.clone();
    newer[8] = 9;
    fs::write(&damaged, &newer).unwrap();
    let line = refused_mount(&format!("restore={},image_key={}", damaged.display(), key.display()));
    assert!(line.contains("version 9"), "{line}");
    let line = refused_mount(&format!("restore={}", work.path().join("absent").display()));
    assert!(line.contains("No such file"), "{line}");
}

#[test]
fn a_save_into_a_full_filesystem_fails_and_keeps_the_previous_image() {
    if !can_mount("a_save_into_a_full_filesystem_fails_and_keeps_the_previous_image") {
        return;
    }
    let small = Tmpfs::mount("size=1m");
    let image = small.path().join("img");
    let d = Daemon::start("");
    fs::write(d.path().join("f"), b"small").unwrap();
    assert!(snapshot(d.path(), &image).status.success());
    let previous = fs::read(&image).unwrap();
    // 4 MiB that do not compress: the new image cannot fit in 1 MiB.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(d.path().join("big"), &noise).unwrap();
    let out = snapshot(d.path(), &image);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(fs::read(&image).unwrap(), previous, "the previous image changed");
    let left: Vec<_> = fs::read_dir(small.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("img")],
        "temporary file left behind"
    );
    // The previous image still restores.
    let r = Daemon::start(&format!("restore={}", image.display()));
    assert_eq!(fs::read(r.path().join("f")).unwrap(), b"small");
}

/// `kill -9` of the daemon at spread-out points of a save, many times: the image is always the
/// previous one or the new one, whole (it restores, and its marker is one that was written).
#[test]
fn kill_9_during_a_save_leaves_a_whole_image() {
    if !can_mount("kill_9_during_a_save_leaves_a_whole_image") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("img");
    let opts = format!("persist={}", image.display());
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    // How long one save of this tree takes, uninterrupted.
    let took = {
        let d = Daemon::start(&opts);
        fs::write(d.path().join("marker"), b"0").unwrap();
        fs::write(d.path().join("big"), noise(24 << 20)).unwrap();
        let t = std::time::Instant::now();
        assert!(snapshot(d.path(), &image).status.success());
        t.elapsed()
    };
    let mut written = vec![0u32];
    let mut temp_left = 0;
    for round in 1..=10u32 {
        let mut d = Daemon::start(&opts);
        let marker: u32 = fs::read_to_string(d.path().join("marker")).unwrap().parse().unwrap();
        assert!(
            written.contains(&marker),
            "marker {marker} was never written: {written:?}"
        );
        assert_eq!(fs::metadata(d.path().join("big")).unwrap().len(), 24 << 20);
        fs::write(d.path().join("marker"), round.to_string()).unwrap();
        fs::write(d.path().join("big"), noise(24 << 20)).unwrap();
        written.push(round);
        let mut client = Command::new(rtmpfs_bin())
            .arg("snapshot")
            .arg(d.path())
            .arg(&image)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(took * round / 10);
        d.signal(libc::SIGKILL);
        let _ = d.wait();
        let _ = client.wait();
        temp_left += fs::read_dir(work.path()).unwrap().count() - 1;
        drop(d);
    }
    // Some kills landed inside a save: their temporary files were there (each next mount
    // removed them)...
    assert!(temp_left > 0, "no kill landed inside a save (one took {took:?})");
    let d = Daemon::start(&opts);
    let marker: u32 = fs::read_to_string(d.path().join("marker")).unwrap().parse().unwrap();
    assert!(written.contains(&marker));
    // ... until a persist= mount of that image starts and removes them.
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), 1, "unfinished saves left");
}

/// `rtmpfs export MOUNTPOINT --tar FILE`, extracted by GNU tar and by bsdtar (libarchive) into
/// a kernel tmpfs, gives the mount's tree: modes, owners, mtimes to the ns, sizes, xattrs,
/// symlinks, device nodes, fifos, the `SEEK_DATA` map of a sparse file and all bytes, and the
/// hard links. The same from the image file.
#[test]
fn export_tar_reads_back_with_gnu_tar_and_bsdtar() {
    if !can_mount("export_tar_reads_back_with_gnu_tar_and_bsdtar") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start("");
    build(d.path());
    let long = d.path().join("d").join("n".repeat(120));
    fs::write(&long, b"a long name").unwrap();
    let archive = work.path().join("t.tar");
    let out = rtmpfs(&[
        "export".as_ref(),
        d.path().as_os_str(),
        "--tar".as_ref(),
        archive.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 1 GiB of hole: the archive holds only data.
    assert!(fs::metadata(&archive).unwrap().len() < 256 * 1024);
    let image = work.path().join("img");
    assert!(snapshot(d.path(), &image).status.success());
    let archive2 = work.path().join("t2.tar");
    let out = rtmpfs(&[
        "export".as_ref(),
        image.as_os_str(),
        "--tar".as_ref(),
        archive2.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = walk(d.path());
    // scripts/install-test-tools.sh installs both (libarchive-tools gives bsdtar).
    let gnu_tar: &[&str] = &[
        "tar",
        "-x",
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "-p",
        "-f",
    ];
    let bsdtar: &[&str] = &["bsdtar", "-x", "--xattrs", "--numeric-owner", "-p", "-f"];
    for (a, tar) in [&archive, &archive2]
        .into_iter()
        .flat_map(|a| [(a, gnu_tar), (a, bsdtar)])
    {
        let t = Tmpfs::mount("size=64m");
        let out = run(Command::new(tar[0]).args(&tar[1..]).arg(a).arg("-C").arg(t.path()), T);
        assert!(
            out.status.success(),
            "{}: {}",
            tar[0],
            String::from_utf8_lossy(&out.stderr)
        );
        let got = walk(t.path());
        // What tar carries: all but atime, ctime, blocks, and the root's own attributes.
        let strip = |m: &Meta| (m.0, m.1, m.2, m.3, m.4, m.6, m.7[1]);
        for (path, m) in &want.meta {
            if path.as_os_str().is_empty() {
                continue;
            }
            let g = got
                .meta
                .get(path)
                .unwrap_or_else(|| panic!("{}: {path:?} missing from the extraction", tar[0]));
            assert_eq!(strip(g), strip(m), "{}: {path:?}", tar[0]);
            assert_eq!(got.detail[path], want.detail[path], "{}: {path:?}", tar[0]);
        }
        assert_eq!(got.meta.len(), want.meta.len(), "{}", tar[0]);
        assert_eq!(got.links, want.links, "{}", tar[0]);
    }
}

/// `-o restore=` of a tar archive: one written by `rtmpfs export` and one by GNU tar (pax,
/// sparse 1.0, xattrs) from the mount give the tree again (what tar carries: modes, owners,
/// nlink, sizes, rdev, mtime to the ns, xattrs, targets, `SEEK_DATA` maps and bytes, links).
#[test]
fn restore_takes_a_tar_archive() {
    if !can_mount("restore_takes_a_tar_archive") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start("");
    build(d.path());
    fs::write(d.path().join("d").join("n".repeat(120)), b"a long name").unwrap();
    let ours = work.path().join("ours.tar");
    let out = rtmpfs(&[
        "export".as_ref(),
        d.path().as_os_str(),
        "--tar".as_ref(),
        ours.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gnu = work.path().join("gnu.tar");
    let out = run(
        Command::new("tar")
            .args([
                "-c",
                "--format=pax",
                "--sparse",
                "--sparse-version=1.0",
                "--xattrs",
                "--xattrs-include=*",
            ])
            .arg("-f")
            .arg(&gnu)
            .arg("-C")
            .arg(d.path())
            .arg("."),
        T,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = walk(d.path());
    for archive in [&ours, &gnu] {
        let r = Daemon::start(&format!("restore={}", archive.display()));
        let got = walk(r.path());
        let strip = |m: &Meta| (m.0, m.1, m.2, m.3, m.4, m.6, m.7[1]);
        for (path, m) in &want.meta {
            if path.as_os_str().is_empty() {
                continue;
            }
            let g = got
                .meta
                .get(path)
                .unwrap_or_else(|| panic!("{path:?} missing ({archive:?})"));
            assert_eq!(strip(g), strip(m), "{path:?} ({archive:?})");
            assert_eq!(got.detail[path], want.detail[path], "{path:?} ({archive:?})");
        }
        assert_eq!(got.meta.len(), want.meta.len());
        assert_eq!(got.links, want.links);
    }
    // A damaged archive is refused with the reason, nothing mounted.
    let mut bad = fs::read(&ours).unwrap();
    bad.truncate(bad.len() / 2);
    let cut = work.path().join("cut.tar");
    fs::write(&cut, &bad).unwrap();
    let line = refused_mount(&format!("restore={}", cut.display()));
    assert!(line.contains("tar"), "{line}");
}

/// An image cannot be written inside the mount it is an image of (writing it would wait for the
/// snapshot that writes it): refused at once, in one line, the mount still working.
#[test]
fn a_snapshot_into_its_own_mount_is_refused() {
    if !can_mount("a_snapshot_into_its_own_mount_is_refused") {
        return;
    }
    let d = Daemon::start("");
    fs::write(d.path().join("f"), b"x").unwrap();
    let started = std::time::Instant::now();
    let out = snapshot(d.path(), &d.path().join("img"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("inside the mount"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!d.path().join("img").exists());
    fs::write(d.path().join("g"), b"still works").unwrap();
    let line = {
        let archive = d.path().join("t.tar");
        let out = rtmpfs(&[
            "export".as_ref(),
            d.path().as_os_str(),
            "--tar".as_ref(),
            archive.as_os_str(),
        ]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(line.contains("inside the mount"), "{line}");
}
