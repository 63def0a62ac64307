//! Writing an image: an epoch set under the snapshot gate, the tree captured and written after.
//!
//! Every change to the tree holds the filesystem's gate shared for its whole length
//! (`Filesystem::change_gate`); the snapshot takes it exclusively only to start a new epoch, so
//! the epoch falls between changes. After it lets go, it walks the namespace; each inode's
//! record, xattrs, entries and (a regular file) page list are captured at the epoch by the
//! walker or, first, by a change about to alter them (`cow.rs`); the page lists are captured by
//! reference (`file/image.rs`: frames pinned for copy-on-write, swap slots pinned against
//! reuse). The walker writes each inode's records and pages as it goes, with no engine lock
//! held across I/O; a page changed after its capture is written from its pre-image. One
//! snapshot at a time (`snapshot_run`). See docs/design.md, "Snapshots".

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use super::chunk::ChunkWriter;
use super::cow::CapturedMeta;
use super::frames::{compressor, frame_workers, Buffers, FrameWriter, Ordered};
use super::record::{write_data, Record, RecordSink};
use super::{ImageError, SnapshotOptions, SnapshotStats};
use crate::error::FsError;
use crate::file::image::ImageRun;
use crate::fs::Filesystem;
use crate::inode::Inode;
use crate::limits::BOGO_INODE_SIZE;
use crate::sync::Arc;
use crate::types::{Ino, PAGE_SIZE};

/// Counts kept while walking, for the end record and the stats.
#[derive(Default)]
struct Counts {
    inodes: u64,
    entries: u64,
    data_pages: u64,
    pre_images: u64,
}

/// Ends the walk (changers stop capturing, the store's pins go) however the snapshot ends.
struct Walking<'a>(&'a Filesystem);

impl Drop for Walking<'_> {
    fn drop(&mut self) {
        self.0.snap_end();
    }
}

/// A part of the epoch's tree the walk cannot find: a capture that should be in the store is
/// not (a bug; the snapshot fails rather than write a wrong image).
const LOST: ImageError = ImageError::Fs(FsError::Io);

fn io(e: std::io::Error) -> ImageError {
    ImageError::from_io(e)
}

impl Filesystem {
    /// Write an image of the whole tree as it is at one instant to `out` (unencrypted). The
    /// filesystem stays usable: reads go on, changes wait only while the snapshot's epoch is
    /// set (see [`SnapshotStats::pause`]); inodes, directories and pages changed after are
    /// written as they were (copy-on-write). Swapped-out pages are read into scratch pages without being
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
        let mut last_epoch = self.snapshot_run.lock();
        let chunks = ChunkWriter::new(out, opts.key.as_ref())?;
        // Frames are compressed on threads of their own, so the walker's page reads and the
        // compression overlap (the snapshot is compression-bound on one core otherwise).
        let buffers = Buffers::new();
        let make = || compressor(&buffers);
        std::thread::scope(|scope| {
            let pool = Ordered::new(scope, frame_workers(), &make);
            let mut w = FrameWriter::new(chunks, &buffers, pool);
            let gate = self.gate.write();
            let start = Instant::now();
            *last_epoch += 1;
            let epoch = *last_epoch;
            self.snap_begin(epoch);
            let walking = Walking(self);
            let limits = Record::Limits {
                size_bytes: self.mm.pages_quota().max().map_or(u64::MAX, |p| p * PAGE_SIZE),
                max_inodes: self.ispace.max().map_or(u64::MAX, |b| b / BOGO_INODE_SIZE),
            };
            drop(gate);
            let pause = start.elapsed();
            #[cfg(any(test, feature = "test-util"))]
            {
                let hook = self.snapshot_hook.lock().take();
                if let Some(hook) = hook {
                    hook();
                }
            }
            limits.write(&mut w).map_err(io)?;
            // On any error below, the captures not yet read are dropped (`walking`): their pins go.
            let counts = self.walk_tree(&mut w, epoch)?;
            drop(walking);
            Record::End {
                inodes: counts.inodes,
                entries: counts.entries,
                data_pages: counts.data_pages,
            }
            .write(&mut w)
            .map_err(io)?;
            w.finish().map_err(io)?;
            Ok(SnapshotStats {
                inodes: counts.inodes,
                entries: counts.entries,
                data_pages: counts.data_pages,
                pause,
                pre_images: counts.pre_images,
            })
        })
    }

    /// Run `hook` once in the next snapshot, after it lets go of the gate and before it reads
    /// any page: changes made while `hook` runs are after the snapshot's instant (tests hold the
    /// walker there).
    #[cfg(any(test, feature = "test-util"))]
    pub fn set_snapshot_hook(&self, hook: impl FnOnce() + Send + 'static) {
        *self.snapshot_hook.lock() = Some(Box::new(hook));
    }

    /// Frames and swap slots a snapshot's capture pins now (both 0 between snapshots).
    #[cfg(any(test, feature = "test-util"))]
    pub fn snapshot_pins(&self) -> (u64, u64) {
        (self.mm.pinned_frames(), self.mm.pinned_swap_slots() as u64)
    }

    /// The records of the whole tree after the limits: the root, then each directory's entries
    /// depth first, every inode recorded (with its xattrs and pages) before the first entry
    /// naming it; each inode and directory as it was at `epoch` (`cow.rs`). The end record is
    /// left to the caller.
    fn walk_tree(&self, w: &mut impl RecordSink, epoch: u64) -> Result<Counts, ImageError> {
        let mut c = Counts::default();
        let root = self.inode(Ino::ROOT)?;
        let mut ids: HashMap<u64, u64> = HashMap::new();
        ids.insert(Ino::ROOT.0, 1);
        self.write_inode(w, &root, 1, epoch, &mut c)?;
        let mut dirs: Vec<(Arc<Inode>, u64)> = vec![(root, 1)];
        while let Some((dir, dir_id)) = dirs.pop() {
            let names = self.walk_entries(&dir, epoch).ok_or(LOST)?;
            for (name, ino) in names {
                let next_id = ids.len() as u64 + 1;
                let id = if let Some(&id) = ids.get(&ino.0) {
                    id
                } else {
                    // Named at the epoch: in the table, or (removed since) kept by the store.
                    let child = self.snap_inode(ino).ok_or(LOST)?;
                    ids.insert(ino.0, next_id);
                    self.write_inode(w, &child, next_id, epoch, &mut c)?;
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
                .write(&mut *w)
                .map_err(io)?;
                c.entries += 1;
            }
        }
        Ok(c)
    }

    /// An inode's record, its xattrs, and (a regular file) its pages, as at `epoch`.
    fn write_inode(
        &self,
        w: &mut impl RecordSink,
        inode: &Arc<Inode>,
        id: u64,
        epoch: u64,
        c: &mut Counts,
    ) -> Result<(), ImageError> {
        let CapturedMeta { mut rec, xattrs, file } = self.walk_meta(inode, epoch).ok_or(LOST)?;
        rec.id = id;
        Record::Inode(rec).write(&mut *w).map_err(io)?;
        c.inodes += 1;
        for (name, value) in xattrs {
            Record::Xattr { name, value }.write(&mut *w).map_err(io)?;
        }
        if let Some(mut f) = file {
            c.pre_images += f.for_each_image_run(|run| match run {
                ImageRun::Data { first, bytes } => {
                    c.data_pages += bytes.len() as u64 / PAGE_SIZE;
                    write_data(&mut *w, first, bytes).map_err(io)
                }
                ImageRun::Reserved { first, count } => Record::Reserved { first, count }.write(&mut *w).map_err(io),
            })?;
        }
        Ok(())
    }
}
