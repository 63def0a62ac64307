//! Engine-level regressions of the differences from kernel tmpfs listed in issue 10 (each was
//! first seen over FUSE; these pin the engine's part of the fix for in-process users).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rtmpfs_core::{Config, Ctx, Filesystem, FsError, OpenFlags, RenameFlags, SetIdClearing};

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
    fs.write_at(&root, fh, 0, b"XY", SetIdClearing::Engine).unwrap();
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
    assert_eq!(
        fs.copy_file_range_at(&root, src, 0, dst, 1, 2, SetIdClearing::Engine),
        Ok(2)
    );
    assert_eq!(fs.read_vec(dst, 0, 64).unwrap(), b"a01def");
}

/// Names listed through `dh` from offset 0, renaming each listed entry to a new name and back
/// before asking for the next batch (of `batch` entries); stops after `cap` entries.
fn list_while_renaming(fs: &Filesystem, dh: rtmpfs_core::Fh, batch: usize, cap: usize) -> Vec<Vec<u8>> {
    let root = Ctx::root();
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let got = fs.readdir(dh, offset, batch).unwrap();
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
            seen.push(e.name.to_vec());
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
    use rtmpfs_core::{AtimeRule, SetAttr, SetTime, Timespec};
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
        fs.readdir(dh, 0, usize::MAX).unwrap();
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
    use rtmpfs_core::{XattrSetMode, XATTR_LIST_MAX};
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

#[test]
fn file_flags_set_by_linux_rules() {
    use rtmpfs_core::file_flags::{APPEND, IMMUTABLE, NOATIME, NODUMP};
    let fs = fs();
    let root = Ctx::root();
    let (a, _) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o666, OpenFlags::READ_WRITE)
        .unwrap();
    let owner = Ctx::user(0, 0);
    assert_eq!(fs.file_flags(a.ino), Ok(0));
    assert_eq!(
        fs.set_file_flags(&root, a.ino, 0x1000).unwrap_err(),
        FsError::NotSupported
    );
    let chown = rtmpfs_core::SetAttr {
        uid: Some(5),
        ..rtmpfs_core::SetAttr::default()
    };
    fs.setattr(&owner, a.ino, &chown, None).unwrap();
    let (user, stranger) = (Ctx::user(5, 5), Ctx::user(6, 6));
    assert_eq!(fs.set_file_flags(&stranger, a.ino, NODUMP).unwrap_err(), FsError::Perm);
    fs.set_file_flags(&user, a.ino, NODUMP | NOATIME).unwrap();
    assert_eq!(fs.file_flags(a.ino), Ok(NODUMP | NOATIME));
    // Only CAP_LINUX_IMMUTABLE (root) sets or clears immutable and append-only.
    assert_eq!(fs.set_file_flags(&user, a.ino, IMMUTABLE).unwrap_err(), FsError::Perm);
    assert_eq!(fs.set_file_flags(&user, a.ino, APPEND).unwrap_err(), FsError::Perm);
    fs.set_file_flags(&root, a.ino, APPEND).unwrap();
    assert_eq!(fs.set_file_flags(&user, a.ino, 0).unwrap_err(), FsError::Perm);
    fs.set_file_flags(&root, a.ino, 0).unwrap();
}

#[test]
fn immutable_file_and_directory_take_no_change() {
    use rtmpfs_core::file_flags::IMMUTABLE;
    use rtmpfs_core::{FallocateMode, SetAttr, SetTime, XattrSetMode};
    let fs = fs();
    let root = Ctx::root();
    let r = fs.root();
    let (a, fh) = fs
        .create(&root, r, OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, fh, 0, b"data").unwrap();
    let (_, src) = fs
        .create(&root, r, OsStr::new("s"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, src, 0, b"xy").unwrap();
    fs.set_file_flags(&root, a.ino, IMMUTABLE).unwrap();
    let perm = Err(FsError::Perm);
    assert_eq!(fs.open(&root, a.ino, OpenFlags::WRITE).map(|_| ()), perm);
    assert_eq!(fs.open(&root, a.ino, OpenFlags::READ_WRITE).map(|_| ()), perm);
    let trunc = OpenFlags {
        truncate: true,
        ..OpenFlags::READ
    };
    assert_eq!(fs.open(&root, a.ino, trunc).map(|_| ()), perm);
    let ro = fs.open(&root, a.ino, OpenFlags::READ).unwrap();
    assert_eq!(fs.read_vec(ro, 0, 9).unwrap(), b"data");
    // A handle opened before the flag was set writes nothing either.
    assert_eq!(fs.write(&root, fh, 0, b"x").map(|_| ()), perm);
    assert_eq!(fs.write_at(&root, fh, 4, b"x", SetIdClearing::Engine).map(|_| ()), perm);
    assert_eq!(fs.fallocate(&root, fh, 0, 8192, FallocateMode::Allocate), perm);
    assert_eq!(fs.copy_file_range(&root, src, 0, fh, 0, 2).map(|_| ()), perm);
    for set in [
        SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
        SetAttr {
            mtime: Some(SetTime::Now),
            ..SetAttr::default()
        },
    ] {
        assert_eq!(fs.setattr(&root, a.ino, &set, None).map(|_| ()), perm, "{set:?}");
    }
    let x = OsStr::new("user.x");
    assert_eq!(fs.setxattr(&root, a.ino, x, b"v", XattrSetMode::Upsert), perm);
    assert_eq!(fs.removexattr(&root, a.ino, x), perm);
    assert_eq!(fs.link(&root, a.ino, r, OsStr::new("g")).map(|_| ()), perm);
    assert_eq!(fs.unlink(&root, r, OsStr::new("f")), perm);
    let rename = fs.rename(&root, r, OsStr::new("f"), r, OsStr::new("h"), RenameFlags::default());
    assert_eq!(rename, perm);
    // Renaming another file over it removes it: refused too.
    let over = fs.rename(&root, r, OsStr::new("s"), r, OsStr::new("f"), RenameFlags::default());
    assert_eq!(over, perm);
    assert_eq!(fs.read_vec(ro, 0, 9).unwrap(), b"data", "nothing changed");
    // A shared mapping made before the flag keeps storing, as on Linux (its writeback lands).
    fs.write_back(fh, 0, b"m").unwrap();
    assert_eq!(fs.read_vec(ro, 0, 9).unwrap(), b"mata");
    // An immutable directory takes no new entries and loses none.
    let d = fs.mkdir(&root, r, OsStr::new("d"), 0o755).unwrap();
    fs.mknod(&root, d.ino, OsStr::new("in"), libc::S_IFREG | 0o644, 0)
        .unwrap();
    fs.set_file_flags(&root, d.ino, IMMUTABLE).unwrap();
    let made = fs.mknod(&root, d.ino, OsStr::new("new"), libc::S_IFREG | 0o644, 0);
    assert_eq!(made.map(|_| ()), perm);
    assert_eq!(fs.mkdir(&root, d.ino, OsStr::new("sub"), 0o755).map(|_| ()), perm);
    assert_eq!(fs.unlink(&root, d.ino, OsStr::new("in")), perm);
    // Cleared (by root), everything works again.
    fs.set_file_flags(&root, a.ino, 0).unwrap();
    fs.set_file_flags(&root, d.ino, 0).unwrap();
    fs.write(&root, fh, 0, b"D").unwrap();
    fs.unlink(&root, d.ino, OsStr::new("in")).unwrap();
    fs.unlink(&root, r, OsStr::new("f")).unwrap();
    fs.check_invariants().unwrap();
}

#[test]
fn append_only_file_and_directory() {
    use rtmpfs_core::file_flags::APPEND;
    use rtmpfs_core::{FallocateMode, SetAttr, SetTime};
    let fs = fs();
    let root = Ctx::root();
    let r = fs.root();
    let (a, fh) = fs
        .create(&root, r, OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, fh, 0, b"abc").unwrap();
    fs.set_file_flags(&root, a.ino, APPEND).unwrap();
    let perm = Err(FsError::Perm);
    assert_eq!(fs.open(&root, a.ino, OpenFlags::WRITE).map(|_| ()), perm);
    let trunc = OpenFlags {
        truncate: true,
        ..APPEND_RW
    };
    assert_eq!(fs.open(&root, a.ino, trunc).map(|_| ()), perm);
    let ah = fs.open(&root, a.ino, APPEND_RW).unwrap();
    fs.write(&root, ah, 0, b"de").unwrap();
    // Writes land only at the end, whoever places them.
    assert_eq!(fs.write_at(&root, ah, 0, b"X", SetIdClearing::Engine).map(|_| ()), perm);
    assert_eq!(fs.write_back(fh, 1, b"X").map(|_| ()), perm);
    fs.write_at(&root, ah, 5, b"f", SetIdClearing::Engine).unwrap();
    assert_eq!(fs.read_vec(ah, 0, 16).unwrap(), b"abcdef");
    fs.fallocate(&root, ah, 0, 8192, FallocateMode::Allocate).unwrap();
    assert_eq!(fs.fallocate(&root, ah, 0, 4096, FallocateMode::PunchHole), perm);
    let size = SetAttr {
        size: Some(1),
        ..SetAttr::default()
    };
    assert_eq!(fs.setattr(&root, a.ino, &size, Some(ah)).map(|_| ()), perm);
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    assert_eq!(fs.setattr(&root, a.ino, &chmod, None).map(|_| ()), perm);
    let now = SetAttr {
        mtime: Some(SetTime::Now),
        ..SetAttr::default()
    };
    fs.setattr(&root, a.ino, &now, None).unwrap();
    assert_eq!(fs.unlink(&root, r, OsStr::new("f")), perm);
    // An append-only directory takes new entries but loses none.
    let d = fs.mkdir(&root, r, OsStr::new("d"), 0o755).unwrap();
    fs.set_file_flags(&root, d.ino, APPEND).unwrap();
    fs.mknod(&root, d.ino, OsStr::new("in"), libc::S_IFREG | 0o644, 0)
        .unwrap();
    assert_eq!(fs.unlink(&root, d.ino, OsStr::new("in")), perm);
    let out = fs.rename(
        &root,
        d.ino,
        OsStr::new("in"),
        r,
        OsStr::new("out"),
        RenameFlags::default(),
    );
    assert_eq!(out, perm);
    fs.check_invariants().unwrap();
}

#[test]
fn noatime_flag_keeps_atime() {
    use rtmpfs_core::{AtimeRule, SetAttr, SetTime, Timespec};
    let fs = fs();
    let root = Ctx::root();
    let (a, fh) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, fh, 0, b"x").unwrap();
    fs.set_atime_rule(AtimeRule::Strict, false);
    let old = Timespec { sec: 1000, nsec: 0 };
    let set = SetAttr {
        atime: Some(SetTime::At(old)),
        ..SetAttr::default()
    };
    fs.setattr(&root, a.ino, &set, None).unwrap();
    fs.set_file_flags(&root, a.ino, rtmpfs_core::file_flags::NOATIME)
        .unwrap();
    fs.read_vec(fh, 0, 1).unwrap();
    assert_eq!(fs.getattr(a.ino).unwrap().atime, old);
    fs.set_file_flags(&root, a.ino, 0).unwrap();
    fs.read_vec(fh, 0, 1).unwrap();
    assert_ne!(fs.getattr(a.ino).unwrap().atime, old);
}

/// `open(O_TRUNC)` of an empty file stamps mtime and ctime (Linux's `do_truncate` passes
/// ATTR_MTIME|ATTR_CTIME), a `truncate(path)` to the same size of a file without pages does
/// not; a server that gets O_TRUNC as a setattr says which with `SetAttr::open_trunc`.
#[test]
fn open_trunc_setattr_stamps_an_empty_file_and_truncate_by_path_does_not() {
    use rtmpfs_core::{SetAttr, SetTime, Timespec};
    let fs = fs();
    let root = Ctx::root();
    let (attr, fh) = fs
        .create(&root, fs.root(), OsStr::new("e"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.release(fh).unwrap();
    let ino = attr.ino;
    let old = Timespec { sec: 1000, nsec: 0 };
    let reset = SetAttr {
        atime: Some(SetTime::At(old)),
        mtime: Some(SetTime::At(old)),
        ctime: Some(old),
        ..SetAttr::default()
    };
    fs.setattr_with(&root, ino, &reset, None, SetIdClearing::Engine)
        .unwrap();
    let by_path = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    let a = fs
        .setattr_with(&root, ino, &by_path, None, SetIdClearing::Engine)
        .unwrap();
    assert_eq!(
        (a.mtime, a.ctime),
        (old, old),
        "truncate(path) of an empty file stamped it"
    );
    let o_trunc = SetAttr {
        open_trunc: true,
        ..by_path
    };
    let a = fs
        .setattr_with(&root, ino, &o_trunc, None, SetIdClearing::Engine)
        .unwrap();
    assert!(
        a.mtime != old && a.ctime != old,
        "O_TRUNC of an empty file left its times"
    );
}
