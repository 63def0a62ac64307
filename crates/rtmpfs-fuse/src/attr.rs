//! Conversions between the engine's plain types and fuser's.

use fuser::{FileAttr, FileType, INodeNo};
use rtmpfs_core::{Attr, FileKind, SetTime, Timespec};
use std::time::SystemTime;

/// The FUSE file type of an engine kind.
pub(crate) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::RegularFile => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::NamedPipe => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

/// FUSE attributes of an engine inode. The FUSE node id *is* the engine's inode number (root
/// is 1 in both), so all hard links of an inode share one node id.
pub(crate) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime.to_system_time(),
        mtime: a.mtime.to_system_time(),
        ctime: a.ctime.to_system_time(),
        crtime: a.btime.to_system_time(),
        kind: file_type(a.kind),
        // The kernel only looks at the low 12 bits; the type comes from `kind`.
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        // FUSE carries the kernel's 32-bit `new_encode_dev` form, which is what mknod gave us.
        rdev: a.rdev as u32,
        blksize: a.blksize,
        flags: 0,
    }
}

/// The attributes of a negative entry (node id 0): the kernel caches the absence of the name
/// for the entry timeout, which is safe because names only change through this mount.
pub(crate) fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// A `setattr` time: `UTIME_NOW` or an explicit value.
pub(crate) fn set_time(t: fuser::TimeOrNow) -> SetTime {
    match t {
        fuser::TimeOrNow::Now => SetTime::Now,
        fuser::TimeOrNow::SpecificTime(st) => SetTime::At(Timespec::from_system_time(st)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtmpfs_core::Ino;

    #[test]
    fn attr_round_trip() {
        let t = Timespec { sec: -5, nsec: 250 };
        let a = Attr {
            ino: Ino(42),
            generation: 7,
            kind: FileKind::CharDevice,
            perm: 0o4755,
            nlink: 3,
            uid: 1,
            gid: 2,
            rdev: 0x0803,
            size: 10,
            blocks: 8,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            btime: t,
        };
        let f = file_attr(&a);
        assert_eq!(f.ino, INodeNo(42));
        assert_eq!(f.kind, FileType::CharDevice);
        assert_eq!(f.perm, 0o4755);
        assert_eq!(f.rdev, 0x0803);
        assert_eq!(Timespec::from_system_time(f.mtime), t);
        assert_eq!(negative_attr().ino, INodeNo(0));
    }
}
