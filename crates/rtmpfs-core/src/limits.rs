//! What tmpfs charges against its `size` and `nr_inodes` limits, besides file pages: inode
//! space per inode, link, directory entry and xattr. The counters these are charged to are
//! [`crate::mm::Quota`]s.

/// Inode space charged per inode and per extra hard link, as tmpfs's `BOGO_INODE_SIZE`.
pub(crate) const BOGO_INODE_SIZE: u64 = 1024;

/// Directory size per entry, as tmpfs's `BOGO_DIRENT_SIZE`.
pub(crate) const BOGO_DIRENT_SIZE: u64 = 20;

/// Inode space charged for an xattr, as Linux's `simple_xattr_space()`: a fixed 40 bytes plus the
/// full name and the value.
pub(crate) fn xattr_space(name_len: usize, value_len: usize) -> u64 {
    40 + name_len as u64 + value_len as u64
}
