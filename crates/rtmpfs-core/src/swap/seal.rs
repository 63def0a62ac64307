//! Sealing of swapped pages: AES-256-GCM (hardware AES where the CPU has it) with a key made
//! at start from the OS's random source and held only in this process's memory.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};

use super::{PageId, SwapEntry};
use crate::sync::{AtomicU64, Ordering};

/// Encrypts and authenticates pages, or passes them through (`encrypt=false`).
///
/// Either way every sealed page gets a fresh nonce from a counter: the page map compares
/// `Swapped` entries by (slot, nonce, tag) to detect that a page it saw swapped out was swapped
/// in, changed and swapped out again *to the same slot* meanwhile (the ABA case that shuttle
/// found as `regression_swap_slot_aba`); a unique nonce makes every entry distinct.
pub(crate) enum Sealer {
    /// No encryption, no authentication.
    Plain { next_nonce: AtomicU64 },
    /// AES-256-GCM; nonces from a counter that never repeats under this key.
    Aes {
        cipher: Box<Aes256Gcm>,
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
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(format!("random key: {e}")))?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        key.fill(0);
        Ok(Sealer::Aes {
            cipher: Box::new(cipher),
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
            Sealer::Aes { cipher, next_nonce } => {
                let n = next_nonce.fetch_add(1, Ordering::Relaxed);
                let tag = cipher
                    .encrypt_in_place_detached(&nonce_bytes(n), &aad(slot, id), page)
                    .expect("AES-GCM encryption of one page cannot fail");
                (n, tag.into())
            }
        }
    }

    /// Verify and decrypt `page` in place.
    pub(crate) fn open(&self, page: &mut [u8], entry: SwapEntry, id: PageId) -> Result<(), ()> {
        match self {
            Sealer::Plain { .. } => Ok(()),
            Sealer::Aes { cipher, .. } => cipher
                .decrypt_in_place_detached(
                    &nonce_bytes(entry.nonce),
                    &aad(entry.slot, id),
                    page,
                    Tag::from_slice(&entry.tag),
                )
                .map_err(|_| ()),
        }
    }
}

fn nonce_bytes(n: u64) -> Nonce<aes_gcm::aes::cipher::consts::U12> {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&n.to_le_bytes());
    *Nonce::from_slice(&b)
}

fn aad(slot: u64, id: PageId) -> [u8; 24] {
    let mut a = [0u8; 24];
    a[..8].copy_from_slice(&slot.to_le_bytes());
    a[8..16].copy_from_slice(&id.ino.to_le_bytes());
    a[16..].copy_from_slice(&id.idx.to_le_bytes());
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
