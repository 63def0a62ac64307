//! `mount.fuse.rtmpfs SOURCE DIR [-sfnv] [-o OPTIONS]`: what mount(8) runs for
//! `mount -t fuse.rtmpfs SOURCE DIR` and for fstab lines of type `fuse.rtmpfs`.
//!
//! A new mount starts `rtmpfs DIR -o OPTIONS,fsname=SOURCE` in its own session with a pipe,
//! and returns once the daemon says the mount is live (or prints the daemon's one-line error).
//! A remount (`-o remount,...`) starts no daemon: it tells the daemon serving DIR through its
//! control socket (read-only switch, limits unchanged) and then changes the kernel's mount
//! flags with mount(2) `MS_REMOUNT`.
//!
//! Exit codes follow mount(8): 0 success, 1 bad invocation, 32 mount failure.

use rtmpfs_fuse::control;
use rtmpfs_fuse::daemon::check_mount_point;
use rtmpfs_fuse::mountinfo;
use rtmpfs_fuse::MountOptions;
use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

const USAGE: u8 = 1;
const MOUNT_FAILURE: u8 = 32;
/// How long a new daemon may take to mount before the helper gives up on it.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    source: String,
    target: PathBuf,
    options: Vec<String>,
    fake: bool,
    sloppy: bool,
}

fn parse_args(args: Vec<OsString>) -> Result<Args, String> {
    let mut pos = Vec::new();
    let mut options = Vec::new();
    let (mut fake, mut sloppy) = (false, false);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy().into_owned();
        match s.as_str() {
            "-o" => options.push(it.next().ok_or("-o needs a value")?.to_string_lossy().into_owned()),
            "-t" => {
                let t = it.next().ok_or("-t needs a value")?;
                let t = t.to_string_lossy();
                if t != "fuse.rtmpfs" && t != "rtmpfs" {
                    return Err(format!("unexpected filesystem type '{t}'"));
                }
            }
            "-N" => return Err("mounting in another namespace (-N) is not supported".into()),
            _ if s.starts_with("-o") && s.len() > 2 => options.push(s[2..].to_string()),
            _ if s.starts_with('-') && s.len() > 1 => {
                for c in s[1..].chars() {
                    match c {
                        'f' => fake = true,
                        's' => sloppy = true,
                        'n' | 'v' | 'r' | 'w' => {}
                        _ => return Err(format!("unknown flag -{c}")),
                    }
                }
            }
            _ => pos.push(a),
        }
    }
    if pos.len() != 2 {
        return Err("usage: mount.fuse.rtmpfs SOURCE DIR [-sfnv] [-o OPTIONS]".into());
    }
    let target = PathBuf::from(pos.pop().unwrap_or_default());
    let source = pos.pop().unwrap_or_default().to_string_lossy().into_owned();
    Ok(Args {
        source,
        target,
        options,
        fake,
        sloppy,
    })
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => return fail(USAGE, &e),
    };
    let mut options = args.options.clone();
    if args.sloppy {
        options = drop_unknown(&options);
    }
    let opts = match MountOptions::parse(&options) {
        Ok(o) => o,
        Err(e) => return fail(MOUNT_FAILURE, &e.to_string()),
    };
    if args.fake {
        return ExitCode::SUCCESS;
    }
    if opts.remount {
        return remount(&args.target, &options);
    }
    new_mount(&args, &options)
}

/// `-s`: leave out options this parser refuses (one at a time), keeping the rest.
fn drop_unknown(options: &[String]) -> Vec<String> {
    let all: Vec<String> = options
        .iter()
        .flat_map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    all.into_iter()
        .filter(|o| MountOptions::parse(&[o.as_str()]).is_ok())
        .collect()
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("mount.fuse.rtmpfs: {msg}");
    ExitCode::from(code)
}

fn new_mount(args: &Args, options: &[String]) -> ExitCode {
    if args.source.contains(|c: char| c.is_whitespace() || c == ',') || args.source.is_empty() {
        return fail(
            MOUNT_FAILURE,
            &format!("bad source '{}' (no spaces or commas)", args.source),
        );
    }
    // Fail fast, with the same messages the daemon would give.
    if let Err(e) = check_mount_point(&args.target, &args.source) {
        return fail(MOUNT_FAILURE, &e.to_string());
    }
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return fail(MOUNT_FAILURE, &format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just returned these two descriptors; each is owned exactly once here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut opt_list = options.join(",");
    if !opt_list.is_empty() {
        opt_list.push(',');
    }
    opt_list.push_str("fsname=");
    opt_list.push_str(&args.source);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(MOUNT_FAILURE, &format!("finding the rtmpfs binary: {e}")),
    };
    let wr_raw = wr.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg0("rtmpfs")
        .arg(&args.target)
        .arg("-o")
        .arg(&opt_list)
        .arg("--ready-fd")
        .arg(wr_raw.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure only calls async-signal-safe functions (setsid, fcntl) on a
    // descriptor that is open in the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::fcntl(wr_raw, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(MOUNT_FAILURE, &format!("starting the daemon: {e}")),
    };
    drop(wr);
    match read_ready(&rd) {
        Some(line) if line == "ok" => ExitCode::SUCCESS,
        Some(line) => {
            let msg = line.strip_prefix("error: ").unwrap_or(&line).to_string();
            let _ = child.wait();
            fail(MOUNT_FAILURE, &msg)
        }
        None => {
            let _ = child.kill();
            let status = child.wait();
            fail(
                MOUNT_FAILURE,
                &format!("the rtmpfs daemon did not report a mount ({status:?})"),
            )
        }
    }
}

/// Read the daemon's one status line, waiting at most `READY_TIMEOUT`.
fn read_ready(rd: &OwnedFd) -> Option<String> {
    let mut pfd = libc::pollfd {
        fd: rd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    let mut buf = Vec::new();
    let mut file = std::fs::File::from(rd.try_clone().ok()?);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        // SAFETY: `pfd` is one valid pollfd.
        let r = unsafe { libc::poll(&raw mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        if r == 0 {
            return None;
        }
        let mut chunk = [0u8; 512];
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().map(str::to_string)
}

/// `mount -o remount,...`: flip the daemon's read-only switch, then the kernel's flags.
fn remount(target: &Path, options: &[String]) -> ExitCode {
    let path = match target.canonicalize() {
        Ok(p) => p,
        Err(e) => return fail(MOUNT_FAILURE, &format!("{}: {e}", target.display())),
    };
    let entry = match mountinfo::mounted_at(&path) {
        Ok(Some(m)) if m.is_fuse() => m,
        Ok(Some(m)) => {
            return fail(
                MOUNT_FAILURE,
                &format!("{} is not an rtmpfs mount ({})", path.display(), m.fstype),
            )
        }
        Ok(None) => return fail(MOUNT_FAILURE, &format!("{} is not mounted", path.display())),
        Err(e) => return fail(MOUNT_FAILURE, &format!("reading mountinfo: {e}")),
    };
    // Start from the mount's current flags, as mount(8) does for a plain filesystem.
    let mut merged = vec![entry.mount_options.clone()];
    merged.extend(options.iter().cloned());
    let merged_list = merged.join(",");
    let new = match MountOptions::parse(&merged) {
        Ok(o) => o,
        Err(e) => return fail(MOUNT_FAILURE, &e.to_string()),
    };
    let old_list = entry.mount_options.clone();
    if let Err(e) = control::request(&path, &format!("remount {merged_list}")) {
        return fail(MOUNT_FAILURE, &format!("{}: {e}", path.display()));
    }
    let Ok(target_c) = CString::new(path.as_os_str().as_bytes()) else {
        return fail(MOUNT_FAILURE, "the mount point contains a NUL byte");
    };
    let flags = libc::MS_REMOUNT | new.ms_flags();
    // SAFETY: valid NUL-terminated strings; no data for a FUSE reconfigure.
    let r = unsafe { libc::mount(c"".as_ptr(), target_c.as_ptr(), c"".as_ptr(), flags, std::ptr::null()) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        let _ = control::request(&path, &format!("remount {old_list}"));
        let hint = if e.raw_os_error() == Some(libc::EBUSY) {
            " (files are open for writing)"
        } else {
            ""
        };
        return fail(MOUNT_FAILURE, &format!("remount {}: {e}{hint}", path.display()));
    }
    ExitCode::SUCCESS
}
