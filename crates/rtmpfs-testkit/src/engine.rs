//! The engine backend: operations run on a [`Filesystem`] through a thin system-call shim.
//!
//! The engine's API takes inode numbers, handles and typed flags; the shim does what the kernel
//! (and so the FUSE adapter) does before a request reaches the filesystem, and nothing more:
//!
//! 1. walks parent paths with `lookup`, refusing symlinks (`ELOOP`, as `RESOLVE_NO_SYMLINKS`)
//!    and non-directories (`ENOTDIR`);
//! 2. `open` with `O_NOFOLLOW` (`ELOOP` on a symlink); fifos, sockets and devices are not opened
//!    ([`Value::NotOpened`]): opening them is the kernel's business; `truncate(path)` of a symlink
//!    would follow it, so it is not done either;
//! 3. `rw_verify_area`: `pread`/`pwrite` whose `offset + count` overflows `loff_t` get `EINVAL`;
//! 4. `*xattr` calls check name length (`ERANGE`) and value size (`E2BIG`) before the walk;
//!    `renameat2` validates its flags before the walk; `truncate`/`ftruncate` refuse a
//!    negative length; `ftruncate` needs a regular file open for writing (`EINVAL`) and sets
//!    mtime to now along with the size (the VFS's `ATTR_MTIME | ATTR_CTIME`);
//! 5. decodes raw `fallocate` modes and `renameat2` / `setxattr` flags with the engine's own
//!    `from_libc` decoders.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rtmpfs_core::{
    Attr, Config, Ctx, FallocateMode, Fh, FileKind, Filesystem, FsError, Ino, OpenFlags, RenameFlags, SeekWhence,
    SetAttr, XattrSetMode,
};

use crate::model::MAX_FILE;
use crate::op::{self, Loc, Op, OpenMode, Whence};
use crate::outcome::{Content, FsStat, NodeSnap, Outcome, Snapshot, Value, WHOLE_FILE_LIMIT};
use crate::runner::Backend;

type R<T> = Result<T, i32>;

fn errno(e: FsError) -> i32 {
    e.errno()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[derive(Debug, Clone, Copy)]
struct EHandle {
    fh: Fh,
    flags: OpenMode,
    kind: FileKind,
}

/// A [`Filesystem`] driven by [`Op`]s.
pub struct EngineBackend {
    /// The engine under test.
    pub fs: Filesystem,
    ctx: Ctx,
    handles: Vec<EHandle>,
    /// Lookup references handed out during the current operation, to `forget` after it
    /// (only with `Config::track_lookups`).
    pending_forgets: Vec<Ino>,
}

impl EngineBackend {
    /// Build an engine with `config`, driven with root credentials and `umask`.
    ///
    /// # Panics
    ///
    /// If the engine refuses `config` (a test's configuration is fixed, so that is its bug).
    pub fn new(config: Config, umask: u32) -> EngineBackend {
        let fs = Filesystem::new(config).expect("engine config");
        let ctx = Ctx { umask, ..Ctx::root() };
        EngineBackend {
            fs,
            ctx,
            handles: Vec::new(),
            pending_forgets: Vec::new(),
        }
    }

    /// The engine configuration matching a model configuration.
    pub fn config_for(m: &crate::model::ModelConfig) -> Config {
        Config {
            size_bytes: m.size_pages.map(|p| p * op::PAGE),
            max_inodes: m.nr_inodes,
            root_mode: m.root_mode,
            ..Config::default()
        }
    }

    /// Number of open handles.
    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    fn track(&mut self, a: &Attr) {
        if self.fs.config().track_lookups {
            self.pending_forgets.push(a.ino);
        }
    }

    /// Drop every lookup reference taken so far, as a kernel dropping its dentries would.
    pub fn flush_forgets(&mut self) {
        for ino in std::mem::take(&mut self.pending_forgets) {
            self.fs.forget(ino, 1);
        }
    }

    fn lookup(&mut self, dir: Ino, name: &str) -> R<Attr> {
        let a = self.fs.lookup(&self.ctx, dir, os(name)).map_err(errno)?;
        self.track(&a);
        Ok(a)
    }

    fn walk(&mut self, path: &[&str]) -> R<Ino> {
        let mut cur = self.fs.root();
        for comp in path {
            let a = self.lookup(cur, comp)?;
            match a.kind {
                FileKind::Directory => cur = a.ino,
                FileKind::Symlink => return Err(libc::ELOOP),
                _ => return Err(libc::ENOTDIR),
            }
        }
        Ok(cur)
    }

    fn target(&mut self, at: Loc) -> R<Attr> {
        let parent = self.walk(at.parent())?;
        self.lookup(parent, at.name())
    }

    fn handle(&self, h: u8) -> Option<(usize, EHandle)> {
        if self.handles.is_empty() {
            None
        } else {
            let i = usize::from(h) % self.handles.len();
            Some((i, self.handles[i]))
        }
    }

    fn push_handle(&mut self, fh: Fh, flags: OpenMode, kind: FileKind) -> Value {
        self.handles.push(EHandle { fh, flags, kind });
        Value::Opened
    }

    fn flags(m: OpenMode) -> OpenFlags {
        OpenFlags::from_libc(m.to_libc())
    }

    fn rename(&mut self, from: Loc, to: Loc, raw: u32) -> R<Value> {
        let flags = RenameFlags::from_libc(raw).map_err(errno)?;
        if flags.exchange && (flags.noreplace || flags.whiteout) {
            return Err(libc::EINVAL);
        }
        let p1 = self.walk(from.parent())?;
        let p2 = self.walk(to.parent())?;
        self.fs
            .rename(&self.ctx, p1, os(from.name()), p2, os(to.name()), flags)
            .map_err(errno)?;
        Ok(Value::Unit)
    }

    fn open(&mut self, at: Loc, flags: OpenMode) -> R<Value> {
        let a = self.target(at)?;
        match a.kind {
            FileKind::Symlink => return Err(libc::ELOOP),
            FileKind::RegularFile | FileKind::Directory => {}
            k => return Ok(Value::NotOpened(k)),
        }
        let fh = self.fs.open(&self.ctx, a.ino, Self::flags(flags)).map_err(errno)?;
        Ok(self.push_handle(fh, flags, a.kind))
    }

    fn xattr_args(name: &str, value_len: Option<usize>) -> R<()> {
        if name.is_empty() || name.len() > 255 {
            return Err(libc::ERANGE);
        }
        if value_len.is_some_and(|l| l > 65536) {
            return Err(libc::E2BIG);
        }
        Ok(())
    }

    fn readdir_all(&mut self, dir: Ino) -> R<BTreeMap<Vec<u8>, (FileKind, u64)>> {
        let fh = self.fs.opendir(&self.ctx, dir).map_err(errno)?;
        let mut out = BTreeMap::new();
        let mut cookie = 0;
        // Two entries per call, so that every listing resumes from cookies.
        loop {
            let batch = match self.fs.readdir(fh, cookie, 2) {
                Ok(b) => b,
                Err(e) => {
                    let _ = self.fs.releasedir(fh);
                    return Err(errno(e));
                }
            };
            if batch.is_empty() {
                break;
            }
            for e in batch {
                cookie = e.cookie;
                let dup = out.insert(e.name.to_vec(), (e.kind, e.ino.0));
                assert!(
                    dup.is_none(),
                    "readdir returned {:?} twice",
                    String::from_utf8_lossy(&e.name)
                );
            }
        }
        self.fs.releasedir(fh).map_err(errno)?;
        Ok(out)
    }

    fn apply_inner(&mut self, op: &Op) -> R<Value> {
        let fs_ctx = self.ctx.clone();
        let ctx = &fs_ctx;
        match *op {
            Op::Create { at, mode, flags } => {
                let p = self.walk(at.parent())?;
                let (a, fh) = self
                    .fs
                    .create(ctx, p, os(at.name()), mode, Self::flags(flags))
                    .map_err(errno)?;
                self.track(&a);
                Ok(self.push_handle(fh, flags, FileKind::RegularFile))
            }
            Op::Mkdir { at, mode } => {
                let p = self.walk(at.parent())?;
                let a = self.fs.mkdir(ctx, p, os(at.name()), mode).map_err(errno)?;
                self.track(&a);
                Ok(Value::Unit)
            }
            Op::Mknod { at, kind, mode } => {
                let p = self.walk(at.parent())?;
                let (ifmt, rdev) = kind.mode_and_rdev();
                let a = self.fs.mknod(ctx, p, os(at.name()), ifmt | mode, rdev).map_err(errno)?;
                self.track(&a);
                Ok(Value::Unit)
            }
            Op::Symlink { at, target } => {
                let t = op::target(target);
                let p = self.walk(at.parent())?;
                let a = self.fs.symlink(ctx, p, os(at.name()), os(&t)).map_err(errno)?;
                self.track(&a);
                Ok(Value::Unit)
            }
            Op::Link { from, to } => {
                let src = self.target(from)?;
                let p = self.walk(to.parent())?;
                let a = self.fs.link(ctx, src.ino, p, os(to.name())).map_err(errno)?;
                self.track(&a);
                Ok(Value::Unit)
            }
            Op::LinkHandle { h, to } => {
                let Some((_, h)) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                let ino = self.fs.handle_ino(h.fh).map_err(errno)?;
                let p = self.walk(to.parent())?;
                let a = self.fs.link(ctx, ino, p, os(to.name())).map_err(errno)?;
                self.track(&a);
                Ok(Value::Unit)
            }
            Op::Unlink { at } => {
                let p = self.walk(at.parent())?;
                self.fs.unlink(ctx, p, os(at.name())).map_err(errno)?;
                Ok(Value::Unit)
            }
            Op::Rmdir { at } => {
                let p = self.walk(at.parent())?;
                self.fs.rmdir(ctx, p, os(at.name())).map_err(errno)?;
                Ok(Value::Unit)
            }
            Op::Rename { from, to, flags } => self.rename(from, to, flags),
            Op::Open { at, flags } => self.open(at, flags),
            Op::Tmpfile { dir, mode } => {
                let d = self.walk(dir.path())?;
                let (a, fh) = self.fs.tmpfile(ctx, d, mode, OpenFlags::READ_WRITE).map_err(errno)?;
                self.track(&a);
                Ok(self.push_handle(fh, OpenMode::RDWR, FileKind::RegularFile))
            }
            Op::Close { h } => {
                let Some((i, h)) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                self.handles.remove(i);
                self.fs.release(h.fh).map_err(errno)?;
                Ok(Value::Unit)
            }
            Op::Write { h, off, len, seed } => {
                let Some((_, h)) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                if h.flags.write() && off.checked_add(len).is_none_or(|e| e > MAX_FILE) {
                    return Err(libc::EINVAL);
                }
                let data = op::pattern(seed, len as usize);
                let n = self.fs.write(ctx, h.fh, off, &data).map_err(errno)?;
                Ok(Value::Count(n as u64))
            }
            Op::Read { h, off, len } => {
                let Some((_, h)) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                if h.flags.read() && off.checked_add(len).is_none_or(|e| e > MAX_FILE) {
                    return Err(libc::EINVAL);
                }
                let v = self.fs.read_vec(h.fh, off, len as usize).map_err(errno)?;
                Ok(Value::Bytes(v))
            }
            Op::Truncate { at, size } => {
                if size > MAX_FILE {
                    return Err(libc::EINVAL);
                }
                let a = self.target(at)?;
                if a.kind == FileKind::Symlink {
                    return Ok(Value::NotOpened(FileKind::Symlink));
                }
                let set = SetAttr {
                    size: Some(size),
                    ..SetAttr::default()
                };
                self.fs.setattr(ctx, a.ino, &set, None).map_err(errno)?;
                Ok(Value::Unit)
            }
            Op::Ftruncate { h, size } => {
                let Some((_, h)) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                if size > MAX_FILE || h.kind != FileKind::RegularFile || !h.flags.write() {
                    return Err(libc::EINVAL);
                }
                let ino = self.fs.handle_ino(h.fh).map_err(errno)?;
                // do_sys_ftruncate passes ATTR_MTIME | ATTR_CTIME: the times change even when
                // the size does not. The engine stamps them for a truncation through a handle
                // (a FUSE kernel leaves that stamp to the server when FATTR_FH is set).
                let set = SetAttr {
                    size: Some(size),
                    ..SetAttr::default()
                };
                self.fs.setattr(ctx, ino, &set, Some(h.fh)).map_err(errno)?;
                Ok(Value::Unit)
            }
            Op::Fallocate { h, mode, off, len } => {
                let Some((_, h)) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                let mode = FallocateMode::from_libc(mode).map_err(errno)?;
                self.fs.fallocate(ctx, h.fh, off, len, mode).map_err(errno)?;
                Ok(Value::Unit)
            }
            Op::Seek { h, whence, off } => {
                let Some((_, h)) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                let w = match whence {
                    Whence::Data => SeekWhence::Data,
                    Whence::Hole => SeekWhence::Hole,
                };
                Ok(Value::Count(self.fs.lseek(h.fh, off, w).map_err(errno)?))
            }
            Op::CopyRange {
                from,
                off_in,
                to,
                off_out,
                len,
            } => {
                let (Some((_, a)), Some((_, b))) = (self.handle(from), self.handle(to)) else {
                    return Ok(Value::NoHandle);
                };
                let n = self
                    .fs
                    .copy_file_range(ctx, a.fh, off_in, b.fh, off_out, len)
                    .map_err(errno)?;
                Ok(Value::Count(n))
            }
            Op::SetXattr {
                at,
                name,
                len,
                seed,
                flags,
            } => {
                let name = op::xattr_name(name);
                Self::xattr_args(name, Some(len as usize))?;
                let a = self.target(at)?;
                let mode = XattrSetMode::from_libc(i32::from(flags % 3)).map_err(errno)?;
                let value = op::pattern(seed, len as usize);
                self.fs.setxattr(ctx, a.ino, os(name), &value, mode).map_err(errno)?;
                Ok(Value::Unit)
            }
            Op::RemoveXattr { at, name } => {
                let name = op::xattr_name(name);
                Self::xattr_args(name, None)?;
                let a = self.target(at)?;
                self.fs.removexattr(ctx, a.ino, os(name)).map_err(errno)?;
                Ok(Value::Unit)
            }
            Op::GetXattr { at, name } => {
                let name = op::xattr_name(name);
                Self::xattr_args(name, None)?;
                let a = self.target(at)?;
                let v = self.fs.getxattr(ctx, a.ino, os(name)).map_err(errno)?;
                Ok(Value::Bytes(v))
            }
            Op::ListXattr { at } => {
                let a = self.target(at)?;
                let raw = self.fs.listxattr(ctx, a.ino).map_err(errno)?;
                Ok(Value::Names(split_names(&raw)))
            }
            Op::Readdir { dir } => {
                let d = self.walk(dir.path())?;
                Ok(Value::Entries(self.readdir_all(d)?))
            }
            Op::Statfs => Ok(Value::Statfs(self.statfs())),
            Op::SetFlags { at, flags } => self.file_flags_op(at, Some(flags)),
            Op::GetFlags { at } => self.file_flags_op(at, None),
            Op::SetAcl { at, acl, default } => {
                let a = self.target(at)?;
                let (name, value) = (crate::acl::name(default), crate::acl::value(acl));
                self.fs
                    .setxattr(ctx, a.ino, os(name), &value, XattrSetMode::Upsert)
                    .map_err(errno)?;
                Ok(Value::Unit)
            }
            Op::RemoveAcl { at, default } => {
                let a = self.target(at)?;
                self.fs
                    .removexattr(ctx, a.ino, os(crate::acl::name(default)))
                    .map_err(errno)?;
                Ok(Value::Unit)
            }
        }
    }

    /// [`Op::SetFlags`] (`Some(bits)`) or [`Op::GetFlags`]: the ioctl's open refuses a
    /// symlink (`O_NOFOLLOW`); fifos, sockets and devices are not opened (`ENOTTY`).
    fn file_flags_op(&mut self, at: Loc, bits: Option<u8>) -> R<Value> {
        let a = self.target(at)?;
        match a.kind {
            FileKind::RegularFile | FileKind::Directory => {}
            FileKind::Symlink => return Err(libc::ELOOP),
            _ => return Err(libc::ENOTTY),
        }
        match bits {
            Some(b) => {
                self.fs
                    .set_file_flags(&self.ctx, a.ino, op::file_flags(b))
                    .map_err(errno)?;
                Ok(Value::Unit)
            }
            None => Ok(Value::Count(u64::from(self.fs.file_flags(a.ino).map_err(errno)?))),
        }
    }

    fn statfs(&self) -> FsStat {
        let s = self.fs.statfs();
        FsStat {
            bsize: u64::from(s.bsize),
            blocks: s.blocks,
            bfree: s.bfree,
            bavail: s.bavail,
            files: s.files,
            ffree: s.ffree,
            namelen: u64::from(s.namelen),
        }
    }

    /// The data of a regular file through a readable handle.
    fn content(&mut self, fh: Fh, size: u64) -> Content {
        let mut extents = Vec::new();
        let mut pos: i64 = 0;
        while let Ok(d) = self.fs.lseek(fh, pos, SeekWhence::Data) {
            let h = self
                .fs
                .lseek(fh, d as i64, SeekWhence::Hole)
                .expect("SEEK_HOLE after SEEK_DATA");
            assert!(h > d, "SEEK_HOLE {h} not after SEEK_DATA {d}");
            extents.push((d, h));
            pos = h as i64;
        }
        let read = |fs: &Filesystem, off: u64, len: u64| {
            let v = fs.read_vec(fh, off, len as usize).expect("snapshot read");
            assert_eq!(v.len() as u64, len, "short snapshot read at {off}");
            v
        };
        let bytes = if size <= WHOLE_FILE_LIMIT {
            read(&self.fs, 0, size)
        } else {
            extents.iter().flat_map(|&(s, e)| read(&self.fs, s, e - s)).collect()
        };
        Content { extents, bytes }
    }

    fn node(&mut self, a: &Attr, content_fh: Option<Fh>, xattrs: bool) -> NodeSnap {
        let target = (a.kind == FileKind::Symlink).then(|| self.fs.readlink(a.ino).expect("readlink of a symlink"));
        let content = content_fh.map(|fh| self.content(fh, a.size));
        let xattrs = xattrs.then(|| {
            let raw = self.fs.listxattr(&self.ctx, a.ino).expect("listxattr");
            split_names(&raw)
                .into_iter()
                .map(|n| {
                    let v = self
                        .fs
                        .getxattr(&self.ctx, a.ino, OsStr::from_bytes(&n))
                        .expect("getxattr of a listed name");
                    (n, v)
                })
                .collect()
        });
        NodeSnap {
            id: a.ino.0,
            kind: a.kind,
            perm: a.perm,
            nlink: a.nlink,
            size: a.size,
            blocks: a.blocks,
            rdev: a.rdev,
            target,
            content,
            xattrs,
            times: Some(((a.mtime.sec, a.mtime.nsec), (a.ctime.sec, a.ctime.nsec))),
        }
    }

    fn walk_snap(&mut self, ino: Ino, path: &str, out: &mut BTreeMap<String, NodeSnap>) {
        let a = self.fs.getattr(ino).expect("getattr of a reachable inode");
        let fh = (a.kind == FileKind::RegularFile).then(|| {
            self.fs
                .open(&self.ctx, ino, OpenFlags::READ)
                .expect("open for snapshot")
        });
        let n = self.node(&a, fh, true);
        if let Some(fh) = fh {
            self.fs.release(fh).expect("release snapshot handle");
        }
        out.insert(path.to_string(), n);
        if a.kind == FileKind::Directory {
            let entries = self.readdir_all(ino).expect("readdir for snapshot");
            for (name, (kind, child)) in entries {
                if name == b"." || name == b".." {
                    continue;
                }
                let name = String::from_utf8(name).expect("utf-8 name");
                let c = self.lookup(ino, &name).expect("lookup of a listed name");
                assert_eq!(c.ino.0, child, "readdir and lookup disagree on {name}");
                assert_eq!(c.kind, kind, "readdir and lookup disagree on {name}'s kind");
                let p = if path.is_empty() {
                    name
                } else {
                    format!("{path}/{name}")
                };
                self.walk_snap(c.ino, &p, out);
            }
        }
    }

    fn remove_tree(&mut self, dir: Ino) -> R<()> {
        // Immutable and append-only inodes cannot be removed (or emptied): clear every flag.
        self.fs.set_file_flags(&self.ctx, dir, 0).map_err(errno)?;
        for (name, (kind, child)) in self.readdir_all(dir)? {
            self.fs.set_file_flags(&self.ctx, Ino(child), 0).map_err(errno)?;
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(&name).to_owned();
            if kind == FileKind::Directory {
                self.remove_tree(Ino(child))?;
                self.fs.rmdir(&self.ctx, dir, &name).map_err(errno)?;
            } else {
                self.fs.unlink(&self.ctx, dir, &name).map_err(errno)?;
            }
        }
        Ok(())
    }
}

/// Split a `listxattr` buffer into sorted names.
pub fn split_names(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = raw
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    v.sort();
    v
}

impl Backend for EngineBackend {
    fn name(&self) -> &'static str {
        "engine"
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        let r = self.apply_inner(op);
        self.flush_forgets();
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Err(e),
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let mut nodes = BTreeMap::new();
        let root = self.fs.root();
        self.walk_snap(root, "", &mut nodes);
        let hs = self.handles.clone();
        let handles = hs
            .iter()
            .map(|h| {
                let ino = self.fs.handle_ino(h.fh).expect("handle_ino of an open handle");
                let a = self.fs.getattr(ino).expect("getattr through an open handle");
                let readable = h.flags.read() && a.kind == FileKind::RegularFile;
                self.node(&a, readable.then_some(h.fh), false)
            })
            .collect();
        self.flush_forgets();
        Snapshot {
            nodes,
            handles,
            statfs: Some(self.statfs()),
        }
    }

    fn remove_all(&mut self) -> Result<(), String> {
        for h in std::mem::take(&mut self.handles) {
            self.fs.release(h.fh).map_err(|e| format!("release {:?}: {e}", h.fh))?;
        }
        let root = self.fs.root();
        let r = self.remove_tree(root);
        self.flush_forgets();
        r.map_err(|e| format!("removing everything: errno {e}"))
    }

    fn check(&mut self) -> Result<(), String> {
        self.fs.check_invariants()
    }
}
