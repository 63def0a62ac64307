//! Data operations through handles: read, write, fallocate, lseek, copy_file_range, fsync.

use super::handles::Handle;
use super::Filesystem;
use crate::error::{FsError, Result};
use crate::file::FileData;
use crate::perm;
use crate::sync::Arc;
use crate::types::{
    Ctx, FallocateMode, Fh, FileKind, ReadMode, ReadOutcome, SeekWhence, SetIdClearing, Timespec, MAX_FILE_SIZE,
    PAGE_SIZE,
};

/// Where a write through a handle lands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// At the offset given, or at the end for a handle opened with `append` (`write(2)` on an
    /// in-process handle).
    HandleMode,
    /// At the offset given: the caller applied `O_APPEND` itself (a FUSE client), or the write
    /// is a mapping's writeback, which never appends.
    Exact,
}

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
        let n = file.read_waiting(&self.mm, offset, buf)?;
        self.touch_atime(&h.inode, h.flags.noatime);
        Ok(n)
    }

    /// As [`Filesystem::read`], in one pass whatever `mode`: with [`ReadMode::NoWait`] a read
    /// that would wait for swap I/O answers [`ReadOutcome::WouldBlock`] instead, having done no
    /// I/O and changed nothing (atime included), so that a server can retry it with
    /// [`ReadMode::Wait`] on a thread where waiting is fine (Linux's `IOCB_NOWAIT`).
    ///
    /// # Errors
    /// As [`Filesystem::read`].
    pub fn read_with(&self, fh: Fh, offset: u64, buf: &mut [u8], mode: ReadMode) -> Result<ReadOutcome> {
        let h = self.readable(fh)?;
        let file = file_of(&h)?;
        let r = file.read(&self.mm, offset, buf, mode)?;
        if let ReadOutcome::Done(_) = r {
            self.touch_atime(&h.inode, h.flags.noatime);
        }
        Ok(r)
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
        let n = file.read_waiting(&self.mm, offset, &mut buf)?;
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
        self.write_placed(
            Some((ctx, SetIdClearing::Engine)),
            fh,
            offset,
            data,
            Placement::HandleMode,
        )
    }

    /// As [`Filesystem::write`], but exactly at `offset` whatever the handle's `append` flag.
    /// For a server whose client applies `O_APPEND` itself: the Linux FUSE client does, under
    /// the inode lock, and also knows what the engine cannot (`fcntl(F_SETFL)` clearing
    /// `O_APPEND`, `pwritev2(RWF_NOAPPEND)`), so the offset it sends is the truth. `clearing`
    /// says whether the engine clears set-id bits or the client already has.
    ///
    /// # Errors
    /// As [`Filesystem::write`].
    pub fn write_at(&self, ctx: &Ctx, fh: Fh, offset: u64, data: &[u8], clearing: SetIdClearing) -> Result<usize> {
        self.write_placed(Some((ctx, clearing)), fh, offset, data, Placement::Exact)
    }

    /// Write back data that a program stored through a shared mapping (what a FUSE server
    /// receives as a `FUSE_WRITE_CACHE` write): exactly at `offset` (a page's place never
    /// depends on how the file was opened: writeback never appends), and set-id bits and
    /// `security.capability` stay, since a store through a mapping clears neither on Linux.
    ///
    /// # Errors
    /// As [`Filesystem::write`].
    pub fn write_back(&self, fh: Fh, offset: u64, data: &[u8]) -> Result<usize> {
        self.write_placed(None, fh, offset, data, Placement::Exact)
    }

    /// The write itself; `ctx` is the writer whose privileges decide the set-id clearing (and
    /// who does it), or `None` for mapping writeback, which clears nothing.
    fn write_placed(
        &self,
        ctx: Option<(&Ctx, SetIdClearing)>,
        fh: Fh,
        offset: u64,
        data: &[u8],
        placement: Placement,
    ) -> Result<usize> {
        let _gate = self.change_gate();
        let h = self.writable(fh)?;
        let file = file_of(&h)?;
        self.snap_meta(&h.inode);
        if data.is_empty() {
            return Ok(0);
        }
        let io = file.lock_io();
        let offset = match placement {
            Placement::HandleMode if h.flags.append => file.size(),
            _ => offset,
        };
        check_write_flags(&h.inode.meta.read(), offset, file.size(), ctx.is_none())?;
        let n = file.write(&io, &self.mm, offset, data)?;
        drop(io);
        self.after_modify(ctx, &h);
        Ok(n)
    }

    /// mtime/ctime after data changed through a handle, and the set-id and capability clearing
    /// of a change by `ctx` (`None`: mapping writeback, which clears nothing).
    fn after_modify(&self, ctx: Option<(&Ctx, SetIdClearing)>, h: &Handle) {
        let now = Timespec::now();
        let mut m = h.inode.meta.write();
        m.mtime = now;
        m.ctime = now;
        if let Some((ctx, clearing)) = ctx {
            m.perm &= !perm::setid_bits_to_kill_on_write(ctx, clearing, m.perm, m.gid, true);
            self.kill_priv(&mut m);
        }
    }

    /// `fallocate(2)`: reserve a range (extending the size unless `KeepSize`), or punch a hole.
    /// A failed reservation changes nothing.
    ///
    /// # Errors
    /// `Invalid` for a zero length, `FileTooBig`, `NoSpace`, `BadHandle`, `IsDir`, `ReadOnly`.
    pub fn fallocate(&self, ctx: &Ctx, fh: Fh, offset: u64, len: u64, mode: FallocateMode) -> Result<()> {
        self.fallocate_with(ctx, fh, offset, len, mode, SetIdClearing::Engine)
    }

    /// As [`Filesystem::fallocate`], with `clearing` saying whether the engine clears set-id
    /// bits or the client already has (see [`SetIdClearing`]).
    ///
    /// # Errors
    /// As [`Filesystem::fallocate`].
    pub fn fallocate_with(
        &self,
        ctx: &Ctx,
        fh: Fh,
        offset: u64,
        len: u64,
        mode: FallocateMode,
        clearing: SetIdClearing,
    ) -> Result<()> {
        let _gate = self.change_gate();
        // vfs_fallocate's order: the length, then the handle's mode, then the file's kind.
        if len == 0 {
            return Err(FsError::Invalid);
        }
        let h = self.writable(fh)?;
        let file = file_of(&h)?;
        self.snap_meta(&h.inode);
        if offset.checked_add(len).is_none_or(|e| e > MAX_FILE_SIZE) {
            return Err(FsError::FileTooBig);
        }
        if mode != FallocateMode::PunchHole && self.mm.pages_quota().max().is_none() {
            // Unlimited instance: statfs reports the host's RAM as free space; refuse at once a
            // reservation bigger than that (Linux fails it on its memory accounting) instead of
            // building a page map for it.
            let pages = (offset + len).div_ceil(PAGE_SIZE) - offset / PAGE_SIZE;
            if pages > self.statfs().bfree.saturating_add(file.charged_pages()) {
                return Err(FsError::NoSpace);
            }
        }
        {
            // vfs_fallocate: nothing on an immutable file; only allocation on an append-only one.
            let m = h.inode.meta.read();
            m.check_not_immutable()?;
            if mode != FallocateMode::Allocate && m.flags & crate::file_flags::APPEND != 0 {
                return Err(FsError::Perm);
            }
        }
        let io = file.lock_io();
        match mode {
            FallocateMode::Allocate => file.reserve(&io, &self.mm, offset, len, false)?,
            FallocateMode::KeepSize => file.reserve(&io, &self.mm, offset, len, true)?,
            FallocateMode::PunchHole => file.punch(&io, &self.mm, offset, len)?,
        }
        drop(io);
        self.after_modify(Some((ctx, clearing)), &h);
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
    /// `BadHandle` (source not readable, target not writable or opened with `append`),
    /// `Invalid` (overlapping ranges in one file, not regular files), `IsDir`, `FileTooBig`,
    /// `NoSpace`, `Io` (a source page that cannot be read, see [`Filesystem::read`]).
    pub fn copy_file_range(
        &self,
        ctx: &Ctx,
        fh_in: Fh,
        off_in: u64,
        fh_out: Fh,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        let (ins, outs) = ((fh_in, off_in), (fh_out, off_out));
        self.copy_placed((ctx, SetIdClearing::Engine), ins, outs, len, Placement::HandleMode)
    }

    /// As [`Filesystem::copy_file_range`], but the target's `append` flag is not checked: for
    /// a server whose client refuses a copy into an `O_APPEND` file itself (Linux does, in
    /// generic_copy_file_checks, seeing `fcntl(F_SETFL)` changes the engine never sees).
    /// `clearing` says whether the engine clears the target's set-id bits or the client has.
    ///
    /// # Errors
    /// As [`Filesystem::copy_file_range`], without the `BadHandle` of an `append` target.
    // The syscall's own six values plus who clears set-id bits: a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn copy_file_range_at(
        &self,
        ctx: &Ctx,
        fh_in: Fh,
        off_in: u64,
        fh_out: Fh,
        off_out: u64,
        len: u64,
        clearing: SetIdClearing,
    ) -> Result<u64> {
        let (ins, outs) = ((fh_in, off_in), (fh_out, off_out));
        self.copy_placed((ctx, clearing), ins, outs, len, Placement::Exact)
    }

    fn copy_placed(
        &self,
        ctx: (&Ctx, SetIdClearing),
        (fh_in, off_in): (Fh, u64),
        (fh_out, off_out): (Fh, u64),
        len: u64,
        placement: Placement,
    ) -> Result<u64> {
        let _gate = self.change_gate();
        // generic_copy_file_checks' order: kinds, then modes, then ranges.
        let (hin, hout) = (self.handles.get(fh_in)?, self.handles.get(fh_out)?);
        let fin = file_of(&hin)?;
        let fout = file_of(&hout)?;
        let hin = self.readable(fh_in)?;
        let hout = self.writable(fh_out)?;
        self.snap_meta(&hout.inode);
        if placement == Placement::HandleMode && hout.flags.append {
            return Err(FsError::BadHandle);
        }
        // An immutable target cannot change; an append-only one only through an `append`
        // handle, which copy_file_range refuses anyway.
        hout.inode.meta.read().check_no_fixed_flags()?;
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
            let n = match fin.read_waiting(&self.mm, off_in + done, &mut buf[..want]) {
                Ok(n) => n,
                Err(e) if done == 0 => return Err(e),
                // Report what was copied; the caller's next call starts at the bad page.
                Err(_) => break,
            };
            if n == 0 {
                break;
            }
            let io = fout.lock_io();
            let w = match fout.write(&io, &self.mm, off_out + done, &buf[..n]) {
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

/// The file flags' refusals of a write at `offset` into a file of `size` bytes: none into an
/// immutable file (a handle opened before the flag was set), only at the end of an append-only
/// one (a FUSE client sends the offset; the kernel does not check the flag for FUSE). A
/// mapping's writeback (`writeback`) into an immutable file is let through, as on Linux, where
/// a shared mapping made before `chattr +i` keeps storing into the page cache.
fn check_write_flags(m: &crate::inode::Meta, offset: u64, size: u64, writeback: bool) -> Result<()> {
    if !writeback {
        m.check_not_immutable()?;
    }
    if m.flags & crate::file_flags::APPEND != 0 && offset != size {
        return Err(FsError::Perm);
    }
    Ok(())
}

fn file_of(h: &Handle) -> Result<&FileData> {
    match h.inode.kind {
        FileKind::RegularFile => h.inode.file().ok_or(FsError::Invalid),
        FileKind::Directory => Err(FsError::IsDir),
        _ => Err(FsError::Invalid),
    }
}
