//! READ, and where it is served: on the event loop that received it, or on a swap-in worker
//! when it must wait for swap I/O (only when the engine has a RAM budget).
//!
//! One pass: with a RAM budget, the event loop first reads with `ReadMode::NoWait`, which
//! answers every READ whose pages are in RAM and says `WouldBlock`, having done no I/O, for one
//! that needs swap; only that READ is then served with `ReadMode::Wait`, here or on a worker.
//!
//! Invariants: at most all but one of the `threads=` event loops ever wait on swap I/O
//! themselves, so one always stays free for unrelated requests; an io_uring ring thread (its
//! CPU's only server) never waits, it hands off. A READ handed to the pool is answered by the
//! worker (fuser's replies are `Send`); if no worker can take it, by the caller.

use super::reply::{answer, Call, CallState};
use super::MAX_IO;
use crate::stats::Stats;
use fuser::ReplyData;
use rtmpfs_core::{Fh, Filesystem, ReadMode, ReadOutcome};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Swap-in workers: enough to overlap a couple of swap reads on a 2-core machine.
const SWAP_IN_WORKERS: usize = 2;

thread_local! {
    /// Per-thread read buffer, grown once to the largest read seen (1 MiB), so that a READ
    /// costs no allocation.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What a READ needs besides its arguments: the engine and the counters for a failed reply.
#[derive(Clone)]
pub(super) struct ReadServer {
    pub(super) fs: Arc<Filesystem>,
    pub(super) stats: Arc<Stats>,
}

/// One READ's arguments.
pub(super) struct ReadRequest {
    /// Resumed where the READ is answered, which records its latency.
    pub(super) call: CallState,
    pub(super) fh: Fh,
    pub(super) offset: u64,
    pub(super) size: u32,
}

impl ReadServer {
    /// Serve one READ through this thread's buffer. A short reply means end of file to the
    /// kernel (it lowers the cached size and marks the rest of a read-ahead page up to date,
    /// i.e. zeros): the engine's `read` is short only at EOF and fails the whole range when any
    /// page of it cannot be read, so a lost page costs an `EIO` for this request and the kernel
    /// retries the pages its reader needs one by one — readable pages stay readable, only the
    /// bad one fails.
    #[allow(clippy::needless_pass_by_value)] // the request is handed over whole, as the reply is
    pub(super) fn serve(&self, rq: ReadRequest, reply: ReplyData) {
        let size = rq.size as usize;
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < size {
                buf.resize(size.max(MAX_IO as usize), 0);
            }
            let result = self.fs.read(rq.fh, rq.offset, &mut buf[..size]);
            answer(
                &self.stats,
                Call::resume(&self.stats, rq.call),
                reply,
                result,
                |r, n| r.data(&buf[..n]),
            );
        });
    }

    /// Serve one READ as `serve` does if that needs no swap I/O (`ReadMode::NoWait`); else
    /// hand it back untouched, to be served where waiting is fine.
    fn try_serve(&self, rq: ReadRequest, reply: ReplyData) -> Option<(ReadRequest, ReplyData)> {
        let size = rq.size as usize;
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < size {
                buf.resize(size.max(MAX_IO as usize), 0);
            }
            let result = match self.fs.read_with(rq.fh, rq.offset, &mut buf[..size], ReadMode::NoWait) {
                Ok(ReadOutcome::WouldBlock) => return Some((rq, reply)),
                Ok(ReadOutcome::Done(n)) => Ok(n),
                Err(e) => Err(e),
            };
            answer(
                &self.stats,
                Call::resume(&self.stats, rq.call),
                reply,
                result,
                |r, n| r.data(&buf[..n]),
            );
            None
        })
    }
}

/// READs that wait on swap: the decision where to serve them, and the workers.
pub(super) struct SwapIn {
    pool: SwapInPool,
    /// Event loops serving a READ that waits on swap I/O themselves right now.
    inline: AtomicUsize,
    /// How many event loops (`threads=`) serve requests.
    event_loops: usize,
}

impl SwapIn {
    /// The swap-in workers for `server`, with `event_loops` event loops serving requests.
    pub(super) fn start(server: &ReadServer, event_loops: usize) -> SwapIn {
        SwapIn {
            pool: SwapInPool::start(server.clone(), SWAP_IN_WORKERS),
            inline: AtomicUsize::new(0),
            event_loops,
        }
    }

    /// Serve a READ: at once if its pages are in RAM (one `NoWait` pass); else, as it must
    /// wait for swap I/O, wait on this event loop only if another one stays free for unrelated
    /// requests (at most all but one ever wait here), or hand the READ to the swap-in workers.
    /// Serving it here saves two thread wake-ups, which is most of a 4 KiB swap-in's cost on a
    /// virtual machine. An io_uring ring thread is its CPU's only server: it always hands off.
    pub(super) fn serve(&self, server: &ReadServer, rq: ReadRequest, reply: ReplyData) {
        let Some((rq, reply)) = server.try_serve(rq, reply) else {
            return;
        };
        if !fuser::serving_on_ring_thread() && self.inline.fetch_add(1, Ordering::AcqRel) + 1 < self.event_loops {
            server.serve(rq, reply);
            self.inline.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        self.inline.fetch_sub(1, Ordering::AcqRel);
        self.pool.submit(rq, reply);
    }
}

/// Threads that serve READs which must wait for swap I/O. fuser's replies are `Send`, so the
/// event loop hands the request over and goes back to reading its transport.
struct SwapInPool {
    server: ReadServer,
    tx: Mutex<mpsc::Sender<SwapInJob>>,
}

type SwapInJob = (ReadRequest, ReplyData);

impl SwapInPool {
    fn start(server: ReadServer, workers: usize) -> SwapInPool {
        let (tx, rx) = mpsc::channel::<SwapInJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let (server, rx) = (server.clone(), rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("rtmpfs-swapin-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok((rq, reply)) => server.serve(rq, reply),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("swap-in worker: {e}");
            }
        }
        SwapInPool {
            server,
            tx: Mutex::new(tx),
        }
    }

    fn submit(&self, rq: ReadRequest, reply: ReplyData) {
        let job = (rq, reply);
        let unsent = match self.tx.lock() {
            Ok(tx) => tx.send(job).err().map(|e| e.0),
            Err(_) => Some(job),
        };
        // No worker could take it (none started): serve it on this thread.
        if let Some((rq, reply)) = unsent {
            self.server.serve(rq, reply);
        }
    }
}
