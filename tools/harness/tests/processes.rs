//! Other processes on the same database file: a sync killed with SIGKILL mid-request (its lock is
//! taken over at once), two processes syncing at once, holders that keep the lock (alive, on
//! another machine) and a cycle that lost its lease. The other process is the plain sqlite3 shell
//! loading the extension.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use tether::engine::lock::host_name;
use tether_harness::*;

const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required|max:40"}, "soft_deletes": true}"#;

/// `sqlite3 DB ".load libtether" "SELECT tether_sync();"` in the background.
fn shell_sync(path: &std::path::Path) -> Child {
    Command::new("sqlite3")
        .arg(path)
        .arg(format!(".load {}", extension_path().display()))
        .arg("SELECT tether_sync();")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the sqlite3 shell (apt-get install sqlite3)")
}

fn output(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The sync lock's row: `(holder, host, pid)`, or `None` when nobody holds it.
fn lock_row(conn: &Connection) -> Option<(String, Option<String>, Option<i64>)> {
    conn.query_row(
        "SELECT holder, host, pid FROM tether_locks WHERE name = 'sync'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()
    .unwrap()
}

/// Waits until some cycle holds the sync lock, then returns its row.
fn wait_for_holder(conn: &Connection) -> (String, Option<String>, Option<i64>) {
    let mut row = None;
    wait_until("a cycle took the sync lock", || {
        row = lock_row(conn);
        row.is_some()
    });
    row.unwrap()
}

/// Waits (10 s at most) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the first mutation was prepared for sending: its push request is on its way.
fn wait_for_first_push(conn: &Connection) {
    wait_until("the first push was prepared", || {
        mutations(conn)
            .first()
            .is_some_and(|m| m.mutation_id.is_some())
    });
}

/// This machine's name as the lock records it; the same-machine tests need one.
fn this_host() -> String {
    host_name().expect("this machine has a host name (not localhost)")
}

/// Puts a lock row there, as another cycle would have.
fn hold_lock(conn: &Connection, host: Option<&str>, pid: Option<i64>, expires_at: i64) {
    conn.execute(
        "INSERT INTO tether_locks (name, holder, expires_at, host, pid) VALUES ('sync', 'another cycle', ?1, ?2, ?3)",
        rusqlite::params![expires_at, host, pid],
    )
    .unwrap();
}

/// The pid of a process that existed and is gone (exited and reaped).
fn dead_pid() -> i64 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i64;
    child.wait().unwrap();
    pid
}

fn titles(conn: &Connection) -> Vec<String> {
    column(conn, "SELECT title FROM tasks ORDER BY title")
}

fn server_titles(server: &Server) -> Vec<String> {
    let mut t: Vec<String> = server
        .rows("x")
        .values()
        .map(|v| v["title"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

#[test]
fn a_sync_killed_during_its_push_converges_on_the_next_one() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute_batch("INSERT INTO tasks (title) VALUES ('a'), ('b'), ('c');")
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "delay_ms": 1500}),
    );
    let mut child = shell_sync(&path);
    let (_, host, pid) = wait_for_holder(&conn);
    assert_eq!(
        pid,
        Some(child.id() as i64),
        "the lock names its holder's process"
    );
    assert_eq!(host, Some(this_host()));
    wait_for_first_push(&conn);
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(
        result["skipped"], false,
        "the holder on this machine is dead: its lease is taken over at once"
    );
    assert_eq!(
        (result["pushed"].as_i64(), result["failed"].as_i64()),
        (Some(3), Some(0)),
        "{result}"
    );
    assert_eq!(lock_row(&conn), None, "released");
    // The killed request is still waiting out its delay on the server: let it finish, its
    // mutations were sent again under the same ids.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(titles(&conn), server_titles(&server));
    assert_eq!(
        server_titles(&server),
        ["a", "b", "c"],
        "nothing lost, nothing doubled"
    );
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 0);
}

#[test]
fn a_sync_killed_during_its_pull_converges_on_the_next_one() {
    let server = Server::start(&["--model", TASK]);
    let (_d1, _p1, writer) = synced_client(&server);
    writer
        .execute_batch("INSERT INTO tasks (title) VALUES ('x'), ('y');")
        .unwrap();
    json(&writer, "SELECT tether_sync()");
    let (_dir, path, conn) = synced_client(&server);
    set_config(&conn, "pull_page_size", 1);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "delay_ms": 1500}),
    );
    let mut child = shell_sync(&path);
    let (_, _, pid) = wait_for_holder(&conn);
    assert_eq!(pid, Some(child.id() as i64));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(result["skipped"], false, "{result}");
    assert_eq!(result["pull_errors"], 0, "{result}");
    assert_eq!(titles(&conn), ["x", "y"]);
    assert_eq!(
        json(&conn, "SELECT tether_status()")["pending"],
        0,
        "pulled rows were not captured"
    );
}

#[test]
fn two_processes_syncing_at_once_one_runs_the_other_skips() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (title) VALUES ('only once')", [])
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "delay_ms": 1000}),
    );
    let first = shell_sync(&path);
    std::thread::sleep(Duration::from_millis(300));
    let second = output(shell_sync(&path));
    let first = output(first);
    let parse = |text: &str| -> Value {
        serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("not a result: {text}"))
    };
    assert_eq!(parse(&second)["skipped"], true, "{second}");
    assert_eq!(parse(&first)["pushed"], 1, "{first}");
    assert_eq!(server_titles(&server), ["only once"]);
}

#[test]
fn a_live_holder_on_this_machine_keeps_the_lock_until_its_process_dies() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, _path, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (title) VALUES ('x')", [])
        .unwrap();
    // A holder in this very process (another connection's cycle) is alive too.
    hold_lock(
        &conn,
        Some(&this_host()),
        Some(std::process::id() as i64),
        now_ms() + 60_000,
    );
    assert_eq!(json(&conn, "SELECT tether_sync()")["skipped"], true);
    conn.execute("DELETE FROM tether_locks", []).unwrap();

    let mut holder = Command::new("sleep").arg("30").spawn().unwrap();
    hold_lock(
        &conn,
        Some(&this_host()),
        Some(holder.id() as i64),
        now_ms() + 60_000,
    );
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(result["skipped"], true, "{result}");
    assert_eq!(result["pushed"], 0, "{result}");
    assert_eq!(
        lock_row(&conn).map(|row| row.0).as_deref(),
        Some("another cycle"),
        "a skipped cycle leaves the holder's row alone"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(
        (result["skipped"].as_bool(), result["pushed"].as_i64()),
        (Some(false), Some(1)),
        "{result}"
    );
    assert_eq!(lock_row(&conn), None);
    assert_eq!(server_titles(&server), ["x"]);
}

#[test]
fn a_holder_elsewhere_or_unknown_keeps_the_lock_until_its_lease_expires() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, _path, conn) = synced_client(&server);
    let gone = dead_pid();
    let here = this_host();
    for (host, pid, why) in [
        (
            Some("another-machine.example"),
            Some(gone),
            "a process of another machine cannot be checked from here",
        ),
        (None, None, "a row of an older tether names no host or pid"),
        (Some(here.as_str()), None, "a row without a pid"),
    ] {
        hold_lock(&conn, host, pid, now_ms() + 1500);
        let result = json(&conn, "SELECT tether_sync()");
        assert_eq!(result["skipped"], true, "{why}: {result}");
        std::thread::sleep(Duration::from_millis(1600));
        let result = json(&conn, "SELECT tether_sync()");
        assert_eq!(result["skipped"], false, "{why}, once expired: {result}");
        assert_eq!(lock_row(&conn), None);
    }
}

#[test]
fn a_cycle_that_lost_its_lease_stops_before_its_next_request() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    set_config(&conn, "push_batch_size", 1);
    conn.execute_batch("INSERT INTO tasks (title) VALUES ('a'), ('b'), ('c');")
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "delay_ms": 1000}),
    );
    let cycle = std::thread::spawn(move || {
        let conn = open_loaded(&path);
        error_of(&conn, "SELECT tether_sync()")
    });
    let (ours, _, _) = wait_for_holder(&conn);
    wait_for_first_push(&conn);
    // While its first batch is in flight, its lease is taken by another cycle.
    assert_eq!(
        conn.execute(
            "UPDATE tether_locks SET holder = 'someone-else' WHERE holder = ?1",
            [&ours]
        )
        .unwrap(),
        1
    );
    let error = cycle.join().unwrap();
    assert!(
        error.contains(
            "lost the sync lock to another cycle (its lease expired); stopping before its next request or write"
        ),
        "{error}"
    );
    assert_eq!(
        server_titles(&server),
        ["a"],
        "the batch in flight reached the server; no batch was sent after the loss"
    );
    let sent = mutations(&conn);
    assert_eq!(
        sent.iter()
            .map(|m| (m.payload["title"].as_str().unwrap(), m.sync_status.as_str()))
            .collect::<Vec<_>>(),
        [("a", "pending"), ("b", "pending"), ("c", "pending")],
        "the answer that came back after the loss was not written"
    );
    let first_id = sent[0].mutation_id.clone();
    assert!(first_id.is_some(), "'a' was sent, under this id");
    assert!(
        sent[1..].iter().all(|m| m.mutation_id.is_none()),
        "'b' and 'c' were never prepared for sending"
    );
    assert_eq!(
        lock_row(&conn).map(|row| row.0).as_deref(),
        Some("someone-else"),
        "the cycle that lost the lock does not release the new holder's"
    );
    let logged: String = conn
        .query_row(
            "SELECT error FROM tether_sync_log ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(logged.contains("lost the sync lock"), "{logged}");

    // The other cycle ends; the next one resends 'a' under the same id and sends the rest.
    conn.execute("DELETE FROM tether_locks", []).unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(
        (result["skipped"].as_bool(), result["failed"].as_i64()),
        (Some(false), Some(0)),
        "{result}"
    );
    assert_eq!(
        server_titles(&server),
        ["a", "b", "c"],
        "nothing doubled on the server"
    );
    assert_eq!(titles(&conn), server_titles(&server));
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 0);
    assert_eq!(
        mutations(&conn)[0].mutation_id,
        first_id,
        "resent under the id it was first sent with"
    );
}

#[test]
fn debug_output_goes_to_stderr_without_secrets() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (title) VALUES ('x')", [])
        .unwrap();
    let out = Command::new("sqlite3")
        .arg(&path)
        .arg(format!(".load {}", extension_path().display()))
        .arg("SELECT tether_config('auth_token', 'very-secret-token', 'connection');")
        .arg("SELECT tether_config('debug_level', 3, 'connection');")
        .arg("SELECT tether_sync();")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[TETHER] POST") && stderr.contains("/tether/push"),
        "{stderr}"
    );
    assert!(stderr.contains("[TETHER] sync (foreground)"), "{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with("[TETHER]")),
        "{stderr}"
    );
    assert!(!stderr.contains("very-secret-token"), "{stderr}");
    let quiet = Command::new("sqlite3")
        .arg(&path)
        .arg(format!(".load {}", extension_path().display()))
        .arg("SELECT tether_sync();")
        .output()
        .unwrap();
    assert!(quiet.stderr.is_empty(), "debug_level 0 prints nothing");
}

/// A pulled page of more than one transaction (500 rows each): the lease is checked inside each,
/// so a cycle whose lease was taken stops at the next one instead of writing the rest of the page after
/// another cycle took over. The other cycle here is simulated by a trigger of the application's
/// that hands the lock over while the 600th row is written.
#[test]
fn a_cycle_that_lost_its_lease_stops_between_the_transactions_of_a_large_page() {
    let server = Server::start(&[]);
    seed_tasks(&server, 1200);

    // No pull_page_size: the 1,200 rows come as one page, written 500, 500 and 200 at a time.
    let (_dir, _path, conn) = synced_client(&server);
    conn.execute_batch(
        "CREATE TRIGGER hand_over AFTER INSERT ON tasks
         WHEN (SELECT count(*) FROM tasks) = 600
         BEGIN UPDATE tether_locks SET holder = 'someone-else' WHERE name = 'sync'; END;",
    )
    .unwrap();
    let error = error_of(&conn, "SELECT tether_sync()");
    assert!(error.contains("lost the sync lock"), "{error}");
    assert_eq!(
        column::<i64>(&conn, "SELECT count(*) FROM tasks"),
        [1000],
        "the transaction that wrote the 600th row ended; the third was not written"
    );
    assert_eq!(
        cursor(&conn),
        Value::Null,
        "the page's cursor was not stored"
    );

    // The other cycle ends; the next one fetches the page again and converges, once each.
    conn.execute_batch("DROP TRIGGER hand_over; DELETE FROM tether_locks;")
        .unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(result["skipped"], false, "{result}");
    assert_eq!(
        column::<i64>(&conn, "SELECT count(DISTINCT title) FROM tasks"),
        [1200]
    );
    assert_eq!(column::<i64>(&conn, "SELECT count(*) FROM tasks"), [1200]);
    assert_eq!(
        column::<i64>(
            &conn,
            "SELECT count(*) FROM tether_mutation_logs WHERE sync_status <> 'synced'"
        ),
        [0],
        "applying server rows queued nothing"
    );
}
