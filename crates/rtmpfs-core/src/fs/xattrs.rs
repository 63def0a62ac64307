//! Extended-attribute operations. Values count against inode space when `nr_inodes` is limited
//! (tmpfs charges `40 + name + value` bytes), so a full instance refuses new xattrs with
//! `NoSpace`.

use super::Filesystem;
use crate::error::{FsError, Result};
use crate::limits::xattr_space;
use crate::types::{access, Ctx, Ino, Timespec};
use crate::xattr::{self, XattrSetMode, XATTR_LIST_MAX};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

impl Filesystem {
    /// Set extended attribute `name` to `value`.
    ///
    /// # Errors
    /// `NotSupported` (unknown namespace), `Range` (name empty or over 255 bytes), `TooBig`
    /// (value over 64 KiB), `Exists`/`NoData` (create/replace), `Perm`/`Access`, `NoSpace`,
    /// `ReadOnly`, `NotFound`.
    pub fn setxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr, value: &[u8], mode: XattrSetMode) -> Result<()> {
        let _gate = self.change_gate();
        self.check_writable()?;
        let name = name.as_bytes();
        if let Some(kind) = crate::acl::AclKind::from_name(name) {
            // As Linux's ACL handler: XATTR_CREATE/XATTR_REPLACE do not apply.
            xattr::check_value(value)?;
            return self.set_acl(ctx, ino, kind, Some(value));
        }
        let ns = xattr::prefix_namespace(name)?;
        xattr::check_value(value)?;
        let inode = self.inode(ino)?;
        self.snap_meta(&inode);
        // xattr_permission: an immutable or append-only inode's xattrs do not change.
        inode.meta.read().check_no_fixed_flags()?;
        xattr::namespace_permission(ctx, ns, inode.kind, true)?;
        xattr::check_name(name, ns)?;
        let mut m = inode.meta.write();
        if m.released {
            // Released (reached through an `Arc` taken before it left the table): nothing may
            // be charged to it, since nothing would give the space back.
            return Err(FsError::NotFound);
        }
        if self.config.enforce_permissions {
            crate::acl::check(ctx, inode.owner(&m), &m.xattrs, access::W_OK)?;
        }
        let old = m.xattrs.get(name).map(|v| v.len());
        let limited = self.ispace.max().is_some();
        let new_space = if limited {
            xattr_space(name.len(), value.len())
        } else {
            0
        };
        let old_space = if limited {
            old.map_or(0, |len| xattr_space(name.len(), len))
        } else {
            0
        };
        // tmpfs charges the new value's inode space before it looks for the old one, so a full
        // instance says ENOSPC even where EEXIST/ENODATA would follow.
        if new_space > 0 {
            self.ispace.charge(new_space)?;
        }
        let refuse = match (mode, old) {
            (XattrSetMode::Create | XattrSetMode::CreateAndReplace, Some(_)) => Some(FsError::Exists),
            (XattrSetMode::Replace | XattrSetMode::CreateAndReplace, None) => Some(FsError::NoData),
            _ => None,
        };
        if let Some(e) = refuse {
            if new_space > 0 {
                self.ispace.uncharge(new_space);
            }
            return Err(e);
        }
        if old_space > 0 {
            self.ispace.uncharge(old_space);
        }
        m.xattr_space = m.xattr_space + new_space - old_space;
        m.xattrs.insert(name.into(), value.into());
        m.ctime = Timespec::now();
        Ok(())
    }

    /// The value of extended attribute `name`.
    ///
    /// # Errors
    /// `NoData` if absent, `NotSupported`, `Range`, `Access`, `NotFound`.
    pub fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let name = name.as_bytes();
        if let Some(kind) = crate::acl::AclKind::from_name(name) {
            return self.get_acl(ino, kind);
        }
        let ns = xattr::prefix_namespace(name)?;
        let inode = self.inode(ino)?;
        xattr::namespace_permission(ctx, ns, inode.kind, false)?;
        xattr::check_name(name, ns)?;
        let m = inode.meta.read();
        if self.config.enforce_permissions {
            crate::acl::check(ctx, inode.owner(&m), &m.xattrs, access::R_OK)?;
        }
        m.xattrs.get(name).map(|v| v.to_vec()).ok_or(FsError::NoData)
    }

    /// Every attribute name visible to the caller, each followed by a NUL (`listxattr(2)`
    /// with the largest buffer it takes).
    ///
    /// # Errors
    /// `TooBig` past 64 KiB of names (`XATTR_LIST_MAX`), `NotFound`.
    pub fn listxattr(&self, ctx: &Ctx, ino: Ino) -> Result<Vec<u8>> {
        let out = self.listxattr_unbounded(ctx, ino)?;
        if out.len() > XATTR_LIST_MAX {
            return Err(FsError::TooBig);
        }
        Ok(out)
    }

    /// The length of [`Filesystem::listxattr`]'s list, even past 64 KiB: `listxattr(2)` with
    /// size 0 answers it so on Linux (only the call that then asks for the list fails).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn listxattr_len(&self, ctx: &Ctx, ino: Ino) -> Result<usize> {
        Ok(self.listxattr_unbounded(ctx, ino)?.len())
    }

    fn listxattr_unbounded(&self, ctx: &Ctx, ino: Ino) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        let m = inode.meta.read();
        let mut out = Vec::new();
        for name in m.xattrs.keys().filter(|n| xattr::visible_in_list(ctx, n)) {
            out.extend_from_slice(name);
            out.push(0);
        }
        Ok(out)
    }

    /// Remove extended attribute `name`.
    ///
    /// # Errors
    /// `NoData` if absent, and as [`Filesystem::setxattr`].
    pub fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> Result<()> {
        let _gate = self.change_gate();
        self.check_writable()?;
        let name = name.as_bytes();
        if let Some(kind) = crate::acl::AclKind::from_name(name) {
            return self.set_acl(ctx, ino, kind, None);
        }
        let ns = xattr::prefix_namespace(name)?;
        let inode = self.inode(ino)?;
        self.snap_meta(&inode);
        // xattr_permission: an immutable or append-only inode's xattrs do not change.
        inode.meta.read().check_no_fixed_flags()?;
        xattr::namespace_permission(ctx, ns, inode.kind, true)?;
        xattr::check_name(name, ns)?;
        let mut m = inode.meta.write();
        if self.config.enforce_permissions {
            crate::acl::check(ctx, inode.owner(&m), &m.xattrs, access::W_OK)?;
        }
        let old = m.xattrs.remove(name).ok_or(FsError::NoData)?;
        if self.ispace.max().is_some() {
            let space = xattr_space(name.len(), old.len());
            self.ispace.uncharge(space);
            m.xattr_space -= space;
        }
        m.ctime = Timespec::now();
        Ok(())
    }
}

/// Fit an xattr reply into a caller's buffer size, as `getxattr(2)`/`listxattr(2)`: size 0
/// asks for the length; a smaller buffer is `Range`.
///
/// # Errors
/// `Range` when `size` is non-zero and smaller than `len`.
pub fn fit_xattr_reply(len: usize, size: usize) -> Result<XattrFit> {
    if size == 0 {
        Ok(XattrFit::Size(len))
    } else if len > size {
        Err(FsError::Range)
    } else {
        Ok(XattrFit::Data)
    }
}

/// How to answer a sized xattr request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrFit {
    /// Reply with this length only.
    Size(usize),
    /// Reply with the data.
    Data,
}
