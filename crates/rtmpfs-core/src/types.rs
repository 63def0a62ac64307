//! Plain data types of the engine's API: identifiers, attributes, credentials, times.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Size of a data page. Every allocation, limit and `st_blocks` figure is in these units.
pub const PAGE_SIZE: u64 = rtmpfs_pages::PAGE as u64;

/// The largest file size, as Linux's `MAX_LFS_FILESIZE` on 64-bit: writes, truncates and
/// fallocates past it fail with [`crate::FsError::FileTooBig`].
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Longest name component, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Longest symlink target, in bytes (`PAGE_SIZE - 1`, as tmpfs).
pub const SYMLINK_MAX: usize = 4095;

/// Inode number. Root is [`Ino::ROOT`]; numbers are never reused while the filesystem lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory's inode number (as FUSE's `FUSE_ROOT_ID`).
    pub const ROOT: Ino = Ino(1);
}

/// Open file handle, returned by `open`/`create`/`opendir`, valid until released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fh(pub u64);

/// The kind of an inode. Fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Regular file with sparse paged data.
    RegularFile,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    NamedPipe,
    /// Unix domain socket node.
    Socket,
    /// Character device node.
    CharDevice,
    /// Block device node.
    BlockDevice,
}

impl FileKind {
    /// The `S_IFMT` bits of this kind.
    #[must_use]
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::RegularFile => libc::S_IFREG,
            FileKind::Directory => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::NamedPipe => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
        }
    }

    /// The kind named by the `S_IFMT` bits of a mode, if any.
    #[must_use]
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Some(FileKind::RegularFile),
            libc::S_IFDIR => Some(FileKind::Directory),
            libc::S_IFLNK => Some(FileKind::Symlink),
            libc::S_IFIFO => Some(FileKind::NamedPipe),
            libc::S_IFSOCK => Some(FileKind::Socket),
            libc::S_IFCHR => Some(FileKind::CharDevice),
            libc::S_IFBLK => Some(FileKind::BlockDevice),
            _ => None,
        }
    }
}

/// A point in time with nanoseconds, seconds since the Unix epoch (may be negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timespec {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsec: u32,
}

impl Timespec {
    /// The current wall-clock time.
    #[must_use]
    pub fn now() -> Timespec {
        Timespec::from_system_time(SystemTime::now())
    }

    /// Convert to `SystemTime` (saturating at the representable range).
    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        use std::time::Duration;
        if self.sec >= 0 {
            UNIX_EPOCH + Duration::new(self.sec.unsigned_abs(), self.nsec)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.sec.unsigned_abs()) + Duration::from_nanos(u64::from(self.nsec))
        }
    }

    /// Convert from `SystemTime`.
    #[must_use]
    pub fn from_system_time(t: SystemTime) -> Timespec {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec {
                sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let sec = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    Timespec { sec, nsec: 0 }
                } else {
                    Timespec {
                        sec: sec - 1,
                        nsec: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }
}

/// A time to set with `setattr`: the current time or an explicit one (`UTIME_NOW` vs a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The current time (`UTIME_NOW`).
    Now,
    /// An explicit time.
    At(Timespec),
}

/// Attributes of an inode, as `stat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// Generation: with `ino`, unique for the life of the filesystem.
    pub generation: u64,
    /// Kind of file.
    pub kind: FileKind,
    /// Permission bits and set-id/sticky bits (`mode & 0o7777`).
    pub perm: u32,
    /// Number of hard links (0 for an unlinked-but-open or anonymous file).
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for device nodes, else 0.
    pub rdev: u64,
    /// Size in bytes (directories: 20 per entry plus 40, as tmpfs; symlinks: target length).
    pub size: u64,
    /// 512-byte blocks allocated: data pages (resident, swapped or reserved) times 8.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Last access.
    pub atime: Timespec,
    /// Last data modification.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
    /// Creation (birth) time.
    pub btime: Timespec,
}

impl Attr {
    /// Full `st_mode`: kind bits plus permission bits.
    #[must_use]
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.perm
    }
}

/// Which attributes `setattr` changes; `None` leaves a field alone.
///
/// Every `setattr` call updates ctime, as Linux's `notify_change` does, so `chown(-1, -1)`
/// (all fields `None`) still changes ctime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (`& 0o7777`).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (regular files only): truncate or extend.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// Explicit ctime (FUSE can send one); otherwise ctime becomes now.
    pub ctime: Option<Timespec>,
    /// With `size`: this is an `open(O_TRUNC)`, which, as `ftruncate` does (Linux's
    /// `do_truncate` with `ATTR_MTIME|ATTR_CTIME`), stamps mtime and ctime and clears set-id
    /// bits even when the size does not change; `truncate(2)` by path does that only when it
    /// changes the file. A setattr through a handle (`fh`) always counts as `ftruncate`.
    pub open_trunc: bool,
}

/// Who clears set-user-ID/set-group-ID bits when a file's data changes (write, truncate,
/// `O_TRUNC`, fallocate, copy_file_range): an argument of the engine calls that change data,
/// for a server whose client may already have done it (the Linux FUSE client does, unless
/// `FUSE_HANDLE_KILLPRIV_V2` gives the job to the server), so that the bits are cleared once,
/// by one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetIdClearing {
    /// The engine clears them by the caller's credentials, as Linux does: set-user-ID, and
    /// set-group-ID as `setattr_should_drop_sgid` says, unless the caller holds `CAP_FSETID`
    /// ([`Ctx::has_fsetid`]).
    #[default]
    Engine,
    /// The client has cleared whatever had to go before the request (or decided nothing
    /// must): the engine leaves the bits alone, as for a caller holding `CAP_FSETID` (chown
    /// still drops the set-id bits it drops whoever asks).
    Kernel,
}

/// The credentials of a caller: who asks. Permission checks use them; new inodes are owned by
/// `uid` and `gid` (or the directory's group, below a set-group-ID directory).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ctx {
    /// Effective (fs) user ID.
    pub uid: u32,
    /// Effective (fs) group ID.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// File-creation mask applied to the mode of new inodes (0 when the caller already applied it).
    pub umask: u32,
    /// Whether the caller holds `CAP_FSETID` (keeps set-user-ID/set-group-ID bits when it writes
    /// or truncates). `None`: assume it does exactly when it is root. A FUSE server knows better
    /// (the kernel says so per request) and sets it.
    pub cap_fsetid: Option<bool>,
}

impl Ctx {
    /// Root credentials (uid 0, gid 0): every permission check passes, as with all capabilities.
    #[must_use]
    pub fn root() -> Ctx {
        Ctx::default()
    }

    /// Unprivileged credentials with no supplementary groups.
    #[must_use]
    pub fn user(uid: u32, gid: u32) -> Ctx {
        Ctx {
            uid,
            gid,
            groups: Vec::new(),
            umask: 0,
            cap_fsetid: None,
        }
    }

    /// Whether the caller is privileged (uid 0 holds every capability here).
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the caller holds `CAP_FSETID` (see [`Ctx::cap_fsetid`]).
    #[must_use]
    pub fn has_fsetid(&self) -> bool {
        self.cap_fsetid.unwrap_or(self.uid == 0)
    }

    /// Whether `gid` is the caller's group or one of its supplementary groups.
    #[must_use]
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Access mask bits for [`crate::Filesystem::access`] (as `access(2)`'s `R_OK|W_OK|X_OK`).
pub mod access {
    /// Test for existence only.
    pub const F_OK: u32 = 0;
    /// Read.
    pub const R_OK: u32 = 4;
    /// Write.
    pub const W_OK: u32 = 2;
    /// Execute or search.
    pub const X_OK: u32 = 1;
}

/// Flags of `open`: the access mode and the flags the engine acts on. Built from `open(2)` flags
/// with [`OpenFlags::from_libc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenFlags {
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Every write goes to the end of the file.
    pub append: bool,
    /// Truncate to 0 on open (needs `write`).
    pub truncate: bool,
    /// Do not update atime on reads (`O_NOATIME`).
    pub noatime: bool,
}

impl OpenFlags {
    /// Read-only.
    pub const READ: OpenFlags = OpenFlags {
        read: true,
        write: false,
        append: false,
        truncate: false,
        noatime: false,
    };
    /// Write-only.
    pub const WRITE: OpenFlags = OpenFlags {
        read: false,
        write: true,
        append: false,
        truncate: false,
        noatime: false,
    };
    /// Read and write.
    pub const READ_WRITE: OpenFlags = OpenFlags {
        read: true,
        write: true,
        append: false,
        truncate: false,
        noatime: false,
    };

    /// Decode `open(2)` flags.
    #[must_use]
    pub fn from_libc(flags: i32) -> OpenFlags {
        let acc = flags & libc::O_ACCMODE;
        OpenFlags {
            read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            append: flags & libc::O_APPEND != 0,
            truncate: flags & libc::O_TRUNC != 0,
            noatime: flags & libc::O_NOATIME != 0,
        }
    }
}

/// Flags of `rename`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenameFlags {
    /// Fail with `Exists` if the target exists (`RENAME_NOREPLACE`).
    pub noreplace: bool,
    /// Atomically swap source and target, both of which must exist (`RENAME_EXCHANGE`).
    pub exchange: bool,
    /// Leave a whiteout (a 0:0 character device) at the source name (`RENAME_WHITEOUT`).
    pub whiteout: bool,
}

impl RenameFlags {
    /// Decode `renameat2(2)` flags; unknown bits are `Invalid`.
    ///
    /// # Errors
    /// [`crate::FsError::Invalid`] for unknown bits.
    pub fn from_libc(flags: u32) -> crate::Result<RenameFlags> {
        const NOREPLACE: u32 = 1;
        const EXCHANGE: u32 = 2;
        const WHITEOUT: u32 = 4;
        if flags & !(NOREPLACE | EXCHANGE | WHITEOUT) != 0 {
            return Err(crate::FsError::Invalid);
        }
        Ok(RenameFlags {
            noreplace: flags & NOREPLACE != 0,
            exchange: flags & EXCHANGE != 0,
            whiteout: flags & WHITEOUT != 0,
        })
    }
}

/// What `fallocate` does. Linux tmpfs supports exactly these; anything else is `NotSupported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallocateMode {
    /// Reserve the range and extend the file size if the range ends past it (mode 0).
    Allocate,
    /// Reserve the range, leave the size alone (`FALLOC_FL_KEEP_SIZE`).
    KeepSize,
    /// Free the range; it reads zero afterwards (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`).
    PunchHole,
}

impl FallocateMode {
    /// Decode `fallocate(2)` mode bits.
    ///
    /// # Errors
    /// [`crate::FsError::NotSupported`] for any mode tmpfs does not support (as tmpfs);
    /// punch without keep-size is [`crate::FsError::NotSupported`] too.
    pub fn from_libc(mode: i32) -> crate::Result<FallocateMode> {
        const KEEP_SIZE: i32 = 0x01;
        const PUNCH_HOLE: i32 = 0x02;
        match mode {
            0 => Ok(FallocateMode::Allocate),
            KEEP_SIZE => Ok(FallocateMode::KeepSize),
            m if m == PUNCH_HOLE | KEEP_SIZE => Ok(FallocateMode::PunchHole),
            _ => Err(crate::FsError::NotSupported),
        }
    }
}

/// `lseek` whence values the engine computes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekWhence {
    /// Next offset at or after `offset` that holds data (`SEEK_DATA`).
    Data,
    /// Next offset at or after `offset` that is a hole, or EOF (`SEEK_HOLE`).
    Hole,
}

/// One directory entry returned by `readdir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode of the entry.
    pub ino: Ino,
    /// Cookie of this entry: pass it as `offset` to continue after it. Stable for the entry's life.
    pub cookie: u64,
    /// Kind of the entry's inode.
    pub kind: FileKind,
    /// Name (bytes, no `/` or NUL).
    pub name: EntryName,
}

/// A directory entry's name as a listing returns it: the bytes the directory itself keeps,
/// shared (a reference count, not a copy), so that a listing allocates nothing per entry.
/// Compares with byte strings, slices and vectors; dereferences to `[u8]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryName(Arc<[u8]>);

impl EntryName {
    /// The name as an `OsStr` (Unix names are bytes).
    #[must_use]
    pub fn as_os_str(&self) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(&self.0)
    }
}

impl From<Arc<[u8]>> for EntryName {
    fn from(name: Arc<[u8]>) -> Self {
        EntryName(name)
    }
}

impl From<&[u8]> for EntryName {
    fn from(name: &[u8]) -> Self {
        EntryName(name.into())
    }
}

impl From<EntryName> for Vec<u8> {
    fn from(name: EntryName) -> Self {
        name.0.to_vec()
    }
}

impl std::ops::Deref for EntryName {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for EntryName {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::borrow::Borrow<[u8]> for EntryName {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for EntryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl PartialEq<[u8]> for EntryName {
    fn eq(&self, other: &[u8]) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&[u8]> for EntryName {
    fn eq(&self, other: &&[u8]) -> bool {
        *self.0 == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for EntryName {
    fn eq(&self, other: &[u8; N]) -> bool {
        *self.0 == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for EntryName {
    fn eq(&self, other: &&[u8; N]) -> bool {
        *self.0 == other[..]
    }
}

impl PartialEq<Vec<u8>> for EntryName {
    fn eq(&self, other: &Vec<u8>) -> bool {
        *self.0 == other[..]
    }
}

/// One entry returned by `readdirplus`: the entry and its attributes. Every entry but `.` and
/// `..` holds a lookup reference for the caller (see [`crate::Filesystem::readdirplus`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryPlus {
    /// The entry, as `readdir` returns it.
    pub entry: DirEntry,
    /// Its inode's attributes; `None` only for a `.` or `..` whose inode vanished mid-listing.
    pub attr: Option<Attr>,
}

impl DirEntryPlus {
    /// Whether this is `.` or `..`, which carry no lookup reference.
    #[must_use]
    pub fn is_dot(&self) -> bool {
        self.entry.name == b"." || self.entry.name == b".."
    }
}

/// What `statfs` reports, tmpfs style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Block size (`PAGE_SIZE`).
    pub bsize: u32,
    /// Total blocks (the `size` limit in pages; a large non-zero figure when unlimited).
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users (same as `bfree`).
    pub bavail: u64,
    /// Total inodes (`nr_inodes`; a large non-zero figure when unlimited).
    pub files: u64,
    /// Free inodes (remaining inode space / 1024, as tmpfs).
    pub ffree: u64,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size.
    pub frsize: u32,
}

/// Live usage figures of the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Data pages charged against `size`: resident + swapped + reserved.
    pub charged_pages: u64,
    /// Pages whose data is in RAM.
    pub resident_pages: u64,
    /// Pages whose data is in the swap file.
    pub swapped_pages: u64,
    /// Pages reserved by fallocate and not yet written: charged, read as zero, cost no RAM.
    pub reserved_pages: u64,
    /// Inodes alive (linked, open, or anonymous).
    pub inodes: u64,
    /// Inode space used, in bytes (1024 per inode and per extra hard link, plus xattrs).
    pub inode_space_used: u64,
    /// Pages whose data was lost to a failed swap read (EIO on access).
    pub poisoned_pages: u64,
    /// The RAM budget in pages (`memory=`), if any.
    pub memory_limit_pages: Option<u64>,
    /// Frames alive and charged to the RAM budget (resident pages plus frames in flight).
    pub frames_in_use: u64,
    /// Pages of the RAM budget counted for the process's heap in use (metadata), with
    /// `Config::own_process_memory` and a swap tier: file data gets `memory_limit_pages` less
    /// these (never less than an eighth of the budget).
    pub memory_heap_pages: u64,
    /// Swap slots in use: swapped pages plus swap copies kept by clean resident pages.
    pub swap_slots_used: u64,
    /// Swap capacity in pages, if bounded.
    pub swap_capacity_pages: Option<u64>,
    /// Bytes spanned by the swap file.
    pub swap_file_bytes: u64,
    /// Whether swapped pages are encrypted.
    pub swap_encrypted: bool,
    /// Pages written to swap and dropped from RAM.
    pub evictions: u64,
    /// Pages dropped from RAM without I/O (their swap copy was still valid).
    pub clean_evictions: u64,
    /// Pages read back from swap.
    pub swap_ins: u64,
    /// Of those, pages read back ahead of a sequential reader by the read-ahead thread.
    pub readahead_swap_ins: u64,
    /// Failed swap reads (each poisons a page).
    pub swap_read_errors: u64,
    /// Failed swap writes (the page stayed in RAM).
    pub swap_write_errors: u64,
    /// Times a thread had to reclaim or wait for memory itself.
    pub direct_reclaims: u64,
    /// The compressed tier's compressor (`Off`: no compressed tier).
    pub compression: crate::config::Compression,
    /// Pages whose data is compressed in the pool (RAM).
    pub compressed_pages: u64,
    /// Pages of zeros evicted as nothing (no RAM, no swap).
    pub zero_pages: u64,
    /// RAM the compressed pool holds, in bytes (entries and their allocator overhead), charged
    /// to the RAM budget.
    pub pool_bytes: u64,
    /// The most the pool may hold now, in bytes (`compress_max=`), if there is a pool.
    pub pool_limit_bytes: Option<u64>,
    /// Pages stored in the pool (compressed) since the start.
    pub pool_stores: u64,
    /// Pages of zeros evicted as nothing since the start.
    pub pool_zero_pages_stored: u64,
    /// Pages that did not compress well enough and went to swap instead.
    pub pool_rejected: u64,
    /// Of those, the pages the estimate rejected before any compressor's trial (random or
    /// already compressed data: docs/design.md, "The compressed tier").
    pub pool_rejected_by_estimate: u64,
    /// Faults and reads served from the pool (decompressions, no I/O).
    pub pool_hits: u64,
    /// Pool entries written to swap because the pool was full.
    pub pool_writebacks: u64,
    /// Bytes written to the swap file (whole 4 KiB slots), since the start.
    pub swap_bytes_written: u64,
    /// Bytes read from the swap file (whole slots, or the sectors of a compressed record),
    /// since the start.
    pub swap_bytes_read: u64,
    /// Swap slots holding compressed records (part of `swap_slots_used`).
    pub swap_record_slots: u64,
    /// Compressed records live in those slots (pool entries written back and not read since).
    pub swap_records: u64,
    /// Their bytes (sealed compressed data; the rest of those slots is dead records or padding).
    pub swap_record_bytes: u64,
    /// Compressed records written to swap, since the start.
    pub swap_records_written: u64,
    /// Compressed records read back from swap, since the start.
    pub swap_records_read: u64,
    /// RAM held by the page pool that data pages come from: pages in use plus free pages kept
    /// for reuse (at most 4 MiB plus 256 KiB per thread). Process-wide: shared by every
    /// `Filesystem` in the process.
    pub page_pool_ram_bytes: u64,
    /// Address space the page pool has mapped (RAM or given back to the kernel). Process-wide.
    pub page_pool_mapped_bytes: u64,
    /// Of `page_pool_ram_bytes`, the free pages kept with their contents for reuse (given back
    /// once idle for a second). Process-wide.
    pub page_pool_free_bytes: u64,
    /// C heap in use in allocations below 256 KiB: in the daemon, the engine's metadata
    /// (inodes, directory entries, names, xattrs, page maps, frame headers) and small buffers.
    /// Process-wide (glibc's `mallinfo2`; 0 on other C libraries).
    pub metadata_bytes: u64,
    /// C heap in use in allocations of 256 KiB or more, each its own mapping: in the daemon,
    /// the FUSE request and reply buffers. Process-wide (0 on other C libraries).
    pub buffer_bytes: u64,
    /// C heap free but still mapped: RAM until the housekeeping trims it (or it is reused).
    /// Process-wide (0 on other C libraries).
    pub heap_free_bytes: u64,
}

impl Usage {
    /// The RAM these figures account for, in bytes: the page pool's (data pages in use, free
    /// pages kept) plus the C heap's (metadata, buffers, free heap not yet trimmed). An upper
    /// bound of the daemon's RSS beyond code, stacks and kernel buffers (free heap may already
    /// have been given back). Process-wide.
    #[must_use]
    pub fn accounted_ram_bytes(&self) -> u64 {
        self.page_pool_ram_bytes + self.metadata_bytes + self.buffer_bytes + self.heap_free_bytes
    }

    /// The compressed pool's ratio: the bytes of the pages it holds over the RAM it takes
    /// (`None` while it holds nothing).
    #[must_use]
    pub fn pool_ratio(&self) -> Option<f64> {
        (self.pool_bytes > 0).then(|| (self.compressed_pages * PAGE_SIZE) as f64 / self.pool_bytes as f64)
    }
}

/// Whether a read may wait for swap I/O ([`crate::Filesystem::read_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Swap pages in as needed (and wait for read-ahead windows in flight).
    Wait,
    /// Do no I/O and never wait: answer [`ReadOutcome::WouldBlock`] when a page of the range
    /// is swapped out (Linux's `IOCB_NOWAIT`). For a server thread that must stay responsive.
    NoWait,
}

/// What a [`crate::Filesystem::read_with`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ReadOutcome {
    /// Bytes read into the buffer, fewer than asked only at end of file.
    Done(usize),
    /// [`ReadMode::NoWait`] met a page that needs swap I/O: nothing was read (the buffer may
    /// hold part of the range) and nothing changed; retry with [`ReadMode::Wait`].
    WouldBlock,
}
