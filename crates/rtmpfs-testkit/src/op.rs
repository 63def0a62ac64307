//! The operation language shared by the model test, the kernel differential and the fuzz target.
//!
//! Operations name files by [`Loc`] (one of a few parent directories and one of a few names), so
//! that random sequences collide: the same name is created, linked over, renamed onto and removed
//! again, directories are moved under each other, and the `size`/`nr_inodes` limits are reached.
//! Open handles are named by their position among the currently open handles (`h % count`).
//!
//! Every field holds the value the system call gets (an offset, a mode, raw flag bits), so a
//! shrunk failure reads like the syscalls it stands for.

use std::fmt;

/// The bytes of one page.
pub const PAGE: u64 = 4096;

/// Parent directories an operation can address, as paths from the root.
pub const PARENTS: [&[&str]; 5] = [&[], &["d0"], &["d1"], &["d0", "d1"], &["d1", "d0"]];

/// Names an operation can address inside a parent.
pub const NAMES: [&str; 4] = ["a", "b", "d0", "d1"];

/// Symlink targets (short ones: Linux stores targets up to 128 bytes inline).
pub const TARGETS: [&str; 4] = ["a", "d0", "../b", "d0/d1/a"];

/// A long symlink target (over tmpfs's 128-byte inline limit).
pub fn long_target() -> String {
    "t".repeat(200)
}

/// Extended attribute names an operation can use, valid and not.
pub const XATTR_NAMES: [&str; 7] = ["user.a", "user.b", "trusted.t", "security.s", "user.", "bogus.x", ""];

/// A location: `PARENTS[dir % len]` / `NAMES[name % len]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Loc {
    /// Index into [`PARENTS`] (modulo its length).
    pub dir: u8,
    /// Index into [`NAMES`] (modulo its length).
    pub name: u8,
}

impl Loc {
    /// The parent directory's path components.
    pub fn parent(self) -> &'static [&'static str] {
        PARENTS[usize::from(self.dir) % PARENTS.len()]
    }

    /// The final name.
    pub fn name(self) -> &'static str {
        NAMES[usize::from(self.name) % NAMES.len()]
    }

    /// The full path, `/`-separated, without a leading slash.
    pub fn path(self) -> String {
        let mut p: Vec<&str> = self.parent().to_vec();
        p.push(self.name());
        p.join("/")
    }
}

/// Build a [`Loc`] from a path such as `"d0/a"` (panics on a path outside the fixed namespace;
/// meant for hand-written regression tests).
///
/// # Panics
///
/// If `path` is empty or its parent is not one of `PARENTS`.
pub fn at(path: &str) -> Loc {
    let comps: Vec<&str> = path.split('/').collect();
    let (name, parent) = comps.split_last().expect("empty path");
    let dir = PARENTS
        .iter()
        .position(|p| *p == parent)
        .unwrap_or_else(|| panic!("{path}: parent not in PARENTS"));
    let n = NAMES
        .iter()
        .position(|x| x == name)
        .unwrap_or_else(|| panic!("{path}: name not in NAMES"));
    Loc {
        dir: dir as u8,
        name: n as u8,
    }
}

impl fmt::Debug for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at({:?})", self.path())
    }
}

/// A directory: `PARENTS[0 % len]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DirSel(pub u8);

impl DirSel {
    /// The directory's path components.
    pub fn path(self) -> &'static [&'static str] {
        PARENTS[usize::from(self.0) % PARENTS.len()]
    }
}

impl fmt::Debug for DirSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DirSel({}) /* {:?} */", self.0, self.path().join("/"))
    }
}

/// `open(2)` access mode and the flags the engine acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct OpenMode {
    /// 0: `O_RDONLY`, 1: `O_WRONLY`, else `O_RDWR`.
    pub acc: u8,
    /// `O_TRUNC`.
    pub trunc: bool,
    /// `O_APPEND`.
    pub append: bool,
}

impl OpenMode {
    /// Read-write, no other flag.
    pub const RDWR: OpenMode = OpenMode {
        acc: 2,
        trunc: false,
        append: false,
    };
    /// Read-only.
    pub const RDONLY: OpenMode = OpenMode {
        acc: 0,
        trunc: false,
        append: false,
    };
    /// Write-only.
    pub const WRONLY: OpenMode = OpenMode {
        acc: 1,
        trunc: false,
        append: false,
    };

    /// The `open(2)` flag bits.
    pub fn to_libc(self) -> i32 {
        let mut f = match self.acc {
            0 => libc::O_RDONLY,
            1 => libc::O_WRONLY,
            _ => libc::O_RDWR,
        };
        if self.trunc {
            f |= libc::O_TRUNC;
        }
        if self.append {
            f |= libc::O_APPEND;
        }
        f
    }

    /// Whether the handle can read.
    pub fn read(self) -> bool {
        self.acc != 1
    }

    /// Whether the handle can write.
    pub fn write(self) -> bool {
        self.acc != 0
    }
}

/// Kinds of node `mknod` can make here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum NodeKind {
    /// `S_IFIFO`.
    Fifo,
    /// `S_IFSOCK`.
    Socket,
    /// `S_IFCHR` 1:3.
    Char,
    /// `S_IFBLK` 7:0.
    Block,
}

impl NodeKind {
    /// The `S_IFMT` bits and the device number.
    pub fn mode_and_rdev(self) -> (u32, u64) {
        match self {
            NodeKind::Fifo => (libc::S_IFIFO, 0),
            NodeKind::Socket => (libc::S_IFSOCK, 0),
            NodeKind::Char => (libc::S_IFCHR, libc::makedev(1, 3)),
            NodeKind::Block => (libc::S_IFBLK, libc::makedev(7, 0)),
        }
    }
}

/// `SEEK_DATA` or `SEEK_HOLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Whence {
    /// `SEEK_DATA`.
    Data,
    /// `SEEK_HOLE`.
    Hole,
}

/// One operation. Handle fields (`h`, `from`, `to` of `CopyRange`) pick among the open handles
/// (`h % count`; with no handle open the operation does nothing on every backend).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    /// `openat(O_CREAT|O_EXCL|flags, mode)`.
    Create {
        /// Where.
        at: Loc,
        /// Permission bits (the umask applies).
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::mode))]
        mode: u32,
        /// Access mode and flags.
        flags: OpenMode,
    },
    /// `mkdirat`.
    Mkdir {
        /// Where.
        at: Loc,
        /// Permission bits.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::mode))]
        mode: u32,
    },
    /// `mknodat`.
    Mknod {
        /// Where.
        at: Loc,
        /// Which kind.
        kind: NodeKind,
        /// Permission bits.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::mode))]
        mode: u32,
    },
    /// `symlinkat(TARGETS[target % len], at)`; `target == 255` is a 200-byte target.
    Symlink {
        /// Where.
        at: Loc,
        /// Which target.
        target: u8,
    },
    /// `linkat(from, to, 0)`.
    Link {
        /// Existing name.
        from: Loc,
        /// New name.
        to: Loc,
    },
    /// `linkat(fd, "", to, AT_EMPTY_PATH)`: links an open (possibly anonymous) file.
    LinkHandle {
        /// Handle.
        h: u8,
        /// New name.
        to: Loc,
    },
    /// `unlinkat(at, 0)`.
    Unlink {
        /// Where.
        at: Loc,
    },
    /// `unlinkat(at, AT_REMOVEDIR)`.
    Rmdir {
        /// Where.
        at: Loc,
    },
    /// `renameat2(from, to, flags)` with raw flag bits.
    Rename {
        /// Source.
        from: Loc,
        /// Target.
        to: Loc,
        /// `RENAME_NOREPLACE` 1, `RENAME_EXCHANGE` 2, `RENAME_WHITEOUT` 4.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::rename_flags))]
        flags: u32,
    },
    /// `openat(at, flags|O_NOFOLLOW)`.
    Open {
        /// Where.
        at: Loc,
        /// Access mode and flags.
        flags: OpenMode,
    },
    /// `openat(dir, O_TMPFILE|O_RDWR, mode)`.
    Tmpfile {
        /// Directory.
        dir: DirSel,
        /// Permission bits.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::mode))]
        mode: u32,
    },
    /// `close`.
    Close {
        /// Handle.
        h: u8,
    },
    /// `pwrite(h, pattern(seed, len), off)`.
    Write {
        /// Handle.
        h: u8,
        /// Offset.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::off))]
        off: u64,
        /// Length.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::len))]
        len: u64,
        /// Seed of the data pattern.
        seed: u8,
    },
    /// `pread(h, len, off)`.
    Read {
        /// Handle.
        h: u8,
        /// Offset.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::off))]
        off: u64,
        /// Length.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::len))]
        len: u64,
    },
    /// `truncate(path, size)` (setattr size without a handle).
    Truncate {
        /// Where.
        at: Loc,
        /// New size.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::off))]
        size: u64,
    },
    /// `ftruncate(h, size)` (setattr size through a handle).
    Ftruncate {
        /// Handle.
        h: u8,
        /// New size.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::off))]
        size: u64,
    },
    /// `fallocate(h, mode, off, len)` with raw mode bits.
    Fallocate {
        /// Handle.
        h: u8,
        /// Raw mode: 0, `KEEP_SIZE` 1, `PUNCH_HOLE|KEEP_SIZE` 3, and unsupported ones.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::falloc_mode))]
        mode: i32,
        /// Offset.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::off))]
        off: u64,
        /// Length.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::len))]
        len: u64,
    },
    /// `lseek(h, off, SEEK_DATA|SEEK_HOLE)`.
    Seek {
        /// Handle.
        h: u8,
        /// Which.
        whence: Whence,
        /// Offset (may be negative).
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::seek_off))]
        off: i64,
    },
    /// `copy_file_range(from, &off_in, to, &off_out, len, 0)`.
    CopyRange {
        /// Source handle.
        from: u8,
        /// Source offset.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::off))]
        off_in: u64,
        /// Target handle.
        to: u8,
        /// Target offset.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::off))]
        off_out: u64,
        /// Length.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::len))]
        len: u64,
    },
    /// `lsetxattr(at, XATTR_NAMES[name % len], pattern(seed, len), flags)`.
    SetXattr {
        /// Where.
        at: Loc,
        /// Which name.
        name: u8,
        /// Value length.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = gen::xattr_len))]
        len: u32,
        /// Seed of the value pattern.
        seed: u8,
        /// 0, `XATTR_CREATE` 1 or `XATTR_REPLACE` 2 (modulo 3).
        flags: u8,
    },
    /// `lremovexattr`.
    RemoveXattr {
        /// Where.
        at: Loc,
        /// Which name.
        name: u8,
    },
    /// `lgetxattr`.
    GetXattr {
        /// Where.
        at: Loc,
        /// Which name.
        name: u8,
    },
    /// `llistxattr`.
    ListXattr {
        /// Where.
        at: Loc,
    },
    /// `getdents64` on a directory, all of it.
    Readdir {
        /// Directory.
        dir: DirSel,
    },
    /// `statfs`.
    Statfs,
}

/// The `idx`-th xattr name.
pub fn xattr_name(idx: u8) -> &'static str {
    XATTR_NAMES[usize::from(idx) % XATTR_NAMES.len()]
}

/// The symlink target selected by `t`.
pub fn target(t: u8) -> String {
    if t == 255 {
        long_target()
    } else {
        TARGETS[usize::from(t) % TARGETS.len()].to_string()
    }
}

/// The deterministic data of a write or xattr value: `len` bytes from `seed`. Never all zero, so
/// that data and holes differ.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let x = (i as u32).wrapping_mul(31).wrapping_add(u32::from(seed) * 7 + 1);
            (x ^ (x >> 8)) as u8 | 1
        })
        .collect()
}

/// Value generators for `arbitrary`, biased the same way as the proptest strategies (both go
/// through the `decode_*` functions).
#[cfg(feature = "arbitrary")]
pub mod gen {
    use arbitrary::{Result, Unstructured};

    /// Permission bits.
    pub fn mode(u: &mut Unstructured<'_>) -> Result<u32> {
        Ok(*u.choose(&super::MODES)?)
    }

    /// An offset.
    pub fn off(u: &mut Unstructured<'_>) -> Result<u64> {
        Ok(super::decode_off(u.arbitrary()?, u.arbitrary()?))
    }

    /// A length.
    pub fn len(u: &mut Unstructured<'_>) -> Result<u64> {
        Ok(super::decode_len(u.arbitrary()?, u.arbitrary()?))
    }

    /// A signed seek offset.
    pub fn seek_off(u: &mut Unstructured<'_>) -> Result<i64> {
        Ok(super::decode_seek(u.arbitrary()?, u.arbitrary()?))
    }

    /// Raw renameat2 flags.
    pub fn rename_flags(u: &mut Unstructured<'_>) -> Result<u32> {
        Ok(*u.choose(&super::RENAME_FLAGS)?)
    }

    /// Raw fallocate modes.
    pub fn falloc_mode(u: &mut Unstructured<'_>) -> Result<i32> {
        Ok(*u.choose(&super::FALLOC_MODES)?)
    }

    /// An xattr value length.
    pub fn xattr_len(u: &mut Unstructured<'_>) -> Result<u32> {
        Ok(super::decode_xattr_len(u.arbitrary()?, u.arbitrary()?))
    }
}

/// Permission bits used for new inodes.
pub const MODES: [u32; 8] = [0o644, 0o600, 0o755, 0o666, 0o4755, 0o2775, 0o1777, 0o000];

/// renameat2 flag combinations, including invalid ones.
pub const RENAME_FLAGS: [u32; 9] = [0, 0, 0, 1, 2, 4, 5, 3, 8];

/// fallocate modes: allocate, keep-size, punch (+keep), and unsupported ones.
pub const FALLOC_MODES: [i32; 8] = [0, 0, 1, 3, 3, 2, 0x10, 0x08];

/// An offset from a bucket selector and a raw number: mostly within a few pages, sometimes on
/// page boundaries up to the size limit, at 1 GiB, or near the maximum file size.
pub fn decode_off(sel: u8, raw: u32) -> u64 {
    let raw = u64::from(raw);
    match sel % 16 {
        0..=6 => raw % (3 * PAGE),
        7..=9 => (raw % 24) * PAGE,
        10 | 11 => (raw % 24) * PAGE + raw % 7 * 611,
        12 => (1 << 30) + raw % (2 * PAGE),
        13 => (i64::MAX as u64) - raw % (2 * PAGE),
        14 => raw % 256,
        _ => PAGE - 1 - raw % 3,
    }
}

/// A length: mostly under two pages, sometimes whole pages or many pages.
pub fn decode_len(sel: u8, raw: u16) -> u64 {
    let raw = u64::from(raw);
    match sel % 8 {
        0 => 0,
        1..=4 => raw % (2 * PAGE + 1),
        5 => (raw % 4 + 1) * PAGE,
        6 => raw % (40 * PAGE),
        _ => 1 + raw % 16,
    }
}

/// A signed seek offset: negative ones, or an offset as [`decode_off`].
pub fn decode_seek(sel: u8, raw: u32) -> i64 {
    match sel % 8 {
        0 => -1,
        1 => i64::MIN,
        _ => decode_off(sel / 8, raw) as i64,
    }
}

/// An xattr value length: mostly under 700 bytes, sometimes empty or over the 64 KiB limit.
pub fn decode_xattr_len(sel: u8, raw: u16) -> u32 {
    match sel % 16 {
        0 => 65537,
        1 => 0,
        _ => u32::from(raw) % 700,
    }
}
