//! READDIRPLUS and its lookup-reference protocol. Every entry the kernel receives, except `.`
//! and `..`, becomes a kernel reference to its inode (fuse_direntplus_link counts it as a
//! lookup, later returned by FORGET), so each one takes a reference in the engine
//! (`lookup_ino`) before it is added, and one that does not fit the reply is forgotten again.
//! Entries are collected from the engine in batches first, so that no directory lock is held
//! while references are taken.

use super::Adapter;
use crate::attr::file_attr;
use fuser::{Generation, INodeNo, ReplyDirectoryPlus};
use rtmpfs_core::{Attr, DirEntry, Fh, FileKind, FsError, Ino, Timespec};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Entries collected from the engine per batch (a 32 KiB getdents buffer holds about 200
/// entries with attributes).
const READDIRPLUS_BATCH: usize = 256;

impl Adapter {
    /// Fill a READDIRPLUS reply from `offset` (the engine cookie of the last entry the kernel
    /// has): entries until the reply is full or the listing ends.
    pub(super) fn fill_readdirplus(
        &self,
        h: Fh,
        mut offset: u64,
        reply: &mut ReplyDirectoryPlus,
    ) -> Result<(), FsError> {
        let ttl = self.opts.ttl;
        let mut batch: Vec<DirEntry> = Vec::with_capacity(READDIRPLUS_BATCH);
        loop {
            batch.clear();
            self.fs.readdir(h, offset, |e| {
                batch.push(e);
                batch.len() < READDIRPLUS_BATCH
            })?;
            if batch.is_empty() {
                return Ok(());
            }
            let done = batch.len() < READDIRPLUS_BATCH;
            for e in batch.drain(..) {
                let name = OsStr::from_bytes(&e.name);
                let dots = e.name == b"." || e.name == b"..";
                let attr = if dots {
                    // Not a reference for the kernel: plain attributes, no lookup count.
                    match self.fs.getattr(e.ino) {
                        Ok(a) => a,
                        Err(_) => placeholder_dir_attr(e.ino),
                    }
                } else {
                    match self.fs.lookup_ino(e.ino) {
                        Ok(a) => a,
                        // Removed since the listing was taken: leave it out.
                        Err(FsError::NotFound) => {
                            offset = e.cookie;
                            continue;
                        }
                        Err(err) => return Err(err),
                    }
                };
                let full = reply.add(
                    INodeNo(attr.ino.0),
                    e.cookie,
                    name,
                    &ttl,
                    &file_attr(&attr),
                    Generation(attr.generation),
                );
                if full {
                    if !dots {
                        self.fs.forget(attr.ino, 1);
                    }
                    return Ok(());
                }
                offset = e.cookie;
            }
            if done {
                return Ok(());
            }
        }
    }
}

/// Attributes for a `.`/`..` entry whose inode vanished mid-listing (the kernel ignores the
/// attributes of these two entries).
fn placeholder_dir_attr(i: Ino) -> Attr {
    let t = Timespec::default();
    Attr {
        ino: i,
        generation: 0,
        kind: FileKind::Directory,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        size: 0,
        blocks: 0,
        blksize: 4096,
        atime: t,
        mtime: t,
        ctime: t,
        btime: t,
    }
}
