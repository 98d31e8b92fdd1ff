//! Output on a terminal and off it: piped output has no escape codes at all; on a terminal (a
//! pseudo-terminal made by util-linux `script`) errors are coloured unless NO_COLOR is set, and
//! a push shows a progress bar, which piped output never has.
mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Whether `text` holds an SGR (colour) escape sequence: ESC [ digits/semicolons m.
fn has_colour(text: &str) -> bool {
    text.split('\x1b').skip(1).any(|after| {
        after.strip_prefix('[').is_some_and(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == ';'))
                .unwrap_or(rest.len());
            rest[end..].starts_with('m')
        })
    })
}

fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// Runs `tether ARGS…` on a pseudo-terminal (stdout and stderr both on it) and returns its exit
/// status and everything it wrote; `None` when `script` is not installed.
fn on_terminal(args: &[&str], no_color: bool) -> Option<(Option<i32>, String)> {
    let script = Path::new("/usr/bin/script");
    if !script.exists() {
        eprintln!("skipped: util-linux script(1) is not installed, no pseudo-terminal to test on");
        return None;
    }
    let line = std::iter::once(env!("CARGO_BIN_EXE_tether"))
        .chain(args.iter().copied())
        .map(quoted)
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new(script);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TETHER_") {
            command.env_remove(name);
        }
    }
    command
        .args(["-qec", &line, "/dev/null"])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .stdin(std::process::Stdio::null());
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let out = command.output().unwrap();
    Some((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn piped_output_has_no_escape_codes() {
    let server = Server::start(&["--model", TASK]);
    let (dir, path) = database(&server);
    let db = path.to_str().unwrap();
    open_plain(&path)
        .execute(
            "INSERT INTO tasks (title) VALUES ('far too long for the server')",
            [],
        )
        .unwrap();
    let missing = dir.path().join("missing.db");
    for args in [
        vec!["--db", db, "push"],
        vec!["--db", db, "sync"],
        vec!["--db", db, "status"],
        vec!["--db", db, "config"],
        vec!["--db", db, "config", "ca_file"],
        vec!["--db", missing.to_str().unwrap(), "status"],
        vec!["sync"],
        vec!["--help"],
        vec!["track", "--help"],
    ] {
        let out = command()
            .args(&args)
            .env("TERM", "xterm-256color")
            .output()
            .unwrap();
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !stream.contains(&0x1b),
                "{args:?}: {:?}",
                String::from_utf8_lossy(stream)
            );
        }
    }
}

#[test]
fn colour_on_a_terminal_only_without_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let missing = missing.to_str().unwrap();
    let Some((code, coloured)) = on_terminal(&["--db", missing, "status"], false) else {
        return;
    };
    assert_eq!(code, Some(1), "{coloured:?}");
    assert!(coloured.contains("no such database"), "{coloured:?}");
    assert!(has_colour(&coloured), "{coloured:?}");
    let (code, plain) = on_terminal(&["--db", missing, "status"], true).unwrap();
    assert_eq!(code, Some(1));
    assert!(plain.contains("no such database"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "NO_COLOR: {plain:?}");
    // clap's usage errors follow NO_COLOR too.
    let (code, usage) = on_terminal(&["sync"], true).unwrap();
    assert_eq!(code, Some(2), "{usage:?}");
    assert!(!has_colour(&usage), "{usage:?}");
}

#[test]
fn a_progress_bar_shows_on_a_terminal_only() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    let db = path.to_str().unwrap();
    {
        let conn = open_plain(&path);
        for i in 0..40 {
            conn.execute("INSERT INTO tasks (title) VALUES (?1)", [format!("t{i}")])
                .unwrap();
        }
    }
    tether(&path, &["config", "push_batch_size", "1"]);
    let Some((code, shown)) = on_terminal(&["--db", db, "push"], true) else {
        return;
    };
    assert_eq!(code, Some(0), "{shown:?}");
    assert!(
        shown.contains("pushing") && shown.contains("/41 mutations"),
        "{shown:?}"
    );
    assert!(!has_colour(&shown), "{shown:?}");
    assert!(shown.contains("Pushed"), "{shown:?}");

    // Piped: the same push shows none.
    open_plain(&path)
        .execute("INSERT INTO tasks (title) VALUES ('one more')", [])
        .unwrap();
    let out = tether(&path, &["push"]);
    assert!(out.status.success());
    assert!(text(&out).1.is_empty(), "{:?}", text(&out));
    // -q: none either, even on a terminal.
    open_plain(&path)
        .execute("INSERT INTO tasks (title) VALUES ('and another')", [])
        .unwrap();
    let (code, quiet) = on_terminal(&["--db", db, "-q", "push"], true).unwrap();
    assert_eq!(code, Some(0));
    assert!(quiet.trim().is_empty(), "{quiet:?}");
}
