//! [`Op`]s through system calls on any directory: a kernel tmpfs (the oracle), or an rtmpfs
//! FUSE mount (the whole stack under test). Paths are walked with
//! `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)`, as the engine shim walks them, so every
//! backend resolves the same names the same way.

use std::any::Any;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rtmpfs_core::FileKind;
use rustix::fs::{AtFlags, Dev, FallocateFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, XattrFlags};
use rustix::io::Errno;

use crate::engine::split_names;
use crate::model::ModelConfig;
use crate::op::{self, Loc, Op, OpenMode};
use crate::outcome::{Content, FsStat, NodeSnap, Outcome, Snapshot, Value, WHOLE_FILE_LIMIT};
use crate::runner::Backend;
use crate::tmpfs::Tmpfs;

type R<T> = Result<T, i32>;

fn e(err: Errno) -> i32 {
    err.raw_os_error()
}

struct DHandle {
    fd: OwnedFd,
    flags: OpenMode,
    kind: FileKind,
}

/// [`Op`]s through system calls on the directory tree under one root.
///
/// The directory must hold nothing else while the backend runs: the snapshot is the whole tree.
pub struct DirBackend {
    name: &'static str,
    handles: Vec<DHandle>,
    root: OwnedFd,
    path: PathBuf,
    /// See [`DirBackend::deferred_release`].
    deferred_release: bool,
    // Last: whatever keeps the directory (a mount) alive is dropped after every descriptor
    // above is closed, so an unmount never finds the filesystem busy.
    #[allow(dead_code)] // held only for its Drop
    keep_alive: Option<Box<dyn Any>>,
}

fn kind_of(ft: FileType) -> FileKind {
    match ft {
        FileType::RegularFile => FileKind::RegularFile,
        FileType::Directory => FileKind::Directory,
        FileType::Symlink => FileKind::Symlink,
        FileType::Fifo => FileKind::NamedPipe,
        FileType::Socket => FileKind::Socket,
        FileType::CharacterDevice => FileKind::CharDevice,
        FileType::BlockDevice => FileKind::BlockDevice,
        FileType::Unknown => panic!("unknown file type"),
    }
}

impl DirBackend {
    /// A backend named `name` (for messages and per-side deviations) over the directory
    /// `path`, whose contents it owns (see [`Backend::remove_all`]); sets the process umask to
    /// `umask`, which the creating calls then apply as the engine shim does.
    ///
    /// # Errors
    /// The directory cannot be opened.
    pub fn new(name: &'static str, path: &Path, umask: u32) -> Result<DirBackend, String> {
        rustix::process::umask(Mode::from_raw_mode(umask));
        let root = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|err| format!("open {}: {err}", path.display()))?;
        Ok(DirBackend {
            name,
            handles: Vec::new(),
            root,
            path: path.to_path_buf(),
            deferred_release: false,
            keep_alive: None,
        })
    }

    /// Keep `guard` (the mount under the directory, say) alive as long as the backend, and
    /// drop it after every descriptor the backend holds.
    #[must_use]
    pub fn keeping(mut self, guard: Box<dyn Any>) -> DirBackend {
        self.keep_alive = Some(guard);
        self
    }

    /// Mark the directory as a FUSE mount, where the space and inode of an unlinked file come
    /// back a moment after its last reference goes: the kernel queues FORGET (and RELEASE)
    /// without waiting for the daemon, which serves them on another thread (docs/semantics.md,
    /// "unlinked file ... still referenced"). [`DirBackend::wait_statfs`] then waits for them.
    #[must_use]
    pub fn deferred_release(mut self) -> DirBackend {
        self.deferred_release = true;
        self
    }

    /// Whether [`DirBackend::deferred_release`] applies.
    pub fn has_deferred_release(&self) -> bool {
        self.deferred_release
    }

    /// Poll statfs until it equals `want` or `limit` passes; whether it did. A runner calls
    /// this after each step on a [`DirBackend::deferred_release`] backend, with the engine's
    /// figures, so that the next operation finds the space a close gave back (a persistent
    /// difference still fails the comparison that follows).
    pub fn wait_statfs(&self, want: &FsStat, limit: std::time::Duration) -> bool {
        let end = std::time::Instant::now() + limit;
        loop {
            if self.statfs() == *want {
                return true;
            }
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// A backend named `kernel` over a private kernel tmpfs with the limits of `cfg`.
    ///
    /// # Errors
    /// Why the tmpfs could not be mounted (not root, say).
    pub fn tmpfs(cfg: &ModelConfig) -> Result<DirBackend, String> {
        let t = Tmpfs::for_config(cfg)?;
        let path = t.path().to_path_buf();
        Ok(DirBackend::new(crate::differential::KERNEL, &path, cfg.umask)?.keeping(Box::new(t)))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn resolve(&self, path: &[&str], flags: OFlags) -> R<OwnedFd> {
        let p = if path.is_empty() {
            ".".to_string()
        } else {
            path.join("/")
        };
        rustix::fs::openat2(
            &self.root,
            p.as_str(),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
        )
        .map_err(e)
    }

    fn dir(&self, path: &[&str]) -> R<OwnedFd> {
        self.resolve(path, OFlags::PATH | OFlags::DIRECTORY)
    }

    fn full(&self, at: Loc) -> PathBuf {
        self.path.as_path().join(at.path())
    }

    fn kind_at(dir: &OwnedFd, name: &str) -> R<FileKind> {
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(e)?;
        Ok(kind_of(FileType::from_raw_mode(st.st_mode)))
    }

    fn handle(&self, h: u8) -> Option<usize> {
        (!self.handles.is_empty()).then(|| usize::from(h) % self.handles.len())
    }

    fn open_flags(m: OpenMode) -> OFlags {
        OFlags::from_bits_retain(m.to_libc() as u32)
    }

    /// The error a path syscall reports when its argument checks fail before any lookup (flag
    /// and name validation), else the error of the lookup itself.
    fn probe_then(lookup_err: i32, probe: impl FnOnce(&Path) -> Result<(), Errno>) -> i32 {
        let nowhere = Path::new("/nonexistent-rtmpfs-probe/x");
        match probe(nowhere) {
            Err(err) if err != Errno::NOENT => e(err),
            _ => lookup_err,
        }
    }

    fn apply_inner(&mut self, op: &Op) -> R<Value> {
        match *op {
            Op::Create { at, mode, flags } => {
                let d = self.dir(at.parent())?;
                let fd = rustix::fs::openat(
                    &d,
                    at.name(),
                    Self::open_flags(flags) | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode),
                )
                .map_err(e)?;
                self.handles.push(DHandle {
                    fd,
                    flags,
                    kind: FileKind::RegularFile,
                });
                Ok(Value::Opened)
            }
            Op::Mkdir { at, mode } => {
                let d = self.dir(at.parent())?;
                rustix::fs::mkdirat(&d, at.name(), Mode::from_raw_mode(mode)).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::Mknod { at, kind, mode } => {
                let d = self.dir(at.parent())?;
                let (ifmt, rdev) = kind.mode_and_rdev();
                rustix::fs::mknodat(
                    &d,
                    at.name(),
                    FileType::from_raw_mode(ifmt),
                    Mode::from_raw_mode(mode),
                    rdev as Dev,
                )
                .map_err(e)?;
                Ok(Value::Unit)
            }
            Op::Symlink { at, target } => {
                let d = self.dir(at.parent())?;
                rustix::fs::symlinkat(op::target(target).as_str(), &d, at.name()).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::Link { from, to } => {
                let d1 = self.dir(from.parent())?;
                Self::kind_at(&d1, from.name())?;
                let d2 = self.dir(to.parent())?;
                rustix::fs::linkat(&d1, from.name(), &d2, to.name(), AtFlags::empty()).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::LinkHandle { h, to } => {
                let Some(i) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                let d2 = self.dir(to.parent())?;
                rustix::fs::linkat(&self.handles[i].fd, "", &d2, to.name(), AtFlags::EMPTY_PATH).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::Unlink { at } => {
                let d = self.dir(at.parent())?;
                rustix::fs::unlinkat(&d, at.name(), AtFlags::empty()).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::Rmdir { at } => {
                let d = self.dir(at.parent())?;
                rustix::fs::unlinkat(&d, at.name(), AtFlags::REMOVEDIR).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::Rename { from, to, flags } => {
                let rf = RenameFlags::from_bits_retain(flags);
                let probe =
                    |err| Self::probe_then(err, |p| rustix::fs::renameat_with(&self.root, p, &self.root, p, rf));
                let d1 = self.dir(from.parent()).map_err(probe)?;
                let d2 = self.dir(to.parent()).map_err(probe)?;
                rustix::fs::renameat_with(&d1, from.name(), &d2, to.name(), rf).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::Open { at, flags } => {
                let d = self.dir(at.parent())?;
                let kind = Self::kind_at(&d, at.name())?;
                if !matches!(kind, FileKind::RegularFile | FileKind::Directory | FileKind::Symlink) {
                    return Ok(Value::NotOpened(kind));
                }
                let fd = rustix::fs::openat(
                    &d,
                    at.name(),
                    Self::open_flags(flags) | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(e)?;
                self.handles.push(DHandle { fd, flags, kind });
                Ok(Value::Opened)
            }
            Op::Tmpfile { dir, mode } => {
                let d = self.dir(dir.path())?;
                let fd = rustix::fs::openat(
                    &d,
                    ".",
                    OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode),
                )
                .map_err(e)?;
                self.handles.push(DHandle {
                    fd,
                    flags: OpenMode::RDWR,
                    kind: FileKind::RegularFile,
                });
                Ok(Value::Opened)
            }
            Op::Close { h } => {
                let Some(i) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                drop(self.handles.remove(i));
                Ok(Value::Unit)
            }
            Op::Write { h, off, len, seed } => {
                let Some(i) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                let data = op::pattern(seed, len as usize);
                let n = rustix::io::pwrite(&self.handles[i].fd, &data, off).map_err(e)?;
                Ok(Value::Count(n as u64))
            }
            Op::Read { h, off, len } => {
                let Some(i) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                Ok(Value::Bytes(pread_all(&self.handles[i].fd, off, len)?))
            }
            Op::Truncate { at, size } => {
                let d = self.dir(at.parent())?;
                if Self::kind_at(&d, at.name())? == FileKind::Symlink {
                    return Ok(Value::NotOpened(FileKind::Symlink));
                }
                let path = CString::new(self.full(at).into_os_string().into_encoded_bytes()).expect("path");
                // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
                let r = unsafe { libc::truncate(path.as_ptr(), size as libc::off_t) };
                if r != 0 {
                    return Err(errno());
                }
                Ok(Value::Unit)
            }
            Op::Ftruncate { h, size } => {
                let Some(i) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                rustix::fs::ftruncate(&self.handles[i].fd, size).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::Fallocate { h, mode, off, len } => {
                let Some(i) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                rustix::fs::fallocate(
                    &self.handles[i].fd,
                    FallocateFlags::from_bits_retain(mode as u32),
                    off,
                    len,
                )
                .map_err(e)?;
                Ok(Value::Unit)
            }
            Op::Seek { h, whence, off } => {
                let Some(i) = self.handle(h) else {
                    return Ok(Value::NoHandle);
                };
                Ok(Value::Count(lseek(&self.handles[i].fd, off, whence)?))
            }
            Op::CopyRange {
                from,
                off_in,
                to,
                off_out,
                len,
            } => {
                let (Some(a), Some(b)) = (self.handle(from), self.handle(to)) else {
                    return Ok(Value::NoHandle);
                };
                let (mut oi, mut oo) = (off_in, off_out);
                let n = rustix::fs::copy_file_range(
                    &self.handles[a].fd,
                    Some(&mut oi),
                    &self.handles[b].fd,
                    Some(&mut oo),
                    len as usize,
                )
                .map_err(e)?;
                Ok(Value::Count(n as u64))
            }
            Op::SetXattr {
                at,
                name,
                len,
                seed,
                flags,
            } => {
                let name = op::xattr_name(name);
                let value = op::pattern(seed, len as usize);
                let xf = XattrFlags::from_bits_retain(u32::from(flags % 3));
                let probe = |err| Self::probe_then(err, |p| rustix::fs::lsetxattr(p, name, &value, xf));
                self.dir(at.parent()).map_err(probe)?;
                rustix::fs::lsetxattr(self.full(at), name, &value, xf).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::RemoveXattr { at, name } => {
                let name = op::xattr_name(name);
                let probe = |err| Self::probe_then(err, |p| rustix::fs::lremovexattr(p, name));
                self.dir(at.parent()).map_err(probe)?;
                rustix::fs::lremovexattr(self.full(at), name).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::GetXattr { at, name } => {
                let name = op::xattr_name(name);
                let probe = |err| {
                    Self::probe_then(err, |p| {
                        let mut buf = [0u8; 16];
                        rustix::fs::lgetxattr(p, name, &mut buf[..]).map(|_| ())
                    })
                };
                self.dir(at.parent()).map_err(probe)?;
                Ok(Value::Bytes(getxattr(&self.full(at), name)?))
            }
            Op::ListXattr { at } => {
                self.dir(at.parent())?;
                Ok(Value::Names(listxattr(&self.full(at))?))
            }
            Op::Readdir { dir } => {
                let fd = self.resolve(dir.path(), OFlags::RDONLY | OFlags::DIRECTORY)?;
                Ok(Value::Entries(readdir(&fd)?))
            }
            Op::Statfs => Ok(Value::Statfs(self.statfs())),
            Op::SetFlags { at, flags } => kernel_file_flags(self, at, Some(flags)),
            Op::GetFlags { at } => kernel_file_flags(self, at, None),
            Op::SetAcl { at, acl, default } => {
                self.dir(at.parent())?;
                let (name, value) = (crate::acl::name(default), crate::acl::value(acl));
                rustix::fs::lsetxattr(self.full(at), name, &value, XattrFlags::empty()).map_err(e)?;
                Ok(Value::Unit)
            }
            Op::RemoveAcl { at, default } => {
                self.dir(at.parent())?;
                rustix::fs::lremovexattr(self.full(at), crate::acl::name(default)).map_err(e)?;
                Ok(Value::Unit)
            }
        }
    }

    /// Wait until the kernel's coarse clock has passed every timestamp in `snap`.
    ///
    /// tmpfs stamps with a coarse clock whose value never goes below the last fine-grained
    /// stamp handed out (multigrain timestamps), so an update within the same clock tick as the
    /// previous one can leave a time unchanged: "changed or not" is deterministic only once the
    /// coarse clock is past every time already stamped. Costs at most one tick (1–10 ms).
    /// (On an rtmpfs mount the times are the daemon's, from the fine-grained clock; waiting
    /// does no harm there.)
    ///
    /// # Panics
    /// If the coarse clock stays below the latest stamp for 200 ms.
    pub fn settle(snap: &Snapshot) {
        let latest = snap
            .nodes
            .values()
            .chain(&snap.handles)
            .filter_map(|n| n.times)
            .flat_map(|(m, c)| [m, c])
            .max();
        let Some(latest) = latest else { return };
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        loop {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
            if (now.tv_sec, now.tv_nsec as u32) > latest {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "coarse clock stuck below {latest:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn statfs(&self) -> FsStat {
        let s = rustix::fs::fstatfs(&self.root).expect("fstatfs");
        FsStat {
            bsize: s.f_bsize as u64,
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            namelen: s.f_namelen as u64,
        }
    }

    fn node(st: &rustix::fs::Stat) -> NodeSnap {
        NodeSnap {
            id: st.st_ino,
            kind: kind_of(FileType::from_raw_mode(st.st_mode)),
            perm: st.st_mode & 0o7777,
            nlink: st.st_nlink as u32,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            rdev: st.st_rdev,
            target: None,
            content: None,
            xattrs: None,
            times: Some((
                (st.st_mtime, st.st_mtime_nsec as u32),
                (st.st_ctime, st.st_ctime_nsec as u32),
            )),
        }
    }

    fn walk(&self, dir: &OwnedFd, path: &str, out: &mut BTreeMap<String, NodeSnap>) {
        for (name, (kind, _)) in readdir(dir).expect("readdir for snapshot") {
            if name == b"." || name == b".." {
                continue;
            }
            let name = String::from_utf8(name).expect("utf-8 name");
            let st = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).expect("stat for snapshot");
            let mut n = Self::node(&st);
            assert_eq!(n.kind, kind, "getdents and stat disagree on {name}");
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let full = self.path.as_path().join(&p);
            n.xattrs = Some(
                listxattr(&full)
                    .expect("listxattr")
                    .into_iter()
                    .map(|x| {
                        let v =
                            getxattr(&full, std::str::from_utf8(&x).expect("name")).expect("getxattr of a listed name");
                        (x, v)
                    })
                    .collect(),
            );
            match kind {
                FileKind::Symlink => {
                    let t = rustix::fs::readlinkat(dir, name.as_str(), Vec::new()).expect("readlink");
                    n.target = Some(t.into_bytes());
                }
                FileKind::RegularFile => {
                    let fd = rustix::fs::openat(
                        dir,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .expect("open for snapshot");
                    n.content = Some(content(&fd, n.size));
                }
                FileKind::Directory => {
                    let sub = rustix::fs::openat(
                        dir,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .expect("open dir for snapshot");
                    out.insert(p.clone(), n);
                    self.walk(&sub, &p, out);
                    continue;
                }
                _ => {}
            }
            out.insert(p, n);
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().expect("errno")
}

fn pread_all(fd: &OwnedFd, off: u64, len: u64) -> R<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut done = 0usize;
    loop {
        let n = rustix::io::pread(fd, &mut buf[done..], off + done as u64).map_err(e)?;
        done += n;
        if n == 0 || done == buf.len() {
            break;
        }
    }
    buf.truncate(done);
    Ok(buf)
}

fn lseek(fd: &OwnedFd, off: i64, whence: op::Whence) -> R<u64> {
    let w = match whence {
        op::Whence::Data => libc::SEEK_DATA,
        op::Whence::Hole => libc::SEEK_HOLE,
    };
    // SAFETY: lseek on a descriptor we own; no memory is passed.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), off, w) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as u64)
    }
}

fn content(fd: &OwnedFd, size: u64) -> Content {
    let mut extents = Vec::new();
    let mut pos = 0i64;
    while let Ok(d) = lseek(fd, pos, op::Whence::Data) {
        let h = lseek(fd, d as i64, op::Whence::Hole).expect("SEEK_HOLE after SEEK_DATA");
        extents.push((d, h));
        pos = h as i64;
    }
    let bytes = if size <= WHOLE_FILE_LIMIT {
        pread_all(fd, 0, size).expect("pread")
    } else {
        extents
            .iter()
            .flat_map(|&(s, e)| pread_all(fd, s, e - s).expect("pread"))
            .collect()
    };
    Content { extents, bytes }
}

fn getxattr(path: &Path, name: &str) -> R<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).map_err(e)?;
    buf.truncate(n);
    Ok(buf)
}

fn listxattr(path: &Path) -> R<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut buf[..]).map_err(e)?;
    Ok(split_names(&buf[..n]))
}

fn readdir(fd: &OwnedFd) -> R<BTreeMap<Vec<u8>, (FileKind, u64)>> {
    let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(e)?;
    let mut d = rustix::fs::Dir::read_from(dup.as_fd()).map_err(e)?;
    let mut out = BTreeMap::new();
    while let Some(ent) = d.read() {
        let ent = ent.map_err(e)?;
        out.insert(
            ent.file_name().to_bytes().to_vec(),
            (kind_of(ent.file_type()), ent.ino()),
        );
    }
    Ok(out)
}

impl Backend for DirBackend {
    fn name(&self) -> &'static str {
        self.name
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match self.apply_inner(op) {
            Ok(v) => Outcome::Ok(v),
            Err(err) => Outcome::Err(err),
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let mut nodes = BTreeMap::new();
        let rootdir = self
            .resolve(&[], OFlags::RDONLY | OFlags::DIRECTORY)
            .expect("open root");
        let st = rustix::fs::fstat(&rootdir).expect("stat root");
        let mut n = Self::node(&st);
        n.xattrs = Some(
            listxattr(self.path.as_path())
                .expect("listxattr root")
                .into_iter()
                .map(|x| {
                    let v = getxattr(self.path.as_path(), std::str::from_utf8(&x).expect("name")).expect("getxattr");
                    (x, v)
                })
                .collect(),
        );
        nodes.insert(String::new(), n);
        self.walk(&rootdir, "", &mut nodes);
        let handles = self
            .handles
            .iter()
            .map(|h| {
                let st = rustix::fs::fstat(&h.fd).expect("fstat handle");
                let mut n = Self::node(&st);
                if h.flags.read() && h.kind == FileKind::RegularFile {
                    n.content = Some(content(&h.fd, n.size));
                }
                n
            })
            .collect();
        Snapshot {
            nodes,
            handles,
            statfs: Some(self.statfs()),
        }
    }

    fn remove_all(&mut self) -> Result<(), String> {
        self.handles.clear();
        // Immutable and append-only inodes cannot be removed: clear every flag first.
        clear_file_flags(self.path.as_path())?;
        for entry in std::fs::read_dir(self.path.as_path()).map_err(|err| err.to_string())? {
            let entry = entry.map_err(|err| err.to_string())?;
            let ft = entry.file_type().map_err(|err| err.to_string())?;
            if ft.is_dir() {
                std::fs::remove_dir_all(entry.path()).map_err(|err| err.to_string())?;
            } else {
                std::fs::remove_file(entry.path()).map_err(|err| err.to_string())?;
            }
        }
        Ok(())
    }
}

/// `FS_IOC_GETFLAGS` (`_IOR('f', 1, long)`).
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
/// `FS_IOC_SETFLAGS` (`_IOW('f', 2, long)`).
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;

/// Read (`None`) or set a file's flags through `fd` (`lsattr`/`chattr`).
fn file_flags_ioctl(fd: &OwnedFd, set: Option<u32>) -> Result<u32, Errno> {
    let mut v: libc::c_long = set.map_or(0, libc::c_long::from);
    let req = if set.is_some() {
        FS_IOC_SETFLAGS
    } else {
        FS_IOC_GETFLAGS
    };
    // SAFETY: `fd` is open; both requests take a pointer to a `long`, which outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &raw mut v) };
    if r < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    Ok(v as u32)
}

/// [`Op::SetFlags`] (`Some(bits)`) and [`Op::GetFlags`] on kernel tmpfs: fifos, sockets and
/// devices are refused with `ENOTTY` unopened (see the op), a symlink fails the `O_NOFOLLOW`
/// open.
fn kernel_file_flags(k: &DirBackend, at: Loc, bits: Option<u8>) -> R<Value> {
    let d = k.dir(at.parent())?;
    match DirBackend::kind_at(&d, at.name())? {
        FileKind::RegularFile | FileKind::Directory | FileKind::Symlink => {}
        _ => return Err(libc::ENOTTY),
    }
    let fd = rustix::fs::openat(
        &d,
        at.name(),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(e)?;
    match bits {
        Some(b) => file_flags_ioctl(&fd, Some(op::file_flags(b)))
            .map(|_| Value::Unit)
            .map_err(e),
        None => file_flags_ioctl(&fd, None)
            .map(|f| Value::Count(u64::from(f)))
            .map_err(e),
    }
}

/// Clear the flags of every file and directory under (and of) `dir`.
fn clear_file_flags(dir: &Path) -> Result<(), String> {
    let clear = |p: &Path| -> Result<(), String> {
        let fd = rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| format!("open {}: {err}", p.display()))?;
        if file_flags_ioctl(&fd, None).map_err(|err| err.to_string())? != 0 {
            file_flags_ioctl(&fd, Some(0)).map_err(|err| format!("clear flags of {}: {err}", p.display()))?;
        }
        Ok(())
    };
    clear(dir)?;
    for entry in std::fs::read_dir(dir).map_err(|err| err.to_string())? {
        let entry = entry.map_err(|err| err.to_string())?;
        let ft = entry.file_type().map_err(|err| err.to_string())?;
        if ft.is_dir() {
            clear_file_flags(&entry.path())?;
        } else if ft.is_file() {
            clear(&entry.path())?;
        }
    }
    Ok(())
}
