//! Asynchronous swap read-ahead for sequential readers.
//!
//! A sequential reader of swapped-out data would otherwise alternate: wait for the swap read of
//! its request, then decrypt, copy and reply while the disk idles. So a sequential read posts the
//! *next* window of pages to the read-ahead threads (two per filesystem, started with the
//! background evictor, so that one window's swap read overlaps the other's decryption) before it
//! starts on its own pages: the disk reads window n+1 while the reader works on window n.
//!
//! Correctness does not depend on read-ahead: the worker swaps pages in through the same
//! compare-and-set publication as any reader (the file side's swap-in, through
//! [`PageOwner::read_ahead`]), so a reader that gets to a
//! page first simply wins, and the worker's copy is dropped. To avoid reading a page twice, a
//! reader that finds a swapped page inside a posted window waits for that window (bounded by
//! `WAIT_LIMIT`, then it reads the page itself), holding no lock while it waits. The worker never
//! waits for a reader, only (like any reader) for memory, so waiting on it cannot deadlock.
//!
//! Locks: the per-file state (rank `ReadAhead`) and the job queue (rank `ReadAheadQueue`) are
//! leaves, taken with no page-map or frame lock held.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::PageOwner;
use crate::sync::{Condvar, LockRank, Mutex, Weak};

/// Windows of one file posted and not yet done, at most: enough to keep the disk busy while
/// the reader works, without read-ahead crowding the RAM budget.
const MAX_POSTED: usize = 4;
/// Longest a reader waits for a window before reading the page itself.
const WAIT_LIMIT: Duration = Duration::from_secs(2);
/// One wait step (a window's completion also wakes waiters at once).
const WAIT_STEP: Duration = Duration::from_millis(50);

/// A window of pages to swap in ahead of a reader.
pub(crate) struct Job {
    pub owner: Weak<dyn PageOwner>,
    pub window: Window,
}

/// Pages `first..=last` of one file, posted as read-ahead window number `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub first: u64,
    pub last: u64,
    pub seq: u64,
}

/// The queue between readers and the read-ahead thread.
pub(crate) struct Queue {
    /// Rank `ReadAheadQueue`. Jobs in posting order; `None` once stopped.
    jobs: Mutex<Option<VecDeque<Job>>>,
    ready: Condvar,
}

impl Queue {
    pub(crate) fn new() -> Queue {
        Queue {
            jobs: Mutex::new(LockRank::ReadAheadQueue, Some(VecDeque::new())),
            ready: Condvar::new(),
        }
    }

    /// Hand a job to the worker. False if the queue is stopped.
    fn push(&self, job: Job) -> bool {
        let mut jobs = self.jobs.lock();
        let Some(q) = jobs.as_mut() else {
            return false;
        };
        q.push_back(job);
        drop(jobs);
        self.ready.notify_all();
        true
    }

    /// The worker's wait for the next job; `None` once stopped.
    pub(crate) fn pop(&self) -> Option<Job> {
        let mut jobs = self.jobs.lock();
        loop {
            match jobs.as_mut() {
                None => return None,
                Some(q) => {
                    if let Some(job) = q.pop_front() {
                        return Some(job);
                    }
                }
            }
            jobs = self.ready.wait_timeout(jobs, Duration::from_millis(200));
        }
    }

    /// Stop the worker; returns the jobs it will not run (their windows must be marked done,
    /// or readers would wait for them until `WAIT_LIMIT`).
    pub(crate) fn stop(&self) -> Vec<Job> {
        let left = self.jobs.lock().take().map(Vec::from).unwrap_or_default();
        self.ready.notify_all();
        left
    }
}

/// One file's read-ahead state.
#[derive(Default)]
struct State {
    /// Posted windows not yet done: (first page, last page, sequence number).
    posted: VecDeque<(u64, u64, u64)>,
    next_seq: u64,
    /// The last page posted in the current sequential stream.
    ahead_until: Option<u64>,
}

/// One file's read-ahead: which windows are posted, and the reader's wait for them.
pub(crate) struct FileReadAhead {
    /// Rank `ReadAhead`.
    state: Mutex<State>,
    done: Condvar,
}

impl FileReadAhead {
    pub(crate) fn new() -> FileReadAhead {
        FileReadAhead {
            state: Mutex::new(LockRank::ReadAhead, State::default()),
            done: Condvar::new(),
        }
    }

    /// A sequential reader of `owner`'s pages has asked for pages up to `end_page`; the file's last page
    /// is `last_page`. Post windows of `window` pages so that read-ahead stays `window` pages
    /// ahead of it.
    pub(crate) fn advance(
        &self,
        queue: &Queue,
        owner: &Weak<dyn PageOwner>,
        end_page: u64,
        last_page: u64,
        window: u64,
    ) {
        let window = window.max(1);
        let mut st = self.state.lock();
        let restart = match st.ahead_until {
            None => true,
            // The reader overtook read-ahead, or jumped back: start a new stream from it.
            Some(a) => a < end_page || a > end_page.saturating_add(4 * window),
        };
        if restart {
            st.ahead_until = Some(end_page);
        }
        let goal = end_page.saturating_add(3 * window).min(last_page);
        while let Some(a) = st.ahead_until {
            if a >= goal || st.posted.len() >= MAX_POSTED {
                break;
            }
            let first = a + 1;
            let last = a.saturating_add(window).min(last_page);
            let seq = st.next_seq;
            st.next_seq += 1;
            let job = Job {
                owner: owner.clone(),
                window: Window { first, last, seq },
            };
            if !queue.push(job) {
                break;
            }
            st.posted.push_back((first, last, seq));
            st.ahead_until = Some(last);
        }
    }

    /// The worker finished window `seq` (whatever became of its pages).
    pub(crate) fn finished(&self, seq: u64) {
        let mut st = self.state.lock();
        st.posted.retain(|&(_, _, s)| s != seq);
        drop(st);
        self.done.notify_all();
    }

    /// If page `idx` is in a posted window, wait (holding no other lock) until that window is
    /// done, or `WAIT_LIMIT`. Returns whether it waited: the caller then looks at the page again.
    pub(crate) fn wait_for(&self, idx: u64) -> bool {
        crate::sync::assert_not_held_at_or_above(LockRank::PageMap);
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut st = self.state.lock();
        let Some(&(_, _, seq)) = st.posted.iter().find(|&&(f, l, _)| f <= idx && idx <= l) else {
            return false;
        };
        while st.posted.iter().any(|&(_, _, s)| s == seq) {
            if Instant::now() >= deadline {
                // Give up on the window: the reader reads the page itself.
                st.posted.retain(|&(_, _, s)| s != seq);
                break;
            }
            st = self.done.wait_timeout(st, WAIT_STEP);
        }
        true
    }
}
