//! Adversarial review of background work (issue 11): what still loops, loses a dispatched job,
//! leaks threads, deadlocks, blocks the host or lies in status. Failing tests are defects; the
//! passing ones cover attacks background.rs does not (other processes, many starts, settings
//! turned on elsewhere).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use tether_harness::*;

const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required|max:40"}, "soft_deletes": true}"#;

fn pending(path: &Path) -> i64 {
    open_plain(path)
        .query_row(
            "SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn insert(path: &Path, title: &str) {
    open_plain(path)
        .execute("INSERT INTO tasks (title) VALUES (?1)", [title])
        .unwrap();
}

/// The `tether` command line of this workspace, built once per test process.
fn cli_binary() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let tools = repo_root().join("tools");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "tether-cli", "--manifest-path"])
            .arg(tools.join("Cargo.toml"))
            .status()
            .expect("run cargo build for tether-cli");
        assert!(status.success(), "building tether-cli failed");
        tools.join("target/debug/tether")
    })
    .clone()
}

/// `sqlite3 DB .load libtether` followed by `commands`, in the background.
fn shell(path: &Path, commands: &[&str]) -> Child {
    let mut command = Command::new("sqlite3");
    command
        .arg(path)
        .arg(format!(".load {}", extension_path().display()));
    for c in commands {
        command.arg(c);
    }
    command
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

// ---------------------------------------------------------------------------------------------
// auto_sync wake-ups
// ---------------------------------------------------------------------------------------------

/// `auto_sync_throttle` is "at most once per N seconds", not "drop what arrives inside the
/// window": a write made while throttled must go once the window has passed.
#[test]
fn a_write_inside_the_throttle_window_is_pushed_once_it_ends() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    set_config(&conn, "auto_sync_throttle", 2);
    set_config(&conn, "auto_sync", "true");
    insert(&path, "first");
    assert!(
        wait_for(Duration::from_secs(5), || pending(&path) == 0),
        "the first write was pushed: {:?}",
        sync_log(&path)
    );
    // Inside the 2 s window that push opened.
    insert(&path, "second");
    let pushed = wait_for(Duration::from_secs(6), || pending(&path) == 0);
    json(&conn, "SELECT tether_stop()");
    assert!(
        pushed,
        "a write made during the throttle window is still pending 6 s later (the window was 2 s): \
         log {:?}, worker {}",
        sync_log(&path),
        json(&conn, "SELECT tether_status()")["worker"]
    );
}

/// A mutation the server answered with the transient reason `error` will be sent again by the
/// next push (README, "Conflicts and retries"), but with auto_sync alone no push ever comes
/// unless the user writes again: it is neither pending (no backoff retry) nor new.
#[test]
fn auto_sync_retries_a_mutation_the_server_failed_with_a_transient_error() {
    // The server does not know the model Note (yet): each note is rejected with `error`.
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); SELECT tether_track('notes');",
    )
    .unwrap();
    set_config(&conn, "auto_sync", "true");
    open_plain(&path)
        .execute("INSERT INTO notes (body) VALUES ('n')", [])
        .unwrap();
    let retries = || -> i64 {
        open_plain(&path)
            .query_row(
                "SELECT coalesce(max(retry_count), 0) FROM tether_mutation_logs",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(
        wait_for(Duration::from_secs(5), || retries() >= 1),
        "first push: {:?}",
        sync_log(&path)
    );
    // Backoff: 2 s (±20%), then 4 s. Two more attempts fit in 7.5 s.
    let retried = wait_for(Duration::from_secs(8), || retries() >= 3);
    json(&conn, "SELECT tether_stop()");
    assert!(
        retried,
        "retry_count {} after 8 s: a transiently failed mutation waits for the next write; log {:?}",
        retries(),
        sync_log(&path)
    );
}

/// "After an error the worker waits 2 s, 4 s, 8 s…": while the server is down, every commit of
/// the application sets off a new push at once, so the backoff is skipped and the sync log gets
/// a row (and the server a connection attempt) per write.
#[test]
fn writes_during_an_outage_do_not_skip_the_backoff() {
    let port = free_port();
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         SELECT tether_track('tasks');",
    )
    .unwrap();
    set_config(
        &conn,
        "server_url",
        format!("http://127.0.0.1:{port}").as_str(),
    );
    set_config(&conn, "timeout_ms", 500);
    set_config(&conn, "auto_sync", "true");
    let writer = open_plain(&path);
    let started = Instant::now();
    for i in 0..20 {
        writer
            .execute("INSERT INTO tasks (title) VALUES (?1)", [format!("w{i}")])
            .unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    let elapsed = started.elapsed();
    let attempts = sync_log(&path)
        .iter()
        .filter(|e| e["trigger"] == "auto")
        .count();
    json(&conn, "SELECT tether_stop()");
    // A first try, then retries after ~2 s and ~4 s more: 3 in 5 s; allow 6.
    assert!(
        attempts <= 6,
        "{attempts} auto pushes (each a failed request and a log row) in {:.1}s of outage",
        elapsed.as_secs_f64()
    );
}

/// The queue mark is `max(id)` of tether_mutation_logs, but ids are not monotonic: the table
/// has no AUTOINCREMENT, so once pruning (another process's cycle with retention_days 0, or the
/// 7-day retention catching up) deletes the newest rows, the next write reuses the id the worker
/// already saw. The transaction below is what a prune and a write that land between two 200 ms
/// polls look like to the worker.
#[test]
fn a_write_that_reuses_a_pruned_log_id_is_still_pushed() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.query_row(
        "SELECT tether_config('auto_sync', 'true', 'connection')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    insert(&path, "first");
    assert!(wait_for(Duration::from_secs(5), || pending(&path) == 0));
    std::thread::sleep(Duration::from_millis(500));
    let other = open_plain(&path);
    other
        .execute_batch(
            "BEGIN IMMEDIATE;
             DELETE FROM tether_mutation_logs WHERE sync_status = 'synced';
             INSERT INTO tasks (title) VALUES ('second');
             COMMIT;",
        )
        .unwrap();
    assert_eq!(
        column::<i64>(&other, "SELECT id FROM tether_mutation_logs"),
        [1],
        "the new mutation took the pruned one's id"
    );
    let pushed = wait_for(Duration::from_secs(4), || pending(&path) == 0);
    json(&conn, "SELECT tether_stop()");
    assert!(
        pushed,
        "the write is still pending: the worker took max(id) = 1 for 'nothing new'"
    );
}

// ---------------------------------------------------------------------------------------------
// The worker's connection
// ---------------------------------------------------------------------------------------------

/// Applications load extensions first and set their PRAGMAs after (or the worker started at
/// load, with auto_sync on): the worker keeps `foreign_keys` as it was when it started, so a
/// later pull writes rows whose parent is missing on a connection that checks foreign keys.
#[test]
fn the_worker_follows_foreign_keys_turned_on_after_it_started() {
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

    let (_d2, path) = temp_db();
    {
        let setup = open_loaded(&path);
        setup
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
                 SELECT tether_track('projects');
                 CREATE UNIQUE INDEX projects_key ON projects (tether_id);
                 CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT,
                                     project_id TEXT REFERENCES projects (tether_id));
                 SELECT tether_track('tasks');",
            )
            .unwrap();
        set_config(&setup, "server_url", server.url.as_str());
        set_config(&setup, "auto_sync", "true");
        json(&setup, "SELECT tether_stop()");
    }
    // The application (the sqlite3 shell, whose SQLite starts with foreign_keys off): load (the
    // worker starts, auto_sync is on), then its PRAGMAs, then a pull in the background.
    let out = output(shell(
        &path,
        &[
            "PRAGMA foreign_keys = ON;",
            "SELECT tether_dispatch('pull') IS NOT NULL;",
            ".shell sleep 6",
            "PRAGMA foreign_keys;",
            "SELECT count(*) FROM tasks;",
            "SELECT count(*) FROM pragma_foreign_key_check;",
        ],
    ));
    assert!(
        sync_log(&path)
            .iter()
            .any(|e| e["trigger"] == "dispatch" && e["finished"] == 1),
        "{out} {:?}",
        sync_log(&path)
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["1", "1", "0", "0"],
        "foreign_keys, tasks, foreign key violations: the worker wrote a row whose parent is \
         missing on a connection with foreign_keys = ON"
    );
}

/// The other direction, in a SQLite built with foreign keys on by default (rusqlite's bundled
/// build, this test process): the worker only ever turns them ON, so a host that turned them off
/// gets pulls checked that its own tether_pull() would have written.
#[test]
fn the_worker_follows_foreign_keys_turned_off() {
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
    let (_d2, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF; PRAGMA journal_mode = WAL;
         CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
         SELECT tether_track('projects');
         CREATE UNIQUE INDEX projects_key ON projects (tether_id);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT,
                             project_id TEXT REFERENCES projects (tether_id));
         SELECT tether_track('tasks');",
    )
    .unwrap();
    set_config(&conn, "server_url", server.url.as_str());
    assert_eq!(column::<i64>(&conn, "PRAGMA foreign_keys"), [0]);
    json(&conn, "SELECT tether_dispatch('pull')");
    assert!(wait_for(Duration::from_secs(10), || sync_log(&path)
        .iter()
        .any(|e| e["finished"] == 1)));
    let background = column::<i64>(&conn, "SELECT count(*) FROM tasks")[0];
    json(&conn, "SELECT tether_stop()");
    assert_eq!(
        background,
        1,
        "the worker refused (quarantined) a row the host's own connection, with foreign keys \
         off, takes; quarantine {}",
        json(&conn, "SELECT tether_status()")["quarantine"]
    );
}

/// With auto_sync on in the database, a connection in exclusive locking mode cannot load
/// tether at all: starting the worker fails and the failure fails the load. Dispatch says "no
/// worker can run here"; loading should do the same (load, and show why in tether_status).
#[test]
fn a_connection_where_no_worker_can_run_still_loads_with_auto_sync_on() {
    let (_dir, path) = temp_db();
    {
        let setup = open_loaded(&path);
        setup
            .execute_batch(
                "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks');",
            )
            .unwrap();
        set_config(&setup, "auto_sync", "true");
        json(&setup, "SELECT tether_stop()");
    }
    let conn = open_plain(&path);
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; SELECT count(*) FROM tasks;")
        .unwrap();
    let loaded = load(&conn);
    assert!(
        loaded.is_ok(),
        "loading failed because no worker can run: {loaded:?}"
    );
}

/// A host that opened the database read-only (a reporting process, `sqlite3 -readonly`) gets a
/// background worker that opens the same file read-write and writes it (pushes, the sync log,
/// the lock), as soon as it loads tether with auto_sync on.
#[test]
fn a_read_only_connection_starts_no_worker_that_writes() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (title) VALUES ('x')", [])
        .unwrap();
    // Turned on behind the loading connection's back, so only the read-only one starts a worker.
    drop(conn);
    open_plain(&path)
        .execute(
            "INSERT INTO tether_settings (key, value) VALUES ('auto_sync', 'true')",
            [],
        )
        .unwrap();
    let reader = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    load(&reader).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let worker = json(&reader, "SELECT tether_status()")["worker"].clone();
    assert_eq!(
        (pending(&path), sync_log(&path).len()),
        (1, 0),
        "a read-only connection's worker wrote the database: {worker}"
    );
}

// ---------------------------------------------------------------------------------------------
// Dispatches, stop, and the host's write transaction
// ---------------------------------------------------------------------------------------------

/// The host holds a write transaction (a bulk import) a little longer than the worker's 10 s
/// patience: the dispatched cycle cannot even write its log row, and vanishes — no row in
/// tether_sync_log, nothing retried, the mutation left pending.
#[test]
fn a_dispatch_that_meets_a_long_write_transaction_is_not_lost() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO tasks (title) VALUES ('bulk');")
        .unwrap();
    json(&conn, "SELECT tether_dispatch('push')");
    std::thread::sleep(Duration::from_millis(11_500));
    conn.execute_batch("COMMIT").unwrap();
    let done = wait_for(Duration::from_secs(3), || {
        pending(&path) == 0 || sync_log(&path).iter().any(|e| e["trigger"] == "dispatch")
    });
    let worker = json(&conn, "SELECT tether_status()")["worker"].clone();
    json(&conn, "SELECT tether_stop()");
    assert!(
        done,
        "the dispatched push left no trace in tether_sync_log and nothing was pushed (pending {}); \
         only the worker's status knows: {worker}",
        pending(&path)
    );
}

/// tether_stop() inside the host's write transaction: the worker's cycle waits for the host's
/// lock, the host waits in tether_stop() for the worker — for the full 5 s meant for closing a
/// connection — and then is told `stopped: true` while the worker still runs.
#[test]
fn tether_stop_inside_a_write_transaction_does_not_wait_for_the_worker_it_blocks() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO tasks (title) VALUES ('x');")
        .unwrap();
    json(&conn, "SELECT tether_dispatch('push')");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let stopped = json(&conn, "SELECT tether_stop()");
    let waited = started.elapsed();
    conn.execute_batch("COMMIT").unwrap();
    assert_eq!(stopped["stopped"], true);
    assert!(
        waited < Duration::from_secs(2),
        "tether_stop() blocked the host's connection {:.1}s (a deadlock with its own worker, \
         broken by the 5 s timeout); log {:?}",
        waited.as_secs_f64(),
        sync_log(&path)
    );
}

/// A schedule replaced while its cycle runs: when that cycle fails, the old schedule's backoff
/// (2 s) is applied to the new one, so "every hour" fires again two seconds later.
#[test]
fn a_schedule_replaced_during_a_failing_cycle_keeps_its_new_interval() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "delay_ms": 1500, "status": 500}),
    );
    json(&conn, "SELECT tether_schedule('pull', 1)");
    // The first tick (at 1 s) is in flight until 2.5 s.
    assert!(wait_for(Duration::from_secs(5), || !sync_log(&path).is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    json(&conn, "SELECT tether_schedule('pull', 3600)");
    std::thread::sleep(Duration::from_millis(4500));
    let entries = sync_log(&path);
    let worker = json(&conn, "SELECT tether_status()")["worker"].clone();
    json(&conn, "SELECT tether_stop()");
    assert_eq!(
        entries.len(),
        1,
        "cycles after the schedule became hourly: {entries:?}; worker {worker}"
    );
}

/// `auto_retry_in` after auto_sync was turned off: no retry will ever come, yet status keeps
/// announcing one (counting down to 0 and staying there).
#[test]
fn status_announces_no_auto_retry_once_auto_sync_is_off() {
    let port = free_port();
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         SELECT tether_track('tasks');",
    )
    .unwrap();
    set_config(
        &conn,
        "server_url",
        format!("http://127.0.0.1:{port}").as_str(),
    );
    set_config(&conn, "auto_sync", "true");
    insert(&path, "x");
    assert!(wait_for(Duration::from_secs(5), || !sync_log(&path).is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    set_config(&conn, "auto_sync", "false");
    std::thread::sleep(Duration::from_secs(3));
    let worker = json(&conn, "SELECT tether_status()")["worker"].clone();
    let attempts = sync_log(&path).len();
    json(&conn, "SELECT tether_stop()");
    assert_eq!(attempts, 1, "no retry with auto_sync off");
    assert!(
        worker["auto_retry_in"].is_null(),
        "status announces a retry that will never come: {worker}"
    );
}

/// The loading connection closes while its worker's cycle holds the sync lock and waits on the
/// server longer than the 5 s close allows: the cycle still finishes its log row and releases the
/// lock, and the next cycle is not skipped.
#[test]
fn closing_while_the_worker_holds_the_lock_leaves_neither_lock_nor_open_row() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "delay_ms": 6500}),
    );
    json(&conn, "SELECT tether_dispatch('pull')");
    let plain = open_plain(&path);
    assert!(wait_for(Duration::from_secs(5), || column::<i64>(
        &plain,
        "SELECT count(*) FROM tether_locks"
    ) == [1]));
    let started = Instant::now();
    drop(conn);
    let closing = started.elapsed();
    assert!(
        closing < Duration::from_millis(5500),
        "{:.1}s",
        closing.as_secs_f64()
    );
    assert!(
        wait_for(Duration::from_secs(5), || column::<i64>(
            &plain,
            "SELECT count(*) FROM tether_locks"
        ) == [0]),
        "the lock stayed held"
    );
    // The lease goes first, the log row is finished right after it.
    let finished = wait_for(Duration::from_secs(5), || {
        let entries = sync_log(&path);
        entries.len() == 1 && entries[0]["finished"] == 1 && entries[0]["error"].is_null()
    });
    assert!(finished, "{:?}", sync_log(&path));
    insert(&path, "after");
    let result = json(&open_loaded(&path), "SELECT tether_sync()");
    assert_eq!(
        (result["skipped"].as_bool(), result["pushed"].as_i64()),
        (Some(false), Some(1))
    );
}

/// tether_stop() cancels the dispatches still queued, and the sync log says they were cancelled
/// because "the connection that dispatched it closed" — it is open, and still in use.
#[test]
fn a_dispatch_cancelled_by_tether_stop_says_so() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "delay_ms": 1000}),
    );
    json(&conn, "SELECT tether_dispatch('pull')");
    json(&conn, "SELECT tether_dispatch('push')");
    std::thread::sleep(Duration::from_millis(300));
    let stopped = json(&conn, "SELECT tether_stop()");
    assert_eq!(stopped["cancelled_dispatches"], 1, "{stopped}");
    assert!(wait_for(Duration::from_secs(3), || sync_log(&path).len() == 2));
    let push = sync_log(&path)
        .into_iter()
        .find(|e| e["kind"] == "push")
        .unwrap();
    assert!(
        !push["error"].as_str().unwrap_or("").contains("closed"),
        "the connection is open (this query runs on it): {push}"
    );
}

// ---------------------------------------------------------------------------------------------
// The sync log
// ---------------------------------------------------------------------------------------------

/// The lock holder marks every unfinished row before its own as "interrupted: the process
/// ended" without asking whether that cycle is alive: a cycle running without the lock
/// (`sync_lock` false, here for one connection) is marked while it runs; with retention_days 0
/// the holder's prune then deletes its row, so the cycle's own result is never recorded.
#[test]
fn a_live_cycle_is_never_marked_interrupted_or_pruned() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    let mut problems = Vec::new();
    for retention in [7, 0] {
        set_config(&conn, "retention_days", retention);
        conn.execute("DELETE FROM tether_sync_log", []).unwrap();
        server.post(
            "/_test/faults",
            &json!({"path": "/tether/pull", "delay_ms": 2000}),
        );
        let unlocked_path = path.clone();
        let unlocked = std::thread::spawn(move || {
            let c = open_loaded(&unlocked_path);
            c.query_row(
                "SELECT tether_config('sync_lock', 'false', 'connection')",
                [],
                |_| Ok(()),
            )
            .unwrap();
            json(&c, "SELECT tether_pull()")
        });
        assert!(wait_for(Duration::from_secs(5), || !sync_log(&path).is_empty()));
        std::thread::sleep(Duration::from_millis(300));
        // A cycle that takes the lock while the unlocked pull is in flight.
        json(&conn, "SELECT tether_push()");
        let during = sync_log(&path);
        let result = unlocked.join().unwrap();
        assert_eq!(result["skipped"], false, "{result}");
        let after = sync_log(&path);
        if during.iter().any(|e| {
            e["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("interrupted"))
        }) {
            problems.push(format!(
                "retention_days {retention}: the running pull's row was marked interrupted: {during:?}"
            ));
        }
        if !after
            .iter()
            .any(|e| e["kind"] == "pull" && e["finished"] == 1 && e["result"].is_object())
        {
            problems.push(format!(
                "retention_days {retention}: the pull that ran and finished has no row: {after:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

/// Every `tether` command opens the database with `tether::register`, which starts an auto_sync
/// worker when auto_sync is on: `tether status` runs a background push of its own (its status
/// shows the worker running), waits up to 5 s for it when it closes, then exits in the middle of
/// it, leaving an unfinished log row for the next cycle to mark "interrupted". (`tether push`
/// races its own worker the same way and can answer `"skipped": true`.)
#[test]
fn tether_status_neither_pushes_nor_waits_nor_leaves_an_interrupted_cycle() {
    // A server that takes the connection and never answers.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = black_hole.local_addr().unwrap().port();
    let (_dir, path) = temp_db();
    {
        let setup = open_loaded(&path);
        setup
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
                 SELECT tether_track('tasks'); INSERT INTO tasks (title) VALUES ('x');",
            )
            .unwrap();
        set_config(
            &setup,
            "server_url",
            format!("http://127.0.0.1:{port}").as_str(),
        );
    }
    let cli = cli_binary();
    let started = Instant::now();
    let out = Command::new(cli)
        .args(["status", "--json", "--db"])
        .arg(&path)
        .env("TETHER_AUTO_SYNC", "true")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = sync_log(&path);
    assert!(
        status["worker"]["running"] == false && took < Duration::from_secs(3) && entries.is_empty(),
        "`tether status` started a worker ({}), took {:.1}s and left {entries:?}",
        status["worker"],
        took.as_secs_f64()
    );
    drop(black_hole);
}

// ---------------------------------------------------------------------------------------------
// Attacks that held (kept: background.rs covers none of them)
// ---------------------------------------------------------------------------------------------

/// Two other processes (sqlite3 shells kept alive) load tether with auto_sync on, beside this
/// one writing; the server is down, then up. The log stays small while it is down, and once it
/// is back every write reaches it exactly once.
#[test]
fn auto_sync_in_two_processes_with_the_server_down_then_up() {
    let port = free_port();
    let (_dir, path) = temp_db();
    {
        let setup = open_loaded(&path);
        setup
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
                 SELECT tether_track('tasks');",
            )
            .unwrap();
        set_config(
            &setup,
            "server_url",
            format!("http://127.0.0.1:{port}").as_str(),
        );
        set_config(&setup, "timeout_ms", 500);
        open_plain(&path)
            .execute(
                "INSERT INTO tether_settings (key, value) VALUES ('auto_sync', 'true')",
                [],
            )
            .unwrap();
    }
    let mut shells: Vec<Child> = (0..2).map(|_| shell(&path, &[".shell sleep 90"])).collect();
    std::thread::sleep(Duration::from_millis(800));
    for title in ["a", "b", "c"] {
        insert(&path, title);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(4));
    let rows_down = sync_log(&path).len();
    eprintln!("log rows while the server was down: {rows_down}");
    let listen = format!("127.0.0.1:{port}");
    let (mut server, _url) = start_server(
        server_binary(),
        &["--listen", &listen, "--quiet", "--model", TASK],
    );
    // The retry comes after the backoff (up to 2^n s after n failures): allow for a slow machine.
    // The cycle that pushed writes its log row after its last answer: wait for both.
    let pushed = wait_for(Duration::from_secs(60), || {
        pending(&path) == 0 && sync_log(&path).iter().all(|e| e["finished"] == 1)
    });
    let entries = sync_log(&path);
    for shell in &mut shells {
        let _ = shell.kill();
        let _ = shell.wait();
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(pushed, "still pending: {entries:?}");
    assert!(
        rows_down <= 12,
        "{rows_down} log rows in ~5 s of outage with two processes' workers"
    );
    let total: i64 = entries
        .iter()
        .filter_map(|e| e["result"]["pushed"].as_i64())
        .sum();
    assert_eq!(total, 3, "each write pushed once: {entries:?}");
    assert!(
        entries.iter().all(|e| e["finished"] == 1),
        "unfinished rows: {entries:?}"
    );
}

/// auto_sync turned on by another process reaches an idle worker (started for a distant
/// schedule) within about a second.
#[test]
fn auto_sync_turned_on_in_another_process_reaches_an_idle_worker() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    json(&conn, "SELECT tether_schedule('pull', 3600)");
    let out = output(shell(
        &path,
        &["SELECT tether_config('auto_sync', 'true');"],
    ));
    assert!(out.contains("true"), "{out}");
    std::thread::sleep(Duration::from_millis(1200));
    let started = Instant::now();
    insert(&path, "x");
    let pushed = wait_for(Duration::from_secs(5), || pending(&path) == 0);
    assert!(pushed, "{:?}", sync_log(&path));
    assert!(started.elapsed() < Duration::from_secs(2));
    // The cycle records its result once its pull is done too: wait for that before stopping
    // the worker (under load the pull may still be running when the push has landed).
    let recorded = wait_for(Duration::from_secs(10), || {
        sync_log(&path)
            .iter()
            .any(|e| e["trigger"] == "auto" && e["result"]["pushed"] == 1)
    });
    json(&conn, "SELECT tether_stop()");
    assert!(recorded, "{:?}", sync_log(&path));
}

/// 200 starts and stops in one process leave no thread behind and do not grow its memory
/// much (counted in a sqlite3 shell's /proc entry, away from this test process's threads).
#[test]
fn two_hundred_starts_and_stops_leak_no_thread() {
    let (_dir, path) = temp_db();
    {
        let setup = open_loaded(&path);
        setup
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x);")
            .unwrap();
    }
    let mut commands = vec![
        ".shell echo threads $(ls /proc/$PPID/task | wc -l)".to_string(),
        ".shell echo rss $(grep VmRSS /proc/$PPID/status | tr -dc 0-9)".to_string(),
    ];
    for i in 0..200 {
        if i % 2 == 0 {
            commands.push("SELECT tether_schedule('pull', 3600) IS NOT NULL;".into());
        } else {
            commands.push("SELECT tether_dispatch('pull') IS NOT NULL;".into());
        }
        commands.push("SELECT tether_stop() IS NOT NULL;".into());
    }
    // tether_stop() from SQL does not wait for a cycle to end: let the last ones finish.
    commands.push(".shell sleep 3".into());
    commands.push(".shell echo threads $(ls /proc/$PPID/task | wc -l)".into());
    commands.push(".shell echo rss $(grep VmRSS /proc/$PPID/status | tr -dc 0-9)".into());
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = output(shell(&path, &refs));
    let took = started.elapsed();
    let numbers: Vec<i64> = out
        .lines()
        .filter_map(|l| {
            let (label, n) = l.trim().split_once(' ')?;
            ["threads", "rss"]
                .contains(&label)
                .then(|| n.trim().parse().ok())?
        })
        .collect();
    assert_eq!(numbers.len(), 4, "{out}");
    let (threads_before, rss_before, threads_after, rss_after) =
        (numbers[0], numbers[1], numbers[2], numbers[3]);
    assert_eq!(threads_after, threads_before, "threads left behind: {out}");
    assert!(
        rss_after < rss_before + 20_000,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
    assert!(took < Duration::from_secs(30), "{:.1}s", took.as_secs_f64());
}
