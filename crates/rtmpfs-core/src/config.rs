//! Configuration of a filesystem instance: limits, root attributes, policy switches.

use crate::error::ConfigError;

/// How a [`crate::Filesystem`] is built. `Config::default()` is an unlimited tmpfs whose root is
/// `1777 root:root`, with permission checks on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The `size=` limit in bytes, rounded down to whole pages; `None` is unlimited.
    pub size_bytes: Option<u64>,
    /// The `nr_inodes=` limit; `None` is unlimited.
    pub max_inodes: Option<u64>,
    /// Root directory permission bits (`mode=`, default `0o1777`).
    pub root_mode: u32,
    /// Root directory owner (`uid=`).
    pub root_uid: u32,
    /// Root directory group (`gid=`).
    pub root_gid: u32,
    /// Check permissions against the caller's [`crate::Ctx`] in the engine. The FUSE adapter turns
    /// this off because the kernel checks them (`default_permissions`) with the caller's real
    /// supplementary groups, which FUSE does not send to the daemon.
    pub enforce_permissions: bool,
    /// Keep inodes that are unlinked and closed until [`crate::Filesystem::forget`] drops their
    /// lookup count (the FUSE contract). When off, lookups do not pin inodes and an inode's shell
    /// goes away with its last link and handle. Data is freed at last unlink + close either way.
    pub track_lookups: bool,
    /// Refuse every change with `ReadOnly` (the `ro` mount option).
    pub read_only: bool,
    /// Do not update atime on reads (`noatime`); otherwise relatime rules apply.
    pub noatime: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            size_bytes: None,
            max_inodes: None,
            root_mode: 0o1777,
            root_uid: 0,
            root_gid: 0,
            enforce_permissions: true,
            track_lookups: false,
            read_only: false,
            noatime: false,
        }
    }
}

impl Config {
    /// Check the configuration for nonsense.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.root_mode & !0o7777 != 0 {
            return Err(ConfigError(format!(
                "mode {:o} has bits outside 07777",
                self.root_mode
            )));
        }
        if let Some(size) = self.size_bytes {
            if size < crate::PAGE_SIZE {
                return Err(ConfigError(format!(
                    "size {size} is smaller than one page ({} bytes)",
                    crate::PAGE_SIZE
                )));
            }
        }
        if self.max_inodes == Some(0) {
            return Err(ConfigError(
                "nr_inodes must be positive (leave it unset for unlimited)".into(),
            ));
        }
        Ok(())
    }
}
