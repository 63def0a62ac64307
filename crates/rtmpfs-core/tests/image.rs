//! Images: snapshot → restore round trips of trees built by random operation sequences
//! (compared inode by inode: attributes with all four times, xattrs, file flags, `SEEK_DATA`
//! extents, bytes, symlink targets, link structure), under a RAM budget with pages swapped out;
//! snapshots taken while writers run are states that existed; damaged images are refused.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rtmpfs_core::{
    Attr, Config, Ctx, FallocateMode, FileKind, Filesystem, FsError, ImageError, ImageKey, Ino, LimitSource, OpenFlags,
    RenameFlags, RestoreOptions, SeekWhence, SnapshotOptions, SwapConfig, XattrSetMode,
};
use rtmpfs_testkit::engine::EngineBackend;
use rtmpfs_testkit::model::ModelConfig;
use rtmpfs_testkit::{Backend, Op};

use crate::common::{check, env_usize, ops};

/// One inode as a user sees it, without its number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    attr: Attr,
    flags: u32,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// `SEEK_DATA`/`SEEK_HOLE` extents, and the bytes of the extents (holes read zero).
    extents: Vec<(u64, u64)>,
    bytes: Vec<u8>,
    target: Vec<u8>,
}

/// Every path of `fs` with its node, and for each path the first path naming the same inode
/// (the link structure).
fn dump(fs: &Filesystem) -> (BTreeMap<String, Node>, BTreeMap<String, String>) {
    dump_atime(fs, true)
}

/// `dump`, with each atime as it is after the dump read the inode (`after_read`, so that two
/// trees read the same way compare equal) or as it was before.
fn dump_atime(fs: &Filesystem, after_read: bool) -> (BTreeMap<String, Node>, BTreeMap<String, String>) {
    let ctx = Ctx::root();
    let mut nodes = BTreeMap::new();
    let mut first_name: HashMap<Ino, String> = HashMap::new();
    let mut links = BTreeMap::new();
    let mut stack = vec![(fs.root(), String::new())];
    while let Some((ino, path)) = stack.pop() {
        let mut attr = fs.getattr(ino).unwrap();
        let names = fs.listxattr(&ctx, ino).unwrap();
        let xattrs = names
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| (n.to_vec(), fs.getxattr(&ctx, ino, OsStr::from_bytes(n)).unwrap()))
            .collect();
        let (mut extents, mut bytes, mut target) = (Vec::new(), Vec::new(), Vec::new());
        match attr.kind {
            FileKind::RegularFile => {
                let fh = fs.open(&ctx, ino, OpenFlags::READ).unwrap();
                let mut at = 0;
                while let Ok(start) = fs.lseek(fh, at as i64, SeekWhence::Data) {
                    let end = fs.lseek(fh, start as i64, SeekWhence::Hole).unwrap();
                    extents.push((start, end));
                    bytes.extend(fs.read_vec(fh, start, (end - start) as usize).unwrap());
                    at = end;
                }
                fs.release(fh).unwrap();
            }
            FileKind::Symlink => target = fs.readlink(ino).unwrap(),
            FileKind::Directory => {
                let fh = fs.opendir(&ctx, ino).unwrap();
                for e in fs.readdir(fh, 0, usize::MAX).unwrap() {
                    if e.name != b"." && e.name != b".." {
                        stack.push((e.ino, format!("{path}/{}", String::from_utf8_lossy(&e.name))));
                    }
                }
                fs.releasedir(fh).unwrap();
            }
            _ => {}
        }
        // Reading the file may have moved its atime (relatime): take the attributes again.
        if after_read {
            attr.atime = fs.getattr(ino).unwrap().atime;
        }
        let first = first_name.entry(ino).or_insert_with(|| path.clone()).clone();
        links.insert(path.clone(), first);
        attr.ino = Ino(0);
        attr.generation = 0;
        let flags = fs.file_flags(ino).unwrap();
        nodes.insert(
            path,
            Node {
                attr,
                flags,
                xattrs,
                extents,
                bytes,
                target,
            },
        );
    }
    (nodes, links)
}

trait FromBytes {
    fn from_bytes(b: &[u8]) -> &OsStr;
}
impl FromBytes for OsStr {
    fn from_bytes(b: &[u8]) -> &OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn image_of(fs: &Filesystem) -> Vec<u8> {
    let mut img = Vec::new();
    fs.snapshot(&mut img).unwrap();
    img
}

fn restore(config: Config, img: &[u8]) -> Result<Filesystem, ImageError> {
    Filesystem::from_image(config, img, &RestoreOptions::default())
}

/// Snapshot `fs`, restore it under `config`, and compare the two trees; also the restored
/// instance's accounting invariant.
fn round_trip(fs: &Filesystem, config: Config) -> Result<(), String> {
    let before = dump(fs);
    let img = image_of(fs);
    let back = restore(config, &img).map_err(|e| format!("restore: {e}"))?;
    back.check_invariants()?;
    let after = dump(&back);
    if before.0 != after.0 {
        for (path, node) in &before.0 {
            if after.0.get(path) != Some(node) {
                return Err(format!("{path:?} differs:\n{node:?}\n{:?}", after.0.get(path)));
            }
        }
        return Err(format!("paths differ: {:?} vs {:?}", before.0.keys(), after.0.keys()));
    }
    if before.1 != after.1 {
        return Err(format!("link structure differs: {:?} vs {:?}", before.1, after.1));
    }
    Ok(())
}

fn small() -> ModelConfig {
    ModelConfig {
        size_pages: Some(64),
        nr_inodes: Some(48),
        umask: 0o022,
        root_mode: 0o1777,
    }
}

fn run_ops(engine: &mut EngineBackend, ops: &[Op]) {
    for op in ops {
        let _ = engine.apply(op);
    }
}

/// Trees built by random operation sequences come back identical, link structure included,
/// and the restored instance's accounting is consistent.
#[test]
fn random_trees_round_trip() {
    let cases = env_usize("RTMPFS_CASES", 96);
    check("random_trees_round_trip", cases, ops(80, false), |ops| {
        let cfg = small();
        let config = EngineBackend::config_for(&cfg);
        let mut engine = EngineBackend::new(config.clone(), cfg.umask);
        run_ops(&mut engine, &ops);
        round_trip(&engine.fs, config)
    });
}

fn swapping(config: &Config, pages: u64) -> Config {
    Config {
        memory_bytes: Some(pages * 4096),
        swap: Some(SwapConfig {
            dir: std::env::temp_dir(),
            size_bytes: None,
            encrypt: true,
        }),
        background_threads: false,
        ..config.clone()
    }
}

/// Under a four-page RAM budget with the pages swapped out: the snapshot reads them without
/// bringing them back (resident pages and frames unchanged), and they restore identical into
/// another four-page instance.
#[test]
fn random_trees_round_trip_swapped_out() {
    let cases = env_usize("RTMPFS_CASES", 48);
    check("random_trees_round_trip_swapped_out", cases, ops(80, false), |ops| {
        let cfg = small();
        let config = swapping(&EngineBackend::config_for(&cfg), 4);
        let mut engine = EngineBackend::new(config.clone(), cfg.umask);
        run_ops(&mut engine, &ops);
        engine.fs.evict_now(usize::MAX);
        let before = engine.fs.usage();
        let img = image_of(&engine.fs);
        let after = engine.fs.usage();
        if (before.resident_pages, before.frames_in_use, before.swapped_pages)
            != (after.resident_pages, after.frames_in_use, after.swapped_pages)
        {
            return Err(format!("the snapshot moved pages: {before:?} -> {after:?}"));
        }
        drop(img);
        round_trip(&engine.fs, config)
    });
}

#[test]
fn swapped_pages_are_read_without_being_charged() {
    let ctx = Ctx::root();
    let config = swapping(&Config::default(), 4);
    let fs = Filesystem::new(config.clone()).unwrap();
    let (a, fh) = fs
        .create(&ctx, fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let data: Vec<u8> = (0..64 * 4096u32).map(|i| (i % 251) as u8).collect();
    fs.write(&ctx, fh, 0, &data).unwrap();
    fs.evict_now(usize::MAX);
    let before = fs.usage();
    assert!(before.swapped_pages >= 60, "{before:?}");
    let img = image_of(&fs);
    let after = fs.usage();
    assert_eq!(before.resident_pages, after.resident_pages);
    assert_eq!(before.swapped_pages, after.swapped_pages);
    let back = restore(config, &img).unwrap();
    let ino = back.lookup(&ctx, back.root(), OsStr::new("f")).unwrap().ino;
    let rfh = back.open(&ctx, ino, OpenFlags::READ).unwrap();
    assert_eq!(back.read_vec(rfh, 0, data.len()).unwrap(), data);
    assert_eq!(back.getattr(ino).unwrap().mtime, fs.getattr(a.ino).unwrap().mtime);
}

/// Every kind of inode, xattrs of every namespace, an ACL, file flags, hard links, a sparse
/// file, reserved pages, exact times, and the root's own attributes.
/// A small tree with one of everything an image keeps: a set-id directory and file, text at
/// an offset, a page at 64 GiB (a hole before it), reserved pages, a hard link, a symlink, a
/// fifo, a socket, two device nodes, xattrs of three namespaces, an access ACL, explicit
/// owners, times and file flags, and the mount's limits.
fn rich_tree() -> Filesystem {
    let ctx = Ctx::root();
    let config = Config {
        size_bytes: Some(1 << 30),
        max_inodes: Some(1000),
        root_mode: 0o750,
        root_uid: 7,
        root_gid: 8,
        ..Config::default()
    };
    let fs = Filesystem::new(config).unwrap();
    let root = fs.root();
    let d = fs.mkdir(&ctx, root, OsStr::new("d"), 0o2755).unwrap();
    let (f, fh) = fs
        .create(&ctx, d.ino, OsStr::new("f"), 0o4644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&ctx, fh, 3, b"hello").unwrap();
    // Sparse: one page at 64 GiB.
    fs.write(&ctx, fh, 64 << 30, &[7u8; 4096]).unwrap();
    fs.fallocate(&ctx, fh, 1 << 20, 3 * 4096, FallocateMode::KeepSize)
        .unwrap();
    fs.link(&ctx, f.ino, root, OsStr::new("hard")).unwrap();
    fs.symlink(&ctx, d.ino, OsStr::new("s"), OsStr::new("../hard")).unwrap();
    fs.mknod(&ctx, root, OsStr::new("fifo"), libc::S_IFIFO | 0o600, 0)
        .unwrap();
    fs.mknod(&ctx, root, OsStr::new("sock"), libc::S_IFSOCK | 0o600, 0)
        .unwrap();
    fs.mknod(
        &ctx,
        root,
        OsStr::new("chr"),
        libc::S_IFCHR | 0o600,
        libc::makedev(1, 3),
    )
    .unwrap();
    fs.mknod(
        &ctx,
        root,
        OsStr::new("blk"),
        libc::S_IFBLK | 0o600,
        libc::makedev(7, 0),
    )
    .unwrap();
    for (name, value) in [
        ("user.a", &b"1"[..]),
        ("trusted.b", b"two"),
        ("security.c", b"\x00\x01binary"),
    ] {
        fs.setxattr(&ctx, f.ino, OsStr::new(name), value, XattrSetMode::Upsert)
            .unwrap();
    }
    fs.setxattr(&ctx, root, OsStr::new("user.root"), b"r", XattrSetMode::Upsert)
        .unwrap();
    // An access ACL with a named user (not equivalent to a mode, so it is stored).
    let acl = rtmpfs_testkit::acl::encode(&[
        (1, 6, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 6, u32::MAX),
        (0x20, 4, u32::MAX),
    ]);
    fs.setxattr(
        &ctx,
        d.ino,
        OsStr::new("system.posix_acl_access"),
        &acl,
        XattrSetMode::Upsert,
    )
    .unwrap();
    fs.setattr(
        &ctx,
        f.ino,
        &rtmpfs_core::SetAttr {
            uid: Some(1000),
            gid: Some(100),
            atime: Some(rtmpfs_core::SetTime::At(rtmpfs_core::Timespec {
                sec: 1_000_000_000,
                nsec: 123_456_789,
            })),
            mtime: Some(rtmpfs_core::SetTime::At(rtmpfs_core::Timespec {
                sec: 1_200_000_000,
                nsec: 987_654_321,
            })),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    fs.set_file_flags(
        &ctx,
        f.ino,
        rtmpfs_core::file_flags::NODUMP | rtmpfs_core::file_flags::APPEND,
    )
    .unwrap();
    fs.release(fh).unwrap();
    fs
}

#[test]
fn everything_is_kept() {
    let fs = rich_tree();
    let img = image_of(&fs);
    assert!(
        img.len() < 64 * 1024,
        "a 64 GiB sparse file made a {} byte image",
        img.len()
    );
    // Limits come from the image: a config without them still gets them.
    let back = restore(Config::default(), &img).unwrap();
    assert_eq!(back.statfs().blocks, fs.statfs().blocks);
    assert_eq!(back.statfs().files, fs.statfs().files);
    round_trip(&fs, Config::default()).unwrap();
    // ... unless the config's are asked for.
    let opts = RestoreOptions {
        size: LimitSource::Config,
        inodes: LimitSource::Config,
        ..RestoreOptions::default()
    };
    let unlimited = Filesystem::from_image(Config::default(), &img[..], &opts).unwrap();
    assert_ne!(unlimited.statfs().files, fs.statfs().files);
    // A limit the tree does not fit is refused.
    let tight = Config {
        max_inodes: Some(3),
        ..Config::default()
    };
    let opts = RestoreOptions {
        inodes: LimitSource::Config,
        ..RestoreOptions::default()
    };
    assert!(matches!(
        Filesystem::from_image(tight, &img[..], &opts),
        Err(ImageError::Fs(FsError::NoSpace))
    ));
}

/// `dump` as text with every field spelled out (not `Debug`, so that a field added to `Attr`
/// does not change it): what the version-1 fixtures below are compared with.
fn describe(fs: &Filesystem) -> String {
    use std::fmt::Write;
    let (nodes, links) = dump_atime(fs, false);
    let mut out = String::new();
    for (path, n) in &nodes {
        // A second name: its inode is described under its first (whose read moved the atime).
        if links[path] != *path {
            writeln!(out, "{path:?} another name of {:?}", links[path]).unwrap();
            continue;
        }
        let a = &n.attr;
        let t = |t: rtmpfs_core::Timespec| format!("{}.{:09}", t.sec, t.nsec);
        writeln!(
            out,
            "{path:?} {:?} {:o} nlink {} owner {}:{} rdev {} size {} blocks {} times {} {} {} {} flags {:#x}",
            a.kind,
            a.perm,
            a.nlink,
            a.uid,
            a.gid,
            a.rdev,
            a.size,
            a.blocks,
            t(a.atime),
            t(a.mtime),
            t(a.ctime),
            t(a.btime),
            n.flags
        )
        .unwrap();
        for (name, value) in &n.xattrs {
            writeln!(out, "  xattr {:?} = {:?}", String::from_utf8_lossy(name), value).unwrap();
        }
        if !n.extents.is_empty() {
            writeln!(
                out,
                "  extents {:?}, bytes crc32 {:08x}",
                n.extents,
                crc32fast::hash(&n.bytes)
            )
            .unwrap();
        }
        if !n.target.is_empty() {
            writeln!(out, "  target {:?}", String::from_utf8_lossy(&n.target)).unwrap();
        }
    }
    writeln!(out, "statfs blocks {} files {}", fs.statfs().blocks, fs.statfs().files).unwrap();
    out
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Images written by format version 1 (one zstd stream; rtmpfs before format version 2, kept
/// as persist= files by its users) still restore, plain and sealed, to the tree they hold.
/// The fixtures are `rich_tree` imaged by version 1, with `describe` of that tree as the
/// expected text (`RTMPFS_WRITE_FIXTURES=1` rewrites them from the current build, which is
/// only right while it writes version 1).
#[test]
fn version_1_images_still_restore() {
    let sealed_key = key(0x5a);
    if std::env::var_os("RTMPFS_WRITE_FIXTURES").is_some() {
        let fs = rich_tree();
        std::fs::create_dir_all(FIXTURES).unwrap();
        std::fs::write(format!("{FIXTURES}/image-v1.img"), image_of(&fs)).unwrap();
        let mut sealed = Vec::new();
        fs.snapshot_with(
            &mut sealed,
            &SnapshotOptions {
                key: Some(sealed_key.clone()),
            },
        )
        .unwrap();
        std::fs::write(format!("{FIXTURES}/image-v1-sealed.img"), sealed).unwrap();
        std::fs::write(format!("{FIXTURES}/image-v1.expected"), describe(&fs)).unwrap();
    }
    let expected = std::fs::read_to_string(format!("{FIXTURES}/image-v1.expected")).unwrap();
    for (file, k) in [("image-v1.img", None), ("image-v1-sealed.img", Some(sealed_key))] {
        let img = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
        assert_eq!(
            u32::from_le_bytes(img[8..12].try_into().unwrap()),
            1,
            "{file} is not version 1"
        );
        let opts = RestoreOptions {
            key: k,
            ..RestoreOptions::default()
        };
        let back = Filesystem::from_image(Config::default(), &img[..], &opts).unwrap();
        back.check_invariants().unwrap();
        assert_eq!(describe(&back), expected, "{file}");
    }
}

/// Writers that keep invariants across files run during snapshots; every image, restored,
/// satisfies them. A counter is written to `a` then `b` (so `a` is `b` or `b + 1`, as text);
/// a token file is renamed back and forth between two directories (exactly one holds it);
/// files are created in order `n0, n1, ...` (the names present are a prefix). A snapshot that
/// copied files one at a time would catch `a` and `b` at different counts.
#[test]
fn snapshots_under_writers_are_states_that_existed() {
    let ctx = Ctx::root();
    let fs = Arc::new(Filesystem::new(Config::default()).unwrap());
    let root = fs.root();
    let (a, fa) = fs
        .create(&ctx, root, OsStr::new("a"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let (b, fb) = fs
        .create(&ctx, root, OsStr::new("b"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let x = fs.mkdir(&ctx, root, OsStr::new("x"), 0o755).unwrap();
    let y = fs.mkdir(&ctx, root, OsStr::new("y"), 0o755).unwrap();
    fs.mknod(&ctx, x.ino, OsStr::new("token"), libc::S_IFREG | 0o644, 0)
        .unwrap();
    // Padding so that a snapshot takes a while: 4 MiB in 64 files.
    for i in 0..64 {
        let (_, fh) = fs
            .create(&ctx, root, OsStr::new(&format!("pad{i}")), 0o644, OpenFlags::READ_WRITE)
            .unwrap();
        fs.write(&ctx, fh, 0, &vec![i as u8; 64 * 1024]).unwrap();
        fs.release(fh).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    {
        let (fs, stop) = (fs.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let ctx = Ctx::root();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let text = format!("{n:020}");
                fs.write(&ctx, fa, 0, text.as_bytes()).unwrap();
                fs.write(&ctx, fb, 0, text.as_bytes()).unwrap();
            }
            n
        }));
    }
    {
        let (fs, stop) = (fs.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let ctx = Ctx::root();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (from, to) = if n % 2 == 0 { (x.ino, y.ino) } else { (y.ino, x.ino) };
                fs.rename(
                    &ctx,
                    from,
                    OsStr::new("token"),
                    to,
                    OsStr::new("token"),
                    RenameFlags::default(),
                )
                .unwrap();
                n += 1;
            }
            n
        }));
    }
    {
        let (fs, stop) = (fs.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let ctx = Ctx::root();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                let name = format!("n{n}");
                fs.mknod(&ctx, y.ino, OsStr::new(&name), libc::S_IFREG | 0o644, 0)
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut images = Vec::new();
    for _ in 0..8 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        images.push(image_of(&fs));
    }
    stop.store(true, Ordering::Relaxed);
    let progress: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        progress.iter().all(|&n| n > 8),
        "writers made no progress: {progress:?}"
    );
    let _ = (a, b);
    let mut counters = Vec::new();
    for img in &images {
        let back = restore(Config::default(), img).unwrap();
        let read = |name: &str| {
            let ino = back.lookup(&ctx, back.root(), OsStr::new(name)).unwrap().ino;
            let fh = back.open(&ctx, ino, OpenFlags::READ).unwrap();
            let v = back.read_vec(fh, 0, 64).unwrap();
            back.release(fh).unwrap();
            String::from_utf8(v).unwrap().parse::<u64>().unwrap_or(0)
        };
        let (ca, cb) = (read("a"), read("b"));
        assert!(ca == cb || ca == cb + 1, "a = {ca}, b = {cb}: not a state that existed");
        counters.push(ca);
        let rx = back.lookup(&ctx, back.root(), OsStr::new("x")).unwrap().ino;
        let ry = back.lookup(&ctx, back.root(), OsStr::new("y")).unwrap().ino;
        let in_x = back.lookup(&ctx, rx, OsStr::new("token")).is_ok();
        let in_y = back.lookup(&ctx, ry, OsStr::new("token")).is_ok();
        assert!(in_x != in_y, "token in x: {in_x}, in y: {in_y}");
        let fh = back.opendir(&ctx, ry).unwrap();
        let mut made: Vec<u64> = back
            .readdir(fh, 0, usize::MAX)
            .unwrap()
            .iter()
            .filter_map(|e| std::str::from_utf8(&e.name).ok()?.strip_prefix('n')?.parse().ok())
            .collect();
        made.sort_unstable();
        assert!(
            made.iter().enumerate().all(|(i, &n)| i as u64 == n),
            "created names are not a prefix"
        );
        back.check_invariants().unwrap();
    }
    assert!(
        counters.windows(2).any(|w| w[0] != w[1]),
        "the writers never moved between snapshots: {counters:?}"
    );
}

fn sample_image(key: Option<&ImageKey>) -> Vec<u8> {
    let ctx = Ctx::root();
    let fs = Filesystem::new(Config::default()).unwrap();
    let d = fs.mkdir(&ctx, fs.root(), OsStr::new("d"), 0o755).unwrap();
    let (f, fh) = fs
        .create(&ctx, d.ino, OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    // 2.6 MB of text, so that the image has three frames (cut at about 1 MiB of records each)
    // while staying small (about 40 KB), and a restore of each damaged copy stays cheap.
    let data: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("line {i:07}\n").into_bytes())
        .take(2_600_000)
        .collect();
    fs.write(&ctx, fh, 0, &data).unwrap();
    fs.setxattr(&ctx, f.ino, OsStr::new("user.x"), b"y", XattrSetMode::Upsert)
        .unwrap();
    fs.symlink(&ctx, fs.root(), OsStr::new("s"), OsStr::new("d/f")).unwrap();
    let mut img = Vec::new();
    fs.snapshot_with(&mut img, &SnapshotOptions { key: key.cloned() })
        .unwrap();
    img
}

fn key(byte: u8) -> ImageKey {
    ImageKey::from_bytes(&[byte; 32]).unwrap()
}

/// Where each chunk of an image starts (after the 52-byte header), and the image's end.
fn chunk_starts(img: &[u8], sealed: bool) -> Vec<usize> {
    let mut at = 52;
    let mut starts = Vec::new();
    while at < img.len() {
        starts.push(at);
        let len = u32::from_le_bytes(img[at..at + 4].try_into().unwrap()) as usize;
        at += 5 + len + if sealed { 16 } else { 4 };
    }
    assert_eq!(at, img.len(), "chunks do not tile the image");
    starts.push(at);
    starts
}

/// Every flipped byte and every truncation of an image is refused (never a restored tree),
/// with the reason: corrupt, truncated.
#[test]
fn damaged_images_are_refused() {
    for k in [None, Some(key(1))] {
        let img = sample_image(k.as_ref());
        let starts = chunk_starts(&img, k.is_some());
        assert!(
            starts.len() >= 4,
            "the sample image should have at least 3 chunks: {starts:?}"
        );
        let opts = RestoreOptions {
            key: k.clone(),
            ..RestoreOptions::default()
        };
        assert!(Filesystem::from_image(Config::default(), &img[..], &opts).is_ok());
        // Around each chunk's start (the end of the one before), and the image's end.
        let boundaries = || starts.iter().flat_map(|&b| b.saturating_sub(8)..(b + 8).min(img.len()));
        // Flipped bytes: every byte of the header and the first chunk's head and start, about
        // 200 more spread over the image, every byte around a chunk boundary, and the last 64
        // bytes (the final chunk's end and its trailer).
        let stride = img.len() / 200;
        let positions = (0..128)
            .chain((1024..img.len()).step_by(stride))
            .chain(boundaries().filter(|&p| p < img.len()))
            .chain(img.len() - 64..img.len());
        for pos in positions {
            let mut bad = img.clone();
            bad[pos] ^= 0x40;
            match Filesystem::from_image(Config::default(), &bad[..], &opts) {
                Ok(_) => panic!("flipped byte {pos} accepted (key {})", k.is_some()),
                Err(
                    ImageError::Corrupt(_)
                    | ImageError::NotAnImage
                    | ImageError::UnsupportedVersion { .. }
                    | ImageError::WrongKey
                    | ImageError::KeyRequired
                    | ImageError::NotEncrypted
                    | ImageError::Truncated(_),
                ) => {}
                Err(e) => panic!("flipped byte {pos}: unexpected {e}"),
            }
        }
        // Truncations: every length through the header and first chunk header, a stride,
        // every length around each chunk boundary, the end.
        let lens = (1..128)
            .chain((128..img.len()).step_by(stride))
            .chain(boundaries())
            .chain(img.len() - 64..img.len());
        for len in lens {
            match Filesystem::from_image(Config::default(), &img[..len], &opts) {
                Err(ImageError::Truncated(_)) => {}
                Ok(_) => panic!("image cut at {len} of {} accepted", img.len()),
                Err(e) => panic!("image cut at {len}: {e}, not truncated"),
            }
        }
        // Garbage after the end.
        let mut long = img.clone();
        long.push(0);
        assert!(matches!(
            Filesystem::from_image(Config::default(), &long[..], &opts),
            Err(ImageError::Corrupt(_))
        ));
    }
}

#[test]
fn wrong_version_key_and_magic_are_told_apart() {
    let plain = sample_image(None);
    let sealed = sample_image(Some(&key(1)));
    let with = |k: Option<ImageKey>| RestoreOptions {
        key: k,
        ..RestoreOptions::default()
    };
    let mut v3 = plain.clone();
    v3[8] = 3;
    assert!(matches!(
        Filesystem::from_image(Config::default(), &v3[..], &with(None)),
        Err(ImageError::UnsupportedVersion { found: 3, supported: 2 })
    ));
    let mut v0 = plain.clone();
    v0[8] = 0;
    assert!(matches!(
        Filesystem::from_image(Config::default(), &v0[..], &with(None)),
        Err(ImageError::UnsupportedVersion { found: 0, supported: 2 })
    ));
    assert!(matches!(
        Filesystem::from_image(Config::default(), &b"hello, not an image at all"[..], &with(None)),
        Err(ImageError::NotAnImage)
    ));
    assert!(matches!(
        Filesystem::from_image(Config::default(), &sealed[..], &with(Some(key(2)))),
        Err(ImageError::WrongKey)
    ));
    assert!(matches!(
        Filesystem::from_image(Config::default(), &sealed[..], &with(None)),
        Err(ImageError::KeyRequired)
    ));
    assert!(matches!(
        Filesystem::from_image(Config::default(), &plain[..], &with(Some(key(1)))),
        Err(ImageError::NotEncrypted)
    ));
    assert!(matches!(ImageKey::from_bytes(b"short"), Err(ImageError::BadKey(_))));
    // The sealed image does not hold the plaintext.
    assert!(!sealed.windows(6).any(|w| w == b"user.x"));
    assert!(plain.len() > 10_000 && sealed.len() > 10_000);
}

/// Pseudo-random (incompressible) bytes, so evicted pages go to swap, not the compressed pool.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Create `name` holding `data`; the handle is released.
fn put(fs: &Filesystem, name: &str, data: &[u8]) -> Ino {
    let ctx = Ctx::root();
    let (e, fh) = fs
        .create(&ctx, fs.root(), OsStr::new(name), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&ctx, fh, 0, data).unwrap();
    fs.release(fh).unwrap();
    e.ino
}

/// Overwrite `ino` at `off` with `data`.
fn overwrite(fs: &Filesystem, ino: Ino, off: u64, data: &[u8]) {
    let ctx = Ctx::root();
    let fh = fs.open(&ctx, ino, OpenFlags::READ_WRITE).unwrap();
    fs.write(&ctx, fh, off, data).unwrap();
    fs.release(fh).unwrap();
}

/// The bytes of `name` in `fs`.
fn contents(fs: &Filesystem, name: &str) -> Vec<u8> {
    let ctx = Ctx::root();
    let ino = fs.lookup(&ctx, fs.root(), OsStr::new(name)).unwrap().ino;
    let size = usize::try_from(fs.getattr(ino).unwrap().size).unwrap();
    let fh = fs.open(&ctx, ino, OpenFlags::READ).unwrap();
    let bytes = fs.read_vec(fh, 0, size).unwrap();
    fs.release(fh).unwrap();
    bytes
}

/// The snapshot lets go of the gate before it captures any file: pages changed after (a resident
/// page overwritten, a file truncated, swapped pages overwritten whole so their slots are freed
/// and then reused by new evictions, a file unlinked and released) are in the image as they were
/// at the snapshot's instant, through the page lists each change captured first (frames and
/// slots pinned until the walker reads them); every pin is let go after.
#[test]
fn pages_changed_after_the_gate_are_imaged_as_they_were() {
    const P: usize = 4096;
    let ctx = Ctx::root();
    let config = swapping(&Config::default(), 64);
    let fs = Arc::new(Filesystem::new(config.clone()).unwrap());
    let s_old = noise(1, 8 * P);
    let u_old = noise(2, 8 * P);
    let s = put(&fs, "s", &s_old);
    put(&fs, "u", &u_old);
    fs.evict_now(usize::MAX);
    assert!(fs.usage().swapped_pages >= 16, "{:?}", fs.usage());
    let w_old = noise(3, 8 * P);
    let t_old = noise(4, 8 * P);
    let w = put(&fs, "w", &w_old);
    let t = put(&fs, "t", &t_old);
    let w_resident = fs.usage().resident_pages;
    assert!(w_resident >= 16, "{:?}", fs.usage());

    let changer = fs.clone();
    let pins_seen = Arc::new(std::sync::Mutex::new((0, 0)));
    let pins = pins_seen.clone();
    fs.set_snapshot_hook(move || {
        let fs = changer;
        assert_eq!(fs.snapshot_pins(), (0, 0), "nothing is captured under the gate");
        // The gate is let go: these changes do not wait for the snapshot.
        overwrite(&fs, w, 0, &noise(5, 3 * P));
        overwrite(&fs, w, 5 * P as u64 + 100, b"late");
        let trunc = rtmpfs_core::SetAttr {
            size: Some(0),
            ..Default::default()
        };
        fs.setattr(&Ctx::root(), t, &trunc, None).unwrap();
        overwrite(&fs, s, 0, &noise(6, 8 * P));
        fs.unlink(&Ctx::root(), fs.root(), OsStr::new("u")).unwrap();
        *pins.lock().unwrap() = fs.snapshot_pins();
        // New data evicted into the lowest free slots: the freed ones, were they not pinned.
        put(&fs, "n", &noise(7, 24 * P));
        fs.evict_now(usize::MAX);
    });
    let mut img = Vec::new();
    let stats = fs.snapshot(&mut img).unwrap();
    let (frames, slots) = *pins_seen.lock().unwrap();
    assert!(
        frames >= 16 && slots >= 16,
        "pins while the walker held: {frames} frames, {slots} slots"
    );
    assert!(stats.pre_images >= 4, "{stats:?}");
    assert_eq!(fs.snapshot_pins(), (0, 0));
    fs.check_invariants().unwrap();

    let back = restore(config, &img).unwrap();
    assert_eq!(contents(&back, "w"), w_old);
    assert_eq!(contents(&back, "t"), t_old);
    assert_eq!(contents(&back, "s"), s_old);
    assert_eq!(contents(&back, "u"), u_old);
    assert!(back.lookup(&ctx, back.root(), OsStr::new("n")).is_err());
    // And the live filesystem has the changes.
    assert_eq!(contents(&fs, "s"), noise(6, 8 * P));
    assert_eq!(fs.getattr(t).unwrap().size, 0);
    let mut w_new = w_old.clone();
    w_new[..3 * P].copy_from_slice(&noise(5, 3 * P));
    w_new[5 * P + 100..5 * P + 104].copy_from_slice(b"late");
    assert_eq!(contents(&fs, "w"), w_new);
}

/// A sink that fails once `left` bytes are written.
struct FailAfter {
    left: usize,
}

impl std::io::Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.left {
            return Err(std::io::Error::other("disk full"));
        }
        self.left -= buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A snapshot that fails midway (its sink fails after some of the data) lets go of every pin,
/// and a change made while it held them is kept; the next snapshot succeeds.
#[test]
fn a_failed_snapshot_lets_every_pin_go() {
    const P: usize = 4096;
    let config = swapping(&Config::default(), 64);
    let fs = Arc::new(Filesystem::new(config.clone()).unwrap());
    let a_old = noise(11, 32 * P);
    let a = put(&fs, "a", &a_old);
    fs.evict_now(usize::MAX);
    let b = put(&fs, "b", &noise(12, 32 * P));
    let changer = fs.clone();
    let pins_seen = Arc::new(std::sync::Mutex::new((0, 0)));
    let pins = pins_seen.clone();
    fs.set_snapshot_hook(move || {
        // A change to `a` captures it (its swapped pages' slots pinned), the write to `b`
        // captures `b` (its frames pinned): both captures wait in the store for the walker.
        changer.setattr(&Ctx::root(), a, &mode(0o600), None).unwrap();
        overwrite(&changer, b, 0, &noise(13, 4 * P));
        *pins.lock().unwrap() = changer.snapshot_pins();
    });
    let err = fs.snapshot(FailAfter { left: 64 * 1024 }).unwrap_err();
    assert!(matches!(err, ImageError::Io(_)), "{err:?}");
    let (frames, slots) = *pins_seen.lock().unwrap();
    assert!(
        frames >= 32 && slots >= 32,
        "pins while the walker held: {frames} frames, {slots} slots"
    );
    assert_eq!(fs.snapshot_pins(), (0, 0));
    fs.check_invariants().unwrap();
    // Changes after the failure do not copy (no pin is left), and the next snapshot is whole.
    overwrite(&fs, b, 4 * P as u64, &noise(14, P));
    let stats = fs.snapshot(&mut Vec::new()).unwrap();
    assert_eq!(stats.pre_images, 0);
    assert_eq!(fs.snapshot_pins(), (0, 0));
    let img = image_of(&fs);
    let back = restore(config, &img).unwrap();
    assert_eq!(contents(&back, "a"), a_old);
    assert_eq!(contents(&back, "b"), contents(&fs, "b"));
}

/// A `SetAttr` that sets the mode only.
fn mode(perm: u32) -> rtmpfs_core::SetAttr {
    rtmpfs_core::SetAttr {
        mode: Some(perm),
        ..Default::default()
    }
}

/// Pages that compress to about 920 bytes (900 random bytes, then zeros): with a one-page pool
/// they leave RAM as compressed records, several to a swap slot.
fn quarters(seed: u64, pages: usize) -> Vec<u8> {
    const P: usize = 4096;
    let mut data = vec![0u8; pages * P];
    for (i, page) in data.chunks_exact_mut(P).enumerate() {
        page[..900].copy_from_slice(&noise(seed * 1000 + i as u64, 900));
    }
    data
}

/// Compressed records in swap (issue 14's tier) captured by a snapshot: after the gate, every
/// record is read back (each freed, its slot's free deferred by the pin), half the pages are
/// rewritten, and new records are written into the lowest free slots — which would be the
/// captured ones, were they not pinned. The image holds the records as they were, every pin
/// and deferred free goes, and the live filesystem holds the changes.
#[test]
fn compressed_records_in_swap_are_imaged_as_they_were() {
    const P: usize = 4096;
    for algo in [rtmpfs_core::Compression::Lz4, rtmpfs_core::Compression::Zstd] {
        let config = Config {
            compression: algo,
            compress_max_bytes: Some(P as u64),
            ..swapping(&Config::default(), 64)
        };
        let fs = Arc::new(Filesystem::new(config.clone()).unwrap());
        let old = quarters(1, 40);
        let r = put(&fs, "r", &old);
        fs.evict_now(usize::MAX);
        let u = fs.usage();
        assert!(
            u.swap_records >= 24 && 2 * u.swap_record_slots <= u.swap_records,
            "{algo:?}: records not packed in swap: {u:?}"
        );
        let changer = fs.clone();
        let pins_seen = Arc::new(std::sync::Mutex::new((0, 0)));
        let pins = pins_seen.clone();
        let new_half = quarters(2, 20);
        let rewrite = new_half.clone();
        fs.set_snapshot_hook(move || {
            let fs = changer;
            assert_eq!(fs.snapshot_pins(), (0, 0), "nothing is captured under the gate");
            // A change to `r` captures it first: its records' slots pinned, once per slot.
            fs.setattr(&Ctx::root(), r, &mode(0o600), None).unwrap();
            *pins.lock().unwrap() = fs.snapshot_pins();
            // Every record read back (and freed), then half the pages rewritten and evicted
            // again, and a new file's records: all into the lowest free slots.
            assert_eq!(contents(&fs, "r").len(), 40 * P);
            overwrite(&fs, r, 0, &rewrite);
            put(&fs, "n", &quarters(3, 40));
            fs.evict_now(usize::MAX);
            fs.check_invariants().unwrap();
        });
        let mut img = Vec::new();
        fs.snapshot(&mut img).unwrap();
        let (_, slots) = *pins_seen.lock().unwrap();
        assert_eq!(slots, u.swap_record_slots, "{algo:?}: pinned slots");
        assert_eq!(fs.snapshot_pins(), (0, 0), "{algo:?}");
        fs.check_invariants().unwrap();

        let back = restore(config, &img).unwrap();
        assert!(
            contents(&back, "r") == old,
            "{algo:?}: the image lost the records' bytes"
        );
        assert!(back.lookup(&Ctx::root(), back.root(), OsStr::new("n")).is_err());
        let mut now = old.clone();
        now[..20 * P].copy_from_slice(&new_half);
        assert!(contents(&fs, "r") == now, "{algo:?}: the live file lost a change");
        assert!(contents(&fs, "n") == quarters(3, 40), "{algo:?}");
        assert_eq!(fs.usage().poisoned_pages, 0, "{algo:?}");
    }
}

/// The inode at `path` ("/a/b"), looked up from the root.
fn at(fs: &Filesystem, path: &str) -> Ino {
    let ctx = Ctx::root();
    path.split('/').filter(|c| !c.is_empty()).fold(fs.root(), |dir, name| {
        fs.lookup(&ctx, dir, OsStr::new(name)).unwrap().ino
    })
}

/// The tree every change of `every_change_after_the_gate_leaves_the_image_at_the_epoch`
/// starts from: files with data, holes and xattrs, a hard link, a symlink, a fifo, an empty
/// directory and a directory with a child.
fn epoch_tree(fs: &Filesystem) {
    const P: usize = 4096;
    let ctx = Ctx::root();
    let root = fs.root();
    let f = put(fs, "f", &noise(21, 3 * P));
    fs.setxattr(&ctx, f, OsStr::new("user.a"), b"1", XattrSetMode::Upsert)
        .unwrap();
    let d = fs.mkdir(&ctx, root, OsStr::new("d"), 0o755).unwrap().ino;
    let (g, fh) = fs
        .create(&ctx, d, OsStr::new("g"), 0o640, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&ctx, fh, 2 * P as u64, &noise(22, 2 * P)).unwrap();
    fs.release(fh).unwrap();
    fs.setxattr(&ctx, g.ino, OsStr::new("user.g"), b"gee", XattrSetMode::Upsert)
        .unwrap();
    fs.link(&ctx, f, d, OsStr::new("h")).unwrap();
    fs.symlink(&ctx, d, OsStr::new("s"), OsStr::new("../f")).unwrap();
    fs.mknod(&ctx, root, OsStr::new("p"), libc::S_IFIFO | 0o600, 0).unwrap();
    fs.mkdir(&ctx, root, OsStr::new("e"), 0o700).unwrap();
    let m = fs.mkdir(&ctx, root, OsStr::new("m"), 0o750).unwrap().ino;
    put_in(fs, m, "k", &noise(23, P + 10));
}

/// Create `name` in directory `dir` holding `data`.
fn put_in(fs: &Filesystem, dir: Ino, name: &str, data: &[u8]) -> Ino {
    let ctx = Ctx::root();
    let (e, fh) = fs
        .create(&ctx, dir, OsStr::new(name), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&ctx, fh, 0, data).unwrap();
    fs.release(fh).unwrap();
    e.ino
}

type Change = fn(&Filesystem);

/// A node for a failure message: the bytes by length and a checksum.
fn brief(n: &Node) -> String {
    let sum = n
        .bytes
        .iter()
        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!(
        "{:?} flags {:#x} xattrs {:?} extents {:?} bytes {} (sum {sum:#x}) target {:?}",
        n.attr,
        n.flags,
        n.xattrs,
        n.extents,
        n.bytes.len(),
        String::from_utf8_lossy(&n.target)
    )
}

/// One change of every kind, each made after the snapshot has let go of the gate and before
/// its walker has captured anything.
fn changes() -> Vec<(&'static str, Change)> {
    const P: u64 = 4096;
    fn ctx() -> Ctx {
        Ctx::root()
    }
    fn name(n: &str) -> &OsStr {
        OsStr::new(n)
    }
    fn rename(fs: &Filesystem, from: &str, to: &str, flags: RenameFlags) {
        let (fp, fname) = from.rsplit_once('/').unwrap();
        let (tp, tname) = to.rsplit_once('/').unwrap();
        fs.rename(&ctx(), at(fs, fp), name(fname), at(fs, tp), name(tname), flags)
            .unwrap();
    }
    fn setattr(fs: &Filesystem, path: &str, set: rtmpfs_core::SetAttr) {
        fs.setattr(&ctx(), at(fs, path), &set, None).unwrap();
    }
    fn rw(fs: &Filesystem, path: &str) -> rtmpfs_core::Fh {
        fs.open(&ctx(), at(fs, path), OpenFlags::READ_WRITE).unwrap()
    }
    vec![
        ("create", |fs| {
            let (_, fh) = fs
                .create(&ctx(), at(fs, "/d"), name("new"), 0o600, OpenFlags::WRITE)
                .unwrap();
            fs.write(&ctx(), fh, 0, b"new").unwrap();
            fs.release(fh).unwrap();
        }),
        ("mkdir", |fs| {
            fs.mkdir(&ctx(), at(fs, "/d"), name("nd"), 0o700).unwrap();
        }),
        ("mkdir in a new directory", |fs| {
            let nd = fs.mkdir(&ctx(), at(fs, "/e"), name("nd"), 0o700).unwrap().ino;
            fs.mkdir(&ctx(), nd, name("deeper"), 0o700).unwrap();
        }),
        ("mknod", |fs| {
            fs.mknod(&ctx(), at(fs, "/e"), name("sock"), libc::S_IFSOCK | 0o600, 0)
                .unwrap();
        }),
        ("symlink", |fs| {
            fs.symlink(&ctx(), fs.root(), name("sl"), name("d/g")).unwrap();
        }),
        ("link", |fs| {
            fs.link(&ctx(), at(fs, "/d/g"), at(fs, "/e"), name("g2")).unwrap();
        }),
        ("unlink (last link)", |fs| {
            fs.unlink(&ctx(), at(fs, "/d"), name("g")).unwrap();
        }),
        ("unlink (one of two links)", |fs| {
            fs.unlink(&ctx(), fs.root(), name("f")).unwrap();
        }),
        ("unlink of every file, then rmdir", |fs| {
            fs.unlink(&ctx(), at(fs, "/m"), name("k")).unwrap();
            fs.rmdir(&ctx(), fs.root(), name("m")).unwrap();
        }),
        ("rmdir", |fs| {
            fs.rmdir(&ctx(), fs.root(), name("e")).unwrap();
        }),
        ("rename in a directory", |fs| {
            rename(fs, "/d/g", "/d/g2", RenameFlags::default());
        }),
        ("rename over an existing file", |fs| {
            rename(fs, "/m/k", "/d/g", RenameFlags::default());
        }),
        ("rename over one of two links", |fs| {
            rename(fs, "/d/g", "/f", RenameFlags::default());
        }),
        ("rename exchange", |fs| {
            let exchange = RenameFlags {
                exchange: true,
                ..RenameFlags::default()
            };
            rename(fs, "/d/g", "/m/k", exchange);
        }),
        ("rename exchange of directories", |fs| {
            let exchange = RenameFlags {
                exchange: true,
                ..RenameFlags::default()
            };
            rename(fs, "/e", "/d", exchange);
        }),
        ("rename of a directory to another", |fs| {
            rename(fs, "/m", "/d/m2", RenameFlags::default());
        }),
        ("rename of a directory over an empty one", |fs| {
            rename(fs, "/m", "/e", RenameFlags::default());
        }),
        ("rename with a whiteout", |fs| {
            let whiteout = RenameFlags {
                whiteout: true,
                ..RenameFlags::default()
            };
            rename(fs, "/d/g", "/e/g", whiteout);
        }),
        ("setattr mode", |fs| {
            setattr(fs, "/d/g", mode(0o4711));
        }),
        ("setattr owner", |fs| {
            let set = rtmpfs_core::SetAttr {
                uid: Some(1000),
                gid: Some(1000),
                ..Default::default()
            };
            setattr(fs, "/d", set);
        }),
        ("setattr times", |fs| {
            let t = rtmpfs_core::SetTime::At(rtmpfs_core::Timespec { sec: 12345, nsec: 678 });
            let set = rtmpfs_core::SetAttr {
                atime: Some(t),
                mtime: Some(t),
                ..Default::default()
            };
            setattr(fs, "/p", set);
        }),
        ("setattr size down", |fs| {
            let set = rtmpfs_core::SetAttr {
                size: Some(P + 1),
                ..Default::default()
            };
            setattr(fs, "/f", set);
        }),
        ("setattr size up", |fs| {
            let set = rtmpfs_core::SetAttr {
                size: Some(40 * P),
                ..Default::default()
            };
            setattr(fs, "/d/g", set);
        }),
        ("setxattr", |fs| {
            fs.setxattr(&ctx(), at(fs, "/f"), name("user.a"), b"2", XattrSetMode::Upsert)
                .unwrap();
            fs.setxattr(&ctx(), at(fs, "/d"), name("user.n"), b"new", XattrSetMode::Upsert)
                .unwrap();
        }),
        ("setxattr of an ACL", |fs| {
            // user::rw-, group::r--, other::--- (version 2, tag, perm, id).
            let mut acl = 2u32.to_le_bytes().to_vec();
            for (tag, perm) in [(1u16, 6u16), (4, 4), (0x20, 0)] {
                acl.extend(tag.to_le_bytes());
                acl.extend(perm.to_le_bytes());
                acl.extend(u32::MAX.to_le_bytes());
            }
            fs.setxattr(
                &ctx(),
                at(fs, "/d/g"),
                name("system.posix_acl_access"),
                &acl,
                XattrSetMode::Upsert,
            )
            .unwrap();
        }),
        ("removexattr", |fs| {
            fs.removexattr(&ctx(), at(fs, "/d/g"), name("user.g")).unwrap();
        }),
        ("file flags", |fs| {
            fs.set_file_flags(&ctx(), at(fs, "/f"), rtmpfs_core::file_flags::NODUMP)
                .unwrap();
        }),
        ("write in place and past the end", |fs| {
            let fh = rw(fs, "/f");
            fs.write(&ctx(), fh, 100, &noise(31, 5000)).unwrap();
            fs.write(&ctx(), fh, 9 * P, b"tail").unwrap();
            fs.release(fh).unwrap();
        }),
        ("write into a hole", |fs| {
            let fh = rw(fs, "/d/g");
            fs.write(&ctx(), fh, 10, b"in the hole").unwrap();
            fs.release(fh).unwrap();
        }),
        ("fallocate", |fs| {
            let fh = rw(fs, "/d/g");
            fs.fallocate(&ctx(), fh, 0, 8 * P, FallocateMode::Allocate).unwrap();
            fs.release(fh).unwrap();
        }),
        ("fallocate keep size", |fs| {
            let fh = rw(fs, "/f");
            fs.fallocate(&ctx(), fh, 3 * P, 8 * P, FallocateMode::KeepSize).unwrap();
            fs.release(fh).unwrap();
        }),
        ("punch a hole", |fs| {
            let fh = rw(fs, "/f");
            fs.fallocate(&ctx(), fh, 100, P + 100, FallocateMode::PunchHole)
                .unwrap();
            fs.release(fh).unwrap();
        }),
        ("copy_file_range", |fs| {
            let (fin, fout) = (rw(fs, "/f"), rw(fs, "/d/g"));
            fs.copy_file_range(&ctx(), fin, 0, fout, 0, 3 * P).unwrap();
            fs.release(fin).unwrap();
            fs.release(fout).unwrap();
        }),
        ("open O_TRUNC", |fs| {
            let flags = OpenFlags {
                truncate: true,
                ..OpenFlags::WRITE
            };
            let fh = fs.open(&ctx(), at(fs, "/f"), flags).unwrap();
            fs.release(fh).unwrap();
        }),
        ("tmpfile and link", |fs| {
            let (t, fh) = fs.tmpfile(&ctx(), at(fs, "/d"), 0o600, OpenFlags::READ_WRITE).unwrap();
            fs.write(&ctx(), fh, 0, b"anonymous").unwrap();
            fs.link(&ctx(), t.ino, at(fs, "/d"), name("t")).unwrap();
            fs.release(fh).unwrap();
        }),
        ("remove_privs", |fs| {
            setattr(fs, "/d/g", mode(0o6755));
            fs.remove_privs(
                &Ctx {
                    uid: 1000,
                    gid: 1000,
                    ..Ctx::root()
                },
                at(fs, "/d/g"),
            )
            .unwrap();
        }),
        ("everything at once", |fs| {
            let fh = rw(fs, "/d/g");
            fs.write(&ctx(), fh, 0, b"changed").unwrap();
            rename(fs, "/d/g", "/m/g", RenameFlags::default());
            rename(fs, "/m", "/e/m", RenameFlags::default());
            fs.unlink(&ctx(), at(fs, "/e/m"), name("g")).unwrap();
            fs.release(fh).unwrap();
            fs.unlink(&ctx(), at(fs, "/e/m"), name("k")).unwrap();
            fs.rmdir(&ctx(), at(fs, "/e"), name("m")).unwrap();
            fs.unlink(&ctx(), at(fs, "/d"), name("h")).unwrap();
            fs.unlink(&ctx(), fs.root(), name("f")).unwrap();
            fs.rmdir(&ctx(), fs.root(), name("e")).unwrap();
        }),
    ]
}

/// Every kind of change, made after the snapshot lets go of the gate and before its walker has
/// captured anything (the snapshot hook), leaves the image as the tree was at the snapshot's
/// instant, compared path by path (attributes with all four times, xattrs, flags, extents,
/// bytes, targets, link structure); with a RAM budget and the data swapped out too. The change
/// is also checked to have changed the live tree. Limits changed after the gate are imaged as
/// they were.
#[test]
fn every_change_after_the_gate_leaves_the_image_at_the_epoch() {
    let limited = Config {
        size_bytes: Some(64 << 20),
        max_inodes: Some(1000),
        ..Config::default()
    };
    for (i, config) in [limited.clone(), swapping(&limited, 4)].into_iter().enumerate() {
        for (what, change) in changes() {
            let fs = Arc::new(Filesystem::new(config.clone()).unwrap());
            epoch_tree(&fs);
            if i == 1 {
                fs.evict_now(usize::MAX);
            }
            let before = dump(&fs);
            let changer = fs.clone();
            fs.set_snapshot_hook(move || {
                assert_eq!(changer.snapshot_pins(), (0, 0), "{what}: captured under the gate");
                change(&changer);
            });
            let mut img = Vec::new();
            fs.snapshot(&mut img).unwrap();
            assert_eq!(fs.snapshot_pins(), (0, 0), "{what}");
            fs.check_invariants().unwrap();
            assert_ne!(dump(&fs), before, "{what}: the change changed nothing");
            let back = restore(config.clone(), &img).unwrap();
            back.check_invariants().unwrap();
            let after = dump(&back);
            for (path, node) in &before.0 {
                let got = after.0.get(path);
                assert!(
                    got == Some(node),
                    "{what} (config {i}): {path} is\n{}\nin the image, was\n{}",
                    got.map_or("absent".into(), brief),
                    brief(node)
                );
            }
            assert!(
                after == before,
                "{what} (config {i}): {:?}\nvs\n{:?}",
                after.1,
                before.1
            );
        }
    }
    // set_limits after the gate: the image keeps the limits of the epoch.
    let fs = Arc::new(Filesystem::new(limited.clone()).unwrap());
    epoch_tree(&fs);
    let changer = fs.clone();
    fs.set_snapshot_hook(move || changer.set_limits(Some(128 << 20), Some(2000)).unwrap());
    let mut img = Vec::new();
    fs.snapshot(&mut img).unwrap();
    let live = fs.statfs();
    let back = restore(Config::default(), &img).unwrap();
    let s = back.statfs();
    assert_eq!((live.blocks, live.files), ((128 << 20) / 4096, 2000));
    assert_eq!((s.blocks, s.files), ((64 << 20) / 4096, 1000));
}
