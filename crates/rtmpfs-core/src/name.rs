//! Validation of name components and symlink targets.

use crate::error::{FsError, Result};
use crate::types::{NAME_MAX, SYMLINK_MAX};

/// What a name component is, once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    /// `.`
    Dot,
    /// `..`
    DotDot,
    /// Any other valid name.
    Normal,
}

/// Validate one name component: non-empty, at most `NAME_MAX` bytes, no `/` or NUL.
///
/// # Errors
/// `NameTooLong` over 255 bytes (checked first, as Linux does for lookup); `Invalid` when empty or
/// containing `/` or NUL (a path component can never contain them, so only the library API can
/// pass them).
pub(crate) fn check(name: &[u8]) -> Result<NameKind> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(FsError::Invalid);
    }
    Ok(match name {
        b"." => NameKind::Dot,
        b".." => NameKind::DotDot,
        _ => NameKind::Normal,
    })
}

/// Validate a name for an operation that creates an entry (create, mkdir, mknod, symlink, link):
/// `.` and `..` always exist, so creating them is `Exists`, as `mkdir(".")` is on Linux.
pub(crate) fn check_new(name: &[u8]) -> Result<()> {
    match check(name)? {
        NameKind::Normal => Ok(()),
        NameKind::Dot | NameKind::DotDot => Err(FsError::Exists),
    }
}

/// Validate a symlink target: non-empty, at most 4095 bytes, no NUL.
pub(crate) fn check_symlink_target(target: &[u8]) -> Result<()> {
    if target.len() > SYMLINK_MAX {
        return Err(FsError::NameTooLong);
    }
    if target.is_empty() {
        return Err(FsError::NotFound);
    }
    if target.contains(&0) {
        return Err(FsError::Invalid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check(b"a"), Ok(NameKind::Normal));
        assert_eq!(check(b"."), Ok(NameKind::Dot));
        assert_eq!(check(b".."), Ok(NameKind::DotDot));
        assert_eq!(check(b"..."), Ok(NameKind::Normal));
        assert_eq!(check(b""), Err(FsError::Invalid));
        assert_eq!(check(b"a/b"), Err(FsError::Invalid));
        assert_eq!(check(b"a\0b"), Err(FsError::Invalid));
        assert_eq!(check(&[b'x'; 255]), Ok(NameKind::Normal));
        assert_eq!(check(&[b'x'; 256]), Err(FsError::NameTooLong));
        assert_eq!(check_new(b".."), Err(FsError::Exists));
    }

    #[test]
    fn symlink_targets() {
        assert_eq!(check_symlink_target(&[b'x'; 4095]), Ok(()));
        assert_eq!(check_symlink_target(&[b'x'; 4096]), Err(FsError::NameTooLong));
        assert_eq!(check_symlink_target(b""), Err(FsError::NotFound));
    }
}
