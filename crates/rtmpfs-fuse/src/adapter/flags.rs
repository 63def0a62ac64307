//! The file-flag ioctls (chattr/lsattr): `FS_IOC_GETFLAGS`/`SETFLAGS` and
//! `FS_IOC_FSGETXATTR`/`FSSETXATTR`, the four the kernel's fileattr_get/set send for a FUSE
//! inode. The kernel enforces none of the flags itself; the engine does. Only the flags tmpfs
//! keeps are accepted (`XFLAGS`); anything more is EOPNOTSUPP, as Linux tmpfs answers.

use super::{caller, Adapter};
use fuser::Request;
use rtmpfs_core::{FsError, Ino};

/// `FS_IOC_GETFLAGS` (`_IOR('f', 1, long)`): the kernel sends it with a 4-byte result.
const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
/// `FS_IOC_SETFLAGS` (`_IOW('f', 2, long)`): 4 bytes of flags in.
const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
/// `FS_IOC_FSGETXATTR` (`_IOR('X', 31, struct fsxattr)`): 28 bytes out.
const FS_IOC_FSGETXATTR: u32 = 0x801c_581f;
/// `FS_IOC_FSSETXATTR` (`_IOW('X', 32, struct fsxattr)`): 28 bytes in.
const FS_IOC_FSSETXATTR: u32 = 0x401c_5820;
/// `struct fsxattr`'s size: xflags, extsize, nextents, projid, cowextsize, 8 bytes of pad.
const FSXATTR_LEN: usize = 28;
/// `FS_XFLAG_*` for the flags tmpfs supports, paired with their `FS_*_FL` (fileattr.c).
const XFLAGS: [(u32, u32); 4] = [
    (0x08, rtmpfs_core::file_flags::IMMUTABLE),
    (0x10, rtmpfs_core::file_flags::APPEND),
    (0x80, rtmpfs_core::file_flags::NODUMP),
    (0x40, rtmpfs_core::file_flags::NOATIME),
];

impl Adapter {
    /// Serve a file-flag ioctl on inode `i`: the reply's data, or `None` for any other `cmd`.
    pub(super) fn file_flags_ioctl(
        &self,
        req: &Request,
        i: Ino,
        cmd: u32,
        in_data: &[u8],
    ) -> Option<Result<Vec<u8>, FsError>> {
        Some(match cmd {
            FS_IOC_GETFLAGS => self.fs.file_flags(i).map(|f| f.to_le_bytes().to_vec()),
            FS_IOC_SETFLAGS => match in_data.get(..4) {
                Some(b) => {
                    let flags = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    self.set_file_flags(req, i, flags)
                }
                None => Err(FsError::Invalid),
            },
            FS_IOC_FSGETXATTR => self.fs.file_flags(i).map(|f| fsxattr_bytes(flags_to_xflags(f))),
            FS_IOC_FSSETXATTR => match fsxattr_flags(in_data) {
                Some(flags) => self.set_file_flags(req, i, flags),
                None => Err(FsError::NotSupported),
            },
            _ => return None,
        })
    }

    /// `chattr`: set the file flags as the caller; no data in the reply.
    fn set_file_flags(&self, req: &Request, i: Ino, flags: u32) -> Result<Vec<u8>, FsError> {
        if self.fs.is_read_only() {
            return Err(FsError::ReadOnly);
        }
        let r = self
            .fs
            .set_file_flags(&caller(&self.stats, req), i, flags)
            .map(|_| Vec::new());
        if r.is_ok() {
            // The kernel caches attributes for the TTL and learns nothing from an ioctl's
            // reply: without this a stat after chattr shows the old ctime (tmpfs shows the new).
            self.invalidate_attrs(i);
        }
        r
    }
}

fn flags_to_xflags(flags: u32) -> u32 {
    XFLAGS.iter().filter(|(_, f)| flags & f != 0).map(|(x, _)| x).sum()
}

/// A `struct fsxattr` carrying only `xflags`.
fn fsxattr_bytes(xflags: u32) -> Vec<u8> {
    let mut v = vec![0u8; FSXATTR_LEN];
    v[..4].copy_from_slice(&xflags.to_le_bytes());
    v
}

/// The file flags a `struct fsxattr` asks for, or `None` when it asks for more than tmpfs
/// keeps (other xflags, an extent size, a project id: `fileattr_has_fsx`, EOPNOTSUPP).
fn fsxattr_flags(data: &[u8]) -> Option<u32> {
    let word = |k: usize| {
        data.get(4 * k..4 * k + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let xflags = word(0)?;
    let known: u32 = XFLAGS.iter().map(|(x, _)| x).sum();
    if xflags & !known != 0 || word(1)? != 0 || word(3)? != 0 || word(4)? != 0 {
        return None;
    }
    Some(XFLAGS.iter().filter(|(x, _)| xflags & x != 0).map(|(_, f)| f).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtmpfs_core::file_flags::{APPEND, IMMUTABLE, NOATIME, NODUMP};

    #[test]
    fn fsxattr_carries_the_flags_tmpfs_keeps_both_ways() {
        for flags in [0, IMMUTABLE, APPEND | NODUMP, IMMUTABLE | APPEND | NODUMP | NOATIME] {
            let bytes = fsxattr_bytes(flags_to_xflags(flags));
            assert_eq!(bytes.len(), FSXATTR_LEN);
            assert_eq!(fsxattr_flags(&bytes), Some(flags));
        }
    }

    #[test]
    fn fsxattr_asking_for_more_than_tmpfs_keeps_is_refused() {
        let with_word = |k: usize, v: u32| {
            let mut b = fsxattr_bytes(0);
            b[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
            b
        };
        // An unknown xflag (FS_XFLAG_SYNC), an extent size, a project id, a CoW extent size.
        for (k, v) in [(0, 0x20), (1, 4096), (3, 7), (4, 4096)] {
            assert_eq!(fsxattr_flags(&with_word(k, v)), None, "word {k} = {v:#x}");
        }
        // nextents is output only: ignored.
        assert_eq!(fsxattr_flags(&with_word(2, 3)), Some(0));
        // Too short to hold the words read.
        assert_eq!(fsxattr_flags(&[0u8; 8]), None);
    }
}
