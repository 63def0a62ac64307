//! READDIRPLUS and its lookup-reference protocol. Every entry the kernel receives, except `.`
//! and `..`, becomes a kernel reference to its inode (fuse_direntplus_link counts it as a
//! lookup, later returned by FORGET), so each one takes a reference in the engine
//! (the engine's `readdirplus` takes it), and one that does not fit the reply is forgotten
//! again. The engine returns entries in batches, so that no directory lock is held while the
//! reply is built. READDIR is here too, the same loop without references.

use super::Adapter;
use crate::attr::file_attr;
use crate::attr::file_type;
use fuser::{Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus};
use rtmpfs_core::{Attr, Fh, FileKind, FsError, Ino, Timespec};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Entries asked of the engine per READDIRPLUS batch, each with a reference taken: about what
/// one reply holds (a 4 KiB buffer takes some 25 entries with attributes), so that few
/// references are taken only to be forgotten.
const READDIRPLUS_BATCH: usize = 32;
/// Entries asked of the engine per READDIR batch (no references: only copies are wasted).
const READDIR_BATCH: usize = 128;

impl Adapter {
    /// Fill a READDIR reply from `offset` (the engine cookie of the last entry the kernel has):
    /// entries until the reply is full or the listing ends. The entry that does not fit is
    /// dropped (READDIR takes no references); the kernel asks again after the last one added.
    pub(super) fn fill_readdir(&self, h: Fh, mut offset: u64, reply: &mut ReplyDirectory) -> Result<(), FsError> {
        loop {
            let batch = self.fs.readdir(h, offset, READDIR_BATCH)?;
            let done = batch.len() < READDIR_BATCH;
            for e in batch {
                if reply.add(
                    INodeNo(e.ino.0),
                    e.cookie,
                    file_type(e.kind),
                    OsStr::from_bytes(&e.name),
                ) {
                    return Ok(());
                }
                offset = e.cookie;
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Fill a READDIRPLUS reply from `offset` (the engine cookie of the last entry the kernel
    /// has): entries until the reply is full or the listing ends. The engine hands each batch
    /// over with the references taken; those of entries that do not fit are forgotten again.
    pub(super) fn fill_readdirplus(
        &self,
        h: Fh,
        mut offset: u64,
        reply: &mut ReplyDirectoryPlus,
    ) -> Result<(), FsError> {
        let ttl = self.opts.ttl;
        loop {
            let batch = self.fs.readdirplus(h, offset, READDIRPLUS_BATCH)?;
            // Empty only at the listing's end (a batch shortened by removals is not the end,
            // so only an empty one stops the loop).
            let Some(last) = batch.last().map(|e| e.entry.cookie) else {
                return Ok(());
            };
            let mut entries = batch.into_iter();
            while let Some(e) = entries.next() {
                let attr = e.attr.unwrap_or_else(|| placeholder_dir_attr(e.entry.ino));
                let full = reply.add(
                    INodeNo(attr.ino.0),
                    e.entry.cookie,
                    OsStr::from_bytes(&e.entry.name),
                    &ttl,
                    &file_attr(&attr),
                    Generation(attr.generation),
                );
                if full {
                    for unsent in std::iter::once(e).chain(entries) {
                        if !unsent.is_dot() {
                            self.fs.forget(unsent.entry.ino, 1);
                        }
                    }
                    return Ok(());
                }
            }
            offset = last;
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
