//! The work being measured: one fixture holding the engine's files and the kernel tmpfs's files
//! (the same shapes on both sides), and `run`, which does `n` operations of one kind on one side
//! and returns the time they took.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::hint::black_box;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtmpfs_core::{Config, Ctx, Fh, Filesystem, Ino, OpenFlags, SetAttr};

/// 4 KiB.
pub const PAGE: usize = 4096;
/// 1 MiB.
pub const MIB: usize = 1 << 20;
/// The big file of the random and sequential tests, and the memcpy buffers: 256 MiB.
pub const BIG: usize = 256 * MIB;
/// 1 MiB chunks in `BIG`.
const CHUNKS: u64 = (BIG / MIB) as u64;
/// Random offsets (page-aligned, within `BIG`) and random file picks, cycled through.
const RANDOM_LEN: usize = 1 << 16;
/// Files per stat directory.
pub const STAT_FILES: usize = 1000;
/// Rotating names for create+unlink.
const CU_NAMES: usize = 1024;
/// Entries of the readdir directory.
pub const READDIR_ENTRIES: usize = 20_000;
/// Threads of the scaling tests (each on its own files and directories).
pub const THREADS: usize = 2;

/// Who does the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// rtmpfs-core, in process.
    Engine,
    /// System calls on the kernel tmpfs.
    Kernel,
    /// Plain memcpy between two buffers (the bandwidth reference).
    Mem,
}

/// What is measured. One operation of each kind:
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// 4 KiB read at a random page-aligned offset of a 256 MiB file.
    Pread4k,
    /// 4 KiB write at a random page-aligned offset of a 256 MiB file whose pages all exist.
    Pwrite4k,
    /// 1 MiB read, sequentially through a 256 MiB file, wrapping around.
    SeqRead1m,
    /// 1 MiB write over existing pages, sequentially through a 256 MiB file, wrapping around.
    SeqWrite1m,
    /// 1 MiB write that allocates: appending to a file truncated to 0 every 256 MiB (the
    /// truncation is not timed).
    FreshWrite1m,
    /// Create an empty file, close it, unlink it.
    CreateUnlink,
    /// Attributes of an existing file: engine `getattr(ino)`; kernel `fstatat(dirfd, name)`.
    StatGetattr,
    /// Attributes of an existing file by name: engine `lookup` + `getattr`; kernel `fstatat`.
    StatLookup,
    /// One full listing of a 20,000-entry directory: open, read every entry, close.
    Readdir,
    /// Mem only: memcpy of 1 MiB chunks through 256 MiB buffers (DRAM to DRAM).
    Memcpy1m,
    /// Mem only: memcpy of 4 KiB from a random page of a 256 MiB buffer into a small buffer.
    FloorRead4k,
    /// Mem only: memcpy of 4 KiB from a small buffer into a random page of a 256 MiB buffer.
    FloorWrite4k,
}

const OPS: usize = 12;
const SIDES: usize = 3;

impl Op {
    fn index(self) -> usize {
        self as usize
    }
}

struct StatDirEngine {
    dir: Ino,
    names: Vec<OsString>,
    inos: Vec<Ino>,
}

struct EngineSide {
    big: [Fh; THREADS],
    fresh: (Ino, Fh),
    stat: [StatDirEngine; THREADS],
    cu: [Ino; THREADS],
    cu_names: Vec<OsString>,
    readdir: Ino,
}

struct StatDirKernel {
    dir: File,
    names: Vec<CString>,
}

struct KernelSide {
    big: [File; THREADS],
    fresh: File,
    stat: [StatDirKernel; THREADS],
    cu: [File; THREADS],
    cu_names: Vec<CString>,
    readdir: CString,
}

struct MemBufs {
    src: Vec<u8>,
    dst: Mutex<Vec<u8>>,
}

/// Everything both sides work on.
pub struct Fixture {
    fs: Filesystem,
    ctx: Ctx,
    e: EngineSide,
    k: KernelSide,
    mem: MemBufs,
    /// Page-aligned random offsets below `BIG`.
    offs: Vec<u64>,
    /// Random indices below `STAT_FILES`.
    picks: Vec<u32>,
    /// Where each (side, op, thread) continues, so that sequential and fresh writes keep going
    /// across calls.
    cursors: Vec<AtomicU64>,
}

fn os(s: String) -> OsString {
    OsString::from(s)
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

fn kernel_file(p: &Path) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(p)
        .unwrap_or_else(|e| panic!("create {}: {e}", p.display()))
}

fn pwrite_all(f: &File, buf: &[u8], off: u64) {
    use std::os::unix::fs::FileExt;
    f.write_all_at(buf, off).expect("pwrite");
}

impl Fixture {
    /// Build both sides under `kdir` (a kernel tmpfs directory): two 256 MiB files filled with
    /// data, an empty "fresh" file, two directories of `STAT_FILES` files, two empty directories
    /// for create+unlink, a directory of `READDIR_ENTRIES` empty files; and the memcpy buffers.
    pub fn new(kdir: &Path) -> Fixture {
        let fs = Filesystem::new(Config::default()).expect("engine");
        let ctx = Ctx::root();
        let root = fs.root();
        let fill: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8 | 1).collect();

        // Engine side. Diagnostic: RTMPFS_BENCH_FH_GAP=N opens N spare handles before the
        // second big file, so that the two threads' handle numbers fall in handle-table shards
        // N+1 apart instead of adjacent ones (see docs/benchmarks-engine.md).
        let fh_gap = std::env::var("RTMPFS_BENCH_FH_GAP")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let big_e = std::array::from_fn(|t| {
            if t > 0 {
                for _ in 0..fh_gap {
                    fs.opendir(&ctx, root).expect("spare handle");
                }
            }
            let (_, fh) = fs
                .create(&ctx, root, &os(format!("big{t}")), 0o644, OpenFlags::READ_WRITE)
                .expect("create big");
            for chunk in 0..CHUNKS {
                let n = fs.write(&ctx, fh, chunk * MIB as u64, &fill).expect("fill");
                assert_eq!(n, MIB);
            }
            fh
        });
        let (fattr, ffh) = fs
            .create(&ctx, root, &os("fresh".into()), 0o644, OpenFlags::READ_WRITE)
            .expect("create fresh");
        let stat_e = std::array::from_fn(|t| {
            let dir = fs.mkdir(&ctx, root, &os(format!("stat{t}")), 0o755).expect("mkdir").ino;
            let names: Vec<OsString> = (0..STAT_FILES).map(|i| os(format!("file{i}"))).collect();
            let inos = names
                .iter()
                .map(|n| {
                    let (a, fh) = fs.create(&ctx, dir, n, 0o644, OpenFlags::READ_WRITE).expect("create");
                    fs.release(fh).expect("release");
                    a.ino
                })
                .collect();
            StatDirEngine { dir, names, inos }
        });
        let cu_e = std::array::from_fn(|t| fs.mkdir(&ctx, root, &os(format!("cu{t}")), 0o755).expect("mkdir").ino);
        let cu_names: Vec<OsString> = (0..CU_NAMES).map(|i| os(format!("new{i}"))).collect();
        let readdir = fs.mkdir(&ctx, root, &os("readdir".into()), 0o755).expect("mkdir").ino;
        for i in 0..READDIR_ENTRIES {
            let (_, fh) = fs
                .create(&ctx, readdir, &os(format!("entry{i}")), 0o644, OpenFlags::READ_WRITE)
                .expect("create");
            fs.release(fh).expect("release");
        }
        let e = EngineSide {
            big: big_e,
            fresh: (fattr.ino, ffh),
            stat: stat_e,
            cu: cu_e,
            cu_names,
            readdir,
        };

        // Kernel side: the same shapes.
        let big_k = std::array::from_fn(|t| {
            let f = kernel_file(&kdir.join(format!("big{t}")));
            for chunk in 0..CHUNKS {
                pwrite_all(&f, &fill, chunk * MIB as u64);
            }
            f
        });
        let fresh_k = kernel_file(&kdir.join("fresh"));
        let stat_k = std::array::from_fn(|t| {
            let d = kdir.join(format!("stat{t}"));
            std::fs::create_dir(&d).expect("mkdir");
            let names: Vec<CString> = (0..STAT_FILES).map(|i| c(&format!("file{i}"))).collect();
            for i in 0..STAT_FILES {
                drop(kernel_file(&d.join(format!("file{i}"))));
            }
            StatDirKernel {
                dir: File::open(&d).expect("open dir"),
                names,
            }
        });
        let cu_k = std::array::from_fn(|t| {
            let d = kdir.join(format!("cu{t}"));
            std::fs::create_dir(&d).expect("mkdir");
            File::open(&d).expect("open dir")
        });
        let rd = kdir.join("readdir");
        std::fs::create_dir(&rd).expect("mkdir");
        for i in 0..READDIR_ENTRIES {
            drop(kernel_file(&rd.join(format!("entry{i}"))));
        }
        let k = KernelSide {
            big: big_k,
            fresh: fresh_k,
            stat: stat_k,
            cu: cu_k,
            cu_names: (0..CU_NAMES).map(|i| c(&format!("new{i}"))).collect(),
            readdir: CString::new(rd.as_os_str().as_bytes()).expect("no NUL"),
        };

        // memcpy buffers, touched so that no page fault lands in a measurement.
        let mem = MemBufs {
            src: vec![0x5a; BIG],
            dst: Mutex::new(vec![0xa5; BIG]),
        };

        let mut rng = StdRng::seed_from_u64(0x7274_6d70_6673);
        let offs = (0..RANDOM_LEN)
            .map(|_| rng.gen_range(0..(BIG / PAGE) as u64) * PAGE as u64)
            .collect();
        let picks = (0..RANDOM_LEN).map(|_| rng.gen_range(0..STAT_FILES as u32)).collect();
        let cursors = (0..SIDES * OPS * THREADS).map(|_| AtomicU64::new(0)).collect();
        Fixture {
            fs,
            ctx,
            e,
            k,
            mem,
            offs,
            picks,
            cursors,
        }
    }

    fn cursor(&self, side: Side, op: Op, tid: usize) -> &AtomicU64 {
        &self.cursors[(side as usize * OPS + op.index()) * THREADS + tid]
    }

    /// The random offset for step `i` of thread `tid`.
    #[inline]
    fn off(&self, tid: usize, i: u64) -> u64 {
        self.offs[(i as usize).wrapping_add(tid * 7919) % RANDOM_LEN]
    }

    #[inline]
    fn pick(&self, tid: usize, i: u64) -> usize {
        self.picks[(i as usize).wrapping_add(tid * 7919) % RANDOM_LEN] as usize
    }
}

/// Do `n` operations `op` on `side` as thread `tid` (which picks the thread's own files), and
/// return the time they took (for `FreshWrite1m`, without the truncations).
///
/// # Panics
/// If any operation fails: a benchmark of failing calls would measure nothing.
#[allow(clippy::too_many_lines)]
pub fn run(fx: &Fixture, side: Side, op: Op, tid: usize, n: u64) -> Duration {
    let start = fx.cursor(side, op, tid).fetch_add(n, Ordering::Relaxed);
    let fs = &fx.fs;
    let ctx = &fx.ctx;
    match (side, op) {
        (Side::Engine, Op::Pread4k) => {
            let fh = fx.e.big[tid];
            let mut buf = [0u8; PAGE];
            let t = Instant::now();
            for i in start..start + n {
                let got = fs.read(fh, fx.off(tid, i), &mut buf).expect("read");
                assert_eq!(got, PAGE);
                black_box(&buf);
            }
            t.elapsed()
        }
        (Side::Kernel, Op::Pread4k) => {
            let fd = fx.k.big[tid].as_raw_fd();
            let mut buf = [0u8; PAGE];
            let t = Instant::now();
            for i in start..start + n {
                // SAFETY: `buf` is valid for PAGE bytes.
                let got = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), PAGE, fx.off(tid, i) as i64) };
                assert_eq!(got, PAGE as isize);
                black_box(&buf);
            }
            t.elapsed()
        }
        (Side::Engine, Op::Pwrite4k) => {
            let fh = fx.e.big[tid];
            let buf = [0x3cu8; PAGE];
            let t = Instant::now();
            for i in start..start + n {
                let got = fs.write(ctx, fh, fx.off(tid, i), &buf).expect("write");
                assert_eq!(got, PAGE);
            }
            t.elapsed()
        }
        (Side::Kernel, Op::Pwrite4k) => {
            let fd = fx.k.big[tid].as_raw_fd();
            let buf = [0x3cu8; PAGE];
            let t = Instant::now();
            for i in start..start + n {
                // SAFETY: `buf` is valid for PAGE bytes.
                let got = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), PAGE, fx.off(tid, i) as i64) };
                assert_eq!(got, PAGE as isize);
            }
            t.elapsed()
        }
        (Side::Engine, Op::SeqRead1m) => {
            let fh = fx.e.big[tid];
            let mut buf = vec![0u8; MIB];
            let t = Instant::now();
            for i in start..start + n {
                let off = (i % CHUNKS) * MIB as u64;
                let got = fs.read(fh, off, &mut buf).expect("read");
                assert_eq!(got, MIB);
                black_box(&buf);
            }
            t.elapsed()
        }
        (Side::Kernel, Op::SeqRead1m) => {
            let fd = fx.k.big[tid].as_raw_fd();
            let mut buf = vec![0u8; MIB];
            let t = Instant::now();
            for i in start..start + n {
                let off = (i % CHUNKS) * MIB as u64;
                // SAFETY: `buf` is valid for MIB bytes.
                let got = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), MIB, off as i64) };
                assert_eq!(got, MIB as isize);
                black_box(&buf);
            }
            t.elapsed()
        }
        (Side::Engine, Op::SeqWrite1m) => {
            let fh = fx.e.big[tid];
            let buf = vec![0x6bu8; MIB];
            let t = Instant::now();
            for i in start..start + n {
                let off = (i % CHUNKS) * MIB as u64;
                let got = fs.write(ctx, fh, off, &buf).expect("write");
                assert_eq!(got, MIB);
            }
            t.elapsed()
        }
        (Side::Kernel, Op::SeqWrite1m) => {
            let fd = fx.k.big[tid].as_raw_fd();
            let buf = vec![0x6bu8; MIB];
            let t = Instant::now();
            for i in start..start + n {
                let off = (i % CHUNKS) * MIB as u64;
                // SAFETY: `buf` is valid for MIB bytes.
                let got = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), MIB, off as i64) };
                assert_eq!(got, MIB as isize);
            }
            t.elapsed()
        }
        (Side::Engine, Op::FreshWrite1m) => {
            let (ino, fh) = fx.e.fresh;
            let buf = vec![0x6bu8; MIB];
            let truncate = SetAttr {
                size: Some(0),
                ..SetAttr::default()
            };
            let mut total = Duration::ZERO;
            let mut t = Instant::now();
            for i in start..start + n {
                let chunk = i % CHUNKS;
                if chunk == 0 {
                    total += t.elapsed();
                    fs.setattr(ctx, ino, &truncate, Some(fh)).expect("truncate");
                    t = Instant::now();
                }
                let got = fs.write(ctx, fh, chunk * MIB as u64, &buf).expect("write");
                assert_eq!(got, MIB);
            }
            total + t.elapsed()
        }
        (Side::Kernel, Op::FreshWrite1m) => {
            let fd = fx.k.fresh.as_raw_fd();
            let buf = vec![0x6bu8; MIB];
            let mut total = Duration::ZERO;
            let mut t = Instant::now();
            for i in start..start + n {
                let chunk = i % CHUNKS;
                if chunk == 0 {
                    total += t.elapsed();
                    // SAFETY: plain system call on an fd we own.
                    assert_eq!(unsafe { libc::ftruncate(fd, 0) }, 0);
                    t = Instant::now();
                }
                // SAFETY: `buf` is valid for MIB bytes.
                let got = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), MIB, (chunk * MIB as u64) as i64) };
                assert_eq!(got, MIB as isize);
            }
            total + t.elapsed()
        }
        (Side::Engine, Op::CreateUnlink) => {
            let dir = fx.e.cu[tid];
            let names = &fx.e.cu_names;
            let t = Instant::now();
            for i in start..start + n {
                let name = &names[i as usize % CU_NAMES];
                let (_, fh) = fs.create(ctx, dir, name, 0o644, OpenFlags::READ_WRITE).expect("create");
                fs.release(fh).expect("release");
                fs.unlink(ctx, dir, name).expect("unlink");
            }
            t.elapsed()
        }
        (Side::Kernel, Op::CreateUnlink) => {
            let dfd = fx.k.cu[tid].as_raw_fd();
            let names = &fx.k.cu_names;
            let t = Instant::now();
            for i in start..start + n {
                let name = &names[i as usize % CU_NAMES];
                // SAFETY: `name` is NUL-terminated; `dfd` is an open directory.
                unsafe {
                    let fd = libc::openat(
                        dfd,
                        name.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
                        0o644,
                    );
                    assert!(fd >= 0, "openat: {}", std::io::Error::last_os_error());
                    libc::close(fd);
                    assert_eq!(libc::unlinkat(dfd, name.as_ptr(), 0), 0);
                }
            }
            t.elapsed()
        }
        (Side::Engine, Op::StatGetattr) => {
            let inos = &fx.e.stat[tid].inos;
            let t = Instant::now();
            for i in start..start + n {
                let a = fs.getattr(inos[fx.pick(tid, i)]).expect("getattr");
                black_box(&a);
            }
            t.elapsed()
        }
        (Side::Engine, Op::StatLookup) => {
            let d = &fx.e.stat[tid];
            let t = Instant::now();
            for i in start..start + n {
                let e = fs.lookup(ctx, d.dir, &d.names[fx.pick(tid, i)]).expect("lookup");
                let a = fs.getattr(e.ino).expect("getattr");
                black_box(&a);
            }
            t.elapsed()
        }
        (Side::Kernel, Op::StatGetattr | Op::StatLookup) => {
            let d = &fx.k.stat[tid];
            let dfd = d.dir.as_raw_fd();
            // SAFETY: an all-zero stat is a valid value for the kernel to overwrite.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            let t = Instant::now();
            for i in start..start + n {
                let name = &d.names[fx.pick(tid, i)];
                // SAFETY: `name` is NUL-terminated, `st` is writable.
                let r = unsafe { libc::fstatat(dfd, name.as_ptr(), &raw mut st, 0) };
                assert_eq!(r, 0);
                black_box(&st);
            }
            t.elapsed()
        }
        (Side::Engine, Op::Readdir) => {
            let t = Instant::now();
            for _ in 0..n {
                let fh = fs.opendir(ctx, fx.e.readdir).expect("opendir");
                let mut count = 0usize;
                for e in fs.readdir(fh, 0, usize::MAX).expect("readdir") {
                    black_box(&e);
                    count += 1;
                }
                fs.releasedir(fh).expect("releasedir");
                assert_eq!(count, READDIR_ENTRIES + 2);
            }
            t.elapsed()
        }
        (Side::Kernel, Op::Readdir) => {
            let t = Instant::now();
            for _ in 0..n {
                let mut count = 0usize;
                // SAFETY: the path is NUL-terminated; the stream is used until closedir only.
                unsafe {
                    let d = libc::opendir(fx.k.readdir.as_ptr());
                    assert!(!d.is_null(), "opendir");
                    loop {
                        let e = libc::readdir(d);
                        if e.is_null() {
                            break;
                        }
                        black_box(e);
                        count += 1;
                    }
                    libc::closedir(d);
                }
                assert_eq!(count, READDIR_ENTRIES + 2);
            }
            t.elapsed()
        }
        (Side::Mem, Op::Memcpy1m) => {
            let mut dst = fx.mem.dst.lock().expect("dst");
            let src = &fx.mem.src;
            let t = Instant::now();
            for i in start..start + n {
                let at = (i % CHUNKS) as usize * MIB;
                dst[at..at + MIB].copy_from_slice(&src[at..at + MIB]);
                black_box(dst.as_ptr());
            }
            t.elapsed()
        }
        (Side::Mem, Op::FloorRead4k) => {
            let src = &fx.mem.src;
            let mut buf = [0u8; PAGE];
            let t = Instant::now();
            for i in start..start + n {
                let at = fx.off(tid, i) as usize;
                buf.copy_from_slice(&src[at..at + PAGE]);
                black_box(&buf);
            }
            t.elapsed()
        }
        (Side::Mem, Op::FloorWrite4k) => {
            let mut dst = fx.mem.dst.lock().expect("dst");
            let buf = [0x3cu8; PAGE];
            let t = Instant::now();
            for i in start..start + n {
                let at = fx.off(tid, i) as usize;
                dst[at..at + PAGE].copy_from_slice(black_box(&buf));
                black_box(dst.as_ptr());
            }
            t.elapsed()
        }
        (side, op) => panic!("no {op:?} on {side:?}"),
    }
}

/// CPU time consumed by the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: an all-zero timespec is valid for the kernel to overwrite.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(r, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall time and CPU time (summed over the threads) of one measurement.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// From the moment all threads are released until the last finishes.
    pub wall: Duration,
    /// CPU time of the measuring threads, added up (includes untimed truncations).
    pub cpu: Duration,
}

/// Run `n` operations on each of `threads` threads at once (thread `t` on its own files), and
/// return the wall time from the moment all are released until the last finishes.
pub fn run_threads(fx: &Fixture, side: Side, op: Op, threads: usize, n: u64) -> Duration {
    run_threads_timed(fx, side, op, threads, n).wall
}

/// As [`run_threads`], with the CPU time the threads used as well: on a machine shared with
/// other work, wall-clock scaling also measures who else ran; CPU time per operation does not
/// (though it misses time spent asleep waiting for a lock).
pub fn run_threads_timed(fx: &Fixture, side: Side, op: Op, threads: usize, n: u64) -> Timing {
    let timed = |tid: usize| {
        let c0 = thread_cpu();
        let wall = run(fx, side, op, tid, n);
        (wall, thread_cpu().checked_sub(c0).unwrap())
    };
    if threads == 1 {
        let (wall, cpu) = timed(0);
        return Timing { wall, cpu };
    }
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let b = &barrier;
        let timed = &timed;
        let handles: Vec<_> = (0..threads)
            .map(|tid| {
                s.spawn(move || {
                    b.wait();
                    timed(tid)
                })
            })
            .collect();
        b.wait();
        let t = Instant::now();
        let mut cpu = Duration::ZERO;
        for h in handles {
            match h.join() {
                Ok((_, c)) => cpu += c,
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        Timing { wall: t.elapsed(), cpu }
    })
}
