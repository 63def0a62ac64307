//! [`OPTION_TABLE`] documents every option the parser accepts.
//!
//! The parser's keys are the string patterns of `MountOptions::apply` and `apply_flag`. They are
//! read from this crate's own source rather than from a second list, because a second list is
//! exactly what drifts: whoever adds a match arm (a new option) is caught here without having to
//! remember anything else. The scan is checked both ways: it must find the options the parser is
//! known to take, and every scanned literal is put to the parser, whose verdict decides whether it
//! is an option (values such as `never` or `on` that sit in the same matches are not).

use super::{MountOptions, OptionError, OPTION_TABLE};

const SOURCE: &str = include_str!("../options.rs");

/// The string literals of the match-arm patterns of `apply` and `apply_flag`: lines that begin
/// with a literal or with `| "`, up to their `=>`.
fn pattern_literals() -> Vec<&'static str> {
    let start = SOURCE.find("fn apply<'a>(").expect("MountOptions::apply in options.rs");
    let flags = start
        + SOURCE[start..]
            .find("fn apply_flag(")
            .expect("apply_flag follows apply");
    // apply_flag ends at the first line that closes a method (4-space indent, rustfmt's).
    let end = flags + SOURCE[flags..].find("\n    }\n").expect("the end of apply_flag");
    let mut names = Vec::new();
    for line in SOURCE[start..end].lines() {
        let pattern = line.trim_start().trim_start_matches('|').trim_start();
        if !pattern.starts_with('"') {
            continue;
        }
        let pattern = pattern.split("=>").next().unwrap_or(pattern);
        names.extend(pattern.split('"').skip(1).step_by(2));
    }
    names
}

/// The names the table documents: each ", "-separated variant of a row's syntax up to `=`.
fn table_names() -> Vec<String> {
    OPTION_TABLE
        .iter()
        .flat_map(|row| row.syntax.split(", "))
        .map(|variant| variant.split('=').next().unwrap().to_string())
        .collect()
}

/// Whether the parser takes `name` as an option, as a flag or with some value.
fn accepted(name: &str) -> bool {
    let known =
        |r: Result<MountOptions, OptionError>| !matches!(r, Err(OptionError::Unknown(_) | OptionError::Unsupported(_)));
    known(MountOptions::parse(&[name])) || known(MountOptions::parse(&[format!("{name}=1")]))
}

#[test]
fn scan_finds_the_parsers_options() {
    let scanned = pattern_literals();
    for name in ["size", "nr_inodes", "ro", "noswap", "io_uring", "defaults", "comment"] {
        assert!(
            scanned.contains(&name),
            "the scan of apply/apply_flag missed {name}: {scanned:?}"
        );
    }
}

#[test]
fn every_option_the_parser_accepts_is_in_the_table() {
    let table = table_names();
    let missing: Vec<&str> = pattern_literals()
        .into_iter()
        .filter(|name| accepted(name) && !table.iter().any(|t| t == name))
        .collect();
    assert!(
        missing.is_empty(),
        "options the parser accepts but OPTION_TABLE does not document: {missing:?} \
         (add them, then regenerate docs/rtmpfs.8 and docs/fuse.md's table: tests/manual.rs)"
    );
}

#[test]
fn prefix_options_are_in_the_table() {
    // Options matched by prefix rather than by a literal arm.
    assert!(accepted("x-systemd.automount"));
    assert!(table_names().iter().any(|t| t == "x-*"));
}
