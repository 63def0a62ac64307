//! Mounting as an ordinary user, through the setuid `fusermount3`, as every libfuse filesystem
//! does (the descriptor passing itself is the fuser fork's `fuser::fusermount`). Root keeps
//! its own mount path (`daemon::mount`, mount(2) directly); this one is taken whenever the
//! effective uid is not 0.
//!
//! The rules are fusermount3's, and we apply them before asking so that the mount is what the
//! user was told it would be:
//! - `nosuid,nodev` always (fusermount3 forces them; `suid`/`dev` are not passed on);
//! - `allow_other` only where `/etc/fuse.conf` has `user_allow_other`; otherwise we mount
//!   without it and say once that only the mounting user sees the files (anyone else, root
//!   included, gets `EACCES` from the kernel);
//! - the root directory belongs to the user, mode `0700` unless `mode=` is given;
//! - fusermount3 refuses when `/dev/fuse` is closed to the user, when `mount_max` (fuse.conf)
//!   FUSE mounts exist already, and when the user may not write the mount point; we turn its
//!   message into one line that says which.
//!
//! Unmounting (on SIGINT/SIGTERM) goes through `fusermount3 -u`, since umount2 needs
//! CAP_SYS_ADMIN.

use crate::daemon::{MountError, Mounted, Unmounted};
use crate::options::MountOptions;
use fuser::fusermount::{self, FusermountError};
use std::io;
use std::path::{Path, PathBuf};

/// The file fusermount3 reads its rules from.
pub const FUSE_CONF: &str = "/etc/fuse.conf";

/// Whether this process mounts as an ordinary user (effective uid not 0).
#[must_use]
pub fn active() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() != 0 }
}

/// Whether the text of a fuse.conf lets users ask for `allow_other`: a line that is exactly
/// `user_allow_other` (fusermount3 ignores surrounding blanks and `#` comments).
#[must_use]
pub fn conf_allows_other(conf: &str) -> bool {
    conf.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .any(|l| l == "user_allow_other")
}

/// Apply the rules of an ordinary user's mount to `opts` (see the module docs): `nosuid`,
/// `nodev`, and a root directory mode of `0700` unless `mode=` was given.
pub fn apply_user_rules(opts: &mut MountOptions) {
    opts.nosuid = true;
    opts.nodev = true;
    if !opts.mode_given {
        opts.mode = 0o700;
    }
}

/// The `-o` list for fusermount3: the mount flags it lets users set, our type and source, and
/// the kernel options (`default_permissions`: the kernel checks permissions, as for root's
/// mount). fusermount3 refuses `strictatime`, `nodiratime` and `lazytime` (its list of flags is
/// `ro/rw, nosuid, nodev, noexec, sync, noatime, dirsync`), so they are not passed: the engine
/// keeps access times itself (`set_atime_rule`), so `strictatime` and `nodiratime` still hold;
/// only `/proc/mounts` does not show them (docs/semantics.md).
#[must_use]
pub fn fusermount_options(opts: &MountOptions, allow_other: bool) -> String {
    use crate::options::Atime;
    let mut o = vec![
        format!("fsname={}", opts.source()),
        "subtype=rtmpfs".to_string(),
        "default_permissions".to_string(),
        if opts.read_only { "ro" } else { "rw" }.to_string(),
        "nosuid".to_string(),
        "nodev".to_string(),
    ];
    let flags = [
        (opts.noexec, "noexec"),
        (opts.atime == Atime::Noatime, "noatime"),
        (opts.sync, "sync"),
        (opts.dirsync, "dirsync"),
        (allow_other, "allow_other"),
    ];
    o.extend(flags.iter().filter(|(on, _)| *on).map(|(_, s)| (*s).to_string()));
    o.join(",")
}

/// The one line for a refusal, from fusermount3's own message (which stays in brackets).
#[must_use]
pub fn refusal(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    let why = if first.contains("/dev/fuse") {
        "/dev/fuse is not open to this user (its mode, or fuse group membership, decides)"
    } else if first.contains("too many FUSE filesystems") {
        "the limit of FUSE mounts for ordinary users (mount_max in /etc/fuse.conf) is reached"
    } else if first.contains("no write access to mountpoint") || first.contains("not owned by user") {
        "the mount point must be a directory this user owns or may write"
    } else if first.contains("user_allow_other") {
        "allow_other needs user_allow_other in /etc/fuse.conf"
    } else {
        "fusermount3 refused"
    };
    format!("cannot mount as an ordinary user: {why} ({first})")
}

/// Where fusermount3 is looked for when `PATH` is unset: execvp's default (glibc's
/// `_CS_PATH`). mount(8) removes `PATH` before it runs the helper for an fstab `user` line.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

fn fusermount_bin() -> Result<PathBuf, MountError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    fusermount::find(Some(&path)).ok_or_else(|| {
        MountError::Permission(
            "cannot mount as an ordinary user: fusermount3 is not on PATH \
             (install fuse3, or mount as root)"
                .into(),
        )
    })
}

/// Mount `path` (canonical, checked) through fusermount3 with `opts` (to which
/// [`apply_user_rules`] was applied), with `allow_other` when fuse.conf allows it.
///
/// # Errors
/// No fusermount3 on PATH, fusermount3's refusals ([`refusal`]), the new mount not found.
pub fn mount(path: &Path, opts: &MountOptions) -> Result<Mounted, MountError> {
    let bin = fusermount_bin()?;
    let allow_other = std::fs::read_to_string(FUSE_CONF).is_ok_and(|c| conf_allows_other(&c));
    let list = fusermount_options(opts, allow_other);
    let m = fusermount::mount(&bin, path, &list).map_err(|e| match e {
        FusermountError::Refused(msg) => MountError::Permission(refusal(&msg)),
        FusermountError::Spawn(e) => MountError::Io("starting fusermount3", e),
        FusermountError::Protocol(m) => MountError::Io("mounting through fusermount3", io::Error::other(m)),
    })?;
    if !m.warnings.is_empty() {
        tracing::warn!("fusermount3: {}", m.warnings.lines().next().unwrap_or(""));
    }
    if !allow_other {
        tracing::warn!(
            "only this user sees the files of {} (other users, root included, get EACCES): \
             /etc/fuse.conf has no user_allow_other",
            path.display()
        );
    }
    let entry = crate::mountinfo::mounted_at(path)
        .ok()
        .flatten()
        .filter(|e| e.is_fuse() && e.source == opts.source());
    let Some(entry) = entry else {
        // The descriptor is ours: dropping it aborts the connection; take the mount away.
        drop(m.fd);
        let _ = fusermount::unmount(&bin, path, true);
        return Err(MountError::Io(
            "finding the new mount in /proc/self/mountinfo",
            io::Error::from(io::ErrorKind::NotFound),
        ));
    };
    Ok(Mounted {
        fuse_fd: m.fd,
        path: path.to_path_buf(),
        dev: (entry.major, entry.minor),
        entry,
    })
}

/// Unmount `path` (checked by the caller to be still ours) with `fusermount3 -u`, lazily when
/// it is busy, as `daemon::unmount` does with umount2.
///
/// # Errors
/// fusermount3 missing or refusing for another reason than busy.
pub fn unmount(path: &Path) -> io::Result<Unmounted> {
    let bin = fusermount_bin().map_err(|e| io::Error::other(e.to_string()))?;
    match fusermount::unmount(&bin, path, false) {
        Ok(()) => return Ok(Unmounted::Done),
        Err(FusermountError::Refused(m)) if m.contains("busy") => {}
        Err(e) => return Err(io::Error::other(e.to_string())),
    }
    fusermount::unmount(&bin, path, true)
        .map(|()| Unmounted::Lazy)
        .map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_allow_other_must_stand_on_its_own_line() {
        assert!(conf_allows_other("# comment\nuser_allow_other\n"));
        assert!(conf_allows_other("  user_allow_other  # yes\n"));
        assert!(!conf_allows_other("#user_allow_other\n"));
        assert!(!conf_allows_other("mount_max = 10\n"));
        assert!(!conf_allows_other("user_allow_other_please\n"));
    }

    #[test]
    fn user_rules_force_nosuid_nodev_and_a_private_root() {
        let mut o = MountOptions::parse(&["suid,dev,size=1M"]).unwrap();
        apply_user_rules(&mut o);
        assert!(o.nosuid && o.nodev);
        assert_eq!(o.mode, 0o700);
        let mut o = MountOptions::parse(&["mode=755"]).unwrap();
        apply_user_rules(&mut o);
        assert_eq!(o.mode, 0o755);
    }

    #[test]
    fn fusermount_gets_flags_type_and_source() {
        let mut o = MountOptions::parse(&["ro,noexec,noatime,fsname=tag"]).unwrap();
        apply_user_rules(&mut o);
        assert_eq!(
            fusermount_options(&o, false),
            "fsname=tag,subtype=rtmpfs,default_permissions,ro,nosuid,nodev,noexec,noatime"
        );
        let o = MountOptions::parse(&["sync"]).unwrap();
        assert_eq!(
            fusermount_options(&o, true),
            "fsname=rtmpfs,subtype=rtmpfs,default_permissions,rw,nosuid,nodev,sync,allow_other"
        );
    }

    #[test]
    fn each_refusal_says_which_rule() {
        let dev = refusal("fusermount3: failed to open /dev/fuse: Permission denied\n");
        assert!(dev.contains("/dev/fuse is not open to this user"), "{dev}");
        assert!(dev.ends_with("(fusermount3: failed to open /dev/fuse: Permission denied)"));
        let max = refusal("fusermount3: too many FUSE filesystems mounted; mount_max=N can be set in /etc/fuse.conf");
        assert!(max.contains("mount_max in /etc/fuse.conf"), "{max}");
        let mp = refusal("fusermount3: user has no write access to mountpoint /mnt");
        assert!(mp.contains("mount point must be a directory this user owns"), "{mp}");
        assert!(!mp.contains('\n'));
    }
}
