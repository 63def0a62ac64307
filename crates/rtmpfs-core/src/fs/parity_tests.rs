//! Engine-level regressions of the differences from kernel tmpfs listed in issue 10 (each was
//! first seen over FUSE; these pin the engine's part of the fix for in-process users).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::{Config, Ctx, Filesystem, FsError, OpenFlags, RenameFlags};

fn fs() -> Filesystem {
    Filesystem::new(Config {
        track_lookups: true,
        ..Config::default()
    })
    .unwrap()
}

const APPEND_RW: OpenFlags = OpenFlags {
    append: true,
    ..OpenFlags::READ_WRITE
};

#[test]
fn append_handle_write_appends_but_write_at_and_write_back_do_not() {
    let fs = fs();
    let root = Ctx::root();
    let (_, fh) = fs.create(&root, fs.root(), OsStr::new("f"), 0o644, APPEND_RW).unwrap();
    fs.write(&root, fh, 0, b"abcdef").unwrap();
    // In-process O_APPEND: the offset is ignored.
    fs.write(&root, fh, 0, b"12").unwrap();
    assert_eq!(fs.read_vec(fh, 0, 64).unwrap(), b"abcdef12");
    // A FUSE client applied O_APPEND itself and says where the data goes.
    fs.write_at(&root, fh, 0, b"XY").unwrap();
    assert_eq!(fs.read_vec(fh, 0, 64).unwrap(), b"XYcdef12");
    // Writeback of a shared mapping stores a page where it belongs, never at the end.
    fs.write_back(fh, 2, b"--").unwrap();
    assert_eq!(fs.read_vec(fh, 0, 64).unwrap(), b"XY--ef12");
}

#[test]
fn copy_file_range_at_ignores_the_targets_append_flag() {
    let fs = fs();
    let root = Ctx::root();
    let (_, src) = fs
        .create(&root, fs.root(), OsStr::new("s"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let (_, dst) = fs.create(&root, fs.root(), OsStr::new("d"), 0o644, APPEND_RW).unwrap();
    fs.write(&root, src, 0, b"0123").unwrap();
    fs.write(&root, dst, 0, b"abcdef").unwrap();
    assert_eq!(fs.copy_file_range(&root, src, 0, dst, 1, 2), Err(FsError::BadHandle));
    assert_eq!(fs.copy_file_range_at(&root, src, 0, dst, 1, 2), Ok(2));
    assert_eq!(fs.read_vec(dst, 0, 64).unwrap(), b"a01def");
}

/// Names listed through `dh` from offset 0, renaming each listed entry to a new name and back
/// before asking for the next batch (of `batch` entries); stops after `cap` entries.
fn list_while_renaming(fs: &Filesystem, dh: crate::Fh, batch: usize, cap: usize) -> Vec<Vec<u8>> {
    let root = Ctx::root();
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let mut got = Vec::new();
        fs.readdir(dh, offset, |e| {
            got.push(e);
            got.len() < batch
        })
        .unwrap();
        let Some(last) = got.last() else { break };
        offset = last.cookie;
        for e in got {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let (name, tmp) = (OsStr::from_bytes(&e.name), OsStr::new("renamed-away"));
            fs.rename(&root, fs.root(), name, fs.root(), tmp, RenameFlags::default())
                .unwrap();
            fs.rename(&root, fs.root(), tmp, fs.root(), name, RenameFlags::default())
                .unwrap();
            seen.push(e.name);
        }
        if seen.len() > cap {
            break;
        }
    }
    seen
}

#[test]
fn a_listing_that_renames_every_entry_ends_with_each_once() {
    let fs = fs();
    let root = Ctx::root();
    for i in 0..500 {
        fs.mknod(&root, fs.root(), OsStr::new(&format!("f{i}")), libc::S_IFREG | 0o644, 0)
            .unwrap();
    }
    let dh = fs.opendir(&root, fs.root()).unwrap();
    let mut seen = list_while_renaming(&fs, dh, 64, 1500);
    assert_eq!(seen.len(), 500, "the listing did not end at the directory's end");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 500);
    // A rewind (offset 0) records the end again: everything is listed once more.
    assert_eq!(list_while_renaming(&fs, dh, 64, 1500).len(), 500);
    fs.releasedir(dh).unwrap();
}

#[test]
fn atime_rule_switches_at_run_time() {
    use crate::{AtimeRule, SetAttr, SetTime, Timespec};
    let fs = fs();
    let root = Ctx::root();
    let (a, fh) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, fh, 0, b"x").unwrap();
    let d = fs.mkdir(&root, fs.root(), OsStr::new("d"), 0o755).unwrap();
    let future = Timespec {
        sec: Timespec::now().sec + 3600,
        nsec: 0,
    };
    let set_atime = |ino, t| {
        let set = SetAttr {
            atime: Some(SetTime::At(t)),
            ..SetAttr::default()
        };
        fs.setattr(&root, ino, &set, None).unwrap();
    };
    let read_changes_atime = |ino, t| {
        set_atime(ino, t);
        fs.read_vec(fh, 0, 1).unwrap();
        fs.getattr(ino).unwrap().atime != t
    };
    let listing_changes_atime = || {
        let old = Timespec { sec: 1000, nsec: 0 };
        set_atime(d.ino, old);
        let dh = fs.opendir(&root, d.ino).unwrap();
        fs.readdir(dh, 0, |_| true).unwrap();
        fs.releasedir(dh).unwrap();
        fs.getattr(d.ino).unwrap().atime != old
    };
    // relatime: an atime newer than mtime and ctime and not a day old stays.
    assert!(!read_changes_atime(a.ino, future));
    fs.set_atime_rule(AtimeRule::Strict, false);
    assert!(read_changes_atime(a.ino, future));
    assert!(listing_changes_atime());
    fs.set_atime_rule(AtimeRule::Strict, true);
    assert!(!listing_changes_atime());
    fs.set_atime_rule(AtimeRule::Never, false);
    assert!(!read_changes_atime(a.ino, Timespec { sec: 1000, nsec: 0 }));
    assert!(!listing_changes_atime());
    assert_eq!(fs.atime_rule(), (AtimeRule::Never, false));
}

#[test]
fn xattr_create_and_replace_together_and_long_lists() {
    use crate::{XattrSetMode, XATTR_LIST_MAX};
    let fs = fs();
    let root = Ctx::root();
    let (a, _) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let both = XattrSetMode::from_libc(libc::XATTR_CREATE | libc::XATTR_REPLACE).unwrap();
    assert_eq!(both, XattrSetMode::CreateAndReplace);
    let set = |name: &str, mode| fs.setxattr(&root, a.ino, OsStr::new(name), b"v", mode);
    assert_eq!(set("user.a", both), Err(FsError::NoData));
    set("user.a", XattrSetMode::Create).unwrap();
    assert_eq!(set("user.a", both), Err(FsError::Exists));
    assert_eq!(XattrSetMode::from_libc(4), Err(FsError::Invalid));
    // A list over 64 KiB: its length is known, the list itself is E2BIG.
    for i in 0..300 {
        set(&format!("user.{i:03}{}", "n".repeat(232)), XattrSetMode::Upsert).unwrap();
    }
    let len = fs.listxattr_len(&root, a.ino).unwrap();
    assert!(len > XATTR_LIST_MAX, "{len}");
    assert_eq!(fs.listxattr(&root, a.ino), Err(FsError::TooBig));
}
