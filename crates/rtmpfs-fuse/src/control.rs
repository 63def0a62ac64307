//! The daemon's control socket: how `mount -o remount,ro` (through the mount helper) and
//! `rtmpfs --stats` reach the daemon serving a mount.
//!
//! The socket lives in the abstract namespace (nothing to clean up when the daemon is killed),
//! named after the mount's device number, which the client finds in `/proc/self/mountinfo` for
//! the mount point it was given. Only root and the daemon's own user may talk to it
//! (`SO_PEERCRED`).
//!
//! Protocol: one request line, then response lines ending with `ok` or `err MESSAGE`.
//! Requests: `stats`, `status`, `remount OPTIONS`.

use crate::mountinfo::{self, MountEntry};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// The abstract socket name for a mount: its device and mount id (both can be reused by a
/// later mount, but not while this one exists).
#[must_use]
pub fn socket_name(m: &MountEntry) -> String {
    format!("rtmpfs-ctl/{}:{}/{}", m.major, m.minor, m.id)
}

/// What the daemon does with a request; returns the response body or an error message.
pub trait Handler: Send + Sync + 'static {
    /// Handle one request line (without the newline).
    ///
    /// # Errors
    /// A one-line message sent back as `err MESSAGE`.
    fn handle(&self, request: &str) -> Result<String, String>;
}

/// Bind the control socket for the mount `m` and serve it on a new thread.
///
/// # Errors
/// When the socket cannot be bound. The name can still be held for a moment by the daemon of
/// an earlier mount with the same device and id, which is exiting: we retry for a few seconds.
pub fn serve(m: &MountEntry, handler: impl Handler) -> io::Result<()> {
    let addr = SocketAddr::from_abstract_name(socket_name(m).as_bytes())?;
    let mut tries = 0;
    let listener = loop {
        match UnixListener::bind_addr(&addr) {
            Ok(l) => break l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    };
    std::thread::Builder::new().name("rtmpfs-ctl".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if let Err(e) = serve_one(conn, &handler) {
                tracing::debug!("control connection: {e}");
            }
        }
    })?;
    Ok(())
}

fn serve_one(conn: UnixStream, handler: &impl Handler) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (uid, _pid) = peer_cred(&conn)?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    let mut w = conn.try_clone()?;
    if uid != 0 && uid != me {
        return writeln!(w, "err permission denied");
    }
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    match handler.handle(line.trim_end_matches('\n')) {
        Ok(body) => {
            w.write_all(body.as_bytes())?;
            writeln!(w, "ok")
        }
        Err(msg) => writeln!(w, "err {}", msg.replace('\n', " ")),
    }
}

/// The uid and pid of a socket's peer.
fn peer_cred(s: &UnixStream) -> io::Result<(u32, i32)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid, writable ucred and `len` its size, as SO_PEERCRED requires.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.uid, cred.pid))
}

/// Why a request could not be delivered.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing is mounted at the path.
    NotMounted,
    /// Something is mounted there, but no rtmpfs daemon answers for it.
    NotRtmpfs(Box<MountEntry>),
    /// The daemon refused the request.
    Refused(String),
    /// I/O trouble talking to it.
    Io(io::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotMounted => write!(f, "nothing is mounted there"),
            ClientError::NotRtmpfs(m) => write!(
                f,
                "not an rtmpfs mount, or its daemon is gone (type {}, source {})",
                m.fstype, m.source
            ),
            ClientError::Refused(m) => write!(f, "{m}"),
            ClientError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Send `request` to the daemon serving the mount at `mount_point` (exact path, as in
/// mountinfo); returns the response body.
///
/// # Errors
/// See [`ClientError`].
pub fn request(mount_point: &Path, request: &str) -> Result<String, ClientError> {
    let entry = mountinfo::mounted_at(mount_point)
        .map_err(ClientError::Io)?
        .ok_or(ClientError::NotMounted)?;
    let addr = SocketAddr::from_abstract_name(socket_name(&entry).as_bytes()).map_err(ClientError::Io)?;
    let conn = match UnixStream::connect_addr(&addr) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ClientError::NotRtmpfs(Box::new(entry)));
        }
        Err(e) => return Err(ClientError::Io(e)),
    };
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(ClientError::Io)?;
    let mut w = conn.try_clone().map_err(ClientError::Io)?;
    writeln!(w, "{request}").map_err(ClientError::Io)?;
    let mut body = String::new();
    for line in BufReader::new(conn).lines() {
        let line = line.map_err(ClientError::Io)?;
        if line == "ok" {
            return Ok(body);
        }
        if let Some(msg) = line.strip_prefix("err ") {
            return Err(ClientError::Refused(msg.to_string()));
        }
        body.push_str(&line);
        body.push('\n');
    }
    Err(ClientError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the daemon closed the control connection",
    )))
}
