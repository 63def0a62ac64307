//! Directory entries with stable readdir cookies.
//!
//! Each entry gets a cookie from a per-directory counter when it is inserted, and keeps it until
//! it is removed. `readdir(offset)` returns the entries whose cookie is greater than `offset`, in
//! cookie order, so an entry nobody touches during a listing is returned exactly once, whatever is
//! created or removed meanwhile (the property Linux 6.6 got with `simple_offset_*`). A renamed
//! entry is a new entry with a new cookie. Cookies 1 and 2 are `.` and `..`.
//!
//! A listing ends where the directory ended when it began (Linux 6.18's `offset_readdir` stops
//! at the `next_offset` recorded at open and at every rewind): entries inserted later have
//! cookies at or past that end and are left out, as POSIX allows. Without that end, a program
//! that renames every entry it is given (away and back) would meet each again, for ever.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::limits::BOGO_DIRENT_SIZE;
use crate::sync::{AtomicU64, LockRank, Ordering, RwLock};
use crate::types::{DirEntry, FileKind, Ino};

/// First cookie handed to a real entry (1 is `.`, 2 is `..`).
pub(crate) const FIRST_COOKIE: u64 = 3;

/// A directory's body.
pub(crate) struct DirBody {
    /// Rank `Dir`. Nested dir locks: parent before child, else ascending inode number, and
    /// cross-directory renames hold the filesystem's rename lock first.
    pub entries: RwLock<Dir>,
    /// The parent directory. Written only under the filesystem rename lock and this directory's
    /// lock; read without locks (an atomic), so that ancestry walks take no directory lock.
    pub parent: AtomicU64,
    /// `i_size` as tmpfs reports it: 40 + 20 per entry. Written under `entries`, read atomically.
    size: AtomicU64,
    /// The epoch of the snapshot that has captured the entries (0: none). Read and set under
    /// `entries`, with the capture (`image/cow.rs`).
    pub snap_entries: AtomicU64,
}

/// One entry as stored by name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub ino: Ino,
    pub kind: FileKind,
    pub cookie: u64,
}

/// The entries of a directory. Protected by `DirBody::entries`.
///
/// Both maps hold the whole entry (it never changes after insertion: a rename is a remove and an
/// insert), so lookups touch only `by_name` and listings only `by_cookie`. The name is one
/// allocation shared by both maps and by every listing batch that carries it, so a listing
/// allocates nothing per entry.
pub(crate) struct Dir {
    by_name: HashMap<Arc<[u8]>, Entry>,
    by_cookie: BTreeMap<u64, (Entry, Arc<[u8]>)>,
    next_cookie: u64,
    /// Set by rmdir: no entry may be added any more.
    pub removed: bool,
}

impl DirBody {
    pub(crate) fn new(parent: Ino) -> Self {
        DirBody {
            entries: RwLock::new(
                LockRank::Dir,
                Dir {
                    by_name: HashMap::new(),
                    by_cookie: BTreeMap::new(),
                    next_cookie: FIRST_COOKIE,
                    removed: false,
                },
            ),
            parent: AtomicU64::new(parent.0),
            size: AtomicU64::new(2 * BOGO_DIRENT_SIZE),
            snap_entries: AtomicU64::new(0),
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    pub(crate) fn parent(&self) -> Ino {
        Ino(self.parent.load(Ordering::Acquire))
    }

    pub(crate) fn set_parent(&self, parent: Ino) {
        self.parent.store(parent.0, Ordering::Release);
    }

    /// Insert under the held write guard `d`.
    pub(crate) fn insert(&self, d: &mut Dir, name: &[u8], ino: Ino, kind: FileKind) {
        let cookie = d.next_cookie;
        d.next_cookie += 1;
        let entry = Entry { ino, kind, cookie };
        let name: Arc<[u8]> = name.into();
        let prev = d.by_name.insert(Arc::clone(&name), entry);
        debug_assert!(prev.is_none(), "insert over an existing entry");
        d.by_cookie.insert(cookie, (entry, name));
        self.size.store(
            2 * BOGO_DIRENT_SIZE + BOGO_DIRENT_SIZE * d.by_name.len() as u64,
            Ordering::Relaxed,
        );
    }

    /// Remove under the held write guard `d`.
    pub(crate) fn remove(&self, d: &mut Dir, name: &[u8]) -> Option<Entry> {
        let e = d.by_name.remove(name)?;
        d.by_cookie.remove(&e.cookie);
        self.size.store(
            2 * BOGO_DIRENT_SIZE + BOGO_DIRENT_SIZE * d.by_name.len() as u64,
            Ordering::Relaxed,
        );
        Some(e)
    }
}

impl Dir {
    pub(crate) fn get(&self, name: &[u8]) -> Option<Entry> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The cookie the next inserted entry will get: where a listing that begins now ends.
    pub(crate) fn end_cookie(&self) -> u64 {
        self.next_cookie
    }

    /// Every entry's name and inode, in cookie order (a snapshot's capture of the directory).
    pub(crate) fn names_and_inos(&self) -> Vec<(Arc<[u8]>, Ino)> {
        self.by_cookie
            .values()
            .map(|(e, name)| (Arc::clone(name), e.ino))
            .collect()
    }

    /// Entries with `after` < cookie < `end`, in cookie order, until `f` returns false.
    pub(crate) fn for_each_between(&self, after: u64, end: u64, mut f: impl FnMut(DirEntry) -> bool) {
        let start = after.saturating_add(1).max(FIRST_COOKIE);
        if start >= end {
            return;
        }
        for (&cookie, (e, name)) in self.by_cookie.range(start..end) {
            let more = f(DirEntry {
                ino: e.ino,
                cookie,
                kind: e.kind,
                name: Arc::clone(name).into(),
            });
            if !more {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_after(body: &DirBody, after: u64) -> Vec<(u64, Vec<u8>)> {
        let d = body.entries.read();
        let mut v = Vec::new();
        d.for_each_between(after, u64::MAX, |e| {
            v.push((e.cookie, e.name.to_vec()));
            true
        });
        v
    }

    #[test]
    fn cookies_are_stable_across_inserts_and_removes() {
        let body = DirBody::new(Ino(1));
        {
            let mut d = body.entries.write();
            for i in 0..5u64 {
                body.insert(&mut d, format!("f{i}").as_bytes(), Ino(10 + i), FileKind::RegularFile);
            }
        }
        let first = names_after(&body, 0);
        assert_eq!(first.len(), 5);
        let resume_after = first[1].0;
        {
            let mut d = body.entries.write();
            body.remove(&mut d, b"f0");
            body.remove(&mut d, b"f3");
            body.insert(&mut d, b"new", Ino(99), FileKind::RegularFile);
        }
        let rest: Vec<_> = names_after(&body, resume_after).into_iter().map(|(_, n)| n).collect();
        assert_eq!(rest, vec![b"f2".to_vec(), b"f4".to_vec(), b"new".to_vec()]);
        assert_eq!(body.size(), 40 + 4 * 20);
    }

    #[test]
    fn a_listing_ends_at_the_end_it_began_with() {
        let body = DirBody::new(Ino(1));
        let mut d = body.entries.write();
        body.insert(&mut d, b"a", Ino(10), FileKind::RegularFile);
        body.insert(&mut d, b"b", Ino(11), FileKind::RegularFile);
        let end = d.end_cookie();
        // "a" renamed away and back: a new entry, past the end.
        body.remove(&mut d, b"a");
        body.insert(&mut d, b"a", Ino(10), FileKind::RegularFile);
        let mut seen = Vec::new();
        d.for_each_between(0, end, |e| {
            seen.push(e.name);
            true
        });
        assert_eq!(seen, vec![b"b".to_vec()]);
        let mut none = 0;
        d.for_each_between(end, end, |_| {
            none += 1;
            true
        });
        assert_eq!(none, 0);
    }
}
