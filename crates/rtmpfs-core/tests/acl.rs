//! POSIX ACLs through the engine's public API, for in-process users (the engine checks
//! permissions itself): `system.posix_acl_access`/`_default` set and read as xattrs, enforced
//! by `access`/`open`, inherited at create, kept in step by chmod, as Linux tmpfs does
//! (`fs/posix_acl.c`). The same scenarios over a mount, against kernel tmpfs, are in
//! `crates/rtmpfs-cli/tests/acl.rs`.

use std::ffi::OsStr;

use rtmpfs_core::{access, Config, Ctx, Filesystem, FsError, Ino, OpenFlags, SetAttr, XattrSetMode};

const ACCESS: &str = "system.posix_acl_access";
const DEFAULT: &str = "system.posix_acl_default";
const UNDEF: u32 = u32::MAX;

/// An xattr value from `(tag, perm, id)` entries.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// `user::rw-, user:1000:rw-, group::r--, mask::rw-, other::---`.
fn named_user() -> Vec<u8> {
    acl(&[
        (1, 6, UNDEF),
        (2, 6, 1000),
        (4, 4, UNDEF),
        (0x10, 6, UNDEF),
        (0x20, 0, UNDEF),
    ])
}

fn fs() -> Filesystem {
    Filesystem::new(Config::default()).unwrap()
}

fn owner() -> Ctx {
    Ctx::user(500, 500)
}

fn file(fs: &Filesystem, name: &str, mode: u32) -> Ino {
    let dir = fs.root();
    fs.setattr(
        &Ctx::root(),
        dir,
        &SetAttr {
            mode: Some(0o777),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    let (a, fh) = fs
        .create(
            &owner(),
            dir,
            OsStr::new(name),
            mode,
            OpenFlags::from_libc(libc::O_RDWR),
        )
        .unwrap();
    fs.release(fh).unwrap();
    a.ino
}

fn set(fs: &Filesystem, c: &Ctx, ino: Ino, name: &str, v: &[u8]) -> Result<(), FsError> {
    fs.setxattr(c, ino, OsStr::new(name), v, XattrSetMode::Upsert)
}

#[test]
fn named_user_entry_and_mask_decide_access() {
    let fs = fs();
    let f = file(&fs, "f", 0o600);
    let named = Ctx::user(1000, 1000);
    assert_eq!(fs.access(&named, f, access::R_OK), Err(FsError::Access));
    set(&fs, &owner(), f, ACCESS, &named_user()).unwrap();
    // The group class of the mode is the mask.
    assert_eq!(fs.getattr(f).unwrap().perm & 0o7777, 0o660);
    assert!(fs.access(&named, f, access::R_OK | access::W_OK).is_ok());
    assert!(fs.open(&named, f, OpenFlags::from_libc(libc::O_RDWR)).is_ok());
    // Another user is "other": nothing.
    assert_eq!(fs.access(&Ctx::user(1001, 1001), f, access::R_OK), Err(FsError::Access));
    // chmod g-w narrows the mask, and with it the named user.
    fs.setattr(
        &owner(),
        f,
        &SetAttr {
            mode: Some(0o640),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(fs.access(&named, f, access::W_OK), Err(FsError::Access));
    assert!(fs.access(&named, f, access::R_OK).is_ok());
    let stored = fs.getxattr(&owner(), f, OsStr::new(ACCESS)).unwrap();
    assert_eq!(
        stored,
        acl(&[
            (1, 6, UNDEF),
            (2, 6, 1000),
            (4, 4, UNDEF),
            (0x10, 4, UNDEF),
            (0x20, 0, UNDEF)
        ])
    );
    // Listed like any attribute; removing restores the mode's own rules.
    assert!(fs.listxattr(&owner(), f).unwrap().starts_with(ACCESS.as_bytes()));
    fs.removexattr(&owner(), f, OsStr::new(ACCESS)).unwrap();
    assert_eq!(fs.access(&named, f, access::R_OK), Err(FsError::Access));
    assert_eq!(fs.getxattr(&owner(), f, OsStr::new(ACCESS)), Err(FsError::NoData));
    // Removing an absent ACL succeeds (set_posix_acl with none).
    fs.removexattr(&owner(), f, OsStr::new(ACCESS)).unwrap();
}

#[test]
fn acl_equal_to_mode_only_changes_the_mode() {
    let fs = fs();
    let f = file(&fs, "f", 0o600);
    set(
        &fs,
        &owner(),
        f,
        ACCESS,
        &acl(&[(1, 7, UNDEF), (4, 5, UNDEF), (0x20, 1, UNDEF)]),
    )
    .unwrap();
    assert_eq!(fs.getattr(f).unwrap().perm & 0o7777, 0o751);
    assert_eq!(fs.getxattr(&owner(), f, OsStr::new(ACCESS)), Err(FsError::NoData));
}

#[test]
fn bad_acls_and_callers_are_refused() {
    let fs = fs();
    let f = file(&fs, "f", 0o644);
    // Named entry without a mask; a version other than 2; a bad size.
    let no_mask = acl(&[(1, 6, UNDEF), (2, 6, 1000), (4, 4, UNDEF), (0x20, 0, UNDEF)]);
    assert_eq!(set(&fs, &owner(), f, ACCESS, &no_mask), Err(FsError::Invalid));
    let mut v1 = named_user();
    v1[0] = 1;
    assert_eq!(set(&fs, &owner(), f, ACCESS, &v1), Err(FsError::NotSupported));
    assert_eq!(set(&fs, &owner(), f, ACCESS, &named_user()[..7]), Err(FsError::Invalid));
    // Only the owner (or root) sets ACLs; a default ACL only on a directory.
    assert_eq!(
        set(&fs, &Ctx::user(1000, 1000), f, ACCESS, &named_user()),
        Err(FsError::Perm)
    );
    assert_eq!(set(&fs, &owner(), f, DEFAULT, &named_user()), Err(FsError::Access));
    assert!(set(&fs, &Ctx::root(), f, ACCESS, &named_user()).is_ok());
}

#[test]
fn setting_an_acl_drops_setgid_for_a_non_member() {
    let fs = fs();
    let f = file(&fs, "f", 0o644);
    fs.setattr(
        &Ctx::root(),
        f,
        &SetAttr {
            gid: Some(42),
            mode: Some(0o2664),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    set(&fs, &owner(), f, ACCESS, &named_user()).unwrap();
    assert_eq!(
        fs.getattr(f).unwrap().perm & 0o7777,
        0o660,
        "owner not in group 42: set-gid goes"
    );
    fs.setattr(
        &Ctx::root(),
        f,
        &SetAttr {
            mode: Some(0o2664),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    let mut member = owner();
    member.groups.push(42);
    set(&fs, &member, f, ACCESS, &named_user()).unwrap();
    assert_eq!(fs.getattr(f).unwrap().perm & 0o7777, 0o2660, "a member keeps it");
}

#[test]
fn default_acl_is_inherited_and_umask_ignored() {
    let fs = fs();
    let root = fs.root();
    let d = fs.mkdir(&Ctx::root(), root, OsStr::new("d"), 0o777).unwrap().ino;
    set(&fs, &Ctx::root(), d, DEFAULT, &named_user()).unwrap();
    let mut c = owner();
    c.umask = 0o077;
    let (fa, fh) = fs
        .create(&c, d, OsStr::new("f"), 0o666, OpenFlags::from_libc(libc::O_RDWR))
        .unwrap();
    fs.release(fh).unwrap();
    assert_eq!(
        fa.perm & 0o7777,
        0o660,
        "mode masked by the default ACL, umask not applied"
    );
    assert_eq!(fs.getxattr(&c, fa.ino, OsStr::new(ACCESS)).unwrap(), named_user());
    assert_eq!(fs.getxattr(&c, fa.ino, OsStr::new(DEFAULT)), Err(FsError::NoData));
    let sub = fs.mkdir(&c, d, OsStr::new("sub"), 0o750).unwrap();
    assert_eq!(sub.perm & 0o7777, 0o640);
    assert_eq!(fs.getxattr(&c, sub.ino, OsStr::new(DEFAULT)).unwrap(), named_user());
    // Without a default ACL the umask applies.
    let plain = fs.mkdir(&c, root, OsStr::new("plain"), 0o777).unwrap();
    assert_eq!(plain.perm & 0o7777, 0o700);
    let (pa, fh) = fs
        .create(
            &Ctx {
                umask: 0o027,
                ..Ctx::root()
            },
            root,
            OsStr::new("p"),
            0o666,
            OpenFlags::from_libc(libc::O_RDWR),
        )
        .unwrap();
    fs.release(fh).unwrap();
    assert_eq!(pa.perm & 0o7777, 0o640);
    // Symlinks take no ACL and stay 0777.
    let l = fs.symlink(&c, d, OsStr::new("l"), OsStr::new("f")).unwrap();
    assert_eq!(l.perm & 0o7777, 0o777);
}
