//! `readdir` and `readdirplus` return batches: at most `max` entries, resumable from the last
//! cookie; `readdirplus` hands each entry but `.` and `..` over with a lookup reference taken.

use std::ffi::OsStr;

use rtmpfs_core::{Config, Ctx, Filesystem, FsError, Ino, OpenFlags};

fn fs() -> Filesystem {
    Filesystem::new(Config {
        track_lookups: true,
        ..Config::default()
    })
    .unwrap()
}

/// Create `n` files `f0`..; each keeps the one reference its creation took.
fn files(fs: &Filesystem, n: usize) -> Vec<Ino> {
    (0..n)
        .map(|i| {
            let name = format!("f{i}");
            let (a, fh) = fs
                .create(&Ctx::root(), fs.root(), OsStr::new(&name), 0o644, OpenFlags::READ_WRITE)
                .unwrap();
            fs.release(fh).unwrap();
            a.ino
        })
        .collect()
}

#[test]
fn readdir_batches_resume_from_the_last_cookie() {
    let fs = fs();
    files(&fs, 10);
    let dh = fs.opendir(&Ctx::root(), fs.root()).unwrap();
    let (mut names, mut offset, mut calls) = (Vec::new(), 0, 0);
    loop {
        let batch = fs.readdir(dh, offset, 3).unwrap();
        assert!(batch.len() <= 3);
        calls += 1;
        let Some(last) = batch.last() else { break };
        offset = last.cookie;
        names.extend(batch.into_iter().map(|e| String::from_utf8(e.name.to_vec()).unwrap()));
    }
    let mut want = vec![".".to_string(), "..".to_string()];
    want.extend((0..10).map(|i| format!("f{i}")));
    assert_eq!(names, want);
    // 12 entries in batches of 3, and the empty batch that ends the listing.
    assert_eq!(calls, 5);
    assert!(fs.readdir(dh, 0, 0).unwrap().is_empty());
    fs.releasedir(dh).unwrap();
}

#[test]
fn readdirplus_takes_a_reference_per_entry_but_the_dots() {
    let fs = fs();
    let inos = files(&fs, 4);
    let dh = fs.opendir(&Ctx::root(), fs.root()).unwrap();
    let batch = fs.readdirplus(dh, 0, 100).unwrap();
    fs.releasedir(dh).unwrap();
    assert_eq!(batch.len(), 6);
    assert!(batch[0].is_dot() && batch[1].is_dot());
    assert!(batch
        .iter()
        .all(|e| e.attr.as_ref().map(|a| a.ino) == Some(e.entry.ino)));
    for &ino in &inos {
        fs.unlink(&Ctx::root(), fs.root(), OsStr::new(&format!("f{}", ino.0 - inos[0].0)))
            .unwrap();
        // The creation's reference and the listing's: the second forget frees the inode.
        fs.forget(ino, 1);
        assert!(fs.getattr(ino).is_ok(), "readdirplus took no reference on {ino:?}");
        fs.forget(ino, 1);
        assert_eq!(fs.getattr(ino), Err(FsError::NotFound));
    }
    // The root's references are untouched by its `.` entry: it stays.
    assert!(fs.getattr(fs.root()).is_ok());
}

#[test]
fn readdirplus_in_batches_of_one_lists_every_remaining_entry_once() {
    let fs = fs();
    let inos = files(&fs, 3);
    // f1 is unlinked and its last reference returned. f0 and f2 remain; batches of one entry
    // reach both, each once, and return exactly one reference each (forgotten here).
    fs.unlink(&Ctx::root(), fs.root(), OsStr::new("f1")).unwrap();
    fs.forget(inos[1], 1);
    let dh = fs.opendir(&Ctx::root(), fs.root()).unwrap();
    let (mut names, mut offset) = (Vec::new(), 0);
    loop {
        let batch = fs.readdirplus(dh, offset, 1).unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.entry.cookie;
        for e in batch {
            if !e.is_dot() {
                fs.forget(e.entry.ino, 1);
            }
            names.push(String::from_utf8(e.entry.name.to_vec()).unwrap());
        }
    }
    fs.releasedir(dh).unwrap();
    assert_eq!(names, [".", "..", "f0", "f2"]);
}

/// A listing hands out the directory's own copy of each name (a shared reference), not a new
/// allocation per entry: two listings of the same entry see the same bytes at the same address.
/// That is what keeps a listing of a large directory as cheap as the entry walk itself.
#[test]
fn listing_shares_the_directorys_names() {
    let fs = fs();
    files(&fs, 3);
    let list = || {
        let dh = fs.opendir(&Ctx::root(), fs.root()).unwrap();
        let batch = fs.readdir(dh, 2, 100).unwrap();
        fs.releasedir(dh).unwrap();
        batch
    };
    let (a, b) = (list(), list());
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.name.as_ptr(), y.name.as_ptr(), "{:?} copied", x.name);
    }
    // The name compares with the usual byte forms.
    assert!(a[0].name == b"f0" && a[0].name == b"f0".to_vec() && a[0].name == b"f0"[..]);
    assert_eq!(a[0].name.as_os_str(), OsStr::new("f0"));
    // A renamed entry gets a new name; the old listing keeps the old one.
    fs.rename(
        &Ctx::root(),
        fs.root(),
        OsStr::new("f0"),
        fs.root(),
        OsStr::new("g0"),
        rtmpfs_core::RenameFlags::default(),
    )
    .unwrap();
    assert_eq!(a[0].name, b"f0");
    assert!(list().iter().any(|e| e.name == b"g0"));
}
