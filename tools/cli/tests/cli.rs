//! The real `tether` binary against tether-server: output, exit codes, databases.
mod common;

use std::process::Stdio;

use common::*;
use serde_json::Value;

#[test]
fn sync_prints_a_table_and_json_and_changes_the_database() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    let out = tether(&path, &["sync"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("Pushed") && stdout.contains("Pulled"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Pushed", "1"]),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "no progress bar when piped: {stderr:?}");
    let out = tether(&path, &["pull", "--json"]);
    let result: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(result["skipped"], false);
    assert_eq!(server.rows("x").len(), 1);
    let pending: i64 = open_plain(&path)
        .query_row(
            "SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0);

    let out = tether(&path, &["status"]);
    let stdout = text(&out).0;
    assert!(
        stdout.contains("pending")
            && stdout.contains("table tasks")
            && stdout.contains("model Task"),
        "{stdout}"
    );
    let status: Value =
        serde_json::from_str(&text(&tether(&path, &["status", "--json"])).0).unwrap();
    assert_eq!(status["pending"], 0);
}

#[test]
fn rejections_warn_and_exit_non_zero() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    open_plain(&path)
        .execute(
            "INSERT INTO tasks (title) VALUES ('far too long for the server')",
            [],
        )
        .unwrap();
    let out = tether(&path, &["push"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stderr.contains("warning: 1 mutation(s) rejected") && stderr.contains("validation_failed"),
        "{stderr}"
    );
}

#[test]
fn clear_errors_for_missing_database_untracked_setup_and_unreachable_server() {
    let (dir, path) = temp_db();
    let out = tether(&dir.path().join("nope.db"), &["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("no such database"),
        "{:?}",
        text(&out)
    );
    open_plain(&path)
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        .unwrap();
    let out = tether(&path, &["sync"]);
    assert!(
        text(&out).1.contains("no table is tracked"),
        "{:?}",
        text(&out)
    );
    tether(&path, &["track", "t"]);
    let nothing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", nothing.local_addr().unwrap());
    drop(nothing);
    tether(&path, &["config", "server_url", &url]);
    let out = tether(&path, &["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("connection refused"),
        "{:?}",
        text(&out)
    );
    let out = tether(&path, &["config", "push_batch_size", "-3"]);
    assert!(
        !out.status.success() && text(&out).1.contains("push_batch_size"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn config_shows_settings_without_secrets() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    assert!(tether(&path, &["config", "auth_token", "hush-hush"])
        .status
        .success());
    let all = text(&tether(&path, &["config"])).0;
    assert!(
        all.contains("server_url") && all.contains("***") && !all.contains("hush-hush"),
        "{all}"
    );
    assert_eq!(
        text(&tether(&path, &["config", "push_batch_size"]))
            .0
            .trim(),
        "100"
    );
}

#[test]
fn watch_keeps_syncing_and_stops_on_ctrl_c() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    let child = command()
        .arg("--db")
        .arg(&path)
        .args(["watch", "--every", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    open_plain(&path)
        .execute("INSERT INTO tasks (title) VALUES ('while watching')", [])
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1700));
    kill(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.lines().filter(|l| l.contains("pushed")).count() >= 3,
        "{stdout}"
    );
    assert!(stderr.contains("stopped"), "{stderr}");
    assert_eq!(
        server.rows("x").len(),
        2,
        "the row written while watching was pushed"
    );
}

#[test]
fn the_demo_runs_and_cleans_up() {
    server_binary();
    let out = command().arg("demo").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for expected in [
        "Buy almond milk",
        "\"conflicts\": 1",
        "validation_failed",
        "The title field must not be greater than 40 characters.",
    ] {
        assert!(
            stdout.contains(expected),
            "demo output lacks {expected}: {stdout}"
        );
    }
}

#[test]
fn watch_backs_off_after_errors_and_keeps_going() {
    let (_dir, path) = temp_db();
    open_plain(&path)
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT)")
        .unwrap();
    tether(&path, &["track", "t"]);
    let nothing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", nothing.local_addr().unwrap());
    drop(nothing);
    tether(&path, &["config", "server_url", &url]);
    let child = command()
        .arg("--db")
        .arg(&path)
        .args(["watch", "--every", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2600));
    kill(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out).1;
    let waits: Vec<f64> = stderr
        .lines()
        .filter_map(|l| {
            l.split("retrying in ")
                .nth(1)?
                .trim_end_matches('s')
                .parse()
                .ok()
        })
        .collect();
    assert!(waits.len() >= 2, "it kept trying: {stderr}");
    assert!(
        waits.iter().all(|w| (0.8..=1.2).contains(w)),
        "backoff capped at the interval, with jitter: {waits:?}"
    );
    assert!(
        stderr.contains("connection refused") && stderr.contains("stopped"),
        "{stderr}"
    );
    assert!(out.status.success());
}

#[test]
fn watch_refuses_an_interval_below_the_minimum() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    let out = command()
        .arg("--db")
        .arg(&path)
        .args(["watch", "--every", "300ms"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("between 1 and"), "{stderr}");
}

#[test]
fn a_reader_that_quits_early_ends_nothing_badly() {
    use std::io::{BufRead, BufReader, Read};
    // `tether demo | head -1`: the reader goes after one line; tether finishes its demo (and
    // stops its server) without a panic.
    let mut child = command()
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn track_keys_on_sync_is_shown_kept_and_syncs_rows_once() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    let out = tether(&path, &["track", "tasks", "--keys", "on_sync"]);
    let stdout = text(&out).0;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        stdout.contains("given when the next sync starts"),
        "{stdout}"
    );
    open_plain(&path)
        .execute("INSERT INTO tasks (title) VALUES ('second')", [])
        .unwrap();
    let waiting = "SELECT count(*) FROM tasks WHERE tether_id IS NULL";
    assert_eq!(count(&path, waiting), 1, "the new row waits for its key");
    // Options given again without --keys keep the table's choice.
    let out = tether(&path, &["track", "tasks", "--columns", "title"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let status: Value =
        serde_json::from_str(&text(&tether(&path, &["status", "--json"])).0).unwrap();
    assert_eq!(status["tables"][0]["keys"], "on_sync", "{status}");
    let stdout = text(&tether(&path, &["status"])).0;
    assert!(
        stdout.contains("keys given when the next sync starts"),
        "{stdout}"
    );

    let out = tether(&path, &["sync"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(count(&path, waiting), 0);
    assert_eq!(server.rows("x").len(), 2, "both rows, each created once");

    let out = tether(&path, &["track", "tasks", "--keys", "later"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("on_insert"), "{:?}", text(&out));
    let out = tether(&path, &["track", "tasks", "--keys", "on_insert"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("given on insert"), "{:?}", text(&out));
}
