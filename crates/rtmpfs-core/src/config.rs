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
    /// The compressed tier between RAM and swap (`compress=`): with a budget, cold pages are
    /// compressed into a pool in RAM first, and only what does not fit or does not compress goes
    /// to swap (docs/design.md, "The compressed tier"). Needs `memory_bytes`.
    pub compression: Compression,
    /// The most the compressed pool may hold, in bytes of RAM, part of `memory_bytes`
    /// (`compress_max=`); `None`: a quarter of it. Must be below `memory_bytes`.
    pub compress_max_bytes: Option<u64>,
    /// With a swap tier, run the background threads: an evictor that keeps some of the budget
    /// free, so writers rarely reclaim memory themselves, and two swap read-ahead threads for
    /// sequential readers (without them, those read ahead synchronously). Off only in
    /// deterministic tests.
    pub background_threads: bool,
    /// This filesystem is what the process is for (the FUSE daemon), so the engine manages the
    /// process's memory: a housekeeping thread gives free heap and page-pool memory back to the
    /// kernel, and, with a swap tier, the RAM budget counts the heap in use (metadata), so
    /// `memory=` bounds the process and not only file data (see `housekeeping.rs`). Off by
    /// default: a library user's heap is its own.
    pub own_process_memory: bool,
    /// Facts about the host that defaults depend on, read once.
    pub host: HostFacts,
}

/// Facts about the host, read once per process ([`HostFacts::current`]) and passed in through
/// [`Config`], so nothing in the engine reads `/proc` behind the caller's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// Total RAM in bytes (`MemTotal`): what an unlimited instance reports as free space.
    pub ram_bytes: u64,
}

impl HostFacts {
    /// The running host's facts: `MemTotal` from /proc/meminfo (1 GiB if it cannot be read).
    /// Read on the first call; later calls return the same facts.
    #[must_use]
    pub fn current() -> HostFacts {
        static HOST: std::sync::OnceLock<HostFacts> = std::sync::OnceLock::new();
        *HOST.get_or_init(|| HostFacts {
            ram_bytes: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|s| parse_mem_total(&s))
                .unwrap_or(1 << 30),
        })
    }
}

/// `MemTotal` in bytes from the text of /proc/meminfo.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The compressor of the compressed tier ([`Config::compression`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compressed tier: cold pages go straight to swap.
    #[default]
    Off,
    /// LZ4 (`lz4_flex`): the fastest, about 2x on text.
    Lz4,
    /// Zstandard at level 1 (`zstd`): slower, denser.
    Zstd,
}

impl Compression {
    /// The option's spelling: `off`, `lz4`, `zstd`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Compression::Off => "off",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
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
            compression: Compression::Off,
            compress_max_bytes: None,
            background_threads: true,
            own_process_memory: false,
            host: HostFacts::current(),
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
        self.validate_compression()?;
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

impl Config {
    /// `compress=` needs a budget, and the pool must leave frames for data.
    fn validate_compression(&self) -> Result<(), ConfigError> {
        if self.compression == Compression::Off {
            return Ok(());
        }
        let Some(mem) = self.memory_bytes else {
            return Err(ConfigError(format!(
                "compress={} needs memory= (the compressed pool is part of the RAM budget)",
                self.compression.name()
            )));
        };
        if let Some(max) = self.compress_max_bytes {
            if max >= mem {
                return Err(ConfigError(format!(
                    "compress_max ({max} bytes) must be below memory ({mem} bytes)"
                )));
            }
        }
        Ok(())
    }

    /// The compressed pool's cap in bytes, when there is a pool.
    #[must_use]
    pub fn compress_max(&self) -> Option<u64> {
        match (self.compression, self.memory_bytes) {
            (Compression::Off, _) | (_, None) => None,
            (_, Some(mem)) => Some(self.compress_max_bytes.unwrap_or(mem / 4)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mem_total;

    #[test]
    fn mem_total_is_read_in_bytes() {
        let meminfo = "MemFree:         1000 kB\nMemTotal:       16384 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(16384 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
    }
}
