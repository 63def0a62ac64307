//! Images: the whole tree written to a byte stream at one instant ([`Filesystem::snapshot`])
//! and a filesystem built back from one ([`Filesystem::from_image`]).
//!
//! The format is documented in `docs/image-format.md`: a header, then chunks (each checksummed,
//! or sealed with AES-256-GCM when a key is given), each carrying one independent zstd frame of
//! whole records (each checksummed). Layers, outermost first: `chunk` (framing, integrity,
//! encryption), `frames` (records cut into frames, compressed and decoded on several threads),
//! `record` (the records themselves); `save` walks the tree, `load` builds one. Version 1
//! images (one zstd stream across the chunks) are still read.
//!
//! [`Filesystem::snapshot`]: crate::Filesystem::snapshot
//! [`Filesystem::from_image`]: crate::Filesystem::from_image

mod chunk;
mod cow;
mod frames;
mod load;
mod record;
mod save;

pub(crate) use cow::SnapStore;

use std::time::Duration;

use crate::error::{ConfigError, FsError};

/// The image format version this build writes; it reads this one and every one before it.
pub const IMAGE_VERSION: u32 = 2;

/// Why an image was refused or could not be written. Restoring never returns a partly built
/// filesystem: any error drops everything built so far.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Reading or writing the stream failed.
    #[error("image I/O: {0}")]
    Io(#[source] std::io::Error),
    /// The stream does not start with the image magic: not an rtmpfs image.
    #[error("not an rtmpfs image (bad magic)")]
    NotAnImage,
    /// The image is of a format version this build does not read.
    #[error("image format version {found} is not supported (this build reads versions 1 to {supported})")]
    UnsupportedVersion {
        /// The version the image says it is.
        found: u32,
        /// The newest version this build reads (it reads every one from 1).
        supported: u32,
    },
    /// The image ends before its end record: it was cut short.
    #[error("image is truncated: {0}")]
    Truncated(&'static str),
    /// A checksum does not match, or a record does not make sense: the image is damaged.
    #[error("image is corrupt: {0}")]
    Corrupt(String),
    /// The image is encrypted and the key given does not open it.
    #[error("wrong key for this encrypted image")]
    WrongKey,
    /// The image is encrypted and no key was given.
    #[error("image is encrypted: a key is needed (image_key=)")]
    KeyRequired,
    /// A key was given but the image is not encrypted (refused rather than silently ignored).
    #[error("a key was given but the image is not encrypted")]
    NotEncrypted,
    /// The image key file is unusable.
    #[error("image key: {0}")]
    BadKey(String),
    /// The tree does not fit the limits it is restored under (an overridden `size` or
    /// `nr_inodes`), or a page could not be read for a snapshot (`Io`: a lost page).
    #[error("{0}")]
    Fs(#[source] FsError),
    /// The configuration to restore under is invalid.
    #[error("{0}")]
    Config(#[source] ConfigError),
}

impl From<FsError> for ImageError {
    fn from(e: FsError) -> Self {
        ImageError::Fs(e)
    }
}

impl From<ConfigError> for ImageError {
    fn from(e: ConfigError) -> Self {
        ImageError::Config(e)
    }
}

impl ImageError {
    /// The error carried through an `io::Error` by the chunk layer (zstd reads through it),
    /// or `Io` for a real I/O error.
    pub(crate) fn from_io(e: std::io::Error) -> ImageError {
        if e.get_ref()
            .is_some_and(<dyn std::error::Error + Send + Sync>::is::<ImageError>)
        {
            if let Some(Ok(inner)) = e
                .into_inner()
                .map(<dyn std::error::Error + Send + Sync>::downcast::<ImageError>)
            {
                return *inner;
            }
            unreachable!("checked above");
        }
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return ImageError::Truncated("the stream ended inside a record");
        }
        ImageError::Io(e)
    }

    /// This error carried through an `io::Error`.
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// The key that encrypts an image (`image_key=FILE`): the contents of a key file, at least 32
/// bytes, best random (`head -c 32 /dev/urandom`). Each image derives its own AES-256-GCM key
/// from it and a random salt (HKDF-SHA256).
#[derive(Clone)]
pub struct ImageKey(Box<[u8]>);

impl std::fmt::Debug for ImageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageKey(..)")
    }
}

impl ImageKey {
    /// Fewest bytes a key may have.
    pub const MIN_LEN: usize = 32;

    /// A key from its bytes.
    ///
    /// # Errors
    /// `BadKey` if shorter than [`ImageKey::MIN_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Result<ImageKey, ImageError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(ImageError::BadKey(format!(
                "{} bytes; at least {} are needed (head -c 32 /dev/urandom > FILE)",
                bytes.len(),
                Self::MIN_LEN
            )));
        }
        Ok(ImageKey(bytes.into()))
    }

    /// The key in file `path`.
    ///
    /// # Errors
    /// `BadKey` if it cannot be read or is too short.
    pub fn from_file(path: &std::path::Path) -> Result<ImageKey, ImageError> {
        let bytes = std::fs::read(path).map_err(|e| ImageError::BadKey(format!("{}: {e}", path.display())))?;
        Self::from_bytes(&bytes)
    }
}

/// What [`crate::Filesystem::snapshot`] wrote, and how long it held changes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Inodes in the image (the root included).
    pub inodes: u64,
    /// Directory entries (names) in the image.
    pub entries: u64,
    /// Pages of file data in the image (holes and reserved pages excluded).
    pub data_pages: u64,
    /// How long changes to the tree were held off: from the moment the snapshot had the gate
    /// to when it let go (waiting for changes in flight to finish is not counted). Under the
    /// gate the snapshot only starts its epoch; inodes are captured after it (copy-on-write),
    /// and page data is read, compressed and written after.
    pub pause: Duration,
    /// Pages changed after their file was captured and before the snapshot read them: written
    /// from the copy their first change made (copy-on-write).
    pub pre_images: u64,
}

/// Where a restored filesystem's `size` and `nr_inodes` limits come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitSource {
    /// The limits the image recorded (its mount's limits when it was taken).
    #[default]
    Image,
    /// The [`crate::Config`]'s (`None` in the config: unlimited).
    Config,
}

/// How [`crate::Filesystem::from_image`] reads an image.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The key of an encrypted image.
    pub key: Option<ImageKey>,
    /// Where `size` comes from.
    pub size: LimitSource,
    /// Where `nr_inodes` comes from.
    pub inodes: LimitSource,
}

/// What is written with a snapshot.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// Encrypt the image under this key.
    pub key: Option<ImageKey>,
}
