//! Swap backends: where sealed pages are stored.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use rtmpfs_pages::{OutOfMemory, PageBuf};

use crate::sync::{AtomicBool, Ordering};
use crate::types::PAGE_SIZE;

/// One page in a 4096-aligned buffer, as `O_DIRECT` I/O requires: a page of the page pool, so
/// that a page read back from swap becomes a frame without a copy.
pub struct AlignedPage(PageBuf);

impl AlignedPage {
    /// A page of zeros.
    ///
    /// # Errors
    /// `OutOfMemory` when the host has no memory for it.
    pub fn zeroed() -> Result<AlignedPage, OutOfMemory> {
        PageBuf::zeroed().map(AlignedPage)
    }

    /// A page with unspecified contents, to be overwritten entirely (by a read, or a copy).
    ///
    /// # Errors
    /// `OutOfMemory` when the host has no memory for it.
    pub fn for_overwrite() -> Result<AlignedPage, OutOfMemory> {
        PageBuf::for_overwrite().map(AlignedPage)
    }

    /// The page itself, e.g. to become a frame's data.
    #[must_use]
    pub fn into_page(self) -> PageBuf {
        self.0
    }
}

impl Deref for AlignedPage {
    type Target = [u8; PAGE_SIZE as usize];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for AlignedPage {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Page storage addressed by slot number. Implementations must be safe to call from several
/// threads at once on different slots.
pub trait SwapBackend: Send + Sync {
    /// Store one page at `slot`.
    ///
    /// # Errors
    /// Any I/O error; the engine then keeps the page in RAM.
    fn write_page(&self, slot: u64, page: &AlignedPage) -> io::Result<()>;
    /// Read one page from `slot`.
    ///
    /// # Errors
    /// Any I/O error; the engine then poisons the page (EIO on access).
    fn read_page(&self, slot: u64, page: &mut AlignedPage) -> io::Result<()>;
    /// How many slots the backend can hold, if bounded.
    fn capacity_slots(&self) -> Option<u64> {
        None
    }

    /// Read bytes `[offset, offset + buf.len())` of the page at `slot`: the sectors holding a
    /// compressed record. `offset` and `buf.len()` are multiples of 512 and `buf` starts at a
    /// page boundary of an [`AlignedPage`] (what `O_DIRECT` asks). The default reads the whole
    /// page and copies the part.
    ///
    /// # Errors
    /// Any I/O error; then nothing counts as read.
    fn read_part(&self, slot: u64, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        let mut page = AlignedPage::for_overwrite().map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        self.read_page(slot, &mut page)?;
        let part = page
            .get(offset..offset + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        buf.copy_from_slice(part);
        Ok(())
    }

    /// Store consecutive pages at slots `first..first + pages.len()` (one I/O where the backend
    /// can).
    ///
    /// # Errors
    /// Any I/O error; then none of the pages counts as stored.
    fn write_pages(&self, first: u64, pages: &[&AlignedPage]) -> io::Result<()> {
        for (i, p) in pages.iter().enumerate() {
            self.write_page(first + i as u64, p)?;
        }
        Ok(())
    }

    /// Read consecutive pages from slots `first..first + pages.len()` (one I/O where the backend
    /// can).
    ///
    /// # Errors
    /// Any I/O error; then none of the pages counts as read.
    fn read_pages(&self, first: u64, pages: &mut [&mut AlignedPage]) -> io::Result<()> {
        for (i, p) in pages.iter_mut().enumerate() {
            self.read_page(first + i as u64, p)?;
        }
        Ok(())
    }
}

/// The private swap file.
pub struct FileSwap {
    file: File,
    /// `O_DIRECT` was refused by the directory's filesystem: drop written pages from the host
    /// page cache with `POSIX_FADV_DONTNEED` instead.
    fadvise: bool,
    /// A sector-sized `O_DIRECT` read was refused (`EINVAL`: the device's logical blocks are
    /// larger than 512 bytes): records are read as whole pages from then on.
    whole_pages: AtomicBool,
}

impl FileSwap {
    /// Create an anonymous swap file in `dir`: `O_TMPFILE` (never visible, gone when the process
    /// ends, even killed), mode 0600, `O_DIRECT` where the filesystem allows. Falls back to a
    /// named file unlinked at once where `O_TMPFILE` is unsupported.
    ///
    /// # Errors
    /// `dir` is missing, not a directory, not writable, or on a filesystem that refuses both.
    pub fn create(dir: &Path) -> io::Result<FileSwap> {
        let meta = std::fs::metadata(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("swap directory {}: {e}", dir.display())))?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("swap directory {} is not a directory", dir.display()),
            ));
        }
        let attempts = [(libc::O_TMPFILE | libc::O_DIRECT, false), (libc::O_TMPFILE, true)];
        let mut last = None;
        for (flags, fadvise) in attempts {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .mode(0o600)
                .custom_flags(flags)
                .open(dir)
            {
                Ok(file) => {
                    return Ok(FileSwap {
                        file,
                        fadvise,
                        whole_pages: AtomicBool::new(false),
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        // No O_TMPFILE: a named file, created exclusively and unlinked at once.
        let name = dir.join(format!(
            ".rtmpfs-swap-{}-{}",
            std::process::id(),
            crate::types::Timespec::now().nsec
        ));
        let named = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&name);
        match named {
            Ok(file) => {
                std::fs::remove_file(&name)?;
                Ok(FileSwap {
                    file,
                    fadvise: true,
                    whole_pages: AtomicBool::new(false),
                })
            }
            Err(e) => {
                let first = last.map(|l| format!("{l}; ")).unwrap_or_default();
                Err(io::Error::new(
                    e.kind(),
                    format!("cannot create swap file in {}: {first}{e}", dir.display()),
                ))
            }
        }
    }

    /// Whether writes bypass the host page cache with `O_DIRECT`.
    #[must_use]
    pub fn is_direct(&self) -> bool {
        !self.fadvise
    }
}

impl SwapBackend for FileSwap {
    fn write_page(&self, slot: u64, page: &AlignedPage) -> io::Result<()> {
        let off = slot * PAGE_SIZE;
        self.file.write_all_at(&page[..], off)?;
        if self.fadvise {
            rustix::fs::fadvise(
                &self.file,
                off,
                std::num::NonZeroU64::new(PAGE_SIZE),
                rustix::fs::Advice::DontNeed,
            )?;
        }
        Ok(())
    }

    fn read_page(&self, slot: u64, page: &mut AlignedPage) -> io::Result<()> {
        let off = slot * PAGE_SIZE;
        self.file.read_exact_at(&mut page[..], off)?;
        if self.fadvise {
            rustix::fs::fadvise(
                &self.file,
                off,
                std::num::NonZeroU64::new(PAGE_SIZE),
                rustix::fs::Advice::DontNeed,
            )?;
        }
        Ok(())
    }

    fn read_part(&self, slot: u64, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        let whole = |buf: &mut [u8]| {
            let mut page = AlignedPage::for_overwrite().map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
            self.read_page(slot, &mut page)?;
            buf.copy_from_slice(&page[offset..offset + buf.len()]);
            Ok(())
        };
        if self.whole_pages.load(Ordering::Relaxed) {
            return whole(buf);
        }
        let off = slot * PAGE_SIZE + offset as u64;
        match self.file.read_exact_at(buf, off) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !self.fadvise => {
                self.whole_pages.store(true, Ordering::Relaxed);
                return whole(buf);
            }
            other => other?,
        }
        if self.fadvise {
            rustix::fs::fadvise(
                &self.file,
                off,
                std::num::NonZeroU64::new(buf.len() as u64),
                rustix::fs::Advice::DontNeed,
            )?;
        }
        Ok(())
    }

    fn write_pages(&self, first: u64, pages: &[&AlignedPage]) -> io::Result<()> {
        let mut done = 0;
        while done < pages.len() {
            let iov: Vec<io::IoSlice<'_>> = pages[done..].iter().map(|p| io::IoSlice::new(&p[..])).collect();
            let n = rustix::io::pwritev(&self.file, &iov, (first + done as u64) * PAGE_SIZE)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            if n % PAGE_SIZE as usize != 0 {
                // A torn page: rewrite it alone (O_DIRECT never does this; buffered I/O may).
                let page = done + n / PAGE_SIZE as usize;
                self.write_page(first + page as u64, pages[page])?;
                done = page + 1;
            } else {
                done += n / PAGE_SIZE as usize;
            }
        }
        if self.fadvise {
            let len = std::num::NonZeroU64::new(pages.len() as u64 * PAGE_SIZE);
            rustix::fs::fadvise(&self.file, first * PAGE_SIZE, len, rustix::fs::Advice::DontNeed)?;
        }
        Ok(())
    }

    fn read_pages(&self, first: u64, pages: &mut [&mut AlignedPage]) -> io::Result<()> {
        let count = pages.len();
        let mut done = 0;
        while done < count {
            let mut iov: Vec<io::IoSliceMut<'_>> = pages[done..]
                .iter_mut()
                .map(|p| io::IoSliceMut::new(&mut p[..]))
                .collect();
            let n = rustix::io::preadv(&self.file, &mut iov, (first + done as u64) * PAGE_SIZE)?;
            drop(iov);
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            if n % PAGE_SIZE as usize != 0 {
                let page = done + n / PAGE_SIZE as usize;
                self.read_page(first + page as u64, pages[page])?;
                done = page + 1;
            } else {
                done += n / PAGE_SIZE as usize;
            }
        }
        if self.fadvise {
            let len = std::num::NonZeroU64::new(count as u64 * PAGE_SIZE);
            rustix::fs::fadvise(&self.file, first * PAGE_SIZE, len, rustix::fs::Advice::DontNeed)?;
        }
        Ok(())
    }
}
