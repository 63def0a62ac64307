//! The adapter's one decision on privilege: which credentials the engine gets for a change of
//! a file's data (write, truncate, O_TRUNC, fallocate, copy_file_range), and whether the
//! engine clears set-id bits at all ([`SetIdClearing`]), so that set-user-ID and set-group-ID
//! bits are cleared exactly when Linux tmpfs would, whoever (kernel or daemon) the protocol
//! makes responsible. See docs/fuse.md, "Who clears set-id bits".
//!
//! Invariant: the bits are cleared once, by one side. Under `FUSE_HANDLE_KILLPRIV_V2`
//! (`Adapter::daemon_kills_privs`) the daemon clears them, following the kernel's
//! `KILL_SUIDGID` flags where the request has one; without it the kernel has cleared them
//! before the request arrives and the engine must leave the mode alone.

use super::{caller, ctx, Adapter};
use fuser::Request;
use rtmpfs_core::{Ctx, Ino, SetAttr, SetIdClearing};

/// What the kernel says, with a data change, about the caller's privilege to keep set-id bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KernelWord {
    /// The request's `KILL_SUIDGID` flag: set exactly when the bits must go.
    KillSuidgid(bool),
    /// The protocol has no flag for this change.
    Silent,
}

impl Adapter {
    /// Whether a SETATTR is the kernel's own clearing of privileges (file_remove_privs before
    /// a change, `chown(f, -1, -1)`), which under KILLPRIV_V2 sets nothing: with the writeback
    /// cache the kernel owns ctime and sends it along, so there "nothing" is "only ctime".
    pub(super) fn is_kernels_priv_clearing(&self, set: &SetAttr) -> bool {
        let without_ctime = SetAttr { ctime: None, ..*set };
        without_ctime == SetAttr::default() && (set.ctime.is_none() || self.opts.writeback)
    }

    /// The caller's credentials for a change of a file's data, and who clears the
    /// set-user-ID/set-group-ID bits a caller without `CAP_FSETID` loses:
    ///
    /// * The request carries the kernel's flag (`FUSE_WRITE_KILL_SUIDGID` on WRITE,
    ///   `FATTR_KILL_SUIDGID` on a truncating SETATTR, `O_TRUNC`'s included): it is the
    ///   kernel's word, set exactly when the caller lacks `CAP_FSETID` under
    ///   `FUSE_HANDLE_KILLPRIV_V2` (WRITE: also on the direct path without it); set, the
    ///   engine clears them for a caller without the capability. Unset, either the caller
    ///   holds the capability or the kernel has cleared the bits itself before
    ///   (file_remove_privs sends a SETATTR): the engine must leave them alone either way
    ///   ([`SetIdClearing::Kernel`]).
    /// * The kernel says nothing (fallocate, copy_file_range, chown): under `KILLPRIV_V2` the
    ///   engine's own rule decides (`CAP_FSETID` exactly when root), with the caller's
    ///   credentials when `i` has a set-id bit ([`Adapter::caller_for_setid`]); without it the
    ///   kernel has cleared them already ([`SetIdClearing::Kernel`]).
    fn ctx_changing_data(&self, req: &Request, word: KernelWord, i: Ino) -> (Ctx, SetIdClearing) {
        match word {
            KernelWord::KillSuidgid(true) => (
                Ctx {
                    cap_fsetid: Some(false),
                    ..ctx(req)
                },
                SetIdClearing::Engine,
            ),
            KernelWord::Silent if self.daemon_kills_privs => (self.caller_for_setid(req, i), SetIdClearing::Engine),
            KernelWord::KillSuidgid(false) | KernelWord::Silent => (ctx(req), SetIdClearing::Kernel),
        }
    }

    /// [`Adapter::ctx_changing_data`] for a change of inode `i`, with the supplementary groups
    /// when they decide its set-group-ID bit (only when the engine clears).
    pub(super) fn ctx_changing_data_of(&self, req: &Request, word: KernelWord, i: Ino) -> (Ctx, SetIdClearing) {
        match self.ctx_changing_data(req, word, i) {
            (c, SetIdClearing::Engine) => (self.with_groups_for_setid(req, c, i), SetIdClearing::Engine),
            kernel @ (_, SetIdClearing::Kernel) => kernel,
        }
    }

    /// `c` with the caller's supplementary groups filled in when they decide a set-group-ID
    /// clearing on `i`: the file has set-group-ID without group-execute and is not of the
    /// caller's primary group, so Linux keeps the bit only for a member of its group
    /// (`setattr_should_drop_sgid`). FUSE sends no supplementary groups; they are read from
    /// /proc for this rare case only (a process gone meanwhile counts as in no group).
    pub(super) fn with_groups_for_setid(&self, req: &Request, mut c: Ctx, i: Ino) -> Ctx {
        // A caller keeping its bits anyway needs no groups (and the common write costs no
        // attribute read).
        if c.has_fsetid() {
            return c;
        }
        let needs = self
            .fs
            .getattr(i)
            .is_ok_and(|a| a.perm & (libc::S_ISGID | 0o010) == libc::S_ISGID && a.gid != c.gid);
        if needs {
            if c.gid == super::FUSE_INVALID_UIDGID {
                // FUSE_ALLOW_IDMAP: the request came without the caller's ids.
                let who = caller(&self.stats, req);
                (c.uid, c.gid, c.groups) = (who.uid, who.gid, who.groups);
            } else {
                c.groups = supplementary_groups(req.pid());
            }
        }
        c
    }
}

impl Adapter {
    /// The caller's credentials for a SETATTR that changes no data (chmod, chown, utimens)
    /// ([`Adapter::caller_if`]). The kernel has checked permission and stripped set-group-ID
    /// from a chmod's mode; what is left to the daemon under `FUSE_HANDLE_KILLPRIV_V2` is a
    /// chown's set-id clearing, and only its set-group-ID bit without group-execute depends on
    /// the caller (its groups and `CAP_FSETID`, `setattr_should_drop_sgid`): only that case
    /// reads /proc.
    pub(super) fn ctx_changing_attrs(&self, req: &Request, set: &SetAttr, i: Ino) -> Ctx {
        let chown = set.uid.is_some() || set.gid.is_some();
        self.caller_if(req, || {
            chown
                && self
                    .fs
                    .getattr(i)
                    .is_ok_and(|a| a.perm & (libc::S_ISGID | 0o010) == libc::S_ISGID)
        })
    }

    /// The caller's credentials for setting or removing a POSIX ACL on `i`, which drops the
    /// file's set-group-ID bit when the caller is neither in its group nor holds `CAP_FSETID`
    /// (`posix_acl_update_mode`). Without `FUSE_SETXATTR_EXT` the kernel does not say so (its
    /// `FUSE_SETXATTR_ACL_KILL_SGID`), so the supplementary groups are read from /proc when
    /// they decide it: the file has set-group-ID and is not of the caller's primary group.
    pub(super) fn ctx_setting_acl(&self, req: &Request, i: Ino) -> Ctx {
        let mut c = self.caller_for_setid(req, i);
        if c.has_fsetid() {
            return c;
        }
        let needs = self
            .fs
            .getattr(i)
            .is_ok_and(|a| a.perm & libc::S_ISGID != 0 && a.gid != c.gid);
        if needs {
            c.groups = supplementary_groups(req.pid());
        }
        c
    }
}

/// The supplementary groups of thread `tid` (the `Groups:` line of /proc/TID/status; FUSE's
/// request pid is the calling thread's id, and credentials are per thread); empty if unknown.
fn supplementary_groups(tid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}
