//! Loading the built libtether.so the way applications do.
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};
use tether_harness::*;

fn function_list(conn: &Connection) -> BTreeSet<(String, i64)> {
    let mut stmt = conn
        .prepare("SELECT name, narg FROM pragma_function_list")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn registers_exactly_the_promised_functions() {
    let (_dir, path) = temp_db();
    let conn = open_plain(&path);
    let before = function_list(&conn);
    load(&conn).unwrap();
    let after = function_list(&conn);
    let added: BTreeSet<(String, i64)> = after.difference(&before).cloned().collect();
    let promised: BTreeSet<(String, i64)> = [
        ("tether_config", 0),
        ("tether_config", 1),
        ("tether_config", 2),
        ("tether_config", 3),
        ("tether_discard", 1),
        ("tether_discard", 2),
        ("tether_dispatch", 1),
        ("tether_pull", 0),
        ("tether_pull_request", 0),
        ("tether_pull_response", 1),
        ("tether_push", 0),
        ("tether_push_request", 0),
        ("tether_push_response", 1),
        ("tether_retry", 0),
        ("tether_retry", 1),
        ("tether_retry", 2),
        ("tether_schedule", 2),
        ("tether_status", 0),
        ("tether_stop", 0),
        ("tether_sync", 0),
        ("tether_track", 1),
        ("tether_track", 2),
        ("tether_ulid", 0),
        ("tether_untrack", 1),
        ("tether_version", 0),
    ]
    .into_iter()
    .map(|(n, a)| (n.to_string(), a))
    .collect();
    assert_eq!(added, promised);
    let declared: BTreeSet<(String, i64)> = tether::SQL_FUNCTIONS
        .iter()
        .flat_map(|(name, arities)| {
            arities
                .iter()
                .map(move |a| (name.to_string(), i64::from(*a)))
        })
        .collect();
    assert_eq!(
        declared, promised,
        "tether::SQL_FUNCTIONS documents the same surface"
    );
}

#[test]
fn writing_functions_are_direct_only() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); CREATE TABLE log(x);")
        .unwrap();
    for call in [
        "tether_track('t')",
        "tether_config('debug_level', 1)",
        "tether_untrack('t')",
        "tether_sync()",
        "tether_push()",
        "tether_pull()",
        "tether_push_request()",
        "tether_push_response('{}')",
        "tether_pull_response('{}')",
        "tether_dispatch('push')",
        "tether_schedule('sync', 0)",
        "tether_stop()",
    ] {
        let err = conn
            .execute_batch(&format!(
                "CREATE TRIGGER tr AFTER INSERT ON log BEGIN SELECT {call}; END; INSERT INTO log VALUES (1);"
            ))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unsafe use of"),
            "{call} from a trigger must be refused: {err}"
        );
        conn.execute_batch("DROP TRIGGER IF EXISTS tr").unwrap();
    }
}

#[test]
fn creates_internal_tables_and_loads_twice() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    load(&conn).expect("loading again on the same connection works");
    let second = open_loaded(&path);
    let tables: Vec<String> = column(
        &second,
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'tether%' ORDER BY name",
    );
    for expected in [
        "tether_mutation_logs",
        "tether_sync_state",
        "tether_settings",
        "tether_tracked_tables",
        "tether_migrations",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} missing from {tables:?}"
        );
    }
    let applied: i64 = second
        .query_row("SELECT count(*) FROM tether_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        applied as u32,
        tether::schema::latest_version(),
        "each migration recorded once"
    );
}

#[test]
fn loading_leaves_user_tables_alone() {
    let (_dir, path) = temp_db();
    let plain = open_plain(&path);
    plain.execute_batch("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes(body) VALUES ('x');").unwrap();
    let schema_before: String = plain
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'notes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let conn = open_loaded(&path);
    let schema_after: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'notes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(schema_before, schema_after);
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 0);
}

#[test]
fn concurrent_first_loads_migrate_once() {
    let (_dir, path) = temp_db();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let conn = open_plain(&path);
                load(&conn).map(|_| ())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().expect("every concurrent load succeeds");
    }
    let conn = open_plain(&path);
    let applied: i64 = conn
        .query_row("SELECT count(*) FROM tether_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(applied as u32, tether::schema::latest_version());
    let ids: i64 = conn
        .query_row(
            "SELECT count(*) FROM tether_sync_state WHERE key = 'client_id'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ids, 1);
}

#[test]
fn client_id_is_generated_once_and_persists() {
    let (_dir, path) = temp_db();
    let first: String = open_loaded(&path)
        .query_row("SELECT tether_config('client_id')", [], |r| r.get(0))
        .unwrap();
    assert!(is_ulid(&first), "{first}");
    let again: String = open_loaded(&path)
        .query_row("SELECT tether_config('client_id')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(first, again);
    let stored: String = open_plain(&path)
        .query_row(
            "SELECT value FROM tether_sync_state WHERE key = 'client_id'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(first, stored);
    let conn = open_loaded(&path);
    conn.query_row("SELECT tether_config('client_id', 'device-42')", [], |_| {
        Ok(())
    })
    .unwrap();
    assert_eq!(
        json(&conn, "SELECT tether_status()")["client_id"],
        "device-42",
        "an explicit setting wins"
    );
}

// Loading that fails must never crash the host. When an extension's init fails, SQLite unloads
// the library (dlclose): anything tether registered before failing would then point into
// unmapped code, and the host would crash when the connection closes. Each case runs a host in
// its own process (this test binary again, running `host_process` only) so a crash is an exit
// status, not a dead test runner.

/// Environment of the host process: the database to load tether into, and what to do first.
const HOST_DB: &str = "TETHER_TEST_HOST_DB";
const HOST_SETUP: &str = "TETHER_TEST_HOST_SETUP";

/// Not a test on its own: the host process the tests below start. Opens the database, loads
/// tether, prints the outcome, closes the connection, then returns (exit status 0).
#[test]
#[ignore = "run as a child process by the tests below"]
fn host_process() {
    let path = std::env::var(HOST_DB).expect("TETHER_TEST_HOST_DB");
    let setup = std::env::var(HOST_SETUP).unwrap_or_default();
    let conn = if setup == "read_only" {
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
    } else {
        open_plain(Path::new(&path))
    };
    let outcome = if setup == "busy_function" {
        // The host has its own `tether_status` and a statement still running: SQLite refuses to
        // replace a function while statements are active, so loading fails half-way through
        // registering tether's functions.
        conn.create_scalar_function("tether_status", 0, FunctionFlags::SQLITE_UTF8, |_| {
            Ok("the host's own")
        })
        .unwrap();
        let mut stmt = conn.prepare("SELECT 1 UNION ALL SELECT 2").unwrap();
        let mut rows = stmt.query([]).unwrap();
        rows.next().unwrap();
        let outcome = load(&conn);
        drop(rows);
        drop(stmt);
        if outcome.is_err() {
            // What tether registered before failing still works: the library stayed mapped.
            let ulid: String = conn
                .query_row("SELECT tether_ulid()", [], |r| r.get(0))
                .unwrap();
            println!("still callable: {}", is_ulid(&ulid));
        }
        outcome
    } else {
        load(&conn)
    };
    match outcome {
        Ok(()) => println!("host: loaded"),
        Err(e) => println!("host: load failed: {e}"),
    }
    drop(conn);
    println!("host: closed");
}

/// Runs [`host_process`] on `path` and returns its output; fails unless it exited with 0.
fn host_loads(path: &Path, env: &[(&str, &str)]) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["host_process", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(HOST_DB, path)
        .env("TETHER_EXTENSION", extension_path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the host process must close and exit 0, got {:?}:\n{text}",
        output.status
    );
    assert!(text.contains("host: closed"), "{text}");
    text
}

fn newer_tether_db(path: &Path) {
    open_plain(path)
        .execute_batch(
            "CREATE TABLE tether_migrations (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT);
             INSERT INTO tether_migrations (version, name) VALUES (999, '0999_future');",
        )
        .unwrap();
}

#[test]
fn database_from_a_newer_tether_is_refused_clearly() {
    let (_dir, path) = temp_db();
    newer_tether_db(&path);
    let out = host_loads(&path, &[]);
    assert!(
        out.contains("load failed") && out.contains("newer tether") && out.contains("999"),
        "{out}"
    );
}

#[test]
fn database_migrated_by_this_tether_then_marked_newer_is_refused_clearly() {
    let (_dir, path) = temp_db();
    drop(open_loaded(&path));
    open_plain(&path)
        .execute(
            "INSERT INTO tether_migrations (version, name) VALUES (999, '0999_future')",
            [],
        )
        .unwrap();
    let out = host_loads(&path, &[]);
    assert!(out.contains("newer tether"), "{out}");
}

#[test]
fn a_newer_database_is_refused_even_read_only() {
    let (_dir, path) = temp_db();
    newer_tether_db(&path);
    let out = host_loads(&path, &[(HOST_SETUP, "read_only")]);
    assert!(out.contains("newer tether"), "{out}");
}

#[test]
fn a_file_that_is_not_a_database_is_named_as_such() {
    let (_dir, path) = temp_db();
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).unwrap();
    let out = host_loads(&path, &[]);
    assert!(out.contains("file is not a database"), "{out}");
    assert!(
        !out.contains("JSON"),
        "the cause is the file, not JSON: {out}"
    );
}

#[test]
fn a_malformed_environment_value_is_refused_without_crashing() {
    let (_dir, path) = temp_db();
    // Set up already: this load generates nothing, so nothing else keeps the library mapped.
    drop(open_loaded(&path));
    let out = host_loads(&path, &[("TETHER_PUSH_BATCH_SIZE", "lots")]);
    assert!(
        out.contains("load failed") && out.contains("TETHER_PUSH_BATCH_SIZE"),
        "{out}"
    );
}

#[test]
fn a_load_failing_after_registering_keeps_the_library_mapped() {
    let (_dir, path) = temp_db();
    drop(open_loaded(&path));
    let out = host_loads(&path, &[(HOST_SETUP, "busy_function")]);
    assert!(
        out.contains("load failed") && out.contains("active statements"),
        "{out}"
    );
    assert!(out.contains("still callable: true"), "{out}");
}

#[test]
fn a_stray_capture_suppression_row_is_cleared_on_load() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    conn.query_row("SELECT tether_track('notes')", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    // Committed by mistake (the flag must only live inside an applying transaction): every
    // connection's writes would go uncaptured.
    open_plain(&path)
        .execute(
            "INSERT INTO tether_capture_suppressed (reason) VALUES ('stray')",
            [],
        )
        .unwrap();
    let conn = open_loaded(&path);
    let stray: i64 = conn
        .query_row("SELECT count(*) FROM tether_capture_suppressed", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stray, 0);
    open_plain(&path)
        .execute("INSERT INTO notes (body) VALUES ('captured again')", [])
        .unwrap();
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 1);
}

#[test]
fn loading_inside_a_transaction_leaves_the_suppression_table_alone() {
    let (_dir, path) = temp_db();
    drop(open_loaded(&path));
    open_plain(&path)
        .execute(
            "INSERT INTO tether_capture_suppressed (reason) VALUES ('stray')",
            [],
        )
        .unwrap();
    let conn = open_plain(&path);
    conn.execute_batch("BEGIN").unwrap();
    load(&conn).unwrap();
    assert!(
        !conn.is_autocommit(),
        "the host's transaction is still open"
    );
    conn.execute_batch("COMMIT").unwrap();
    let stray: i64 = conn
        .query_row("SELECT count(*) FROM tether_capture_suppressed", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stray, 1, "cleared only from autocommit, by a later load");
}

#[test]
fn loading_takes_no_write_lock_when_nothing_needs_writing() {
    let (_dir, path) = temp_db();
    drop(open_loaded(&path));
    let writer = open_plain(&path);
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let conn = open_plain(&path);
    conn.busy_timeout(std::time::Duration::ZERO).unwrap();
    let started = std::time::Instant::now();
    load(&conn).expect("loading only reads while another connection writes");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "loading waited for the write lock: {:?}",
        started.elapsed()
    );
    writer.execute_batch("ROLLBACK").unwrap();
}
