//! The sync lock when a cycle is cut short in ways that are not a crash: the host interrupts the
//! connection (`sqlite3_interrupt`: a Go context cancelled, Python's `interrupt()`, a progress
//! handler's timeout), or the process is suspended past its lease and resumes after another
//! cycle took over.
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required|max:40"}, "soft_deletes": true}"#;

/// Runs `SELECT tether_sync()` on `conn` and interrupts the connection `after` it started.
fn interrupted_sync(conn: &Connection, after: Duration) -> String {
    let handle = conn.get_interrupt_handle();
    let interrupter = std::thread::spawn(move || {
        std::thread::sleep(after);
        handle.interrupt();
    });
    let outcome = conn.query_row("SELECT tether_sync()", [], |r| r.get::<_, String>(0));
    interrupter.join().unwrap();
    match outcome {
        Ok(result) => panic!("the sync was not interrupted: {result}"),
        Err(error) => error.to_string(),
    }
}

/// A sync interrupted while its push request is out (the server delays it): fails with the
/// interrupt.
fn sync_interrupted_while_pushing(server: &Server, conn: &Connection) {
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "times": 1, "delay_ms": 1500}),
    );
    let error = interrupted_sync(conn, Duration::from_millis(500));
    assert!(error.contains("interrupted"), "{error}");
}

fn add_tasks(conn: &Connection, count: usize) {
    for i in 0..count {
        conn.execute("INSERT INTO tasks (title) VALUES (?1)", [format!("t{i}")])
            .unwrap();
    }
}

fn pending(conn: &Connection) -> i64 {
    column(
        conn,
        "SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'pending'",
    )[0]
}

/// The host interrupts its connection while the push request is out: the cycle fails with the
/// interrupt, and still gives the lock up and finishes its log row (every statement of the
/// interrupted connection fails until the call returns, so both go through another connection).
/// Before, every cycle of every connection on the file was skipped until the lease expired
/// (60 s), and the log row stayed unfinished.
#[test]
fn an_interrupted_sync_gives_the_lock_up_and_finishes_its_log_row() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    add_tasks(&conn, 20);
    for stage in ["push", "pull"] {
        server.post(
            "/_test/faults",
            &json!({"path": format!("/tether/{stage}"), "times": 1, "delay_ms": 1500}),
        );
        let error = interrupted_sync(&conn, Duration::from_millis(500));
        assert!(error.contains("interrupted"), "{stage}: {error}");
        let plain = open_plain(&path);
        assert_eq!(
            column::<i64>(&plain, "SELECT count(*) FROM tether_locks"),
            [0],
            "{stage}: the lock was given up"
        );
        let last = sync_log(&path).pop().unwrap();
        assert_eq!(last["finished"], 1, "{stage}: {last}");
        assert!(
            last["error"].as_str().unwrap().contains("interrupted"),
            "{stage}: {last}"
        );
        // Another connection syncs at once, and so does this one.
        let other = open_loaded(&path);
        let result = json(&other, "SELECT tether_sync()");
        assert_eq!(result["skipped"], false, "{stage}: {result}");
        let again = json(&conn, "SELECT tether_sync()");
        assert_eq!(again["skipped"], false, "{stage}: {again}");
    }
    assert_eq!(pending(&conn), 0);
    assert_eq!(server.field_of_rows(&conn, "title").len(), 20);
}

/// An in-memory database has no other connection to give the lock up through: the lease the
/// interrupted cycle could not release is free for the next cycle of the same process at once.
#[test]
fn an_interrupted_sync_of_an_in_memory_database_does_not_lock_out_the_next_one() {
    let server = Server::start(&["--model", TASK]);
    let conn = Connection::open_in_memory().unwrap();
    load(&conn).unwrap();
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks');",
    )
    .unwrap();
    set_config(&conn, "server_url", server.url.as_str());
    add_tasks(&conn, 5);
    sync_interrupted_while_pushing(&server, &conn);
    assert_eq!(
        column::<i64>(&conn, "SELECT count(*) FROM tether_locks"),
        [1],
        "the lease could not be given up (the point of this test)"
    );
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(result["skipped"], false, "{result}");
    assert_eq!(pending(&conn), 0);
    assert_eq!(
        column::<i64>(&conn, "SELECT count(*) FROM tether_locks"),
        [0]
    );
}

/// A cycle suspended between two transactions of a pulled page (the process stopped, the
/// machine asleep) past its lease, while another cycle takes the lock over, writes nothing more
/// when it resumes: the lease is checked inside each transaction, not only before it. Before,
/// the cycle had renewed just before the pause and wrote one more 500-row transaction of rows
/// the other cycle may already have written newer (the cursor past them, they stayed stale).
#[test]
fn a_cycle_suspended_past_its_lease_between_two_transactions_writes_nothing_more() {
    let server = Server::start(&[]);
    seed_tasks(&server, 1200);
    // No pull_page_size: the 1,200 rows come as one page, written 500, 500 and 200 at a time.
    let (_dir, path, conn) = synced_client(&server);
    drop(conn);

    let point = "pull-between-chunks";
    let mut child = Command::new("sqlite3")
        .arg(&path)
        .arg(format!(".load {}", extension_path().display()))
        .arg("SELECT tether_sync();")
        .env("TETHER_TEST_KILL_POINT", point)
        .env("TETHER_TEST_PAUSE_MS", "2000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the sqlite3 shell (apt-get install sqlite3)");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while line.trim() != format!("tether-kill-point: {point}") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline,
            "the pause point was never reached"
        );
    }
    // While it sleeps, its lease expires and another cycle takes the lock.
    let plain = open_plain(&path);
    let taken = plain
        .execute(
            "UPDATE tether_locks SET holder = 'another-cycle', expires_at = ?1 WHERE name = 'sync'",
            [now_ms() + 60_000],
        )
        .unwrap();
    assert_eq!(taken, 1, "the paused cycle held the lock");
    let written = rows(&path);
    let status = child.wait().unwrap();
    let mut said = String::new();
    stderr.read_to_string(&mut said).unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        said.contains("lost the sync lock"),
        "{status}: stdout {out:?}, stderr {said:?}"
    );
    assert_eq!(
        written, 500,
        "the first transaction was written before the pause"
    );
    assert_eq!(
        rows(&path),
        500,
        "nothing was written after the lock was lost"
    );
    assert_eq!(
        column::<String>(&plain, "SELECT holder FROM tether_locks"),
        ["another-cycle"],
        "the lock of the cycle that took over stays"
    );

    // That cycle ends; the next sync writes the rest, each row once.
    plain.execute_batch("DELETE FROM tether_locks").unwrap();
    let conn = open_loaded(&path);
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(result["skipped"], false, "{result}");
    assert_eq!(rows(&path), 1200);
    assert_eq!(
        column::<i64>(&conn, "SELECT count(DISTINCT tether_id) FROM tasks"),
        [1200]
    );
    let last: Value = sync_log(&path).pop().unwrap();
    assert_eq!(last["error"], Value::Null, "{last}");
}

fn rows(path: &Path) -> i64 {
    column(&open_plain(path), "SELECT count(*) FROM tasks")[0]
}

/// Holds the sync lock as a live cycle elsewhere would (a host not ours: never taken over
/// before it expires).
fn hold_the_lock(path: &Path) {
    open_plain(path)
        .execute(
            "INSERT INTO tether_locks (name, holder, expires_at) VALUES ('sync', 'elsewhere', ?1)",
            [now_ms() + 120_000],
        )
        .unwrap();
}

fn release_the_lock(path: &Path) {
    open_plain(path)
        .execute("DELETE FROM tether_locks", [])
        .unwrap();
}

/// auto_sync's push skipped because another cycle holds the lock is no failure: it is tried
/// again soon, not after a growing backoff. Before, a row written during someone else's long
/// cycle waited about as long again after it ended (2 s, 4 s, 8 s… of backoff).
#[test]
fn auto_sync_tries_again_soon_after_a_push_skipped_for_the_lock() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    hold_the_lock(&path);
    set_config(&conn, "auto_sync", "true");
    add_tasks(&conn, 1);
    std::thread::sleep(Duration::from_secs(7));
    let worker = json(&conn, "SELECT tether_status()")["worker"].clone();
    let retry_in = worker["auto_retry_in"].as_f64().unwrap_or(f64::MAX);
    assert!(
        retry_in <= 2.0,
        "after 7 s of skipped pushes the next try is {retry_in} s away: {worker}"
    );
    assert_eq!(worker["failures_in_a_row"], 0, "{worker}");
    assert_eq!(pending(&conn), 1, "the lock was held: nothing was pushed");
    release_the_lock(&path);
    assert!(
        wait_for(Duration::from_secs(4), || pending(&open_plain(&path)) == 0),
        "pushed soon after the lock was released"
    );
    json(&conn, "SELECT tether_stop()");
}

/// A dispatched cycle skipped because another cycle held the lock is tried again (that cycle may
/// have pushed before the dispatch was asked for, or be a pull); before, it was recorded skipped
/// and never ran.
#[test]
fn a_dispatch_skipped_for_the_lock_runs_once_the_lock_is_free() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    add_tasks(&conn, 3);
    hold_the_lock(&path);
    json(&conn, "SELECT tether_dispatch('push')");
    let skipped = |entries: &[Value]| {
        entries
            .iter()
            .filter(|e| e["result"]["skipped"] == true)
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(5), || skipped(&sync_log(&path)) >= 1),
        "{:?}",
        sync_log(&path)
    );
    release_the_lock(&path);
    assert!(
        wait_for(Duration::from_secs(10), || pending(&open_plain(&path)) == 0),
        "the dispatch ran once the lock was free: {:?}",
        sync_log(&path)
    );
    let entries = sync_log(&path);
    assert!(
        entries.iter().all(|e| e["trigger"] == "dispatch"),
        "{entries:?}"
    );
    assert_eq!(server.field_of_rows(&conn, "title").len(), 3);
    json(&conn, "SELECT tether_stop()");
}

/// Dispatches that a cycle already waiting to start covers are merged into it: a loop that
/// dispatches after each write queues one cycle, not one per write.
#[test]
fn dispatches_a_waiting_cycle_covers_are_merged_into_it() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "times": 1, "delay_ms": 1500}),
    );
    json(&conn, "SELECT tether_dispatch('pull')");
    // The pull runs (its request is out) while the rest are asked for.
    assert!(wait_for(Duration::from_secs(5), || column::<i64>(
        &open_plain(&path),
        "SELECT count(*) FROM tether_locks"
    ) == [1]));
    let mut answers = Vec::new();
    for kind in ["sync", "push", "pull", "sync"] {
        add_tasks(&conn, 1);
        answers.push(json(&conn, &format!("SELECT tether_dispatch('{kind}')"))["merged"].clone());
    }
    assert_eq!(answers, [false, true, true, true]);
    assert!(wait_for(Duration::from_secs(10), || {
        let entries = sync_log(&path);
        entries.len() == 2 && entries.iter().all(|e| e["finished"] == 1)
    }));
    let kinds: Vec<Value> = sync_log(&path).iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(kinds, ["pull", "sync"]);
    assert_eq!(pending(&conn), 0, "the one sync pushed every write");
    assert_eq!(server.field_of_rows(&conn, "title").len(), 4);
    json(&conn, "SELECT tether_stop()");
}

/// How the host stops a sync: `sqlite3_interrupt` (every statement fails until the call returns),
/// or its progress handler returning non-zero once (that statement alone stops, possibly as it
/// ends, after it took effect).
#[derive(Clone, Copy, Debug)]
enum Stop {
    Interrupt,
    Abort,
}

/// One sync of a copy of `template` whose connection the host interrupts at the `at`-th progress
/// callback (every VM instruction); returns how many callbacks the sync made, and what it left:
/// whether the host's connection is still inside a transaction, lock rows, unfinished log rows.
fn interrupted_at(template: &Path, at: u64, how: Stop) -> (u64, bool, i64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.db");
    std::fs::copy(template, &path).unwrap();
    let conn = open_loaded(&path);
    let handle = conn.get_interrupt_handle();
    let steps = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = steps.clone();
    let _ = conn.progress_handler(
        1,
        Some(move || {
            let reached = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == at;
            match how {
                Stop::Interrupt if reached => handle.interrupt(),
                Stop::Abort => return reached,
                Stop::Interrupt => {}
            }
            false
        }),
    );
    let _ = conn.query_row("SELECT tether_sync()", [], |r| r.get::<_, String>(0));
    let _ = conn.progress_handler(0, None::<fn() -> bool>);
    let in_transaction = !conn.is_autocommit();
    let plain = Connection::open(&path).unwrap();
    plain.busy_timeout(Duration::from_millis(100)).unwrap();
    let locks = plain
        .query_row("SELECT count(*) FROM tether_locks", [], |r| r.get(0))
        .unwrap_or(-1);
    let unfinished = plain
        .query_row(
            "SELECT count(*) FROM tether_sync_log WHERE finished_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap_or(-1);
    (
        steps.load(std::sync::atomic::Ordering::SeqCst),
        in_transaction,
        locks,
        unfinished,
    )
}

/// The host stops its connection at points spread over a whole sync (keys, push, pull), on a
/// fresh connection each time: wherever it lands, the host's connection is not left inside
/// tether's transaction (it was when an interrupt hit a read inside one: ROLLBACK was
/// interrupted too, the host went on holding the write lock with capture turned off), the lock
/// is given up and the log row is finished (a BEGIN or COMMIT stopped as it ended, after taking
/// effect, left the transaction open or the lock orphaned).
#[test]
fn an_interrupt_anywhere_in_a_sync_leaves_no_transaction_lock_or_open_log_row() {
    let server = Server::start(&["--model", TASK]);
    seed_tasks(&server, 20);
    let (dir, path, conn) = synced_client(&server);
    add_tasks(&conn, 30);
    json(&conn, "SELECT tether_sync()");
    seed_tasks(&server, 20);
    add_tasks(&conn, 10);
    conn.execute_batch(
        "UPDATE tasks SET title = title || 'x' WHERE id < 5; PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    drop(conn);
    let template = dir.path().join("template.db");
    std::fs::copy(&path, &template).unwrap();
    let (total, ..) = interrupted_at(&template, u64::MAX, Stop::Interrupt);
    assert!(total > 500, "a sync of this size runs {total} instructions");
    let mut left = Vec::new();
    for how in [Stop::Interrupt, Stop::Abort] {
        for at in (1..total).step_by((total / 150) as usize) {
            let (_, in_transaction, locks, unfinished) = interrupted_at(&template, at, how);
            if in_transaction || locks != 0 || unfinished != 0 {
                left.push((how, at, in_transaction, locks, unfinished));
            }
        }
    }
    assert!(
        left.is_empty(),
        "(how, instruction, in a transaction, lock rows, unfinished log rows) of {total}: {left:?}"
    );
}

/// A connection in exclusive locking mode keeps its lock between transactions: no other
/// connection can give the lock up for it, and trying made the interrupted call wait 20 s and
/// fail with "the database stayed locked by another connection". The call fails with the
/// interrupt, and the same connection syncs again at once.
#[test]
fn an_interrupted_sync_in_exclusive_locking_mode_reports_the_interrupt() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, _path, conn) = synced_client(&server);
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE")
        .unwrap();
    add_tasks(&conn, 5);
    sync_interrupted_while_pushing(&server, &conn);
    let again = json(&conn, "SELECT tether_sync()");
    assert_eq!(again["skipped"], false, "{again}");
    assert_eq!(pending(&conn), 0);
}

/// Dispatches waiting for the lock are all kept: a second dispatch of another kind took the one
/// retry slot and the first was lost without a trace; `tether_stop` counts them; while they
/// wait, dispatches they cover are merged into them (each skipped dispatch ran at once and added
/// a log row, and the backoff of its retries grew towards a minute).
#[test]
fn dispatches_waiting_for_the_lock_are_kept_merged_and_counted() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    hold_the_lock(&path);
    add_tasks(&conn, 1);
    json(&conn, "SELECT tether_dispatch('push')");
    assert!(wait_for(Duration::from_secs(5), || !sync_log(&path).is_empty()));
    json(&conn, "SELECT tether_dispatch('pull')");
    let mut merged = Vec::new();
    for _ in 0..10 {
        add_tasks(&conn, 1);
        merged.push(json(&conn, "SELECT tether_dispatch('push')")["merged"].clone());
    }
    assert!(merged.iter().all(|m| *m == true), "{merged:?}");
    std::thread::sleep(Duration::from_secs(5));
    let while_held = sync_log(&path);
    assert_eq!(
        while_held.len(),
        2,
        "one row for each dispatch skipped, none for its retries: {while_held:?}"
    );
    release_the_lock(&path);
    let ran = || -> Vec<Value> {
        sync_log(&path)
            .into_iter()
            .filter(|e| e["result"]["skipped"] == false)
            .map(|e| e["kind"].clone())
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(8), || ran().len() == 2),
        "{:?}",
        sync_log(&path)
    );
    assert_eq!(ran(), ["push", "pull"], "{:?}", sync_log(&path));
    assert_eq!(pending(&conn), 0);
    // Waiting for the lock again, stopped: counted as cancelled.
    hold_the_lock(&path);
    json(&conn, "SELECT tether_dispatch('sync')");
    assert!(wait_for(Duration::from_secs(5), || sync_log(&path).len() == 5));
    let stopped = json(&conn, "SELECT tether_stop()");
    assert_eq!(stopped["cancelled_dispatches"], 1, "{stopped}");
}
