//! Extended attributes: names, namespaces and Linux's limits and errors.
//!
//! Storage is a small ordered map per inode, kept in the inode's metadata. Inode-space charging
//! (as tmpfs: `40 + name + value` bytes against `nr_inodes`) is done by the caller, which knows
//! the filesystem's budget.

use std::collections::BTreeMap;

use crate::error::{FsError, Result};
use crate::types::{Ctx, FileKind};

/// Longest xattr name, including the namespace prefix (`XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest xattr value (`XATTR_SIZE_MAX`).
pub const XATTR_SIZE_MAX: usize = 65536;
/// Largest `listxattr` result (`XATTR_LIST_MAX`).
pub const XATTR_LIST_MAX: usize = 65536;

/// How `setxattr` treats an existing or missing attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrSetMode {
    /// Create or replace.
    Upsert,
    /// Fail with `Exists` if present (`XATTR_CREATE`).
    Create,
    /// Fail with `NoData` if absent (`XATTR_REPLACE`).
    Replace,
    /// Both flags at once (`XATTR_CREATE | XATTR_REPLACE`): fails either way, with `Exists` if
    /// present and `NoData` if absent, as Linux's `simple_xattr_set` checks them in turn.
    CreateAndReplace,
}

impl XattrSetMode {
    /// Decode `setxattr(2)` flags.
    ///
    /// # Errors
    /// `Invalid` for unknown bits.
    pub fn from_libc(flags: i32) -> Result<XattrSetMode> {
        match flags {
            0 => Ok(XattrSetMode::Upsert),
            1 => Ok(XattrSetMode::Create),
            2 => Ok(XattrSetMode::Replace),
            3 => Ok(XattrSetMode::CreateAndReplace),
            _ => Err(FsError::Invalid),
        }
    }
}

/// The namespaces tmpfs supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Namespace {
    User,
    Trusted,
    Security,
}

/// The per-inode attribute map.
pub(crate) type XattrMap = BTreeMap<Box<[u8]>, Box<[u8]>>;

/// The namespace an attribute name claims by its prefix, if it is one tmpfs knows. Checks only
/// the length (`ERANGE`, as the syscall's name copy does first); the rest of the validation
/// ([`check_name`]) comes after the namespace permission rules, in Linux's order.
pub(crate) fn prefix_namespace(name: &[u8]) -> Result<Option<Namespace>> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(FsError::Range);
    }
    Ok(if name.starts_with(b"user.") {
        Some(Namespace::User)
    } else if name.starts_with(b"trusted.") {
        Some(Namespace::Trusted)
    } else if name.starts_with(b"security.") {
        Some(Namespace::Security)
    } else {
        None
    })
}

/// The handler lookup: an unknown namespace (POSIX ACLs included: not implemented) is
/// `NotSupported`, an empty suffix or a NUL is `Invalid`.
pub(crate) fn check_name(name: &[u8], ns: Option<Namespace>) -> Result<Namespace> {
    let ns = ns.ok_or(FsError::NotSupported)?;
    let prefix_len = match ns {
        Namespace::User => 5,
        Namespace::Trusted => 8,
        Namespace::Security => 9,
    };
    if name.len() == prefix_len || name.contains(&0) {
        return Err(FsError::Invalid);
    }
    Ok(ns)
}

/// Validate a full attribute name and return its namespace (length, then namespace, then
/// suffix), for callers with no permission rule in between.
#[cfg(test)]
pub(crate) fn namespace_of(name: &[u8]) -> Result<Namespace> {
    check_name(name, prefix_namespace(name)?)
}

/// Namespace rules of `xattr_permission()` that do not depend on mode bits.
pub(crate) fn namespace_permission(ctx: &Ctx, ns: Option<Namespace>, kind: FileKind, write: bool) -> Result<()> {
    let deny = if write { FsError::Perm } else { FsError::NoData };
    match ns {
        Some(Namespace::Trusted) if !ctx.is_root() => Err(deny),
        Some(Namespace::User) if !matches!(kind, FileKind::RegularFile | FileKind::Directory) => Err(deny),
        _ => Ok(()),
    }
}

/// Whether `listxattr` shows this name to this caller (trusted.* only to root).
pub(crate) fn visible_in_list(ctx: &Ctx, name: &[u8]) -> bool {
    !name.starts_with(b"trusted.") || ctx.is_root()
}

/// Check a value's size.
pub(crate) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > XATTR_SIZE_MAX {
        Err(FsError::TooBig)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(namespace_of(b"user.a"), Ok(Namespace::User));
        assert_eq!(namespace_of(b"trusted.a"), Ok(Namespace::Trusted));
        assert_eq!(namespace_of(b"security.selinux"), Ok(Namespace::Security));
        assert_eq!(namespace_of(b"user."), Err(FsError::Invalid));
        assert_eq!(namespace_of(b"foo.bar"), Err(FsError::NotSupported));
        assert_eq!(namespace_of(b"system.posix_acl_access"), Err(FsError::NotSupported));
        assert_eq!(namespace_of(b""), Err(FsError::Range));
        let long = [b"user.".as_slice(), &[b'x'; 251]].concat();
        assert_eq!(namespace_of(&long), Err(FsError::Range));
    }

    #[test]
    fn namespace_rules() {
        let u = Ctx::user(1, 1);
        let t = Some(Namespace::Trusted);
        assert_eq!(
            namespace_permission(&u, t, FileKind::RegularFile, true),
            Err(FsError::Perm)
        );
        assert_eq!(
            namespace_permission(&u, t, FileKind::RegularFile, false),
            Err(FsError::NoData)
        );
        assert_eq!(
            namespace_permission(&u, Some(Namespace::User), FileKind::Symlink, true),
            Err(FsError::Perm)
        );
        assert!(namespace_permission(&Ctx::root(), t, FileKind::Symlink, true).is_ok());
        // Linux's order: the namespace rule before the handler's suffix check.
        assert_eq!(
            namespace_permission(&u, prefix_namespace(b"user.").unwrap(), FileKind::Symlink, true),
            Err(FsError::Perm)
        );
    }
}
