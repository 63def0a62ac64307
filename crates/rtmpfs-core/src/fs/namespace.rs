//! Names: lookup, creation of every inode kind, hard links, unlink and rmdir.

use super::{FileKind, Filesystem};
use crate::acl::InheritedAcls;
use crate::dir::DirBody;
use crate::error::{FsError, Result};
use crate::file::FileData;
use crate::inode::{Body, Inode, Meta};
use crate::limits::BOGO_INODE_SIZE;
use crate::name::{self, NameKind};
use crate::perm;
use crate::sync::Arc;
use crate::types::{access, Attr, Ctx, Fh, Ino, OpenFlags, Timespec};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// What to create: the kind and its kind-specific content.
#[derive(Clone, Copy)]
enum NewKind<'a> {
    File,
    Dir,
    Symlink(&'a [u8]),
    Special(FileKind, u64),
}

impl Filesystem {
    /// Look `name` up in directory `parent`. `.` and `..` resolve to the directory and its parent.
    ///
    /// # Errors
    /// `NotDir` if `parent` is not a directory, `NotFound`, `NameTooLong`, `Invalid`, `Access`.
    pub fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> Result<Attr> {
        let name = name.as_bytes();
        let kind = name::check(name)?;
        if kind == NameKind::Dot {
            // "." of any inode is itself: the kernel asks this of non-directories when it decodes
            // an exported file handle.
            let inode = self.inode(parent)?;
            if inode.kind == FileKind::Directory {
                self.check_perm(ctx, &inode, access::X_OK)?;
            }
            return self.lookup_ino(parent);
        }
        let dir_inode = self.inode(parent)?;
        let body = dir_inode.dir().ok_or(FsError::NotDir)?;
        self.check_perm(ctx, &dir_inode, access::X_OK)?;
        let target = match kind {
            NameKind::Dot => parent,
            NameKind::DotDot => body.parent(),
            NameKind::Normal => {
                let d = body.entries.read();
                let e = d.get(name).ok_or(FsError::NotFound)?;
                // Take the reference while the entry cannot go away.
                let inode = self.inode(e.ino)?;
                let mut m = inode.meta.write();
                self.add_lookup(&mut m);
                return Ok(inode.attr(&m));
            }
        };
        let inode = self.inode(target)?;
        let mut m = inode.meta.write();
        self.add_lookup(&mut m);
        Ok(inode.attr(&m))
    }

    /// Create and open a regular file (`open(O_CREAT|O_EXCL)`). `mode` holds permission bits.
    ///
    /// # Errors
    /// `Exists`, `NoSpace` (inode limit), name and permission errors, `ReadOnly`.
    pub fn create(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32, flags: OpenFlags) -> Result<(Attr, Fh)> {
        let inode = self.create_inode(ctx, parent, name.as_bytes(), mode, NewKind::File)?;
        let fh = self.open_inode(&inode, flags)?;
        let m = inode.meta.read();
        Ok((inode.attr(&m), fh))
    }

    /// Create an anonymous regular file in `parent` (`O_TMPFILE`): open, `nlink == 0`, and
    /// linkable into the namespace later with [`Filesystem::link`].
    ///
    /// # Errors
    /// As [`Filesystem::create`].
    pub fn tmpfile(&self, ctx: &Ctx, parent: Ino, mode: u32, flags: OpenFlags) -> Result<(Attr, Fh)> {
        let _gate = self.change_gate();
        self.check_writable()?;
        let dir_inode = self.inode(parent)?;
        // A removed directory still takes an anonymous file (Linux's vfs_tmpfile checks only
        // permissions, not IS_DEADDIR): no entry is added to it, and the file can be linked
        // elsewhere.
        dir_inode.dir().ok_or(FsError::NotDir)?;
        self.check_perm(ctx, &dir_inode, access::W_OK | access::X_OK)?;
        self.ispace.charge(BOGO_INODE_SIZE)?;
        let (perm, gid, acls) = {
            let pm = dir_inode.meta.read();
            self.new_owner(ctx, &pm, mode, false)
        };
        let mut meta = Meta::new(perm, ctx.uid, gid, 0, Timespec::now());
        set_inherited_acls(&mut meta, acls);
        meta.linkable = true;
        self.add_lookup(&mut meta);
        let ino = self.alloc_ino();
        let inode = Arc::new_cyclic(|me| {
            Inode::new(
                ino,
                self.generation,
                FileKind::RegularFile,
                meta,
                Body::File(FileData::new(ino.0, me.clone())),
            )
        });
        self.snap_born(&inode);
        self.table.insert(inode.clone());
        self.live_inodes.add(1);
        let fh = match self.open_inode(&inode, flags) {
            Ok(fh) => fh,
            Err(e) => {
                self.maybe_release(&inode);
                return Err(e);
            }
        };
        let m = inode.meta.read();
        Ok((inode.attr(&m), fh))
    }

    /// Create a directory.
    ///
    /// # Errors
    /// As [`Filesystem::create`], plus `TooManyLinks` if the parent cannot take another link.
    pub fn mkdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        let inode = self.create_inode(ctx, parent, name.as_bytes(), mode, NewKind::Dir)?;
        let m = inode.meta.read();
        Ok(inode.attr(&m))
    }

    /// Create a node: regular file, fifo, socket, character or block device (`mknod(2)`).
    /// `mode` holds the type bits and the permission bits; `rdev` the device number.
    ///
    /// # Errors
    /// `Perm` for a directory type or (with permission checks) a device node made by a non-root
    /// caller, `Invalid` for an unknown type, and as [`Filesystem::create`].
    pub fn mknod(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32, rdev: u64) -> Result<Attr> {
        let kind = if mode & libc::S_IFMT == 0 {
            FileKind::RegularFile
        } else {
            FileKind::from_mode(mode).ok_or(FsError::Invalid)?
        };
        let new = match kind {
            FileKind::RegularFile => NewKind::File,
            FileKind::Directory => return Err(FsError::Perm),
            FileKind::Symlink => return Err(FsError::Invalid),
            FileKind::CharDevice | FileKind::BlockDevice => {
                if self.config.enforce_permissions && !ctx.is_root() {
                    return Err(FsError::Perm);
                }
                NewKind::Special(kind, rdev)
            }
            FileKind::NamedPipe | FileKind::Socket => NewKind::Special(kind, 0),
        };
        let inode = self.create_inode(ctx, parent, name.as_bytes(), mode & 0o7777, new)?;
        let m = inode.meta.read();
        Ok(inode.attr(&m))
    }

    /// Create a symbolic link to `target` (up to 4095 bytes).
    ///
    /// # Errors
    /// `NameTooLong` for a long target, `NotFound` for an empty one, and as [`Filesystem::create`].
    pub fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr> {
        let target = target.as_bytes();
        name::check_symlink_target(target)?;
        // Symlinks are always 0777: the umask does not apply to them (as Linux).
        let no_umask = Ctx {
            umask: 0,
            ..ctx.clone()
        };
        let inode = self.create_inode(&no_umask, parent, name.as_bytes(), 0o777, NewKind::Symlink(target))?;
        let m = inode.meta.read();
        Ok(inode.attr(&m))
    }

    /// The target of a symbolic link.
    ///
    /// # Errors
    /// `Invalid` if the inode is not a symlink, `NotFound`.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        match &inode.body {
            Body::Symlink(t) => Ok(t.to_vec()),
            _ => Err(FsError::Invalid),
        }
    }

    /// Make `new_name` in `new_parent` another name of inode `ino` (`link(2)`); links an
    /// anonymous (`O_TMPFILE`) file into the namespace.
    ///
    /// # Errors
    /// `Perm` for a directory, `NotFound` for an unlinked (non-anonymous) inode, `Exists`,
    /// `TooManyLinks`, `NoSpace` (each extra link costs inode space, as tmpfs), name and
    /// permission errors.
    pub fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<Attr> {
        let _gate = self.change_gate();
        self.check_writable()?;
        let new_name = new_name.as_bytes();
        name::check_new(new_name)?;
        let inode = self.inode(ino)?;
        let dir_inode = self.inode(new_parent)?;
        let body = dir_inode.dir().ok_or(FsError::NotDir)?;
        // As the VFS: search permission to look the name up, write permission (and no
        // immutable flag) only once it is known to be new (may_create).
        self.check_perm(ctx, &dir_inode, access::X_OK)?;
        let mut d = body.entries.write();
        if d.removed {
            return Err(FsError::NotFound);
        }
        // The new name is looked up before vfs_link refuses a directory.
        if d.get(new_name).is_some() {
            return Err(FsError::Exists);
        }
        self.check_perm(ctx, &dir_inode, access::W_OK | access::X_OK)?;
        if inode.kind == FileKind::Directory {
            return Err(FsError::Perm);
        }
        // The walking snapshot's pre-images: the inode (link count, ctime), the directory.
        self.snap_meta(&inode);
        self.snap_entries(&dir_inode, &d);
        self.snap_meta(&dir_inode);
        let now = Timespec::now();
        {
            let mut m = inode.meta.write();
            // vfs_link: an immutable or append-only inode gets no new name.
            m.check_no_fixed_flags()?;
            if m.released || (m.nlink == 0 && !m.linkable) {
                return Err(FsError::NotFound);
            }
            if m.nlink == u32::MAX {
                return Err(FsError::TooManyLinks);
            }
            if m.nlink > 0 {
                self.ispace.charge(BOGO_INODE_SIZE)?;
            }
            m.nlink += 1;
            m.linkable = false;
            m.ctime = now;
            self.add_lookup(&mut m);
        }
        body.insert(&mut d, new_name, inode.ino, inode.kind);
        touch_dir(&dir_inode, now);
        drop(d);
        let m = inode.meta.read();
        Ok(inode.attr(&m))
    }

    /// Remove the name `name` of a non-directory from `parent`.
    ///
    /// # Errors
    /// `IsDir` for a directory (and for `.`/`..`), `NotFound`, `Perm` (sticky directory),
    /// `Access`, `ReadOnly`.
    pub fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> Result<()> {
        let _gate = self.change_gate();
        self.check_writable()?;
        let name = name.as_bytes();
        if name::check(name)? != NameKind::Normal {
            return Err(FsError::IsDir);
        }
        let dir_inode = self.inode(parent)?;
        let body = dir_inode.dir().ok_or(FsError::NotDir)?;
        self.check_perm(ctx, &dir_inode, access::X_OK)?;
        let mut d = body.entries.write();
        let e = d.get(name).ok_or(FsError::NotFound)?;
        // may_delete's order: the name exists, then write permission and the flags of the
        // directory and the victim, then the victim's type.
        self.check_perm(ctx, &dir_inode, access::W_OK | access::X_OK)?;
        let child = self.inode(e.ino)?;
        self.check_sticky(ctx, &dir_inode, &child)?;
        if e.kind == FileKind::Directory {
            return Err(FsError::IsDir);
        }
        self.snap_entries(&dir_inode, &d);
        self.snap_meta(&dir_inode);
        self.snap_meta(&child);
        body.remove(&mut d, name);
        let now = Timespec::now();
        touch_dir(&dir_inode, now);
        self.drop_link(&child, now);
        drop(d);
        self.maybe_release(&child);
        Ok(())
    }

    /// Remove the empty directory `name` from `parent`.
    ///
    /// # Errors
    /// `NotDir`, `NotEmpty` (also for `..`), `Invalid` for `.`, `NotFound`, `Perm`, `Access`,
    /// `ReadOnly`.
    pub fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> Result<()> {
        let _gate = self.change_gate();
        self.check_writable()?;
        let name = name.as_bytes();
        match name::check(name)? {
            NameKind::Dot => return Err(FsError::Invalid),
            NameKind::DotDot => return Err(FsError::NotEmpty),
            NameKind::Normal => {}
        }
        let dir_inode = self.inode(parent)?;
        let body = dir_inode.dir().ok_or(FsError::NotDir)?;
        self.check_perm(ctx, &dir_inode, access::X_OK)?;
        let mut d = body.entries.write();
        let e = d.get(name).ok_or(FsError::NotFound)?;
        // may_delete's order, as in `unlink`.
        self.check_perm(ctx, &dir_inode, access::W_OK | access::X_OK)?;
        let child = self.inode(e.ino)?;
        self.check_sticky(ctx, &dir_inode, &child)?;
        if e.kind != FileKind::Directory {
            return Err(FsError::NotDir);
        }
        let child_body = child.dir().ok_or(FsError::NotDir)?;
        // Parent before child: the nested directory order.
        let mut cd = child_body.entries.write_nested();
        if !cd.is_empty() {
            return Err(FsError::NotEmpty);
        }
        // The child's entries do not change (none; `removed` is not in an image).
        self.snap_entries(&dir_inode, &d);
        self.snap_meta(&dir_inode);
        self.snap_meta(&child);
        cd.removed = true;
        drop(cd);
        body.remove(&mut d, name);
        let now = Timespec::now();
        {
            let mut pm = dir_inode.meta.write();
            pm.nlink -= 1;
            pm.mtime = now;
            pm.ctime = now;
        }
        {
            let mut cm = child.meta.write();
            cm.nlink = 0;
            cm.ctime = now;
        }
        drop(d);
        self.maybe_release(&child);
        Ok(())
    }

    // ----- helpers -----

    /// Create an inode of `kind` named `name` in `parent`, all or nothing.
    fn create_inode(&self, ctx: &Ctx, parent: Ino, name: &[u8], mode: u32, kind: NewKind<'_>) -> Result<Arc<Inode>> {
        let _gate = self.change_gate();
        self.check_writable()?;
        name::check_new(name)?;
        let dir_inode = self.inode(parent)?;
        let body = dir_inode.dir().ok_or(FsError::NotDir)?;
        // As the VFS: an existing name is EEXIST whatever the write permission (may_create
        // comes after the lookup).
        self.check_perm(ctx, &dir_inode, access::X_OK)?;
        let mut d = body.entries.write();
        if d.removed {
            return Err(FsError::NotFound);
        }
        if d.get(name).is_some() {
            return Err(FsError::Exists);
        }
        self.check_perm(ctx, &dir_inode, access::W_OK | access::X_OK)?;
        let is_dir = matches!(kind, NewKind::Dir);
        if is_dir && dir_inode.meta.read().nlink == u32::MAX {
            return Err(FsError::TooManyLinks);
        }
        self.snap_entries(&dir_inode, &d);
        self.snap_meta(&dir_inode);
        self.ispace.charge(BOGO_INODE_SIZE)?;
        let inode = self.build_inode(ctx, &dir_inode, mode, &kind);
        self.snap_born(&inode);
        self.table.insert(inode.clone());
        self.live_inodes.add(1);
        body.insert(&mut d, name, inode.ino, inode.kind);
        let now = inode.meta.read().ctime;
        {
            let mut pm = dir_inode.meta.write();
            if is_dir {
                pm.nlink += 1;
            }
            pm.mtime = now;
            pm.ctime = now;
        }
        Ok(inode)
    }

    fn build_inode(&self, ctx: &Ctx, dir_inode: &Inode, mode: u32, kind: &NewKind<'_>) -> Arc<Inode> {
        let is_dir = matches!(kind, NewKind::Dir);
        let (perm, gid, acls) = {
            let pm = dir_inode.meta.read();
            let (perm, gid, acls) = self.new_owner(ctx, &pm, mode, is_dir);
            if matches!(kind, NewKind::Symlink(_)) {
                // Symlinks keep their 0777 and take no ACLs (tmpfs's symlink path has no
                // posix_acl_create).
                (mode, gid, Vec::new())
            } else {
                (perm, gid, acls)
            }
        };
        let ino = self.alloc_ino();
        let nlink = if is_dir { 2 } else { 1 };
        let mut meta = Meta::new(perm, ctx.uid, gid, nlink, Timespec::now());
        set_inherited_acls(&mut meta, acls);
        self.add_lookup(&mut meta);
        let generation = self.generation;
        match kind {
            NewKind::File => Arc::new_cyclic(|me| {
                Inode::new(
                    ino,
                    generation,
                    FileKind::RegularFile,
                    meta,
                    Body::File(FileData::new(ino.0, me.clone())),
                )
            }),
            NewKind::Dir => Arc::new(Inode::new(
                ino,
                generation,
                FileKind::Directory,
                meta,
                Body::Dir(DirBody::new(dir_inode.ino)),
            )),
            NewKind::Symlink(t) => Arc::new(Inode::new(
                ino,
                generation,
                FileKind::Symlink,
                meta,
                Body::Symlink((*t).into()),
            )),
            NewKind::Special(k, rdev) => {
                meta.rdev = *rdev;
                Arc::new(Inode::new(ino, generation, *k, meta, Body::Special))
            }
        }
    }

    /// Permission bits, group and inherited ACLs of a new inode: the umask applied, or, below a
    /// directory with a default ACL, the mode masked by that ACL instead (`posix_acl_create`);
    /// below a set-group-ID directory the directory's group (and, for directories, the bit
    /// itself) is inherited; a non-directory keeps set-group-ID only if the caller belongs to
    /// its group (`mode_strip_sgid`).
    fn new_owner(&self, ctx: &Ctx, parent: &Meta, mode: u32, is_dir: bool) -> (u32, u32, InheritedAcls) {
        // mkdir keeps only the permission and sticky bits of the mode (vfs_mkdir); set-group-ID
        // on a directory comes from its parent alone.
        let allowed = if is_dir { 0o1777 } else { 0o7777 };
        let (perm, acls) = crate::acl::inherit(&parent.xattrs, mode & allowed, ctx.umask, is_dir);
        let mut perm = perm & allowed;
        let gid = if parent.perm & libc::S_ISGID != 0 {
            if is_dir {
                perm |= libc::S_ISGID;
            }
            parent.gid
        } else {
            ctx.gid
        };
        if !is_dir
            && perm & libc::S_ISGID != 0
            && perm & 0o010 != 0
            && !ctx.is_root()
            && !ctx.in_group(gid)
            && self.config.enforce_permissions
        {
            perm &= !libc::S_ISGID;
        }
        (perm, gid, acls)
    }

    /// One name of `child` went away: count it down, charge back the link's inode space (the
    /// last link's space goes at release, as tmpfs), and update ctime.
    pub(crate) fn drop_link(&self, child: &Inode, now: Timespec) {
        let mut m = child.meta.write();
        if child.kind == FileKind::Directory {
            m.nlink = 0;
        } else {
            if m.nlink > 1 {
                self.ispace.uncharge(BOGO_INODE_SIZE);
            }
            m.nlink = m.nlink.saturating_sub(1);
        }
        m.ctime = now;
    }

    /// `access(2)`-style check of `mask` on `inode`. Write access to an immutable inode is
    /// `Perm` whatever the permission checks (Linux `inode_permission`): an immutable directory
    /// takes no new or removed entries.
    pub(crate) fn check_perm(&self, ctx: &Ctx, inode: &Inode, mask: u32) -> Result<()> {
        if mask & access::W_OK != 0 {
            inode.meta.read().check_not_immutable()?;
        }
        if !self.config.enforce_permissions {
            // Lookups (X_OK) over FUSE take no lock here.
            return Ok(());
        }
        let m = inode.meta.read();
        crate::acl::check(ctx, inode.owner(&m), &m.xattrs, mask)
    }

    /// Whether `child` may be removed from `dir` (or renamed out of it), as Linux's
    /// `may_delete`: not from an append-only directory, not an immutable or append-only child,
    /// and the sticky-bit rule.
    pub(crate) fn check_sticky(&self, ctx: &Ctx, dir: &Inode, child: &Inode) -> Result<()> {
        if dir.meta.read().flags & crate::file_flags::APPEND != 0 {
            return Err(FsError::Perm);
        }
        child.meta.read().check_no_fixed_flags()?;
        if !self.config.enforce_permissions {
            return Ok(());
        }
        let dir_owner = {
            let m = dir.meta.read();
            dir.owner(&m)
        };
        let child_owner = {
            let m = child.meta.read();
            child.owner(&m)
        };
        perm::check_sticky(ctx, dir_owner, child_owner)
    }
}

/// Update a directory's mtime and ctime after its entries changed.
pub(crate) fn touch_dir(dir: &Inode, now: Timespec) {
    let mut m = dir.meta.write();
    m.mtime = now;
    m.ctime = now;
}

/// Store inherited ACLs on a new inode's metadata (never charged inode space: see
/// [`crate::acl`]).
fn set_inherited_acls(meta: &mut Meta, acls: InheritedAcls) {
    for (name, value) in acls {
        meta.xattrs.insert(name.into(), value.into());
    }
}
