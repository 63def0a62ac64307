//! Writing an image: the tree walked under the snapshot gate.
//!
//! Every change to the tree holds the filesystem's gate shared for its whole length
//! (`Filesystem::change_gate`); the snapshot takes it exclusively, so it waits for changes in
//! flight to finish, and none starts until it lets go: what it writes is the tree as it was at
//! that instant. Reads go on meanwhile (their atime updates are the one change not held off:
//! each inode's times are copied under its own lock). The whole walk, data included, runs under
//! the gate: the pause writers see is the time to compress and write the image (see
//! docs/design.md, "Snapshots", for the figures and what would shorten it).

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use super::chunk::ChunkWriter;
use super::record::{write_data, InodeRecord, Record};
use super::{ImageError, SnapshotOptions, SnapshotStats};
use crate::file::image::ImageRun;
use crate::fs::Filesystem;
use crate::inode::{Body, Inode};
use crate::limits::BOGO_INODE_SIZE;
use crate::sync::Arc;
use crate::types::{Ino, PAGE_SIZE};

/// zstd level: 1, the fastest, since the whole walk runs under the gate.
const ZSTD_LEVEL: i32 = 1;

/// Bytes of records gathered before they go to the compressor.
const RECORD_BUFFER: usize = 128 * 1024;

/// Counts kept while walking, for the end record and the stats.
#[derive(Default)]
struct Counts {
    inodes: u64,
    entries: u64,
    data_pages: u64,
}

fn io(e: std::io::Error) -> ImageError {
    ImageError::from_io(e)
}

impl Filesystem {
    /// Write an image of the whole tree as it is at one instant to `out` (unencrypted). The
    /// filesystem stays usable: reads go on, changes wait until the walk is done (see
    /// [`SnapshotStats::pause`]). Swapped-out pages are read into scratch pages without being
    /// charged to the RAM budget. Unlinked files that are still open, and anonymous
    /// (`O_TMPFILE`) files never linked, are not in the tree and not in the image.
    ///
    /// # Errors
    /// `Io` when writing fails; `Fs(Io)` when a page's data is lost (poisoned, or its swap copy
    /// unreadable). `out` then holds a partial image, which a reader refuses as truncated.
    pub fn snapshot(&self, out: impl Write) -> Result<SnapshotStats, ImageError> {
        self.snapshot_with(out, &SnapshotOptions::default())
    }

    /// [`Filesystem::snapshot`] with options (an encryption key).
    ///
    /// # Errors
    /// As [`Filesystem::snapshot`].
    pub fn snapshot_with(&self, out: impl Write, opts: &SnapshotOptions) -> Result<SnapshotStats, ImageError> {
        let chunks = ChunkWriter::new(out, opts.key.as_ref())?;
        let z = zstd::Encoder::new(chunks, ZSTD_LEVEL).map_err(ImageError::Io)?;
        // Records are small: batched before they reach zstd, whose every call has a fixed cost.
        let mut w = std::io::BufWriter::with_capacity(RECORD_BUFFER, z);
        let gate = self.gate.write();
        let start = Instant::now();
        let walked = self.write_tree(&mut w);
        drop(gate);
        let pause = start.elapsed();
        let counts = walked?;
        let z = w.into_inner().map_err(|e| io(e.into_error()))?;
        let chunks = z.finish().map_err(io)?;
        chunks.finish().map_err(io)?;
        Ok(SnapshotStats {
            inodes: counts.inodes,
            entries: counts.entries,
            data_pages: counts.data_pages,
            pause,
        })
    }

    /// The records of the whole tree: limits, the root, then each directory's entries depth
    /// first, every inode recorded (with its xattrs and pages) before the first entry naming it.
    /// Caller holds the gate exclusively.
    fn write_tree(&self, w: &mut impl Write) -> Result<Counts, ImageError> {
        let limits = Record::Limits {
            size_bytes: self.mm.pages_quota().max().map_or(u64::MAX, |p| p * PAGE_SIZE),
            max_inodes: self.ispace.max().map_or(u64::MAX, |b| b / BOGO_INODE_SIZE),
        };
        limits.write(w).map_err(io)?;
        let mut c = Counts::default();
        let root = self.inode(Ino::ROOT)?;
        let mut ids: HashMap<u64, u64> = HashMap::new();
        ids.insert(Ino::ROOT.0, 1);
        self.write_inode(w, &root, 1, &mut c)?;
        let mut dirs: Vec<(Arc<Inode>, u64)> = vec![(root, 1)];
        while let Some((dir, dir_id)) = dirs.pop() {
            let mut names = Vec::new();
            if let Some(body) = dir.dir() {
                body.entries.read().for_each_between(0, u64::MAX, |e| {
                    names.push((e.name, e.ino));
                    true
                });
            }
            for (name, ino) in names {
                // The gate keeps the tree still: a named inode is in the table.
                let child = self.inode(ino)?;
                let next_id = ids.len() as u64 + 1;
                let id = if let Some(&id) = ids.get(&ino.0) {
                    id
                } else {
                    ids.insert(ino.0, next_id);
                    self.write_inode(w, &child, next_id, &mut c)?;
                    if child.dir().is_some() {
                        dirs.push((child, next_id));
                    }
                    next_id
                };
                Record::Entry {
                    parent: dir_id,
                    child: id,
                    name: name.to_vec(),
                }
                .write(w)
                .map_err(io)?;
                c.entries += 1;
            }
        }
        Record::End {
            inodes: c.inodes,
            entries: c.entries,
            data_pages: c.data_pages,
        }
        .write(w)
        .map_err(io)?;
        Ok(c)
    }

    /// An inode's record, its xattrs, and (a regular file) its pages.
    fn write_inode(&self, w: &mut impl Write, inode: &Inode, id: u64, c: &mut Counts) -> Result<(), ImageError> {
        let (rec, xattrs) = {
            let m = inode.meta.read();
            let attr = inode.attr(&m);
            let target = match &inode.body {
                Body::Symlink(t) => t.to_vec(),
                _ => Vec::new(),
            };
            let rec = InodeRecord {
                id,
                kind: inode.kind,
                perm: m.perm,
                uid: m.uid,
                gid: m.gid,
                rdev: m.rdev,
                nlink: m.nlink,
                flags: m.flags,
                size: attr.size,
                atime: m.atime,
                mtime: m.mtime,
                ctime: m.ctime,
                btime: m.btime,
                target,
            };
            let xattrs: Vec<(Vec<u8>, Vec<u8>)> = m.xattrs.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            (rec, xattrs)
        };
        Record::Inode(rec).write(w).map_err(io)?;
        c.inodes += 1;
        for (name, value) in xattrs {
            Record::Xattr { name, value }.write(w).map_err(io)?;
        }
        if let Some(f) = inode.file() {
            f.for_each_image_run(&self.mm, |run| match run {
                ImageRun::Data { first, bytes } => {
                    c.data_pages += bytes.len() as u64 / PAGE_SIZE;
                    write_data(w, first, bytes).map_err(io)
                }
                ImageRun::Reserved { first, count } => Record::Reserved { first, count }.write(w).map_err(io),
            })?;
        }
        Ok(())
    }
}
