//! Tests of the run-time switches a FUSE server needs: remount (read-only, limits), explicit
//! `CAP_FSETID`, capability stripping, lookup references by inode number.

use std::ffi::OsStr;

use rtmpfs_core::{Config, Ctx, Filesystem, FsError, Ino, OpenFlags, SetAttr, XattrSetMode, PAGE_SIZE};

/// The file capability the tests give files, and its xattr name.
const CAP: &str = "security.capability";
const CAP_VALUE: &[u8] = b"\x01\x00\x00\x02";

fn set_cap(fs: &Filesystem, ino: Ino) {
    fs.setxattr(&Ctx::root(), ino, OsStr::new(CAP), CAP_VALUE, XattrSetMode::Upsert)
        .unwrap();
}

fn fs_with(size_pages: Option<u64>, inodes: Option<u64>) -> Filesystem {
    Filesystem::new(Config {
        size_bytes: size_pages.map(|p| p * PAGE_SIZE),
        max_inodes: inodes,
        track_lookups: true,
        ..Config::default()
    })
    .unwrap()
}

#[test]
fn read_only_switch_refuses_changes_and_comes_back() {
    let fs = fs_with(None, None);
    let root = Ctx::root();
    let (_, fh) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.set_read_only(true);
    assert!(fs.is_read_only());
    assert_eq!(fs.write(&root, fh, 0, b"x"), Err(FsError::ReadOnly));
    assert_eq!(
        fs.mkdir(&root, fs.root(), OsStr::new("d"), 0o755).unwrap_err(),
        FsError::ReadOnly
    );
    assert_eq!(fs.read_vec(fh, 0, 10).unwrap(), b"");
    fs.set_read_only(false);
    assert_eq!(fs.write(&root, fh, 0, b"x").unwrap(), 1);
}

#[test]
fn limits_change_like_tmpfs_remount() {
    let fs = fs_with(Some(16), Some(10));
    let root = Ctx::root();
    let (_, fh) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, fh, 0, &vec![1; 8 * PAGE_SIZE as usize]).unwrap();
    assert_eq!(
        fs.set_limits(Some(4 * PAGE_SIZE), None),
        Err(FsError::Invalid),
        "below use"
    );
    assert_eq!(fs.set_limits(None, Some(1)), Err(FsError::Invalid), "below inode use");
    fs.set_limits(Some(8 * PAGE_SIZE), Some(5)).unwrap();
    assert_eq!(fs.statfs().blocks, 8);
    assert_eq!(fs.statfs().files, 5);
    assert_eq!(fs.write(&root, fh, 8 * PAGE_SIZE, b"x"), Err(FsError::NoSpace));
    fs.set_limits(Some(32 * PAGE_SIZE), None).unwrap();
    assert_eq!(fs.write(&root, fh, 8 * PAGE_SIZE, b"x").unwrap(), 1);
    let unlimited = fs_with(None, None);
    assert_eq!(
        unlimited.set_limits(Some(PAGE_SIZE * 100), None),
        Err(FsError::Invalid),
        "cannot retroactively limit"
    );
}

#[test]
fn cap_fsetid_decides_setid_clearing() {
    let fs = fs_with(None, None);
    let root = Ctx::root();
    let (attr, fh) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o6755, OpenFlags::READ_WRITE)
        .unwrap();
    // Root without CAP_FSETID (a capability-dropped container) loses the bits.
    let dropped = Ctx {
        cap_fsetid: Some(false),
        ..Ctx::root()
    };
    fs.write(&dropped, fh, 0, b"a").unwrap();
    assert_eq!(fs.getattr(attr.ino).unwrap().perm, 0o755);
    fs.setattr(
        &root,
        attr.ino,
        &SetAttr {
            mode: Some(0o6755),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    // A non-root writer holding CAP_FSETID keeps them.
    let capable = Ctx {
        cap_fsetid: Some(true),
        ..Ctx::user(5, 5)
    };
    fs.write(&capable, fh, 0, b"b").unwrap();
    assert_eq!(fs.getattr(attr.ino).unwrap().perm, 0o6755);
    fs.write(&Ctx::user(5, 5), fh, 0, b"c").unwrap();
    assert_eq!(fs.getattr(attr.ino).unwrap().perm, 0o755);
}

#[test]
fn security_capability_is_dropped_on_write_truncate_and_chown() {
    let fs = fs_with(None, Some(100));
    let root = Ctx::root();
    let (attr, fh) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o755, OpenFlags::READ_WRITE)
        .unwrap();
    let cap = OsStr::new(CAP);
    let before = fs.usage().inode_space_used;
    let set = || set_cap(&fs, attr.ino);
    set();
    fs.setxattr(&root, attr.ino, OsStr::new("user.keep"), b"v", XattrSetMode::Upsert)
        .unwrap();
    fs.write(&root, fh, 0, b"data").unwrap();
    assert_eq!(
        fs.getxattr(&root, attr.ino, cap),
        Err(FsError::NoData),
        "write keeps the capability"
    );
    assert_eq!(fs.getxattr(&root, attr.ino, OsStr::new("user.keep")).unwrap(), b"v");
    set();
    fs.setattr(
        &root,
        attr.ino,
        &SetAttr {
            size: Some(1),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(
        fs.getxattr(&root, attr.ino, cap),
        Err(FsError::NoData),
        "truncate keeps the capability"
    );
    set();
    fs.setattr(
        &root,
        attr.ino,
        &SetAttr {
            uid: Some(7),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(
        fs.getxattr(&root, attr.ino, cap),
        Err(FsError::NoData),
        "chown keeps the capability"
    );
    fs.removexattr(&root, attr.ino, OsStr::new("user.keep")).unwrap();
    assert_eq!(fs.usage().inode_space_used, before, "capability space not given back");
    fs.check_invariants().unwrap();
}

#[test]
fn lookup_ino_and_dot_of_a_file_take_references() {
    let fs = fs_with(None, None);
    let root = Ctx::root();
    let (attr, fh) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    // create took one reference; "." and lookup_ino take two more.
    assert_eq!(fs.lookup(&root, attr.ino, OsStr::new(".")).unwrap().ino, attr.ino);
    assert_eq!(fs.lookup_ino(attr.ino).unwrap().ino, attr.ino);
    assert_eq!(fs.lookup(&root, attr.ino, OsStr::new("..")), Err(FsError::NotDir));
    fs.release(fh).unwrap();
    fs.unlink(&root, fs.root(), OsStr::new("f")).unwrap();
    // Released, but three references keep the attributes until forgotten.
    assert_eq!(fs.getattr(attr.ino).unwrap().nlink, 0);
    fs.forget(attr.ino, 2);
    assert!(fs.getattr(attr.ino).is_ok());
    fs.forget(attr.ino, 1);
    assert_eq!(fs.getattr(attr.ino), Err(FsError::NotFound));
    assert_eq!(fs.lookup_ino(attr.ino), Err(FsError::NotFound));
    assert_eq!(fs.lookup_ino(Ino(999_999)), Err(FsError::NotFound));
}

#[test]
fn write_back_keeps_setid_bits_and_capability() {
    let fs = fs_with(None, Some(100));
    let root = Ctx::root();
    let (attr, fh) = fs
        .create(&root, fs.root(), OsStr::new("f"), 0o6775, OpenFlags::READ_WRITE)
        .unwrap();
    let cap = OsStr::new(CAP);
    set_cap(&fs, attr.ino);
    let before = fs.getattr(attr.ino).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert_eq!(fs.write_back(fh, 4, b"mapped").unwrap(), 6);
    let after = fs.getattr(attr.ino).unwrap();
    assert_eq!(after.perm, 0o6775, "a store through a mapping clears no set-id bit");
    assert_eq!(fs.getxattr(&root, attr.ino, cap).unwrap(), CAP_VALUE);
    assert!(after.mtime > before.mtime && after.ctime > before.ctime);
    assert_eq!(after.size, 10);
    assert_eq!(fs.read_vec(fh, 4, 6).unwrap(), b"mapped");
    // Not through a read-only handle.
    let ro = fs.open(&root, attr.ino, OpenFlags::READ).unwrap();
    assert_eq!(fs.write_back(ro, 0, b"x"), Err(FsError::BadHandle));
}

#[test]
fn remove_privs_clears_like_file_remove_privs() {
    let fs = fs_with(None, Some(100));
    let root = Ctx::root();
    let cap = OsStr::new(CAP);
    for (name, mode, who, want) in [
        ("a", 0o6755, Ctx::user(5, 5), 0o755),
        // Set-group-ID without group-execute is a locking mark, not a privilege: it stays for a
        // member of the file's group (0 here), and goes for anyone else.
        ("b", 0o6745, Ctx::user(5, 0), 0o2745),
        ("b2", 0o6745, Ctx::user(5, 5), 0o745),
        ("c", 0o6755, root.clone(), 0o6755),
        (
            "d",
            0o6755,
            Ctx {
                cap_fsetid: Some(false),
                ..Ctx::root()
            },
            0o755,
        ),
    ] {
        let (attr, _) = fs
            .create(&root, fs.root(), OsStr::new(name), mode, OpenFlags::READ_WRITE)
            .unwrap();
        set_cap(&fs, attr.ino);
        let before = fs.getattr(attr.ino).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let a = fs.remove_privs(&who, attr.ino).unwrap();
        assert_eq!(a.perm, want, "{name}");
        assert_eq!(fs.getxattr(&root, attr.ino, cap), Err(FsError::NoData), "{name}");
        assert!(a.ctime > before.ctime && a.mtime == before.mtime, "{name}");
    }
    // Directories keep set-group-ID (it is inheritance there, not a privilege).
    let d = fs.mkdir(&root, fs.root(), OsStr::new("dir"), 0o775).unwrap();
    let chmod = SetAttr {
        mode: Some(0o2775),
        ..SetAttr::default()
    };
    fs.setattr(&root, d.ino, &chmod, None).unwrap();
    assert_eq!(fs.remove_privs(&Ctx::user(5, 5), d.ino).unwrap().perm, 0o2775);
    fs.set_read_only(true);
    assert_eq!(fs.remove_privs(&root, d.ino), Err(FsError::ReadOnly));
    assert_eq!(fs.remove_privs(&root, Ino(999_999)), Err(FsError::ReadOnly));
    fs.set_read_only(false);
    assert_eq!(fs.remove_privs(&root, Ino(999_999)), Err(FsError::NotFound));
}
