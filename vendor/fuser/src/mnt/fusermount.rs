//! Mounting and unmounting through `fusermount3`, as libfuse does for an ordinary user
//! (libfuse `lib/mount.c`, `fuse_mount_fusermount` and `fuse_kern_unmount`), for callers that
//! keep their own mount path for root and only need the setuid helper's part.
//!
//! The protocol: the caller makes a socketpair and starts `fusermount3 -o OPTIONS -- DIR` with
//! one end's descriptor number in `_FUSE_COMMFD` (and that end inherited); fusermount3 opens
//! `/dev/fuse` with the caller's rights, checks the mount point and `/etc/fuse.conf`, mounts
//! with `nosuid,nodev` forced, sends the `/dev/fuse` descriptor back as `SCM_RIGHTS` with a
//! one-byte message, and exits. When it refuses, it says why on stderr, exits non-zero and
//! sends nothing (the caller sees end of file).
//!
//! Unlike `fuse_pure.rs` (fuser's own mount path), this never tries mount(2) first, never
//! unmounts on drop, and returns fusermount3's own words on failure, so the caller can
//! tell its user which rule refused the mount.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::io::IoSliceMut;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;

use nix::sys::socket::ControlMessageOwned;
use nix::sys::socket::MsgFlags;
use nix::sys::socket::recvmsg;

/// The helper's name, looked up on `PATH`.
pub const FUSERMOUNT3: &str = "fusermount3";
/// The environment variable that carries the socket's descriptor number to fusermount3.
pub const COMM_ENV: &str = "_FUSE_COMMFD";

/// Why fusermount3 did not do what was asked.
#[derive(Debug)]
pub enum FusermountError {
    /// It could not be started.
    Spawn(io::Error),
    /// It ran and refused: its stderr, trimmed (it names the rule that refused).
    Refused(String),
    /// It said nothing we could use: no descriptor, or a malformed message.
    Protocol(String),
}

impl fmt::Display for FusermountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FusermountError::Spawn(e) => write!(f, "starting {FUSERMOUNT3}: {e}"),
            FusermountError::Refused(m) => write!(f, "{m}"),
            FusermountError::Protocol(m) => write!(f, "{FUSERMOUNT3}: {m}"),
        }
    }
}

impl std::error::Error for FusermountError {}

/// A mount made by fusermount3.
#[derive(Debug)]
pub struct FusermountMount {
    /// The `/dev/fuse` descriptor of the new connection (close-on-exec).
    pub fd: OwnedFd,
    /// What fusermount3 printed on stderr although it mounted (options it ignored), trimmed;
    /// empty when nothing.
    pub warnings: String,
}

/// The first `fusermount3` in the directories of `path_var` (a `PATH` value) that is a
/// regular file with an execute bit; `None` when there is none.
#[must_use]
pub fn find(path_var: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(FUSERMOUNT3))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Mount `mountpoint` with fusermount3 at `bin`, passing `options` (comma-separated, as for
/// `fusermount3 -o`), and return the `/dev/fuse` descriptor it hands back.
///
/// # Errors
/// [`FusermountError::Refused`] with fusermount3's message when it exits without sending a
/// descriptor; [`FusermountError::Spawn`] when it cannot run.
pub fn mount(
    bin: &Path,
    mountpoint: &Path,
    options: &str,
) -> Result<FusermountMount, FusermountError> {
    // Both ends are close-on-exec (std makes them so); the child's end is made inheritable
    // in the child only, just before exec, so no other child of ours can inherit it.
    let (ours, theirs) = UnixStream::pair().map_err(FusermountError::Spawn)?;
    let theirs_fd = theirs.as_raw_fd();
    let mut cmd = Command::new(bin);
    if !options.is_empty() {
        cmd.arg("-o").arg(options);
    }
    cmd.arg("--")
        .arg(mountpoint)
        .env(COMM_ENV, theirs_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and calls only fcntl, which is
    // async-signal-safe, on a descriptor that is open in the child (inherited from us).
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(theirs_fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(theirs_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(FusermountError::Spawn)?;
    // Ours must go, or the receive below would never see end of file when fusermount3 fails.
    drop(theirs);
    let received = receive_fd(&ours);
    drop(ours);
    // fusermount3 writes little on stderr and exits right after sending (no auto_unmount), so
    // reading its stderr to the end cannot block for long.
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(FusermountError::Spawn)?;
    let stderr = stderr.trim().to_string();
    match received {
        Ok(Some(fd)) => Ok(FusermountMount {
            fd,
            warnings: stderr,
        }),
        Ok(None) if !stderr.is_empty() => Err(FusermountError::Refused(stderr)),
        Ok(None) => Err(FusermountError::Protocol(format!(
            "exited ({status}) without sending a /dev/fuse descriptor"
        ))),
        Err(e) if !stderr.is_empty() => Err(FusermountError::Refused(format!("{stderr} ({e})"))),
        Err(e) => Err(FusermountError::Protocol(e)),
    }
}

/// Receive the descriptor fusermount3 sends: `Ok(None)` at end of file (it refused).
fn receive_fd(sock: &UnixStream) -> Result<Option<OwnedFd>, String> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut cmsg = nix::cmsg_space!(RawFd);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("receiving the /dev/fuse descriptor: {e}")),
        }
    };
    let mut fds = Vec::new();
    for c in msg
        .cmsgs()
        .map_err(|e| format!("bad control message: {e}"))?
    {
        if let ControlMessageOwned::ScmRights(v) = c {
            fds.extend(v);
        }
    }
    let bytes = msg.bytes;
    // SAFETY: SCM_RIGHTS installed these descriptors in this process for us; each is owned
    // exactly once here (extra ones, which fusermount3 never sends, are closed).
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        .filter(|&fd| fd >= 0)
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if owned.is_empty() {
        return if bytes == 0 {
            Ok(None)
        } else {
            Err("a message without a descriptor".into())
        };
    }
    Ok(Some(owned.swap_remove(0)))
}

/// Unmount `mountpoint` with `fusermount3 -u` (`-z`: lazily, detaching it even when busy).
///
/// # Errors
/// [`FusermountError::Refused`] with fusermount3's message when it exits non-zero (busy, not
/// the caller's mount, not mounted); [`FusermountError::Spawn`] when it cannot run.
pub fn unmount(bin: &Path, mountpoint: &Path, lazy: bool) -> Result<(), FusermountError> {
    let mut cmd = Command::new(bin);
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd
        .arg("--")
        .arg(mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(FusermountError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(FusermountError::Refused(if msg.is_empty() {
        format!("{FUSERMOUNT3} -u exited with {}", out.status)
    } else {
        msg
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_takes_the_first_executable_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let not_exec = a.path().join(FUSERMOUNT3);
        std::fs::write(&not_exec, "").unwrap();
        std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
        let exec = b.path().join(FUSERMOUNT3);
        std::fs::write(&exec, "").unwrap();
        std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(find(Some(&path)), Some(exec));
        let only_a = std::env::join_paths([a.path()]).unwrap();
        assert_eq!(find(Some(&only_a)), None);
        assert_eq!(find(None), None);
    }

    #[test]
    fn a_refusal_comes_back_with_its_message() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join(FUSERMOUNT3);
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"fusermount3: failed to open /dev/fuse: Permission denied\" >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        match mount(&fake, d.path(), "fsname=x") {
            Err(FusermountError::Refused(m)) => {
                assert_eq!(
                    m,
                    "fusermount3: failed to open /dev/fuse: Permission denied"
                )
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        match unmount(&fake, d.path(), false) {
            Err(FusermountError::Refused(m)) => assert!(m.contains("failed to open")),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
