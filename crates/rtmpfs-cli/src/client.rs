//! `rtmpfs status`, `rtmpfs resize` and `rtmpfs snapshot`: requests to the daemon of a live mount over its control
//! socket (`rtmpfs_fuse::control`, which checks both ends with SO_PEERCRED: only root and the
//! mount's owner are answered, and only a daemon running as root or as that owner is believed).

use rtmpfs_fuse::control;
use rtmpfs_fuse::status::{render_table, Status};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `rtmpfs status` arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The mount point of a running rtmpfs.
    #[arg(value_hint = clap::ValueHint::DirPath)]
    mountpoint: PathBuf,
    /// Print one JSON object (schema in docs/status.md) instead of the table.
    #[arg(long)]
    json: bool,
    /// Refresh every SECS seconds (default 1) until Ctrl-C: the table in place on a terminal,
    /// one JSON object per line with --json.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
    watch: Option<f64>,
    /// Print the daemon's raw counters instead, one `name value` per line (for scripts and
    /// tests; the names are not a stable interface, the JSON schema is).
    #[arg(long, conflicts_with_all = ["json", "watch"])]
    raw: bool,
}

impl StatusArgs {
    /// The table for `mountpoint`, once (what `--stats` gives).
    pub fn table(mountpoint: PathBuf) -> StatusArgs {
        StatusArgs {
            mountpoint,
            json: false,
            watch: None,
            raw: false,
        }
    }
}

/// `rtmpfs resize` arguments.
#[derive(Debug, clap::Args)]
pub struct ResizeArgs {
    /// The mount point of a running rtmpfs.
    #[arg(value_hint = clap::ValueHint::DirPath)]
    mountpoint: PathBuf,
    /// New limits: size=SIZE, nr_inodes=N, memory=SIZE (as at mount: k/m/g suffixes, size and
    /// memory also as a percentage of RAM); several in one comma-separated list or apart.
    #[arg(required = true, value_name = "LIMIT=VALUE")]
    limits: Vec<String>,
}

/// `rtmpfs snapshot` arguments.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// The mount point of a running rtmpfs.
    #[arg(value_hint = clap::ValueHint::DirPath)]
    mountpoint: PathBuf,
    /// Where the image goes (replaced atomically if it exists).
    #[arg(value_hint = clap::ValueHint::FilePath)]
    file: PathBuf,
}

/// How long `rtmpfs snapshot` waits for the daemon (a large mount's image takes a while).
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(3600);

/// `rtmpfs snapshot MOUNTPOINT FILE`: the daemon writes the image (it serves only root and its
/// own user, so it writes with no more privilege than the caller), to an absolute path.
pub fn snapshot(args: &SnapshotArgs) -> ExitCode {
    let path = match resolve(&args.mountpoint) {
        Ok(p) => p,
        Err(e) => return crate::fail(&e),
    };
    let Some(name) = args.file.file_name() else {
        return crate::fail(&format!("{}: not a file name", args.file.display()));
    };
    let dir = match args.file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file = match dir.canonicalize() {
        Ok(d) => d.join(name),
        Err(e) => return crate::fail(&format!("{}: {e}", dir.display())),
    };
    let Some(file_str) = file.to_str().filter(|f| !f.contains('\n')) else {
        return crate::fail(&format!("{}: the path must be UTF-8 without newlines", file.display()));
    };
    match control::request_within(&path, &format!("snapshot {file_str}"), SNAPSHOT_DEADLINE) {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => crate::fail(&format!("{}: {e}", path.display())),
    }
}

/// The mount point as mountinfo names it.
fn resolve(mountpoint: &Path) -> Result<PathBuf, String> {
    mountpoint
        .canonicalize()
        .map_err(|e| format!("{}: {e}", mountpoint.display()))
}

/// Ask the daemon; errors as one line naming the mount point.
fn ask(path: &Path, request: &str) -> Result<String, String> {
    control::request(path, request).map_err(|e| format!("{}: {e}", path.display()))
}

/// The status object of the mount at `path`.
fn fetch(path: &Path) -> Result<Status, String> {
    let body = ask(path, "status-json")?;
    serde_json::from_str(body.trim()).map_err(|e| {
        format!(
            "{}: the daemon's status does not parse ({e}); is it an older rtmpfs?",
            path.display()
        )
    })
}

/// One rendering of the status: JSON (one line) or the table.
fn render(path: &Path, json: bool) -> Result<String, String> {
    let st = fetch(path)?;
    if json {
        let mut line = serde_json::to_string(&st).map_err(|e| e.to_string())?;
        line.push('\n');
        Ok(line)
    } else {
        Ok(render_table(&st, &path.display().to_string()))
    }
}

/// `rtmpfs status MOUNTPOINT [--json] [--watch [SECS]] [--raw]`.
pub fn status(args: &StatusArgs) -> ExitCode {
    let path = match resolve(&args.mountpoint) {
        Ok(p) => p,
        Err(e) => return crate::fail(&e),
    };
    if args.raw {
        return match ask(&path, "stats") {
            Ok(body) => {
                print!("{body}");
                ExitCode::SUCCESS
            }
            Err(e) => crate::fail(&e),
        };
    }
    let Some(secs) = args.watch else {
        return match render(&path, args.json) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => crate::fail(&e),
        };
    };
    if !(secs.is_finite() && secs >= 0.1) {
        return crate::fail("--watch SECS: expected a number of seconds, at least 0.1");
    }
    let in_place = !args.json && std::io::stdout().is_terminal();
    // Until Ctrl-C (SIGINT ends the process, as for watch(1)) or the mount goes away.
    loop {
        let text = match render(&path, args.json) {
            Ok(t) => t,
            Err(e) => return crate::fail(&e),
        };
        let mut out = std::io::stdout().lock();
        // Home and clear to the end of the screen: the table redrawn in place.
        let written = if in_place {
            write!(out, "\x1b[H\x1b[J{text}")
        } else if args.json {
            write!(out, "{text}")
        } else {
            writeln!(out, "{text}")
        };
        if written.and_then(|()| out.flush()).is_err() {
            // stdout closed (a pipe whose reader left): done.
            return ExitCode::SUCCESS;
        }
        drop(out);
        std::thread::sleep(Duration::from_secs_f64(secs));
    }
}

/// `rtmpfs resize MOUNTPOINT LIMIT=VALUE...`.
pub fn resize(args: &ResizeArgs) -> ExitCode {
    let path = match resolve(&args.mountpoint) {
        Ok(p) => p,
        Err(e) => return crate::fail(&e),
    };
    let list = args.limits.join(",");
    match ask(&path, &format!("resize {list}")) {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => crate::fail(&e),
    }
}
