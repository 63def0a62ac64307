//! The outer layer of an image: the header and the chunks that carry the compressed data (in
//! format version 2, each chunk one zstd frame; in version 1, which is still read, one zstd
//! stream cut into chunks of 256 KiB).
//!
//! ```text
//! header  "RTMPFSIM" | version u32 | flags u32 | salt [16] | key check [16] | crc32 u32   (52 bytes)
//! chunk   len u32 | last u8 | payload [len] | crc32 u32 (plain) or AES-256-GCM tag [16] (sealed)
//! ```
//!
//! All integers little-endian. A plain chunk's crc32 covers its index (u64), `last`, `len` and
//! payload; a sealed chunk's payload is ciphertext whose associated data is the same index,
//! `last` and `len`, under nonce = index, with a key derived for this image from the user's key
//! and the salt (HKDF-SHA256). The key check is the tag of an empty message sealed under
//! nonce `u64::MAX`: a wrong key is told from damage before any chunk is read. Exactly one chunk
//! has `last = 1`, the final one; a stream that ends before it is truncated, and bytes after it
//! are damage. The chunk index in the checksum or associated data means chunks cannot be
//! dropped, repeated or reordered unnoticed.

use std::io::{Read, Write};
use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use super::frames::FRAME_MAX;
use super::{ImageError, ImageKey, IMAGE_VERSION};

pub(super) const MAGIC: &[u8; 8] = b"RTMPFSIM";
pub(super) const HEADER_LEN: usize = 52;
/// Payload bytes per chunk in format version 1.
const V1_CHUNK: usize = 256 * 1024;
const FLAG_ENCRYPTED: u32 = 1;
const TAG_LEN: usize = 16;
const KEY_CHECK_AAD: &[u8] = b"rtmpfs image key check";
const KDF_INFO: &[u8] = b"rtmpfs image v1";

fn derive(key: &ImageKey, salt: &[u8; 16]) -> Result<LessSafeKey, ImageError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&key.0);
    let okm = prk
        .expand(&[KDF_INFO], &AES_256_GCM)
        .map_err(|_| ImageError::BadKey("key derivation failed".into()))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

fn nonce(n: u64) -> Nonce {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(b)
}

fn chunk_aad(index: u64, last: bool, len: u32) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&index.to_le_bytes());
    a[8] = u8::from(last);
    a[9..].copy_from_slice(&len.to_le_bytes());
    a
}

/// A plain chunk's checksum: its index, `last`, `len` (`head` is `len | last`) and payload.
fn chunk_crc(index: u64, head: [u8; 5], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(&head[4..]);
    h.update(&head[..4]);
    h.update(payload);
    h.finalize()
}

fn key_check(key: &LessSafeKey) -> [u8; TAG_LEN] {
    let tag = key
        .seal_in_place_separate_tag(nonce(u64::MAX), Aad::from(KEY_CHECK_AAD), &mut [])
        .expect("sealing an empty message cannot fail");
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag.as_ref());
    t
}

/// Writes the header, then chunks, each sealed or checksummed as it goes out.
pub(super) struct ChunkWriter<W: Write> {
    out: W,
    key: Option<LessSafeKey>,
    index: u64,
    /// Bytes written to `out` so far.
    written: u64,
}

impl<W: Write> ChunkWriter<W> {
    /// Write the header (this build's version, [`IMAGE_VERSION`]) to `out`.
    pub(super) fn new(mut out: W, key: Option<&ImageKey>) -> Result<Self, ImageError> {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&IMAGE_VERSION.to_le_bytes());
        let sealing = match key {
            Some(k) => {
                let mut salt = [0u8; 16];
                SystemRandom::new()
                    .fill(&mut salt)
                    .map_err(|_| ImageError::BadKey("no random source for the salt".into()))?;
                let sealing = derive(k, &salt)?;
                header[12..16].copy_from_slice(&FLAG_ENCRYPTED.to_le_bytes());
                header[16..32].copy_from_slice(&salt);
                header[32..48].copy_from_slice(&key_check(&sealing));
                Some(sealing)
            }
            None => None,
        };
        let crc = crc32fast::hash(&header[..48]);
        header[48..].copy_from_slice(&crc.to_le_bytes());
        out.write_all(&header).map_err(ImageError::Io)?;
        Ok(ChunkWriter {
            out,
            key: sealing,
            index: 0,
            written: HEADER_LEN as u64,
        })
    }

    /// Write `payload` (at most [`FRAME_MAX`] bytes) as the next chunk, the final one if
    /// `last`; sealing encrypts it in place.
    pub(super) fn put(&mut self, payload: &mut [u8], last: bool) -> std::io::Result<()> {
        debug_assert!(payload.len() <= FRAME_MAX);
        let len = payload.len() as u32;
        let mut head = [0u8; 5];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4] = u8::from(last);
        let mut trailer = [0u8; TAG_LEN];
        let trailer: &[u8] = if let Some(key) = &self.key {
            let aad = chunk_aad(self.index, last, len);
            let tag = key
                .seal_in_place_separate_tag(nonce(self.index), Aad::from(aad), payload)
                .map_err(|_| std::io::Error::other("AES-GCM sealing failed"))?;
            trailer.copy_from_slice(tag.as_ref());
            &trailer
        } else {
            trailer[..4].copy_from_slice(&chunk_crc(self.index, head, payload).to_le_bytes());
            &trailer[..4]
        };
        self.out.write_all(&head)?;
        self.out.write_all(payload)?;
        self.out.write_all(trailer)?;
        self.written += (head.len() + payload.len() + trailer.len()) as u64;
        self.index += 1;
        Ok(())
    }

    /// Flush after the last chunk; returns the output and the bytes written in all.
    pub(super) fn finish(mut self) -> std::io::Result<(W, u64)> {
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

/// A chunk as read, not yet checked or opened.
pub(super) struct RawChunk {
    index: u64,
    head: [u8; 5],
    payload: Vec<u8>,
    trailer: [u8; TAG_LEN],
}

impl RawChunk {
    /// Its position in the image (0, 1, ...).
    pub(super) fn index(&self) -> u64 {
        self.index
    }

    /// Whether this is the image's final chunk.
    pub(super) fn last(&self) -> bool {
        self.head[4] == 1
    }
}

/// Checks (plain) or opens (sealed) chunks; shared by the threads that decode them.
pub(super) struct Opener {
    key: Option<LessSafeKey>,
}

impl Opener {
    /// The payload of `chunk`, checked against its checksum or opened with the image's key.
    pub(super) fn open(&self, chunk: RawChunk) -> Result<Vec<u8>, ImageError> {
        let RawChunk {
            index,
            head,
            mut payload,
            trailer,
        } = chunk;
        if let Some(key) = &self.key {
            let aad = chunk_aad(index, head[4] == 1, payload.len() as u32);
            key.open_in_place_separate_tag(nonce(index), Aad::from(aad), Tag::from(trailer), &mut payload, 0..)
                .map_err(|_| ImageError::Corrupt(format!("chunk {index} does not authenticate")))?;
        } else if chunk_crc(index, head, &payload) != u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) {
            return Err(ImageError::Corrupt(format!("chunk {index}: checksum mismatch")));
        }
        Ok(payload)
    }
}

/// Reads and checks the header, then the chunks: one at a time, unchecked ([`ChunkReader::next_raw`],
/// for threads that check and decode them), or (format version 1) as the stream of their
/// payloads, each checked before a byte of it is given out ([`Read`]; errors are
/// [`ImageError`]s inside `io::Error`s).
pub(super) struct ChunkReader<R: Read> {
    input: R,
    opener: Arc<Opener>,
    version: u32,
    buf: Vec<u8>,
    pos: usize,
    index: u64,
    done: bool,
}

/// Read exactly `buf.len()` bytes, or say the image is truncated.
fn read_full(input: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), ImageError> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => return Err(ImageError::Truncated(what)),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError::Io(e)),
        }
    }
    Ok(())
}

impl<R: Read> ChunkReader<R> {
    /// Read and check the header. `key` must be given for an encrypted image, and only then.
    pub(super) fn new(mut input: R, key: Option<&ImageKey>) -> Result<Self, ImageError> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match input.read(&mut header[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ImageError::Io(e)),
            }
        }
        if got < MAGIC.len() || &header[..8] != MAGIC {
            return Err(if got < MAGIC.len() && MAGIC.starts_with(&header[..got]) && got > 0 {
                ImageError::Truncated("inside the header")
            } else {
                ImageError::NotAnImage
            });
        }
        if got < 12 {
            return Err(ImageError::Truncated("inside the header"));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        let crc_ok = got == HEADER_LEN
            && crc32fast::hash(&header[..48]) == u32::from_le_bytes(header[48..].try_into().expect("4 bytes"));
        // A header of another version may have another layout: its version says so even when
        // this version's checksum does not fit it. Versions 1 and 2 share the header.
        if !(1..=IMAGE_VERSION).contains(&version) {
            return Err(ImageError::UnsupportedVersion {
                found: version,
                supported: IMAGE_VERSION,
            });
        }
        if got < HEADER_LEN {
            return Err(ImageError::Truncated("inside the header"));
        }
        if !crc_ok {
            return Err(ImageError::Corrupt("header checksum mismatch".into()));
        }
        let flags = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        if flags & !FLAG_ENCRYPTED != 0 {
            return Err(ImageError::Corrupt(format!("unknown header flags {flags:#x}")));
        }
        let opening = match (flags & FLAG_ENCRYPTED != 0, key) {
            (true, None) => return Err(ImageError::KeyRequired),
            (false, Some(_)) => return Err(ImageError::NotEncrypted),
            (false, None) => None,
            (true, Some(k)) => {
                let salt: [u8; 16] = header[16..32].try_into().expect("16 bytes");
                let opening = derive(k, &salt)?;
                if key_check(&opening)[..] != header[32..48] {
                    return Err(ImageError::WrongKey);
                }
                Some(opening)
            }
        };
        Ok(ChunkReader {
            input,
            opener: Arc::new(Opener { key: opening }),
            version,
            buf: Vec::new(),
            pos: 0,
            index: 0,
            done: false,
        })
    }

    /// The image's format version (1 or 2).
    pub(super) fn version(&self) -> u32 {
        self.version
    }

    /// What checks and opens this image's chunks.
    pub(super) fn opener(&self) -> Arc<Opener> {
        Arc::clone(&self.opener)
    }

    /// The next chunk as read (`None` after the last one), its length and end flag checked;
    /// after the last chunk, that nothing follows it. Its payload is read into `buf`.
    pub(super) fn next_raw(&mut self, mut buf: Vec<u8>) -> Result<Option<RawChunk>, ImageError> {
        if self.done {
            return Ok(None);
        }
        let mut head = [0u8; 5];
        read_full(&mut self.input, &mut head, "before its last chunk")?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let last = match head[4] {
            0 => false,
            1 => true,
            b => return Err(ImageError::Corrupt(format!("chunk {}: bad end flag {b}", self.index))),
        };
        let max = if self.version == 1 { V1_CHUNK } else { FRAME_MAX };
        if len as usize > max {
            return Err(ImageError::Corrupt(format!(
                "chunk {}: length {len} too large",
                self.index
            )));
        }
        buf.clear();
        buf.resize(len as usize, 0);
        let mut payload = buf;
        read_full(&mut self.input, &mut payload, "inside a chunk")?;
        let mut trailer = [0u8; TAG_LEN];
        let trailer_len = if self.opener.key.is_some() { TAG_LEN } else { 4 };
        read_full(&mut self.input, &mut trailer[..trailer_len], "inside a chunk")?;
        let chunk = RawChunk {
            index: self.index,
            head,
            payload,
            trailer,
        };
        self.index += 1;
        if last {
            self.done = true;
            let mut extra = [0u8; 1];
            loop {
                match self.input.read(&mut extra) {
                    Ok(0) => break,
                    Ok(_) => return Err(ImageError::Corrupt("bytes after the last chunk".into())),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ImageError::Io(e)),
                }
            }
        }
        Ok(Some(chunk))
    }
}

impl<R: Read> Read for ChunkReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let buf = std::mem::take(&mut self.buf);
            let Some(chunk) = self.next_raw(buf).map_err(ImageError::into_io)? else {
                return Ok(0);
            };
            self.buf = self.opener.open(chunk).map_err(ImageError::into_io)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
