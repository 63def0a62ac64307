//! The FUSE-over-io_uring wire layout (Linux 6.14+, protocol 7.42; unchanged up to 7.45).
//!
//! Taken from `include/uapi/linux/fuse.h` (`struct fuse_uring_req_header`,
//! `struct fuse_uring_ent_in_out`, `struct fuse_uring_cmd_req`, `enum fuse_uring_cmd`). Only
//! offsets and sizes live here; the buffers themselves are in `queue.rs`.

use std::mem::size_of;

use io_uring::opcode;
use io_uring::squeue::Entry128;
use io_uring::types;

use crate::ll::fuse_abi as abi;

/// `FUSE_IO_URING_CMD_REGISTER`: park an entry (header + payload buffers) on a queue.
pub(crate) const CMD_REGISTER: u32 = 1;
/// `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`: deliver a reply and park the entry again.
pub(crate) const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `sizeof(struct fuse_uring_req_header)`: the kernel refuses a smaller header buffer.
pub(crate) const HEADER_SIZE: usize = 288;
/// `in_out[128]`: `fuse_in_header` from the kernel, `fuse_out_header` back.
pub(crate) const IN_OUT_OFFSET: usize = 0;
/// `op_in[128]`: the request's first argument (its per-opcode struct).
pub(crate) const OP_IN_OFFSET: usize = 128;
/// The most bytes `op_in` holds.
pub(crate) const OP_IN_SIZE: usize = 128;
/// `ring_ent_in_out.commit_id` (u64): the request's `unique`, echoed in COMMIT_AND_FETCH.
pub(crate) const COMMIT_ID_OFFSET: usize = 256 + 8;
/// `ring_ent_in_out.payload_sz` (u32): bytes in the payload buffer, both directions.
pub(crate) const PAYLOAD_SZ_OFFSET: usize = 256 + 16;

/// `sizeof(struct fuse_in_header)`.
pub(crate) const IN_HEADER_SIZE: usize = size_of::<abi::fuse_in_header>();
/// `sizeof(struct fuse_out_header)`.
pub(crate) const OUT_HEADER_SIZE: usize = size_of::<abi::fuse_out_header>();

/// The byte offset of `len` in a 64-byte `io_uring_sqe`. REGISTER needs `len = 2` (two iovecs)
/// and io-uring 0.7's `UringCmd80` has no setter for it.
const SQE_LEN_OFFSET: usize = 24;

/// `struct fuse_uring_cmd_req` {flags u64, commit_id u64, qid u16, `padding[6]`}, which the
/// kernel reads at byte 48 of the SQE: the first bytes of `UringCmd80`'s 80-byte command.
fn cmd_req(commit_id: u64, qid: u16) -> [u8; 80] {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
    cmd
}

/// REGISTER for one entry: `iov` points at `[header iovec, payload iovec]`, which must stay
/// valid until the SQE has been submitted (the kernel copies them then).
pub(crate) fn register_sqe(
    fuse_fd: i32,
    qid: u16,
    iov: *const libc::iovec,
    user_data: u64,
) -> Entry128 {
    let mut sqe = opcode::UringCmd80::new(types::Fd(fuse_fd), CMD_REGISTER)
        .cmd(cmd_req(0, qid))
        .addr(Some(iov as u64))
        .build()
        .user_data(user_data);
    set_sqe_len(&mut sqe, 2);
    sqe
}

/// COMMIT_AND_FETCH for the request `commit_id` held by an entry.
pub(crate) fn commit_sqe(fuse_fd: i32, qid: u16, commit_id: u64, user_data: u64) -> Entry128 {
    opcode::UringCmd80::new(types::Fd(fuse_fd), CMD_COMMIT_AND_FETCH)
        .cmd(cmd_req(commit_id, qid))
        .build()
        .user_data(user_data)
}

fn set_sqe_len(sqe: &mut Entry128, len: u32) {
    let p = std::ptr::from_mut(sqe).cast::<u8>();
    // SAFETY: `Entry128` is `#[repr(C)]` and starts with the 64-byte `io_uring_sqe`, whose `len`
    // field is the native-endian u32 at byte 24; the write stays inside `sqe`, and any bit
    // pattern is a valid u32.
    unsafe { p.add(SQE_LEN_OFFSET).cast::<u32>().write_unaligned(len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(sqe: &Entry128) -> &[u8] {
        // SAFETY: `Entry128` is 128 bytes of plain `#[repr(C)]` data.
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(sqe).cast::<u8>(), 128) }
    }

    #[test]
    fn header_layout_matches_the_kernel() {
        assert_eq!(IN_HEADER_SIZE, 40);
        assert_eq!(OUT_HEADER_SIZE, 16);
        assert_eq!(OP_IN_OFFSET + OP_IN_SIZE, 256);
        // ring_ent_in_out: flags, commit_id, payload_sz, padding, reserved = 32 bytes.
        assert_eq!(256 + 32, HEADER_SIZE);
    }

    #[test]
    fn register_sqe_has_the_fields_the_kernel_checks() {
        let iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2];
        let sqe = register_sqe(5, 1, iov.as_ptr(), 7);
        let b = bytes(&sqe);
        assert_eq!(b[0], 46, "IORING_OP_URING_CMD");
        assert_eq!(b[1] & 1, 0, "not IOSQE_FIXED_FILE (see Queue::fuse_fd)");
        assert_eq!(
            i32::from_ne_bytes(b[4..8].try_into().unwrap()),
            5,
            "the /dev/fuse descriptor"
        );
        assert_eq!(
            u32::from_ne_bytes(b[8..12].try_into().unwrap()),
            CMD_REGISTER
        );
        assert_eq!(
            u64::from_ne_bytes(b[16..24].try_into().unwrap()),
            iov.as_ptr() as u64
        );
        assert_eq!(
            u32::from_ne_bytes(b[24..28].try_into().unwrap()),
            2,
            "two iovecs"
        );
        assert_eq!(
            u64::from_ne_bytes(b[32..40].try_into().unwrap()),
            7,
            "user_data"
        );
        assert_eq!(u16::from_ne_bytes(b[64..66].try_into().unwrap()), 1, "qid");
    }

    #[test]
    fn commit_sqe_carries_commit_id_and_qid() {
        let sqe = commit_sqe(5, 1, 0x1234_5678_9abc, 3);
        let b = bytes(&sqe);
        assert_eq!(
            u32::from_ne_bytes(b[8..12].try_into().unwrap()),
            CMD_COMMIT_AND_FETCH
        );
        assert_eq!(
            u64::from_ne_bytes(b[48..56].try_into().unwrap()),
            0,
            "flags"
        );
        assert_eq!(
            u64::from_ne_bytes(b[56..64].try_into().unwrap()),
            0x1234_5678_9abc
        );
        assert_eq!(u16::from_ne_bytes(b[64..66].try_into().unwrap()), 1);
    }
}
