//! `-o restore=` of a tar archive (as `rtmpfs export --tar` or GNU tar write them): the tree
//! built through the engine's public calls, entry by entry, with what tar records: modes (set-id
//! bits included), numeric owners, atime and mtime (pax records to the nanosecond, else the
//! header's seconds), xattrs (`SCHILY.xattr.*`, ACLs included), hard links, symlinks, fifos,
//! device nodes, and files with holes in GNU's pax sparse format 1.0. Directories get their
//! xattrs and times after everything below them exists (a new entry changes a directory's
//! mtime; a default ACL would be inherited by entries made after it). Paths with `..` are
//! refused. Not kept, as tar has no place for them: ctime and btime (set by the restore), file
//! flags, the mount's limits (the mount's own options apply).

use rtmpfs_core::{Config, Ctx, Filesystem, Ino, OpenFlags, SetAttr, SetTime, Timespec, XattrSetMode};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use tar::EntryType;

/// Whether `head` (the first 512 bytes of a file) is a tar header (`ustar` magic).
pub(crate) fn looks_like_tar(head: &[u8]) -> bool {
    head.len() >= 263 && &head[257..262] == b"ustar"
}

/// What an entry's pax records said.
#[derive(Default)]
struct Pax {
    atime: Option<Timespec>,
    mtime: Option<Timespec>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse_name: Option<Vec<u8>>,
    sparse_size: Option<u64>,
    sparse_v1: bool,
}

fn pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().ok()?;
    Some(if !neg {
        Timespec { sec, nsec }
    } else if nsec == 0 {
        Timespec { sec: -sec, nsec: 0 }
    } else {
        Timespec {
            sec: -sec - 1,
            nsec: 1_000_000_000 - nsec,
        }
    })
}

/// Build a filesystem under `config` from the tar archive `input`.
///
/// # Errors
/// One line: the entry and what is wrong with it, or the engine's refusal (`size=` too small).
pub(crate) fn from_tar(config: Config, input: impl Read) -> Result<Filesystem, String> {
    let fs = Filesystem::new(config).map_err(|e| format!("bad configuration: {e}"))?;
    let ctx = Ctx {
        umask: 0,
        ..Ctx::root()
    };
    let mut archive = tar::Archive::new(input);
    let mut dirs: HashMap<Vec<u8>, Ino> = HashMap::new();
    dirs.insert(Vec::new(), fs.root());
    // Directories' xattrs and times, applied at the end.
    let mut later: Vec<(Ino, Pax, Owner)> = Vec::new();
    let entries = archive.entries().map_err(|e| format!("tar: {e}"))?;
    for entry in entries {
        let mut e = entry.map_err(|e| format!("tar: {e}"))?;
        let mut pax = Pax::default();
        if let Some(exts) = e.pax_extensions().map_err(|e| format!("tar: {e}"))? {
            for ext in exts {
                let ext = ext.map_err(|e| format!("tar: {e}"))?;
                let (k, v) = (ext.key_bytes(), ext.value_bytes());
                match k {
                    b"atime" => pax.atime = pax_time(v),
                    b"mtime" => pax.mtime = pax_time(v),
                    b"GNU.sparse.name" => pax.sparse_name = Some(v.to_vec()),
                    b"GNU.sparse.realsize" => {
                        pax.sparse_size = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
                    }
                    b"GNU.sparse.major" => pax.sparse_v1 = v == b"1",
                    _ => {
                        if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                            pax.xattrs.push((name.to_vec(), v.to_vec()));
                        }
                    }
                }
            }
        }
        let raw = pax.sparse_name.clone().unwrap_or_else(|| e.path_bytes().into_owned());
        let path = clean(&raw).ok_or_else(|| format!("tar: unsafe path {:?}", String::from_utf8_lossy(&raw)))?;
        let what = |m: &dyn std::fmt::Display| format!("tar: {}: {m}", String::from_utf8_lossy(&path));
        let h = e.header().clone();
        let mode = h.mode().map_err(|e| what(&e))? & 0o7777;
        let id = |v: std::io::Result<u64>| {
            v.ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| what(&"bad owner"))
        };
        let owner = Owner {
            mode,
            uid: id(h.uid())?,
            gid: id(h.gid())?,
        };
        let mtime = pax.mtime.unwrap_or(Timespec {
            sec: h.mtime().map_or(0, |t| t as i64),
            nsec: 0,
        });
        if path.is_empty() {
            // The archive's root ("./"): the mount's root directory.
            later.push((fs.root(), pax_with_mtime(pax, mtime), owner));
            continue;
        }
        let (parent_path, name) = split(&path);
        let parent = lookup_dir(&fs, &ctx, &mut dirs, parent_path).map_err(|m| what(&m))?;
        let name = OsStr::from_bytes(name);
        let ino = match h.entry_type() {
            EntryType::Directory => {
                let ino = match fs.mkdir(&ctx, parent, name, 0o700) {
                    Ok(a) => a.ino,
                    Err(rtmpfs_core::FsError::Exists) => fs.lookup(&ctx, parent, name).map_err(|e| what(&e))?.ino,
                    Err(err) => return Err(what(&err)),
                };
                dirs.insert(path.clone(), ino);
                later.push((ino, pax_with_mtime(pax, mtime), owner));
                continue;
            }
            EntryType::Regular | EntryType::Continuous => {
                let (a, fh) = fs
                    .create(&ctx, parent, name, 0o600, OpenFlags::READ_WRITE)
                    .map_err(|e| what(&e))?;
                let written = if pax.sparse_v1 {
                    write_sparse(&fs, &ctx, fh, &mut e, pax.sparse_size.unwrap_or(0))
                } else {
                    write_all(&fs, &ctx, fh, &mut e, 0, u64::MAX)
                };
                let _ = fs.release(fh);
                written.map_err(|m| what(&m))?;
                a.ino
            }
            EntryType::Symlink => {
                let target = e.link_name_bytes().ok_or_else(|| what(&"symlink without a target"))?;
                fs.symlink(&ctx, parent, name, OsStr::from_bytes(&target))
                    .map_err(|e| what(&e))?
                    .ino
            }
            EntryType::Link => {
                let target = e.link_name_bytes().ok_or_else(|| what(&"hard link without a target"))?;
                let target = clean(&target).ok_or_else(|| what(&"unsafe link target"))?;
                let ino = lookup(&fs, &ctx, &mut dirs, &target).map_err(|m| what(&m))?;
                fs.link(&ctx, ino, parent, name).map_err(|e| what(&e))?;
                continue;
            }
            t @ (EntryType::Char | EntryType::Block | EntryType::Fifo) => {
                let (kind, rdev) = if t == EntryType::Fifo {
                    (libc::S_IFIFO, 0)
                } else {
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    let kind = if t == EntryType::Char {
                        libc::S_IFCHR
                    } else {
                        libc::S_IFBLK
                    };
                    (kind, libc::makedev(major, minor))
                };
                fs.mknod(&ctx, parent, name, kind | 0o600, rdev)
                    .map_err(|e| what(&e))?
                    .ino
            }
            // Headers of other entries (pax global, GNU long names: the tar crate has applied
            // them), and kinds rtmpfs cannot hold.
            _ => continue,
        };
        let pax = pax_with_mtime(pax, mtime);
        apply(&fs, &ctx, ino, &pax, owner).map_err(|m| what(&m))?;
    }
    // Deepest first: a directory's times after its subdirectories' were set.
    for (ino, pax, owner) in later.into_iter().rev() {
        apply(&fs, &ctx, ino, &pax, owner).map_err(|m| format!("tar: directory: {m}"))?;
    }
    Ok(fs)
}

fn pax_with_mtime(mut pax: Pax, mtime: Timespec) -> Pax {
    pax.mtime = Some(mtime);
    pax
}

/// An entry's permission bits and numeric owners.
#[derive(Clone, Copy)]
struct Owner {
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Owners, then mode (a chown clears set-id bits), then xattrs, then times.
fn apply(fs: &Filesystem, ctx: &Ctx, ino: Ino, pax: &Pax, owner: Owner) -> Result<(), String> {
    let Owner { mode, uid, gid } = owner;
    let is_symlink = fs.getattr(ino).map_err(|e| e.to_string())?.kind == rtmpfs_core::FileKind::Symlink;
    let set = |s: SetAttr| fs.setattr(ctx, ino, &s, None).map(|_| ()).map_err(|e| e.to_string());
    set(SetAttr {
        uid: Some(uid),
        gid: Some(gid),
        ..SetAttr::default()
    })?;
    if !is_symlink {
        set(SetAttr {
            mode: Some(mode),
            ..SetAttr::default()
        })?;
    }
    for (name, value) in &pax.xattrs {
        fs.setxattr(ctx, ino, OsStr::from_bytes(name), value, XattrSetMode::Upsert)
            .map_err(|e| format!("xattr {}: {e}", String::from_utf8_lossy(name)))?;
    }
    let mtime = pax.mtime.unwrap_or_default();
    set(SetAttr {
        atime: Some(SetTime::At(pax.atime.unwrap_or(mtime))),
        mtime: Some(SetTime::At(mtime)),
        ..SetAttr::default()
    })
}

/// `path` without `./` and `/` prefixes and trailing `/`; `None` if it climbs (`..`).
fn clean(path: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(c),
        }
    }
    Some(out.join(&b'/'))
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// The directory at `path`, made (0755) if the archive did not list it first.
fn lookup_dir(fs: &Filesystem, ctx: &Ctx, dirs: &mut HashMap<Vec<u8>, Ino>, path: &[u8]) -> Result<Ino, String> {
    if let Some(&ino) = dirs.get(path) {
        return Ok(ino);
    }
    let (parent, name) = split(path);
    let parent = lookup_dir(fs, ctx, dirs, parent)?;
    let name = OsStr::from_bytes(name);
    let ino = match fs.mkdir(ctx, parent, name, 0o755) {
        Ok(a) => a.ino,
        Err(rtmpfs_core::FsError::Exists) => fs.lookup(ctx, parent, name).map_err(|e| e.to_string())?.ino,
        Err(e) => return Err(e.to_string()),
    };
    dirs.insert(path.to_vec(), ino);
    Ok(ino)
}

fn lookup(fs: &Filesystem, ctx: &Ctx, dirs: &mut HashMap<Vec<u8>, Ino>, path: &[u8]) -> Result<Ino, String> {
    let (parent, name) = split(path);
    let parent = lookup_dir(fs, ctx, dirs, parent)?;
    fs.lookup(ctx, parent, OsStr::from_bytes(name))
        .map(|a| a.ino)
        .map_err(|e| format!("link target {}: {e}", String::from_utf8_lossy(path)))
}

/// Copy up to `len` bytes of `r` into the file at `offset`.
fn write_all(
    fs: &Filesystem,
    ctx: &Ctx,
    fh: rtmpfs_core::Fh,
    r: &mut impl Read,
    offset: u64,
    len: u64,
) -> Result<(), String> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut at, mut left) = (offset, len);
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = r.read(&mut buf[..want]).map_err(|e| e.to_string())?;
        if n == 0 {
            if len == u64::MAX {
                return Ok(());
            }
            return Err("archive ends inside a file".into());
        }
        let w = fs.write(ctx, fh, at, &buf[..n]).map_err(|e| e.to_string())?;
        if w < n {
            return Err("no space left on device".into());
        }
        at += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// GNU pax sparse 1.0: a map (`count`, then `offset` and `length` per line, padded to 512
/// bytes), then the data of each piece in order; the file's size is `size`.
fn write_sparse(fs: &Filesystem, ctx: &Ctx, fh: rtmpfs_core::Fh, r: &mut impl Read, size: u64) -> Result<(), String> {
    let mut numbers = Vec::new();
    let mut line = Vec::new();
    let mut consumed = 0usize;
    let mut need = None;
    while need.is_none_or(|n| numbers.len() < n) {
        let mut b = [0u8; 1];
        if r.read(&mut b).map_err(|e| e.to_string())? == 0 {
            return Err("archive ends inside a sparse map".into());
        }
        consumed += 1;
        if b[0] == b'\n' {
            let v: u64 = std::str::from_utf8(&line)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("bad sparse map")?;
            line.clear();
            if need.is_none() {
                need = Some(
                    usize::try_from(v)
                        .map_err(|_| "bad sparse map")?
                        .checked_mul(2)
                        .ok_or("bad sparse map")?,
                );
            } else {
                numbers.push(v);
            }
        } else {
            line.push(b[0]);
        }
    }
    let pad = consumed.div_ceil(512) * 512 - consumed;
    std::io::copy(&mut r.take(pad as u64), &mut std::io::sink()).map_err(|e| e.to_string())?;
    for pair in numbers.chunks(2) {
        write_all(fs, ctx, fh, r, pair[0], pair[1])?;
    }
    fs.setattr(
        ctx,
        fs.handle_ino(fh).map_err(|e| e.to_string())?,
        &SetAttr {
            size: Some(size),
            ..SetAttr::default()
        },
        Some(fh),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}
