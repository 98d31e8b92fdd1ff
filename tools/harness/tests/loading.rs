//! Loading the built libtether.so the way applications do.
use std::collections::BTreeSet;

use rusqlite::Connection;
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
        ("tether_dispatch", 1),
        ("tether_pull", 0),
        ("tether_pull_request", 0),
        ("tether_pull_response", 1),
        ("tether_push", 0),
        ("tether_push_request", 0),
        ("tether_push_response", 1),
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
fn database_from_a_newer_tether_is_refused_clearly() {
    let (_dir, path) = temp_db();
    drop(open_loaded(&path));
    open_plain(&path)
        .execute(
            "INSERT INTO tether_migrations (version, name) VALUES (999, '0999_future')",
            [],
        )
        .unwrap();
    let conn = open_plain(&path);
    let err = load(&conn).unwrap_err().to_string();
    assert!(err.contains("newer tether"), "{err}");
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
