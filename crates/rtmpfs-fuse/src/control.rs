//! The daemon's control socket: how `mount -o remount,ro` (through the mount helper) and
//! `rtmpfs --stats` reach the daemon serving a mount.
//!
//! The socket lives in the abstract namespace (nothing to clean up when the daemon is killed),
//! named after the mount's device number and mount id, which the client finds in
//! `/proc/self/mountinfo` for the mount point it was given.
//!
//! Abstract names have no permissions and are predictable, so both ends check the other with
//! `SO_PEERCRED` (see docs/fuse.md, "Control socket"):
//! - the daemon talks only to root and its own user;
//! - the client talks only to a server running as root or as the mount's owner (`user_id=` in
//!   the mount's superblock options, which the kernel records from whoever mounted). Anyone else
//!   holding the name is an impostor: the client refuses it and says who it is;
//! - a daemon that finds its name taken by anyone else fails the mount, naming the holder.
//!
//! Hostile input: one thread serves every connection with `poll`, at most
//! [`MAX_CONNECTIONS`] at a time (the oldest is dropped for a new one), each with a whole-request
//! deadline ([`REQUEST_DEADLINE`]) and a request cap ([`MAX_REQUEST`]); errors never echo the
//! request.
//!
//! Protocol: one request line, then response lines ending with `ok` or `err MESSAGE`.
//! Requests: `stats`, `status`, `status-json`, `remount OPTIONS`, `resize OPTIONS`,
//! `snapshot PATH`.

use crate::mountinfo::{self, MountEntry};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// The longest request line the daemon reads (a remount's option list is well under 4 KiB).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Connections served at once; a new one beyond this drops the oldest.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client has, from being accepted, to send its whole request line.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The answer to a connection dropped for a newer one.
const TOO_MANY: &str = "too many control connections";
/// The longest error message sent back (option errors name the option, which is input).
const MAX_ERROR: usize = 200;
/// The longest response the client reads (`stats` is about 1 KiB).
const MAX_RESPONSE: u64 = 1024 * 1024;
/// How long the client waits for the whole answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

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

/// The credentials of a socket's peer, as the kernel recorded them at connect/listen time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
}

/// Why the daemon could not bind its control socket.
#[derive(Debug)]
pub enum BindError {
    /// Another process, not a daemon of ours, holds the name.
    Squatted {
        /// The name.
        name: String,
        /// Who holds it, when it answered a connect.
        holder: Option<PeerCred>,
    },
    /// Any other failure.
    Io(io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::Squatted { name, holder: Some(h) } => write!(
                f,
                "control socket @{name} is held by another process (pid {}, uid {}); refusing to mount",
                h.pid, h.uid
            ),
            BindError::Squatted { name, holder: None } => write!(
                f,
                "control socket @{name} is held by another process; refusing to mount"
            ),
            BindError::Io(e) => write!(f, "binding the control socket: {e}"),
        }
    }
}

impl std::error::Error for BindError {}

/// Bind the control socket for the mount `m`.
///
/// # Errors
/// [`BindError::Squatted`] when the name is held by a process that is neither root nor our own
/// user (or does not answer within the retries). The name can still be held for a moment by the
/// daemon of an earlier mount with the same device and id, which is exiting: such a holder (root
/// or our user) is waited for, a few seconds at most.
pub fn bind(m: &MountEntry) -> Result<UnixListener, BindError> {
    let name = socket_name(m);
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(BindError::Io)?;
    let me = effective_uid();
    for _ in 0..50 {
        match UnixListener::bind_addr(&addr) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let holder = holder_of(&addr);
                let ours = holder.is_some_and(|h| h.uid == 0 || h.uid == me);
                if !ours {
                    return Err(BindError::Squatted { name, holder });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(BindError::Io(e)),
        }
    }
    Err(BindError::Squatted {
        name: name.clone(),
        holder: holder_of(&addr),
    })
}

/// Who listens on `addr`: connect without blocking (a squatter's full backlog must not hang
/// us) and read the peer's credentials. None when nobody accepts connections there.
fn holder_of(addr: &SocketAddr) -> Option<PeerCred> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: socket(2) just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = addr.as_abstract_name()?;
    // SAFETY: sockaddr_un is plain data; zero is a valid value for every field.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if name.len() + 1 > sa.sun_path.len() {
        return None;
    }
    // Abstract: a leading NUL, then the name (no terminator; the length says where it ends).
    for (dst, src) in sa.sun_path[1..].iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    // SAFETY: `sa` is a valid sockaddr_un and `len` covers exactly the bytes set above.
    let r = unsafe { libc::connect(fd.as_raw_fd(), std::ptr::addr_of!(sa).cast(), len as libc::socklen_t) };
    if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
        return None;
    }
    peer_cred(fd.as_raw_fd()).ok()
}

/// Serve the bound control socket on a new thread: one thread, every connection multiplexed
/// with `poll` (see the module docs for the limits).
///
/// # Errors
/// When the thread cannot be started.
pub fn serve(listener: UnixListener, handler: impl Handler) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("rtmpfs-ctl".into())
        .spawn(move || Server::new(listener, handler).run())?;
    Ok(())
}

/// One client connection waiting for its request line.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
}

/// What reading from a connection gave.
enum Progress {
    /// Nothing more yet: keep waiting.
    Pending,
    /// Done with it (answered or dropped).
    Finished,
}

struct Server<H> {
    listener: UnixListener,
    handler: H,
    me: u32,
    /// In accept order: the first is the oldest.
    conns: Vec<Conn>,
}

impl<H: Handler> Server<H> {
    fn new(listener: UnixListener, handler: H) -> Self {
        Server {
            listener,
            handler,
            me: effective_uid(),
            conns: Vec::new(),
        }
    }

    fn run(mut self) {
        loop {
            let mut fds: Vec<libc::pollfd> = std::iter::once(self.listener.as_raw_fd())
                .chain(self.conns.iter().map(|c| c.stream.as_raw_fd()))
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let timeout = self.poll_timeout();
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("control socket: poll: {}", io::Error::last_os_error());
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            // Connections first (their indices shift once new ones are accepted or dropped).
            let ready: Vec<bool> = fds[1..].iter().map(|p| p.revents != 0).collect();
            let mut i = 0;
            self.conns.retain_mut(|c| {
                let keep = !ready[i] || matches!(read_some(c, &self.handler), Progress::Pending);
                i += 1;
                keep
            });
            self.drop_expired();
            if fds[0].revents != 0 {
                self.accept_all();
            }
        }
    }

    /// Milliseconds until the earliest deadline (-1: none).
    fn poll_timeout(&self) -> i32 {
        self.conns.iter().map(|c| c.deadline).min().map_or(-1, |d| {
            let left = d.saturating_duration_since(Instant::now());
            i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1)
        })
    }

    fn drop_expired(&mut self) {
        let now = Instant::now();
        self.conns.retain_mut(|c| {
            if c.deadline > now {
                return true;
            }
            answer(&mut c.stream, Err("request not complete in time"));
            false
        });
    }

    /// Accept every pending connection. A client that already sent its request is served at
    /// once and takes no slot; the others wait in a slot, the oldest giving its slot up.
    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: leave the rest in the backlog until the next round.
                    tracing::debug!("control socket: accept: {e}");
                    return;
                }
            };
            let Some(mut conn) = self.admit(stream) else { continue };
            if let Progress::Finished = read_some(&mut conn, &self.handler) {
                continue;
            }
            if self.conns.len() >= MAX_CONNECTIONS {
                let mut oldest = self.conns.remove(0);
                answer(&mut oldest.stream, Err(TOO_MANY));
            }
            self.conns.push(conn);
        }
    }

    /// Check the peer and prepare the connection; None when refused (and answered).
    fn admit(&self, mut stream: UnixStream) -> Option<Conn> {
        let allowed = peer_cred(stream.as_raw_fd()).is_ok_and(|p| p.uid == 0 || p.uid == self.me);
        if !allowed {
            let msg = format!(
                "permission denied: only root and the mount's owner (uid {}) may ask this mount's daemon",
                self.me
            );
            answer(&mut stream, Err(&msg));
            return None;
        }
        stream.set_nonblocking(true).ok()?;
        Some(Conn {
            stream,
            buf: Vec::new(),
            deadline: Instant::now() + REQUEST_DEADLINE,
        })
    }
}

/// Read what the client sent so far; answer once the line is complete (or refuse it).
fn read_some(c: &mut Conn, handler: &impl Handler) -> Progress {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => return Progress::Finished,
            Ok(n) => {
                let start = c.buf.len();
                c.buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = c.buf[start..].iter().position(|&b| b == b'\n') {
                    let line = c.buf[..start + end].to_vec();
                    respond(&mut c.stream, &line, handler);
                    return Progress::Finished;
                }
                if c.buf.len() > MAX_REQUEST {
                    answer(&mut c.stream, Err("request too long (the limit is 64 KiB)"));
                    return Progress::Finished;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Progress::Finished,
        }
    }
}

fn respond(stream: &mut UnixStream, line: &[u8], handler: &impl Handler) {
    match std::str::from_utf8(line) {
        Ok(request) => answer(
            stream,
            handler.handle(request).as_deref().map_err(std::string::String::as_str),
        ),
        Err(_) => answer(stream, Err("request is not UTF-8")),
    }
}

/// Send the response: the body then `ok`, or `err MESSAGE` (one line, at most `MAX_ERROR`
/// bytes). Blocking with a short timeout: responses are small, so only a client that stopped
/// reading with a full buffer can make this wait, and not for long.
fn answer(stream: &mut UnixStream, result: Result<&str, &str>) {
    let text = match result {
        Ok(body) => format!("{body}ok\n"),
        Err(msg) => format!("err {}\n", one_line(msg)),
    };
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(text.as_bytes());
}

/// `msg` on one line, cut to `MAX_ERROR` bytes at a character boundary.
fn one_line(msg: &str) -> String {
    let flat = msg.replace(['\n', '\r'], " ");
    if flat.len() <= MAX_ERROR {
        return flat;
    }
    let mut end = MAX_ERROR;
    while !flat.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &flat[..end])
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// The pid and uid of a socket's peer.
fn peer_cred(fd: RawFd) -> io::Result<PeerCred> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid, writable ucred and `len` its size, as SO_PEERCRED requires.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
    })
}

/// Why a request could not be delivered.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing is mounted at the path.
    NotMounted,
    /// Something is mounted there, but no rtmpfs daemon answers for it.
    NotRtmpfs(Box<MountEntry>),
    /// The socket is held by a process that cannot be the mount's daemon.
    Impostor {
        /// Who answered.
        peer: PeerCred,
        /// The mount's owner, from its `user_id=` option.
        owner: u32,
    },
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
            ClientError::Impostor { peer, owner } => write!(
                f,
                "the control socket is held by pid {} (uid {}), which is neither root nor the \
                 mount's owner (uid {owner}): not the mount's daemon, refusing to talk to it",
                peer.pid, peer.uid
            ),
            ClientError::Refused(m) => write!(f, "{m}"),
            ClientError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The mount's owner: the `user_id=` FUSE records in the superblock options (root when absent).
fn mount_owner(entry: &MountEntry) -> u32 {
    entry
        .super_options
        .split(',')
        .find_map(|o| o.strip_prefix("user_id=")?.parse().ok())
        .unwrap_or(0)
}

/// Whether `peer` may be the daemon of the mount owned by `owner`: only root or the owner can
/// have mounted it (the daemon mounts with mount(2), which needs CAP_SYS_ADMIN, and records its
/// uid as `user_id=`), and the daemon runs as that user.
#[must_use]
pub fn may_serve(peer: PeerCred, owner: u32) -> bool {
    peer.uid == 0 || peer.uid == owner
}

/// Send `request` to the daemon serving the mount at `mount_point` (exact path, as in
/// mountinfo); returns the response body. The server is checked first (see [`may_serve`]).
///
/// # Errors
/// See [`ClientError`].
pub fn request(mount_point: &Path, request: &str) -> Result<String, ClientError> {
    request_within(mount_point, request, CLIENT_DEADLINE)
}

/// [`request`] with another deadline for the whole answer (a snapshot of a large mount takes
/// longer than the usual requests).
///
/// # Errors
/// See [`ClientError`].
pub fn request_within(mount_point: &Path, request: &str, within: Duration) -> Result<String, ClientError> {
    let entry = mountinfo::mounted_at(mount_point)
        .map_err(ClientError::Io)?
        .ok_or(ClientError::NotMounted)?;
    // Dropped for a newer connection while the daemon's slots were full (a flood of idle
    // connections): try again a few times.
    let mut tries = 0;
    loop {
        match request_once(&entry, request, within) {
            Err(ClientError::Refused(m)) if m == TOO_MANY && tries < 3 => tries += 1,
            r => return r,
        }
    }
}

fn request_once(entry: &MountEntry, request: &str, within: Duration) -> Result<String, ClientError> {
    let addr = SocketAddr::from_abstract_name(socket_name(entry).as_bytes()).map_err(ClientError::Io)?;
    let conn = match UnixStream::connect_addr(&addr) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ClientError::NotRtmpfs(Box::new(entry.clone())));
        }
        Err(e) => return Err(ClientError::Io(e)),
    };
    let peer = peer_cred(conn.as_raw_fd()).map_err(ClientError::Io)?;
    let owner = mount_owner(entry);
    if !may_serve(peer, owner) {
        return Err(ClientError::Impostor { peer, owner });
    }
    converse(conn, request, within)
}

/// Send the request line and read the answer, within `within` and `MAX_RESPONSE`.
fn converse(conn: UnixStream, request: &str, within: Duration) -> Result<String, ClientError> {
    let deadline = Instant::now() + within;
    conn.set_write_timeout(Some(within)).map_err(ClientError::Io)?;
    let mut w = conn.try_clone().map_err(ClientError::Io)?;
    // A daemon that refuses us (SO_PEERCRED) answers and closes before reading: the write may
    // then fail with EPIPE, and the answer to show is the one waiting to be read.
    let written = writeln!(w, "{request}");
    let mut body = String::new();
    let mut reader = BufReader::new(conn.take(MAX_RESPONSE));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the daemon did not answer in time",
            )));
        }
        reader
            .get_ref()
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(ClientError::Io)?;
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(ClientError::Io(written.err().unwrap_or(e))),
        }
        let Some(line) = line.strip_suffix('\n') else { break };
        if line == "ok" {
            return Ok(body);
        }
        if let Some(msg) = line.strip_prefix("err ") {
            return Err(ClientError::Refused(msg.to_string()));
        }
        body.push_str(line);
        body.push('\n');
    }
    Err(ClientError::Io(written.err().unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed the control connection")
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_short_line() {
        let long = "x".repeat(10_000);
        let s = one_line(&format!("bad\n{long}"));
        assert!(s.len() <= MAX_ERROR + 3);
        assert!(!s.contains('\n'));
        assert!(s.starts_with("bad x"));
        assert_eq!(one_line(&"é".repeat(150)).len(), 200 + 3);
    }

    #[test]
    fn only_root_or_the_owner_may_serve() {
        assert!(may_serve(PeerCred { pid: 1, uid: 0 }, 1000));
        assert!(may_serve(PeerCred { pid: 1, uid: 1000 }, 1000));
        assert!(!may_serve(PeerCred { pid: 1, uid: 65534 }, 1000));
        assert!(!may_serve(PeerCred { pid: 1, uid: 65534 }, 0));
    }

    #[test]
    fn owner_comes_from_user_id() {
        let text = "95 22 0:53 / /mnt rw - fuse.rtmpfs t rw,user_id=1000,group_id=100,allow_other\n\
                    96 22 0:54 / /m2 rw - fuse.rtmpfs t rw\n";
        let m = mountinfo::parse(text);
        assert_eq!(mount_owner(&m[0]), 1000);
        assert_eq!(mount_owner(&m[1]), 0);
    }
}
