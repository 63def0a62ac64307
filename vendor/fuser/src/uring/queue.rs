//! One FUSE-over-io_uring queue: its ring, its entries' buffers, and the loop of the thread
//! that serves it.
//!
//! Ownership of an entry's buffers follows the kernel's entry states. While the entry is parked
//! in the kernel (after REGISTER or COMMIT_AND_FETCH was submitted) only the kernel touches
//! them. From its CQE until its COMMIT is submitted they are ours: the ring thread reads the
//! request, and the entry's one `RingReply` writes the reply. Only the ring thread submits.

use std::io;
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::fd::BorrowedFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use io_uring::IoUring;
use io_uring::opcode;
use io_uring::squeue::Entry128;
use io_uring::types;
use log::debug;
use log::error;
use log::warn;
use parking_lot::Mutex;

use super::abi;
use crate::Filesystem;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

/// `user_data` of the eventfd poll; entries use their slot number.
const WAKE_TAG: u64 = u64::MAX;

const PAGE: usize = 4096;

thread_local! {
    /// The queue this thread serves, if it is a ring thread.
    static RING_QID: std::cell::Cell<Option<u16>> = const { std::cell::Cell::new(None) };
}

/// Whether the calling thread is a ring thread: it alone serves its CPU's queue, so it must
/// never wait for anything slow (hand such requests to another thread and reply from there).
pub fn serving_on_ring_thread() -> bool {
    RING_QID.with(std::cell::Cell::get).is_some()
}

/// One entry's memory: `[header page][prefix page][payload]`, one anonymous mapping.
///
/// The header page is the REGISTERed header buffer (`fuse_uring_req_header`). The prefix page
/// is ours: the ring thread copies `fuse_in_header` and `op_in` to its end, so that with the
/// payload behind it they form the classic `/dev/fuse` request image fuser's parser takes,
/// without copying the payload (WRITE data stays where the kernel put it, page-aligned).
struct EntryBufs {
    base: NonNull<u8>,
    map_len: usize,
    payload_len: usize,
}

// SAFETY: the mapping is plain memory owned by this struct; who may access it when is the
// entry-state protocol described at the top of this file, not thread identity.
unsafe impl Send for EntryBufs {}
// SAFETY: as for Send.
unsafe impl Sync for EntryBufs {}

impl EntryBufs {
    fn new(payload_len: usize) -> io::Result<EntryBufs> {
        let payload_len = payload_len.div_ceil(PAGE) * PAGE;
        let map_len = 2 * PAGE + payload_len;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(EntryBufs {
            base,
            map_len,
            payload_len,
        })
    }

    fn header(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    fn prefix_end(&self) -> *mut u8 {
        // SAFETY: two pages into a mapping of at least two pages.
        unsafe { self.base.as_ptr().add(2 * PAGE) }
    }

    fn payload(&self) -> *mut u8 {
        self.prefix_end()
    }

    fn header_u32(&self, off: usize) -> u32 {
        // SAFETY: `off + 4 <= HEADER_SIZE` at every call site, inside the header page; the
        // entry is ours (see the file comment), so the kernel is not writing it.
        unsafe { self.header().add(off).cast::<u32>().read_unaligned() }
    }

    fn header_u64(&self, off: usize) -> u64 {
        // SAFETY: as for header_u32.
        unsafe { self.header().add(off).cast::<u64>().read_unaligned() }
    }

    /// Write a reply: `fuse_out_header` into `in_out`, the rest into the payload buffer, and
    /// its size into `payload_sz`. A reply larger than the payload buffer becomes EIO.
    ///
    /// # Safety
    /// The entry must be ours and nothing may borrow its payload (see `RingReply::direct`).
    unsafe fn write_reply(&self, bufs: &[&[u8]], unique: u64) {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total < abi::OUT_HEADER_SIZE || total - abi::OUT_HEADER_SIZE > self.payload_len {
            error!("FUSE reply of {total} bytes does not fit the ring entry; replying EIO");
            let mut out = [0u8; abi::OUT_HEADER_SIZE];
            out[0..4].copy_from_slice(&(abi::OUT_HEADER_SIZE as u32).to_ne_bytes());
            out[4..8].copy_from_slice(&(-libc::EIO).to_ne_bytes());
            out[8..16].copy_from_slice(&unique.to_ne_bytes());
            // SAFETY: forwarded from our caller.
            return unsafe { self.write_reply(&[&out], unique) };
        }
        let mut header_left = abi::OUT_HEADER_SIZE;
        let mut payload_at = 0usize;
        for b in bufs {
            let (to_header, to_payload) = b.split_at(header_left.min(b.len()));
            // SAFETY: `to_header` goes to `in_out` (128 bytes, we write at most 16) and
            // `to_payload` after `payload_at`, which stays within `payload_len` (checked above);
            // the caller guarantees no one else reads or writes these bytes now.
            unsafe {
                let at = abi::IN_OUT_OFFSET + abi::OUT_HEADER_SIZE - header_left;
                std::ptr::copy_nonoverlapping(
                    to_header.as_ptr(),
                    self.header().add(at),
                    to_header.len(),
                );
                std::ptr::copy_nonoverlapping(
                    to_payload.as_ptr(),
                    self.payload().add(payload_at),
                    to_payload.len(),
                );
            }
            header_left -= to_header.len();
            payload_at += to_payload.len();
        }
        let payload_sz = (total - abi::OUT_HEADER_SIZE) as u32;
        // SAFETY: `payload_sz` lies inside the header page; the entry is ours.
        unsafe {
            self.header()
                .add(abi::PAYLOAD_SZ_OFFSET)
                .cast::<u32>()
                .write_unaligned(payload_sz);
        }
    }
}

impl Drop for EntryBufs {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once; every user of the memory
        // holds the `QueueShared` that owns this struct, so none is left.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
    }
}

/// A finished reply, waiting for the ring thread to COMMIT it.
struct Done {
    slot: u16,
    commit_id: u64,
    /// The reply, if it could not be written into the entry at once (its request's payload
    /// was still borrowed): the ring thread writes it before the COMMIT.
    staged: Option<Vec<u8>>,
}

/// What a queue's ring thread and the threads that reply for it share.
pub(crate) struct QueueShared {
    pub(crate) qid: u16,
    entries: Vec<EntryBufs>,
    done: Mutex<Vec<Done>>,
    wake: OwnedFd,
    stop: AtomicBool,
}

impl std::fmt::Debug for QueueShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueueShared(qid {})", self.qid)
    }
}

impl QueueShared {
    /// Wake the ring thread (a reply from another thread, or stop).
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our own eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
    }

    fn push_done(&self, done: Done) {
        self.done.lock().push(done);
        if RING_QID.with(std::cell::Cell::get) != Some(self.qid) {
            self.wake();
        }
    }
}

/// The reply route of a request that came through a ring entry (see `ChannelSender::send`).
#[derive(Clone, Debug)]
pub(crate) struct RingReply {
    queue: Arc<QueueShared>,
    slot: u16,
    commit_id: u64,
    /// Whether the request left no bytes borrowed in the payload buffer, so the reply may be
    /// written there at once (READ, GETATTR, READDIR, ...). Otherwise (WRITE, LOOKUP, ...: the
    /// parsed request points into the payload while the handler runs) it is staged.
    direct: bool,
}

impl RingReply {
    pub(crate) fn send(&self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let staged = if self.direct {
            let slices: smallvec::SmallVec<[&[u8]; 4]> = bufs.iter().map(|b| &**b).collect();
            // SAFETY: the entry is ours until its COMMIT, which needs this `Done`; this is the
            // request's only reply; and `direct` says its payload is not borrowed.
            unsafe {
                self.queue.entries[usize::from(self.slot)].write_reply(&slices, self.commit_id)
            };
            None
        } else {
            Some(bufs.iter().flat_map(|b| b.iter().copied()).collect())
        };
        self.queue.push_done(Done {
            slot: self.slot,
            commit_id: self.commit_id,
            staged,
        });
        Ok(())
    }
}

/// A queue before its thread starts: the ring, its own `/dev/fuse` descriptor, and the
/// entries' buffers.
pub(crate) struct Queue {
    ring: IoUring<Entry128>,
    /// A duplicate of the session's `/dev/fuse` descriptor (same connection), owned by the
    /// queue so that it outlives every SQE naming it. Not a registered (fixed) file: those are
    /// only released when the ring's context is freed, asynchronously, after a daemon died; a
    /// plain descriptor is closed with the process, as the classic readers' are, and the ring
    /// then holds the connection only through its commands in flight (cancelled at exit).
    fuse_fd: OwnedFd,
    shared: Arc<QueueShared>,
    /// `[header, payload]` per entry, for REGISTER; boxed so their address is stable.
    iovecs: Box<[[libc::iovec; 2]]>,
}

// SAFETY: the iovecs only point into the entries' mappings (owned through `shared`); the
// queue moves once, to its ring thread, before anything is submitted.
unsafe impl Send for Queue {}

impl Queue {
    pub(crate) fn new(
        qid: u16,
        fuse_fd: BorrowedFd<'_>,
        depth: usize,
        payload_len: usize,
    ) -> io::Result<Queue> {
        let slots = depth as u32 + 1;
        // SINGLE_ISSUER + DEFER_TASKRUN: only the ring thread submits (see the file comment),
        // so the kernel may run this ring's completions (copying a request into an entry) as
        // deferred work inside that thread's io_uring_enter wait, instead of as signal-style
        // task_work that interrupts it and runs on its way back to user space: 0.4-0.5 µs less
        // per round trip on the test machine (docs/benchmarks.md; libfuse leaves them off, as
        // "a bit slower" on its machines). R_DISABLED: the ring's one submitter is the thread
        // that enables it ([`Queue::register`]), not this one, which only builds it.
        let ring = IoUring::<Entry128>::builder()
            .setup_cqsize(2 * slots)
            .setup_submit_all()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled()
            .build(slots)?;
        let fuse_fd = fuse_fd.try_clone_to_owned()?;
        let entries = (0..depth)
            .map(|_| EntryBufs::new(payload_len))
            .collect::<io::Result<Vec<_>>>()?;
        let iovecs = entries
            .iter()
            .map(|e| {
                [
                    libc::iovec {
                        iov_base: e.header().cast(),
                        iov_len: abi::HEADER_SIZE,
                    },
                    libc::iovec {
                        iov_base: e.payload().cast(),
                        iov_len: e.payload_len,
                    },
                ]
            })
            .collect();
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Queue {
            ring,
            fuse_fd,
            shared: Arc::new(QueueShared {
                qid,
                entries,
                done: Mutex::new(Vec::new()),
                wake,
                stop: AtomicBool::new(false),
            }),
            iovecs,
        })
    }

    pub(crate) fn shared(&self) -> Arc<QueueShared> {
        self.shared.clone()
    }

    /// Test hook: shrink the REGISTERed payload below what the kernel demands, so that
    /// REGISTER fails with EINVAL as a real refusal would.
    pub(crate) fn spoil_registration(&mut self) {
        for iov in self.iovecs.iter_mut() {
            iov[1].iov_len = PAGE;
        }
    }

    /// Pin the calling thread to this queue's CPU: the kernel queues a request on the queue of
    /// the CPU its caller runs on, so serving it there needs no cross-CPU wake-up.
    pub(crate) fn pin_to_cpu(&self) {
        let cpu = usize::from(self.shared.qid);
        // SAFETY: cpu_set_t is plain data, initialised by CPU_ZERO/CPU_SET; sched_setaffinity
        // reads `size_of::<cpu_set_t>()` bytes of it.
        let r = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if r != 0 {
            // A possible but offline CPU: its queue must exist, it just gets no requests.
            debug!("ring {cpu}: not pinned: {}", io::Error::last_os_error());
        }
    }

    /// REGISTER every entry and arm the wake-up poll. A refusal comes back at once as a CQE;
    /// a REGISTER that the kernel took leaves no CQE until a request arrives. Returns the CQEs
    /// of requests that arrived meanwhile.
    pub(crate) fn register(&mut self) -> io::Result<Vec<(u64, i32)>> {
        // The calling (ring) thread becomes the ring's only submitter.
        self.ring.submitter().register_enable_rings()?;
        let mut early = Vec::new();
        let mut todo: Vec<u16> = (0..self.shared.entries.len() as u16).collect();
        self.push(self.wake_poll())?;
        for _attempt in 0..1000 {
            for &slot in &todo {
                let iov = self.iovecs[usize::from(slot)].as_ptr();
                let fd = self.fuse_fd.as_raw_fd();
                self.push(abi::register_sqe(fd, self.shared.qid, iov, u64::from(slot)))?;
            }
            // With GETEVENTS (wait for 0): under DEFER_TASKRUN completions from elsewhere (an
            // EAGAIN retried by io-wq) are posted only inside this thread's io_uring_enter.
            self.ring.submit_and_wait(0)?;
            todo.clear();
            for cqe in self.ring.completion() {
                let (tag, res) = (cqe.user_data(), cqe.result());
                if tag != WAKE_TAG && res == -libc::EAGAIN {
                    // The kernel has not processed the INIT reply yet.
                    todo.push(tag as u16);
                } else if tag != WAKE_TAG && res < 0 {
                    return Err(io::Error::from_raw_os_error(-res));
                } else {
                    early.push((tag, res));
                }
            }
            if todo.is_empty() {
                return Ok(early);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "REGISTER kept getting EAGAIN",
        ))
    }

    fn wake_poll(&self) -> Entry128 {
        let fd = types::Fd(self.shared.wake.as_raw_fd());
        Entry128::from(opcode::PollAdd::new(fd, libc::POLLIN as u32).build()).user_data(WAKE_TAG)
    }

    fn push(&mut self, sqe: Entry128) -> io::Result<()> {
        // SAFETY: the SQE's pointers (iovecs for REGISTER; none for COMMIT and poll) stay
        // valid until submission: they point into `self`.
        let pushed = unsafe { self.ring.submission().push(&sqe) };
        if pushed.is_err() {
            // Cannot happen: at most one SQE per entry plus the poll is ever outstanding.
            return Err(io::Error::other("io_uring submission queue full"));
        }
        Ok(())
    }

    /// Serve requests until every entry is gone (umount, abort) or stop is requested.
    pub(crate) fn serve<FS: Filesystem>(
        mut self,
        se: &SessionEventLoop<FS>,
        early: Vec<(u64, i32)>,
    ) {
        let qid = self.shared.qid;
        RING_QID.with(|q| q.set(Some(qid)));
        let mut alive = self.shared.entries.len();
        let mut cqes = early;
        let mut scratch: Vec<u64> = Vec::new();
        loop {
            for (tag, res) in cqes.drain(..) {
                if tag == WAKE_TAG {
                    self.drain_wake();
                } else if res == 0 {
                    self.dispatch(tag as u16, se, &mut scratch);
                } else {
                    // ENOTCONN/ECONNABORTED (umount, abort), ECANCELED: the entry is gone.
                    if ![libc::ENOTCONN, libc::ECONNABORTED, libc::ECANCELED].contains(&-res) {
                        warn!(
                            "ring {qid}: entry {tag} failed: {}",
                            io::Error::from_raw_os_error(-res)
                        );
                    }
                    alive -= 1;
                }
            }
            if let Err(e) = self.commit_done() {
                error!("ring {qid}: {e}");
                return;
            }
            if alive == 0 || self.shared.stop.load(Ordering::Acquire) {
                debug!("ring {qid}: done ({alive} entries left)");
                return;
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    error!("ring {qid}: io_uring_enter: {e}");
                    return;
                }
            }
            cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        }
    }

    fn drain_wake(&mut self) {
        let mut v = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from our own non-blocking eventfd.
        let _ = unsafe { libc::read(self.shared.wake.as_raw_fd(), v.as_mut_ptr().cast(), v.len()) };
        if !self.shared.stop.load(Ordering::Acquire) {
            let poll = self.wake_poll();
            if let Err(e) = self.push(poll) {
                error!("ring {}: {e}", self.shared.qid);
            }
        }
    }

    /// Queue a COMMIT_AND_FETCH for every finished reply (writing the staged ones first).
    fn commit_done(&mut self) -> io::Result<()> {
        let done = std::mem::take(&mut *self.shared.done.lock());
        for d in done {
            if let Some(bytes) = &d.staged {
                let e = &self.shared.entries[usize::from(d.slot)];
                // SAFETY: the entry is ours until this COMMIT; the request that borrowed its
                // payload has been dispatched (`dispatch` returned) and its one reply is done.
                unsafe { e.write_reply(&[bytes], d.commit_id) };
            }
            let fd = self.fuse_fd.as_raw_fd();
            self.push(abi::commit_sqe(
                fd,
                self.shared.qid,
                d.commit_id,
                u64::from(d.slot),
            ))?;
        }
        Ok(())
    }

    /// Rebuild the classic request image of entry `slot` and hand it to fuser's dispatcher
    /// on this thread; the reply comes back through `RingReply`.
    fn dispatch<FS: Filesystem>(
        &mut self,
        slot: u16,
        se: &SessionEventLoop<FS>,
        scratch: &mut Vec<u64>,
    ) {
        let queue = self.shared.clone();
        let e = &queue.entries[usize::from(slot)];
        let in_len = e.header_u32(abi::IN_OUT_OFFSET) as usize;
        let payload_sz = e.header_u32(abi::PAYLOAD_SZ_OFFSET) as usize;
        let commit_id = e.header_u64(abi::COMMIT_ID_OFFSET);
        let op_in_len = in_len.checked_sub(abi::IN_HEADER_SIZE + payload_sz);
        let mut reply = RingReply {
            queue: queue.clone(),
            slot,
            commit_id,
            direct: payload_sz == 0,
        };
        let Some(op_in_len) =
            op_in_len.filter(|n| *n <= abi::OP_IN_SIZE && payload_sz <= e.payload_len)
        else {
            error!(
                "ring {}: malformed request (len {in_len}, payload {payload_sz})",
                queue.qid
            );
            return reply_error(&reply, commit_id);
        };
        let head = abi::IN_HEADER_SIZE + op_in_len;
        // SAFETY: `head <= 168` bytes end at the prefix page's end, inside the mapping; the
        // sources are the header page's `in_out` and `op_in`; the entry is ours.
        let image = unsafe {
            let start = e.prefix_end().sub(head);
            std::ptr::copy_nonoverlapping(
                e.header().add(abi::IN_OUT_OFFSET),
                start,
                abi::IN_HEADER_SIZE,
            );
            std::ptr::copy_nonoverlapping(
                e.header().add(abi::OP_IN_OFFSET),
                start.add(abi::IN_HEADER_SIZE),
                op_in_len,
            );
            std::slice::from_raw_parts(start.cast_const(), head + payload_sz)
        };
        let image: &[u8] = if (image.as_ptr() as usize) % 8 == 0 {
            image
        } else {
            // No opcode of protocol 7.45 has an op_in whose size is not a multiple of 8; if one
            // comes, parse an aligned copy (then the payload is not borrowed either).
            scratch.clear();
            scratch.resize(image.len().div_ceil(8), 0);
            let bytes = zerocopy::IntoBytes::as_mut_bytes(&mut scratch[..]);
            bytes[..image.len()].copy_from_slice(image);
            reply.direct = true;
            &bytes[..image.len()]
        };
        let sender = se.ch.sender().with_ring_reply(reply.clone());
        match RequestWithSender::new(sender, image) {
            Some(req) => req.dispatch(se),
            None => reply_error(&reply, commit_id),
        }
    }
}

/// Answer EIO to a request that could not be parsed (it must still be committed, or the entry
/// would be lost).
fn reply_error(reply: &RingReply, unique: u64) {
    let mut out = [0u8; abi::OUT_HEADER_SIZE];
    out[0..4].copy_from_slice(&(abi::OUT_HEADER_SIZE as u32).to_ne_bytes());
    out[4..8].copy_from_slice(&(-libc::EIO).to_ne_bytes());
    out[8..16].copy_from_slice(&unique.to_ne_bytes());
    let _ = reply.send(&[IoSlice::new(&out)]);
}

/// The CPUs the kernel makes queues for (`num_possible_cpus()`, numbered from 0): one more
/// than the highest number in `/sys/devices/system/cpu/possible` (e.g. `0-1`).
pub(crate) fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    text.trim()
        .split([',', '-'])
        .filter_map(|n| n.parse::<usize>().ok())
        .max()
        .map(|m| m + 1)
        .ok_or_else(|| io::Error::other(format!("cannot parse possible CPUs {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(e: &EntryBufs, range: std::ops::Range<usize>) -> Vec<u8> {
        // SAFETY: the range lies in the header page; the entry is not shared.
        unsafe { std::slice::from_raw_parts(e.header().add(range.start), range.len()).to_vec() }
    }

    fn payload_bytes(e: &EntryBufs, n: usize) -> Vec<u8> {
        // SAFETY: n <= payload_len; the entry is not shared.
        unsafe { std::slice::from_raw_parts(e.payload(), n).to_vec() }
    }

    fn out_header(len: u32, error: i32, unique: u64) -> Vec<u8> {
        let mut v = len.to_ne_bytes().to_vec();
        v.extend_from_slice(&error.to_ne_bytes());
        v.extend_from_slice(&unique.to_ne_bytes());
        v
    }

    #[test]
    fn a_reply_goes_to_in_out_and_the_payload_buffer() {
        let e = EntryBufs::new(8192).unwrap();
        let head = out_header(16 + 5, 0, 42);
        // The header split over two slices, the data over two more.
        // SAFETY: the entry is ours and nothing borrows it.
        unsafe { e.write_reply(&[&head[..10], &head[10..], b"hel", b"lo"], 42) };
        assert_eq!(header_bytes(&e, 0..16), head);
        assert_eq!(payload_bytes(&e, 5), b"hello");
        assert_eq!(e.header_u32(abi::PAYLOAD_SZ_OFFSET), 5);
    }

    #[test]
    fn a_reply_larger_than_the_payload_buffer_becomes_eio() {
        let e = EntryBufs::new(4096).unwrap();
        let head = out_header(16 + 8192, 0, 7);
        let big = vec![1u8; 8192];
        // SAFETY: the entry is ours and nothing borrows it.
        unsafe { e.write_reply(&[&head, &big], 7) };
        assert_eq!(header_bytes(&e, 0..16), out_header(16, -libc::EIO, 7));
        assert_eq!(e.header_u32(abi::PAYLOAD_SZ_OFFSET), 0);
    }

    #[test]
    fn possible_cpus_counts_from_zero() {
        assert!(possible_cpus().unwrap() >= 1);
    }
}
