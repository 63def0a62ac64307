//! Data operations through handles: read, write, fallocate, lseek, copy_file_range, fsync.

use super::handles::Handle;
use super::Filesystem;
use crate::error::{FsError, Result};
use crate::file::FileData;
use crate::perm;
use crate::sync::Arc;
use crate::types::{Ctx, FallocateMode, Fh, FileKind, SeekWhence, Timespec, MAX_FILE_SIZE, PAGE_SIZE};

/// Largest chunk copied at once by `copy_file_range` (bounds the temporary buffer).
const COPY_CHUNK: usize = 1 << 20;

impl Filesystem {
    /// Read up to `buf.len()` bytes at `offset` into `buf`; returns the count, which is fewer
    /// than asked only at EOF (0 at or past it). Takes no per-file lock that a writer holds: a
    /// read never waits for a write.
    ///
    /// # Errors
    /// `BadHandle` (unknown or not open for reading), `IsDir`, `Invalid` (not a regular file),
    /// `Io` when any page of the range cannot be read: its data was lost (a failed or forged
    /// swap copy: the page stays `EIO`), or no memory could be had to bring it back from swap
    /// (transient). Then nothing is returned, not the pages before it: a short count would
    /// read as EOF.
    pub fn read(&self, fh: Fh, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let h = self.readable(fh)?;
        let file = file_of(&h)?;
        let n = file.read(&self.pager, offset, buf)?;
        self.touch_atime(&h.inode, h.flags.noatime);
        Ok(n)
    }

    /// Whether reading `len` bytes at `offset` through `fh` would wait for swap I/O (some page is
    /// swapped out). A server can then hand the read to a worker instead of blocking the thread
    /// that serves unrelated requests.
    #[must_use]
    pub fn read_needs_swap_in(&self, fh: Fh, offset: u64, len: u64) -> bool {
        self.handles
            .get(fh)
            .ok()
            .and_then(|h| h.inode.file().map(|f| f.range_needs_swap_in(offset, len)))
            .unwrap_or(false)
    }

    /// Read up to `len` bytes at `offset` into a new vector.
    ///
    /// # Errors
    /// As [`Filesystem::read`].
    pub fn read_vec(&self, fh: Fh, offset: u64, len: usize) -> Result<Vec<u8>> {
        let h = self.readable(fh)?;
        let file = file_of(&h)?;
        let size = file.size();
        let want = len.min(usize::try_from(size.saturating_sub(offset)).unwrap_or(usize::MAX));
        let mut buf = vec![0u8; want];
        let n = file.read(&self.pager, offset, &mut buf)?;
        buf.truncate(n);
        self.touch_atime(&h.inode, h.flags.noatime);
        Ok(buf)
    }

    /// Write `data` at `offset` (at the end for a handle opened with `append`); returns the
    /// count, short only when space ran out part-way. Updates mtime and ctime and clears
    /// set-user-ID/set-group-ID as Linux does for a non-root writer.
    ///
    /// # Errors
    /// `BadHandle` (not open for writing), `IsDir`, `Invalid`, `FileTooBig`, `NoSpace`, `Io`,
    /// `ReadOnly`.
    pub fn write(&self, ctx: &Ctx, fh: Fh, offset: u64, data: &[u8]) -> Result<usize> {
        let h = self.writable(fh)?;
        let file = file_of(&h)?;
        self.write_locked_io(Some(ctx), &h, file, offset, data)
    }

    /// Write back data that a program stored through a shared mapping (what a FUSE server
    /// receives as a `FUSE_WRITE_CACHE` write): as [`Filesystem::write`], but set-id bits and
    /// `security.capability` stay, since a store through a mapping clears neither on Linux.
    ///
    /// # Errors
    /// As [`Filesystem::write`].
    pub fn write_back(&self, fh: Fh, offset: u64, data: &[u8]) -> Result<usize> {
        let h = self.writable(fh)?;
        let file = file_of(&h)?;
        self.write_locked_io(None, &h, file, offset, data)
    }

    /// The write itself; `ctx` is the writer whose privileges decide the set-id clearing, or
    /// `None` for mapping writeback, which clears nothing.
    fn write_locked_io(
        &self,
        ctx: Option<&Ctx>,
        h: &Handle,
        file: &FileData,
        offset: u64,
        data: &[u8],
    ) -> Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let io = file.lock_io();
        let offset = if h.flags.append { file.size() } else { offset };
        let n = file.write(&io, &self.pager, offset, data)?;
        drop(io);
        self.after_modify(ctx, h);
        Ok(n)
    }

    /// mtime/ctime after data changed through a handle, and the set-id and capability clearing
    /// of a change by `ctx` (`None`: mapping writeback, which clears nothing).
    fn after_modify(&self, ctx: Option<&Ctx>, h: &Handle) {
        let now = Timespec::now();
        let mut m = h.inode.meta.write();
        m.mtime = now;
        m.ctime = now;
        if let Some(ctx) = ctx {
            m.perm &= !perm::setid_bits_to_kill_on_write(ctx, m.perm, true);
            self.kill_priv(&mut m);
        }
    }

    /// `fallocate(2)`: reserve a range (extending the size unless `KeepSize`), or punch a hole.
    /// A failed reservation changes nothing.
    ///
    /// # Errors
    /// `Invalid` for a zero length, `FileTooBig`, `NoSpace`, `BadHandle`, `IsDir`, `ReadOnly`.
    pub fn fallocate(&self, ctx: &Ctx, fh: Fh, offset: u64, len: u64, mode: FallocateMode) -> Result<()> {
        // vfs_fallocate's order: the length, then the handle's mode, then the file's kind.
        if len == 0 {
            return Err(FsError::Invalid);
        }
        let h = self.writable(fh)?;
        let file = file_of(&h)?;
        if offset.checked_add(len).is_none_or(|e| e > MAX_FILE_SIZE) {
            return Err(FsError::FileTooBig);
        }
        if mode != FallocateMode::PunchHole && self.pager.acct.pages.max().is_none() {
            // Unlimited instance: statfs reports the host's RAM as free space; refuse at once a
            // reservation bigger than that (Linux fails it on its memory accounting) instead of
            // building a page map for it.
            let pages = (offset + len).div_ceil(PAGE_SIZE) - offset / PAGE_SIZE;
            if pages > self.statfs().bfree.saturating_add(file.charged_pages()) {
                return Err(FsError::NoSpace);
            }
        }
        let io = file.lock_io();
        match mode {
            FallocateMode::Allocate => file.reserve(&io, &self.pager, offset, len, false)?,
            FallocateMode::KeepSize => file.reserve(&io, &self.pager, offset, len, true)?,
            FallocateMode::PunchHole => file.punch(&io, &self.pager, offset, len)?,
        }
        drop(io);
        self.after_modify(Some(ctx), &h);
        Ok(())
    }

    /// `SEEK_DATA`/`SEEK_HOLE`. Reserved (fallocated, unwritten) pages are holes; swapped pages
    /// are data.
    ///
    /// # Errors
    /// `NoDeviceOrAddress` for a negative offset or one at/after EOF (or no data after it),
    /// `BadHandle`, `Invalid` for a non-file.
    pub fn lseek(&self, fh: Fh, offset: i64, whence: SeekWhence) -> Result<u64> {
        let h = self.handles.get(fh)?;
        // A directory's llseek refuses SEEK_DATA/SEEK_HOLE with EINVAL.
        let file = h.inode.file().ok_or(FsError::Invalid)?;
        let offset = u64::try_from(offset).map_err(|_| FsError::NoDeviceOrAddress)?;
        file.seek(offset, whence)
    }

    /// Copy `len` bytes from one handle's file to another's (`copy_file_range(2)`); returns the
    /// count (short at the source's EOF, or when an error stopped it after some bytes landed:
    /// the next call meets the error).
    ///
    /// # Errors
    /// `BadHandle` (source not readable, target not writable or append-only), `Invalid`
    /// (overlapping ranges in one file, not regular files), `IsDir`, `FileTooBig`, `NoSpace`,
    /// `Io` (a source page that cannot be read, see [`Filesystem::read`]).
    #[allow(clippy::too_many_arguments)]
    pub fn copy_file_range(
        &self,
        ctx: &Ctx,
        fh_in: Fh,
        off_in: u64,
        fh_out: Fh,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        // generic_copy_file_checks' order: kinds, then modes, then ranges.
        let (hin, hout) = (self.handles.get(fh_in)?, self.handles.get(fh_out)?);
        let fin = file_of(&hin)?;
        let fout = file_of(&hout)?;
        let hin = self.readable(fh_in)?;
        let hout = self.writable(fh_out)?;
        if hout.flags.append {
            return Err(FsError::BadHandle);
        }
        if off_in.checked_add(len).is_none() || off_out.checked_add(len).is_none() {
            return Err(FsError::Invalid);
        }
        if off_out.saturating_add(len) > MAX_FILE_SIZE && off_out >= MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        // The count is shortened to the source's EOF (and the maximum size) before the overlap
        // check, as Linux does.
        let total = len
            .min(fin.size().saturating_sub(off_in))
            .min(MAX_FILE_SIZE.saturating_sub(off_out));
        if hin.inode.ino == hout.inode.ino && off_in < off_out + total && off_out < off_in + total {
            return Err(FsError::Invalid);
        }
        let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(total).unwrap_or(COPY_CHUNK))];
        let mut done = 0u64;
        while done < total {
            let want = buf.len().min(usize::try_from(total - done).unwrap_or(usize::MAX));
            let n = match fin.read(&self.pager, off_in + done, &mut buf[..want]) {
                Ok(n) => n,
                Err(e) if done == 0 => return Err(e),
                // Report what was copied; the caller's next call starts at the bad page.
                Err(_) => break,
            };
            if n == 0 {
                break;
            }
            let io = fout.lock_io();
            let w = match fout.write(&io, &self.pager, off_out + done, &buf[..n]) {
                Ok(w) => w,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            drop(io);
            done += w as u64;
            if w < n {
                break;
            }
        }
        if done > 0 {
            self.after_modify(Some(ctx), &hout);
            self.touch_atime(&hin.inode, hin.flags.noatime);
        }
        Ok(done)
    }

    /// `fsync`: data is in memory, so there is nothing to flush; checks the handle.
    ///
    /// # Errors
    /// `BadHandle`.
    pub fn fsync(&self, fh: Fh) -> Result<()> {
        self.handles.get(fh).map(|_| ())
    }

    fn readable(&self, fh: Fh) -> Result<Arc<Handle>> {
        let h = self.handles.get(fh)?;
        if !h.flags.read {
            return Err(FsError::BadHandle);
        }
        Ok(h)
    }

    fn writable(&self, fh: Fh) -> Result<Arc<Handle>> {
        let h = self.handles.get(fh)?;
        if !h.flags.write {
            return Err(FsError::BadHandle);
        }
        self.check_writable()?;
        Ok(h)
    }
}

fn file_of(h: &Handle) -> Result<&FileData> {
    match h.inode.kind {
        FileKind::RegularFile => h.inode.file().ok_or(FsError::Invalid),
        FileKind::Directory => Err(FsError::IsDir),
        _ => Err(FsError::Invalid),
    }
}
