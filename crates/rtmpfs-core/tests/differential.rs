//! Differential test against the kernel: the same random operation sequences run through libc on
//! a fresh kernel tmpfs mount (mounted here, as root, with the same `size` and `nr_inodes`) and
//! through the engine; every result, errno, byte and attribute must match, and so must whether
//! each step changed each inode's mtime and ctime. The model runs alongside and must match the
//! engine exactly, which checks the model against Linux too.
//!
//! Differences that are decisions, not bugs, are listed in [`DEVIATIONS`] with their reason (and
//! in docs/semantics.md's table); a mismatch not covered there fails the test.
//!
//! Not root, or the mount fails: the test prints why and fails. It never passes silently.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rtmpfs_core::FileKind;
use rtmpfs_testkit::engine::{split_names, EngineBackend};
use rtmpfs_testkit::model::{Model, ModelConfig, MAX_FILE};
use rtmpfs_testkit::op::{self, Loc};
use rtmpfs_testkit::outcome::WHOLE_FILE_LIMIT;
use rtmpfs_testkit::runner::{Comparator, Mismatch, MismatchKind};
use rtmpfs_testkit::{Backend, Content, FsStat, NodeSnap, Op, OpenMode, Outcome, Snapshot, Value};
use rustix::fs::{AtFlags, Dev, FallocateFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, XattrFlags};
use rustix::io::Errno;

use crate::common::{check, env_usize, ops};

type R<T> = Result<T, i32>;

fn e(err: Errno) -> i32 {
    err.raw_os_error()
}

// ----------------------------------------------------------------------------------------------
// Deviations
// ----------------------------------------------------------------------------------------------

/// A difference between kernel tmpfs and the engine that is a decision, with its reason.
pub struct Deviation {
    /// Short name.
    pub name: &'static str,
    /// Why the engine differs.
    pub reason: &'static str,
    /// Whether this deviation explains `m`, seen after `s.op` (kernel on side A, engine on B).
    pub matches: fn(s: &Step<'_>, m: &Mismatch) -> bool,
}

/// One step as the deviations see it.
pub struct Step<'a> {
    /// The operation.
    pub op: &'a Op,
    /// What the kernel returned.
    pub kernel: &'a Outcome,
    /// What the engine returned.
    pub engine: &'a Outcome,
}

/// Every accepted difference. Each is also in docs/semantics.md.
pub const DEVIATIONS: &[Deviation] = &[
    Deviation {
        name: "linux-seek-last-page-overflow",
        reason: "Linux bug: mapping_seek_hole_data overflows for data in the page holding byte \
             i64::MAX - 1 (SEEK_DATA gives ENXIO, SEEK_HOLE a negative offset); the engine \
             answers correctly. See linux_seek_overflows_in_last_page.",
        matches: |s, m| {
            let last_page = MAX_FILE & !(op::PAGE - 1);
            matches!(s.op, Op::Seek { .. })
                && match &m.outcomes {
                    Some((Outcome::Ok(Value::Count(k)), _)) => *k > MAX_FILE,
                    Some((Outcome::Err(libc::ENXIO), Outcome::Ok(Value::Count(e)))) => *e >= last_page,
                    _ => false,
                }
        },
    },
    Deviation {
        name: "fallocate-mode-decoded-first",
        reason: "The engine's fallocate takes a FallocateMode enum, so a mode tmpfs does not \
             support is refused (EOPNOTSUPP) when the raw bits are decoded, before the call; \
             the kernel checks len == 0 (EINVAL) and write access (EBADF) before it looks at \
             such a mode. Only the errno of a call that fails either way differs.",
        matches: |s, m| {
            matches!(s.op, Op::Fallocate { mode, .. } if ![0, 1, 3].contains(mode))
                && both_errors(m, &[libc::EINVAL, libc::EBADF], &[libc::EOPNOTSUPP])
        },
    },
    Deviation {
        name: "failed-write-keeps-times",
        reason: "A write (or copy_file_range) that fails with ENOSPC having written nothing leaves \
             mtime and ctime alone in the engine; Linux stamps them (file_update_time) before \
             it tries to allocate. POSIX asks for the update on success only.",
        matches: |s, m| {
            matches!(s.op, Op::Write { .. } | Op::CopyRange { .. })
                && *s.kernel == Outcome::Err(libc::ENOSPC)
                && *s.engine == Outcome::Err(libc::ENOSPC)
                && matches!(m.kind, MismatchKind::Time(_))
                && m.path.as_deref().is_some()
        },
    },
];

/// An outcome mismatch where the kernel failed with one of `kernel` and the engine with one of
/// `engine`.
fn both_errors(m: &Mismatch, kernel: &[i32], engine: &[i32]) -> bool {
    matches!(
        &m.outcomes,
        Some((Outcome::Err(k), Outcome::Err(e))) if kernel.contains(k) && engine.contains(e)
    )
}

/// Whether the model, before a step, says the operation would trigger a lasting deviation.
pub type SkipIf = fn(&Model, &Op) -> bool;

/// Operations the random sequences do not run, because they would trigger a deviation whose
/// effect lasts (state that differs afterwards, not only one result): each has a dedicated test.
pub const SKIPPED: &[(&str, SkipIf)] = &[("refallocate-reserved-page", Model::refallocates_reserved_page)];

fn allowed(s: &Step<'_>, m: &Mismatch) -> Option<&'static str> {
    DEVIATIONS.iter().find(|d| (d.matches)(s, m)).map(|d| d.name)
}

// ----------------------------------------------------------------------------------------------
// A kernel tmpfs mount
// ----------------------------------------------------------------------------------------------

/// A fresh tmpfs mounted on a new directory; unmounted and removed on drop, panics included.
pub struct Mount {
    dir: PathBuf,
}

impl Mount {
    /// Mount tmpfs with `options` (e.g. `size=98304,nr_inodes=12,mode=1777`).
    ///
    /// # Errors
    /// Why it could not (not root, mount refused).
    pub fn new(options: &str) -> Result<Mount, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("the differential test mounts a kernel tmpfs and must run as root \
                        (CI does); it cannot run here"
                .into());
        }
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rtmpfs-diff-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).map_err(|err| format!("mkdir {}: {err}", dir.display()))?;
        let data = CString::new(options).expect("options");
        if let Err(err) = rustix::mount::mount(
            "rtmpfs-diff",
            &dir,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            data.as_c_str(),
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("mount -t tmpfs -o {options} on {}: {err}", dir.display()));
        }
        Ok(Mount { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::empty()).is_err() {
            // Busy (an fd leaked by a panicking test): detach, so nothing stays mounted.
            let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

// ----------------------------------------------------------------------------------------------
// The kernel backend
// ----------------------------------------------------------------------------------------------

struct KHandle {
    fd: OwnedFd,
    flags: OpenMode,
    kind: FileKind,
}

/// [`Op`]s through system calls on a kernel tmpfs. Paths are walked with
/// `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)`, as the engine shim walks them.
pub struct KernelBackend {
    handles: Vec<KHandle>,
    root: OwnedFd,
    // Last: unmounted after every descriptor above is closed.
    mount: Mount,
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

impl KernelBackend {
    /// Mount a tmpfs configured as `cfg` and set the process umask to `cfg.umask`.
    ///
    /// # Errors
    /// Why the mount failed.
    pub fn new(cfg: &ModelConfig) -> Result<KernelBackend, String> {
        let mut opts = vec![format!("mode={:o}", cfg.root_mode)];
        if let Some(p) = cfg.size_pages {
            opts.push(format!("size={}", p * op::PAGE));
        }
        if let Some(n) = cfg.nr_inodes {
            opts.push(format!("nr_inodes={n}"));
        }
        let mount = Mount::new(&opts.join(","))?;
        rustix::process::umask(Mode::from_raw_mode(cfg.umask));
        let root = rustix::fs::open(
            mount.path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| format!("open mount root: {err}"))?;
        Ok(KernelBackend {
            handles: Vec::new(),
            root,
            mount,
        })
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
        self.mount.path().join(at.path())
    }

    fn kind_at(&self, dir: &OwnedFd, name: &str) -> R<FileKind> {
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
                self.handles.push(KHandle {
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
                self.kind_at(&d1, from.name())?;
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
                let kind = self.kind_at(&d, at.name())?;
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
                self.handles.push(KHandle { fd, flags, kind });
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
                self.handles.push(KHandle {
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
                if self.kind_at(&d, at.name())? == FileKind::Symlink {
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
        }
    }

    /// Wait until the kernel's coarse clock has passed every timestamp in `snap`.
    ///
    /// tmpfs stamps with a coarse clock whose value never goes below the last fine-grained
    /// stamp handed out (multigrain timestamps), so an update within the same clock tick as the
    /// previous one can leave a time unchanged: "changed or not" is deterministic only once the
    /// coarse clock is past every time already stamped. Costs at most one tick (1–10 ms).
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
            let full = self.mount.path().join(&p);
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

impl Backend for KernelBackend {
    fn name(&self) -> &'static str {
        "kernel"
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
            listxattr(self.mount.path())
                .expect("listxattr root")
                .into_iter()
                .map(|x| {
                    let v = getxattr(self.mount.path(), std::str::from_utf8(&x).expect("name")).expect("getxattr");
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
        for entry in std::fs::read_dir(self.mount.path()).map_err(|err| err.to_string())? {
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

// ----------------------------------------------------------------------------------------------
// The three-way runner
// ----------------------------------------------------------------------------------------------

/// Kernel, engine and model side by side.
pub struct Diff {
    /// Linux.
    pub kernel: KernelBackend,
    /// The engine.
    pub engine: EngineBackend,
    /// The model.
    pub model: Model,
    ke: Comparator,
    me: Comparator,
    steps: usize,
    /// How often each deviation was used.
    pub used: BTreeMap<&'static str, usize>,
    /// How many operations each entry of [`SKIPPED`] kept out.
    pub skipped: BTreeMap<&'static str, usize>,
}

impl Diff {
    /// Three fresh instances configured as `cfg`.
    ///
    /// # Errors
    /// Why the kernel tmpfs could not be mounted.
    pub fn new(cfg: ModelConfig) -> Result<Diff, String> {
        Ok(Diff {
            kernel: KernelBackend::new(&cfg)?,
            engine: EngineBackend::new(EngineBackend::config_for(&cfg), cfg.umask),
            model: Model::new(cfg),
            ke: Comparator::new(true),
            me: Comparator::new(false),
            steps: 0,
            used: BTreeMap::new(),
            skipped: BTreeMap::new(),
        })
    }

    /// Run one operation everywhere and compare.
    ///
    /// # Errors
    /// Every unexplained difference.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        self.steps += 1;
        if let Some((name, _)) = SKIPPED.iter().find(|(_, f)| f(&self.model, op)) {
            *self.skipped.entry(name).or_default() += 1;
            return Ok(());
        }
        let ok = self.kernel.apply(op);
        let oe = self.engine.apply(op);
        let om = self.model.apply(op);
        let sk = self.kernel.snapshot();
        let se = self.engine.snapshot();
        let sm = self.model.snapshot();
        KernelBackend::settle(&sk);
        let mut ke = self.ke.outcomes(&ok, &oe);
        ke.extend(self.ke.snapshots(sk, se.clone()));
        let mut me = self.me.outcomes(&om, &oe);
        me.extend(self.me.snapshots(sm, se));
        let mut unexplained = Vec::new();
        let st = Step {
            op,
            kernel: &ok,
            engine: &oe,
        };
        for m in ke {
            match allowed(&st, &m) {
                Some(name) => *self.used.entry(name).or_default() += 1,
                None => unexplained.push(format!("kernel vs engine: {m}")),
            }
        }
        unexplained.extend(me.into_iter().map(|m| format!("model vs engine: {m}")));
        if let Err(err) = self.engine.check() {
            unexplained.push(format!("engine invariant: {err}"));
        }
        if unexplained.is_empty() {
            Ok(())
        } else {
            Err(format!("step {} {op:?}:\n  {}", self.steps, unexplained.join("\n  ")))
        }
    }

    /// Run a sequence, then delete everything everywhere and compare once more.
    ///
    /// # Errors
    /// The first failing step.
    pub fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        for op in ops {
            self.step(op)?;
        }
        self.kernel.remove_all()?;
        self.engine.remove_all()?;
        self.model.remove_all()?;
        self.ke.forget_prev();
        self.step(&Op::Statfs)
    }
}

/// The configuration of the differential runs: limits small enough to reach ENOSPC.
pub fn diff_config() -> ModelConfig {
    ModelConfig {
        size_pages: Some(24),
        nr_inodes: Some(12),
        umask: 0o022,
        root_mode: 0o1777,
    }
}

fn must_mount() {
    if let Err(why) = Mount::new("size=4096") {
        panic!("differential test cannot run: {why}");
    }
}

#[test]
fn differential_random_sequences() {
    must_mount();
    let cases = env_usize("RTMPFS_DIFF_CASES", 64);
    let used = std::sync::Mutex::new(BTreeMap::<&str, usize>::new());
    check("differential_random_sequences", cases, ops(50, true), |ops| {
        let mut d = Diff::new(diff_config())?;
        let r = d.run(&ops);
        let mut u = used.lock().unwrap();
        for (k, v) in d.used.iter().chain(&d.skipped) {
            *u.entry(k).or_default() += v;
        }
        r
    });
    // What the run leaned on, for the log: each accepted deviation with its reason.
    for (name, n) in used.into_inner().unwrap() {
        let reason = DEVIATIONS
            .iter()
            .find(|d| d.name == name)
            .map_or("(skipped operation)", |d| d.reason);
        eprintln!("deviation {name}: {n} times. {reason}");
    }
}

/// Every shrunk regression of the model test, against the kernel too: the expectations written
/// there are Linux's.
#[test]
fn differential_regressions() {
    must_mount();
    let mut failures = Vec::new();
    for (name, ops) in crate::regressions::REGRESSIONS {
        if let Err(err) = Diff::new(diff_config()).and_then(|mut d| d.run(&ops())) {
            failures.push(format!("{name}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `refallocate-reserved-page`: fallocate over a page an earlier fallocate reserved makes it
/// data on Linux (zero-filled, up to date); the engine keeps it a reserved hole. Both read zeros
/// and charge one page.
#[test]
fn linux_refallocate_makes_reserved_page_data() {
    let mut d = Diff::new(diff_config()).unwrap_or_else(|why| panic!("cannot run: {why}"));
    let falloc = |off, len| Op::Fallocate {
        h: 0,
        mode: 0,
        off,
        len,
    };
    for o in [
        Op::Create {
            at: rtmpfs_testkit::at("a"),
            mode: 0o644,
            flags: OpenMode::RDWR,
        },
        falloc(op::PAGE, op::PAGE),
    ] {
        d.step(&o).unwrap();
    }
    let again = falloc(0, 2 * op::PAGE);
    assert_eq!(d.kernel.apply(&again), Outcome::Ok(Value::Unit));
    assert_eq!(d.engine.apply(&again), Outcome::Ok(Value::Unit));
    let data = Op::Seek {
        h: 0,
        whence: op::Whence::Data,
        off: 0,
    };
    assert_eq!(d.engine.apply(&data), Outcome::Err(libc::ENXIO), "engine: still holes");
    let k = d.kernel.apply(&data);
    assert!(
        k == Outcome::Ok(Value::Count(op::PAGE)) || k == Outcome::Err(libc::ENXIO),
        "kernel SEEK_DATA: {k:?}"
    );
    let read = Op::Read {
        h: 0,
        off: 0,
        len: 2 * op::PAGE,
    };
    assert_eq!(d.kernel.apply(&read), d.engine.apply(&read), "both read zeros");
}

/// A Linux bug the engine does not copy: `mapping_seek_hole_data` overflows for the page that
/// holds byte `i64::MAX - 1`. With data only there, the kernel's SEEK_DATA from 0 says ENXIO
/// and SEEK_HOLE from the data returns a negative offset; the engine answers the page start and
/// EOF. (The random sequences keep data out of that page: `KERNEL_SAFE_MARGIN`.)
#[test]
fn linux_seek_overflows_in_last_page() {
    let mut d = Diff::new(diff_config()).unwrap_or_else(|why| panic!("cannot run: {why}"));
    let off = MAX_FILE - 16;
    let last_page = MAX_FILE & !(op::PAGE - 1);
    for o in [
        Op::Create {
            at: rtmpfs_testkit::at("a"),
            mode: 0o644,
            flags: OpenMode::RDWR,
        },
        Op::Write {
            h: 0,
            off,
            len: 1,
            seed: 1,
        },
    ] {
        assert_eq!(d.kernel.apply(&o), d.engine.apply(&o), "{o:?}");
    }
    let data = Op::Seek {
        h: 0,
        whence: op::Whence::Data,
        off: 0,
    };
    let hole = Op::Seek {
        h: 0,
        whence: op::Whence::Hole,
        off: off as i64,
    };
    assert_eq!(d.engine.apply(&data), Outcome::Ok(Value::Count(last_page)));
    assert_eq!(d.engine.apply(&hole), Outcome::Ok(Value::Count(off + 1)));
    let k = d.kernel.apply(&data);
    assert!(
        k == Outcome::Err(libc::ENXIO) || k == Outcome::Ok(Value::Count(last_page)),
        "kernel SEEK_DATA: {k:?}"
    );
    match d.kernel.apply(&hole) {
        Outcome::Ok(Value::Count(v)) => assert!(v > MAX_FILE || v == off + 1, "kernel SEEK_HOLE: {v}"),
        Outcome::Err(libc::ENXIO) => {}
        other => panic!("kernel SEEK_HOLE: {other:?}"),
    }
}
