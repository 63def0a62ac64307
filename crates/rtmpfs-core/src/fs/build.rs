//! Building a filesystem: its configuration, memory manager and root directory.

use super::handles::Handles;
use super::{AtimeRule, Filesystem};
use crate::config::Config;
use crate::dir::DirBody;
use crate::error::ConfigError;
use crate::ids::{Ids, Striped};
use crate::inode::{Body, Inode, InodeTable, Meta};
use crate::limits::BOGO_INODE_SIZE;
use crate::mm::{MemoryManager, Quota};
use crate::swap::{FileSwap, SwapBackend};
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicU64, LockRank, Mutex, RwLock};
use crate::types::{FileKind, Ino, Timespec};

impl Filesystem {
    /// Build an empty filesystem whose root directory has the configured mode and owners.
    ///
    /// # Errors
    /// A [`ConfigError`] for a nonsensical configuration.
    pub fn new(config: Config) -> std::result::Result<Filesystem, ConfigError> {
        let backend: Option<Box<dyn SwapBackend>> = match (&config.memory_bytes, &config.swap) {
            (Some(_), Some(swap)) => {
                config.validate()?;
                let file = FileSwap::create(&swap.dir).map_err(|e| ConfigError(e.to_string()))?;
                Some(Box::new(file))
            }
            _ => None,
        };
        Self::build(config, backend)
    }

    /// Build a filesystem whose swap tier stores pages in `backend` instead of a swap file (an
    /// in-memory or fault-injecting backend, for tests; feature `test-util`). `config.memory_bytes` must be set;
    /// `config.swap` still gives `size_bytes` (capacity) and `encrypt`.
    ///
    /// # Errors
    /// A [`ConfigError`] for a nonsensical configuration or a missing RAM budget.
    #[cfg(any(test, feature = "test-util"))]
    pub fn with_swap_backend(
        config: Config,
        backend: Box<dyn SwapBackend>,
    ) -> std::result::Result<Filesystem, ConfigError> {
        if config.memory_bytes.is_none() {
            return Err(ConfigError("a swap backend needs memory= (a RAM budget)".into()));
        }
        Self::build(config, Some(backend))
    }

    pub(super) fn build(
        config: Config,
        backend: Option<Box<dyn SwapBackend>>,
    ) -> std::result::Result<Filesystem, ConfigError> {
        config.validate()?;
        let ispace = Quota::new(config.max_inodes.map(|n| n.saturating_mul(BOGO_INODE_SIZE)));
        let mm = MemoryManager::start(&config, backend)?;
        // With a swap tier, the budget may count the process heap (see housekeeping.rs).
        let housekeeping = crate::housekeeping::Housekeeping::for_config(&config, mm.swapping_budget())?;
        let fs = Filesystem {
            table: InodeTable::new(),
            handles: Handles::new(),
            inos: Ids::new(Ino::ROOT.0 + 1),
            generation: instance_generation(),
            mm,
            ispace,
            live_inodes: Striped::new(),
            rename_lock: Mutex::new(LockRank::Rename, ()),
            gate: RwLock::new(LockRank::Snapshot, ()),
            snapshot_run: Mutex::new(LockRank::SnapshotRun, 0),
            snap_epoch: AtomicU64::new(0),
            snap_store: Mutex::new(LockRank::SnapStore, None),
            #[cfg(any(test, feature = "test-util"))]
            snapshot_hook: Mutex::new(LockRank::SnapshotHook, None),
            read_only: AtomicBool::new(config.read_only),
            atime_rule: AtomicU32::new(if config.noatime {
                AtimeRule::Never as u32
            } else {
                AtimeRule::Relatime as u32
            }),
            nodiratime: AtomicBool::new(false),
            _housekeeping: housekeeping,
            config,
        };
        fs.ispace
            .charge(BOGO_INODE_SIZE)
            .map_err(|_| ConfigError("nr_inodes too small for the root".into()))?;
        let now = Timespec::now();
        let meta = Meta::new(fs.config.root_mode, fs.config.root_uid, fs.config.root_gid, 2, now);
        let root = Inode::new(
            Ino::ROOT,
            fs.generation,
            FileKind::Directory,
            meta,
            Body::Dir(DirBody::new(Ino::ROOT)),
        );
        fs.table.insert(Arc::new(root));
        fs.live_inodes.add(1);
        Ok(fs)
    }
}

fn instance_generation() -> u64 {
    let t = Timespec::now();
    (t.sec as u64).wrapping_mul(1_000_000_007) ^ u64::from(t.nsec) ^ (u64::from(std::process::id()) << 32)
}
