//! Where the daemon's log goes, and how often.
//!
//! - In the foreground: stderr, as before.
//! - Detached (started by the mount helper, whose daemon has stdout and stderr on /dev/null):
//!   the system log, so that failures leave a trace (`journalctl -t rtmpfs`, or
//!   /var/log/syslog). We write the syslog datagram ourselves (`<PRI>rtmpfs[PID]: MESSAGE` to
//!   `/dev/log`, which both journald and rsyslog read) rather than add a crate: it is ten lines,
//!   needs no global `openlog` state, and the socket path can be pointed elsewhere with
//!   `RTMPFS_SYSLOG_SOCKET` (tests; hosts whose syslog socket lives elsewhere).
//! - Rate-limited either way: the same message site (a callsite: one `warn!` in the source) logs
//!   its first event, then at most one every [`INTERVAL`], carrying the count of those left out
//!   in between; a site that went quiet with events left out gets a summary line within about
//!   one interval. A full swap used to write 19,260 WARN lines in 10 s. DEBUG and TRACE (asked
//!   for with `-vv` or RUST_LOG) are not limited.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// At most one message per site per interval (after the first).
pub const INTERVAL: Duration = Duration::from_secs(10);
/// The system log's socket.
const SYSLOG_SOCKET: &str = "/dev/log";
/// The target of our own summary lines (never limited themselves).
const SUMMARY_TARGET: &str = "rtmpfs::log";

/// Set up logging: `verbose` picks the level (RUST_LOG overrides), `detached` sends it to the
/// system log instead of stderr.
pub fn init(verbose: u8, detached: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let limiter = Arc::new(Limiter::default());
    let result = if detached {
        let socket = std::env::var_os("RTMPFS_SYSLOG_SOCKET").unwrap_or_else(|| SYSLOG_SOCKET.into());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .without_time()
            .with_writer(RateLimited {
                limiter: limiter.clone(),
                inner: Syslog { socket: socket.into() },
            })
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            // Colour only for a terminal: a log redirected to a file stays plain text.
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(RateLimited {
                limiter: limiter.clone(),
                inner: io::stderr,
            })
            .try_init()
    };
    if result.is_ok() {
        start_summaries(limiter);
    }
}

/// Every interval, say how many events were left out at sites that have gone quiet since.
///
/// The thread is started with the termination signals blocked (it inherits the mask), as every
/// thread of the daemon is: the daemon takes SIGINT/SIGTERM on its signal thread alone, and a
/// thread that did not block them would let the default action kill the process unmounted.
fn start_summaries(limiter: Arc<Limiter>) {
    // SAFETY: sigset_t is plain data initialised by sigemptyset/sigaddset; pthread_sigmask
    // reads `set` and writes the previous mask into `old`, both valid.
    let old = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&raw mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, &raw mut old);
        old
    };
    let _ = std::thread::Builder::new()
        .name("rtmpfs-log".into())
        .spawn(move || loop {
            std::thread::sleep(INTERVAL);
            for (site, count) in limiter.take_quiet(Instant::now()) {
                tracing::warn!(target: SUMMARY_TARGET, "{count} more like the last message from {site}");
            }
        });
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &raw const old, std::ptr::null_mut()) };
}

/// Per-site state.
struct Site {
    /// When the last event (or summary) of this site was written.
    last: Instant,
    /// Events left out since.
    suppressed: u64,
    /// `target file:line`, for the summary.
    name: String,
}

/// Which events get written.
#[derive(Default)]
struct Limiter {
    sites: Mutex<HashMap<usize, Site>>,
}

impl Limiter {
    /// Whether an event of `meta` is written now; when it is, how many of its site were left
    /// out before it.
    fn admit(&self, meta: &Metadata<'_>, now: Instant) -> Option<u64> {
        if *meta.level() > Level::INFO || meta.target() == SUMMARY_TARGET {
            return Some(0);
        }
        // A callsite's metadata is a static: its address names the site.
        let key = std::ptr::from_ref(meta) as usize;
        let name = || {
            format!(
                "{} {}:{}",
                meta.target(),
                meta.file().unwrap_or("?"),
                meta.line().unwrap_or(0)
            )
        };
        self.admit_site(key, name, now)
    }

    /// The rule for one site: its first event, then one per interval with the count left out.
    fn admit_site(&self, key: usize, name: impl FnOnce() -> String, now: Instant) -> Option<u64> {
        let mut sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(site) = sites.get_mut(&key) else {
            sites.insert(
                key,
                Site {
                    last: now,
                    suppressed: 0,
                    name: name(),
                },
            );
            return Some(0);
        };
        if now.saturating_duration_since(site.last) < INTERVAL {
            site.suppressed = site.suppressed.saturating_add(1);
            return None;
        }
        site.last = now;
        Some(std::mem::take(&mut site.suppressed))
    }

    /// Sites with events left out and nothing written for an interval: their names and counts
    /// (reset; the summary counts as the site's message for the next interval).
    fn take_quiet(&self, now: Instant) -> Vec<(String, u64)> {
        let mut sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        sites
            .values_mut()
            .filter(|s| s.suppressed > 0 && now.saturating_duration_since(s.last) >= INTERVAL)
            .map(|s| {
                s.last = now;
                (s.name.clone(), std::mem::take(&mut s.suppressed))
            })
            .collect()
    }
}

/// A `MakeWriter` that drops rate-limited events and notes the count on the next one written.
struct RateLimited<M> {
    limiter: Arc<Limiter>,
    inner: M,
}

/// One event's writer: nothing (left out), or the inner writer with an optional note first.
enum EventWriter<W> {
    Dropped,
    Written { inner: W, note: Option<String> },
}

impl<W: Write> Write for EventWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            EventWriter::Dropped => Ok(buf.len()),
            EventWriter::Written { inner, note } => {
                if let Some(n) = note.take() {
                    inner.write_all(n.as_bytes())?;
                }
                inner.write(buf)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            EventWriter::Dropped => Ok(()),
            EventWriter::Written { inner, .. } => inner.flush(),
        }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RateLimited<M> {
    type Writer = EventWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter::Written {
            inner: self.inner.make_writer(),
            note: None,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        match self.limiter.admit(meta, Instant::now()) {
            None => EventWriter::Dropped,
            Some(suppressed) => EventWriter::Written {
                inner: self.inner.make_writer_for(meta),
                note: (suppressed > 0).then(|| format!("({suppressed} more like this since the last one) ")),
            },
        }
    }
}

/// Writes each event as one syslog datagram.
struct Syslog {
    socket: std::path::PathBuf,
}

/// Collects one event, sent on drop.
struct SyslogEvent<'a> {
    socket: &'a std::path::Path,
    priority: u8,
    text: Vec<u8>,
}

impl Write for SyslogEvent<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogEvent<'_> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        let line = format!("<{}>rtmpfs[{}]: {}", self.priority, std::process::id(), text.trim_end());
        // Nowhere else to report a failure: stderr is /dev/null when detached.
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.send_to(line.as_bytes(), self.socket);
        }
    }
}

/// Facility daemon (3), times 8, plus the severity.
fn syslog_priority(level: Level) -> u8 {
    let severity = match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    };
    3 * 8 + severity
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogEvent<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SyslogEvent {
            socket: &self.socket,
            priority: syslog_priority(Level::INFO),
            text: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        SyslogEvent {
            socket: &self.socket,
            priority: syslog_priority(*meta.level()),
            text: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_one_per_interval_with_the_count() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let name = || "site".to_string();
        assert_eq!(l.admit_site(1, name, t0), Some(0));
        for i in 1..1000 {
            assert_eq!(l.admit_site(1, name, t0 + Duration::from_millis(i)), None);
        }
        // Another site is not affected.
        assert_eq!(l.admit_site(2, name, t0), Some(0));
        assert_eq!(l.admit_site(1, name, t0 + INTERVAL), Some(999));
        assert_eq!(l.admit_site(1, name, t0 + INTERVAL + Duration::from_secs(1)), None);
        // Quiet since: the summary reports the one left out, once.
        assert!(
            l.take_quiet(t0 + INTERVAL + Duration::from_secs(5)).is_empty(),
            "not quiet yet"
        );
        assert_eq!(l.take_quiet(t0 + 2 * INTERVAL), vec![("site".to_string(), 1)]);
        assert!(l.take_quiet(t0 + 4 * INTERVAL).is_empty());
    }

    #[test]
    fn syslog_priorities_are_facility_daemon() {
        assert_eq!(syslog_priority(Level::ERROR), 27);
        assert_eq!(syslog_priority(Level::WARN), 28);
        assert_eq!(syslog_priority(Level::INFO), 30);
    }

    #[test]
    fn a_dropped_event_writes_nothing_and_a_note_goes_first() {
        let mut out = Vec::new();
        {
            let mut w = EventWriter::Written {
                inner: &mut out,
                note: Some("(3 more like this since the last one) ".into()),
            };
            write!(w, "swap write failed").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(3 more like this since the last one) swap write failed"
        );
        let mut d: EventWriter<Vec<u8>> = EventWriter::Dropped;
        assert_eq!(d.write(b"x").unwrap(), 1);
    }
}
