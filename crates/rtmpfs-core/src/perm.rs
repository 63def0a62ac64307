//! Permission checks against a caller's credentials, as Linux's `generic_permission`,
//! `may_delete` (sticky bit) and `setattr_prepare`.
//!
//! Only used when [`crate::Config::enforce_permissions`] is on; over FUSE the kernel does these
//! checks (`default_permissions`) with the caller's real supplementary groups.

use crate::error::{FsError, Result};
use crate::types::{access, Ctx};

/// Mode bits and owners of an inode, copied out of its metadata for a check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub is_dir: bool,
}

/// `access(2)`-style check of `mask` (`R_OK|W_OK|X_OK`).
///
/// Root may read and write anything and execute anything with an x bit set (or any directory),
/// as with `CAP_DAC_OVERRIDE`.
pub(crate) fn check(ctx: &Ctx, o: Owner, mask: u32) -> Result<()> {
    let mask = mask & 7;
    if ctx.is_root() {
        if mask & access::X_OK != 0 && !o.is_dir && o.perm & 0o111 == 0 {
            return Err(FsError::Access);
        }
        return Ok(());
    }
    let bits = if ctx.uid == o.uid {
        (o.perm >> 6) & 7
    } else if ctx.in_group(o.gid) {
        (o.perm >> 3) & 7
    } else {
        o.perm & 7
    };
    if bits & mask == mask {
        Ok(())
    } else {
        Err(FsError::Access)
    }
}

/// The sticky-bit rule for removing or renaming `child` out of `dir`: in a sticky directory only
/// the owner of the entry, the owner of the directory, or root may do it.
pub(crate) fn check_sticky(ctx: &Ctx, dir: Owner, child: Owner) -> Result<()> {
    if dir.perm & libc::S_ISVTX == 0 || ctx.is_root() || ctx.uid == child.uid || ctx.uid == dir.uid {
        Ok(())
    } else {
        Err(FsError::Perm)
    }
}

/// Whether the caller owns the inode or is root (`inode_owner_or_capable`).
pub(crate) fn is_owner_or_root(ctx: &Ctx, o: Owner) -> bool {
    ctx.is_root() || ctx.uid == o.uid
}

/// Which set-id bits a write or truncate by `ctx` must clear (Linux `should_remove_suid`):
/// set-user-ID always, set-group-ID when group-executable; never for a caller with
/// `CAP_FSETID`, and only on regular files.
pub(crate) fn setid_bits_to_kill_on_write(ctx: &Ctx, perm: u32, is_regular: bool) -> u32 {
    if ctx.has_fsetid() || !is_regular {
        return 0;
    }
    let mut kill = perm & libc::S_ISUID;
    if perm & libc::S_ISGID != 0 && perm & 0o010 != 0 {
        kill |= libc::S_ISGID;
    }
    kill
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(perm: u32, uid: u32, gid: u32) -> Owner {
        Owner {
            perm,
            uid,
            gid,
            is_dir: false,
        }
    }

    #[test]
    fn owner_group_other() {
        let o = owner(0o640, 10, 20);
        assert!(check(&Ctx::user(10, 99), o, access::R_OK | access::W_OK).is_ok());
        assert!(check(&Ctx::user(11, 20), o, access::R_OK).is_ok());
        assert_eq!(check(&Ctx::user(11, 20), o, access::W_OK), Err(FsError::Access));
        assert_eq!(check(&Ctx::user(11, 21), o, access::R_OK), Err(FsError::Access));
        let mut c = Ctx::user(11, 21);
        c.groups.push(20);
        assert!(check(&c, o, access::R_OK).is_ok());
        // Owner class applies even if it grants less than group.
        assert_eq!(
            check(&Ctx::user(10, 20), owner(0o070, 10, 20), access::R_OK),
            Err(FsError::Access)
        );
    }

    #[test]
    fn root_override() {
        assert!(check(&Ctx::root(), owner(0, 1, 1), access::R_OK | access::W_OK).is_ok());
        assert_eq!(
            check(&Ctx::root(), owner(0o600, 1, 1), access::X_OK),
            Err(FsError::Access)
        );
        assert!(check(&Ctx::root(), owner(0o001, 1, 1), access::X_OK).is_ok());
        assert!(check(
            &Ctx::root(),
            Owner {
                perm: 0,
                uid: 1,
                gid: 1,
                is_dir: true
            },
            access::X_OK
        )
        .is_ok());
    }

    #[test]
    fn sticky() {
        let dir = Owner {
            perm: 0o1777,
            uid: 1,
            gid: 1,
            is_dir: true,
        };
        assert!(check_sticky(&Ctx::user(5, 5), dir, owner(0o644, 5, 5)).is_ok());
        assert!(check_sticky(&Ctx::user(1, 5), dir, owner(0o644, 6, 5)).is_ok());
        assert_eq!(
            check_sticky(&Ctx::user(7, 5), dir, owner(0o644, 6, 5)),
            Err(FsError::Perm)
        );
    }

    #[test]
    fn kill_setid() {
        let u = Ctx::user(5, 5);
        assert_eq!(setid_bits_to_kill_on_write(&u, 0o4755, true), libc::S_ISUID);
        assert_eq!(setid_bits_to_kill_on_write(&u, 0o2755, true), libc::S_ISGID);
        assert_eq!(setid_bits_to_kill_on_write(&u, 0o2745, true), 0);
        assert_eq!(setid_bits_to_kill_on_write(&Ctx::root(), 0o6755, true), 0);
    }
}
