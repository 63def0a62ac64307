//! POSIX ACLs for the model and the ops: a few fixed ACLs in the kernel's xattr format
//! (version 2) and Linux's rules on them (`fs/posix_acl.c`), written apart from the engine's.

/// `system.posix_acl_access`.
pub const ACCESS: &str = "system.posix_acl_access";
/// `system.posix_acl_default`.
pub const DEFAULT: &str = "system.posix_acl_default";

const U: u32 = u32::MAX;
const USER_OBJ: u16 = 1;
const USER: u16 = 2;
const GROUP_OBJ: u16 = 4;
const GROUP: u16 = 8;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// The ACLs an [`crate::Op::SetAcl`] chooses from: one equal to a mode, two with named entries
/// and a mask, one invalid (a named entry without a mask), and the empty one (removes).
pub const ACLS: [&[(u16, u16, u32)]; 5] = [
    &[(USER_OBJ, 7, U), (GROUP_OBJ, 5, U), (OTHER, 4, U)],
    &[
        (USER_OBJ, 6, U),
        (USER, 7, 1000),
        (GROUP_OBJ, 4, U),
        (MASK, 7, U),
        (OTHER, 0, U),
    ],
    &[
        (USER_OBJ, 7, U),
        (GROUP_OBJ, 7, U),
        (GROUP, 5, 2000),
        (MASK, 5, U),
        (OTHER, 5, U),
    ],
    &[(USER_OBJ, 6, U), (USER, 6, 1000), (GROUP_OBJ, 4, U), (OTHER, 0, U)],
    &[],
];

/// The xattr name of the access or default ACL.
pub fn name(default: bool) -> &'static str {
    if default {
        DEFAULT
    } else {
        ACCESS
    }
}

/// The xattr value of `ACLS[idx % len]`.
pub fn value(idx: u8) -> Vec<u8> {
    encode(ACLS[usize::from(idx) % ACLS.len()])
}

/// Entries as the kernel's xattr value.
pub fn encode(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// Entries of a value [`encode`] made.
pub fn decode(v: &[u8]) -> Vec<(u16, u16, u32)> {
    v[4..]
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect()
}

/// `posix_acl_valid` for the fixed ACLs: a named entry needs a mask.
pub fn valid(entries: &[(u16, u16, u32)]) -> bool {
    let named = entries.iter().any(|e| matches!(e.0, USER | GROUP));
    !named || entries.iter().any(|e| e.0 == MASK)
}

/// `posix_acl_equiv_mode`: the permission bits, and whether the ACL says more than a mode.
pub fn equiv_mode(entries: &[(u16, u16, u32)]) -> (u32, bool) {
    let mut bits = 0;
    let mut more = false;
    for &(tag, perm, _) in entries {
        let p = u32::from(perm);
        match tag {
            USER_OBJ => bits |= p << 6,
            GROUP_OBJ => bits |= p << 3,
            OTHER => bits |= p,
            MASK => {
                bits = (bits & !0o070) | (p << 3);
                more = true;
            }
            _ => more = true,
        }
    }
    (bits, more)
}

/// `posix_acl_create_masq`: the default ACL's entries restricted by `mode`, and `mode`
/// restricted by them; whether the result must be kept as an access ACL.
pub fn create_masq(entries: &[(u16, u16, u32)], mode: u32) -> (Vec<(u16, u16, u32)>, u32, bool) {
    let mut masked = entries.to_vec();
    let mut mode_left = mode;
    let mut needs_acl = false;
    for x in &mut masked {
        match x.0 {
            USER_OBJ => {
                x.1 &= ((mode_left >> 6) & 7) as u16;
                mode_left &= (u32::from(x.1) << 6) | !0o700;
            }
            OTHER => {
                x.1 &= (mode_left & 7) as u16;
                mode_left &= u32::from(x.1) | !0o007;
            }
            USER | GROUP | MASK => needs_acl = true,
            _ => {}
        }
    }
    let class = masked
        .iter()
        .position(|x| x.0 == MASK)
        .or_else(|| masked.iter().position(|x| x.0 == GROUP_OBJ));
    if let Some(i) = class {
        masked[i].1 &= ((mode_left >> 3) & 7) as u16;
        mode_left &= (u32::from(masked[i].1) << 3) | !0o070;
    }
    (masked, mode_left, needs_acl)
}
