//! FUSE over io_uring (Linux 6.14+): the rtmpfs fork's second transport.
//!
//! The kernel offers `FUSE_OVER_IO_URING` in INIT when `fuse.enable_uring` is set. If we accept
//! it, every request except FORGET, BATCH_FORGET and INTERRUPT goes to a ring queue of the CPU
//! its caller runs on, once every CPU's queue has an entry REGISTERed. So:
//! 1. before the INIT reply, one ring plus buffers per possible CPU is made ([`Rings::create`]);
//!    the flag is only set in the reply if that worked;
//! 2. after the reply, one thread per queue, pinned to its CPU, REGISTERs the entries
//!    ([`Rings::register`]); a refusal makes the kernel fall back to `/dev/fuse` (and we stop
//!    the rings);
//! 3. `Session::run` hands each ring thread its dispatch context ([`Rings::serve`]); the classic
//!    `/dev/fuse` readers keep running for FORGET, INTERRUPT and anything sent before the rings
//!    were ready.
//!
//! A ring thread is the only submitter to its ring (the kernel copies a request out in the
//! context of the task that submitted the entry's SQE). Replies from other threads are queued
//! and the ring thread, woken by an eventfd, COMMITs them.

mod abi;
mod queue;

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use log::debug;

pub(crate) use queue::RingReply;
pub use queue::serving_on_ring_thread;

use crate::Filesystem;
use crate::session::SessionEventLoop;

/// Whether to serve FUSE requests over io_uring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum UringMode {
    /// Never (fuser's classic `/dev/fuse` read/write loop only).
    #[default]
    Off,
    /// When the kernel offers it and the rings can be set up; else `/dev/fuse`.
    Auto,
    /// Always: the session fails to start where it cannot be had.
    On,
}

/// The io_uring transport's settings (part of [`crate::Config`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UringConfig {
    /// Whether to use it.
    pub mode: UringMode,
    /// Entries per queue: how many requests of one CPU can be in the daemon at once.
    pub depth: usize,
    /// Test hook: REGISTER entries with a payload buffer the kernel refuses, to exercise the
    /// fallback after a failed REGISTER.
    pub fault_register: bool,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            mode: UringMode::Off,
            depth: 4,
            fault_register: false,
        }
    }
}

/// How a session ended up talking to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Classic `/dev/fuse` read/write; io_uring was not asked for.
    DevFuse,
    /// Classic `/dev/fuse`, because io_uring was asked for (`Auto`) but could not be had: why.
    DevFuseFallback(String),
    /// io_uring: one queue per possible CPU, `depth` entries each.
    IoUring {
        /// Queues (possible CPUs).
        queues: usize,
        /// Entries per queue.
        depth: usize,
    },
}

/// A ring thread waiting for its next step.
struct RingThread<FS: Filesystem> {
    shared: Arc<queue::QueueShared>,
    go: Option<mpsc::SyncSender<()>>,
    registered: mpsc::Receiver<io::Result<()>>,
    serve: Option<mpsc::SyncSender<Arc<SessionEventLoop<FS>>>>,
    handle: Option<JoinHandle<()>>,
}

/// Every CPU's queue and its thread.
pub(crate) struct Rings<FS: Filesystem> {
    threads: Vec<RingThread<FS>>,
    pub(crate) depth: usize,
}

impl<FS: Filesystem> std::fmt::Debug for Rings<FS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Rings({} queues, depth {})",
            self.threads.len(),
            self.depth
        )
    }
}

impl<FS: Filesystem> Rings<FS> {
    /// Make one ring with `depth` entries of `payload_len` bytes per possible CPU and start
    /// their threads (which wait for [`Rings::register`]). Before the INIT reply.
    pub(crate) fn create(
        fuse_fd: BorrowedFd<'_>,
        cfg: &UringConfig,
        payload_len: usize,
    ) -> io::Result<Self> {
        if cfg.depth == 0 {
            // A queue without entries is never ready and every request would wait for it.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "io_uring depth 0",
            ));
        }
        let cpus = queue::possible_cpus()?;
        let qids = u16::try_from(cpus).map_err(|_| io::Error::other("too many CPUs"))?;
        let mut rings = Rings {
            threads: Vec::with_capacity(cpus),
            depth: cfg.depth,
        };
        for qid in 0..qids {
            let mut q = queue::Queue::new(qid, fuse_fd, cfg.depth, payload_len)?;
            if cfg.fault_register {
                q.spoil_registration();
            }
            rings.threads.push(RingThread::start(q)?);
        }
        Ok(rings)
    }

    pub(crate) fn queues(&self) -> usize {
        self.threads.len()
    }

    /// After the INIT reply: every thread REGISTERs its entries; the first refusal, if any.
    pub(crate) fn register(&mut self) -> io::Result<()> {
        for t in &mut self.threads {
            if let Some(go) = t.go.take() {
                let _ = go.send(());
            }
        }
        let mut result = Ok(());
        for t in &self.threads {
            let r = t
                .registered
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("ring thread ended")));
            if let Err(e) = r {
                debug!("ring {}: REGISTER failed: {e}", t.shared.qid);
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Let every ring thread serve with the session's dispatch context.
    pub(crate) fn serve(&mut self, make: impl Fn(u16) -> SessionEventLoop<FS>) {
        for t in &mut self.threads {
            if let Some(tx) = t.serve.take() {
                let _ = tx.send(Arc::new(make(t.shared.qid)));
            }
        }
    }

    /// Stop every ring thread and wait for it: its ring closes, and the kernel cancels what is
    /// still parked there.
    pub(crate) fn stop_and_join(&mut self) {
        for t in &mut self.threads {
            t.go.take();
            t.serve.take();
            t.shared.request_stop();
        }
        for t in &mut self.threads {
            if let Some(h) = t.handle.take() {
                let _ = h.join();
            }
        }
    }
}

impl<FS: Filesystem> Drop for Rings<FS> {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl<FS: Filesystem> RingThread<FS> {
    fn start(mut q: queue::Queue) -> io::Result<Self> {
        let shared = q.shared();
        let (go_tx, go_rx) = mpsc::sync_channel::<()>(1);
        let (reg_tx, reg_rx) = mpsc::sync_channel::<io::Result<()>>(1);
        let (serve_tx, serve_rx) = mpsc::sync_channel::<Arc<SessionEventLoop<FS>>>(1);
        let handle = std::thread::Builder::new()
            .name(format!("fuser-ring-{}", shared.qid))
            .spawn(move || {
                q.pin_to_cpu();
                if go_rx.recv().is_err() {
                    return;
                }
                let early = match q.register() {
                    Ok(early) => {
                        let _ = reg_tx.send(Ok(()));
                        early
                    }
                    Err(e) => {
                        let _ = reg_tx.send(Err(e));
                        return;
                    }
                };
                if let Ok(se) = serve_rx.recv() {
                    q.serve(&se, early);
                }
            })?;
        Ok(RingThread {
            shared,
            go: Some(go_tx),
            registered: reg_rx,
            serve: Some(serve_tx),
            handle: Some(handle),
        })
    }
}
