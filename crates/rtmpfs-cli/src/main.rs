//! `rtmpfs MOUNTPOINT [-o OPTIONS]`: mount a tmpfs served by this process over FUSE, and serve
//! it in the foreground until SIGINT, SIGTERM or an external unmount.
//!
//! Installed as `mount.fuse.rtmpfs` (argv[0]), the same binary is mount(8)'s helper for
//! `mount -t fuse.rtmpfs TAG DIR -o ...` and fstab lines; see `helper.rs`.

mod helper;
mod logging;

use clap::Parser;
use rtmpfs_fuse::daemon::{self, ReadyPipe};
use rtmpfs_fuse::MountOptions;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

const OPTIONS_HELP: &str = "\
Mount options (-o, comma-separated, tmpfs syntax; later ones win):
  size=N[k|m|g|t|p|e|%]  Size limit for file data; % of RAM. Default 50%. 0 = unlimited.
                         Rounded up to whole 4 KiB pages.
  nr_blocks=N[k|m|g]     The same limit in 4 KiB pages. 0 = unlimited.
  nr_inodes=N[k|m|g]     Most inodes (each hard link and xattr costs inode space, as tmpfs).
                         Default: RAM pages / 2. 0 = unlimited.
  mode=OCTAL             Permission bits of the root directory. Default 1777.
  uid=N, gid=N           Owner and group of the root directory. Default: who mounts.
  ro, rw                 Read-only or read-write (default rw). `mount -o remount,ro DIR`
                         switches a mount made by mount.fuse.rtmpfs.
  nosuid, suid           Ignore set-user/group-ID bits on executables (default: honour).
  nodev, dev             Refuse access to device nodes (default: allow).
  noexec, exec           Refuse to execute files (default: allow).
  noatime, relatime, strictatime, nodiratime, lazytime, sync, dirsync
                         Passed to the kernel as for any filesystem; noatime also stops the
                         engine from updating access times.
  memory=N[k|m|g|%]      RAM budget for file data: beyond it, cold pages go to a private,
                         encrypted swap file (size= still bounds the total). Default: none.
  swap=DIR               Directory for the swap file (an anonymous O_TMPFILE). Default $TMPDIR
                         or /tmp.
  swap_size=N[k|m|g]     Most the swap file may hold. Default: size - memory. Refused if
                         larger than the free space of swap='s filesystem (the default only
                         warns); swap= must name an existing directory.
  noswap                 With memory=, no swap file: the budget is a hard cap (ENOSPC).
                         Refused with swap= or swap_size=.
  swap_encrypt=0|1       Seal swapped pages with AES-256-GCM, key only in memory. Default 1.
  threads=N              Threads serving FUSE requests, 1-64. Default 2.
  direct_io              Bypass the kernel page cache for file data: one copy of the data (in
                         rtmpfs, within size=), every read and write a round trip to this
                         daemon. mmap still works. Default: kernel page cache kept, which is
                         much faster but holds a second copy of recently used pages outside
                         the size= accounting.
  writeback              FUSE writeback cache: writes land in the kernel's page cache and
                         reach rtmpfs later. Faster for many small writes, but a full size=
                         is reported by fsync or close instead of by the write. Default off.
  readahead=N[k|m]       The kernel's readahead window for this mount (default: the kernel's,
                         128k); larger windows make fewer, bigger READ requests.
  fsname=NAME            The mount's source, as shown by /proc/mounts (default rtmpfs).
  huge=..., inode64      Accepted for tmpfs compatibility; no effect.
  defaults, auto, noauto, nofail, _netdev, x-*, comment=...
                         fstab options; ignored.
Unknown or malformed options are refused, naming the option; nothing is mounted.
Remount changes ro/rw, size= and nr_inodes= (and kernel flags); it refuses a new value for the
other options (repeating the current one is fine). A container limit needs memory= + 32 MiB
+ 12 MiB per GiB of size= (see docs/fuse.md). Under the mount helper, logs go to syslog.

Ends (exit 0, nothing left mounted) on SIGINT, SIGTERM, `umount DIR` or `fusermount3 -u DIR`.
As mount helper: `mount -t fuse.rtmpfs TAG DIR -o size=1G`, or in /etc/fstab:
  TAG  /mnt/x  fuse.rtmpfs  size=1G,mode=1777  0 0
See docs/fuse.md.";

/// tmpfs in Rust, served over FUSE.
#[derive(Debug, Parser)]
#[command(name = "rtmpfs", version, after_help = OPTIONS_HELP)]
struct Cli {
    /// Directory to mount on.
    mountpoint: PathBuf,
    /// Mount options (see below); may be repeated.
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Print the request counters and usage of the rtmpfs daemon serving MOUNTPOINT, and exit.
    #[arg(long)]
    stats: bool,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Write "ok" or "error: ..." to this descriptor once mounted (used by the mount helper).
    #[arg(long, hide = true)]
    ready_fd: Option<i32>,
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
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_error(&e),
    };
    // Started by the mount helper (which passes --ready-fd): stderr is /dev/null.
    logging::init(cli.verbose, cli.ready_fd.is_some());
    if cli.stats {
        return stats(&cli);
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
    match daemon::serve(&cli.mountpoint, opts, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn stats(cli: &Cli) -> ExitCode {
    let path = match cli.mountpoint.canonicalize() {
        Ok(p) => p,
        Err(e) => return fail(&format!("{}: {e}", cli.mountpoint.display())),
    };
    match rtmpfs_fuse::control::request(&path, "stats") {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("{}: {e}", path.display())),
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
