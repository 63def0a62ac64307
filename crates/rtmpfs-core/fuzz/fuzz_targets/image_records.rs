//! The image reader past its integrity layers: the fuzzer chooses the records (kind and
//! payload), and this target frames them as a writer would — each record with its length and
//! CRC-32; in format version 2, the stream cut at offsets the fuzzer chooses (between records,
//! or inside one, which must be refused) into zstd frames, one plain chunk each; in version 1,
//! one zstd stream cut into chunks of 256 KiB; a header with its checksum — following
//! docs/image-format.md, written here independently of the engine's writer. So every input
//! reaches the record decoder and the tree builder (`image/load.rs`), which a byte-level fuzzer
//! of the whole image (`image`) rarely does: a random change there mostly breaks a checksum.
//!
//! `Filesystem::from_image` must refuse or build a filesystem, never panic, hang or allocate
//! without bound; a tree it builds must pass the accounting invariant.
//!
//! Run: `cd crates/rtmpfs-core/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run image_records`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rtmpfs_core::{Config, Filesystem, LimitSource, RestoreOptions};

#[derive(Debug, Arbitrary)]
struct Rec {
    /// Mostly a known kind (1..=7), sometimes anything.
    kind: u8,
    payload: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Start with a well-formed Limits record, as every image does (else the first record is
    /// the fuzzer's own).
    limits_first: bool,
    records: Vec<Rec>,
    /// Write format version 1 (one zstd stream) instead of 2 (a frame per chunk).
    version_1: bool,
    /// Version 2: where to cut the record stream into frames (offsets, taken modulo its
    /// length; a cut at a record boundary most of the time, the fuzzer's own offset else).
    cuts: Vec<(bool, u32)>,
}

fn record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(&len.to_le_bytes());
    crc.update(payload);
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
}

/// A plain header of `version`.
fn header(version: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"RTMPFSIM");
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 32]);
    let crc = crc32fast::hash(&out[..48]);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Version 1: the header and the zstd stream of `records`, in chunks of at most 256 KiB.
fn image_v1(records: &[u8]) -> Vec<u8> {
    let compressed = zstd::encode_all(records, 1).expect("zstd into memory");
    // The payload limit per chunk is 256 KiB; cut the stream into chunks of at most that.
    let chunks: Vec<Vec<u8>> = if compressed.is_empty() {
        vec![Vec::new()]
    } else {
        compressed.chunks(256 * 1024).map(<[u8]>::to_vec).collect()
    };
    let mut out = header(1);
    put_chunks(&mut out, &chunks);
    out
}

/// Version 2: the header and `records` cut at `cuts` (sorted offsets), each piece a zstd frame
/// in a chunk of its own.
fn image_v2(records: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied());
    bounds.push(records.len());
    let frames: Vec<Vec<u8>> = bounds
        .windows(2)
        .map(|w| zstd::bulk::compress(&records[w[0]..w[1]], 1).expect("zstd into memory"))
        .collect();
    let mut out = header(2);
    put_chunks(&mut out, &frames);
    out
}

/// Each payload as a plain chunk, the last one marked final.
fn put_chunks(out: &mut Vec<u8>, chunks: &[Vec<u8>]) {
    for (index, payload) in chunks.iter().enumerate() {
        let last = u8::from(index + 1 == chunks.len());
        let len = u32::try_from(payload.len()).expect("a chunk's payload fits a u32");
        let mut h = crc32fast::Hasher::new();
        h.update(&(index as u64).to_le_bytes());
        h.update(&[last]);
        h.update(&len.to_le_bytes());
        h.update(payload);
        out.extend_from_slice(&len.to_le_bytes());
        out.push(last);
        out.extend_from_slice(payload);
        out.extend_from_slice(&h.finalize().to_le_bytes());
    }
}

fuzz_target!(|input: Input| {
    let mut stream = Vec::new();
    // Where each record ends: the cuts at record boundaries are chosen among these.
    let mut ends = Vec::new();
    if input.limits_first {
        let mut limits = Vec::new();
        limits.extend_from_slice(&(64u64 << 20).to_le_bytes());
        limits.extend_from_slice(&10_000u64.to_le_bytes());
        record(&mut stream, 1, &limits);
        ends.push(stream.len());
    }
    for r in input.records.iter().take(256) {
        // Map most kinds onto the seven real ones so the decoder's branches are all reached.
        let kind = if r.kind < 224 { r.kind % 8 } else { r.kind };
        record(&mut stream, kind, &r.payload);
        ends.push(stream.len());
    }
    let data = if input.version_1 {
        image_v1(&stream)
    } else {
        let mut cuts: Vec<usize> = input
            .cuts
            .iter()
            .take(64)
            .filter(|_| !stream.is_empty())
            .map(|&(at_record, n)| {
                if at_record && !ends.is_empty() {
                    ends[n as usize % ends.len()]
                } else {
                    n as usize % stream.len()
                }
            })
            .collect();
        cuts.sort_unstable();
        image_v2(&stream, &cuts)
    };
    let config = Config {
        size_bytes: Some(64 << 20),
        max_inodes: Some(10_000),
        ..Config::default()
    };
    let opts = RestoreOptions {
        key: None,
        size: LimitSource::Config,
        inodes: LimitSource::Config,
    };
    if let Ok(fs) = Filesystem::from_image(config, &data[..], &opts) {
        fs.check_invariants().unwrap();
    }
});
