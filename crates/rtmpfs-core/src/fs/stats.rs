//! Statistics and checks: statfs, usage, eviction on demand, the accounting invariants.

use super::Filesystem;
use crate::limits::BOGO_INODE_SIZE;
use crate::mm::SlotCounts;
use crate::types::{FileKind, StatFs, Usage, NAME_MAX, PAGE_SIZE};

impl Filesystem {
    /// Filesystem statistics, as tmpfs reports them. An unlimited instance reports the host's
    /// RAM as its free space (never zero, which programs read as "full").
    #[must_use]
    pub fn statfs(&self) -> StatFs {
        let used = self.mm.pages_quota().used();
        let (blocks, bfree) = if let Some(max) = self.mm.pages_quota().max() {
            (max, max.saturating_sub(used))
        } else {
            let free = self.config.host.ram_bytes / PAGE_SIZE;
            (used + free, free)
        };
        let (files, ffree) = if let Some(max) = self.ispace.max() {
            (max / BOGO_INODE_SIZE, self.ispace.free().unwrap_or(0) / BOGO_INODE_SIZE)
        } else {
            let free = self.config.host.ram_bytes / BOGO_INODE_SIZE;
            (self.ispace.used() / BOGO_INODE_SIZE + free, free)
        };
        StatFs {
            bsize: PAGE_SIZE as u32,
            blocks,
            bfree,
            bavail: bfree,
            files,
            ffree,
            namelen: NAME_MAX as u32,
            frsize: PAGE_SIZE as u32,
        }
    }

    /// Live usage figures.
    #[must_use]
    pub fn usage(&self) -> Usage {
        let pool = rtmpfs_pages::stats();
        let pages = self.mm.counts();
        let mut u = Usage {
            charged_pages: self.mm.pages_quota().used(),
            resident_pages: pages.resident,
            swapped_pages: pages.swapped,
            reserved_pages: pages.reserved,
            inodes: self.live_inodes_count(),
            inode_space_used: self.ispace.used(),
            poisoned_pages: pages.poisoned,
            compressed_pages: pages.compressed,
            zero_pages: pages.zero,
            page_pool_ram_bytes: pool.out_bytes + pool.free_hot_bytes,
            page_pool_mapped_bytes: pool.mapped_bytes,
            ..Usage::default()
        };
        self.mm.fill_usage(&mut u);
        crate::housekeeping::fill_process_figures(&mut u, &pool);
        u
    }

    /// Stop the background evictor and swap read-ahead threads and wait for them to exit.
    /// The filesystem keeps working without them: allocation then reclaims memory itself and
    /// sequential reads swap in synchronously. For a quiescent state (`check_invariants` while
    /// nothing else runs), or an orderly shutdown; dropping the filesystem does it too.
    pub fn stop_background_threads(&self) {
        self.mm.stop_background_threads();
    }

    /// Evict up to `pages` cold pages to swap now (the background evictor does this on its own;
    /// this is for tests; feature `test-util`). Returns how many left RAM.
    #[cfg(any(test, feature = "test-util"))]
    pub fn evict_now(&self, pages: usize) -> usize {
        self.mm.evict_now(pages)
    }

    /// Entries in the compressed pool's queue, dead ones included: what the queue keeps
    /// allocated (tests of its pruning).
    #[cfg(any(test, feature = "test-util"))]
    pub fn pool_queue_len(&self) -> usize {
        self.mm.pool_queued()
    }

    /// Check the accounting invariants by walking every inode. Meant for tests and debugging;
    /// only meaningful while no other thread changes the filesystem.
    ///
    /// # Errors
    /// A description of the first violated invariant.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let charged = self.mm.pages_quota().used();
        let counters = self.mm.counts();
        if charged != counters.total() {
            return Err(format!(
                "charged {charged} != the sum of the page counters {counters:?}"
            ));
        }
        let mut sum = SlotCounts::default();
        let mut pool_bytes = 0u64;
        let mut records = (0u64, 0u64);
        let mut live = 0u64;
        let mut ispace = 0u64;
        for inode in self.table.all() {
            let m = inode.meta.read();
            if m.released {
                continue;
            }
            live += 1;
            ispace += BOGO_INODE_SIZE + m.xattr_space;
            if inode.kind != FileKind::Directory && m.nlink > 1 {
                ispace += BOGO_INODE_SIZE * u64::from(m.nlink - 1);
            }
            if let Some(f) = inode.file() {
                let c = f.slot_counts();
                if c.total() != f.charged_pages() {
                    return Err(format!(
                        "inode {} charged {} != its slots {c:?}",
                        inode.ino.0,
                        f.charged_pages()
                    ));
                }
                sum = sum.plus(c);
                pool_bytes += f.pool_bytes();
                let (n, b) = f.swap_records();
                records = (records.0 + n, records.1 + b);
            }
        }
        if sum != counters {
            return Err(format!("per-file slots {sum:?} != counters {counters:?}"));
        }
        // Exact between snapshots; while a snapshot's capture holds pool entries (some taken
        // out of their maps since, still charged until the walker lets go), the charge lies
        // between the maps' entries and those plus the capture's.
        let captured = self.mm.captured_pool_bytes();
        if !(pool_bytes..=pool_bytes + captured).contains(&self.mm.pool_bytes()) {
            return Err(format!(
                "pool entries in page maps cost {pool_bytes} bytes (a snapshot holds {captured}) \
                 but the pool's charge is {}",
                self.mm.pool_bytes()
            ));
        }
        let (_, swap_records, swap_record_bytes) = self.mm.swap_record_usage();
        if records != (swap_records, swap_record_bytes) {
            return Err(format!(
                "swap records in page maps (count, bytes) {records:?} != the swap's live records {:?}",
                (swap_records, swap_record_bytes)
            ));
        }
        if live != self.live_inodes_count() {
            return Err(format!("live inodes {live} != counter {}", self.live_inodes_count()));
        }
        if self.ispace.max().is_some() && ispace != self.ispace.used() {
            return Err(format!("inode space {ispace} != charged {}", self.ispace.used()));
        }
        Ok(())
    }
}
