//! `rtmpfs MOUNTPOINT [-o OPTIONS]`: mount a tmpfs served by this process over FUSE, and serve
//! it in the foreground until SIGINT, SIGTERM or an external unmount. `rtmpfs status` and
//! `rtmpfs resize` talk to the daemon of a live mount (see `client.rs`).
//!
//! Installed as `mount.fuse.rtmpfs` (`argv[0]`), the same binary is mount(8)'s helper for
//! `mount -t fuse.rtmpfs TAG DIR -o ...` and fstab lines; see `helper.rs`.

mod client;
mod export;
mod helper;
mod logging;
mod manual;

use clap::{CommandFactory, FromArgMatches};
use rtmpfs_fuse::daemon::{self, ReadyPipe};
use rtmpfs_fuse::MountOptions;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

/// tmpfs in Rust, served over FUSE.
///
/// rtmpfs mounts a tmpfs on MOUNTPOINT and serves it from this process over FUSE, in the
/// foreground, until SIGINT, SIGTERM or an unmount. Its files live in this process's memory,
/// within the limits of the mount options below; with memory=, cold pages go to a private swap
/// file on disk.
#[derive(Debug, clap::Parser)]
#[command(
    name = "rtmpfs",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
struct Cli {
    /// What to do with a live mount (without one: mount MOUNTPOINT).
    #[command(subcommand)]
    sub: Option<Sub>,
    /// Directory to mount on.
    #[arg(required_unless_present = "generate", value_hint = clap::ValueHint::DirPath)]
    mountpoint: Option<PathBuf>,
    /// Mount options (see below); may be repeated.
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Same as `rtmpfs status MOUNTPOINT` (an alias kept for scripts).
    #[arg(long)]
    stats: bool,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Write "ok" or "error: ..." to this descriptor once mounted (used by the mount helper).
    #[arg(long, hide = true)]
    ready_fd: Option<i32>,
    /// Print the man page, a bash or zsh completion script, or docs/fuse.md's option table,
    /// and exit (used by scripts/install.sh and the tests).
    #[arg(long, hide = true, value_name = "WHAT", value_parser = manual::GENERATED)]
    generate: Option<String>,
}

/// The commands for a live mount.
#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Show a mounted rtmpfs: each limit with its use, where the pages are, open files,
    /// eviction and swap-in rates, request counts and latencies. Root and the mount's owner only.
    Status(client::StatusArgs),
    /// Change size=, nr_inodes= and memory= of a mounted rtmpfs (root and the mount's owner):
    /// a lower memory= evicts to swap before returning; a limit below what is in use is refused.
    Resize(client::ResizeArgs),
    /// Write an image of a mounted rtmpfs, the tree as it was at one instant, to FILE (root and
    /// the mount's owner): written beside FILE and renamed over it, so a failure leaves the
    /// previous FILE intact; encrypted when the mount has image_key=. Restore it with -o
    /// restore=FILE.
    Snapshot(client::SnapshotArgs),
    /// Write a mounted rtmpfs (snapshotted first) or an image as a POSIX pax tar archive that
    /// GNU tar reads back: times to the nanosecond, xattrs, hard links, device nodes, fifos,
    /// sparse files (GNU sparse 1.0). Sockets are left out, each named on stderr.
    Export(export::ExportArgs),
}

/// The command line: the derived flags, with the version and the option list generated
/// (see `manual.rs`).
fn command() -> clap::Command {
    Cli::command()
        .version(manual::version())
        .after_help(manual::help_footer())
}

/// Print what `--generate` asks for.
fn generate(what: &str) -> ExitCode {
    use clap_complete::Shell;
    let text = match what {
        "man" => manual::man_page(&command()),
        "bash" => manual::completions(&command(), Shell::Bash),
        "zsh" => manual::completions(&command(), Shell::Zsh),
        "options-md" => manual::options_markdown(),
        other => {
            return fail(&format!(
                "--generate {other}: expected one of man, bash, zsh, options-md"
            ))
        }
    };
    print!("{text}");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("mount.fuse.rtmpfs") || name.starts_with("mount.rtmpfs") {
        return helper::main(std::env::args_os().skip(1).collect());
    }
    let cli = match command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(c) => c,
        Err(e) => return clap_error(&e),
    };
    if let Some(what) = &cli.generate {
        return generate(what);
    }
    match &cli.sub {
        Some(Sub::Status(args)) => return client::status(args),
        Some(Sub::Resize(args)) => return client::resize(args),
        Some(Sub::Snapshot(args)) => return client::snapshot(args),
        Some(Sub::Export(args)) => return export::export(args),
        None => {}
    }
    // clap requires MOUNTPOINT unless --generate was given.
    let Some(mountpoint) = cli.mountpoint.clone() else {
        return fail("missing MOUNTPOINT (usage: rtmpfs MOUNTPOINT [-o OPTIONS]; see --help)");
    };
    // Started by the mount helper (which passes --ready-fd): stderr is /dev/null.
    logging::init(cli.verbose, cli.ready_fd.is_some());
    if cli.stats {
        return client::status(&client::StatusArgs::table(mountpoint));
    }
    let opts = match MountOptions::parse(&cli.options) {
        Ok(o) => o,
        Err(e) => return fail(&e.to_string()),
    };
    if opts.remount {
        return fail("remount: use `mount -o remount,... DIR` (through mount.fuse.rtmpfs)");
    }
    let ready = cli.ready_fd.map(|fd| {
        // SAFETY: the mount helper passes a pipe's write end that it left open for us and
        // that nothing else in this process owns.
        let f = unsafe { File::from_raw_fd(fd) };
        Box::new(ReadyPipe(f)) as Box<dyn daemon::Ready>
    });
    match daemon::serve(&mountpoint, opts, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("rtmpfs: {msg}");
    ExitCode::FAILURE
}

/// clap's errors are several lines long; say the one that matters.
fn clap_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::MissingRequiredArgument => {
            fail("missing MOUNTPOINT (usage: rtmpfs MOUNTPOINT [-o OPTIONS]; see --help)")
        }
        _ => {
            let text = e.to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            fail(&format!("{first} (see --help)"))
        }
    }
}
