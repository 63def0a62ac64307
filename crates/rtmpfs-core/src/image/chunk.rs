//! The outer layer of an image: the header and the chunks that carry the compressed stream.
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

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use super::{ImageError, ImageKey, IMAGE_VERSION};

pub(super) const MAGIC: &[u8; 8] = b"RTMPFSIM";
pub(super) const HEADER_LEN: usize = 52;
/// Payload bytes per chunk (what a reader holds at once, besides zstd's window).
const CHUNK: usize = 256 * 1024;
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

/// Writes the header, then the stream written to it as chunks.
pub(super) struct ChunkWriter<W: Write> {
    out: W,
    key: Option<LessSafeKey>,
    buf: Vec<u8>,
    index: u64,
    /// Bytes written to `out` so far.
    written: u64,
}

impl<W: Write> ChunkWriter<W> {
    /// Write the header to `out`.
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
            buf: Vec::with_capacity(CHUNK),
            index: 0,
            written: HEADER_LEN as u64,
        })
    }

    fn emit(&mut self, last: bool) -> std::io::Result<()> {
        let len = self.buf.len() as u32;
        let mut head = [0u8; 5];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4] = u8::from(last);
        let trailer: Vec<u8> = if let Some(key) = &self.key {
            let aad = chunk_aad(self.index, last, len);
            let tag = key
                .seal_in_place_separate_tag(nonce(self.index), Aad::from(aad), &mut self.buf)
                .map_err(|_| std::io::Error::other("AES-GCM sealing failed"))?;
            tag.as_ref().to_vec()
        } else {
            chunk_crc(self.index, head, &self.buf).to_le_bytes().to_vec()
        };
        self.out.write_all(&head)?;
        self.out.write_all(&self.buf)?;
        self.out.write_all(&trailer)?;
        self.written += (head.len() + self.buf.len() + trailer.len()) as u64;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Write the last chunk and flush; returns the output and the bytes written in all.
    pub(super) fn finish(mut self) -> std::io::Result<(W, u64)> {
        self.emit(true)?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

impl<W: Write> Write for ChunkWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.emit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads and checks the header, then yields the payload of the chunks, each verified (or
/// opened) before a byte of it is given out. Errors are [`ImageError`]s inside `io::Error`s.
pub(super) struct ChunkReader<R: Read> {
    input: R,
    key: Option<LessSafeKey>,
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
        // this version's checksum does not fit it.
        if version != IMAGE_VERSION {
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
            key: opening,
            buf: Vec::new(),
            pos: 0,
            index: 0,
            done: false,
        })
    }

    /// Read, check and (if sealed) open the next chunk into `buf`.
    fn next_chunk(&mut self) -> Result<(), ImageError> {
        let mut head = [0u8; 5];
        read_full(&mut self.input, &mut head, "before its last chunk")?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let last = match head[4] {
            0 => false,
            1 => true,
            b => return Err(ImageError::Corrupt(format!("chunk {}: bad end flag {b}", self.index))),
        };
        if len as usize > CHUNK {
            return Err(ImageError::Corrupt(format!(
                "chunk {}: length {len} too large",
                self.index
            )));
        }
        self.buf.resize(len as usize, 0);
        self.pos = 0;
        read_full(&mut self.input, &mut self.buf, "inside a chunk")?;
        if let Some(key) = &self.key {
            let mut tag = [0u8; TAG_LEN];
            read_full(&mut self.input, &mut tag, "inside a chunk")?;
            let aad = chunk_aad(self.index, last, len);
            key.open_in_place_separate_tag(nonce(self.index), Aad::from(aad), Tag::from(tag), &mut self.buf, 0..)
                .map_err(|_| ImageError::Corrupt(format!("chunk {} does not authenticate", self.index)))?;
        } else {
            let mut crc = [0u8; 4];
            read_full(&mut self.input, &mut crc, "inside a chunk")?;
            if chunk_crc(self.index, head, &self.buf) != u32::from_le_bytes(crc) {
                return Err(ImageError::Corrupt(format!("chunk {}: checksum mismatch", self.index)));
            }
        }
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
        Ok(())
    }
}

impl<R: Read> Read for ChunkReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk().map_err(ImageError::into_io)?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
