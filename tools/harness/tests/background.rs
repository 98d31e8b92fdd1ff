//! Background work: dispatch, schedule, stop, auto_sync, and the worker's lifetime.
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::json;
use tether_harness::*;

const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required|max:40"}, "soft_deletes": true}"#;

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
    assert_eq!(answer, json!({"dispatched": "sync", "merged": false}));
    assert!(
        wait_for(Duration::from_secs(10), || sync_log(&path)
            .iter()
            .any(|r| r["finished"] == 1)),
        "{:?}",
        sync_log(&path)
    );
    let entry = &sync_log(&path)[0];
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
        json(&conn, "SELECT tether_schedule('pull', 1)"),
        json!({"scheduled": "pull", "every": 1.0})
    );
    assert!(
        wait_for(Duration::from_secs(10), || sync_log(&path).len() >= 3),
        "{:?}",
        sync_log(&path)
    );
    let entries = sync_log(&path);
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
    let stopped = json(&conn, "SELECT tether_stop()");
    assert_eq!(stopped["stopped"], true, "{stopped}");
    assert_eq!(stopped["schedule"]["kind"], "pull", "{stopped}");
    std::thread::sleep(Duration::from_millis(200));
    let after_stop = sync_log(&path).len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        sync_log(&path).len(),
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
    let entries = sync_log(&path);
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
        sync_log(&path)
            .iter()
            .filter(|e| e["trigger"] == "auto")
            .count(),
        before,
        "pulled snapshots trigger nothing"
    );
    json(&conn, "SELECT tether_stop()");
}

#[test]
fn closing_the_starting_connection_stops_the_worker() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    json(&conn, "SELECT tether_schedule('pull', 1)");
    assert!(wait_for(Duration::from_secs(10), || !sync_log(&path).is_empty()));
    drop(conn);
    std::thread::sleep(Duration::from_millis(500));
    let after_close = sync_log(&path).len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        sync_log(&path).len(),
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
    assert!(wait_for(Duration::from_secs(10), || sync_log(&path)
        .iter()
        .filter(|r| r["finished"] == 1)
        .count()
        == 2));
    let background = sync_log(&path)
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

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn pending(path: &std::path::Path) -> i64 {
    open_plain(path)
        .query_row(
            "SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn workers_on_one_file_with_the_server_down_back_off_and_push_once_it_is_back() {
    let port = free_port();
    let (_dir, path) = temp_db();
    let first = open_loaded(&path);
    first
        .execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
             SELECT tether_track('tasks');",
        )
        .unwrap();
    set_config(
        &first,
        "server_url",
        format!("http://127.0.0.1:{port}").as_str(),
    );
    set_config(&first, "timeout_ms", 500);
    set_config(&first, "auto_sync", "true");
    // Two more connections load with auto_sync on: three workers on one file.
    let second = open_loaded(&path);
    let third = open_loaded(&path);
    for c in [&first, &second, &third] {
        assert_eq!(json(c, "SELECT tether_status()")["worker"]["running"], true);
    }
    open_plain(&path)
        .execute("INSERT INTO tasks (title) VALUES ('offline')", [])
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let rows = sync_log(&path).len();
    // Each worker's log row changes the others' data_version: before, this grew by ~8 rows a
    // second. Now: a first try, then retries after 2 s and 4 s (one worker runs, the others find
    // the lock held and keep no row).
    assert!(
        rows <= 9,
        "{rows} log rows in 5 s while the server is down: {:?}",
        sync_log(&path)
    );
    assert!(
        json(&first, "SELECT tether_status()")["worker"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{}",
        json(&first, "SELECT tether_status()")["worker"]
    );
    let listen = format!("127.0.0.1:{port}");
    let (mut server, _url) = start_server(
        server_binary(),
        &["--listen", &listen, "--quiet", "--model", TASK],
    );
    // No new write: the backoff retries what is pending.
    let pushed = wait_for(Duration::from_secs(30), || pending(&path) == 0);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        pushed,
        "still pending after the server came back: {:?}",
        sync_log(&path)
    );
    for c in [&first, &second, &third] {
        json(c, "SELECT tether_stop()");
    }
}

#[test]
fn background_work_uses_the_connections_own_url_and_token() {
    let server = Server::start(&["--model", TASK, "--token", "s3cret-token"]);
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         SELECT tether_track('tasks');",
    )
    .unwrap();
    // Kept out of the file: only this connection knows where and how to sync.
    for (key, value) in [
        ("server_url", server.url.as_str()),
        ("auth_token", "s3cret-token"),
    ] {
        conn.query_row(
            "SELECT tether_config(?1, ?2, 'connection')",
            [key, value],
            |_| Ok(()),
        )
        .unwrap();
    }
    conn.execute("INSERT INTO tasks (title) VALUES ('dispatched')", [])
        .unwrap();
    json(&conn, "SELECT tether_dispatch('push')");
    assert!(
        wait_for(Duration::from_secs(10), || pending(&path) == 0),
        "dispatch: {:?}",
        sync_log(&path)
    );
    conn.query_row(
        "SELECT tether_config('auto_sync', 'true', 'connection')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    open_plain(&path)
        .execute("INSERT INTO tasks (title) VALUES ('auto')", [])
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || pending(&path) == 0),
        "auto_sync: {:?}",
        sync_log(&path)
    );
    conn.query_row(
        "SELECT tether_config('auto_sync', 'false', 'connection')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    open_plain(&path)
        .execute("INSERT INTO tasks (title) VALUES ('scheduled')", [])
        .unwrap();
    json(&conn, "SELECT tether_schedule('push', 1)");
    assert!(
        wait_for(Duration::from_secs(10), || pending(&path) == 0),
        "schedule: {:?}",
        sync_log(&path)
    );
    assert!(
        sync_log(&path).iter().all(|e| e["error"].is_null()),
        "{:?}",
        sync_log(&path)
    );
    assert_eq!(server.field_of_rows(&conn, "title").len(), 3);
    json(&conn, "SELECT tether_stop()");
}

#[test]
fn where_no_worker_can_run_dispatch_and_schedule_say_why() {
    let memory = Connection::open_in_memory().unwrap();
    load(&memory).unwrap();
    assert!(error_of(&memory, "SELECT tether_dispatch('push')").contains("in-memory"));
    // memdb: an in-memory database whose name looks like a path.
    let dir = tempfile::tempdir().unwrap();
    let ghost = dir.path().join("ghost.db");
    let memdb = Connection::open_with_flags(
        format!("file:{}?vfs=memdb", ghost.display()),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    load(&memdb).unwrap();
    let error = error_of(&memdb, "SELECT tether_schedule('pull', 5)");
    assert!(error.contains("in-memory"), "{error}");
    assert!(
        !ghost.exists(),
        "a worker opened {} on disk",
        ghost.display()
    );
    // Exclusive locking: no other connection could ever get in.
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; CREATE TABLE t (x);")
        .unwrap();
    let error = error_of(&conn, "SELECT tether_dispatch('push')");
    assert!(error.contains("exclusive locking mode"), "{error}");
    assert_eq!(
        json(&conn, "SELECT tether_status()")["worker"]["running"],
        false
    );
    let error = error_of(&conn, "SELECT tether_schedule('push', 0.5)");
    assert!(error.contains("between 1 and"), "{error}");
}

#[test]
fn a_worker_that_cannot_start_says_why_and_the_next_dispatch_starts_one() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks');",
    )
    .unwrap();
    set_config(&conn, "server_url", server.url.as_str());
    // A rollback-journal database held by a long write: the worker cannot even read it.
    let writer = open_plain(&path);
    writer
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO tasks (title) VALUES ('bulk import');")
        .unwrap();
    let error = error_of(&conn, "SELECT tether_dispatch('pull')");
    assert!(error.contains("could not start"), "{error}");
    writer.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        json(&conn, "SELECT tether_dispatch('pull')")["dispatched"],
        "pull"
    );
    assert!(
        wait_for(Duration::from_secs(10), || sync_log(&path)
            .iter()
            .any(|e| e["trigger"] == "dispatch" && e["finished"] == 1)),
        "the new worker ran nothing: {:?}",
        sync_log(&path)
    );
    json(&conn, "SELECT tether_stop()");
}

#[test]
fn status_shows_the_workers_schedule_and_its_last_error() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "status": 500, "times": 100}),
    );
    json(&conn, "SELECT tether_schedule('pull', 1)");
    // Until the first cycle has finished (not only started: under load it may still run).
    assert!(wait_for(Duration::from_secs(20), || sync_log(&path)
        .iter()
        .any(|e| e["finished"] == 1)));
    assert!(wait_for(Duration::from_secs(10), || {
        !json(&conn, "SELECT tether_status()")["worker"]["last_error"].is_null()
    }));
    let worker = json(&conn, "SELECT tether_status()")["worker"].clone();
    assert_eq!(worker["running"], true, "{worker}");
    assert_eq!(worker["schedule"]["kind"], "pull", "{worker}");
    assert_eq!(worker["schedule"]["every"], 1.0, "{worker}");
    assert!(
        worker["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{worker}"
    );
    assert!(worker["failures_in_a_row"].as_u64() >= Some(1), "{worker}");
    let stopped = json(&conn, "SELECT tether_stop()");
    assert_eq!(stopped["schedule"]["every"], 1.0, "{stopped}");
    assert_eq!(
        json(&conn, "SELECT tether_status()")["worker"]["running"],
        false
    );
}

#[test]
fn the_sync_log_is_pruned_and_rows_of_dead_cycles_are_marked_interrupted() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    // A process of this machine that ran a cycle and is gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    conn.execute_batch(
        "INSERT INTO tether_sync_log (kind, trigger, started_at, finished_at, result)
              VALUES ('push', 'foreground', '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:01.000Z', '{}');",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO tether_sync_log (kind, trigger, host, pid) VALUES ('pull', 'schedule', ?1, ?2)",
        (tether::engine::lock::host_name(), gone.id()),
    )
    .unwrap();
    // A cycle of a live process (running without the lock, say) is left alone.
    conn.execute(
        "INSERT INTO tether_sync_log (kind, trigger, host, pid) VALUES ('push', 'dispatch', ?1, ?2)",
        (tether::engine::lock::host_name(), std::process::id()),
    )
    .unwrap();
    json(&conn, "SELECT tether_sync()");
    let entries = sync_log(&path);
    assert_eq!(entries.len(), 3, "the old row is pruned: {entries:?}");
    assert_eq!(entries[0]["kind"], "pull");
    assert!(
        entries[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("interrupted")),
        "{entries:?}"
    );
    assert_eq!(
        entries[1]["finished"], 0,
        "a live cycle was marked: {entries:?}"
    );
    assert_eq!(entries[2]["finished"], 1, "{entries:?}");
}

#[test]
fn a_dispatch_still_queued_when_its_connection_closes_is_recorded_as_cancelled() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "delay_ms": 8000}),
    );
    json(&conn, "SELECT tether_dispatch('pull')");
    json(&conn, "SELECT tether_dispatch('push')");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    drop(conn);
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "closing waited for the whole cycle"
    );
    assert!(
        wait_for(Duration::from_secs(15), || sync_log(&path).iter().any(
            |e| e["kind"] == "push"
                && e["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("cancelled"))
        )),
        "{:?}",
        sync_log(&path)
    );
}

#[test]
fn the_worker_checks_foreign_keys_when_its_connection_does() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Project", "fields": {"name": "nullable"}}"#,
        "--model",
        r#"{"name": "Task", "fields": {"title": "required", "project_id": "nullable"}}"#,
    ]);
    let (_d1, writer_path) = temp_db();
    let writer = open_loaded(&writer_path);
    writer
        .execute_batch(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, project_id TEXT);
             SELECT tether_track('tasks');
             INSERT INTO tasks (title, project_id) VALUES ('orphan', '01JNOSUCHPROJECT000000000');",
        )
        .unwrap();
    set_config(&writer, "server_url", server.url.as_str());
    json(&writer, "SELECT tether_push()");
    let (_d2, path, conn) =
        family_with("title TEXT, project_id TEXT REFERENCES projects (tether_id)");
    set_config(&conn, "server_url", server.url.as_str());
    json(&conn, "SELECT tether_dispatch('pull')");
    assert!(wait_for(Duration::from_secs(10), || sync_log(&path)
        .iter()
        .any(|e| e["finished"] == 1)));
    assert_eq!(
        column::<i64>(&conn, "SELECT count(*) FROM tasks"),
        [0],
        "the worker wrote a row whose parent is missing"
    );
    assert_eq!(
        json(&conn, "SELECT tether_status()")["quarantine"]["count"],
        1
    );
    json(&conn, "SELECT tether_stop()");
}
