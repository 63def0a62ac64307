//! The filesystem: the public API of the engine.
//!
//! Every method takes `&self` and may be called from many threads at once. Methods are split by
//! topic across the submodules (`build`, `attrs`, `stats`, `namespace`, `rename`, `handles`,
//! `io`, `xattrs`); this one holds the struct, the mount-time switches (read-only, atime rule,
//! limits) and the helpers the submodules share.

mod acls;
mod attrs;
mod build;
mod handles;
mod io;
mod memory_limit;
mod namespace;
mod rename;
mod stats;
mod xattrs;

pub use memory_limit::MemoryLimitError;

pub use xattrs::{fit_xattr_reply, XattrFit};

use crate::config::Config;
use crate::error::{FsError, Result};
use crate::ids::{Ids, Striped};
use crate::inode::{Inode, InodeTable, Meta};
use crate::limits::BOGO_INODE_SIZE;
use crate::mm::{MemoryManager, Quota};
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicU64, Mutex, Ordering, ReadGuard, RwLock};
use crate::types::{Attr, FileKind, Ino, Timespec, PAGE_SIZE};
use handles::Handles;

/// An in-memory tmpfs instance.
///
/// # Lookup counts
/// With [`Config::track_lookups`], every method that returns a new reference to an inode
/// (`lookup`, `create`, `mkdir`, `mknod`, `symlink`, `link`, `tmpfile`) adds one to its lookup
/// count, and [`Filesystem::forget`] removes them; an inode that is unlinked and closed keeps its
/// attributes (not its data) until its count reaches zero, as the FUSE protocol requires.
///
/// # Unlinked files
/// An unlinked file keeps its data while a handle is open and reports `nlink == 0`; the data and
/// its inode space are freed when the last handle closes.
pub struct Filesystem {
    config: Config,
    pub(crate) table: InodeTable,
    handles: Handles,
    /// Inode numbers; never reused (handed out in per-thread batches).
    inos: Ids,
    /// Generation given to every inode of this instance (inode numbers are never reused, so one
    /// per instance keeps `(ino, generation)` unique even across a restore into a new instance).
    pub(crate) generation: u64,
    /// Page accounting and the memory tier, shared with its background threads.
    pub(crate) mm: Arc<MemoryManager>,
    /// Inode space in bytes (`nr_inodes * 1024` when limited).
    pub(crate) ispace: Quota,
    /// Live inodes (not yet released).
    pub(crate) live_inodes: Striped,
    /// Rank `Rename`: held by cross-directory renames; parent pointers change only under it.
    rename_lock: Mutex<()>,
    /// Rank `Snapshot`: every change to the tree (names, attributes, xattrs, file contents)
    /// holds it shared, for the whole change; [`Filesystem::snapshot`] holds it exclusively to
    /// start its epoch, so the epoch falls between changes (`image/cow.rs`).
    pub(crate) gate: RwLock<()>,
    /// Rank `SnapshotRun`: one snapshot at a time (a capture's pins are per frame and slot, not
    /// per snapshot). Held for the whole snapshot, I/O included; no change takes it. Holds the
    /// last snapshot epoch handed out.
    pub(crate) snapshot_run: Mutex<u64>,
    /// The epoch of the snapshot now walking the tree (0: none). Set under the gate held
    /// exclusively, so a change (which holds it shared) sees one value for its whole length;
    /// cleared when the walk ends. See `image/cow.rs`.
    pub(crate) snap_epoch: AtomicU64,
    /// Rank `SnapStore`: the pre-images changers captured for the walking snapshot, by inode
    /// number (`None` when no snapshot walks).
    pub(crate) snap_store: Mutex<Option<crate::image::SnapStore>>,
    /// Rank `SnapshotHook`: run once by the next snapshot after it lets go of the gate, before
    /// it reads any page (tests hold the walker there; feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) snapshot_hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Refuse changes (`ro`); starts as `config.read_only`, switched by remount.
    read_only: AtomicBool,
    /// How reads update atime (an [`AtimeRule`] as u32); starts as `config.noatime` says,
    /// switched by remount.
    atime_rule: AtomicU32,
    /// Share in the memory housekeeping thread, with [`Config::own_process_memory`].
    _housekeeping: Option<crate::housekeeping::Housekeeping>,
    /// Directories' atime stays (`nodiratime`); switched by remount.
    nodiratime: AtomicBool,
}

/// File flags (`chattr`, `FS_IOC_GETFLAGS`/`SETFLAGS`): Linux's `FS_*_FL` values, the ones
/// tmpfs supports. The engine enforces them on every path (over FUSE the kernel does not).
pub mod file_flags {
    /// `i`: no change at all: not written, truncated, linked, renamed, removed, nor its
    /// attributes or xattrs changed, nor opened for writing; a directory takes no new entries.
    pub const IMMUTABLE: u32 = 0x10;
    /// `a`: written only at its end; not truncated, linked, renamed, removed, nor its
    /// attributes or xattrs changed; a directory's entries are not removed.
    pub const APPEND: u32 = 0x20;
    /// `d`: not dumped (recorded only).
    pub const NODUMP: u32 = 0x40;
    /// `A`: reads leave atime alone.
    pub const NOATIME: u32 = 0x80;
    /// Every flag tmpfs supports; others are `NotSupported`.
    pub const SUPPORTED: u32 = IMMUTABLE | APPEND | NODUMP | NOATIME;
}

/// How reads update access times: the mount options `relatime`, `strictatime`, `noatime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum AtimeRule {
    /// Only when atime is not newer than mtime or ctime, or is a day old (the default).
    #[default]
    Relatime = 0,
    /// On every read.
    Strict = 1,
    /// Never.
    Never = 2,
}

impl AtimeRule {
    fn from_u32(v: u32) -> AtimeRule {
        match v {
            1 => AtimeRule::Strict,
            2 => AtimeRule::Never,
            _ => AtimeRule::Relatime,
        }
    }
}

impl std::fmt::Debug for Filesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filesystem")
            .field("config", &self.config)
            .field("usage", &self.usage())
            .finish_non_exhaustive()
    }
}

impl Filesystem {
    /// The configuration this instance was built with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether changes are refused (`ro`).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    /// Switch read-only on or off (remount). While read-only, every change fails with
    /// `ReadOnly` and reads leave atime alone.
    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Release);
    }

    /// Set how reads update access times (mount and remount: `relatime`, `strictatime`,
    /// `noatime`) and whether directories' stay (`nodiratime`). Writes, `utimensat` and
    /// truncation set times whatever the rule.
    pub fn set_atime_rule(&self, rule: AtimeRule, nodiratime: bool) {
        self.atime_rule.store(rule as u32, Ordering::Relaxed);
        self.nodiratime.store(nodiratime, Ordering::Relaxed);
    }

    /// The access-time rule in force and whether `nodiratime` is on.
    #[must_use]
    pub fn atime_rule(&self) -> (AtimeRule, bool) {
        let rule = AtimeRule::from_u32(self.atime_rule.load(Ordering::Relaxed));
        (rule, self.nodiratime.load(Ordering::Relaxed))
    }

    /// Change the `size` and `nr_inodes` limits (remount), as tmpfs: `None` leaves a limit as
    /// it is. A limit below what is in use, or a limit on an instance that was built unlimited,
    /// is refused ("cannot retroactively limit size").
    ///
    /// # Errors
    /// `Invalid`, and nothing changes.
    pub fn set_limits(&self, size_bytes: Option<u64>, max_inodes: Option<u64>) -> Result<()> {
        let _gate = self.change_gate();
        let pages = size_bytes.map(|b| b / PAGE_SIZE);
        let ispace = max_inodes.map(|n| n.saturating_mul(BOGO_INODE_SIZE));
        for (new, budget) in [(pages, self.mm.pages_quota()), (ispace, &self.ispace)] {
            if let Some(new) = new {
                if budget.max().is_none() || new < budget.used() || new == 0 {
                    return Err(FsError::Invalid);
                }
            }
        }
        // Checked above for both, so that a refused remount changes neither.
        if let Some(p) = pages {
            self.mm.pages_quota().set_max(p)?;
        }
        if let Some(i) = ispace {
            self.ispace.set_max(i)?;
        }
        Ok(())
    }

    /// The root directory's inode number.
    #[must_use]
    pub fn root(&self) -> Ino {
        Ino::ROOT
    }

    // ----- helpers shared by the submodules -----

    /// Hold off a snapshot for the duration of a change (see `gate`). Taken first, before any
    /// other lock, and never twice by one thread (the rank checker says so).
    pub(crate) fn change_gate(&self) -> ReadGuard<'_, ()> {
        self.gate.read()
    }

    pub(crate) fn inode(&self, ino: Ino) -> Result<Arc<Inode>> {
        self.table.get(ino).ok_or(FsError::NotFound)
    }

    fn check_writable(&self) -> Result<()> {
        if self.is_read_only() {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn live_inodes_count(&self) -> u64 {
        u64::try_from(self.live_inodes.sum()).unwrap_or(0)
    }

    pub(crate) fn alloc_ino(&self) -> Ino {
        Ino(self.inos.next())
    }

    /// Give back an orphan's data and inode space and drop it from the table, once, when its
    /// last link, handle and (with [`Config::track_lookups`]) kernel lookup reference are gone.
    /// Until then it stays usable, as a Linux inode stays until evicted: a FUSE kernel may
    /// reopen it (a removed current directory, `/proc/self/fd/N` of an `O_PATH` descriptor).
    /// Called with no lock held.
    pub(crate) fn maybe_release(&self, inode: &Arc<Inode>) {
        let xattr_space = {
            let mut m = inode.meta.write();
            let referenced = self.config.track_lookups && m.lookups > 0;
            if !m.is_orphan() || m.released || referenced {
                return;
            }
            m.released = true;
            m.xattrs.clear();
            std::mem::take(&mut m.xattr_space)
        };
        if let Some(f) = inode.file() {
            f.release_all(&self.mm);
        }
        self.ispace.uncharge(BOGO_INODE_SIZE + xattr_space);
        self.live_inodes.add(-1);
        self.table.remove(inode.ino);
    }

    /// Drop `n` lookup references (the FUSE `forget`). The last one of an inode without links
    /// and handles releases it (data, inode space, table entry). Unknown inodes are ignored, as
    /// the kernel may forget late; the root is never released.
    pub fn forget(&self, ino: Ino, n: u64) {
        let Some(inode) = self.table.get(ino) else {
            return;
        };
        let unreferenced = {
            let mut m = inode.meta.write();
            m.lookups = m.lookups.saturating_sub(n);
            m.lookups == 0
        };
        if unreferenced && ino != Ino::ROOT {
            self.maybe_release(&inode);
        }
    }

    /// Drop `security.capability`, as Linux does on write, truncate and chown
    /// (`security_inode_killpriv`): file capabilities must not survive a change of content or
    /// owner. Cheap when the inode has no xattrs.
    pub(crate) fn kill_priv(&self, m: &mut Meta) {
        if m.xattrs.is_empty() {
            return;
        }
        if let Some(old) = m.xattrs.remove(b"security.capability".as_slice()) {
            if self.ispace.max().is_some() {
                let space = crate::limits::xattr_space(b"security.capability".len(), old.len());
                self.ispace.uncharge(space);
                m.xattr_space -= space;
            }
        }
    }

    /// Take one more lookup reference on `ino` and return its attributes (a FUSE server does
    /// this for every entry of a READDIRPLUS reply, and for `LOOKUP(ino, ".")` of any inode).
    ///
    /// # Errors
    /// `NotFound` if the inode is gone or released.
    pub fn lookup_ino(&self, ino: Ino) -> Result<Attr> {
        let inode = self.inode(ino)?;
        let mut m = inode.meta.write();
        if m.released {
            return Err(FsError::NotFound);
        }
        self.add_lookup(&mut m);
        Ok(inode.attr(&m))
    }

    /// Count a lookup reference if the instance tracks them.
    fn add_lookup(&self, m: &mut Meta) {
        if self.config.track_lookups {
            m.lookups += 1;
        }
    }
}

impl Drop for Filesystem {
    fn drop(&mut self) {
        self.stop_background_threads();
    }
}

/// Whether relatime rules call for an atime update (atime not newer than mtime or ctime, or a
/// day old).
fn relatime_due(m: &Meta, now: Timespec) -> bool {
    m.atime <= m.mtime || m.atime <= m.ctime || now.sec - m.atime.sec >= 24 * 3600
}
