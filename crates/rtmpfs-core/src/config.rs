//! Configuration of a filesystem instance: limits, root attributes, policy switches.

use std::path::PathBuf;

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
    /// The RAM budget for file data in bytes (`memory=`), rounded down to whole pages. `None`:
    /// no separate budget, every page stays resident (up to `size`). With a budget, cold pages
    /// go to the swap file (or, with `swap: None`, the budget is a hard cap: `NoSpace`).
    pub memory_bytes: Option<u64>,
    /// Where and how pages leave RAM when a budget is set; `None` is `noswap`.
    pub swap: Option<SwapConfig>,
    /// With a swap tier, run the background threads: an evictor that keeps some of the budget
    /// free, so writers rarely reclaim memory themselves, and two swap read-ahead threads for
    /// sequential readers (without them, those read ahead synchronously). Off only in
    /// deterministic tests.
    pub background_threads: bool,
}

/// The private swap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapConfig {
    /// Directory that holds the swap file (`swap=`). The file is anonymous (`O_TMPFILE`).
    pub dir: PathBuf,
    /// Most bytes the swap file may hold (`swap_size=`); `None`: `size - memory` (unbounded when
    /// `size` is).
    pub size_bytes: Option<u64>,
    /// Seal every swapped page with AES-256-GCM under a key held only in memory (default on).
    pub encrypt: bool,
}

impl SwapConfig {
    /// Swap in the system's temporary directory, encrypted, sized `size - memory`.
    #[must_use]
    pub fn in_temp_dir() -> SwapConfig {
        SwapConfig {
            dir: std::env::temp_dir(),
            size_bytes: None,
            encrypt: true,
        }
    }
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
            memory_bytes: None,
            swap: None,
            background_threads: true,
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
            return Err(ConfigError(format!("mode {:o} has bits outside 07777", self.root_mode)));
        }
        if let Some(size) = self.size_bytes {
            if size < crate::PAGE_SIZE {
                return Err(ConfigError(format!(
                    "size {size} is smaller than one page ({} bytes)",
                    crate::PAGE_SIZE
                )));
            }
        }
        if let Some(mem) = self.memory_bytes {
            if mem < crate::PAGE_SIZE {
                return Err(ConfigError(format!(
                    "memory {mem} is smaller than one page ({} bytes)",
                    crate::PAGE_SIZE
                )));
            }
            if let Some(size) = self.size_bytes {
                if mem > size {
                    return Err(ConfigError(format!(
                        "memory ({mem} bytes) is larger than size ({size} bytes)"
                    )));
                }
            }
        } else if self.swap.as_ref().is_some_and(|s| s.size_bytes.is_some()) {
            return Err(ConfigError(
                "swap_size needs memory= (a RAM budget) to mean anything".into(),
            ));
        }
        if let Some(swap) = &self.swap {
            if swap.size_bytes.is_some_and(|b| b < crate::PAGE_SIZE) {
                return Err(ConfigError("swap_size is smaller than one page".into()));
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
