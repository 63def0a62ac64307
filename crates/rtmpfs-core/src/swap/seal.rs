//! Sealing of swapped pages: AES-256-GCM (hardware AES where the CPU has it) with a key made
//! at start from the OS's random source and held only in this process's memory.

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

use super::{PageId, RecordEntry, SwapEntry};
use crate::sync::{AtomicU64, Ordering};

/// Encrypts and authenticates pages, or passes them through (`encrypt=false`).
///
/// Either way every sealed page gets a fresh nonce from a counter: the page map compares
/// `Swapped` entries by (slot, nonce, tag) to detect that a page it saw swapped out was swapped
/// in, changed and swapped out again *to the same slot* meanwhile (the ABA case that shuttle
/// found as `regression_swap_slot_aba`); a unique nonce makes every entry distinct.
///
/// AES-256-GCM comes from `ring` (the AEAD behind rustls): with AES-NI and CLMUL it seals about
/// 2.2 GB/s per core here, against 0.65 GB/s for the pure-Rust `aes-gcm` crate, which made
/// encryption cost half the sequential swap-in throughput.
pub(crate) enum Sealer {
    /// No encryption, no authentication.
    Plain { next_nonce: AtomicU64 },
    /// AES-256-GCM; nonces from a counter that never repeats under this key. `LessSafeKey`
    /// because nonce uniqueness is ours to keep, and the counter keeps it.
    Aes {
        key: Box<LessSafeKey>,
        next_nonce: AtomicU64,
    },
}

impl Sealer {
    /// A sealer with a fresh random key.
    ///
    /// # Errors
    /// The OS random source failed.
    pub(crate) fn random_key() -> std::io::Result<Sealer> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| std::io::Error::other("no random source for the swap key"))?;
        let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| std::io::Error::other("AES-256-GCM key"))?;
        key.fill(0);
        Ok(Sealer::Aes {
            key: Box::new(LessSafeKey::new(unbound)),
            next_nonce: AtomicU64::new(1),
        })
    }

    /// A sealer that neither encrypts nor authenticates.
    pub(crate) fn plain() -> Sealer {
        Sealer::Plain {
            next_nonce: AtomicU64::new(1),
        }
    }

    pub(crate) fn encrypts(&self) -> bool {
        matches!(self, Sealer::Aes { .. })
    }

    /// Seal `page` in place for `slot`; returns (nonce, tag).
    pub(crate) fn seal(&self, page: &mut [u8], slot: u64, id: PageId) -> (u64, [u8; 16]) {
        match self {
            Sealer::Plain { next_nonce } => (next_nonce.fetch_add(1, Ordering::Relaxed), [0; 16]),
            Sealer::Aes { key, next_nonce } => {
                let n = next_nonce.fetch_add(1, Ordering::Relaxed);
                let tag = key
                    .seal_in_place_separate_tag(nonce(n), Aad::from(aad(slot, id)), page)
                    .expect("AES-GCM sealing of one page cannot fail");
                let mut t = [0u8; 16];
                t.copy_from_slice(tag.as_ref());
                (n, t)
            }
        }
    }

    /// Seal compressed record `data` in place, to be stored at `at` (its slot, offset and
    /// length are bound into the seal, so a record read from any other place fails); returns
    /// (nonce, tag). The nonce comes from the same counter as whole pages'.
    pub(crate) fn seal_record(&self, data: &mut [u8], at: RecordEntry, id: PageId) -> (u64, [u8; 16]) {
        match self {
            Sealer::Plain { next_nonce } => (next_nonce.fetch_add(1, Ordering::Relaxed), [0; 16]),
            Sealer::Aes { key, next_nonce } => {
                let n = next_nonce.fetch_add(1, Ordering::Relaxed);
                let tag = key
                    .seal_in_place_separate_tag(nonce(n), Aad::from(record_aad(at, id)), data)
                    .expect("AES-GCM sealing of one record cannot fail");
                let mut t = [0u8; 16];
                t.copy_from_slice(tag.as_ref());
                (n, t)
            }
        }
    }

    /// Verify and decrypt record `data` (sealed by `seal_record` for `entry`) in place.
    pub(crate) fn open_record(&self, data: &mut [u8], entry: RecordEntry, id: PageId) -> Result<(), ()> {
        match self {
            Sealer::Plain { .. } => Ok(()),
            Sealer::Aes { key, .. } => key
                .open_in_place_separate_tag(
                    nonce(entry.nonce),
                    Aad::from(record_aad(entry, id)),
                    Tag::from(entry.tag),
                    data,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| ()),
        }
    }

    /// Verify and decrypt `page` in place.
    pub(crate) fn open(&self, page: &mut [u8], entry: SwapEntry, id: PageId) -> Result<(), ()> {
        match self {
            Sealer::Plain { .. } => Ok(()),
            Sealer::Aes { key, .. } => key
                .open_in_place_separate_tag(
                    nonce(entry.nonce),
                    Aad::from(aad(entry.slot, id)),
                    Tag::from(entry.tag),
                    page,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| ()),
        }
    }
}

fn nonce(n: u64) -> Nonce {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(b)
}

fn aad(slot: u64, id: PageId) -> [u8; 24] {
    let mut a = [0u8; 24];
    a[..8].copy_from_slice(&slot.to_le_bytes());
    a[8..16].copy_from_slice(&id.ino.to_le_bytes());
    a[16..].copy_from_slice(&id.idx.to_le_bytes());
    a
}

/// A record's associated data: its place (slot, offset, length) and page, 32 bytes (a whole
/// page's is 24, so the two kinds can never be taken for each other).
fn record_aad(at: RecordEntry, id: PageId) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..8].copy_from_slice(&at.slot().to_le_bytes());
    a[8..12].copy_from_slice(&u32::from(at.offset()).to_le_bytes());
    a[12..16].copy_from_slice(&u32::from(at.len()).to_le_bytes());
    a[16..24].copy_from_slice(&id.ino.to_le_bytes());
    a[24..].copy_from_slice(&id.idx.to_le_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_tamper_detection() {
        let s = Sealer::random_key().unwrap();
        let id = PageId { ino: 7, idx: 3 };
        let mut page = [0xabu8; 4096];
        let (nonce, tag) = s.seal(&mut page, 5, id);
        assert_ne!(page, [0xab; 4096], "ciphertext equals plaintext");
        let entry = SwapEntry { slot: 5, nonce, tag };
        let mut copy = page;
        s.open(&mut copy, entry, id).unwrap();
        assert_eq!(copy, [0xab; 4096]);
        // Wrong slot, wrong page, flipped bit: all rejected.
        let mut c = page;
        assert!(s.open(&mut c, SwapEntry { slot: 6, ..entry }, id).is_err());
        let mut c = page;
        assert!(s.open(&mut c, entry, PageId { ino: 7, idx: 4 }).is_err());
        let mut c = page;
        c[100] ^= 1;
        assert!(s.open(&mut c, entry, id).is_err());
    }
}
