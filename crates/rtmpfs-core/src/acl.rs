//! POSIX access control lists, as Linux tmpfs keeps them (`fs/posix_acl.c`).
//!
//! An ACL lives in the inode's xattr map under its `system.posix_acl_access` or
//! `system.posix_acl_default` name, in the kernel's `posix_acl_xattr` format (version 2,
//! little-endian; entries sorted by tag, named entries by id), always as [`Acl::to_xattr`] wrote
//! it. It is never charged inode space (tmpfs keeps ACLs beside the xattrs, not among them).
//! Invariant: a stored access ACL is never equivalent to the mode (`posix_acl_equiv_mode`):
//! such an ACL changes the mode and is dropped, so "has an access ACL" means "has named
//! entries or a mask".
//!
//! The ids in `ACL_USER`/`ACL_GROUP` entries are as the caller's namespace sees them; over FUSE
//! the kernel converts them (to the connection's namespace) before they arrive.

use crate::error::{FsError, Result};
use crate::perm::{self, Owner};
use crate::types::Ctx;
use crate::xattr::XattrMap;

/// Name of the access ACL attribute.
pub const ACCESS_NAME: &[u8] = b"system.posix_acl_access";
/// Name of the default ACL attribute (directories only).
pub const DEFAULT_NAME: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const UNDEFINED_ID: u32 = u32::MAX;
const HEADER: usize = 4;
const ENTRY: usize = 8;

/// Entry tags (`ACL_USER_OBJ` ...).
pub(crate) mod tag {
    pub const USER_OBJ: u16 = 0x01;
    pub const USER: u16 = 0x02;
    pub const GROUP_OBJ: u16 = 0x04;
    pub const GROUP: u16 = 0x08;
    pub const MASK: u16 = 0x10;
    pub const OTHER: u16 = 0x20;
}

/// Which of an inode's two ACLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AclKind {
    Access,
    Default,
}

impl AclKind {
    /// The ACL an xattr name stands for, if it is one of the two.
    pub(crate) fn from_name(name: &[u8]) -> Option<AclKind> {
        match name {
            ACCESS_NAME => Some(AclKind::Access),
            DEFAULT_NAME => Some(AclKind::Default),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static [u8] {
        match self {
            AclKind::Access => ACCESS_NAME,
            AclKind::Default => DEFAULT_NAME,
        }
    }
}

/// One ACL entry: tag, permission bits (`rwx` as 4/2/1), and the id of a named entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// A parsed ACL, entries in the order they came (valid ones are sorted by tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Acl {
    pub entries: Vec<Entry>,
}

impl Acl {
    /// Parse an xattr value (`posix_acl_from_xattr`). `Ok(None)` is a header with no entries,
    /// which asks for the ACL to be removed.
    ///
    /// # Errors
    /// `NotSupported` for another version, `Invalid` for a bad size or an unknown tag.
    pub(crate) fn from_xattr(value: &[u8]) -> Result<Option<Acl>> {
        if value.len() < HEADER {
            return Err(FsError::Invalid);
        }
        let version = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
        if version != VERSION {
            return Err(FsError::NotSupported);
        }
        let body = &value[HEADER..];
        if body.len() % ENTRY != 0 {
            return Err(FsError::Invalid);
        }
        if body.is_empty() {
            return Ok(None);
        }
        let mut entries = Vec::with_capacity(body.len() / ENTRY);
        for e in body.chunks_exact(ENTRY) {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            let perm = u16::from_le_bytes([e[2], e[3]]);
            let raw_id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            let id = match tag {
                tag::USER | tag::GROUP => raw_id,
                tag::USER_OBJ | tag::GROUP_OBJ | tag::MASK | tag::OTHER => UNDEFINED_ID,
                _ => return Err(FsError::Invalid),
            };
            entries.push(Entry { tag, perm, id });
        }
        Ok(Some(Acl { entries }))
    }

    /// The xattr value (`posix_acl_to_xattr`): unnamed entries carry `ACL_UNDEFINED_ID`.
    pub(crate) fn to_xattr(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            let id = if matches!(e.tag, tag::USER | tag::GROUP) {
                e.id
            } else {
                UNDEFINED_ID
            };
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// Linux's `posix_acl_valid`: permission bits within `rwx`; one `USER_OBJ`, named users,
    /// one `GROUP_OBJ`, named groups, a `MASK` (required when there are named entries), one
    /// `OTHER`, in that order; no unmapped id (`u32::MAX`).
    ///
    /// # Errors
    /// `Invalid`.
    pub(crate) fn validate(&self) -> Result<()> {
        // States as the kernel's: what may come next.
        #[derive(PartialEq)]
        enum State {
            UserObj,
            User,
            Group,
            Other,
            Done,
        }
        let mut state = State::UserObj;
        let mut needs_mask = false;
        for e in &self.entries {
            if e.perm & !7 != 0 {
                return Err(FsError::Invalid);
            }
            state = match (e.tag, state) {
                (tag::USER_OBJ, State::UserObj) => State::User,
                (tag::USER, State::User) if e.id != UNDEFINED_ID => {
                    needs_mask = true;
                    State::User
                }
                (tag::GROUP_OBJ, State::User) => State::Group,
                (tag::GROUP, State::Group) if e.id != UNDEFINED_ID => {
                    needs_mask = true;
                    State::Group
                }
                (tag::MASK, State::Group) => State::Other,
                (tag::OTHER, State::Other) => State::Done,
                (tag::OTHER, State::Group) if !needs_mask => State::Done,
                _ => return Err(FsError::Invalid),
            };
        }
        if state == State::Done {
            Ok(())
        } else {
            Err(FsError::Invalid)
        }
    }

    /// Linux's `posix_acl_equiv_mode`: the permission bits of `mode` the ACL stands for (the
    /// group class from the mask when there is one), and whether the ACL says more than the
    /// mode can (named entries or a mask).
    pub(crate) fn equiv_mode(&self, mode: u32) -> (u32, bool) {
        let mut bits = 0u32;
        let mut not_equiv = false;
        for e in &self.entries {
            let p = u32::from(e.perm) & 7;
            match e.tag {
                tag::USER_OBJ => bits |= p << 6,
                tag::GROUP_OBJ => bits |= p << 3,
                tag::OTHER => bits |= p,
                tag::MASK => {
                    bits = (bits & !0o070) | (p << 3);
                    not_equiv = true;
                }
                _ => not_equiv = true,
            }
        }
        ((mode & !0o777) | bits, not_equiv)
    }

    /// Linux's `posix_acl_create_masq`: restrict this (a copy of the parent's default ACL) by
    /// the creating `mode`, and `mode` by it. Returns the new mode and whether the ACL must be
    /// kept as the new inode's access ACL.
    pub(crate) fn create_masq(&mut self, mode: u32) -> (u32, bool) {
        let mut m = mode;
        let mut not_equiv = false;
        let mut group_obj = None;
        let mut mask_obj = None;
        for (i, e) in self.entries.iter_mut().enumerate() {
            match e.tag {
                tag::USER_OBJ => {
                    e.perm &= ((m >> 6) & 7) as u16;
                    m &= (u32::from(e.perm) << 6) | !0o700;
                }
                tag::USER | tag::GROUP => not_equiv = true,
                tag::GROUP_OBJ => group_obj = Some(i),
                tag::OTHER => {
                    e.perm &= (m & 7) as u16;
                    m &= u32::from(e.perm) | !0o007;
                }
                tag::MASK => {
                    mask_obj = Some(i);
                    not_equiv = true;
                }
                _ => {}
            }
        }
        // A valid ACL has a GROUP_OBJ; the group class is the mask when there is one.
        if let Some(i) = mask_obj.or(group_obj) {
            let e = &mut self.entries[i];
            e.perm &= ((m >> 3) & 7) as u16;
            m &= (u32::from(e.perm) << 3) | !0o070;
        }
        ((mode & !0o7777) | (m & 0o7777), not_equiv)
    }

    /// Linux's `__posix_acl_chmod`: after a chmod to `mode`, the owner and other entries and
    /// the group class (the mask if present, else the owning group entry) follow the mode.
    pub(crate) fn chmod(&mut self, mode: u32) {
        let has_mask = self.entries.iter().any(|e| e.tag == tag::MASK);
        for e in &mut self.entries {
            match e.tag {
                tag::USER_OBJ => e.perm = ((mode >> 6) & 7) as u16,
                tag::OTHER => e.perm = (mode & 7) as u16,
                tag::MASK => e.perm = ((mode >> 3) & 7) as u16,
                tag::GROUP_OBJ if !has_mask => e.perm = ((mode >> 3) & 7) as u16,
                _ => {}
            }
        }
    }

    /// Linux's `posix_acl_permission` for a caller who is not the owner (the owner class was
    /// decided from the mode bits by the caller, as `acl_permission_check` does): the first
    /// named user entry that matches, else the group entries (owning group and named groups:
    /// any matching one that grants all of `want`), limited by the mask; else other.
    pub(crate) fn permission(&self, ctx: &Ctx, owner: Owner, want: u32) -> Result<()> {
        let want = want & 7;
        let mask = self
            .entries
            .iter()
            .find(|e| e.tag == tag::MASK)
            .map_or(7, |e| u32::from(e.perm));
        let grants = |perm: u16| u32::from(perm) & want == want;
        let masked = |perm: u16| u32::from(perm) & mask & want == want;
        let mut found_group = false;
        for e in &self.entries {
            let matched = match e.tag {
                tag::USER_OBJ => {
                    if ctx.uid == owner.uid {
                        return ok_if(grants(e.perm));
                    }
                    false
                }
                tag::USER => {
                    if ctx.uid == e.id {
                        return ok_if(masked(e.perm));
                    }
                    false
                }
                tag::GROUP_OBJ => ctx.in_group(owner.gid),
                tag::GROUP => ctx.in_group(e.id),
                tag::MASK => false,
                tag::OTHER => {
                    return if found_group {
                        Err(FsError::Access)
                    } else {
                        ok_if(grants(e.perm))
                    };
                }
                _ => return Err(FsError::Io),
            };
            if matched {
                found_group = true;
                if grants(e.perm) {
                    return ok_if(masked(e.perm));
                }
            }
        }
        Err(FsError::Io)
    }
}

fn ok_if(allowed: bool) -> Result<()> {
    if allowed {
        Ok(())
    } else {
        Err(FsError::Access)
    }
}

/// ACL xattrs (name, value) a new inode inherits from its directory's default ACL.
pub(crate) type InheritedAcls = Vec<(&'static [u8], Vec<u8>)>;

/// The ACL of `kind` stored in `xattrs`, if any (stored values are always valid).
pub(crate) fn stored(xattrs: &XattrMap, kind: AclKind) -> Option<Acl> {
    let v = xattrs.get(kind.name())?;
    Acl::from_xattr(v).ok().flatten()
}

/// `generic_permission` with ACLs: [`perm::check`], except that a caller who is neither root
/// nor the owner is judged by the inode's access ACL when it has one (`acl_permission_check`).
pub(crate) fn check(ctx: &Ctx, owner: Owner, xattrs: &XattrMap, mask: u32) -> Result<()> {
    if ctx.is_root() || ctx.uid == owner.uid || mask & 7 == 0 {
        return perm::check(ctx, owner, mask);
    }
    match stored(xattrs, AclKind::Access) {
        Some(acl) => acl.permission(ctx, owner, mask),
        None => perm::check(ctx, owner, mask),
    }
}

/// Linux's `posix_acl_create` for a new inode in a directory whose xattrs are `parent`:
/// without a default ACL, `mode` loses the umask; with one, the umask is ignored, `mode` is
/// masked by the default ACL, and the new inode gets an access ACL (unless equivalent to the
/// mode) and, for a directory, the default ACL itself. Returns the mode and the xattrs to
/// store on the new inode.
pub(crate) fn inherit(parent: &XattrMap, mode: u32, umask: u32, is_dir: bool) -> (u32, InheritedAcls) {
    let Some(default) = stored(parent, AclKind::Default) else {
        return (mode & !(umask & 0o777), Vec::new());
    };
    let mut out = Vec::new();
    let mut access = default.clone();
    let (mode, keep) = access.create_masq(mode);
    if keep {
        out.push((ACCESS_NAME, access.to_xattr()));
    }
    if is_dir {
        out.push((DEFAULT_NAME, default.to_xattr()));
    }
    (mode, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(tag: u16, perm: u16, id: u32) -> Entry {
        Entry { tag, perm, id }
    }

    /// `user::rw-, user:1000:rwx, group::r--, mask::r-x, other::---`.
    fn named() -> Acl {
        Acl {
            entries: vec![
                e(tag::USER_OBJ, 6, UNDEFINED_ID),
                e(tag::USER, 7, 1000),
                e(tag::GROUP_OBJ, 4, UNDEFINED_ID),
                e(tag::MASK, 5, UNDEFINED_ID),
                e(tag::OTHER, 0, UNDEFINED_ID),
            ],
        }
    }

    fn minimal(u: u16, g: u16, o: u16) -> Acl {
        Acl {
            entries: vec![
                e(tag::USER_OBJ, u, UNDEFINED_ID),
                e(tag::GROUP_OBJ, g, UNDEFINED_ID),
                e(tag::OTHER, o, UNDEFINED_ID),
            ],
        }
    }

    fn owner(perm: u32) -> Owner {
        Owner {
            perm,
            uid: 10,
            gid: 20,
            is_dir: false,
        }
    }

    #[test]
    fn xattr_round_trip_and_errors() {
        let a = named();
        let v = a.to_xattr();
        assert_eq!(v.len(), 4 + 5 * 8);
        assert_eq!(Acl::from_xattr(&v), Ok(Some(a)));
        assert_eq!(Acl::from_xattr(&2u32.to_le_bytes()), Ok(None));
        assert_eq!(Acl::from_xattr(&[2, 0]), Err(FsError::Invalid));
        assert_eq!(Acl::from_xattr(&1u32.to_le_bytes()), Err(FsError::NotSupported));
        assert_eq!(Acl::from_xattr(&v[..v.len() - 1]), Err(FsError::Invalid));
        let mut bad_tag = v.clone();
        bad_tag[4] = 0x40;
        assert_eq!(Acl::from_xattr(&bad_tag), Err(FsError::Invalid));
        // An unnamed entry's id is not kept (it reads back as ACL_UNDEFINED_ID).
        let mut odd_id = minimal(6, 4, 4).to_xattr();
        odd_id[8] = 5;
        assert_eq!(
            Acl::from_xattr(&odd_id).unwrap().unwrap().to_xattr(),
            minimal(6, 4, 4).to_xattr()
        );
    }

    #[test]
    fn validity_as_posix_acl_valid() {
        assert!(named().validate().is_ok());
        assert!(minimal(7, 5, 0).validate().is_ok());
        // Named entry without a mask.
        let mut no_mask = named();
        no_mask.entries.remove(3);
        assert_eq!(no_mask.validate(), Err(FsError::Invalid));
        // A mask without named entries is fine.
        let mut mask_only = minimal(7, 5, 0);
        mask_only.entries.insert(2, e(tag::MASK, 7, UNDEFINED_ID));
        assert!(mask_only.validate().is_ok());
        // Out of order, missing, duplicated, bad bits.
        let mut swapped = minimal(7, 5, 0);
        swapped.entries.swap(0, 1);
        assert_eq!(swapped.validate(), Err(FsError::Invalid));
        let mut missing = minimal(7, 5, 0);
        missing.entries.pop();
        assert_eq!(missing.validate(), Err(FsError::Invalid));
        let mut dup = minimal(7, 5, 0);
        dup.entries.insert(0, e(tag::USER_OBJ, 7, UNDEFINED_ID));
        assert_eq!(dup.validate(), Err(FsError::Invalid));
        assert_eq!(minimal(8, 5, 0).validate(), Err(FsError::Invalid));
        let mut unmapped = named();
        unmapped.entries[1].id = UNDEFINED_ID;
        assert_eq!(unmapped.validate(), Err(FsError::Invalid));
        assert_eq!(Acl { entries: vec![] }.validate(), Err(FsError::Invalid));
    }

    #[test]
    fn equiv_mode() {
        assert_eq!(minimal(7, 5, 1).equiv_mode(0o104_000), (0o104_751, false));
        // The group class is the mask.
        assert_eq!(named().equiv_mode(0o100_777), (0o100_650, true));
    }

    #[test]
    fn create_masq() {
        let mut a = named();
        let (mode, keep) = a.create_masq(0o100_644);
        assert!(keep);
        assert_eq!(mode, 0o100_640);
        assert_eq!(a.entries[0].perm, 6);
        assert_eq!(a.entries[1].perm, 7, "named entries are not masked by the mode");
        assert_eq!(a.entries[3].perm, 4, "mask follows the mode's group bits");
        assert_eq!(a.entries[4].perm, 0);
        let mut m = minimal(7, 5, 5);
        assert_eq!(m.create_masq(0o2700), (0o2700, false));
        assert_eq!(m, minimal(7, 0, 0));
    }

    #[test]
    fn chmod_keeps_mask_in_step() {
        let mut a = named();
        a.chmod(0o751);
        assert_eq!(
            a.entries.iter().map(|e| e.perm).collect::<Vec<_>>(),
            vec![7, 7, 4, 5, 1],
            "owning group entry stays, mask takes the group bits"
        );
        let mut m = minimal(6, 4, 4);
        m.chmod(0o705);
        assert_eq!(m, minimal(7, 0, 5));
    }

    #[test]
    fn permission_named_user_group_and_mask() {
        let a = named();
        let o = owner(0o650);
        // Named user 1000: rwx masked by r-x.
        assert!(a.permission(&Ctx::user(1000, 1), o, 4 | 1).is_ok());
        assert_eq!(a.permission(&Ctx::user(1000, 1), o, 2), Err(FsError::Access));
        // Owning group: r--.
        assert!(a.permission(&Ctx::user(5, 20), o, 4).is_ok());
        assert_eq!(a.permission(&Ctx::user(5, 20), o, 1), Err(FsError::Access));
        // Other: nothing; a group member that matched no entry granting all is not "other".
        assert_eq!(a.permission(&Ctx::user(5, 5), o, 4), Err(FsError::Access));
        let mut g = named();
        g.entries.insert(3, e(tag::GROUP, 7, 30));
        g.entries[4].perm = 7;
        g.entries[5].perm = 4;
        let mut c = Ctx::user(5, 5);
        c.groups.push(30);
        assert!(g.permission(&c, o, 7).is_ok());
        let mut c20 = Ctx::user(5, 20);
        c20.groups.push(30);
        assert!(g.permission(&c20, o, 2).is_ok(), "any matching group entry may grant");
        assert!(
            g.permission(&Ctx::user(5, 5), o, 4).is_ok(),
            "other applies to non-members"
        );
        let mut deny_other = g.clone();
        deny_other.entries[2].perm = 0;
        assert_eq!(
            deny_other.permission(&Ctx::user(5, 20), o, 4),
            Err(FsError::Access),
            "a matching group entry without the bits denies even if other allows"
        );
    }

    #[test]
    fn check_consults_acl_only_for_non_owners() {
        let mut x = XattrMap::new();
        x.insert(ACCESS_NAME.into(), named().to_xattr().into());
        let o = owner(0o650);
        assert!(check(&Ctx::user(1000, 1), o, &x, 4).is_ok());
        assert_eq!(perm::check(&Ctx::user(1000, 1), o, 4), Err(FsError::Access));
        assert!(check(&Ctx::user(10, 1), o, &x, 6).is_ok());
        assert_eq!(check(&Ctx::user(10, 1), o, &x, 1), Err(FsError::Access));
        assert!(check(&Ctx::root(), o, &x, 6).is_ok());
    }

    #[test]
    fn inherit_from_default() {
        let empty = XattrMap::new();
        assert_eq!(inherit(&empty, 0o666, 0o022, false), (0o644, vec![]));
        let mut parent = XattrMap::new();
        parent.insert(DEFAULT_NAME.into(), named().to_xattr().into());
        let (mode, xs) = inherit(&parent, 0o666, 0o077, false);
        assert_eq!(mode, 0o640, "umask ignored, mode masked by the default ACL");
        assert_eq!(xs.len(), 1);
        assert_eq!(xs[0].0, ACCESS_NAME);
        let (dmode, dxs) = inherit(&parent, 0o777, 0o077, true);
        assert_eq!(dmode, 0o650);
        assert_eq!(
            dxs.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![ACCESS_NAME, DEFAULT_NAME]
        );
        assert_eq!(dxs[1].1, named().to_xattr());
        let mut plain = XattrMap::new();
        plain.insert(DEFAULT_NAME.into(), minimal(7, 5, 0).to_xattr().into());
        assert_eq!(inherit(&plain, 0o666, 0o077, false), (0o640, vec![]));
    }
}
