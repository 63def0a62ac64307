//! Permission checks against a caller's credentials, as Linux's `generic_permission`,
//! `may_delete` (sticky bit) and `setattr_prepare`.
//!
//! Only used when [`crate::Config::enforce_permissions`] is on; over FUSE the kernel does these
//! checks (`default_permissions`) with the caller's real supplementary groups.

use crate::error::{FsError, Result};
use crate::types::{access, Ctx, SetIdClearing};

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

/// Which set-id bits a write or truncate by `ctx` must clear from a file with mode `perm` and
/// group `gid` (Linux `setattr_should_drop_suidgid`): set-user-ID always, set-group-ID as
/// [`sgid_to_drop`] says; never for a caller with `CAP_FSETID`, never when the kernel has
/// done the clearing ([`SetIdClearing::Kernel`]), and only on regular files.
pub(crate) fn setid_bits_to_kill_on_write(
    ctx: &Ctx,
    clearing: SetIdClearing,
    perm: u32,
    gid: u32,
    is_regular: bool,
) -> u32 {
    if keeps_setid(ctx, clearing) || !is_regular {
        return 0;
    }
    (perm & libc::S_ISUID) | sgid_to_drop(ctx, clearing, perm, gid)
}

/// Whether the engine's privilege rule keeps set-id bits: the caller holds `CAP_FSETID`, or
/// the kernel has decided already ([`SetIdClearing::Kernel`]), which the engine treats as the
/// privileged case: it clears only what it clears whoever asks.
fn keeps_setid(ctx: &Ctx, clearing: SetIdClearing) -> bool {
    clearing == SetIdClearing::Kernel || ctx.has_fsetid()
}

/// Whether set-group-ID must go (Linux `setattr_should_drop_sgid`): `S_ISGID` when the file is
/// group-executable, or when the caller is neither in the file's group `gid` nor holds
/// `CAP_FSETID`; else 0. (Without group-execute the bit means mandatory locking, which only a
/// member of the group may keep on a file it changes.)
pub(crate) fn sgid_to_drop(ctx: &Ctx, clearing: SetIdClearing, perm: u32, gid: u32) -> u32 {
    let group_exec = perm & 0o010 != 0;
    if perm & libc::S_ISGID != 0 && (group_exec || !(ctx.in_group(gid) || keeps_setid(ctx, clearing))) {
        libc::S_ISGID
    } else {
        0
    }
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
        assert_eq!(
            setid_bits_to_kill_on_write(&u, SetIdClearing::Engine, 0o4755, 5, true),
            libc::S_ISUID
        );
        assert_eq!(
            setid_bits_to_kill_on_write(&u, SetIdClearing::Engine, 0o2755, 5, true),
            libc::S_ISGID
        );
        assert_eq!(
            setid_bits_to_kill_on_write(&u, SetIdClearing::Engine, 0o2745, 5, true),
            0
        );
        assert_eq!(
            setid_bits_to_kill_on_write(&Ctx::root(), SetIdClearing::Engine, 0o6755, 5, true),
            0
        );
        // A caller outside the file's group loses set-group-ID even without group-execute.
        assert_eq!(
            setid_bits_to_kill_on_write(&u, SetIdClearing::Engine, 0o6666, 0, true),
            0o6000
        );
        assert_eq!(
            setid_bits_to_kill_on_write(&u, SetIdClearing::Engine, 0o2666, 0, true),
            libc::S_ISGID
        );
        assert_eq!(
            setid_bits_to_kill_on_write(&u, SetIdClearing::Engine, 0o6666, 5, true),
            libc::S_ISUID
        );
        let mut member = Ctx::user(5, 5);
        member.groups.push(0);
        assert_eq!(
            setid_bits_to_kill_on_write(&member, SetIdClearing::Engine, 0o2666, 0, true),
            0
        );
        assert_eq!(
            setid_bits_to_kill_on_write(&Ctx::root(), SetIdClearing::Engine, 0o2666, 7, true),
            0
        );
        // The kernel's clearing leaves the engine nothing to do, whoever the caller.
        assert_eq!(
            setid_bits_to_kill_on_write(&u, SetIdClearing::Kernel, 0o6777, 5, true),
            0
        );
        // ... but chown's group-executable set-group-ID still goes (as for a privileged caller).
        assert_eq!(sgid_to_drop(&u, SetIdClearing::Kernel, 0o2775, 5), libc::S_ISGID);
        assert_eq!(sgid_to_drop(&u, SetIdClearing::Kernel, 0o2765, 5), 0);
    }
}
