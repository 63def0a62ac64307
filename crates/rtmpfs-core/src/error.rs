//! The engine's one error type and its one errno table.
//!
//! Library users match on [`FsError`]; the FUSE adapter and anything else that speaks errno call
//! [`FsError::errno`], which is the only place where an engine error becomes a number.

use std::fmt;

/// Every way an engine operation can fail.
///
/// Each variant names the POSIX condition, not the errno, so that library callers read
/// `FsError::NotFound` rather than a bare number. The mapping to errno is [`FsError::errno`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// No such file or directory (ENOENT).
    #[error("no such file or directory")]
    NotFound,
    /// The name already exists (EEXIST).
    #[error("file exists")]
    Exists,
    /// A path component, or the target of a directory-only operation, is not a directory (ENOTDIR).
    #[error("not a directory")]
    NotDir,
    /// A directory where a non-directory is required (EISDIR).
    #[error("is a directory")]
    IsDir,
    /// rmdir or rename over a directory that still has entries (ENOTEMPTY).
    #[error("directory not empty")]
    NotEmpty,
    /// The caller lacks permission bits for the operation (EACCES).
    #[error("permission denied")]
    Access,
    /// The caller is not the owner or not privileged (EPERM).
    #[error("operation not permitted")]
    Perm,
    /// A size or inode limit was reached (ENOSPC). tmpfs reports ENOSPC, not ENOMEM, so that a
    /// sparse mapping gets SIGBUS rather than an OOM kill; we keep that choice.
    #[error("no space left on device")]
    NoSpace,
    /// A name component is longer than 255 bytes, or a symlink target longer than 4095 (ENAMETOOLONG).
    #[error("file name too long")]
    NameTooLong,
    /// An argument is invalid: a bad name, flag combination, or a directory moved under itself (EINVAL).
    #[error("invalid argument")]
    Invalid,
    /// The file would exceed the maximum file size (EFBIG).
    #[error("file too large")]
    FileTooBig,
    /// The operation is not supported for this object or mode (EOPNOTSUPP).
    #[error("operation not supported")]
    NotSupported,
    /// The extended attribute does not exist (ENODATA).
    #[error("no data available")]
    NoData,
    /// The caller's buffer is too small, or an xattr name too long (ERANGE).
    #[error("result too large")]
    Range,
    /// An xattr value, or an argument list, is too large (E2BIG).
    #[error("argument list too long")]
    TooBig,
    /// The file handle is not open, or not open for this access (EBADF).
    #[error("bad file descriptor")]
    BadHandle,
    /// SEEK_DATA/SEEK_HOLE past the end, or a negative offset (ENXIO).
    #[error("no such device or address")]
    NoDeviceOrAddress,
    /// A renamed entry is busy: renaming "." or ".." (EBUSY).
    #[error("device or resource busy")]
    Busy,
    /// Too many hard links (EMLINK).
    #[error("too many links")]
    TooManyLinks,
    /// The data could not be read back (a poisoned page, a failed swap read) (EIO).
    #[error("input/output error")]
    Io,
    /// The filesystem is mounted read-only (EROFS).
    #[error("read-only file system")]
    ReadOnly,
    /// A cross-device operation that cannot be done (EXDEV).
    #[error("invalid cross-device link")]
    CrossDevice,
    /// The operation would overflow a value (EOVERFLOW).
    #[error("value too large for defined data type")]
    Overflow,
}

impl FsError {
    /// The errno this error stands for. This is the only errno table in the project.
    #[must_use]
    pub fn errno(self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Access => libc::EACCES,
            FsError::Perm => libc::EPERM,
            FsError::NoSpace => libc::ENOSPC,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Invalid => libc::EINVAL,
            FsError::FileTooBig => libc::EFBIG,
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::NoData => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::TooBig => libc::E2BIG,
            FsError::BadHandle => libc::EBADF,
            FsError::NoDeviceOrAddress => libc::ENXIO,
            FsError::Busy => libc::EBUSY,
            FsError::TooManyLinks => libc::EMLINK,
            FsError::Io => libc::EIO,
            FsError::ReadOnly => libc::EROFS,
            FsError::CrossDevice => libc::EXDEV,
            FsError::Overflow => libc::EOVERFLOW,
        }
    }

    /// The error for an errno, where one exists (used by tests that compare with the kernel).
    #[must_use]
    pub fn from_errno(errno: i32) -> Option<FsError> {
        ALL.iter().copied().find(|e| e.errno() == errno)
    }
}

const ALL: [FsError; 23] = [
    FsError::NotFound,
    FsError::Exists,
    FsError::NotDir,
    FsError::IsDir,
    FsError::NotEmpty,
    FsError::Access,
    FsError::Perm,
    FsError::NoSpace,
    FsError::NameTooLong,
    FsError::Invalid,
    FsError::FileTooBig,
    FsError::NotSupported,
    FsError::NoData,
    FsError::Range,
    FsError::TooBig,
    FsError::BadHandle,
    FsError::NoDeviceOrAddress,
    FsError::Busy,
    FsError::TooManyLinks,
    FsError::Io,
    FsError::ReadOnly,
    FsError::CrossDevice,
    FsError::Overflow,
];

/// Result of every engine operation.
pub type Result<T, E = FsError> = std::result::Result<T, E>;

/// Error from building a filesystem out of a [`crate::Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<FsError> for std::io::Error {
    fn from(e: FsError) -> Self {
        std::io::Error::from_raw_os_error(e.errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table_is_injective() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.errno(), b.errno(), "{a:?} and {b:?} share an errno");
            }
            assert_eq!(FsError::from_errno(a.errno()), Some(*a));
        }
    }
}
