use std::mem::align_of;

use crate::ll::fuse_abi as abi;
use crate::session::MAX_WRITE_SIZE;

/// Size of the buffer for reading a request before INIT has settled `max_write`: the kernel may
/// send up to `MAX_WRITE_SIZE` bytes in a write request, plus some extra space for headers.
const BUFFER_SIZE: usize = MAX_WRITE_SIZE + 4096;

/// The kernel refuses a read into a buffer smaller than this (`FUSE_MIN_READ_BUFFER`).
const MIN_READ_BUFFER: usize = 8192;

/// A buffer that provides an aligned sub-slice for FUSE operations.
///
/// This struct wraps a `Vec<u8>` and provides access to an aligned portion
/// of the buffer, ensuring proper alignment for `fuse_in_header`.
#[derive(Debug)]
pub(crate) struct FuseReadBuf {
    buffer: Vec<u8>,
}

impl FuseReadBuf {
    /// Creates a new `FuseReadBuf` with the default buffer size.
    ///
    /// The actual buffer may be slightly larger to accommodate alignment requirements.
    pub(crate) fn new() -> Self {
        Self {
            buffer: vec![0; BUFFER_SIZE],
        }
    }

    /// A buffer for the requests of a session whose INIT reply settled `max_write` (rtmpfs
    /// fork): the kernel sends nothing larger than a WRITE of `max_write` bytes with its headers
    /// (it refuses a read into less, so a wrong size fails loudly, not silently). Upstream gives
    /// every reader 16 MiB whatever `max_write` is: untouched, but heap the daemon's RAM budget
    /// counts.
    pub(crate) fn for_max_write(max_write: u32) -> Self {
        let size = (max_write as usize + 4096).clamp(MIN_READ_BUFFER, BUFFER_SIZE);
        Self {
            buffer: vec![0; size],
        }
    }

    /// Returns a mutable reference to the aligned portion of the buffer.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        let alignment = align_of::<abi::fuse_in_header>();
        let off = alignment - (self.buffer.as_ptr() as usize) % alignment;
        if off == alignment {
            &mut self.buffer
        } else {
            &mut self.buffer[off..]
        }
    }
}
