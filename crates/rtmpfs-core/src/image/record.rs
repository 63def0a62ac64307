//! The records of an image (inside the zstd frames): `kind u8 | len u32 | payload | crc32 u32`,
//! the checksum over kind, len and payload. Layouts in `docs/image-format.md`.

use std::io::{Read, Write};

use super::ImageError;
use crate::types::{FileKind, Timespec};

/// Largest payload a reader accepts: a data record of 64 pages, or an xattr (64 KiB value,
/// 255-byte name), with room to spare. A reader holds one record at a time.
pub(super) const MAX_PAYLOAD: usize = 1 << 20;

const LIMITS: u8 = 1;
const INODE: u8 = 2;
const XATTR: u8 = 3;
const DATA: u8 = 4;
const RESERVED: u8 = 5;
const ENTRY: u8 = 6;
const END: u8 = 7;

/// An inode's attributes as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InodeRecord {
    pub id: u64,
    pub kind: FileKind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub nlink: u32,
    pub flags: u32,
    pub size: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Timespec,
    /// A symlink's target; empty otherwise.
    pub target: Vec<u8>,
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    /// The mount's limits (`u64::MAX`: unlimited). The first record.
    Limits { size_bytes: u64, max_inodes: u64 },
    /// An inode; the xattr, data and reserved records that follow belong to it.
    Inode(InodeRecord),
    /// An xattr of the last inode.
    Xattr { name: Vec<u8>, value: Vec<u8> },
    /// Pages of the last inode (a regular file) from page `first`: whole pages.
    Data { first: u64, bytes: Vec<u8> },
    /// Reserved (fallocated, unwritten) pages of the last inode.
    Reserved { first: u64, count: u64 },
    /// Directory `parent` has entry `name` for inode `child` (both recorded before).
    Entry { parent: u64, child: u64, name: Vec<u8> },
    /// The end, with counts to check.
    End { inodes: u64, entries: u64, data_pages: u64 },
}

fn kind_code(k: FileKind) -> u8 {
    match k {
        FileKind::RegularFile => 1,
        FileKind::Directory => 2,
        FileKind::Symlink => 3,
        FileKind::NamedPipe => 4,
        FileKind::Socket => 5,
        FileKind::CharDevice => 6,
        FileKind::BlockDevice => 7,
    }
}

fn kind_of(c: u8) -> Option<FileKind> {
    Some(match c {
        1 => FileKind::RegularFile,
        2 => FileKind::Directory,
        3 => FileKind::Symlink,
        4 => FileKind::NamedPipe,
        5 => FileKind::Socket,
        6 => FileKind::CharDevice,
        7 => FileKind::BlockDevice,
        _ => return None,
    })
}

fn put_time(b: &mut Vec<u8>, t: Timespec) {
    b.extend_from_slice(&t.sec.to_le_bytes());
    b.extend_from_slice(&t.nsec.to_le_bytes());
}

impl Record {
    /// Write the record to `w`.
    pub(super) fn write(&self, w: &mut impl RecordSink) -> std::io::Result<()> {
        let mut p = Vec::new();
        let kind = match self {
            Record::Limits { size_bytes, max_inodes } => {
                p.extend_from_slice(&size_bytes.to_le_bytes());
                p.extend_from_slice(&max_inodes.to_le_bytes());
                LIMITS
            }
            Record::Inode(r) => {
                p.extend_from_slice(&r.id.to_le_bytes());
                p.push(kind_code(r.kind));
                for v in [r.perm, r.uid, r.gid] {
                    p.extend_from_slice(&v.to_le_bytes());
                }
                p.extend_from_slice(&r.rdev.to_le_bytes());
                p.extend_from_slice(&r.nlink.to_le_bytes());
                p.extend_from_slice(&r.flags.to_le_bytes());
                p.extend_from_slice(&r.size.to_le_bytes());
                for t in [r.atime, r.mtime, r.ctime, r.btime] {
                    put_time(&mut p, t);
                }
                p.extend_from_slice(&r.target);
                INODE
            }
            Record::Xattr { name, value } => {
                p.push(name.len() as u8);
                p.extend_from_slice(name);
                p.extend_from_slice(value);
                XATTR
            }
            Record::Data { first, bytes } => return write_data(w, *first, bytes),
            Record::Reserved { first, count } => {
                p.extend_from_slice(&first.to_le_bytes());
                p.extend_from_slice(&count.to_le_bytes());
                RESERVED
            }
            Record::Entry { parent, child, name } => {
                p.extend_from_slice(&parent.to_le_bytes());
                p.extend_from_slice(&child.to_le_bytes());
                p.extend_from_slice(name);
                ENTRY
            }
            Record::End {
                inodes,
                entries,
                data_pages,
            } => {
                for v in [inodes, entries, data_pages] {
                    p.extend_from_slice(&v.to_le_bytes());
                }
                END
            }
        };
        w.put_record(kind, &[&p])
    }

    /// Read the next record. The stream (decompressed) must not end before the `End` record.
    pub(super) fn read(r: &mut impl Read) -> Result<Record, ImageError> {
        let mut head = [0u8; 5];
        read_exact(r, &mut head)?;
        let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
        if len > MAX_PAYLOAD {
            return Err(ImageError::Corrupt(format!("record of {len} bytes")));
        }
        // A data record's pages are read into a vector of their own, after its first-page
        // field: taking them out of the payload afterwards would copy every byte once more.
        let prefix = if head[0] == DATA { 8.min(len) } else { 0 };
        let mut first = [0u8; 8];
        read_exact(r, &mut first[..prefix])?;
        let mut p = vec![0u8; len - prefix];
        read_exact(r, &mut p)?;
        let mut crc = [0u8; 4];
        read_exact(r, &mut crc)?;
        check_sum(head, &[&first[..prefix], &p], crc)?;
        if head[0] == DATA {
            data_pages(head[0], len)?;
            return Ok(Record::Data {
                first: u64::from_le_bytes(first),
                bytes: p,
            });
        }
        decode(head[0], p).ok_or_else(|| malformed(head[0]))
    }
}

fn malformed(kind: u8) -> ImageError {
    ImageError::Corrupt(format!("malformed record (kind {kind})"))
}

/// Check a record's checksum: over its head (`kind`, `len`) and its payload, in `parts`.
fn check_sum(head: [u8; 5], parts: &[&[u8]], crc: [u8; 4]) -> Result<(), ImageError> {
    let mut h = crc32fast::Hasher::new();
    h.update(&head);
    for p in parts {
        h.update(p);
    }
    if h.finalize() == u32::from_le_bytes(crc) {
        Ok(())
    } else {
        Err(ImageError::Corrupt(format!(
            "record checksum mismatch (kind {})",
            head[0]
        )))
    }
}

/// The bytes of pages a data record of payload `len` carries after its first-page field: at
/// least one page, and whole pages.
fn data_pages(kind: u8, len: usize) -> Result<usize, ImageError> {
    match len.checked_sub(8) {
        Some(pages) if pages > 0 && pages % crate::mm::PAGE == 0 => Ok(pages),
        _ => Err(malformed(kind)),
    }
}

/// Where records go: a byte stream, or (`frames::FrameWriter`) a writer that cuts its stream
/// into independent frames between records and so must see where each record ends.
pub(super) trait RecordSink {
    /// Write one record whose payload is `parts`, concatenated.
    fn put_record(&mut self, kind: u8, parts: &[&[u8]]) -> std::io::Result<()>;
}

impl<W: Write> RecordSink for W {
    fn put_record(&mut self, kind: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        write_raw(self, kind, parts)
    }
}

/// Bytes a record of these payload parts takes: kind, length, payload, checksum.
pub(super) fn record_len(parts: &[&[u8]]) -> usize {
    5 + parts.iter().map(|p| p.len()).sum::<usize>() + 4
}

/// A record whose payload is `parts`, concatenated.
pub(super) fn write_raw(w: &mut impl Write, kind: u8, parts: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(len <= MAX_PAYLOAD);
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&(len as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&head);
    w.write_all(&head)?;
    for p in parts {
        h.update(p);
        w.write_all(p)?;
    }
    w.write_all(&h.finalize().to_le_bytes())
}

/// A [`Record::Data`] written from borrowed bytes (no copy into a record).
pub(super) fn write_data(w: &mut impl RecordSink, first: u64, bytes: &[u8]) -> std::io::Result<()> {
    w.put_record(DATA, &[&first.to_le_bytes(), bytes])
}

/// A record as the builder takes it: a data record's pages borrowed from the segment they were
/// decoded into (format version 2), or a whole record.
pub(super) enum Item<'a> {
    /// A record; a version-1 data record carries its pages in it.
    Record(Record),
    /// Pages of the last inode from page `first` (whole pages, checked).
    Data { first: u64, pages: &'a [u8] },
}

/// One record of a segment, parsed: a data record as its place in the segment.
pub(super) enum Parsed {
    Record(Record),
    Data { first: u64, at: std::ops::Range<usize> },
}

impl Parsed {
    /// This record as an [`Item`], its pages borrowed from `segment`.
    pub(super) fn item(self, segment: &[u8]) -> Item<'_> {
        match self {
            Parsed::Record(r) => Item::Record(r),
            Parsed::Data { first, at } => Item::Data {
                first,
                pages: &segment[at],
            },
        }
    }
}

/// Parse every record of a segment (format version 2: a frame's content, records that neither
/// start before it nor end after it), each checksum checked. Data records are not copied: they
/// are given as ranges of `segment`.
pub(super) fn parse_segment(segment: &[u8]) -> Result<Vec<Parsed>, ImageError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < segment.len() {
        let rest = &segment[at..];
        let cut = || ImageError::Corrupt("a record runs past the end of its frame".into());
        let head: [u8; 5] = rest.get(..5).ok_or_else(cut)?.try_into().expect("5 bytes");
        let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
        if len > MAX_PAYLOAD {
            return Err(ImageError::Corrupt(format!("record of {len} bytes")));
        }
        let payload = rest.get(5..5 + len).ok_or_else(cut)?;
        let crc = rest.get(5 + len..9 + len).ok_or_else(cut)?;
        check_sum(head, &[payload], crc.try_into().expect("4 bytes"))?;
        if head[0] == DATA {
            let pages = data_pages(head[0], len)?;
            let first = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
            let start = at + 5 + 8;
            out.push(Parsed::Data {
                first,
                at: start..start + pages,
            });
        } else {
            out.push(Parsed::Record(
                decode(head[0], payload.to_vec()).ok_or_else(|| malformed(head[0]))?,
            ));
        }
        at += 9 + len;
    }
    Ok(out)
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ImageError> {
    r.read_exact(buf).map_err(|e| match ImageError::from_io(e) {
        ImageError::Io(e) => ImageError::Corrupt(format!("compressed stream: {e}")),
        other => other,
    })
}

/// A cursor over a payload.
struct Fields(Vec<u8>, usize);

impl Fields {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.0.get(self.1..self.1.checked_add(n)?)?;
        self.1 += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn time(&mut self) -> Option<Timespec> {
        let sec = i64::from_le_bytes(self.take(8)?.try_into().ok()?);
        let nsec = self.u32()?;
        (nsec < 1_000_000_000).then_some(Timespec { sec, nsec })
    }
    fn rest(mut self) -> Vec<u8> {
        self.0.split_off(self.1)
    }
    fn end(&self) -> bool {
        self.1 == self.0.len()
    }
}

fn decode(kind: u8, payload: Vec<u8>) -> Option<Record> {
    let mut f = Fields(payload, 0);
    // Records with a variable tail take it all; the others must use the payload up exactly.
    let fixed = |f: &Fields, rec: Record| f.end().then_some(rec);
    match kind {
        LIMITS => {
            let rec = Record::Limits {
                size_bytes: f.u64()?,
                max_inodes: f.u64()?,
            };
            fixed(&f, rec)
        }
        INODE => Some(Record::Inode(InodeRecord {
            id: f.u64()?,
            kind: kind_of(f.u8()?)?,
            perm: f.u32()?,
            uid: f.u32()?,
            gid: f.u32()?,
            rdev: f.u64()?,
            nlink: f.u32()?,
            flags: f.u32()?,
            size: f.u64()?,
            atime: f.time()?,
            mtime: f.time()?,
            ctime: f.time()?,
            btime: f.time()?,
            target: f.rest(),
        })),
        XATTR => {
            let n = f.u8()? as usize;
            let name = f.take(n)?.to_vec();
            Some(Record::Xattr { name, value: f.rest() })
        }
        // DATA is read by `Record::read` itself, without a copy.
        RESERVED => {
            let rec = Record::Reserved {
                first: f.u64()?,
                count: f.u64()?,
            };
            fixed(&f, rec)
        }
        ENTRY => Some(Record::Entry {
            parent: f.u64()?,
            child: f.u64()?,
            name: f.rest(),
        }),
        END => {
            let rec = Record::End {
                inodes: f.u64()?,
                entries: f.u64()?,
                data_pages: f.u64()?,
            };
            fixed(&f, rec)
        }
        _ => None,
    }
}
