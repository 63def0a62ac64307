//! Attributes: getattr, setattr, file flags, privilege removal, access checks.

use super::{file_flags, Filesystem};
use crate::error::{FsError, Result};
use crate::inode::{Inode, Meta};
use crate::perm;
use crate::types::{access, Attr, Ctx, FileKind, Ino, SetAttr, SetIdClearing, SetTime, Timespec};

impl Filesystem {
    /// Attributes of an inode.
    ///
    /// # Errors
    /// `NotFound` if the inode does not exist (any more).
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let inode = self.inode(ino)?;
        let m = inode.meta.read();
        Ok(inode.attr(&m))
    }

    /// What Linux's `file_remove_privs` does for `ctx` on `ino`: clear set-user-ID and, when
    /// group-executable, set-group-ID of a regular file unless `ctx` holds `CAP_FSETID`, and
    /// drop `security.capability`; ctime becomes now. No permission is needed: the caller is
    /// changing the file by other means it was allowed. (A FUSE server under
    /// `FUSE_HANDLE_KILLPRIV_V2` receives this as a SETATTR that sets nothing.)
    ///
    /// # Errors
    /// `ReadOnly`, `NotFound`.
    pub fn remove_privs(&self, ctx: &Ctx, ino: Ino) -> Result<Attr> {
        let _gate = self.change_gate();
        self.check_writable()?;
        let inode = self.inode(ino)?;
        self.snap_meta(&inode);
        let mut m = inode.meta.write();
        let is_regular = inode.kind == FileKind::RegularFile;
        m.perm &= !perm::setid_bits_to_kill_on_write(ctx, SetIdClearing::Engine, m.perm, m.gid, is_regular);
        self.kill_priv(&mut m);
        m.ctime = Timespec::now();
        Ok(inode.attr(&m))
    }

    /// The file flags of an inode ([`file_flags`] bits; `lsattr`).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn file_flags(&self, ino: Ino) -> Result<u32> {
        Ok(self.inode(ino)?.meta.read().flags)
    }

    /// Set the file flags of an inode (`chattr`), with Linux's rules: only the owner or root may,
    /// and only root (`CAP_LINUX_IMMUTABLE`) may set or clear immutable and append-only; ctime
    /// becomes now.
    ///
    /// # Errors
    /// `NotSupported` for a flag tmpfs does not support, `Perm`, `ReadOnly`, `NotFound`.
    pub fn set_file_flags(&self, ctx: &Ctx, ino: Ino, flags: u32) -> Result<Attr> {
        let _gate = self.change_gate();
        self.check_writable()?;
        let inode = self.inode(ino)?;
        self.snap_meta(&inode);
        if flags & !file_flags::SUPPORTED != 0 {
            return Err(FsError::NotSupported);
        }
        let mut m = inode.meta.write();
        if !perm::is_owner_or_root(ctx, inode.owner(&m)) {
            return Err(FsError::Perm);
        }
        let fixed = file_flags::IMMUTABLE | file_flags::APPEND;
        if (m.flags ^ flags) & fixed != 0 && !ctx.is_root() {
            return Err(FsError::Perm);
        }
        m.flags = flags;
        m.ctime = Timespec::now();
        Ok(inode.attr(&m))
    }

    /// Change attributes, with Linux's rules: only the owner (or root) may chmod, chown to
    /// another user needs root, chgrp needs membership of the new group, explicit times need
    /// ownership, `UTIME_NOW` needs write permission; truncation needs write permission unless
    /// done through a handle (`fh`) open for writing. chown clears set-user-ID (and set-group-ID
    /// when group-executable) on non-directories; every call updates ctime.
    ///
    /// # Errors
    /// `Perm`/`Access` for permission failures, `IsDir`/`Invalid` for a size on a non-file,
    /// `FileTooBig`, `ReadOnly`, `NotFound`.
    pub fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<crate::Fh>) -> Result<Attr> {
        self.setattr_with(ctx, ino, set, fh, SetIdClearing::Engine)
    }

    /// As [`Filesystem::setattr`], with `clearing` saying whether the engine clears set-id bits
    /// on a truncate or chown or the client already has (see [`SetIdClearing`]).
    ///
    /// # Errors
    /// As [`Filesystem::setattr`].
    pub fn setattr_with(
        &self,
        ctx: &Ctx,
        ino: Ino,
        set: &SetAttr,
        fh: Option<crate::Fh>,
        clearing: SetIdClearing,
    ) -> Result<Attr> {
        let _gate = self.change_gate();
        self.check_writable()?;
        let inode = self.inode(ino)?;
        self.snap_meta(&inode);
        if set.size.is_some() {
            match inode.kind {
                FileKind::RegularFile => {}
                FileKind::Directory => return Err(FsError::IsDir),
                _ => return Err(FsError::Invalid),
            }
        }
        check_setattr_flags(&inode.meta.read(), set)?;
        let via_handle = match fh {
            Some(fh) => {
                let h = self.handles.get(fh)?;
                if h.inode.ino != ino {
                    return Err(FsError::BadHandle);
                }
                h.flags.write
            }
            None => false,
        };
        if self.config.enforce_permissions {
            let m = inode.meta.read();
            Self::check_setattr_permission(ctx, &inode, &m, set, via_handle)?;
        }
        let mut truncated = false;
        if let (Some(size), Some(file)) = (set.size, inode.file()) {
            let io = file.lock_io();
            truncated = truncation_stamps(size, file.size(), file.charged_pages(), fh.is_some() || set.open_trunc);
            // Even to the same size: pages reserved past EOF (fallocate KEEP_SIZE) go, as
            // shmem_setattr truncates the range whenever the size does not grow.
            file.truncate(&io, &self.mm, size)?;
        }
        let now = Timespec::now();
        let mut m = inode.meta.write();
        if truncated {
            m.mtime = now;
            m.perm &= !perm::setid_bits_to_kill_on_write(ctx, clearing, m.perm, m.gid, true);
            self.kill_priv(&mut m);
        }
        if let Some(mode) = set.mode {
            let mut mode = mode & 0o7777;
            let gid_after = set.gid.unwrap_or(m.gid);
            if self.config.enforce_permissions && !ctx.is_root() && !ctx.in_group(gid_after) {
                mode &= !libc::S_ISGID;
            }
            m.perm = mode;
            Self::chmod_acl(&mut m, mode);
        }
        if set.uid.is_some() || set.gid.is_some() {
            if inode.kind != FileKind::Directory {
                // chown_common: set-user-ID always, set-group-ID by setattr_should_drop_sgid.
                let kill = libc::S_ISUID | perm::sgid_to_drop(ctx, clearing, m.perm, m.gid);
                if set.mode.is_none() {
                    m.perm &= !kill;
                }
            }
            self.kill_priv(&mut m);
            if let Some(uid) = set.uid {
                m.uid = uid;
            }
            if let Some(gid) = set.gid {
                m.gid = gid;
            }
        }
        if let Some(t) = set.atime {
            m.atime = resolve_time(t, now);
        }
        if let Some(t) = set.mtime {
            m.mtime = resolve_time(t, now);
        }
        let only_unchanged_size = set.size.is_some()
            && !truncated
            && set.mode.is_none()
            && set.uid.is_none()
            && set.gid.is_none()
            && set.atime.is_none()
            && set.mtime.is_none()
            && set.ctime.is_none();
        if !only_unchanged_size {
            m.ctime = set.ctime.unwrap_or(now);
        }
        Ok(inode.attr(&m))
    }

    pub(super) fn check_setattr_permission(
        ctx: &Ctx,
        inode: &Inode,
        m: &Meta,
        set: &SetAttr,
        via_handle: bool,
    ) -> Result<()> {
        let owner = inode.owner(m);
        let is_owner = perm::is_owner_or_root(ctx, owner);
        if set.size.is_some() && !via_handle {
            crate::acl::check(ctx, owner, &m.xattrs, access::W_OK)?;
        }
        if set.mode.is_some() && !is_owner {
            return Err(FsError::Perm);
        }
        if let Some(uid) = set.uid {
            if !ctx.is_root() && (uid != m.uid || ctx.uid != m.uid) {
                return Err(FsError::Perm);
            }
        }
        if let Some(gid) = set.gid {
            if !ctx.is_root() && (ctx.uid != m.uid || (gid != m.gid && !ctx.in_group(gid))) {
                return Err(FsError::Perm);
            }
        }
        for t in [set.atime, set.mtime].into_iter().flatten() {
            match t {
                SetTime::At(_) if !is_owner => return Err(FsError::Perm),
                SetTime::Now if !is_owner => crate::acl::check(ctx, owner, &m.xattrs, access::W_OK)?,
                _ => {}
            }
        }
        if set.ctime.is_some() && !is_owner {
            return Err(FsError::Perm);
        }
        Ok(())
    }

    /// Check `access(2)`-style permission `mask` (`R_OK|W_OK|X_OK`, or `F_OK` = 0) for `ctx`.
    /// Always evaluated, whatever [`crate::Config::enforce_permissions`] says: answering is its job.
    ///
    /// # Errors
    /// `Access` when denied, `ReadOnly` for write access on a read-only instance, `NotFound`.
    pub fn access(&self, ctx: &Ctx, ino: Ino, mask: u32) -> Result<()> {
        let inode = self.inode(ino)?;
        if mask & access::W_OK != 0 && self.is_read_only() {
            return Err(FsError::ReadOnly);
        }
        let m = inode.meta.read();
        crate::acl::check(ctx, inode.owner(&m), &m.xattrs, mask)
    }
}

/// The file flags' refusals of a `setattr` (Linux `notify_change` and `do_truncate`): an
/// immutable inode takes no change at all; an append-only one no truncation and no explicit
/// mode, owner or time (only "times to now").
fn check_setattr_flags(m: &Meta, set: &SetAttr) -> Result<()> {
    m.check_not_immutable()?;
    let explicit_time = [set.atime, set.mtime]
        .into_iter()
        .flatten()
        .any(|t| matches!(t, SetTime::At(_)));
    let fixed = set.size.is_some()
        || set.mode.is_some()
        || set.uid.is_some()
        || set.gid.is_some()
        || set.ctime.is_some()
        || explicit_time;
    if fixed {
        m.check_no_fixed_flags()?;
    }
    Ok(())
}

/// Whether a truncation from `old` to `new` bytes stamps mtime and ctime (and clears set-id
/// bits and the capability), as on Linux tmpfs: when the size changes; `always` through a
/// handle (`ftruncate` passes ATTR_MTIME|ATTR_CTIME; over FUSE the kernel leaves that stamp to
/// the server when FATTR_FH is set) and for `open(O_TRUNC)`; and, to the same or a smaller
/// size, whenever the file has pages (`shmem_setattr` calls `shmem_truncate_range`, which
/// stamps, when `info->alloced`).
fn truncation_stamps(new: u64, old: u64, charged_pages: u64, always: bool) -> bool {
    new != old || always || charged_pages > 0
}

fn resolve_time(t: SetTime, now: Timespec) -> Timespec {
    match t {
        SetTime::Now => now,
        SetTime::At(ts) => ts,
    }
}
