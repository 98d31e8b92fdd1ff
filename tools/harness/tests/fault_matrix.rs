//! The fault matrix: every fault the reference server can inject, on push and on pull, and the
//! local database failing under a pull. After each: nothing lost, nothing applied twice on the
//! server (checked against its record of applied mutation ids, in strict-duplicates mode), and the
//! next sync converges. Prints the figures.
use std::collections::BTreeMap;
use std::path::PathBuf;

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

struct World {
    server: Server,
    server_db: PathBuf,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let server_db = dir.path().join("server.sqlite");
    let server = Server::start(&["--strict-duplicates", "--db", server_db.to_str().unwrap()]);
    World {
        server,
        server_db,
        _dir: dir,
    }
}

/// Mutation ids the server applied, with how many times each was recorded.
fn server_applied(world: &World) -> BTreeMap<String, i64> {
    let conn = Connection::open(&world.server_db).unwrap();
    let mut stmt = conn
        .prepare("SELECT mutation_id, count(*) FROM tether_applied_mutations GROUP BY mutation_id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn fault(world: &World, fault: Value) {
    world.server.post("/_test/faults", &fault);
}

fn clear_faults(world: &World) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .delete(&format!("{}/_test/faults", world.server.url))
        .call()
        .unwrap();
}

/// The local rows by sync key: title and priority.
fn local_rows(conn: &Connection) -> BTreeMap<String, (String, Option<i64>)> {
    let mut stmt = conn
        .prepare("SELECT tether_id, title, priority FROM tasks")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn server_rows(world: &World, conn: &Connection) -> BTreeMap<String, (String, Option<i64>)> {
    let client: String = conn
        .query_row("SELECT tether_config('client_id')", [], |r| r.get(0))
        .unwrap();
    world
        .server
        .rows(&client)
        .into_iter()
        .map(|(key, row)| {
            (
                key,
                (
                    row["title"].as_str().unwrap().to_string(),
                    row["priority"].as_i64(),
                ),
            )
        })
        .collect()
}

fn client(world: &World) -> (tempfile::TempDir, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, priority INTEGER);
         SELECT tether_track('tasks');",
    )
    .unwrap();
    set_config(&conn, "server_url", world.server.url.as_str());
    set_config(&conn, "push_batch_size", 4);
    set_config(&conn, "pull_page_size", 25);
    set_config(&conn, "timeout_ms", 1500);
    (dir, conn)
}

/// Creates, updates and deletes: `round` keeps the titles distinct between rounds.
fn workload(conn: &Connection, round: usize) {
    for i in 0..5 {
        conn.execute(
            "INSERT INTO tasks (title, priority) VALUES (?1, ?2)",
            (format!("r{round}-{i}"), i as i64),
        )
        .unwrap();
    }
    conn.execute_batch(&format!(
        "UPDATE tasks SET priority = coalesce(priority, 0) + 10 WHERE id % 3 = {};
         DELETE FROM tasks WHERE id = (SELECT min(id) FROM tasks WHERE title LIKE 'r{round}-%');",
        round % 3
    ))
    .unwrap();
}

/// Mutations the server has not settled: pending, or failed and awaiting a retry. (Conflicts
/// and permanent rejections are settled answers: two clients edit the same rows here.)
fn unsynced(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM tether_mutation_logs
          WHERE sync_status = 'pending' OR (sync_status = 'failed' AND rejection_reason = 'error')",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Syncs without faults, then checks the client equals the server and every mutation it made
/// was applied exactly once. Returns the rows checked.
fn assert_converged(world: &World, conn: &Connection, writer: &Connection, label: &str) -> usize {
    clear_faults(world);
    for _ in 0..2 {
        json(writer, "SELECT tether_sync()");
        json(conn, "SELECT tether_sync()");
    }
    assert_eq!(
        unsynced(conn),
        0,
        "{label}: mutations left unsynced: {:?}",
        column::<String>(
            conn,
            "SELECT operation || ' ' || sync_status || ' ' || coalesce(rejection_reason, '') || ' ' || coalesce(rejection_data, '') FROM tether_mutation_logs WHERE sync_status = 'pending' OR rejection_reason = 'error'"
        )
    );
    assert_eq!(
        unsynced(writer),
        0,
        "{label}: the writer's mutations left unsynced"
    );
    let local = local_rows(conn);
    assert_eq!(
        local,
        server_rows(world, conn),
        "{label}: client and server differ"
    );
    assert_eq!(local, local_rows(writer), "{label}: the two clients differ");
    let applied = server_applied(world);
    for c in [conn, writer] {
        let ids = column::<String>(
            c,
            // Deletes of rows the server never had are settled without a request.
            "SELECT mutation_id FROM tether_mutation_logs WHERE sync_status = 'synced'
               AND coalesce(json_extract(rejection_data, '$.message'), '') NOT LIKE 'not sent:%'",
        );
        for id in ids {
            assert_eq!(
                applied.get(&id).copied(),
                Some(1),
                "{label}: mutation {id} applied {:?} times on the server",
                applied.get(&id)
            );
        }
        let refused = column::<String>(
            c,
            "SELECT mutation_id FROM tether_mutation_logs WHERE sync_status IN ('conflict', 'failed')",
        );
        for id in refused {
            assert!(
                !applied.contains_key(&id),
                "{label}: {id} refused yet applied"
            );
        }
    }
    local.len()
}

#[test]
fn every_server_fault_on_push_and_pull_loses_and_duplicates_nothing() {
    let world = world();
    let (_d1, conn) = client(&world);
    let (_d2, writer) = client(&world);
    set_config(&conn, "retention_days", 30);
    set_config(&conn, "max_retry_attempts", 10);
    let faults = [
        json!({"status": 500}),
        json!({"status": 503}),
        json!({"status": 401}),
        json!({"status": 413}),
        json!({"status": 422}),
        json!({"body": "html"}),
        json!({"body": "truncated"}),
        json!({"body": "drop"}),
        json!({"delay_ms": 2500}),
    ];
    let (mut tried, mut rows_checked, mut failed_cycles) = (0, 0, 0);
    for (round, injected) in faults.iter().enumerate() {
        for path in ["/tether/push", "/tether/pull"] {
            workload(&conn, round * 2 + usize::from(path.ends_with("pull")));
            workload(
                &writer,
                100 + round * 2 + usize::from(path.ends_with("pull")),
            );
            json(&writer, "SELECT tether_push()");
            let mut spec = injected.clone();
            spec["path"] = json!(path);
            spec["times"] = json!(2);
            fault(&world, spec.clone());
            tried += 1;
            // Whatever the fault, the call returns (an error or a result), never hangs or crashes.
            let outcome: rusqlite::Result<String> =
                conn.query_row("SELECT tether_sync()", [], |r| r.get(0));
            if outcome.is_err() {
                failed_cycles += 1;
            }
            rows_checked += assert_converged(&world, &conn, &writer, &spec.to_string());
        }
    }
    println!(
        "fault matrix: {tried} server faults tried ({failed_cycles} cycles failed as expected), {rows_checked} rows checked, {} mutations applied once",
        server_applied(&world).len()
    );
}

#[test]
fn the_local_database_failing_during_a_pull_loses_nothing() {
    let world = world();
    let (_d1, conn) = client(&world);
    let (_d2, writer) = client(&world);
    let mut rows_checked = 0;
    for (round, failure) in ["read-only", "disk full", "interrupted by a busy writer"]
        .iter()
        .enumerate()
    {
        workload(&writer, round);
        for i in 0..40 {
            // Enough new rows that applying them needs new pages.
            writer
                .execute(
                    "INSERT INTO tasks (title) VALUES (?1)",
                    [format!("{round}-{i}-{}", "w".repeat(240))],
                )
                .unwrap();
        }
        json(&writer, "SELECT tether_push()");
        match *failure {
            "read-only" => conn.execute_batch("PRAGMA query_only = ON").unwrap(),
            "disk full" => {
                let pages: i64 = conn
                    .query_row("PRAGMA page_count", [], |r| r.get(0))
                    .unwrap();
                conn.execute_batch(&format!("PRAGMA max_page_count = {pages}"))
                    .unwrap();
            }
            _ => {}
        }
        let outcome: rusqlite::Result<String> =
            conn.query_row("SELECT tether_pull()", [], |r| r.get(0));
        if *failure != "interrupted by a busy writer" {
            let error = outcome.unwrap_err().to_string();
            assert!(
                error.contains("SQLITE_READONLY") || error.contains("SQLITE_FULL"),
                "{failure}: {error}"
            );
            conn.execute_batch("PRAGMA query_only = OFF; PRAGMA max_page_count = 1000000")
                .unwrap();
            // Pages before the failing one may have moved the cursor; whether it ever passed a
            // row not applied shows in the convergence check below.
            assert_eq!(
                json(&conn, "SELECT tether_status()")["quarantine"]["count"],
                0,
                "{failure}: rows quarantined for a database problem"
            );
        }
        rows_checked += assert_converged(&world, &conn, &writer, failure);
    }
    println!("local failures: 3 tried, {rows_checked} rows checked");
}

#[test]
fn a_row_the_database_refuses_waits_in_the_quarantine_and_the_rest_converges() {
    let world = world();
    let (_d1, conn) = client(&world);
    let (_d2, path) = temp_db();
    // This client refuses priorities above 100; the other does not.
    let strict = open_loaded(&path);
    strict
        .execute_batch(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL,
                                 priority INTEGER CHECK (priority IS NULL OR priority <= 100));
             SELECT tether_track('tasks');",
        )
        .unwrap();
    set_config(&strict, "server_url", world.server.url.as_str());
    conn.execute_batch(
        "INSERT INTO tasks (title, priority) VALUES ('fine', 1), ('too high', 500), ('also fine', 2)",
    )
    .unwrap();
    json(&conn, "SELECT tether_sync()");
    let result = json(&strict, "SELECT tether_sync()");
    assert_eq!(result["pulled"], 2, "{result}");
    assert_eq!(result["pull_errors"], 1, "{result}");
    let status = json(&strict, "SELECT tether_status()");
    assert_eq!(status["quarantine"]["count"], 1, "{status}");
    assert!(
        status["quarantine"]["oldest"][0]["error"]
            .as_str()
            .unwrap()
            .contains("CHECK"),
        "{status}"
    );
    // Once the server's row is one this database takes, it arrives and leaves the quarantine.
    conn.execute_batch("UPDATE tasks SET priority = 50 WHERE title = 'too high'")
        .unwrap();
    json(&conn, "SELECT tether_sync()");
    json(&strict, "SELECT tether_sync()");
    assert_eq!(
        json(&strict, "SELECT tether_status()")["quarantine"]["count"],
        0
    );
    assert_eq!(local_rows(&strict), local_rows(&conn));
    println!("quarantine: 1 refused row held, then applied; 3 rows checked");
}
