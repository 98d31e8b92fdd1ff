//! Background work: dispatch, schedule, stop, auto_sync, and the worker's lifetime.
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required|max:40"}, "soft_deletes": true}"#;

/// Rows of tether_sync_log as JSON, oldest first.
fn log(path: &std::path::Path) -> Vec<Value> {
    let conn = open_plain(path);
    let rows = json(
        &conn,
        "SELECT json_group_array(json_object('kind', kind, 'trigger', trigger, 'finished', finished_at IS NOT NULL,
                'result', json(result), 'error', error)) FROM (SELECT * FROM tether_sync_log ORDER BY id)",
    );
    rows.as_array().unwrap().clone()
}

/// Waits until `done` holds, at most `limit`.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn dispatch_returns_at_once_and_the_cycle_completes() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (title) VALUES ('in the background')", [])
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "delay_ms": 800}),
    );
    let started = Instant::now();
    let answer = json(&conn, "SELECT tether_dispatch('sync')");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "dispatch returned at once"
    );
    assert_eq!(answer, json!({"dispatched": "sync"}));
    assert!(
        wait_for(Duration::from_secs(10), || log(&path)
            .iter()
            .any(|r| r["finished"] == 1)),
        "{:?}",
        log(&path)
    );
    let entry = &log(&path)[0];
    assert_eq!(
        (entry["kind"].as_str(), entry["trigger"].as_str()),
        (Some("sync"), Some("dispatch"))
    );
    assert_eq!(entry["result"]["pushed"], 1, "{entry}");
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 0);
}

#[test]
fn a_schedule_repeats_survives_errors_and_stops() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "status": 500}),
    );
    assert_eq!(
        json(&conn, "SELECT tether_schedule('pull', 0.3)"),
        json!({"scheduled": "pull", "every": 0.3})
    );
    assert!(
        wait_for(Duration::from_secs(10), || log(&path).len() >= 3),
        "{:?}",
        log(&path)
    );
    let entries = log(&path);
    assert!(
        entries[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500")),
        "the failed tick is recorded: {}",
        entries[0]
    );
    assert!(
        entries[1..].iter().any(|e| e["result"]["skipped"] == false),
        "later ticks succeed: {entries:?}"
    );
    assert!(entries.iter().all(|e| e["trigger"] == "schedule"));
    assert_eq!(
        json(&conn, "SELECT tether_stop()"),
        json!({"stopped": true})
    );
    std::thread::sleep(Duration::from_millis(200));
    let after_stop = log(&path).len();
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(
        log(&path).len(),
        after_stop,
        "no cycles after tether_stop()"
    );
    assert_eq!(
        json(&conn, "SELECT tether_stop()"),
        json!({"stopped": false})
    );
}

#[test]
fn auto_sync_pushes_writes_from_other_connections() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    set_config(&conn, "auto_sync", "true");
    let other = open_plain(&path);
    other
        .execute("INSERT INTO tasks (title) VALUES ('written elsewhere')", [])
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || server.rows("x").len() == 1),
        "auto_sync pushed the other connection's write"
    );
    let entries = log(&path);
    assert!(
        entries
            .iter()
            .all(|e| e["kind"] == "push" && e["trigger"] == "auto"),
        "{entries:?}"
    );
    let before = entries.len();
    // A pull brings rows but queues nothing, so it must not set off another push.
    json(&conn, "SELECT tether_pull()");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        log(&path).iter().filter(|e| e["trigger"] == "auto").count(),
        before,
        "pulled snapshots trigger nothing"
    );
    json(&conn, "SELECT tether_stop()");
}

#[test]
fn closing_the_starting_connection_stops_the_worker() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    json(&conn, "SELECT tether_schedule('pull', 0.2)");
    assert!(wait_for(Duration::from_secs(10), || !log(&path).is_empty()));
    drop(conn);
    std::thread::sleep(Duration::from_millis(500));
    let after_close = log(&path).len();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        log(&path).len(),
        after_close,
        "the worker stopped with its connection"
    );
}

#[test]
fn no_background_cycle_overlaps_a_foreground_one() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (title) VALUES ('x')", [])
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "delay_ms": 1000}),
    );
    let foreground_path = path.clone();
    let foreground =
        std::thread::spawn(move || json(&open_loaded(&foreground_path), "SELECT tether_sync()"));
    std::thread::sleep(Duration::from_millis(300));
    json(&conn, "SELECT tether_dispatch('sync')");
    let result = foreground.join().unwrap();
    assert_eq!(result["pushed"], 1);
    assert!(wait_for(Duration::from_secs(10), || log(&path)
        .iter()
        .filter(|r| r["finished"] == 1)
        .count()
        == 2));
    let background = log(&path)
        .into_iter()
        .find(|e| e["trigger"] == "dispatch")
        .unwrap();
    assert_eq!(
        background["result"]["skipped"], true,
        "the background cycle found the lock held: {background}"
    );
}

#[test]
fn background_work_needs_a_file() {
    let conn = Connection::open_in_memory().unwrap();
    load(&conn).unwrap();
    let err = error_of(&conn, "SELECT tether_dispatch('push')");
    assert!(err.contains("needs a database file"), "{err}");
    let err = error_of(&conn, "SELECT tether_dispatch('everything')");
    assert!(err.contains("'push', 'pull' or 'sync'"), "{err}");
}
