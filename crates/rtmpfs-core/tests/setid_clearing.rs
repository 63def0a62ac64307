//! `SetIdClearing`: who clears set-user-ID/set-group-ID bits on a data change. With
//! `Engine` the engine applies Linux's rule to the caller; with `Kernel` the client has done it
//! already and every data-changing call leaves the bits alone (chown still drops what it drops
//! whoever asks).

use std::ffi::OsStr;

use rtmpfs_core::{Config, Ctx, FallocateMode, Filesystem, Ino, OpenFlags, SetAttr, SetIdClearing};

const SETID: u32 = 0o6777;

/// A file with both set-id bits, writable by all, of another group than the writer's, and a
/// handle open for writing; the writer (uid 5, gid 5) lacks `CAP_FSETID`.
fn setid_file(fs: &Filesystem, name: &str) -> (Ino, rtmpfs_core::Fh) {
    let (attr, fh) = fs
        .create(&Ctx::root(), fs.root(), OsStr::new(name), SETID, OpenFlags::READ_WRITE)
        .unwrap();
    (attr.ino, fh)
}

fn restore(fs: &Filesystem, ino: Ino) {
    let set = SetAttr {
        mode: Some(SETID),
        ..SetAttr::default()
    };
    fs.setattr(&Ctx::root(), ino, &set, None).unwrap();
}

fn perm(fs: &Filesystem, ino: Ino) -> u32 {
    fs.getattr(ino).unwrap().perm
}

/// Each data change by an unprivileged writer, once with each kind of clearing: `Kernel`
/// keeps both bits, `Engine` clears both (set-group-ID because the file is group-executable).
#[test]
fn kernel_clearing_leaves_setid_bits_engine_clearing_clears_them() {
    let fs = Filesystem::new(Config::default()).unwrap();
    let user = Ctx::user(5, 5);
    let (ino, fh) = setid_file(&fs, "f");
    let (_, src) = setid_file(&fs, "src");
    fs.write(&Ctx::root(), src, 0, b"data").unwrap();
    let truncate = SetAttr {
        size: Some(1),
        ..SetAttr::default()
    };
    for (clearing, expect) in [(SetIdClearing::Kernel, SETID), (SetIdClearing::Engine, 0o777)] {
        let changes: [(&str, &dyn Fn() -> bool); 5] = [
            ("write_at", &|| fs.write_at(&user, fh, 0, b"x", clearing).is_ok()),
            ("setattr size", &|| {
                fs.setattr_with(&user, ino, &truncate, None, clearing).is_ok()
            }),
            ("open O_TRUNC", &|| {
                let flags = OpenFlags {
                    truncate: true,
                    ..OpenFlags::WRITE
                };
                fs.open_with(&user, ino, flags, clearing)
                    .and_then(|h| fs.release(h))
                    .is_ok()
            }),
            ("fallocate", &|| {
                fs.fallocate_with(&user, fh, 0, 8, FallocateMode::Allocate, clearing)
                    .is_ok()
            }),
            ("copy_file_range_at", &|| {
                fs.copy_file_range_at(&user, src, 0, fh, 0, 4, clearing).is_ok()
            }),
        ];
        for (name, change) in changes {
            restore(&fs, ino);
            assert!(change(), "{name} with {clearing:?} failed");
            assert_eq!(perm(&fs, ino), expect, "{name} with {clearing:?}");
        }
    }
}

/// chown's set-group-ID rule on a group-executable file is not the writer's privilege: the
/// bit goes with `Kernel` too (as for a caller holding `CAP_FSETID`), set-user-ID likewise.
#[test]
fn chown_drops_setid_bits_whoever_clears() {
    let fs = Filesystem::new(Config::default()).unwrap();
    let (ino, _fh) = setid_file(&fs, "f");
    let chown = SetAttr {
        uid: Some(0),
        ..SetAttr::default()
    };
    fs.setattr_with(&Ctx::root(), ino, &chown, None, SetIdClearing::Kernel)
        .unwrap();
    assert_eq!(perm(&fs, ino), 0o777);
}
