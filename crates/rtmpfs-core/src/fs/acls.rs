//! Setting and reading POSIX ACLs (`system.posix_acl_access`/`_default`), as Linux's
//! `vfs_set_acl` → `set_posix_acl` → `simple_set_acl` on tmpfs. See [`crate::acl`] for the
//! format and the stored invariants.

use super::Filesystem;
use crate::acl::{Acl, AclKind};
use crate::error::{FsError, Result};
use crate::perm;
use crate::types::{Ctx, FileKind, Ino, Timespec};

impl Filesystem {
    /// Set (`Some(value)`, an xattr value) or remove (`None`, or a value with no entries) the
    /// ACL of `kind` on `ino`. An access ACL equivalent to the mode is not stored: the mode
    /// takes its bits (`posix_acl_update_mode`); setting or removing an access ACL drops
    /// set-group-ID when the caller is neither in the file's group nor holds `CAP_FSETID`.
    /// Removing an ACL that is not there succeeds, as on Linux.
    pub(super) fn set_acl(&self, ctx: &Ctx, ino: Ino, kind: AclKind, value: Option<&[u8]>) -> Result<()> {
        let acl = match value {
            Some(v) => Acl::from_xattr(v)?,
            None => None,
        };
        let inode = self.inode(ino)?;
        self.snap_meta(&inode);
        if inode.kind == FileKind::Symlink {
            // tmpfs symlinks have no ACL operations.
            return Err(FsError::NotSupported);
        }
        let mut m = inode.meta.write();
        // may_write_xattr: an immutable or append-only inode's ACLs do not change.
        m.check_no_fixed_flags()?;
        if kind == AclKind::Default && inode.kind != FileKind::Directory {
            return if acl.is_some() { Err(FsError::Access) } else { Ok(()) };
        }
        if self.config.enforce_permissions && !perm::is_owner_or_root(ctx, inode.owner(&m)) {
            return Err(FsError::Perm);
        }
        // set_posix_acl validates last: a default ACL on a file is EACCES even when invalid.
        if let Some(a) = &acl {
            a.validate()?;
        }
        if m.released {
            return Err(FsError::NotFound);
        }
        let mut keep = acl;
        if kind == AclKind::Access {
            if let Some(a) = &keep {
                let (mode, not_equiv) = a.equiv_mode(m.perm);
                m.perm = mode;
                if !not_equiv {
                    keep = None;
                }
            }
            if m.perm & libc::S_ISGID != 0 && !(ctx.in_group(m.gid) || ctx.has_fsetid()) {
                m.perm &= !libc::S_ISGID;
            }
        }
        match keep {
            Some(a) => {
                m.xattrs.insert(kind.name().into(), a.to_xattr().into());
            }
            None => {
                m.xattrs.remove(kind.name());
            }
        }
        m.ctime = Timespec::now();
        Ok(())
    }

    /// The stored ACL of `kind` as an xattr value. Reading an ACL needs no permission (as
    /// Linux's `vfs_get_acl`).
    ///
    /// # Errors
    /// `NoData` when there is none, `NotFound`.
    pub(super) fn get_acl(&self, ino: Ino, kind: AclKind) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        let m = inode.meta.read();
        m.xattrs.get(kind.name()).map(|v| v.to_vec()).ok_or(FsError::NoData)
    }

    /// After a chmod to `perm`, keep a stored access ACL's owner, mask (or group) and other
    /// entries in step with the mode (`posix_acl_chmod`).
    pub(super) fn chmod_acl(m: &mut crate::inode::Meta, perm: u32) {
        if let Some(mut a) = crate::acl::stored(&m.xattrs, AclKind::Access) {
            a.chmod(perm);
            m.xattrs.insert(AclKind::Access.name().into(), a.to_xattr().into());
        }
    }
}
