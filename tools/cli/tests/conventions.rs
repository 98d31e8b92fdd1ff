//! Command-line conventions: usage errors exit 2, `config --unset` and "(not set)", one JSON
//! shape per command, `-q`/`-v`, help on every argument, exit codes in `--help`, `watch`
//! stopping on configuration errors, `push` printing push figures only.
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[test]
fn usage_errors_exit_2() {
    let (_dir, path) = tracked();
    let db = path.to_str().unwrap();
    for (args, expected) in [
        (vec!["sync"], "no database given"),
        (vec!["status"], "no database given"),
        (
            vec!["watch", "--db", db, "--kind", "later"],
            "invalid value 'later' for '--kind <KIND>'",
        ),
        (
            vec![
                "track",
                "--db",
                db,
                "tasks",
                "--columns",
                "a",
                "--except",
                "b",
            ],
            "cannot be used with",
        ),
        (
            vec!["-q", "push", "--db", db, "--json"],
            "cannot be used with",
        ),
        (vec!["push", "--db", db, "-q", "-v"], "cannot be used with"),
        (
            vec!["config", "--db", db, "server_url", "x", "--unset"],
            "cannot be used with",
        ),
        (vec!["config", "--db", db, "--unset"], "required"),
        (vec!["demo", "--db", db], "unexpected argument '--db'"),
        (vec!["--db", db, "demo"], "--db does not apply to demo"),
        (vec!["launch"], "unrecognized subcommand"),
    ] {
        let out = tether_args(&args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    // TETHER_DB stands in for --db, and --db works before or after the command.
    let out = command()
        .env("TETHER_DB", &path)
        .args(["config", "sync_key"])
        .output()
        .unwrap();
    assert_eq!(text(&out).0.trim(), "tether_id", "{:?}", text(&out));
    for args in [
        vec!["--db", db, "config", "sync_key"],
        vec!["config", "sync_key", "--db", db],
    ] {
        assert_eq!(text(&tether_args(&args)).0.trim(), "tether_id", "{args:?}");
    }
}

#[test]
fn config_unset_removes_and_null_is_only_text() {
    let (_dir, path) = tracked();
    let stored = || -> Vec<String> {
        common::column(
            &open_plain(&path),
            "SELECT value FROM tether_settings WHERE key = 'auth_token'",
        )
    };
    // NULL is a value like any other here (a token could be that word); a warning says so.
    let out = tether(&path, &["config", "auth_token", "NULL"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "auth_token = ***");
    assert!(stderr.contains("--unset"), "{stderr}");
    assert_eq!(stored(), ["NULL"]);

    let out = tether(&path, &["config", "auth_token", "--unset"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0.trim(), "auth_token unset; now not set");
    assert!(stored().is_empty());

    // Not set: nothing on stdout, "(not set)" on stderr, exit 0.
    let out = tether(&path, &["config", "auth_token"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout, "");
    assert_eq!(stderr.trim(), "(not set)");

    // Unsetting a setting with a default shows what applies now.
    tether(&path, &["config", "push_batch_size", "7"]);
    let out = tether(&path, &["config", "push_batch_size", "--unset"]);
    assert!(
        text(&out).0.contains("now 100 (the default)"),
        "{:?}",
        text(&out)
    );
    // With the environment variable set, it says so.
    tether(&path, &["config", "push_batch_size", "7"]);
    let out = command()
        .env("TETHER_PUSH_BATCH_SIZE", "9")
        .args([
            "--db",
            path.to_str().unwrap(),
            "config",
            "push_batch_size",
            "--unset",
        ])
        .output()
        .unwrap();
    assert!(
        text(&out).0.contains("now 9 (from TETHER_PUSH_BATCH_SIZE)"),
        "{:?}",
        text(&out)
    );
    assert_eq!(
        text(&tether(&path, &["config", "push_batch_size"])).0,
        "100\n"
    );

    // An unknown key is an error naming the known ones.
    let out = tether(&path, &["config", "sever_url", "--unset"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("server_url"), "{:?}", text(&out));
}

#[test]
fn push_prints_push_figures_only_and_pull_pull_figures_only() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    let figures = |stdout: &str| -> Vec<String> {
        stdout
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .take_while(|w| w.parse::<i64>().is_err())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    let out = tether(&path, &["push"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(figures(&text(&out).0), ["Pushed", "Failed", "Conflicts"]);
    let out = tether(&path, &["pull"]);
    assert_eq!(figures(&text(&out).0), ["Pulled", "Pull errors"]);
    let out = tether(&path, &["sync"]);
    assert_eq!(
        figures(&text(&out).0),
        ["Pushed", "Failed", "Conflicts", "Pulled", "Pull errors"]
    );
}

const CYCLE_KEYS: [&str; 9] = [
    "conflicts",
    "failed",
    "pull_error_reasons",
    "pull_errors",
    "pulled",
    "pushed",
    "rejections",
    "skipped",
    "warnings",
];

#[test]
fn every_command_prints_one_json_shape() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    let json_of = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = tether(&path, &all);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        one_json_line(&stdout)
    };
    for kind in ["push", "pull", "sync"] {
        let result = json_of(&[kind]);
        assert_eq!(keys(&result), CYCLE_KEYS, "{kind}: {result}");
        assert_eq!(result["skipped"], false);
    }
    let status = json_of(&["status"]);
    for key in ["pending", "failed", "conflicts", "client_id", "tables"] {
        assert!(status.get(key).is_some(), "status lacks {key}: {status}");
    }

    open_plain(&path)
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    let tracked = json_of(&["track", "notes", "--except", "body"]);
    assert_eq!(tracked["table"], "notes");
    assert_eq!(tracked["model"], "Note");
    assert!(tracked["warnings"].is_array() && tracked["columns"].is_array());
    let untracked = json_of(&["untrack", "notes"]);
    assert_eq!(
        keys(&untracked),
        ["model", "pending", "table", "untracked"],
        "{untracked}"
    );

    // config: always an object of setting → value as `tether_config()` shows it.
    let all = json_of(&["config"]);
    assert_eq!(all["server_url"], server.url.as_str());
    assert!(all.as_object().unwrap().len() > 10, "{all}");
    assert_eq!(
        json_of(&["config", "server_url"]),
        json!({"server_url": server.url})
    );
    assert_eq!(
        json_of(&["config", "auth_token"]),
        json!({"auth_token": null})
    );
    assert_eq!(
        json_of(&["config", "auth_token", "s3cret"]),
        json!({"auth_token": "***"})
    );
    assert_eq!(
        json_of(&["config", "push_batch_size", "5"]),
        json!({"push_batch_size": 5})
    );
    assert_eq!(
        json_of(&["config", "sync_lock", "false"]),
        json!({"sync_lock": false})
    );
    assert_eq!(
        json_of(&["config", "push_batch_size", "--unset"]),
        json!({"push_batch_size": 100})
    );
    tether(&path, &["config", "auth_token", "--unset"]);
    tether(&path, &["config", "sync_lock", "--unset"]);

    // watch: one object per cycle, the same keys whether it worked or failed.
    let watch_lines = |url: &str| -> Vec<Value> {
        tether(&path, &["config", "server_url", url]);
        let child = command()
            .arg("--db")
            .arg(&path)
            .args(["watch", "--every", "1s", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        kill(&child, libc::SIGINT);
        let out = wait_at_most(child, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
        text(&out)
            .0
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let worked = watch_lines(&server.url);
    assert!(!worked.is_empty(), "{worked:?}");
    for line in &worked {
        assert_eq!(
            keys(line),
            ["error", "kind", "result", "retry_in_ms", "time"],
            "{line}"
        );
        assert_eq!(keys(&line["result"]), CYCLE_KEYS);
        assert_eq!(line["kind"], "sync");
        assert!(line["error"].is_null() && line["retry_in_ms"].is_null());
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
    }
    let failed = watch_lines(&refused_url());
    assert!(!failed.is_empty());
    for line in &failed {
        assert_eq!(
            keys(line),
            ["error", "kind", "result", "retry_in_ms", "time"],
            "{line}"
        );
        assert!(line["result"].is_null());
        assert!(line["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"));
        assert!(line["retry_in_ms"].as_u64().unwrap() > 0);
    }
}

#[test]
fn the_demo_prints_one_json_object() {
    server_binary();
    let out = tether_args(&["demo", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let demo = one_json_line(&stdout);
    assert_eq!(keys(&demo), ["events", "server_url"]);
    let events = demo["events"].as_array().unwrap();
    assert!(events.len() > 10, "{demo}");
    for event in events {
        assert_eq!(keys(event), ["client", "kind", "rows", "text"], "{event}");
    }
    let syncs: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "sql" && e["text"] == "SELECT tether_sync()")
        .collect();
    assert!(!syncs.is_empty());
    assert!(
        syncs.iter().any(|e| e["rows"][0][0]["conflicts"] == 1),
        "a conflict is reported: {demo}"
    );
}

#[test]
fn quiet_prints_only_errors_and_verbose_debugs_this_run_only() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    open_plain(&path)
        .execute(
            "INSERT INTO tasks (title) VALUES ('far too long for the server')",
            [],
        )
        .unwrap();
    let out = tether(&path, &["-q", "push"]);
    assert_eq!(out.status.code(), Some(3), "rejected: {:?}", text(&out));
    assert_eq!(text(&out), (String::new(), String::new()));

    let out = tether(&path, &["status", "-q"]);
    assert_eq!(text(&out), (String::new(), String::new()));

    let out = tether(&path, &["-q", "config", "auth_token"]);
    assert_eq!(
        text(&out),
        (String::new(), String::new()),
        "(not set) is a note"
    );

    tether(&path, &["config", "server_url", &refused_url()]);
    open_plain(&path)
        .execute("INSERT INTO tasks (title) VALUES ('fits')", [])
        .unwrap();
    let out = tether(&path, &["-q", "push"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).0.is_empty());
    assert!(
        text(&out).1.contains("connection refused"),
        "{:?}",
        text(&out)
    );

    tether(&path, &["config", "server_url", &server.url]);
    let out = tether(&path, &["-vv", "pull"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Pulled"), "{stdout}");
    assert!(
        stderr.contains("[TETHER] POST") && stderr.contains("/tether/pull"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[TETHER] pull"),
        "-vv includes level 1: {stderr}"
    );
    let out = tether(&path, &["-v", "pull"]);
    let stderr = text(&out).1;
    assert!(stderr.contains("[TETHER] pull"), "{stderr}");
    assert!(!stderr.contains("[TETHER] POST"), "-v is level 1: {stderr}");
    // Only that run: nothing was stored.
    assert_eq!(text(&tether(&path, &["config", "debug_level"])).0, "0\n");
    let out = tether(&path, &["pull"]);
    assert!(text(&out).1.is_empty(), "{:?}", text(&out));
}

#[test]
fn every_argument_has_help_and_help_lists_exit_codes() {
    let top = text(&tether_args(&["--help"])).0;
    for expected in ["Exit status", "130", "143", "  3 ", "  2 "] {
        assert!(top.contains(expected), "--help lacks {expected:?}: {top}");
    }
    for command in [
        "sync", "push", "pull", "status", "track", "untrack", "config", "watch", "demo",
    ] {
        let out = tether_args(&[command, "--help"]);
        let help = text(&out).0;
        assert!(out.status.success(), "{command}: {help}");
        assert!(help.contains("Exit status"), "{command}: {help}");
        let mut section = "";
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') {
                section = line;
                continue;
            }
            if !(section == "Arguments:" || section == "Options:") {
                continue;
            }
            let entry = line.trim_start();
            if !(entry.starts_with('-') || entry.starts_with('<') || entry.starts_with('[')) {
                continue;
            }
            // Beside the argument, or below it (clap's long layout).
            let beside = entry
                .split_once("  ")
                .is_some_and(|(_, help)| !help.trim().is_empty());
            let indent = line.len() - entry.len();
            let below = lines.get(i + 1).is_some_and(|next| {
                let text = next.trim_start();
                !text.is_empty() && next.len() - text.len() > indent
            });
            let described = beside || below;
            assert!(described, "{command}: no help for {entry:?}:\n{help}");
        }
        let offers_db = help.contains("--db <PATH>");
        assert_eq!(offers_db, command != "demo", "{command}: {help}");
        assert!(help.contains("--json"), "{command}: {help}");
    }
}

#[test]
fn watch_stops_on_configuration_errors_and_refuses_an_untracked_database() {
    let (_dir, path) = temp_db();
    open_plain(&path)
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        .unwrap();
    let watch = |path: &std::path::Path| {
        let child = command()
            .arg("--db")
            .arg(path)
            .args(["watch", "--every", "1s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_at_most(child, Duration::from_secs(15))
    };
    let out = watch(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("no table is tracked"),
        "{:?}",
        text(&out)
    );

    // Nothing to sync with: said once, with the command that fixes it.
    let (_dir, path) = tracked();
    let out = watch(&path);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tether config server_url URL") && stderr.contains("watch stopped"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("no server configured").count(),
        1,
        "{stderr}"
    );

    // A wrong address (404) and a refused token (401) stop it too.
    let server = Server::start(&["--model", TASK, "--token", "t0k"]);
    tether(
        &path,
        &["config", "server_url", &format!("{}/api", server.url)],
    );
    tether(&path, &["config", "auth_token", "t0k"]);
    let out = watch(&path);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HTTP 404") && stderr.contains("watch stopped"),
        "{stderr}"
    );
    tether(&path, &["config", "server_url", &server.url]);
    tether(&path, &["config", "auth_token", "wrong"]);
    let out = watch(&path);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("auth_token"),
        "{stderr}"
    );
}
