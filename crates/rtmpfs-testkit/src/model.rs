//! A reference model of tmpfs as seen through system calls, for a root caller.
//!
//! Plain data: a `BTreeMap` of inodes, directories as name maps, files as sparse maps of pages
//! (`Data` or fallocate-`Reserved`), and the two budgets (`size` in pages, `nr_inodes` as inode
//! space in bytes, 1024 per inode and per extra hard link plus `40 + name + value` per xattr when
//! limited). Each operation checks its errors in the order Linux does (VFS first, then
//! `mm/shmem.c`), and where the engine's typed API decides something before the call (decoding
//! `fallocate` modes and `renameat2` flags), the model follows the shim in [`crate::engine`].
//!
//! The model never looks at a clock: times are compared between the engine and the kernel only.

use std::collections::BTreeMap;

use libc::{
    E2BIG, EBADF, EEXIST, EFBIG, EINVAL, EISDIR, ELOOP, ENODATA, ENOENT, ENOSPC, ENOTDIR, ENOTEMPTY, ENXIO, EOPNOTSUPP,
    EPERM, ERANGE,
};

use crate::op::{self, Loc, Op, OpenMode, Whence, PAGE};
use crate::outcome::{Content, FileKind, FsStat, Id, NodeSnap, Outcome, Snapshot, Value};
use crate::runner::Backend;

/// Largest file size (`MAX_LFS_FILESIZE` on 64-bit).
pub const MAX_FILE: u64 = i64::MAX as u64;
const BOGO_INODE: u64 = 1024;
const BOGO_DIRENT: u64 = 20;
const ROOT: Id = 1;
const P: usize = PAGE as usize;

/// How the modelled instance is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// `size=` in pages (`None`: unlimited).
    pub size_pages: Option<u64>,
    /// `nr_inodes=` (`None`: unlimited).
    pub nr_inodes: Option<u64>,
    /// The caller's umask.
    pub umask: u32,
    /// Root directory permission bits.
    pub root_mode: u32,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            size_pages: Some(24),
            nr_inodes: Some(12),
            umask: 0o022,
            root_mode: 0o1777,
        }
    }
}

#[derive(Debug, Clone)]
enum Page {
    Data(Box<[u8; P]>),
    Reserved,
}

#[derive(Debug, Clone, Default)]
struct MFile {
    size: u64,
    pages: BTreeMap<u64, Page>,
}

#[derive(Debug, Clone)]
struct MDir {
    entries: BTreeMap<String, Id>,
    parent: Id,
}

#[derive(Debug, Clone)]
enum Body {
    File(MFile),
    Dir(MDir),
    Symlink(Vec<u8>),
    Special,
}

#[derive(Debug, Clone)]
struct MInode {
    kind: FileKind,
    perm: u32,
    nlink: u32,
    rdev: u64,
    body: Body,
    xattrs: Xattrs,
    xattr_space: u64,
    opens: u32,
    linkable: bool,
    /// File flags (`FS_IOC_SETFLAGS` bits).
    flags: u32,
}

/// An inode's xattrs (ACLs included, stored in their xattr form).
type Xattrs = BTreeMap<Vec<u8>, Vec<u8>>;

/// `FS_IMMUTABLE_FL`.
const IMMUTABLE: u32 = 0x10;
/// `FS_APPEND_FL`.
const APPEND: u32 = 0x20;

impl MInode {
    fn new(kind: FileKind, perm: u32, nlink: u32, body: Body) -> Self {
        MInode {
            kind,
            perm,
            nlink,
            rdev: 0,
            body,
            xattrs: BTreeMap::new(),
            xattr_space: 0,
            opens: 0,
            linkable: false,
            flags: 0,
        }
    }

    /// `IS_IMMUTABLE`.
    fn immutable(&self) -> bool {
        self.flags & IMMUTABLE != 0
    }

    /// `IS_APPEND`.
    fn append_only(&self) -> bool {
        self.flags & APPEND != 0
    }

    /// `IS_IMMUTABLE || IS_APPEND`.
    fn fixed(&self) -> bool {
        self.flags & (IMMUTABLE | APPEND) != 0
    }

    fn file(&self) -> Option<&MFile> {
        match &self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    fn file_mut(&mut self) -> Option<&mut MFile> {
        match &mut self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    fn dir(&self) -> Option<&MDir> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    fn dir_mut(&mut self) -> Option<&mut MDir> {
        match &mut self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct MHandle {
    id: Id,
    flags: OpenMode,
}

/// What the model expects `Filesystem::usage()` to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelUsage {
    /// Pages charged against `size`.
    pub charged_pages: u64,
    /// Pages holding data.
    pub resident_pages: u64,
    /// Pages reserved by fallocate and not written.
    pub reserved_pages: u64,
    /// Live inodes.
    pub inodes: u64,
    /// Inode space used (bytes).
    pub inode_space_used: u64,
}

/// The reference model.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: ModelConfig,
    inodes: BTreeMap<Id, MInode>,
    next_id: Id,
    handles: Vec<MHandle>,
    used_pages: u64,
    used_ispace: u64,
}

type R<T> = Result<T, i32>;

fn ok(v: Value) -> Outcome {
    Outcome::Ok(v)
}

impl Model {
    /// An empty instance: only the root directory.
    pub fn new(cfg: ModelConfig) -> Model {
        let mut inodes = BTreeMap::new();
        inodes.insert(
            ROOT,
            MInode::new(
                FileKind::Directory,
                cfg.root_mode,
                2,
                Body::Dir(MDir {
                    entries: BTreeMap::new(),
                    parent: ROOT,
                }),
            ),
        );
        Model {
            cfg,
            inodes,
            next_id: ROOT + 1,
            handles: Vec::new(),
            used_pages: 0,
            used_ispace: BOGO_INODE,
        }
    }

    /// The configuration.
    pub fn config(&self) -> ModelConfig {
        self.cfg
    }

    /// What `usage()` should report.
    pub fn usage(&self) -> ModelUsage {
        let mut u = ModelUsage {
            charged_pages: self.used_pages,
            inodes: self.inodes.len() as u64,
            inode_space_used: self.used_ispace,
            ..ModelUsage::default()
        };
        for f in self.inodes.values().filter_map(MInode::file) {
            for p in f.pages.values() {
                match p {
                    Page::Data(_) => u.resident_pages += 1,
                    Page::Reserved => u.reserved_pages += 1,
                }
            }
        }
        u
    }

    /// Number of open handles.
    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    /// Whether `op` changes, through a handle opened before the flag was set, a file that is
    /// immutable or append-only where Linux tmpfs and the engine part: Linux checks the flags
    /// when a file is opened and in `fallocate`, `ftruncate` (append-only) and
    /// `copy_file_range` (immutable), so such a handle still writes anywhere, truncates an
    /// immutable file, `fallocate(KEEP_SIZE)`s and copies into an append-only one; the engine
    /// refuses all of these with `EPERM` (docs/semantics.md). The differential test keeps these
    /// out of its random sequences.
    pub fn changes_flagged_file_through_handle(&self, op: &Op) -> bool {
        let target = match *op {
            Op::Write { h, len, .. } if len > 0 => h,
            Op::Ftruncate { h, .. } | Op::Fallocate { h, .. } => h,
            Op::CopyRange { to, .. } => to,
            _ => return false,
        };
        self.handle(target).is_some_and(|(_, h)| self.ino(h.id).fixed())
    }

    /// Whether `op` is a `fallocate` (mode 0 or `KEEP_SIZE`) whose range holds a page that an
    /// earlier fallocate reserved and nothing wrote. Linux zero-fills such a page and marks it
    /// up to date (it then counts as data for `SEEK_DATA`); the engine keeps it reserved, a
    /// hole. The differential test keeps these out of its random sequences.
    pub fn refallocates_reserved_page(&self, op: &Op) -> bool {
        let Op::Fallocate { h, mode, off, len } = *op else {
            return false;
        };
        let Some((_, h)) = self.handle(h) else {
            return false;
        };
        if !matches!(mode, 0 | 1) || len == 0 || off.checked_add(len).is_none() {
            return false;
        }
        let Some(f) = self.ino(h.id).file() else {
            return false;
        };
        let (first, last) = (off / PAGE, (off + len - 1) / PAGE);
        f.pages.range(first..=last).any(|(_, p)| matches!(p, Page::Reserved))
    }

    fn ispace_limited(&self) -> bool {
        self.cfg.nr_inodes.is_some()
    }

    fn charge_pages(&mut self, n: u64) -> R<()> {
        if let Some(max) = self.cfg.size_pages {
            if self.used_pages + n > max {
                return Err(ENOSPC);
            }
        }
        self.used_pages += n;
        Ok(())
    }

    fn charge_ispace(&mut self, n: u64) -> R<()> {
        if let Some(max) = self.cfg.nr_inodes {
            if self.used_ispace + n > max * BOGO_INODE {
                return Err(ENOSPC);
            }
        }
        self.used_ispace += n;
        Ok(())
    }

    fn ino(&self, id: Id) -> &MInode {
        &self.inodes[&id]
    }

    fn ino_mut(&mut self, id: Id) -> &mut MInode {
        self.inodes.get_mut(&id).expect("model inode")
    }

    fn dir_of(&self, id: Id) -> &MDir {
        self.ino(id).dir().expect("model dir")
    }

    fn dir_mut_of(&mut self, id: Id) -> &mut MDir {
        self.ino_mut(id).dir_mut().expect("model dir")
    }

    /// Walk a directory path as `openat2(RESOLVE_NO_SYMLINKS, O_DIRECTORY)` does.
    fn resolve_dir(&self, path: &[&str]) -> R<Id> {
        let mut cur = ROOT;
        for comp in path {
            let id = *self.dir_of(cur).entries.get(*comp).ok_or(ENOENT)?;
            match self.ino(id).kind {
                FileKind::Directory => cur = id,
                FileKind::Symlink => return Err(ELOOP),
                _ => return Err(ENOTDIR),
            }
        }
        Ok(cur)
    }

    fn lookup(&self, dir: Id, name: &str) -> Option<Id> {
        self.dir_of(dir).entries.get(name).copied()
    }

    fn loc(&self, at: Loc) -> R<(Id, &'static str)> {
        Ok((self.resolve_dir(at.parent())?, at.name()))
    }

    fn new_id(&mut self) -> Id {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Permission bits of a new inode: `mask` limits which bits the call may set (mkdir drops
    /// set-user-ID and set-group-ID), the umask applies (not to symlinks), and a set-group-ID
    /// parent passes the bit to new directories.
    /// Permission bits and inherited ACLs of a new inode (`posix_acl_create`): the umask, or
    /// below a directory with a default ACL the mode masked by it instead, which becomes the
    /// new inode's access ACL (unless equal to the mode) and a directory's default ACL.
    fn new_perm(&self, parent: Id, mode: u32, mask: u32, is_dir: bool) -> (u32, Xattrs) {
        let mut acls = Xattrs::new();
        let mut perm = match self.ino(parent).xattrs.get(crate::acl::DEFAULT.as_bytes()) {
            None => mode & mask & !(self.cfg.umask & 0o777),
            Some(default) => {
                let entries = crate::acl::decode(default);
                let (access, m, keep) = crate::acl::create_masq(&entries, mode & mask);
                if keep {
                    acls.insert(crate::acl::ACCESS.into(), crate::acl::encode(&access));
                }
                if is_dir {
                    acls.insert(crate::acl::DEFAULT.into(), default.clone());
                }
                m
            }
        };
        if is_dir && self.ino(parent).perm & libc::S_ISGID != 0 {
            perm |= libc::S_ISGID;
        }
        (perm, acls)
    }

    /// Add a new inode under `name` in `parent` (space already charged).
    fn link_new(&mut self, parent: Id, name: &str, inode: MInode) -> Id {
        let id = self.new_id();
        let is_dir = inode.kind == FileKind::Directory;
        self.inodes.insert(id, inode);
        self.dir_mut_of(parent).entries.insert(name.to_string(), id);
        if is_dir {
            self.ino_mut(parent).nlink += 1;
        }
        id
    }

    /// Free an inode with no links and no handles: its pages, its inode and xattr space.
    fn maybe_release(&mut self, id: Id) {
        let i = self.ino(id);
        if i.nlink != 0 || i.opens != 0 || id == ROOT {
            return;
        }
        let i = self.inodes.remove(&id).expect("inode");
        if let Body::File(f) = &i.body {
            self.used_pages -= f.pages.len() as u64;
        }
        self.used_ispace -= BOGO_INODE + i.xattr_space;
    }

    /// One name of `id` went away (unlink, or replaced by rename).
    fn drop_link(&mut self, id: Id) {
        let i = self.ino_mut(id);
        if i.kind == FileKind::Directory {
            i.nlink = 0;
        } else {
            let extra = i.nlink > 1;
            i.nlink -= 1;
            if extra {
                self.used_ispace -= BOGO_INODE;
            }
        }
    }

    fn is_ancestor_or_self(&self, a: Id, mut b: Id) -> bool {
        loop {
            if a == b {
                return true;
            }
            if b == ROOT {
                return false;
            }
            b = self.dir_of(b).parent;
        }
    }

    fn handle(&self, h: u8) -> Option<(usize, MHandle)> {
        if self.handles.is_empty() {
            None
        } else {
            let i = usize::from(h) % self.handles.len();
            Some((i, self.handles[i]))
        }
    }

    fn open_handle(&mut self, id: Id, flags: OpenMode) {
        self.ino_mut(id).opens += 1;
        self.handles.push(MHandle { id, flags });
    }

    // ----- file data -----

    fn file_write(&mut self, id: Id, off: u64, data: &[u8]) -> R<u64> {
        let len = (data.len() as u64).min(MAX_FILE - off);
        let mut done = 0u64;
        while done < len {
            let pos = off + done;
            let idx = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = (P - in_page).min((len - done) as usize);
            let present = matches!(self.ino(id).file().expect("file").pages.get(&idx), Some(Page::Data(_)));
            if !present {
                let reserved = self.ino(id).file().expect("file").pages.contains_key(&idx);
                if !reserved {
                    if let Err(e) = self.charge_pages(1) {
                        if done == 0 {
                            return Err(e);
                        }
                        break;
                    }
                }
                let f = self.ino_mut(id).file_mut().expect("file");
                f.pages.insert(idx, Page::Data(Box::new([0u8; P])));
            }
            let f = self.ino_mut(id).file_mut().expect("file");
            if let Some(Page::Data(d)) = f.pages.get_mut(&idx) {
                d[in_page..in_page + n].copy_from_slice(&data[done as usize..done as usize + n]);
            }
            done += n as u64;
        }
        let f = self.ino_mut(id).file_mut().expect("file");
        f.size = f.size.max(off + done);
        Ok(done)
    }

    fn file_read(f: &MFile, off: u64, len: u64) -> Vec<u8> {
        if off >= f.size {
            return Vec::new();
        }
        let n = len.min(f.size - off);
        let mut out = vec![0u8; n as usize];
        let mut pos = off;
        while pos < off + n {
            let idx = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let k = (P - in_page).min((off + n - pos) as usize);
            if let Some(Page::Data(d)) = f.pages.get(&idx) {
                let o = (pos - off) as usize;
                out[o..o + k].copy_from_slice(&d[in_page..in_page + k]);
            }
            pos += k as u64;
        }
        out
    }

    /// Remove pages `[first, end)`; returns how many were charged.
    fn remove_pages(f: &mut MFile, first: u64, end: u64) -> u64 {
        if first >= end {
            return 0;
        }
        let gone: Vec<u64> = f.pages.range(first..end).map(|(&i, _)| i).collect();
        for i in &gone {
            f.pages.remove(i);
        }
        gone.len() as u64
    }

    fn zero_in_page(f: &mut MFile, idx: u64, from: usize, to: usize) {
        if let Some(Page::Data(d)) = f.pages.get_mut(&idx) {
            d[from..to].fill(0);
        }
    }

    /// `shmem_setattr` with `ATTR_SIZE`: set the size, and when not growing free every page
    /// past the new end (fallocated pages beyond EOF included, even at the same size) and zero
    /// the tail of the last page.
    fn file_truncate(&mut self, id: Id, new: u64) {
        let f = self.ino_mut(id).file_mut().expect("file");
        let old = f.size;
        f.size = new;
        let mut freed = 0;
        if new <= old {
            freed = Self::remove_pages(f, new.div_ceil(PAGE), u64::MAX);
            if new % PAGE != 0 {
                Self::zero_in_page(f, new / PAGE, (new % PAGE) as usize, P);
            }
        }
        self.used_pages -= freed;
    }

    fn file_punch(&mut self, id: Id, off: u64, len: u64) {
        let end = off + len;
        let f = self.ino_mut(id).file_mut().expect("file");
        let freed = Self::remove_pages(f, off.div_ceil(PAGE), end / PAGE);
        let (head, tail) = (off / PAGE, end / PAGE);
        if head == tail {
            Self::zero_in_page(f, head, (off % PAGE) as usize, (end % PAGE) as usize);
        } else {
            if off % PAGE != 0 {
                Self::zero_in_page(f, head, (off % PAGE) as usize, P);
            }
            if end % PAGE != 0 {
                Self::zero_in_page(f, tail, 0, (end % PAGE) as usize);
            }
        }
        self.used_pages -= freed;
    }

    fn file_reserve(&mut self, id: Id, off: u64, len: u64, keep: bool) -> R<()> {
        let end = off + len;
        let (first, last) = (off / PAGE, (end - 1) / PAGE);
        let f = self.ino(id).file().expect("file");
        let present = f.pages.range(first..=last).count() as u64;
        let holes = last - first + 1 - present;
        self.charge_pages(holes)?;
        let f = self.ino_mut(id).file_mut().expect("file");
        if holes > 0 {
            for idx in first..=last {
                f.pages.entry(idx).or_insert(Page::Reserved);
            }
        }
        if !keep && end > f.size {
            f.size = end;
        }
        Ok(())
    }

    /// `SEEK_DATA`/`SEEK_HOLE` on a file: reserved pages are holes.
    fn file_seek(f: &MFile, off: i64, whence: Whence) -> R<u64> {
        let off = u64::try_from(off).map_err(|_| ENXIO)?;
        if off >= f.size {
            return Err(ENXIO);
        }
        let start = off / PAGE;
        let is_data = |p: &Page| matches!(p, Page::Data(_));
        match whence {
            Whence::Data => {
                let idx = f
                    .pages
                    .range(start..)
                    .find(|(_, p)| is_data(p))
                    .map(|(&i, _)| i)
                    .ok_or(ENXIO)?;
                let at = (idx * PAGE).max(off);
                if at < f.size {
                    Ok(at)
                } else {
                    Err(ENXIO)
                }
            }
            Whence::Hole => {
                let mut expect = start;
                for (&i, p) in f.pages.range(start..) {
                    if i != expect || !is_data(p) {
                        break;
                    }
                    expect += 1;
                }
                Ok((expect * PAGE).max(off).min(f.size))
            }
        }
    }

    fn content(f: &MFile) -> Content {
        let mut extents = Vec::new();
        let mut pos: i64 = 0;
        while let Ok(d) = Self::file_seek(f, pos, Whence::Data) {
            let h = Self::file_seek(f, d as i64, Whence::Hole).unwrap_or(f.size);
            extents.push((d, h));
            pos = h as i64;
        }
        let bytes = if f.size <= crate::outcome::WHOLE_FILE_LIMIT {
            Self::file_read(f, 0, f.size)
        } else {
            extents
                .iter()
                .flat_map(|&(s, e)| Self::file_read(f, s, e - s))
                .collect()
        };
        Content { extents, bytes }
    }

    fn node_snap(&self, id: Id, with_content: bool, with_xattrs: bool) -> NodeSnap {
        let i = self.ino(id);
        let (size, blocks) = match &i.body {
            Body::File(f) => (f.size, f.pages.len() as u64 * 8),
            Body::Dir(d) => (2 * BOGO_DIRENT + BOGO_DIRENT * d.entries.len() as u64, 0),
            Body::Symlink(t) => (t.len() as u64, 0),
            Body::Special => (0, 0),
        };
        NodeSnap {
            id,
            kind: i.kind,
            perm: i.perm,
            nlink: i.nlink,
            size,
            blocks,
            rdev: i.rdev,
            target: match &i.body {
                Body::Symlink(t) => Some(t.clone()),
                _ => None,
            },
            content: match (&i.body, with_content) {
                (Body::File(f), true) => Some(Self::content(f)),
                _ => None,
            },
            xattrs: with_xattrs.then(|| i.xattrs.clone()),
            times: None,
        }
    }

    fn statfs(&self) -> Option<FsStat> {
        let (max_pages, nr) = (self.cfg.size_pages?, self.cfg.nr_inodes?);
        let bfree = max_pages - self.used_pages;
        Some(FsStat {
            bsize: PAGE,
            blocks: max_pages,
            bfree,
            bavail: bfree,
            files: nr,
            ffree: (nr * BOGO_INODE - self.used_ispace) / BOGO_INODE,
            namelen: 255,
        })
    }

    // ----- operations -----

    /// `may_create`'s `inode_permission(dir, MAY_WRITE)`: nothing new in an immutable directory.
    fn may_create(&self, dir: Id) -> R<()> {
        if self.ino(dir).immutable() {
            return Err(EPERM);
        }
        Ok(())
    }

    /// `may_delete`'s flag rules: not out of an immutable or append-only directory, not an
    /// immutable or append-only victim (before its type is checked).
    fn may_delete(&self, dir: Id, victim: Id) -> R<()> {
        if self.ino(dir).fixed() || self.ino(victim).fixed() {
            return Err(EPERM);
        }
        Ok(())
    }

    fn create(&mut self, at: Loc, mode: u32, flags: OpenMode) -> R<Value> {
        let (parent, name) = self.loc(at)?;
        if self.lookup(parent, name).is_some() {
            return Err(EEXIST);
        }
        self.may_create(parent)?;
        self.charge_ispace(BOGO_INODE)?;
        let (perm, acls) = self.new_perm(parent, mode, 0o7777, false);
        let mut inode = MInode::new(FileKind::RegularFile, perm, 1, Body::File(MFile::default()));
        inode.xattrs = acls;
        let id = self.link_new(parent, name, inode);
        self.open_handle(id, flags);
        Ok(Value::Opened)
    }

    fn mkdir(&mut self, at: Loc, mode: u32) -> R<Value> {
        let (parent, name) = self.loc(at)?;
        if self.lookup(parent, name).is_some() {
            return Err(EEXIST);
        }
        self.may_create(parent)?;
        self.charge_ispace(BOGO_INODE)?;
        let (perm, acls) = self.new_perm(parent, mode, 0o1777, true);
        let body = Body::Dir(MDir {
            entries: BTreeMap::new(),
            parent,
        });
        let mut inode = MInode::new(FileKind::Directory, perm, 2, body);
        inode.xattrs = acls;
        self.link_new(parent, name, inode);
        Ok(Value::Unit)
    }

    fn mknod(&mut self, at: Loc, kind: op::NodeKind, mode: u32) -> R<Value> {
        let (parent, name) = self.loc(at)?;
        if self.lookup(parent, name).is_some() {
            return Err(EEXIST);
        }
        self.may_create(parent)?;
        self.charge_ispace(BOGO_INODE)?;
        let (ifmt, rdev) = kind.mode_and_rdev();
        let fk = FileKind::from_mode(ifmt).expect("kind");
        let (perm, acls) = self.new_perm(parent, mode, 0o7777, false);
        let mut inode = MInode::new(fk, perm, 1, Body::Special);
        inode.xattrs = acls;
        inode.rdev = rdev;
        self.link_new(parent, name, inode);
        Ok(Value::Unit)
    }

    fn symlink(&mut self, at: Loc, target: u8) -> R<Value> {
        let t = op::target(target);
        let (parent, name) = self.loc(at)?;
        if self.lookup(parent, name).is_some() {
            return Err(EEXIST);
        }
        self.may_create(parent)?;
        self.charge_ispace(BOGO_INODE)?;
        let body = Body::Symlink(t.into_bytes());
        self.link_new(parent, name, MInode::new(FileKind::Symlink, 0o777, 1, body));
        Ok(Value::Unit)
    }

    /// The common end of `link` and `linkat(AT_EMPTY_PATH)`.
    fn link_inode(&mut self, id: Id, to: Loc) -> R<Value> {
        let (parent, name) = self.loc(to)?;
        if self.lookup(parent, name).is_some() {
            return Err(EEXIST);
        }
        self.may_create(parent)?;
        let i = self.ino(id);
        // vfs_link: an immutable or append-only inode gets no new name.
        if i.fixed() {
            return Err(EPERM);
        }
        if i.kind == FileKind::Directory {
            return Err(EPERM);
        }
        if i.nlink == 0 && !i.linkable {
            return Err(ENOENT);
        }
        if i.nlink > 0 {
            self.charge_ispace(BOGO_INODE)?;
        }
        let i = self.ino_mut(id);
        i.nlink += 1;
        i.linkable = false;
        self.dir_mut_of(parent).entries.insert(name.to_string(), id);
        Ok(Value::Unit)
    }

    fn link(&mut self, from: Loc, to: Loc) -> R<Value> {
        let (sp, sn) = self.loc(from)?;
        let id = self.lookup(sp, sn).ok_or(ENOENT)?;
        self.link_inode(id, to)
    }

    fn unlink(&mut self, at: Loc) -> R<Value> {
        let (parent, name) = self.loc(at)?;
        let id = self.lookup(parent, name).ok_or(ENOENT)?;
        self.may_delete(parent, id)?;
        if self.ino(id).kind == FileKind::Directory {
            return Err(EISDIR);
        }
        self.dir_mut_of(parent).entries.remove(name);
        self.drop_link(id);
        self.maybe_release(id);
        Ok(Value::Unit)
    }

    fn rmdir(&mut self, at: Loc) -> R<Value> {
        let (parent, name) = self.loc(at)?;
        let id = self.lookup(parent, name).ok_or(ENOENT)?;
        self.may_delete(parent, id)?;
        let d = self.ino(id).dir().ok_or(ENOTDIR)?;
        if !d.entries.is_empty() {
            return Err(ENOTEMPTY);
        }
        self.dir_mut_of(parent).entries.remove(name);
        self.ino_mut(parent).nlink -= 1;
        self.ino_mut(id).nlink = 0;
        self.maybe_release(id);
        Ok(Value::Unit)
    }

    fn rename(&mut self, from: Loc, to: Loc, flags: u32) -> R<Value> {
        const NOREPLACE: u32 = 1;
        const EXCHANGE: u32 = 2;
        const WHITEOUT: u32 = 4;
        if flags & !(NOREPLACE | EXCHANGE | WHITEOUT) != 0 {
            return Err(EINVAL);
        }
        let exchange = flags & EXCHANGE != 0;
        if exchange && flags & (NOREPLACE | WHITEOUT) != 0 {
            return Err(EINVAL);
        }
        let (p1, n1) = self.loc(from)?;
        let (p2, n2) = self.loc(to)?;
        let src = self.lookup(p1, n1).ok_or(ENOENT)?;
        let dst = self.lookup(p2, n2);
        if flags & NOREPLACE != 0 && dst.is_some() {
            return Err(EEXIST);
        }
        if exchange && dst.is_none() {
            return Err(ENOENT);
        }
        if p1 != p2 {
            // lock_rename's trap: the source may not be an ancestor of the new parent, nor the
            // target an ancestor of the old one.
            if self.is_ancestor_dir(src, p2) {
                return Err(EINVAL);
            }
            if let Some(d) = dst {
                if self.is_ancestor_dir(d, p1) {
                    return Err(if exchange { EINVAL } else { ENOTEMPTY });
                }
            }
        }
        if dst == Some(src) {
            return Ok(Value::Unit);
        }
        // vfs_rename: may_delete of the source, then may_delete of the target or may_create in
        // the new parent, before the type checks.
        self.may_delete(p1, src)?;
        match dst {
            Some(d) => self.may_delete(p2, d)?,
            None => self.may_create(p2)?,
        }
        let src_dir = self.ino(src).kind == FileKind::Directory;
        let dst_dir = dst.map(|d| self.ino(d).kind == FileKind::Directory);
        if exchange {
            let d = dst.expect("exchange target");
            self.dir_mut_of(p1).entries.insert(n1.to_string(), d);
            self.dir_mut_of(p2).entries.insert(n2.to_string(), src);
            if p1 != p2 && dst_dir != Some(src_dir) {
                let (from_dir, to_dir) = if src_dir { (p1, p2) } else { (p2, p1) };
                self.ino_mut(from_dir).nlink -= 1;
                self.ino_mut(to_dir).nlink += 1;
            }
            if src_dir {
                self.dir_mut_of(src).parent = p2;
            }
            if dst_dir == Some(true) {
                self.dir_mut_of(d).parent = p1;
            }
            return Ok(Value::Unit);
        }
        match dst_dir {
            Some(false) if src_dir => return Err(ENOTDIR),
            Some(true) if !src_dir => return Err(EISDIR),
            _ => {}
        }
        if let Some(d) = dst {
            if self.ino(d).dir().is_some_and(|d| !d.entries.is_empty()) {
                return Err(ENOTEMPTY);
            }
        }
        if flags & WHITEOUT != 0 {
            self.charge_ispace(BOGO_INODE)?;
        }
        self.dir_mut_of(p1).entries.remove(n1);
        if let Some(d) = dst {
            self.dir_mut_of(p2).entries.remove(n2);
            self.drop_link(d);
            if src_dir {
                self.ino_mut(p1).nlink -= 1;
            }
        } else if src_dir {
            self.ino_mut(p1).nlink -= 1;
            self.ino_mut(p2).nlink += 1;
        }
        self.dir_mut_of(p2).entries.insert(n2.to_string(), src);
        if src_dir {
            self.dir_mut_of(src).parent = p2;
        }
        if flags & WHITEOUT != 0 {
            let mut wo = MInode::new(FileKind::CharDevice, 0, 1, Body::Special);
            wo.rdev = 0;
            let id = self.new_id();
            self.inodes.insert(id, wo);
            self.dir_mut_of(p1).entries.insert(n1.to_string(), id);
        }
        if let Some(d) = dst {
            self.maybe_release(d);
        }
        Ok(Value::Unit)
    }

    /// Whether `a` is a directory that is `b` or an ancestor of `b`.
    fn is_ancestor_dir(&self, a: Id, b: Id) -> bool {
        self.ino(a).kind == FileKind::Directory && self.is_ancestor_or_self(a, b)
    }

    fn open(&mut self, at: Loc, flags: OpenMode) -> R<Value> {
        let (parent, name) = self.loc(at)?;
        let id = self.lookup(parent, name).ok_or(ENOENT)?;
        match self.ino(id).kind {
            FileKind::Symlink => return Err(ELOOP),
            FileKind::Directory => {
                if flags.write() || flags.trunc {
                    return Err(EISDIR);
                }
            }
            FileKind::RegularFile => {}
            k => return Ok(Value::NotOpened(k)),
        }
        // may_open: no writing an immutable inode; an append-only one only with O_APPEND and
        // without O_TRUNC.
        let i = self.ino(id);
        if (flags.write() || flags.trunc) && i.immutable() {
            return Err(EPERM);
        }
        if i.append_only() && ((flags.write() && !flags.append) || flags.trunc) {
            return Err(EPERM);
        }
        if flags.trunc && self.ino(id).kind == FileKind::RegularFile {
            self.file_truncate(id, 0);
        }
        self.open_handle(id, flags);
        Ok(Value::Opened)
    }

    fn tmpfile(&mut self, dir: op::DirSel, mode: u32) -> R<Value> {
        let parent = self.resolve_dir(dir.path())?;
        self.may_create(parent)?;
        self.charge_ispace(BOGO_INODE)?;
        let (perm, acls) = self.new_perm(parent, mode, 0o7777, false);
        let mut inode = MInode::new(FileKind::RegularFile, perm, 0, Body::File(MFile::default()));
        inode.xattrs = acls;
        inode.linkable = true;
        let id = self.new_id();
        self.inodes.insert(id, inode);
        self.open_handle(id, OpenMode::RDWR);
        Ok(Value::Opened)
    }

    fn close(&mut self, idx: usize) -> Value {
        let h = self.handles.remove(idx);
        self.ino_mut(h.id).opens -= 1;
        self.maybe_release(h.id);
        Value::Unit
    }

    fn write(&mut self, h: MHandle, off: u64, len: u64, seed: u8) -> R<Value> {
        if !h.flags.write() {
            return Err(EBADF);
        }
        if off.checked_add(len).is_none_or(|e| e > MAX_FILE) {
            return Err(EINVAL);
        }
        if len == 0 {
            return Ok(Value::Count(0));
        }
        let f = self.ino(h.id).file().ok_or(EISDIR)?;
        let off = if h.flags.append { f.size } else { off };
        // The engine's rule for a handle opened before the flag was set (Linux lets it write:
        // see `changes_flagged_file_through_handle`): nothing into an immutable file, only at
        // the end of an append-only one.
        let i = self.ino(h.id);
        if i.immutable() || (i.append_only() && off != f.size) {
            return Err(EPERM);
        }
        if off >= MAX_FILE {
            return Err(EFBIG);
        }
        let data = op::pattern(seed, len as usize);
        Ok(Value::Count(self.file_write(h.id, off, &data)?))
    }

    fn read(&self, h: MHandle, off: u64, len: u64) -> R<Value> {
        if !h.flags.read() {
            return Err(EBADF);
        }
        if off.checked_add(len).is_none_or(|e| e > MAX_FILE) {
            return Err(EINVAL);
        }
        let f = self.ino(h.id).file().ok_or(EISDIR)?;
        Ok(Value::Bytes(Self::file_read(f, off, len)))
    }

    fn truncate(&mut self, at: Loc, size: u64) -> R<Value> {
        if size > MAX_FILE {
            return Err(EINVAL);
        }
        let (parent, name) = self.loc(at)?;
        let id = self.lookup(parent, name).ok_or(ENOENT)?;
        match self.ino(id).kind {
            FileKind::Symlink => return Ok(Value::NotOpened(FileKind::Symlink)),
            FileKind::Directory => return Err(EISDIR),
            FileKind::RegularFile => {}
            _ => return Err(EINVAL),
        }
        // vfs_truncate: inode_permission(MAY_WRITE), then IS_APPEND.
        if self.ino(id).fixed() {
            return Err(EPERM);
        }
        self.file_truncate(id, size);
        Ok(Value::Unit)
    }

    fn ftruncate(&mut self, h: MHandle, size: u64) -> R<Value> {
        if size > MAX_FILE {
            return Err(EINVAL);
        }
        if self.ino(h.id).kind != FileKind::RegularFile || !h.flags.write() {
            return Err(EINVAL);
        }
        // The engine's rule (stricter than Linux, which truncates an immutable file through a
        // handle opened before the flag was set: see `changes_flagged_file_through_handle`).
        if self.ino(h.id).fixed() {
            return Err(EPERM);
        }
        self.file_truncate(h.id, size);
        Ok(Value::Unit)
    }

    fn fallocate(&mut self, h: MHandle, mode: i32, off: u64, len: u64) -> R<Value> {
        // Decoded by the shim before the engine is called (the API takes an enum).
        let (keep, punch) = match mode {
            0 => (false, false),
            1 => (true, false),
            3 => (true, true),
            _ => return Err(EOPNOTSUPP),
        };
        if len == 0 {
            return Err(EINVAL);
        }
        if !h.flags.write() {
            return Err(EBADF);
        }
        if self.ino(h.id).kind == FileKind::Directory {
            return Err(EISDIR);
        }
        if off.checked_add(len).is_none_or(|e| e > MAX_FILE) {
            return Err(EFBIG);
        }
        // vfs_fallocate: nothing on an immutable file, only allocation on an append-only one
        // (the engine also refuses KEEP_SIZE there, which Linux allows: see
        // `changes_flagged_file_through_handle`).
        if self.ino(h.id).immutable() || (mode != 0 && self.ino(h.id).append_only()) {
            return Err(EPERM);
        }
        if punch {
            self.file_punch(h.id, off, len);
        } else {
            self.file_reserve(h.id, off, len, keep)?;
        }
        Ok(Value::Unit)
    }

    fn seek(&self, h: MHandle, whence: Whence, off: i64) -> R<Value> {
        let f = self.ino(h.id).file().ok_or(EINVAL)?;
        Ok(Value::Count(Self::file_seek(f, off, whence)?))
    }

    fn copy_range(&mut self, hin: MHandle, off_in: u64, hout: MHandle, off_out: u64, len: u64) -> R<Value> {
        let (kin, kout) = (self.ino(hin.id).kind, self.ino(hout.id).kind);
        if kin == FileKind::Directory || kout == FileKind::Directory {
            return Err(EISDIR);
        }
        if !hin.flags.read() || !hout.flags.write() || hout.flags.append {
            return Err(EBADF);
        }
        // generic_copy_file_checks: not into an immutable file; the engine refuses an
        // append-only one too (see `changes_flagged_file_through_handle`).
        if self.ino(hout.id).fixed() {
            return Err(EPERM);
        }
        let size_in = self.ino(hin.id).file().expect("file").size;
        let mut count = if off_in >= size_in {
            0
        } else {
            len.min(size_in - off_in)
        };
        if off_out >= MAX_FILE {
            return Err(EFBIG);
        }
        count = count.min(MAX_FILE - off_out);
        if hin.id == hout.id && off_out + count > off_in && off_out < off_in + count {
            return Err(EINVAL);
        }
        if off_in + count > MAX_FILE || off_out + count > MAX_FILE {
            return Err(EINVAL);
        }
        if count == 0 {
            return Ok(Value::Count(0));
        }
        let data = Self::file_read(self.ino(hin.id).file().expect("file"), off_in, count);
        Ok(Value::Count(self.file_write(hout.id, off_out, &data)?))
    }

    /// Name and size checks done by the `*xattr` system calls before the path is walked.
    fn xattr_args(name: &str, value_len: Option<usize>) -> R<()> {
        if name.is_empty() || name.len() > 255 {
            return Err(ERANGE);
        }
        if value_len.is_some_and(|l| l > 65536) {
            return Err(E2BIG);
        }
        Ok(())
    }

    /// `xattr_permission` then handler resolution, as the VFS orders them.
    fn xattr_check(&self, id: Id, name: &str, write: bool) -> R<()> {
        if write && self.ino(id).fixed() {
            return Err(EPERM);
        }
        let kind = self.ino(id).kind;
        if name.starts_with("user.") && !matches!(kind, FileKind::RegularFile | FileKind::Directory) {
            return Err(if write { EPERM } else { ENODATA });
        }
        for prefix in ["user.", "trusted.", "security."] {
            if let Some(rest) = name.strip_prefix(prefix) {
                return if rest.is_empty() { Err(EINVAL) } else { Ok(()) };
            }
        }
        Err(EOPNOTSUPP)
    }

    fn xattr_target(&self, at: Loc) -> R<Id> {
        let (parent, name) = self.loc(at)?;
        self.lookup(parent, name).ok_or(ENOENT)
    }

    fn setxattr(&mut self, at: Loc, idx: u8, len: u32, seed: u8, flags: u8) -> R<Value> {
        let name = op::xattr_name(idx);
        Self::xattr_args(name, Some(len as usize))?;
        let id = self.xattr_target(at)?;
        self.xattr_check(id, name, true)?;
        let space = if self.ispace_limited() {
            40 + name.len() as u64 + u64::from(len)
        } else {
            0
        };
        // shmem charges the new value before looking for the old one.
        self.charge_ispace(space)?;
        let key = name.as_bytes().to_vec();
        let old = self.ino(id).xattrs.get(&key).map(Vec::len);
        let refused = match (flags % 3, old) {
            (1, Some(_)) => Some(EEXIST),
            (2, None) => Some(ENODATA),
            _ => None,
        };
        if let Some(e) = refused {
            self.used_ispace -= space;
            return Err(e);
        }
        let old_space = match old {
            Some(l) if self.ispace_limited() => 40 + name.len() as u64 + l as u64,
            _ => 0,
        };
        self.used_ispace -= old_space;
        let i = self.ino_mut(id);
        i.xattr_space = i.xattr_space + space - old_space;
        i.xattrs.insert(key, op::pattern(seed, len as usize));
        Ok(Value::Unit)
    }

    fn removexattr(&mut self, at: Loc, idx: u8) -> R<Value> {
        let name = op::xattr_name(idx);
        Self::xattr_args(name, None)?;
        let id = self.xattr_target(at)?;
        self.xattr_check(id, name, true)?;
        let old = self.ino_mut(id).xattrs.remove(name.as_bytes()).ok_or(ENODATA)?;
        if self.ispace_limited() {
            let space = 40 + name.len() as u64 + old.len() as u64;
            self.used_ispace -= space;
            self.ino_mut(id).xattr_space -= space;
        }
        Ok(Value::Unit)
    }

    fn getxattr(&self, at: Loc, idx: u8) -> R<Value> {
        let name = op::xattr_name(idx);
        Self::xattr_args(name, None)?;
        let id = self.xattr_target(at)?;
        self.xattr_check(id, name, false)?;
        self.ino(id)
            .xattrs
            .get(name.as_bytes())
            .map(|v| Value::Bytes(v.clone()))
            .ok_or(ENODATA)
    }

    fn listxattr(&self, at: Loc) -> R<Value> {
        let id = self.xattr_target(at)?;
        Ok(Value::Names(self.ino(id).xattrs.keys().cloned().collect()))
    }

    /// `FS_IOC_SETFLAGS` as [`Op::SetFlags`] defines it, for root (`CAP_LINUX_IMMUTABLE`).
    fn set_flags(&mut self, at: Loc, bits: u8) -> R<Value> {
        let id = self.flags_target(at)?;
        let flags = op::file_flags(bits);
        if flags & !op::SUPPORTED_FILE_FLAGS != 0 {
            return Err(EOPNOTSUPP);
        }
        self.ino_mut(id).flags = flags;
        Ok(Value::Unit)
    }

    /// The inode an [`Op::SetFlags`]/[`Op::GetFlags`] acts on: `ELOOP` for a symlink
    /// (`O_NOFOLLOW`), `ENOTTY` for fifos, sockets and devices (tmpfs gives them no fileattr
    /// operations; they are not opened).
    fn flags_target(&self, at: Loc) -> R<Id> {
        let (parent, name) = self.loc(at)?;
        let id = self.lookup(parent, name).ok_or(ENOENT)?;
        match self.ino(id).kind {
            FileKind::RegularFile | FileKind::Directory => Ok(id),
            FileKind::Symlink => Err(ELOOP),
            _ => Err(libc::ENOTTY),
        }
    }

    /// `lsetxattr` of an ACL (`Some(idx)`) or `lremovexattr` (`None`), for root, as Linux's
    /// `vfs_set_acl`/`vfs_remove_acl`: XATTR flags do not apply, an empty ACL removes, removing
    /// an absent one succeeds, an access ACL equal to the mode only changes the mode (root
    /// keeps set-group-ID: `CAP_FSETID`). ACLs cost no inode space.
    fn set_acl(&mut self, at: Loc, idx: Option<u8>, default: bool) -> R<Value> {
        let id = self.xattr_target(at)?;
        let entries = idx.map(|i| crate::acl::ACLS[usize::from(i) % crate::acl::ACLS.len()]);
        let entries = entries.filter(|e| !e.is_empty());
        let i = self.ino(id);
        if i.kind == FileKind::Symlink {
            return Err(EOPNOTSUPP);
        }
        if i.fixed() {
            return Err(EPERM);
        }
        if default && i.kind != FileKind::Directory {
            return if entries.is_some() {
                Err(libc::EACCES)
            } else {
                Ok(Value::Unit)
            };
        }
        // set_posix_acl checks validity last.
        if entries.is_some_and(|e| !crate::acl::valid(e)) {
            return Err(EINVAL);
        }
        let key = crate::acl::name(default).as_bytes().to_vec();
        let i = self.ino_mut(id);
        let keep = match entries {
            Some(e) if !default => {
                let (bits, more) = crate::acl::equiv_mode(e);
                i.perm = (i.perm & !0o777) | bits;
                more.then(|| crate::acl::encode(e))
            }
            Some(e) => Some(crate::acl::encode(e)),
            None => None,
        };
        match keep {
            Some(v) => i.xattrs.insert(key, v),
            None => i.xattrs.remove(&key),
        };
        Ok(Value::Unit)
    }

    /// A whole listing from the start: every entry present when it began (the engine ends a
    /// listing at the directory's end as it began, so nothing created later can appear; a
    /// one-shot listing therefore sees exactly this set).
    fn readdir(&self, dir: op::DirSel) -> R<Value> {
        let id = self.resolve_dir(dir.path())?;
        let d = self.dir_of(id);
        let mut out = BTreeMap::new();
        out.insert(b".".to_vec(), (FileKind::Directory, id));
        out.insert(b"..".to_vec(), (FileKind::Directory, d.parent));
        for (name, &child) in &d.entries {
            out.insert(name.as_bytes().to_vec(), (self.ino(child).kind, child));
        }
        Ok(Value::Entries(out))
    }

    fn apply_inner(&mut self, op: &Op) -> R<Value> {
        match *op {
            Op::Create { at, mode, flags } => self.create(at, mode, flags),
            Op::Mkdir { at, mode } => self.mkdir(at, mode),
            Op::Mknod { at, kind, mode } => self.mknod(at, kind, mode),
            Op::Symlink { at, target } => self.symlink(at, target),
            Op::Link { from, to } => self.link(from, to),
            Op::LinkHandle { h, to } => match self.handle(h) {
                None => Ok(Value::NoHandle),
                Some((_, h)) => self.link_inode(h.id, to),
            },
            Op::Unlink { at } => self.unlink(at),
            Op::Rmdir { at } => self.rmdir(at),
            Op::Rename { from, to, flags } => self.rename(from, to, flags),
            Op::Open { at, flags } => self.open(at, flags),
            Op::Tmpfile { dir, mode } => self.tmpfile(dir, mode),
            Op::Close { h } => match self.handle(h) {
                None => Ok(Value::NoHandle),
                Some((i, _)) => Ok(self.close(i)),
            },
            Op::Write { h, off, len, seed } => match self.handle(h) {
                None => Ok(Value::NoHandle),
                Some((_, h)) => self.write(h, off, len, seed),
            },
            Op::Read { h, off, len } => match self.handle(h) {
                None => Ok(Value::NoHandle),
                Some((_, h)) => self.read(h, off, len),
            },
            Op::Truncate { at, size } => self.truncate(at, size),
            Op::Ftruncate { h, size } => match self.handle(h) {
                None => Ok(Value::NoHandle),
                Some((_, h)) => self.ftruncate(h, size),
            },
            Op::Fallocate { h, mode, off, len } => match self.handle(h) {
                None => Ok(Value::NoHandle),
                Some((_, h)) => self.fallocate(h, mode, off, len),
            },
            Op::Seek { h, whence, off } => match self.handle(h) {
                None => Ok(Value::NoHandle),
                Some((_, h)) => self.seek(h, whence, off),
            },
            Op::CopyRange {
                from,
                off_in,
                to,
                off_out,
                len,
            } => match (self.handle(from), self.handle(to)) {
                (Some((_, a)), Some((_, b))) => self.copy_range(a, off_in, b, off_out, len),
                _ => Ok(Value::NoHandle),
            },
            Op::SetXattr {
                at,
                name,
                len,
                seed,
                flags,
            } => self.setxattr(at, name, len, seed, flags),
            Op::RemoveXattr { at, name } => self.removexattr(at, name),
            Op::GetXattr { at, name } => self.getxattr(at, name),
            Op::ListXattr { at } => self.listxattr(at),
            Op::Readdir { dir } => self.readdir(dir),
            Op::SetFlags { at, flags } => self.set_flags(at, flags),
            Op::SetAcl { at, acl, default } => self.set_acl(at, Some(acl), default),
            Op::RemoveAcl { at, default } => self.set_acl(at, None, default),
            Op::GetFlags { at } => {
                let id = self.flags_target(at)?;
                Ok(Value::Count(u64::from(self.ino(id).flags)))
            }
            Op::Statfs => Ok(self.statfs().map_or(Value::Unit, Value::Statfs)),
        }
    }

    fn walk(&self, id: Id, path: &str, out: &mut BTreeMap<String, NodeSnap>) {
        out.insert(path.to_string(), self.node_snap(id, true, true));
        if let Some(d) = self.ino(id).dir() {
            for (name, &child) in &d.entries {
                let p = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}/{name}")
                };
                self.walk(child, &p, out);
            }
        }
    }
}

impl Backend for Model {
    fn name(&self) -> &'static str {
        "model"
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match self.apply_inner(op) {
            Ok(v) => ok(v),
            Err(e) => Outcome::Err(e),
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let mut nodes = BTreeMap::new();
        self.walk(ROOT, "", &mut nodes);
        let handles = self
            .handles
            .iter()
            .map(|h| self.node_snap(h.id, h.flags.read(), false))
            .collect();
        Snapshot {
            nodes,
            handles,
            statfs: self.statfs(),
        }
    }

    fn remove_all(&mut self) -> Result<(), String> {
        while !self.handles.is_empty() {
            self.close(0);
        }
        fn remove_children(m: &mut Model, dir: Id) {
            let entries: Vec<(String, Id)> = m.dir_of(dir).entries.iter().map(|(n, &i)| (n.clone(), i)).collect();
            for (name, id) in entries {
                if m.ino(id).kind == FileKind::Directory {
                    remove_children(m, id);
                    m.dir_mut_of(dir).entries.remove(&name);
                    m.ino_mut(dir).nlink -= 1;
                    m.ino_mut(id).nlink = 0;
                } else {
                    m.dir_mut_of(dir).entries.remove(&name);
                    m.drop_link(id);
                }
                m.maybe_release(id);
            }
        }
        remove_children(self, ROOT);
        Ok(())
    }
}
