//! Format version 2's middle layer: the record stream is cut, between records, into segments
//! of about [`SEGMENT_TARGET`] bytes, and each segment is compressed into one zstd frame of its
//! own, carried by one chunk. Frames depend on nothing before them, so a writer compresses
//! several at once and a reader checks, decompresses and parses several at once ([`Ordered`]),
//! each on a thread of its own, while the caller consumes them in order. A reader holds a few
//! segments at a time (at most [`SEGMENT_MAX`] each): memory stays bounded, not in proportion to
//! the image.
//!
//! Version 1 (one zstd stream over all chunks, decoded on one thread) is still read, by
//! `load.rs`; this build writes version 2 only.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::Scope;

use super::chunk::{ChunkReader, ChunkWriter, Opener, RawChunk};
use super::record::{parse_segment, record_len, write_raw, Parsed, RecordSink, MAX_PAYLOAD};
use super::ImageError;

/// A segment is cut once it holds this many bytes (at the next record boundary).
pub(super) const SEGMENT_TARGET: usize = 1 << 20;
/// The most a segment may hold: a reader refuses a frame that decompresses to more.
pub(super) const SEGMENT_MAX: usize = 2 << 20;
/// The most a chunk's payload (one frame) may hold: at least zstd's bound for a segment of
/// [`SEGMENT_MAX`] (its size plus 1/256, for data that does not compress).
pub(super) const FRAME_MAX: usize = SEGMENT_MAX + SEGMENT_MAX / 128;

// Every record fits a segment of its own.
const _: () = assert!(9 + MAX_PAYLOAD <= SEGMENT_MAX);

/// zstd level: 1, the fastest (compression is most of a snapshot's time).
const ZSTD_LEVEL: i32 = 1;

/// Threads that compress or decode frames: the host's CPUs, at most 4; none under shuttle,
/// where every thread must be one of its own (the work is then done on the caller's thread).
pub(super) fn frame_workers() -> usize {
    if cfg!(feature = "shuttle") {
        return 0;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// A result to come from an [`Ordered`] pool, or one already there.
pub(super) enum Pending<O> {
    Ready(O),
    Later(Receiver<O>),
}

impl<O> Pending<O> {
    /// The result, once it is there; `None` if the worker died before giving it.
    pub(super) fn wait(self) -> Option<O> {
        match self {
            Pending::Ready(o) => Some(o),
            Pending::Later(rx) => rx.recv().ok(),
        }
    }
}

type Job<I, O> = (I, SyncSender<O>);

/// Buffers of segment and frame size handed back after use, so that each frame does not
/// allocate fresh megabytes: the allocator returns freed blocks that large to the kernel
/// (`madvise`), and every page of a new one then faults in zeroed (a restore spent a fifth of
/// its time so before this).
pub(super) struct Buffers(std::sync::Mutex<Vec<Vec<u8>>>);

impl Buffers {
    /// Buffers kept at most (each up to [`FRAME_MAX`]).
    const KEEP: usize = 16;

    pub(super) fn new() -> Self {
        Buffers(std::sync::Mutex::new(Vec::new()))
    }

    /// An empty buffer, with capacity left from an earlier use if there is one.
    pub(super) fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// Hand `buf` back for a later [`Buffers::take`].
    pub(super) fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if free.len() < Self::KEEP && buf.capacity() > 0 {
            free.push(buf);
        }
    }
}

/// A function run over a stream of inputs by worker threads of a scope, each with its own
/// state (a zstd context): [`Ordered::submit`] hands back a [`Pending`] per input, so whoever
/// waits on them in submission order gets the results in that order. With no workers, each
/// input is done by `submit` itself.
pub(super) struct Ordered<'s, I, O> {
    jobs: Option<SyncSender<Job<I, O>>>,
    inline: Option<Box<dyn FnMut(I) -> O + Send + 's>>,
    /// Joined on drop: the scope alone returns once a worker's closure returns, before its
    /// thread-locals are destroyed (a leak checker then sees them live).
    workers: Vec<std::thread::ScopedJoinHandle<'s, ()>>,
}

impl<I, O> Drop for Ordered<'_, I, O> {
    fn drop(&mut self) {
        // Closing the queue ends each worker after its current job.
        self.jobs = None;
        for w in self.workers.drain(..) {
            // A worker that panicked has dropped its reply: its waiter was told already.
            let _ = w.join();
        }
    }
}

impl<'s, I: Send + 's, O: Send + 's> Ordered<'s, I, O> {
    /// `workers` threads in `scope`, each running the function `make` returns to it. They end
    /// when this is dropped and the inputs submitted are done.
    pub(super) fn new<'e, G, F>(scope: &'s Scope<'s, 'e>, workers: usize, make: &'s G) -> Self
    where
        G: Fn() -> F + Sync,
        F: FnMut(I) -> O + Send + 's,
    {
        if workers == 0 {
            return Ordered {
                jobs: None,
                inline: Some(Box::new(make())),
                workers: Vec::new(),
            };
        }
        let (tx, rx) = sync_channel::<Job<I, O>>(workers);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let rx = std::sync::Arc::clone(&rx);
            handles.push(scope.spawn(move || {
                let mut f = make();
                loop {
                    // The lock is held only to take the next job, not while doing it.
                    let job = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    let Ok((input, reply)) = job else { return };
                    // The waiter may have gone (an error elsewhere ended the run): nothing to do.
                    let _ = reply.send(f(input));
                }
            }));
        }
        Ordered {
            jobs: Some(tx),
            inline: None,
            workers: handles,
        }
    }

    /// Worker threads (0: inputs are done by `submit` itself).
    pub(super) fn width(&self) -> usize {
        self.workers.len()
    }

    /// Start on `input`; waits while every worker is busy and a job is already queued.
    pub(super) fn submit(&mut self, input: I) -> Pending<O> {
        match (&self.jobs, &mut self.inline) {
            (Some(jobs), _) => {
                let (reply, rx) = sync_channel(1);
                // Workers outlive this pool (they end when `jobs` closes), so the send fails
                // only if every worker died; the receiver then says so to the waiter.
                let _ = jobs.send((input, reply));
                Pending::Later(rx)
            }
            (None, Some(f)) => Pending::Ready(f(input)),
            (None, None) => unreachable!("a pool has workers or an inline function"),
        }
    }
}

fn worker_lost() -> std::io::Error {
    std::io::Error::other("an image worker thread ended before its frame was done")
}

/// Cuts the records written to it into segments, compresses each into a frame on the pool's
/// threads, and writes the frames, in order, one chunk each.
pub(super) struct FrameWriter<'s, W: Write> {
    chunks: ChunkWriter<W>,
    segment: Vec<u8>,
    buffers: &'s Buffers,
    pool: Ordered<'s, Vec<u8>, std::io::Result<Vec<u8>>>,
    /// Frames being compressed, oldest first.
    pending: VecDeque<Pending<std::io::Result<Vec<u8>>>>,
    /// How many frames may be in the works before the oldest is waited for.
    depth: usize,
}

/// What each compressing worker runs: one zstd context of its own, reused frame after frame;
/// the segment's buffer goes back to `buffers`, the frame's comes from it.
pub(super) fn compressor(buffers: &Buffers) -> impl FnMut(Vec<u8>) -> std::io::Result<Vec<u8>> + Send + '_ {
    let mut ctx = None;
    move |segment: Vec<u8>| {
        if ctx.is_none() {
            ctx = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        let mut frame = buffers.take();
        frame.reserve(zstd::zstd_safe::compress_bound(segment.len()));
        ctx.as_mut()
            .expect("made above")
            .compress_to_buffer(&segment, &mut frame)?;
        buffers.give(segment);
        Ok(frame)
    }
}

impl<'s, W: Write> FrameWriter<'s, W> {
    /// Frames go to `chunks`, compressed by `pool` (made with [`compressor`]); up to twice
    /// as many in the works as it has workers.
    pub(super) fn new(
        chunks: ChunkWriter<W>,
        buffers: &'s Buffers,
        pool: Ordered<'s, Vec<u8>, std::io::Result<Vec<u8>>>,
    ) -> Self {
        FrameWriter {
            chunks,
            segment: buffers.take(),
            buffers,
            depth: pool.width().max(1) * 2,
            pool,
            pending: VecDeque::new(),
        }
    }

    /// Write out finished frames until at most `keep` are in the works.
    fn drain(&mut self, keep: usize) -> std::io::Result<()> {
        while self.pending.len() > keep {
            let front = self.pending.pop_front().expect("more than keep");
            let mut frame = front.wait().ok_or_else(worker_lost)??;
            self.chunks.put(&mut frame, false)?;
            self.buffers.give(frame);
        }
        Ok(())
    }

    /// Send the segment so far to be compressed.
    fn cut(&mut self) -> std::io::Result<()> {
        let segment = std::mem::replace(&mut self.segment, self.buffers.take());
        let pending = self.pool.submit(segment);
        self.pending.push_back(pending);
        self.drain(self.depth)
    }

    /// Compress the last segment, write every frame left (the last one as the final chunk),
    /// and flush; returns the output and the bytes written in all.
    pub(super) fn finish(mut self) -> std::io::Result<(W, u64)> {
        let segment = std::mem::take(&mut self.segment);
        let pending = self.pool.submit(segment);
        self.pending.push_back(pending);
        self.drain(1)?;
        let last = self.pending.pop_front().expect("the last frame");
        let mut frame = last.wait().ok_or_else(worker_lost)??;
        self.chunks.put(&mut frame, true)?;
        self.chunks.finish()
    }
}

impl<W: Write> RecordSink for FrameWriter<'_, W> {
    fn put_record(&mut self, kind: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        let len = record_len(parts);
        if !self.segment.is_empty() && (self.segment.len() >= SEGMENT_TARGET || self.segment.len() + len > SEGMENT_MAX)
        {
            self.cut()?;
        }
        write_raw(&mut self.segment, kind, parts)
    }
}

/// A frame decoded: its segment and the records in it.
pub(super) struct Segment {
    pub bytes: Vec<u8>,
    pub records: Vec<Parsed>,
}

/// What each decoding worker runs: check or open a chunk, decompress its frame into a segment
/// (refused if it would exceed [`SEGMENT_MAX`]), parse and check its records. Buffers come
/// from and go back to `buffers`.
pub(super) fn decoder<'a>(
    opener: &'a Opener,
    buffers: &'a Buffers,
) -> impl FnMut(RawChunk) -> Result<Segment, ImageError> + Send + 'a {
    let mut ctx = None;
    move |chunk: RawChunk| {
        let index = chunk.index();
        let frame = opener.open(chunk)?;
        if ctx.is_none() {
            ctx = Some(zstd::bulk::Decompressor::new().map_err(ImageError::Io)?);
        }
        let mut bytes = buffers.take();
        bytes.reserve_exact(SEGMENT_MAX);
        ctx.as_mut()
            .expect("made above")
            .decompress_to_buffer(&frame[..], &mut bytes)
            .map_err(|e| e.to_string())
            // A recycled buffer may hold a little more than a segment: the bound is checked.
            .and_then(|n| {
                if n <= SEGMENT_MAX {
                    Ok(())
                } else {
                    Err(format!("{n} bytes"))
                }
            })
            .map_err(|e| {
                ImageError::Corrupt(format!(
                    "chunk {index}: its frame does not decompress to a segment of at most {SEGMENT_MAX} bytes ({e})"
                ))
            })?;
        buffers.give(frame);
        let records = parse_segment(&bytes)?;
        Ok(Segment { bytes, records })
    }
}

/// Read the rest of `chunks` (format version 2), decode their frames on [`frame_workers`]
/// threads, and hand each segment, in order, to `apply` (which may take its records). A reading thread feeds the workers and passes
/// their results on in order through a queue of `workers` segments; an error on any side ends
/// all of them: the reader's and the workers' are passed on in order, and a failed `apply`
/// drops the queue, which stops the reader at its next chunk.
pub(super) fn for_each_segment<R: Read + Send>(
    chunks: &mut ChunkReader<R>,
    mut apply: impl FnMut(&mut Segment) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let opener = chunks.opener();
    let buffers = Buffers::new();
    let workers = frame_workers();
    let make = || decoder(&opener, &buffers);
    let lost = || ImageError::Io(worker_lost());
    let mut consume = |mut segment: Segment| -> Result<(), ImageError> {
        apply(&mut segment)?;
        buffers.give(segment.bytes);
        Ok(())
    };
    if workers == 0 {
        let mut decode = make();
        while let Some(raw) = chunks.next_raw(buffers.take())? {
            consume(decode(raw)?)?;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let mut pool = Ordered::new(scope, workers, &make);
        let (tx, rx) = sync_channel::<Pending<Result<Segment, ImageError>>>(workers);
        let buffers = &buffers;
        let reader = scope.spawn(move || loop {
            let next = match chunks.next_raw(buffers.take()) {
                Ok(Some(raw)) => pool.submit(raw),
                Ok(None) => return,
                Err(e) => Pending::Ready(Err(e)),
            };
            let failed = matches!(next, Pending::Ready(Err(_)));
            if tx.send(next).is_err() || failed {
                return;
            }
        });
        let mut verdict = Ok(());
        for next in &rx {
            if let Err(e) = next.wait().ok_or_else(lost).and_then(|r| r).and_then(&mut consume) {
                verdict = Err(e);
                break;
            }
        }
        // Dropping the queue stops the reader at its next chunk; joined (with its pool, whose
        // workers it joins) so that no thread of this restore outlives it.
        drop(rx);
        let _ = reader.join();
        verdict
    })
}

#[cfg(test)]
mod tests {
    //! Images whose chunks all check out but whose frames are wrong (what a buggy or hostile
    //! writer could make: a plain image's checksums are no MAC) are refused, each with its
    //! reason; the well-formed image they are made from restores.

    use super::*;
    use crate::image::record::{InodeRecord, Record};
    use crate::types::{FileKind, Timespec};
    use crate::{Config, Filesystem, RestoreOptions};

    fn rec(r: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        r.write(&mut out).unwrap();
        out
    }

    fn limits() -> Vec<u8> {
        rec(&Record::Limits {
            size_bytes: u64::MAX,
            max_inodes: u64::MAX,
        })
    }

    fn root() -> Vec<u8> {
        rec(&Record::Inode(InodeRecord {
            id: 1,
            kind: FileKind::Directory,
            perm: 0o755,
            uid: 0,
            gid: 0,
            rdev: 0,
            nlink: 2,
            flags: 0,
            size: 0,
            atime: Timespec::default(),
            mtime: Timespec::default(),
            ctime: Timespec::default(),
            btime: Timespec::default(),
            target: Vec::new(),
        }))
    }

    fn end() -> Vec<u8> {
        rec(&Record::End {
            inodes: 1,
            entries: 0,
            data_pages: 0,
        })
    }

    /// A plain image of one chunk per payload; `compress` each through zstd first, else the
    /// payload is put as it is.
    fn image(payloads: &[Vec<u8>], compress: bool) -> Vec<u8> {
        let mut w = ChunkWriter::new(Vec::new(), None).unwrap();
        for (i, p) in payloads.iter().enumerate() {
            let mut frame = if compress {
                zstd::bulk::compress(p, 1).unwrap()
            } else {
                p.clone()
            };
            w.put(&mut frame, i + 1 == payloads.len()).unwrap();
        }
        w.finish().unwrap().0
    }

    fn refusal(img: &[u8]) -> String {
        match Filesystem::from_image(Config::default(), img, &RestoreOptions::default()) {
            Ok(_) => panic!("image accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn well_formed_frames_restore_however_the_records_are_grouped() {
        let all = [limits(), root(), end()].concat();
        for frames in [
            vec![all.clone()],
            vec![limits(), root(), end()],
            vec![[limits(), root()].concat(), end()],
        ] {
            let fs = Filesystem::from_image(Config::default(), &image(&frames, true)[..], &RestoreOptions::default())
                .unwrap();
            assert_eq!(fs.usage().inodes, 1);
        }
    }

    #[test]
    fn frames_that_check_out_but_are_wrong_are_refused_with_the_reason() {
        let (l, r, e) = (limits(), root(), end());
        let whole = [l.clone(), r.clone(), e.clone()].concat();
        // A record cut by the end of its frame (the rest in the next frame).
        let cut = l.len() + r.len() / 2;
        let msg = refusal(&image(&[whole[..cut].to_vec(), whole[cut..].to_vec()], true));
        assert!(msg.contains("runs past the end of its frame"), "{msg}");
        // Records after the end record, in the next frame.
        let msg = refusal(&image(&[whole.clone(), r.clone()], true));
        assert!(msg.contains("after the end record"), "{msg}");
        // No end record.
        let msg = refusal(&image(&[l.clone(), r.clone()], true));
        assert!(msg.contains("ended early"), "{msg}");
        // A frame that decompresses to more than a segment may hold, by a byte and by more
        // than the slack a recycled buffer may have.
        for extra in [1, FRAME_MAX] {
            let big = vec![0u8; SEGMENT_MAX + extra];
            let msg = refusal(&image(&[whole.clone(), big], true));
            assert!(msg.contains("does not decompress to a segment"), "{msg}");
        }
        // The same, well-formed records 512 bytes over, decoded into a buffer from the free
        // list that has room for them.
        let buffers = Buffers::new();
        buffers.give(Vec::with_capacity(FRAME_MAX));
        let xattr = rec(&Record::Xattr {
            name: b"user.a".to_vec(),
            value: vec![0; 65_536],
        });
        let over = xattr.repeat(32);
        assert_eq!(over.len(), SEGMENT_MAX + 512);
        let mut frame = zstd::bulk::compress(&over, 1).unwrap();
        let mut w = ChunkWriter::new(Vec::new(), None).unwrap();
        w.put(&mut frame, true).unwrap();
        let img = w.finish().unwrap().0;
        let mut reader = ChunkReader::new(&img[..], None).unwrap();
        let opener = reader.opener();
        let raw = reader.next_raw(Vec::new()).unwrap().unwrap();
        match decoder(&opener, &buffers)(raw) {
            Err(ImageError::Corrupt(msg)) => assert!(msg.contains("does not decompress to a segment"), "{msg}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a segment over 2 MiB accepted"),
        }
        // A payload that is no zstd frame.
        let msg = refusal(&image(&[whole.clone(), b"not zstd at all".to_vec()], false));
        assert!(msg.contains("does not decompress"), "{msg}");
        // The first record is not the limits.
        let msg = refusal(&image(&[[r.clone(), l.clone(), e.clone()].concat()], true));
        assert!(msg.contains("first record is not the limits"), "{msg}");
        // A chunk longer than a frame may be (its length field).
        let mut img = image(std::slice::from_ref(&whole), true);
        img[52..56].copy_from_slice(&(FRAME_MAX as u32 + 1).to_le_bytes());
        let msg = refusal(&img);
        assert!(msg.contains("too large"), "{msg}");
        // The frame bound covers zstd's worst case for the largest segment.
        assert!(zstd::zstd_safe::compress_bound(SEGMENT_MAX) <= FRAME_MAX);
    }

    #[test]
    fn the_writer_cuts_between_records_near_the_target() {
        let buffers = Buffers::new();
        let make = || compressor(&buffers);
        let page = vec![7u8; 64 * 4096];
        let img = std::thread::scope(|scope| {
            let pool = Ordered::new(scope, 2, &make);
            let mut w = FrameWriter::new(ChunkWriter::new(Vec::new(), None).unwrap(), &buffers, pool);
            for i in 0..40u64 {
                crate::image::record::write_data(&mut w, i * 64, &page).unwrap();
            }
            w.finish().unwrap().0
        });
        // Every chunk is a frame of whole records, at most one record past the target.
        let mut reader = ChunkReader::new(&img[..], None).unwrap();
        let opener = reader.opener();
        let mut decode = decoder(&opener, &buffers);
        let (mut frames, mut records) = (0, 0);
        while let Some(raw) = reader.next_raw(Vec::new()).unwrap() {
            let seg = decode(raw).unwrap();
            assert!(
                seg.bytes.len() <= SEGMENT_TARGET + 64 * 4096 + 17,
                "{}",
                seg.bytes.len()
            );
            frames += 1;
            records += seg.records.len();
        }
        assert_eq!(records, 40);
        assert!(frames >= 10, "{frames} frames for 10 MiB");
    }
}
