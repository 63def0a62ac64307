//! Where people look for help (issue 12, item 5): `--help`, the man page docs/rtmpfs.8 and
//! docs/fuse.md's option table come from one table (`OPTION_TABLE`) and cannot drift; the bash
//! and zsh completions generate and parse; `--version` names the FUSE protocol spoken.

mod common;

use common::{rtmpfs_bin, run};
use rtmpfs_fuse::options::OPTION_TABLE;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn rtmpfs(args: &[&str]) -> Output {
    run(Command::new(rtmpfs_bin()).args(args), T)
}

/// stdout of a successful `rtmpfs ARGS`.
fn stdout_of(args: &[&str]) -> String {
    let out = rtmpfs(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn docs(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(name)
}

/// Whether `tool` runs here (for the optional syntax checks by bash, zsh and man).
fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn help_and_man_page_list_every_option_of_the_table() {
    let help = stdout_of(&["--help"]);
    let man = stdout_of(&["--generate", "man"]);
    for row in OPTION_TABLE {
        for variant in row.syntax.split(", ") {
            assert!(help.contains(variant), "--help lacks {variant}");
            // roff escapes the minus sign.
            assert!(man.contains(&variant.replace('-', "\\-")), "man page lacks {variant}");
        }
        let first_words: String = row
            .meaning
            .replace('`', "")
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            help.contains(&first_words),
            "--help lacks '{first_words}' ({})",
            row.syntax
        );
    }
    assert!(
        man.contains(".SH \"MOUNT OPTIONS\"") || man.contains(".SH MOUNT OPTIONS"),
        "{man}"
    );
    assert!(
        man.starts_with(".ie") && man.contains(".TH rtmpfs 8"),
        "not a section 8 page"
    );
}

#[test]
fn checked_in_man_page_is_current() {
    let generated = stdout_of(&["--generate", "man"]);
    let checked_in = std::fs::read_to_string(docs("rtmpfs.8")).unwrap();
    assert!(
        generated == checked_in,
        "docs/rtmpfs.8 is stale: run `target/debug/rtmpfs --generate man > docs/rtmpfs.8`"
    );
    if have("man") {
        let out = run(
            Command::new("man")
                .args(["-l", "-Tutf8"])
                .arg(docs("rtmpfs.8"))
                .env("MANWIDTH", "100"),
            T,
        );
        // man overstrikes bold text: keep what is printed last.
        let text = String::from_utf8_lossy(&out.stdout);
        let text = strip_overstrike(&text);
        assert!(out.status.success() && text.contains("MOUNT OPTIONS"), "{out:?}");
    }
}

/// Text without terminal overstrikes (`X\u{8}X` bold, `_\u{8}X` underline).
fn strip_overstrike(s: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in s.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

#[test]
fn fuse_md_option_table_is_current() {
    let md = std::fs::read_to_string(docs("fuse.md")).unwrap();
    let begin = md
        .find("<!-- options table: generated")
        .expect("begin marker in docs/fuse.md");
    let body = &md[begin..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body
        .find("<!-- end of options table -->")
        .expect("end marker in docs/fuse.md");
    let generated = stdout_of(&["--generate", "options-md"]);
    assert!(
        body[..end] == generated,
        "docs/fuse.md's option table differs from OPTION_TABLE: replace it with \
         `target/debug/rtmpfs --generate options-md`\n--- in docs/fuse.md:\n{}\n--- generated:\n{generated}",
        &body[..end]
    );
}

#[test]
fn completions_generate_for_bash_and_zsh() {
    let bash = stdout_of(&["--generate", "bash"]);
    assert!(
        bash.contains("complete -F _rtmpfs") && bash.contains("--stats"),
        "{bash}"
    );
    assert!(
        !bash.contains("--generate") && !bash.contains("--ready-fd"),
        "hidden flags offered"
    );
    let zsh = stdout_of(&["--generate", "zsh"]);
    assert!(zsh.starts_with("#compdef rtmpfs") && zsh.contains("--stats"), "{zsh}");
    for (shell, script) in [("bash", &bash), ("zsh", &zsh)] {
        if !have(shell) {
            eprintln!("{shell} absent: syntax of its script not checked");
            continue;
        }
        let path = std::env::temp_dir().join(format!("rtmpfs-completion-{}.{shell}", std::process::id()));
        std::fs::write(&path, script).unwrap();
        let out = run(Command::new(shell).arg("-n").arg(&path), T);
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "{shell} -n: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn version_names_the_fuse_protocol() {
    let (major, minor) = fuser::KERNEL_ABI_VERSION;
    let want = format!("rtmpfs {} (FUSE protocol {major}.{minor})\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(stdout_of(&["--version"]), want);
    assert_eq!(stdout_of(&["-V"]), want);
    assert_eq!(
        (major, minor),
        (7, 40),
        "the fork speaks 7.40; update docs/fuse.md if it changes"
    );
}

#[test]
fn bad_generate_and_missing_mountpoint_are_one_line_errors() {
    for args in [&["--generate", "fish"][..], &[][..], &["-o", "size=1m"][..]] {
        let out = rtmpfs(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("rtmpfs: "), "{stderr}");
    }
}

#[test]
fn install_script_installs_man_page_and_completions() {
    let prefix = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install.sh");
    let p = prefix.path();
    let install = |extra: &[&str]| {
        let out = run(
            Command::new("bash")
                .arg(&script)
                .arg("--bin")
                .arg(rtmpfs_bin())
                .arg("--prefix")
                .arg(p)
                .arg("--sbin")
                .arg(p.join("sbin"))
                .args(extra),
            T,
        );
        assert!(out.status.success(), "install.sh {extra:?}: {out:?}");
    };
    install(&[]);
    let man = p.join("share/man/man8/rtmpfs.8");
    let bash = p.join("share/bash-completion/completions/rtmpfs");
    let zsh = p.join("share/zsh/site-functions/_rtmpfs");
    assert_eq!(
        std::fs::read_to_string(&man).unwrap(),
        std::fs::read_to_string(docs("rtmpfs.8")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(&bash).unwrap(),
        stdout_of(&["--generate", "bash"])
    );
    assert!(std::fs::read_to_string(&zsh).unwrap().starts_with("#compdef rtmpfs"));
    assert!(p.join("bin/rtmpfs").exists() && p.join("sbin/mount.fuse.rtmpfs").exists());
    install(&["--uninstall"]);
    for f in [
        &man,
        &bash,
        &zsh,
        &p.join("bin/rtmpfs"),
        &p.join("sbin/mount.fuse.rtmpfs"),
    ] {
        assert!(!f.exists(), "{} left after --uninstall", f.display());
    }
}
