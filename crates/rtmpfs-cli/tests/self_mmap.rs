//! The classic tmpfs deadlock, over FUSE: `write(fd, map + k, n)` where `map` is a MAP_SHARED
//! mapping of `fd` itself and the source pages are not faulted in yet, so that the kernel must
//! fault them in (a READ to the daemon) while it is writing to the same file. The same with
//! `pread(fd, map + k, n)` (the destination faults, a write fault on the same file).
//!
//! Every scenario runs on kernel tmpfs (the oracle) and on rtmpfs, and the results must be
//! identical: return value, errno, file size and a hash of the content read back from the
//! daemon (page cache dropped first). Scenarios: disjoint and overlapping ranges, aligned and
//! not; a source or destination in a hole of a sparse file, beyond EOF, and straddling EOF; and
//! concurrent ftruncate from another thread. A watchdog fails the test instead of hanging: on
//! timeout the mount is detached and the daemon killed, which unblocks the stuck thread.

mod common;

use common::{can_mount, Daemon, Tmpfs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

const PG: usize = 4096;
const DEADLINE: Duration = Duration::from_secs(240);

/// An open file and (optionally) a shared mapping of it, closed/unmapped on drop.
struct Subject {
    fd: i32,
    map: *mut u8,
    map_len: usize,
}

impl Subject {
    fn create(dir: &Path, name: &str) -> Subject {
        Subject::create_with(dir, name, 0)
    }

    /// As `create`, with `extra` open flags (O_APPEND).
    fn create_with(dir: &Path, name: &str, extra: i32) -> Subject {
        let p = common::c_path(&dir.join(name));
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | extra;
        // SAFETY: valid path; flags and mode are plain integers.
        let fd = unsafe { libc::open(p.as_ptr(), flags, 0o644) };
        assert!(fd >= 0, "open {name}: errno {}", common::errno());
        Subject {
            fd,
            map: std::ptr::null_mut(),
            map_len: 0,
        }
    }

    /// Fill pages `pages` with the pattern (distinct per page and word).
    fn fill(&self, pages: std::ops::Range<usize>) {
        for p in pages {
            let page = pattern_page(p);
            // SAFETY: `page` is a valid buffer of PG bytes.
            let r = unsafe { libc::pwrite(self.fd, page.as_ptr().cast(), PG, (p * PG) as i64) };
            assert_eq!(r, PG as isize);
        }
    }

    fn truncate(&self, len: usize) {
        // SAFETY: plain syscall on our fd.
        assert_eq!(unsafe { libc::ftruncate(self.fd, len as i64) }, 0);
    }

    /// Drop the kernel's page cache for the file, so that the first touch of the mapping has
    /// to ask the filesystem (a FUSE READ). Kernel tmpfs ignores this: its cache is the store.
    fn drop_cache(&self) {
        // SAFETY: plain syscalls on our fd.
        unsafe {
            libc::fsync(self.fd);
            libc::posix_fadvise(self.fd, 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }

    /// A fresh MAP_SHARED mapping: no page of it is faulted in yet.
    fn map(&mut self, len: usize) {
        self.drop_cache();
        // SAFETY: a new shared mapping of our fd; nothing else aliases it.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd,
                0,
            )
        };
        assert_ne!(m, libc::MAP_FAILED, "mmap: errno {}", common::errno());
        self.map = m.cast();
        self.map_len = len;
    }

    /// `pwrite(fd, map + k, n, off)`: the source is the file itself.
    fn write_from_map(&self, k: usize, n: usize, off: usize) -> (isize, i32) {
        assert!(k + n <= self.map_len);
        // SAFETY: the range lies inside our mapping; the kernel copies from it (faulting it in,
        // or failing with EFAULT beyond EOF) and never hands us a bad pointer.
        let r = unsafe { libc::pwrite(self.fd, self.map.add(k).cast(), n, off as i64) };
        (r, if r < 0 { common::errno() } else { 0 })
    }

    /// `pread(fd, map + k, n, off)`: the destination is the file itself.
    fn read_into_map(&self, k: usize, n: usize, off: usize) -> (isize, i32) {
        assert!(k + n <= self.map_len);
        // SAFETY: as in `write_from_map`, with the kernel writing into the mapping.
        let r = unsafe { libc::pread(self.fd, self.map.add(k).cast(), n, off as i64) };
        (r, if r < 0 { common::errno() } else { 0 })
    }

    fn unmap(&mut self) {
        if !self.map.is_null() {
            // SAFETY: our own mapping, of this length; no reference into it survives.
            unsafe {
                libc::msync(self.map.cast(), self.map_len, libc::MS_SYNC);
                libc::munmap(self.map.cast(), self.map_len);
            }
            self.map = std::ptr::null_mut();
        }
    }

    fn size(&self) -> usize {
        // SAFETY: `st` is plain data filled by fstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and writable stat.
        assert_eq!(unsafe { libc::fstat(self.fd, &raw mut st) }, 0);
        st.st_size as usize
    }

    /// FNV-1a of the whole content, read back through the filesystem (cache dropped first).
    fn hash(&mut self) -> u64 {
        self.unmap();
        self.drop_cache();
        let size = self.size();
        let mut buf = vec![0u8; size];
        let mut done = 0;
        while done < size {
            // SAFETY: the destination is our own buffer of the right length.
            let r = unsafe { libc::pread(self.fd, buf[done..].as_mut_ptr().cast(), size - done, done as i64) };
            assert!(r > 0, "read back: {r} errno {}", common::errno());
            done += r as usize;
        }
        fnv(&buf)
    }

    fn result(&mut self, name: &str, (r, e): (isize, i32)) -> String {
        let h = self.hash();
        format!("{name}: ret={r} errno={e} size={} hash={h:016x}", self.size())
    }

    /// The whole content as it is now (through the filesystem).
    fn content(&mut self) -> Vec<u8> {
        let size = self.size();
        let mut buf = vec![0u8; size];
        // SAFETY: our own buffer of the right length.
        let r = unsafe { libc::pread(self.fd, buf.as_mut_ptr().cast(), size, 0) };
        assert_eq!(r, size as isize);
        buf
    }

    /// Like `result`, plus the hash the file would have if the copy had taken a snapshot of
    /// its source first (memmove semantics): `pre[dst..dst+n] = pre[src..src+n]`.
    fn result_overlap(
        &mut self,
        name: &str,
        r: (isize, i32),
        mut pre: Vec<u8>,
        (src, dst, n): (usize, usize, usize),
    ) -> String {
        let snapshot = pre[src..src + n].to_vec();
        pre[dst..dst + n].copy_from_slice(&snapshot);
        format!("{} memmove={:016x}", self.result(name, r), fnv(&pre))
    }
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Drop for Subject {
    fn drop(&mut self) {
        self.unmap();
        // SAFETY: closing our own fd once.
        unsafe { libc::close(self.fd) };
    }
}

fn pattern_page(p: usize) -> Vec<u8> {
    let mut v = vec![0u8; PG];
    for (w, c) in v.chunks_mut(4).enumerate() {
        let x = ((p as u32 + 1) << 16) | ((w as u32 & 0xffff) ^ 0x5a5a);
        c.copy_from_slice(&x.to_le_bytes());
    }
    v
}

/// A file of `pages` full pages of pattern, mapped `map_pages` long.
fn dense(dir: &Path, name: &str, pages: usize, map_pages: usize) -> Subject {
    let mut s = Subject::create(dir, name);
    s.fill(0..pages);
    s.map(map_pages * PG);
    s
}

/// A sparse file of 16 pages with data in pages 8..12 only.
fn sparse(dir: &Path, name: &str) -> Subject {
    let mut s = Subject::create(dir, name);
    s.truncate(16 * PG);
    s.fill(8..12);
    s.map(16 * PG);
    s
}

fn scenarios(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut s = dense(dir, "w_disjoint", 8, 8);
    let r = s.write_from_map(0, 4 * PG, 4 * PG);
    out.push(s.result("write_disjoint", r));

    let mut s = dense(dir, "w_disjoint_unaligned", 8, 8);
    let r = s.write_from_map(100, 3 * PG + 50, 5 * PG + 13);
    out.push(s.result("write_disjoint_unaligned", r));

    for (name, k, n, off) in [
        ("write_overlap_forward", 0, 6 * PG, 2 * PG),
        ("write_overlap_backward", 2 * PG, 6 * PG, 0),
        ("write_overlap_unaligned", 1000, 5 * PG + 7, PG + 3000),
    ] {
        let mut s = dense(dir, name, 8, 8);
        let pre = s.content();
        s.drop_cache();
        let r = s.write_from_map(k, n, off);
        out.push(s.result_overlap(name, r, pre, (k, off, n)));
    }

    let mut s = sparse(dir, "w_src_hole");
    let r = s.write_from_map(0, 4 * PG, 8 * PG);
    out.push(s.result("write_source_in_hole", r));

    let mut s = sparse(dir, "w_hole_to_hole");
    let r = s.write_from_map(PG + 5, 2 * PG, 13 * PG);
    out.push(s.result("write_hole_into_hole", r));

    let mut s = dense(dir, "w_beyond_eof", 4, 8);
    let r = s.write_from_map(5 * PG, PG, 0);
    out.push(s.result("write_source_beyond_eof", r));

    let mut s = dense(dir, "w_straddle_eof", 4, 8);
    let r = s.write_from_map(3 * PG, 2 * PG, 0);
    out.push(s.result("write_source_straddles_eof", r));

    // A sparse file whose EOF is inside a page: the tail of that page reads zero through the
    // mapping; the next page is beyond EOF.
    let mut s = Subject::create(dir, "w_sparse_eof");
    s.fill(0..1);
    s.truncate(3 * PG + 100);
    s.map(8 * PG);
    let r = s.write_from_map(3 * PG + 50, PG, PG + 7);
    out.push(s.result("write_source_sparse_tail_beyond_eof", r));

    let mut s = dense(dir, "r_disjoint", 8, 8);
    let r = s.read_into_map(4 * PG, 4 * PG, 0);
    out.push(s.result("pread_disjoint", r));

    for (name, k, n, off) in [
        ("pread_overlap_forward", 2 * PG, 6 * PG, 0),
        ("pread_overlap_backward", 0, 6 * PG, 2 * PG),
        ("pread_overlap_unaligned", PG + 3000, 5 * PG + 7, 1000),
    ] {
        let mut s = dense(dir, name, 8, 8);
        let pre = s.content();
        s.drop_cache();
        let r = s.read_into_map(k, n, off);
        out.push(s.result_overlap(name, r, pre, (off, k, n)));
    }

    let mut s = sparse(dir, "r_dst_hole");
    let r = s.read_into_map(0, 4 * PG, 8 * PG);
    out.push(s.result("pread_destination_in_hole", r));

    let mut s = dense(dir, "r_beyond_eof", 4, 8);
    let r = s.read_into_map(5 * PG, PG, 0);
    out.push(s.result("pread_destination_beyond_eof", r));

    let mut s = dense(dir, "r_straddle_eof", 4, 8);
    let r = s.read_into_map(3 * PG, 2 * PG, 0);
    out.push(s.result("pread_destination_straddles_eof", r));

    out.push(mapped_store_with_o_append(dir));
    out.push(concurrent_truncate(dir, "write", false));
    out.push(concurrent_truncate(dir, "pread", true));
    out
}

/// A file opened O_RDWR|O_APPEND, mapped shared, page 0 changed, msync: the store lands in
/// page 0 and the size stays (writeback of a mapping never appends, whatever the open flags).
/// The hash reads back with the page cache dropped, so it sees what the daemon stored.
fn mapped_store_with_o_append(dir: &Path) -> String {
    let mut s = Subject::create_with(dir, "mmap_o_append", libc::O_APPEND);
    s.fill(0..2); // appends, in page order: the same bytes as pwrite at each page
    s.truncate(10_000);
    s.map(3 * PG);
    // SAFETY: page 0 lies inside the mapping and inside the file.
    unsafe { std::ptr::write_bytes(s.map, 0xab, 100) };
    // SAFETY: our own mapping, of this length.
    let r = unsafe { libc::msync(s.map.cast(), s.map_len, libc::MS_SYNC) };
    s.result(
        "mapped_store_with_o_append",
        (r as isize, if r < 0 { common::errno() } else { 0 }),
    )
}

/// One thread writes from (or reads into) the mapping at random places while another
/// truncates the file to random sizes. Results are racy, so only completion and the file's
/// sanity afterwards are compared.
fn concurrent_truncate(dir: &Path, name: &str, read: bool) -> String {
    const PAGES: usize = 64;
    let mut s = dense(dir, &format!("c_{name}"), PAGES, PAGES);
    let stop = Arc::new(AtomicBool::new(false));
    let truncs = Arc::new(AtomicUsize::new(0));
    let fd = s.fd;
    let truncator = {
        let (stop, truncs) = (stop.clone(), truncs.clone());
        std::thread::spawn(move || {
            let sizes = [0, 13 * PG, PAGES * PG, 31 * PG + 123, 5 * PG + 1, 47 * PG];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: plain syscall on an fd that outlives this thread.
                unsafe { libc::ftruncate(fd, sizes[i % sizes.len()] as i64) };
                i += 1;
                truncs.store(i, Ordering::Relaxed);
            }
        })
    };
    // Race for real: start once the truncator is running.
    while truncs.load(Ordering::Relaxed) == 0 {
        std::thread::yield_now();
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x as usize) % m
    };
    for _ in 0..1500 {
        let k = next(PAGES * PG - 1);
        let n = 1 + next((PAGES * PG - k).min(6 * PG));
        let off = next(PAGES * PG);
        if read {
            let _ = s.read_into_map(k, n, off);
        } else {
            let _ = s.write_from_map(k, n, off);
        }
    }
    stop.store(true, Ordering::Relaxed);
    truncator.join().unwrap();
    // Afterwards the file must behave: a full rewrite reads back, through read and mapping.
    s.unmap();
    s.truncate(0);
    s.fill(0..PAGES);
    s.map(PAGES * PG);
    let mut ok = true;
    for p in 0..PAGES {
        let want = pattern_page(p);
        // SAFETY: the file is PAGES pages long now, so the whole mapping is backed.
        let got = unsafe { std::slice::from_raw_parts(s.map.add(p * PG), PG) };
        ok &= got == want.as_slice();
    }
    format!(
        "concurrent_truncate_{name}: completed, afterwards {} hash={:016x}",
        if ok { "consistent" } else { "INCONSISTENT" },
        s.hash()
    )
}

/// Run the scenarios in `dir` on a thread, failing (not hanging) after `DEADLINE`; on timeout
/// `on_timeout` unblocks the stuck thread (by tearing down the mount).
fn run_with_watchdog(dir: PathBuf, on_timeout: impl FnOnce()) -> Vec<String> {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(scenarios(&dir));
    });
    if let Ok(v) = rx.recv_timeout(DEADLINE) {
        t.join().unwrap();
        v
    } else {
        on_timeout();
        panic!("self-mmap scenarios did not finish within {DEADLINE:?}: deadlock");
    }
}

fn compare_with_tmpfs(test: &str, opts: &str) {
    if !can_mount(test) {
        return;
    }
    let tmpfs = Tmpfs::mount("size=64m");
    let want = run_with_watchdog(tmpfs.path().to_path_buf(), || {});
    let mut daemon = Daemon::start(opts);
    let path = daemon.path().to_path_buf();
    let pid = daemon.pid();
    let got = run_with_watchdog(path.clone(), move || {
        common::force_unmount(&path);
        // SAFETY: killing our own child daemon aborts the connection.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    for (w, g) in want.iter().zip(&got) {
        eprintln!("tmpfs : {w}\nrtmpfs: {g}");
    }
    assert!(
        want.iter().all(|l| !l.contains("INCONSISTENT")),
        "kernel tmpfs itself failed: {want:#?}"
    );
    assert_eq!(want.len(), got.len());
    let mut bad = Vec::new();
    for (w, g) in want.iter().zip(&got) {
        if w != g && !known_deviation(opts, w, g) {
            bad.push(format!("tmpfs : {w}\nrtmpfs: {g}"));
        }
    }
    assert!(
        bad.is_empty(),
        "rtmpfs ({opts}) differs from kernel tmpfs:\n{}",
        bad.join("\n")
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// Differences from kernel tmpfs that come from the kernel's FUSE code, not from rtmpfs; each
/// is checked precisely (and documented in docs/fuse.md, "mmap").
fn known_deviation(opts: &str, tmpfs: &str, rtmpfs: &str) -> bool {
    let name = rtmpfs.split(':').next().unwrap_or("");
    let same = |k: &str| field(tmpfs, k) == field(rtmpfs, k);
    if !opts.contains("direct_io") && name == "write_source_sparse_tail_beyond_eof" {
        // fuse_fill_write_pages fails the whole page-sized chunk with EFAULT when its source
        // is only partly readable; generic_perform_write (tmpfs) copies the readable part and
        // returns a short count. Nothing is written in either case here.
        let ok =
            field(rtmpfs, "ret") == Some("-1") && field(rtmpfs, "errno") == Some("14") && same("size") && same("hash");
        if ok {
            eprintln!("known deviation (kernel FUSE buffered write): {name}");
        }
        return ok;
    }
    if opts.contains("direct_io") && name.contains("overlap") {
        // The direct path pins and sends the whole source before writing anything: the result
        // is memmove's. tmpfs copies page by page through the same page cache, so an earlier
        // page of the copy shows up in later source pages.
        let ok = same("ret")
            && same("errno")
            && same("size")
            && field(rtmpfs, "hash").is_some()
            && field(rtmpfs, "hash") == field(rtmpfs, "memmove");
        if ok {
            eprintln!("known deviation (FUSE direct I/O: memmove semantics): {name}");
        }
        return ok;
    }
    false
}

#[test]
fn self_mmap_matches_kernel_tmpfs() {
    compare_with_tmpfs("self_mmap_matches_kernel_tmpfs", "");
}

#[test]
fn self_mmap_matches_kernel_tmpfs_one_thread() {
    compare_with_tmpfs("self_mmap_matches_kernel_tmpfs_one_thread", "threads=1");
}

#[test]
fn self_mmap_matches_kernel_tmpfs_direct_io() {
    compare_with_tmpfs("self_mmap_matches_kernel_tmpfs_direct_io", "direct_io");
}

#[test]
fn self_mmap_matches_kernel_tmpfs_swapped_out() {
    // A RAM budget of 16 pages for files of up to 64 pages: source and destination pages are
    // swapped out (or being evicted) while the kernel faults them in.
    compare_with_tmpfs(
        "self_mmap_matches_kernel_tmpfs_swapped_out",
        "size=64m,memory=64k,swap=/var/tmp",
    );
}
