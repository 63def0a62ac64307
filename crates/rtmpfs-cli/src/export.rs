//! `rtmpfs export MOUNTPOINT|IMAGE --tar FILE`: an image as a POSIX pax archive that GNU tar
//! reads back: modes, numeric owners, times with nanoseconds (pax `mtime`, `atime`, `ctime`),
//! xattrs of every namespace (`SCHILY.xattr.NAME`, ACLs included in their xattr form), hard
//! links, symlinks, fifos, device nodes, and sparse files in GNU's pax sparse format 1.0 (holes
//! cost nothing). Sockets cannot be archived (GNU tar skips them too): each is named on stderr.
//!
//! A mount is first snapshotted (over the control socket) to a temporary image beside FILE,
//! which is removed afterwards. The image is restored into an in-process engine with a 64 MiB
//! RAM budget and a private swap file, so exporting a large image needs little RAM, then walked
//! through the engine's public API. FILE is written beside itself and renamed into place.

use rtmpfs_core::{
    Attr, Config, Ctx, Fh, FileKind, Filesystem, ImageKey, Ino, OpenFlags, RestoreOptions, SeekWhence, SwapConfig,
};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Cursor, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tar::{Builder, EntryType, Header};

/// `rtmpfs export` arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A mounted rtmpfs (snapshotted first) or an image file.
    #[arg(value_hint = clap::ValueHint::AnyPath)]
    source: PathBuf,
    /// The archive to write (POSIX pax, GNU sparse 1.0 for files with holes).
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    tar: PathBuf,
    /// The key file of an encrypted image (a mount's snapshot is encrypted with its own
    /// image_key=, so give the same file).
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    image_key: Option<PathBuf>,
}

/// RAM the export's engine keeps file data in; the rest goes to its swap file.
const EXPORT_MEMORY: u64 = 64 << 20;

/// `rtmpfs export`.
pub fn export(args: &ExportArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(&e),
    }
}

fn beside(file: &Path, tag: &str) -> Result<PathBuf, String> {
    let name = file
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", file.display()))?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir.join(format!(
        ".{}.rtmpfs-{tag}.{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn run(args: &ExportArgs) -> Result<(), String> {
    let key = args
        .image_key
        .as_deref()
        .map(|p| ImageKey::from_file(p).map_err(|e| e.to_string()))
        .transpose()?;
    let is_mount = args.source.is_dir();
    let image = if is_mount {
        let mnt = args
            .source
            .canonicalize()
            .map_err(|e| format!("{}: {e}", args.source.display()))?;
        let tmp = beside(&args.tar, "export")?;
        let req = format!("snapshot {}", tmp.to_str().ok_or("the path must be UTF-8")?);
        rtmpfs_fuse::control::request_within(&mnt, &req, Duration::from_secs(3600))
            .map_err(|e| format!("{}: {e}", mnt.display()))?;
        tmp
    } else {
        args.source.clone()
    };
    let restored = restore(&image, key);
    if is_mount {
        let _ = std::fs::remove_file(&image);
    }
    let fs = restored?;
    let tmp = beside(&args.tar, "tmp")?;
    let written = write_archive(&fs, &tmp)
        .and_then(|()| std::fs::rename(&tmp, &args.tar).map_err(|e| format!("{}: {e}", args.tar.display())));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn restore(image: &Path, key: Option<ImageKey>) -> Result<Filesystem, String> {
    let file = File::open(image).map_err(|e| format!("image {}: {e}", image.display()))?;
    let config = Config {
        enforce_permissions: false,
        memory_bytes: Some(EXPORT_MEMORY),
        swap: Some(SwapConfig::in_temp_dir()),
        ..Config::default()
    };
    let opts = RestoreOptions {
        key,
        ..RestoreOptions::default()
    };
    let input = io::BufReader::with_capacity(1 << 20, file);
    Filesystem::from_image(config, input, &opts).map_err(|e| format!("image {}: {e}", image.display()))
}

/// The walk: depth first in preorder, each directory's entries right after it (GNU tar sets a
/// directory's times once it has left it, so its contents must not come later); a hard link's
/// later names as link entries to its first.
fn write_archive(fs: &Filesystem, out: &Path) -> Result<(), String> {
    let file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut b = Builder::new(BufWriter::with_capacity(1 << 20, file));
    let mut first: std::collections::HashMap<Ino, String> = std::collections::HashMap::new();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", out.display());
    let mut stack = vec![(listing(fs, fs.root()).map_err(|e| err(&e))?.into_iter(), String::new())];
    while let Some((entries, prefix)) = stack.last_mut() {
        let Some((name, ino)) = entries.next() else {
            stack.pop();
            continue;
        };
        let path = format!("{prefix}{}", String::from_utf8_lossy(&name));
        let attr = fs.getattr(ino).map_err(|e| err(&e))?;
        if let Some(target) = first.get(&attr.ino) {
            let mut h = header(&attr, EntryType::Link);
            let mut pax = Vec::new();
            set_name(&mut h, &path, &mut pax);
            set_link(&mut h, target.as_bytes(), &mut pax);
            append(&mut b, &mut h, &pax, io::empty()).map_err(|e| err(&e))?;
            continue;
        }
        if attr.kind != FileKind::Directory && attr.nlink > 1 {
            first.insert(attr.ino, path.clone());
        }
        entry(fs, &mut b, &path, &attr).map_err(|e| err(&e))?;
        if attr.kind == FileKind::Directory {
            let children = listing(fs, attr.ino).map_err(|e| err(&e))?;
            stack.push((children.into_iter(), format!("{path}/")));
        }
    }
    let w = b.into_inner().map_err(|e| err(&e))?;
    let file = w.into_inner().map_err(|e| err(&e.error()))?;
    file.sync_all().map_err(|e| err(&e))
}

/// A directory's entries but `.` and `..`.
fn listing(fs: &Filesystem, dir: Ino) -> rtmpfs_core::Result<Vec<(Vec<u8>, Ino)>> {
    let fh = fs.opendir(&Ctx::root(), dir)?;
    let entries = fs.readdir(fh, 0, usize::MAX);
    let _ = fs.releasedir(fh);
    Ok(entries?
        .into_iter()
        .filter(|e| e.name != b"." && e.name != b"..")
        .map(|e| (e.name.to_vec(), e.ino))
        .collect())
}

/// One inode's entry (its first name).
fn entry<W: io::Write>(fs: &Filesystem, b: &mut Builder<W>, path: &str, attr: &Attr) -> io::Result<()> {
    let ctx = Ctx::root();
    let kind = match attr.kind {
        FileKind::RegularFile => EntryType::Regular,
        FileKind::Directory => EntryType::Directory,
        FileKind::Symlink => EntryType::Symlink,
        FileKind::NamedPipe => EntryType::Fifo,
        FileKind::CharDevice => EntryType::Char,
        FileKind::BlockDevice => EntryType::Block,
        FileKind::Socket => {
            eprintln!("rtmpfs: {path}: socket ignored (tar cannot hold sockets)");
            return Ok(());
        }
    };
    let mut h = header(attr, kind);
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    for (k, v) in [("mtime", attr.mtime), ("atime", attr.atime), ("ctime", attr.ctime)] {
        pax.push((k.into(), pax_time(v.sec, v.nsec).into_bytes()));
    }
    let names = fs.listxattr(&ctx, attr.ino)?;
    for name in names.split(|&c| c == 0).filter(|n| !n.is_empty()) {
        let value = fs.getxattr(&ctx, attr.ino, OsStr::from_bytes(name))?;
        pax.push((format!("SCHILY.xattr.{}", String::from_utf8_lossy(name)), value));
    }
    match attr.kind {
        FileKind::Directory => {
            set_name(&mut h, &format!("{path}/"), &mut pax);
            append(b, &mut h, &pax, io::empty())
        }
        FileKind::Symlink => {
            set_name(&mut h, path, &mut pax);
            set_link(&mut h, &fs.readlink(attr.ino)?, &mut pax);
            append(b, &mut h, &pax, io::empty())
        }
        FileKind::RegularFile => regular(fs, b, path, attr, h, pax),
        _ => {
            set_name(&mut h, path, &mut pax);
            let (major, minor) = (
                libc::major(attr.rdev as libc::dev_t),
                libc::minor(attr.rdev as libc::dev_t),
            );
            h.set_device_major(major)?;
            h.set_device_minor(minor)?;
            append(b, &mut h, &pax, io::empty())
        }
    }
}

/// A regular file: plain, or GNU pax sparse 1.0 when it has holes (a map of `offset`/`length`
/// lines ahead of the data, padded to 512 bytes; the real name and size in pax records).
fn regular<W: io::Write>(
    fs: &Filesystem,
    b: &mut Builder<W>,
    path: &str,
    attr: &Attr,
    mut h: Header,
    mut pax: Vec<(String, Vec<u8>)>,
) -> io::Result<()> {
    let fh = fs.open(&Ctx::root(), attr.ino, OpenFlags::READ)?;
    let result = (|| {
        let mut extents = Vec::new();
        let mut at = 0u64;
        while let Ok(start) = fs.lseek(fh, at as i64, SeekWhence::Data) {
            let end = fs.lseek(fh, start as i64, SeekWhence::Hole)?;
            extents.push((start, end - start));
            at = end;
        }
        let data: u64 = extents.iter().map(|e| e.1).sum();
        if data == attr.size {
            set_name(&mut h, path, &mut pax);
            h.set_size(attr.size);
            return append(b, &mut h, &pax, FileReader::new(fs, fh, vec![(0, attr.size)]));
        }
        if extents.last().is_none_or(|&(o, l)| o + l < attr.size) {
            // A trailing hole is an empty extent at the end, as GNU tar writes it.
            extents.push((attr.size, 0));
        }
        let mut map = format!("{}\n", extents.len());
        for (o, l) in &extents {
            let _ = write!(map, "{o}\n{l}\n");
        }
        let mut map = map.into_bytes();
        map.resize(map.len().div_ceil(512) * 512, 0);
        pax.push(("GNU.sparse.major".into(), b"1".to_vec()));
        pax.push(("GNU.sparse.minor".into(), b"0".to_vec()));
        pax.push(("GNU.sparse.name".into(), path.as_bytes().to_vec()));
        pax.push(("GNU.sparse.realsize".into(), attr.size.to_string().into_bytes()));
        let base = path.rsplit('/').next().unwrap_or(path);
        let short: String = base.chars().take(60).collect();
        h.set_path(format!("GNUSparseFile.0/{short}"))?;
        h.set_size(map.len() as u64 + data);
        let reader = Cursor::new(map).chain(FileReader::new(fs, fh, extents));
        append(b, &mut h, &pax, reader)
    })();
    let _ = fs.release(fh);
    result
}

fn header(attr: &Attr, kind: EntryType) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(attr.perm & 0o7777);
    h.set_uid(u64::from(attr.uid));
    h.set_gid(u64::from(attr.gid));
    h.set_mtime(u64::try_from(attr.mtime.sec).unwrap_or(0));
    h.set_size(0);
    h
}

/// pax time: seconds and nanoseconds, negative times as the signed decimal they are.
fn pax_time(sec: i64, nsec: u32) -> String {
    if sec < 0 && nsec > 0 {
        format!("-{}.{:09}", -(sec + 1), 1_000_000_000 - nsec)
    } else {
        format!("{sec}.{nsec:09}")
    }
}

/// The name into the ustar header when it fits, else into a pax `path` record (the header then
/// holds a placeholder, which readers of pax ignore).
fn set_name(h: &mut Header, path: &str, pax: &mut Vec<(String, Vec<u8>)>) {
    if path.len() > 100 || h.set_path(path).is_err() {
        pax.push(("path".into(), path.as_bytes().to_vec()));
        let _ = h.set_path("rtmpfs-long-name");
    }
}

fn set_link(h: &mut Header, target: &[u8], pax: &mut Vec<(String, Vec<u8>)>) {
    if target.len() > 100 || h.set_link_name_literal(target).is_err() {
        pax.push(("linkpath".into(), target.to_vec()));
        let _ = h.set_link_name_literal("rtmpfs-long-link");
    }
}

fn append<W: io::Write>(
    b: &mut Builder<W>,
    h: &mut Header,
    pax: &[(String, Vec<u8>)],
    data: impl Read,
) -> io::Result<()> {
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    h.set_cksum();
    b.append(h, data)
}

/// Reads the given extents of an open file, one after the other.
struct FileReader<'a> {
    fs: &'a Filesystem,
    fh: Fh,
    extents: std::vec::IntoIter<(u64, u64)>,
    pos: u64,
    end: u64,
}

impl<'a> FileReader<'a> {
    fn new(fs: &'a Filesystem, fh: Fh, extents: Vec<(u64, u64)>) -> Self {
        FileReader {
            fs,
            fh,
            extents: extents.into_iter(),
            pos: 0,
            end: 0,
        }
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.end {
            match self.extents.next() {
                Some((o, l)) => (self.pos, self.end) = (o, o + l),
                None => return Ok(0),
            }
        }
        let want = buf.len().min((self.end - self.pos) as usize).min(1 << 20);
        let n = self.fs.read(self.fh, self.pos, &mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than its extents",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
