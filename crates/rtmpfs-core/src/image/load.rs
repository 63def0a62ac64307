//! Building a filesystem from an image, one record at a time.
//!
//! The new filesystem is private to this call until the end record has been checked, so a
//! refused image leaves nothing behind: the partly built instance is dropped. Inodes are built
//! directly (not through the public calls, which would set times, owners and modes by the rules
//! for a new file); file data goes through the file layer's own write, reserve and truncate,
//! so it is charged and, under a RAM budget, evicted to swap as any write is.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use super::chunk::ChunkReader;
use super::frames::{decoder, for_each_segment, Buffers, Segment};
use super::record::{InodeRecord, Item, Parsed, Record};
use super::{ImageError, LimitSource, RestoreOptions};
use crate::acl::{Acl, AclKind};
use crate::config::Config;
use crate::dir::DirBody;
use crate::file::FileData;
use crate::fs::Filesystem;
use crate::inode::{Body, Inode, Meta};
use crate::limits::{xattr_space, BOGO_INODE_SIZE};
use crate::sync::Arc;
use crate::types::{FileKind, Ino, MAX_FILE_SIZE, PAGE_SIZE};
use crate::{file_flags, name, xattr};

fn corrupt(what: impl Into<String>) -> ImageError {
    ImageError::Corrupt(what.into())
}

/// The state of a restore between records.
struct Loader<'a> {
    fs: &'a Filesystem,
    /// Image id -> inode built for it.
    inodes: HashMap<u64, Arc<Inode>>,
    /// Image id -> names found so far (for a directory: 1 at most).
    links: HashMap<u64, u32>,
    /// Image id -> subdirectories found so far (directories only).
    subdirs: HashMap<u64, u32>,
    /// Image id -> the nlink the image recorded, checked at the end.
    recorded_nlink: HashMap<u64, u32>,
    /// Directories reachable from the root so far: an entry may only be added to one of these,
    /// so the tree cannot hold a cycle or a detached part.
    reachable: HashSet<u64>,
    /// The inode the xattr, data and reserved records apply to, and its size.
    current: Option<(u64, u64)>,
    entries: u64,
    data_pages: u64,
    /// The end record has been applied (and checked): nothing may follow it.
    ended: bool,
}

impl Filesystem {
    /// Build a filesystem from an image written by [`Filesystem::snapshot`]. `config` gives
    /// everything an image does not record (the RAM budget, swap, permission checks, ...);
    /// `size` and `nr_inodes` come from the image unless `opts` says the config's apply. The
    /// root directory's mode, owners and times come from the image.
    ///
    /// # Errors
    /// The [`ImageError`] that says why the image was refused: `NotAnImage`,
    /// `UnsupportedVersion`, `Truncated`, `Corrupt`, `WrongKey`, `KeyRequired`,
    /// `NotEncrypted`; `Fs(NoSpace)` if the tree does not fit the limits; `Config`; `Io`.
    /// Nothing of a refused image survives the call.
    pub fn from_image(
        config: Config,
        input: impl Read + Send,
        opts: &RestoreOptions,
    ) -> Result<Filesystem, ImageError> {
        let mut chunks = ChunkReader::new(input, opts.key.as_ref())?;
        if chunks.version() == 1 {
            let mut z = zstd::Decoder::new(chunks).map_err(ImageError::from_io)?;
            let fs = Filesystem::new(limited(config, opts, &Record::read(&mut z)?)?)?;
            let mut loader = Loader::new(&fs);
            for_each_record(z, |r| loader.apply(Item::Record(r)))?;
            drop(loader);
            return Ok(fs);
        }
        // Version 2: the first frame is decoded first, on this thread: it holds the limits the
        // filesystem is made with. The rest are decoded in parallel (`frames.rs`).
        let first = chunks
            .next_raw(Vec::new())?
            .ok_or(ImageError::Truncated("before its first chunk"))?;
        let last = first.last();
        let opener = chunks.opener();
        let Segment { bytes, records } = decoder(&opener, &Buffers::new())(first)?;
        let mut records = records.into_iter();
        let Some(Parsed::Record(limits)) = records.next() else {
            return Err(corrupt("the first record is not the limits"));
        };
        let fs = Filesystem::new(limited(config, opts, &limits)?)?;
        let mut loader = Loader::new(&fs);
        loader.apply_all(records, &bytes)?;
        if !last {
            for_each_segment(&mut chunks, |seg| loader.apply_all(seg.records.drain(..), &seg.bytes))?;
        }
        if !loader.ended {
            return Err(corrupt("the image ended early"));
        }
        drop(loader);
        Ok(fs)
    }
}

/// `config` with the limits `first` records, unless `opts` says the config's own apply;
/// `first` must be the limits record.
fn limited(mut config: Config, opts: &RestoreOptions, first: &Record) -> Result<Config, ImageError> {
    let &Record::Limits { size_bytes, max_inodes } = first else {
        return Err(corrupt("the first record is not the limits"));
    };
    if opts.size == LimitSource::Image {
        config.size_bytes = (size_bytes != u64::MAX).then_some(size_bytes);
    }
    if opts.inodes == LimitSource::Image {
        config.max_inodes = (max_inodes != u64::MAX).then_some(max_inodes);
    }
    Ok(config)
}

/// Read the records after the limits, up to and including the end record, and hand each to
/// `apply` (which returns whether it was the end); then check that nothing follows the end.
/// The decoding (chunk checksums, decryption, zstd, record checksums) runs on a thread of its
/// own while `apply` builds the tree on the caller's. Records travel in batches (at most
/// `BATCH_RECORDS` records or about `BATCH_BYTES` of payload, so that a tree of small files
/// costs one hand-over per batch, not per record) through a queue of `QUEUE` batches, so a
/// reader's memory stays bounded (records are at most `MAX_PAYLOAD`, 1 MiB). An error on either
/// side ends both: the decoder's is passed on in order, and a failed `apply` drops the queue,
/// which stops the decoder at its next batch. Under shuttle, where an unscheduled thread has
/// no place, the same runs on one thread.
fn for_each_record<R: Read + Send>(
    mut z: R,
    mut apply: impl FnMut(Record) -> Result<bool, ImageError>,
) -> Result<(), ImageError> {
    /// Batches in flight between the decoder and the builder.
    const QUEUE: usize = 2;
    const BATCH_RECORDS: usize = 512;
    const BATCH_BYTES: usize = 512 * 1024;
    type Batch = Vec<Result<Record, ImageError>>;
    /// The decoder's side: the records in order, up to the end record, then the verdict on
    /// what follows it; stops at its first error or when `send` says nobody listens.
    fn decode(z: &mut impl Read, mut send: impl FnMut(Batch) -> bool) {
        let mut batch: Batch = Vec::new();
        let mut bytes = 0;
        loop {
            let r = Record::read(z);
            let (end, failed) = (matches!(r, Ok(Record::End { .. })), r.is_err());
            if let Ok(Record::Data { bytes: b, .. }) = &r {
                bytes += b.len();
            }
            batch.push(r);
            if failed {
                send(batch);
                return;
            }
            if end {
                break;
            }
            if batch.len() >= BATCH_RECORDS || bytes >= BATCH_BYTES {
                if !send(std::mem::take(&mut batch)) {
                    return;
                }
                bytes = 0;
            }
        }
        let mut extra = [0u8; 1];
        match z.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => batch.push(Err(corrupt("records after the end record"))),
            Err(e) => batch.push(Err(ImageError::from_io(e))),
        }
        send(batch);
    }
    /// The builder's side of one batch; `Some` once the image is done (or refused).
    fn build(
        batch: Batch,
        ended: &mut bool,
        apply: &mut impl FnMut(Record) -> Result<bool, ImageError>,
    ) -> Option<Result<(), ImageError>> {
        for r in batch {
            let step = r.and_then(|r| {
                if *ended {
                    return Err(corrupt("records after the end record"));
                }
                *ended = apply(r)?;
                Ok(())
            });
            if step.is_err() {
                return Some(step);
            }
        }
        None
    }
    let mut ended = false;
    if cfg!(feature = "shuttle") {
        let mut verdict = None;
        decode(&mut z, |batch| {
            verdict = build(batch, &mut ended, &mut apply);
            verdict.is_none()
        });
        return match verdict {
            Some(v) => v,
            None if ended => Ok(()),
            None => Err(corrupt("the image ended early")),
        };
    }
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let decoder = scope.spawn(move || decode(&mut z, |batch| tx.send(batch).is_ok()));
        // The queue closes after the decoder's last batch (the end record and its verdict, or
        // an error); a batch that fails to build drops the queue, which stops the decoder.
        let mut verdict = None;
        for batch in &rx {
            verdict = build(batch, &mut ended, &mut apply);
            if verdict.is_some() {
                break;
            }
        }
        drop(rx);
        // Joined, so that its thread-locals are gone too when this returns.
        let _ = decoder.join();
        match verdict {
            Some(v) => v,
            None if ended => Ok(()),
            None => Err(corrupt("the image ended early")),
        }
    })
}

fn meta_of(r: &InodeRecord) -> Meta {
    let mut m = Meta::new(r.perm, r.uid, r.gid, 0, r.mtime);
    m.rdev = r.rdev;
    m.atime = r.atime;
    m.ctime = r.ctime;
    m.btime = r.btime;
    m.flags = r.flags;
    m
}

impl<'a> Loader<'a> {
    fn new(fs: &'a Filesystem) -> Self {
        Loader {
            fs,
            inodes: HashMap::new(),
            links: HashMap::new(),
            subdirs: HashMap::new(),
            recorded_nlink: HashMap::new(),
            reachable: HashSet::new(),
            current: None,
            entries: 0,
            data_pages: 0,
            ended: false,
        }
    }

    /// Apply the records of one segment (format version 2), their pages borrowed from
    /// `bytes`; `ended` says afterwards whether the end record has been applied.
    fn apply_all(&mut self, records: impl IntoIterator<Item = Parsed>, bytes: &[u8]) -> Result<(), ImageError> {
        for r in records {
            if self.ended {
                return Err(corrupt("records after the end record"));
            }
            self.ended = self.apply(r.item(bytes))?;
        }
        Ok(())
    }

    /// Apply one record; returns whether it was the end record (then checked).
    fn apply(&mut self, item: Item<'_>) -> Result<bool, ImageError> {
        let r = match item {
            Item::Data { first, pages } => {
                self.data(first, pages)?;
                return Ok(false);
            }
            Item::Record(r) => r,
        };
        match r {
            Record::Limits { .. } => return Err(corrupt("a second limits record")),
            Record::Inode(r) => self.inode(&r)?,
            Record::Xattr { name, value } => self.xattr(&name, &value)?,
            Record::Data { first, bytes } => self.data(first, &bytes)?,
            Record::Reserved { first, count } => self.reserved(first, count)?,
            Record::Entry { parent, child, name } => self.entry(parent, child, &name)?,
            Record::End {
                inodes,
                entries,
                data_pages,
            } => {
                self.finish(inodes, entries, data_pages)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn inode(&mut self, r: &InodeRecord) -> Result<(), ImageError> {
        let id = r.id;
        if self.inodes.contains_key(&id) {
            return Err(corrupt(format!("inode {id} recorded twice")));
        }
        if r.perm & !0o7777 != 0 || r.flags & !file_flags::SUPPORTED != 0 {
            return Err(corrupt(format!("inode {id}: bad mode or flags")));
        }
        if (r.kind == FileKind::Symlink) == r.target.is_empty() {
            return Err(corrupt(format!("inode {id}: symlink target")));
        }
        let fs = self.fs;
        let inode = if self.inodes.is_empty() {
            if id != 1 || r.kind != FileKind::Directory {
                return Err(corrupt("the first inode is not the root directory"));
            }
            let root = fs.inode(Ino::ROOT)?;
            *root.meta.write() = Meta { nlink: 2, ..meta_of(r) };
            self.reachable.insert(id);
            root
        } else {
            fs.ispace.charge(BOGO_INODE_SIZE)?;
            let ino = fs.alloc_ino();
            let (generation, meta) = (fs.generation, meta_of(r));
            let inode = match r.kind {
                FileKind::RegularFile => Arc::new_cyclic(|me| {
                    Inode::new(
                        ino,
                        generation,
                        r.kind,
                        meta,
                        Body::File(FileData::new(ino.0, me.clone())),
                    )
                }),
                FileKind::Directory => Arc::new(Inode::new(
                    ino,
                    generation,
                    r.kind,
                    meta,
                    Body::Dir(DirBody::new(Ino::ROOT)),
                )),
                FileKind::Symlink => {
                    name::check_symlink_target(&r.target)
                        .map_err(|_| corrupt(format!("inode {id}: symlink target")))?;
                    Arc::new(Inode::new(
                        ino,
                        generation,
                        r.kind,
                        meta,
                        Body::Symlink(r.target.clone().into()),
                    ))
                }
                _ => Arc::new(Inode::new(ino, generation, r.kind, meta, Body::Special)),
            };
            fs.table.insert(inode.clone());
            fs.live_inodes.add(1);
            inode
        };
        if let Some(f) = inode.file() {
            let io = f.lock_io();
            f.truncate(&io, &fs.mm, r.size)
                .map_err(|_| corrupt(format!("inode {id}: size")))?;
        }
        self.recorded_nlink.insert(id, r.nlink);
        self.inodes.insert(id, inode);
        self.current = Some((id, r.size));
        Ok(())
    }

    fn current(&self, what: &str) -> Result<(Arc<Inode>, u64), ImageError> {
        let (id, size) = self
            .current
            .ok_or_else(|| corrupt(format!("{what} record outside an inode")))?;
        Ok((self.inodes[&id].clone(), size))
    }

    fn xattr(&mut self, name: &[u8], value: &[u8]) -> Result<(), ImageError> {
        let (inode, _) = self.current("xattr")?;
        let bad = || corrupt(format!("bad xattr {:?}", String::from_utf8_lossy(name)));
        xattr::check_value(value).map_err(|_| bad())?;
        let is_acl = if let Some(kind) = AclKind::from_name(name) {
            if kind == AclKind::Default && inode.kind != FileKind::Directory {
                return Err(bad());
            }
            Acl::from_xattr(value)
                .map_err(|_| bad())?
                .ok_or_else(bad)?
                .validate()
                .map_err(|_| bad())?;
            true
        } else {
            xattr::check_name(name, xattr::prefix_namespace(name).map_err(|_| bad())?).map_err(|_| bad())?;
            false
        };
        let mut m = inode.meta.write();
        if m.xattrs.contains_key(name) {
            return Err(bad());
        }
        // As setxattr: ACLs cost no inode space; other xattrs do when `nr_inodes` is limited.
        if !is_acl && self.fs.ispace.max().is_some() {
            let space = xattr_space(name.len(), value.len());
            self.fs.ispace.charge(space)?;
            m.xattr_space += space;
        }
        m.xattrs.insert(name.into(), value.into());
        Ok(())
    }

    fn data(&mut self, first: u64, bytes: &[u8]) -> Result<(), ImageError> {
        let (inode, size) = self.current("data")?;
        let f = inode
            .file()
            .ok_or_else(|| corrupt("data for an inode that is not a file"))?;
        let offset = first.checked_mul(PAGE_SIZE).filter(|&o| o < size);
        let offset = offset.ok_or_else(|| corrupt("data past the end of its file"))?;
        // The bytes of a page past the size are zeros (the engine's invariant): not written.
        let len = (bytes.len() as u64).min(size - offset) as usize;
        let io = f.lock_io();
        let written = f.write(&io, &self.fs.mm, offset, &bytes[..len])?;
        if written < len {
            return Err(ImageError::Fs(crate::FsError::NoSpace));
        }
        self.data_pages += bytes.len() as u64 / PAGE_SIZE;
        Ok(())
    }

    fn reserved(&mut self, first: u64, count: u64) -> Result<(), ImageError> {
        let (inode, _) = self.current("reserved")?;
        let f = inode
            .file()
            .ok_or_else(|| corrupt("reserved pages for an inode that is not a file"))?;
        let range = first.checked_mul(PAGE_SIZE).zip(count.checked_mul(PAGE_SIZE));
        let (offset, len) = range.ok_or_else(|| corrupt("reserved range"))?;
        // The last page below the maximum size is reserved by a range that ends at it.
        let len = len.min(MAX_FILE_SIZE.saturating_sub(offset));
        let io = f.lock_io();
        f.reserve(&io, &self.fs.mm, offset, len, true).map_err(|e| match e {
            crate::FsError::NoSpace => ImageError::Fs(e),
            _ => corrupt("reserved range"),
        })
    }

    fn entry(&mut self, parent: u64, child: u64, name: &[u8]) -> Result<(), ImageError> {
        self.current = None;
        name::check_new(name).map_err(|_| corrupt(format!("bad name {:?}", String::from_utf8_lossy(name))))?;
        if !self.reachable.contains(&parent) {
            return Err(corrupt(format!(
                "entry in {parent}, not a directory reached from the root"
            )));
        }
        let child_inode = self
            .inodes
            .get(&child)
            .ok_or_else(|| corrupt(format!("entry for unknown inode {child}")))?;
        let is_dir = child_inode.kind == FileKind::Directory;
        let links = self.links.entry(child).or_insert(0);
        if child == 1 || (is_dir && *links > 0) {
            return Err(corrupt(format!("directory {child} named twice")));
        }
        *links += 1;
        if !is_dir && *links > 1 {
            // As link(2): every name past the first costs inode space.
            self.fs.ispace.charge(BOGO_INODE_SIZE)?;
        }
        let dir = &self.inodes[&parent];
        let body = dir.dir().expect("reachable ids are directories");
        {
            let mut d = body.entries.write();
            if d.get(name).is_some() {
                return Err(corrupt(format!(
                    "name {:?} twice in one directory",
                    String::from_utf8_lossy(name)
                )));
            }
            body.insert(&mut d, name, child_inode.ino, child_inode.kind);
        }
        if let Some(sub) = child_inode.dir() {
            sub.set_parent(dir.ino);
            *self.subdirs.entry(parent).or_insert(0) += 1;
            self.reachable.insert(child);
        }
        self.entries += 1;
        Ok(())
    }

    /// Check the counts, that every inode was named, and set link counts (checked against
    /// what the image recorded).
    fn finish(&mut self, inodes: u64, entries: u64, data_pages: u64) -> Result<(), ImageError> {
        if inodes != self.inodes.len() as u64 || entries != self.entries || data_pages != self.data_pages {
            return Err(corrupt("the end record's counts do not match the records"));
        }
        if self.inodes.is_empty() {
            return Err(corrupt("no root directory"));
        }
        for (&id, inode) in &self.inodes {
            let nlink = if inode.kind == FileKind::Directory {
                2 + self.subdirs.get(&id).copied().unwrap_or(0)
            } else {
                self.links.get(&id).copied().unwrap_or(0)
            };
            if id != 1 && !self.links.contains_key(&id) {
                return Err(corrupt(format!("inode {id} has no name")));
            }
            if nlink != self.recorded_nlink[&id] {
                return Err(corrupt(format!(
                    "inode {id}: {nlink} links, recorded {}",
                    self.recorded_nlink[&id]
                )));
            }
            inode.meta.write().nlink = nlink;
        }
        Ok(())
    }
}
