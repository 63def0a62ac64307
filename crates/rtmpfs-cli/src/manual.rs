//! Where people look for help, generated from one source: the option list of `--help`, the man
//! page `rtmpfs(8)`, docs/fuse.md's option table (all from [`OPTION_TABLE`]), the bash and zsh
//! completions (from the clap command), and the `--version` line.
//!
//! `rtmpfs --generate man|bash|zsh|options-md` prints each; `scripts/install.sh` installs the
//! first three, and `tests/manual.rs` checks that docs/rtmpfs.8 and docs/fuse.md are current.

use std::fmt::Write as _;

use roff::{bold, roman, Inline, Roff};
use rtmpfs_fuse::options::{OptionDoc, OPTION_TABLE};

/// What `--generate` can print.
pub const GENERATED: [&str; 4] = ["man", "bash", "zsh", "options-md"];

/// Column of the option descriptions in `--help`.
const HELP_INDENT: usize = 25;
/// Width `--help` wraps the option list to.
const HELP_WIDTH: usize = 96;

/// What follows the option list, in `--help` and (as NOTES) in the man page.
const NOTES: &[&str] = &[
    "Unknown or malformed options are refused, naming the option; nothing is mounted.",
    "Without root, rtmpfs mounts through fusermount3, with its rules: nosuid,nodev; allow_other only \
     with user_allow_other in /etc/fuse.conf; the root directory the user's, mode 0700 unless mode=.",
    "Remount changes ro/rw, size= and nr_inodes= (and kernel flags); it refuses a new value for \
     the other options (repeating the current one is fine).",
    "A container limit needs memory= + 32 MiB + 12 MiB per GiB of size= (see docs/fuse.md). \
     Under the mount helper, logs go to syslog.",
    "Ends (exit 0, nothing left mounted) on SIGINT, SIGTERM, `umount DIR` or `fusermount3 -u DIR`.",
];

/// The fstab example of `--help` and the man page.
const FSTAB_LINE: &str = "TAG  /mnt/x  fuse.rtmpfs  size=1G,mode=1777  0 0";

/// `rtmpfs 0.1.0 (FUSE protocol 7.40)`: the crate's version and the FUSE protocol version we
/// speak (the kernel may agree on a lower minor at INIT).
#[must_use]
pub fn version() -> String {
    let (major, minor) = fuser::KERNEL_ABI_VERSION;
    format!("{} (FUSE protocol {major}.{minor})", env!("CARGO_PKG_VERSION"))
}

/// The text of `--help` after the flags: the mount options, the notes, the mount helper.
#[must_use]
pub fn help_footer() -> String {
    let mut out = String::from("Mount options (-o, comma-separated, tmpfs syntax; later ones win):\n");
    for row in OPTION_TABLE {
        out.push_str(&help_row(row));
    }
    for note in NOTES {
        out.push_str(&wrap(&plain(note), 0, HELP_WIDTH).join("\n"));
        out.push('\n');
    }
    out.push_str("As mount helper: mount -t fuse.rtmpfs TAG DIR -o size=1G, or in /etc/fstab:\n  ");
    out.push_str(FSTAB_LINE);
    out.push_str("\nSee man rtmpfs and docs/fuse.md.");
    out
}

/// One option in `--help`: the syntax, then the meaning and default from column
/// [`HELP_INDENT`] (on the next line when the syntax is wider than the column).
fn help_row(row: &OptionDoc) -> String {
    let mut text = plain(row.meaning);
    if !row.default.is_empty() {
        let _ = write!(text, ". Default: {}", plain(row.default)); // a String never fails
    }
    text.push('.');
    let lines = wrap(&text, HELP_INDENT, HELP_WIDTH);
    let head = format!("  {}", row.syntax);
    let mut out = if head.len() + 2 > HELP_INDENT {
        // Too wide for the column: the syntax on lines of its own, the text below.
        let mut syntax = wrap(row.syntax, 2, HELP_WIDTH).join("\n");
        syntax.push('\n');
        syntax.push_str(&lines[0]);
        syntax
    } else {
        format!("{head:<HELP_INDENT$}{}", lines[0].trim_start())
    };
    for l in &lines[1..] {
        out.push('\n');
        out.push_str(l);
    }
    out.push('\n');
    out
}

/// Words of `text` in lines of at most `width` columns, each indented by `indent` (a word
/// longer than a line gets a line of its own).
fn wrap(text: &str, indent: usize, width: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    let mut lines = Vec::new();
    let mut cur = pad.clone();
    for word in text.split_whitespace() {
        if cur.len() > indent && cur.len() + 1 + word.len() > width {
            lines.push(std::mem::replace(&mut cur, pad.clone()));
        }
        if cur.len() > indent {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    lines.push(cur);
    lines
}

/// Table text without its markup (backticks).
fn plain(s: &str) -> String {
    s.replace('`', "")
}

/// docs/fuse.md's option table (markdown), between its marker comments.
#[must_use]
pub fn options_markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from("| option | meaning | default |\n|---|---|---|\n");
    for row in OPTION_TABLE {
        let syntax: Vec<String> = row.syntax.split(", ").map(|v| format!("`{}`", cell(v))).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            syntax.join(", "),
            cell(row.meaning),
            cell(row.default)
        );
    }
    out
}

/// Table text as roff inlines: backticked parts bold, the rest roman.
fn roff_inlines(s: &str) -> Vec<Inline> {
    s.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { bold(part) } else { roman(part) })
        .collect()
}

/// The man page `rtmpfs(8)`: clap_mangen's title, name, synopsis, description and flags, then
/// MOUNT OPTIONS from [`OPTION_TABLE`], NOTES, EXAMPLES, VERSION and SEE ALSO.
#[must_use]
pub fn man_page(cmd: &clap::Command) -> String {
    let man = clap_mangen::Man::new(visible(cmd))
        .section("8")
        .manual("System Administration");
    let mut out: Vec<u8> = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let _ = man.render_options_section(&mut out);
    let mut page = String::from_utf8_lossy(&out).into_owned();
    page.push_str(&man_sections().render());
    page
}

/// The sections of the man page that clap does not know about.
fn man_sections() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["MOUNT OPTIONS"]);
    r.text([roman(
        "Given with -o, comma-separated, in tmpfs syntax; later ones win.",
    )]);
    for row in OPTION_TABLE {
        r.control("TP", []);
        r.text([bold(row.syntax)]);
        let mut text = roff_inlines(row.meaning);
        if row.default.is_empty() {
            text.push(roman("."));
        } else {
            text.push(roman(". Default: "));
            text.extend(roff_inlines(row.default));
            text.push(roman("."));
        }
        r.text(text);
    }
    r.control("SH", ["NOTES"]);
    for note in NOTES {
        r.control("PP", []);
        r.text(roff_inlines(note));
    }
    r.control("SH", ["EXAMPLES"]);
    r.text([bold("rtmpfs /mnt/x -o size=1G,memory=256m")]);
    r.control("br", []);
    r.text([bold("mount -t fuse.rtmpfs TAG /mnt/x -o size=1G")]);
    r.control("PP", []);
    r.text([roman("In /etc/fstab:")]);
    r.control("br", []);
    r.text([roman(FSTAB_LINE)]);
    r.control("SH", ["VERSION"]);
    r.text([roman(version())]);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "mount(8), fusermount3(1), tmpfs(5), and docs/fuse.md in the source.",
    )]);
    r
}

/// The command as users see it, for the man page and the completions: without the hidden
/// flags (`--ready-fd`, `--generate`; the bash generator would offer them) and with MOUNTPOINT
/// required (it is, unless `--generate` is given).
fn visible(cmd: &clap::Command) -> clap::Command {
    let shown: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        // "required unless --generate": that flag is not in this copy.
        .map(|a| {
            a.clone()
                .required_unless_present(clap::builder::Resettable::<clap::Id>::Reset)
        })
        .collect();
    clap::Command::new("rtmpfs")
        .about(cmd.get_about().cloned().unwrap_or_default())
        .long_about(cmd.get_long_about().cloned().unwrap_or_default())
        .version(version())
        .args(shown)
        .mut_arg("mountpoint", |a| a.required(true))
}

/// A completion script for `shell` (`bash` or `zsh`).
#[must_use]
pub fn completions(cmd: &clap::Command, shell: clap_complete::Shell) -> String {
    let mut out: Vec<u8> = Vec::new();
    clap_complete::generate(shell, &mut visible(cmd), "rtmpfs", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}
