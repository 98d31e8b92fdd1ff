//! Adversarial review of "nothing lost, nothing wedged": cases where push and pull under failure
//! still lose data, let local and server drift apart for good, or fail the same way forever.
//! Each test states what should happen; a failing test is a defect.
use std::collections::{BTreeMap, HashSet};

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

fn statuses(conn: &Connection) -> Vec<String> {
    column(
        conn,
        "SELECT operation || ':' || sync_status || ':' || coalesce(rejection_reason, '')
           FROM tether_mutation_logs ORDER BY id",
    )
}

fn upsert(entity: &str, model: &str, payload: Value) -> Value {
    json!({"entity_id": entity, "model": model, "operation": "upsert", "payload": payload})
}

fn delete(entity: &str, model: &str) -> Value {
    json!({"entity_id": entity, "model": model, "operation": "delete", "payload": []})
}

fn page(snapshots: Vec<Value>, cursor: i64) -> Value {
    json!({"snapshots": snapshots, "new_sync_cursor": cursor, "has_more": false})
}

/// A scripted server for push bodies, judging each mutation in order like the Laravel server:
/// update or delete of a row it does not hold → `not_found`. Mutation ids in `unanswered` are
/// left out of the answer (and not applied), as a server that stopped part-way would.
#[derive(Default)]
struct FakeServer {
    rows: BTreeMap<String, Value>,
    applied: HashSet<String>,
}

impl FakeServer {
    fn answer(&mut self, body: &Value, unanswered: &HashSet<String>) -> Value {
        let (mut applied, mut rejected) = (Vec::new(), Vec::new());
        for m in body["mutations"].as_array().unwrap() {
            let id = m["mutation_id"].as_str().unwrap().to_string();
            if unanswered.contains(&id) {
                continue;
            }
            if self.applied.contains(&id) {
                applied.push(json!(id));
                continue;
            }
            let entity = m["entity_id"].as_str().unwrap().to_string();
            match m["operation"].as_str().unwrap() {
                "create" => {
                    self.rows.insert(entity, m["payload"].clone());
                }
                "update" if self.rows.contains_key(&entity) => {
                    self.rows.insert(entity, m["payload"].clone());
                }
                "delete" if self.rows.contains_key(&entity) => {
                    self.rows.remove(&entity);
                }
                _ => {
                    rejected.push(json!({"mutation_id": id, "reason": "not_found",
                                         "data": {"entity_id": entity}}));
                    continue;
                }
            }
            self.applied.insert(id.clone());
            applied.push(json!(id));
        }
        json!({"applied": applied, "rejected": rejected, "conflicts": []})
    }

    /// One whole sans-IO push, leaving `unanswered` out of every answer.
    fn push(&mut self, conn: &Connection, unanswered: &HashSet<String>) {
        while let Some(body) = push_request(conn) {
            let answer = self.answer(&body, unanswered);
            push_response(conn, &answer);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Push: order per row
// ---------------------------------------------------------------------------------------------

/// README ("absent: stays pending, sent again by the next push"; "Order per row: a later change
/// is never sent ahead of an earlier one"). A create the server left unanswered stays pending,
/// but the same push goes on to send the row's update, which the server can only answer
/// `not_found`; that rejection is recorded as final, so the edit never reaches the server.
#[test]
fn an_update_is_never_sent_ahead_of_its_create_left_unanswered_in_another_batch() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    set_config(&conn, "push_batch_size", 1);
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES ('draft'); UPDATE tasks SET title = 'final';",
    )
    .unwrap();
    let entity = key_of(&conn, "tasks", 1);
    let mut server = FakeServer::default();
    // First push: the server does not answer the create (it stopped part-way).
    let create = push_request(&conn).unwrap();
    assert_eq!(create["mutations"][0]["operation"], "create");
    let skip: HashSet<String> = mutation_ids(&create).into_iter().collect();
    push_response(&conn, &server.answer(&create, &skip));
    server.push(&conn, &skip);
    // Second push: everything answered.
    server.push(&conn, &HashSet::new());
    server.push(&conn, &HashSet::new());
    assert_eq!(
        server.rows.get(&entity).map(|p| p["title"].clone()),
        Some(json!("final")),
        "the server must end with the row's last state; queue: {:?}",
        statuses(&conn)
    );
    assert!(
        !statuses(&conn).iter().any(|s| s.contains("failed")),
        "{:?}",
        statuses(&conn)
    );
}

/// The same with both in one request: the server answers the update `not_found` and leaves the
/// create out. `held_back` only holds rejections behind a create that failed with `error` in the
/// same answer, not behind one left unanswered.
#[test]
fn an_update_rejected_because_its_unanswered_create_was_not_applied_is_not_final() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES ('draft'); UPDATE tasks SET title = 'final';",
    )
    .unwrap();
    let entity = key_of(&conn, "tasks", 1);
    let mut server = FakeServer::default();
    let body = push_request(&conn).unwrap();
    let ids = mutation_ids(&body);
    assert_eq!(ids.len(), 2);
    let skip: HashSet<String> = [ids[0].clone()].into_iter().collect();
    push_response(&conn, &server.answer(&body, &skip));
    finish_push(&conn);
    server.push(&conn, &HashSet::new());
    server.push(&conn, &HashSet::new());
    assert_eq!(
        server.rows.get(&entity).map(|p| p["title"].clone()),
        Some(json!("final")),
        "the edit was lost; queue: {:?}",
        statuses(&conn)
    );
}

// ---------------------------------------------------------------------------------------------
// Deferred snapshots
// ---------------------------------------------------------------------------------------------

/// README: a snapshot of a row with unsent changes waits; "if the local change is then rejected
/// for good, the server's state applies". A local change that fails for good before it is sent
/// (`invalid_value`, and likewise `too_large` after a 413) never settles the waiting snapshot:
/// `fail_locally` does not call `settle_deferred`, so the server's state is never applied and the
/// snapshot waits in `tether_deferred_snapshots` forever.
#[test]
fn a_snapshot_waiting_on_a_change_that_fails_locally_for_good_is_applied_when_discarded() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    conn.execute_batch("INSERT INTO tasks (title) VALUES ('first')")
        .unwrap();
    let entity = key_of(&conn, "tasks", 1);
    let mut server = FakeServer::default();
    server.push(&conn, &HashSet::new());
    // A local edit that cannot be sent (text that is not UTF-8).
    conn.execute_batch("UPDATE tasks SET title = CAST(x'C328' AS TEXT)")
        .unwrap();
    // Meanwhile the server has a newer state: it waits for the local change.
    let result = pull_response(
        &conn,
        &page(
            vec![upsert(&entity, "Task", json!({"title": "server"}))],
            10,
        ),
    )
    .unwrap();
    assert_eq!(result["pulled"], 0, "{result}");
    // The push fails the local change for good.
    finish_push(&conn);
    assert!(
        statuses(&conn).iter().any(|s| s.ends_with("invalid_value")),
        "{:?}",
        statuses(&conn)
    );
    let waiting = "SELECT count(*) FROM tether_deferred_snapshots";
    // Like a rejection, it waits for the user with the local value kept (issue 15); discarding it
    // applies the server's state.
    assert_eq!(
        column::<i64>(&conn, waiting),
        [1],
        "the server's state waits"
    );
    let discarded = json(&conn, "SELECT tether_discard('tasks', 1)");
    assert_eq!(
        discarded["rows"][0]["outcome"], "server state put back",
        "{discarded}"
    );
    let title: Vec<u8> = conn
        .query_row("SELECT CAST(title AS BLOB) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (
            String::from_utf8_lossy(&title).to_string(),
            column::<i64>(&conn, waiting)
        ),
        ("server".to_string(), vec![0]),
        "the server's state never applies: the local row keeps a change the server will never get"
    );
}

// ---------------------------------------------------------------------------------------------
// Pull: wedges
// ---------------------------------------------------------------------------------------------

fn family(deferrable: &str) -> (tempfile::TempDir, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
         SELECT tether_track('projects');
         CREATE UNIQUE INDEX projects_key ON projects (tether_id);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT,
                             project TEXT REFERENCES projects (tether_id) {deferrable});
         SELECT tether_track('tasks');"
    ))
    .unwrap();
    (dir, conn)
}

/// README: "If the commit still fails a key, the transaction is written again checking each
/// row, and the rows whose parent is missing wait in the quarantine." A key declared
/// `DEFERRABLE INITIALLY DEFERRED` (which tether_track only warns about) is still checked at
/// COMMIT in the re-run, so the re-run fails the same way and the error stops the pull: the
/// cursor never moves, the page's other rows never apply, every pull fails the same way.
#[test]
fn an_orphan_under_a_deferrable_foreign_key_is_quarantined_instead_of_failing_every_pull() {
    let (_dir, conn) = family("DEFERRABLE INITIALLY DEFERRED");
    let (project, orphan, missing) = (ulid(&conn), ulid(&conn), ulid(&conn));
    let snapshots = vec![
        upsert(&project, "Project", json!({"name": "p"})),
        upsert(&orphan, "Task", json!({"title": "t", "project": missing})),
    ];
    for attempt in 0..2 {
        let result = pull_response(&conn, &page(snapshots.clone(), 10));
        assert!(
            result.is_ok(),
            "pull {attempt} failed: {}; cursor {}",
            result.unwrap_err(),
            cursor(&conn)
        );
    }
    assert_eq!(cursor(&conn), 10);
    assert_eq!(column::<String>(&conn, "SELECT name FROM projects"), ["p"]);
    assert_eq!(quarantined(&conn), 1);
}

/// The same key, on the push side: a conflict's server state naming a parent this device does
/// not have stops the answer from being recorded, so the same mutation is sent and conflicts
/// again at every push.
#[test]
fn a_conflict_state_under_a_deferrable_foreign_key_does_not_stop_the_answer_being_recorded() {
    let (_dir, conn) = family("DEFERRABLE INITIALLY DEFERRED");
    conn.execute_batch("INSERT INTO tasks (title) VALUES ('mine')")
        .unwrap();
    let entity = key_of(&conn, "tasks", 1);
    let body = push_request(&conn).unwrap();
    let id = mutation_ids(&body)[0].clone();
    let answer = json!({"conflicts": [{"mutation_id": id, "reason": "conflict",
        "data": {"server_state": {"tether_id": entity, "title": "theirs", "project": ulid(&conn)},
                 "server_updated_at": "2026-01-01T00:00:00+00:00"}}]});
    let outcome = conn.query_row(
        "SELECT tether_push_response(?1)",
        [answer.to_string()],
        |r| r.get::<_, String>(0),
    );
    assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    finish_push(&conn);
    assert!(
        push_request(&conn).is_none(),
        "the conflicted mutation is sent again: {:?}",
        statuses(&conn)
    );
}

/// A trigger of the application's refusing a row with RAISE(ROLLBACK) is a refusal of that row
/// (SQLITE_CONSTRAINT_TRIGGER), like RAISE(ABORT), which is quarantined. But SQLite ends the
/// transaction, tether stops the whole pull, and the page is tried again, and fails again, at
/// every pull: the cursor never moves past it and the rows beside it never arrive.
#[test]
fn a_row_an_application_trigger_refuses_with_raise_rollback_does_not_wedge_the_pull() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TRIGGER no_spam BEFORE INSERT ON tasks WHEN NEW.title = 'spam'
         BEGIN SELECT RAISE(ROLLBACK, 'no spam here'); END;",
        "'tasks'",
    );
    let (good, bad, later) = (ulid(&conn), ulid(&conn), ulid(&conn));
    let snapshots = vec![
        upsert(&good, "Task", json!({"title": "milk"})),
        upsert(&bad, "Task", json!({"title": "spam"})),
        upsert(&later, "Task", json!({"title": "eggs"})),
    ];
    for attempt in 0..2 {
        let result = pull_response(&conn, &page(snapshots.clone(), 10));
        assert!(
            result.is_ok(),
            "pull {attempt} failed: {}; cursor {}",
            result.unwrap_err(),
            cursor(&conn)
        );
    }
    assert_eq!(cursor(&conn), 10);
    let mut titles = column::<String>(&conn, "SELECT title FROM tasks");
    titles.sort();
    assert_eq!(titles, ["eggs", "milk"]);
    assert_eq!(quarantined(&conn), 1);
}

/// The same trigger meeting a conflict's server state: the push answer can never be recorded,
/// so the conflicted mutation stays pending and is sent (and conflicts) again at every push.
#[test]
fn a_conflict_state_an_application_trigger_refuses_with_raise_rollback_is_recorded() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TRIGGER no_spam BEFORE UPDATE ON tasks WHEN NEW.title = 'spam'
         BEGIN SELECT RAISE(ROLLBACK, 'no spam here'); END;",
        "'tasks'",
    );
    conn.execute_batch("INSERT INTO tasks (title) VALUES ('mine')")
        .unwrap();
    let entity = key_of(&conn, "tasks", 1);
    let body = push_request(&conn).unwrap();
    let id = mutation_ids(&body)[0].clone();
    let answer = json!({"conflicts": [{"mutation_id": id, "reason": "conflict",
        "data": {"server_state": {"tether_id": entity, "title": "spam"},
                 "server_updated_at": "2026-01-01T00:00:00+00:00"}}]});
    let outcome = conn.query_row(
        "SELECT tether_push_response(?1)",
        [answer.to_string()],
        |r| r.get::<_, String>(0),
    );
    assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    finish_push(&conn);
    assert!(
        push_request(&conn).is_none(),
        "the conflicted mutation is sent again: {:?}",
        statuses(&conn)
    );
}

/// RAISE(ABORT) in the same trigger: quarantined, the rest applies (holds; the contrast).
#[test]
fn a_row_an_application_trigger_refuses_with_raise_abort_is_quarantined() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TRIGGER no_spam BEFORE INSERT ON tasks WHEN NEW.title = 'spam'
         BEGIN SELECT RAISE(ABORT, 'no spam here'); END;",
        "'tasks'",
    );
    let (good, bad) = (ulid(&conn), ulid(&conn));
    let result = pull_response(
        &conn,
        &page(
            vec![
                upsert(&good, "Task", json!({"title": "milk"})),
                upsert(&bad, "Task", json!({"title": "spam"})),
            ],
            10,
        ),
    )
    .unwrap();
    assert_eq!(result["quarantined"], 1, "{result}");
    assert_eq!(cursor(&conn), 10);
}

// ---------------------------------------------------------------------------------------------
// Pull: the cursor's coverage
// ---------------------------------------------------------------------------------------------

/// README: "when a model or synced column is added, the next pull starts from the beginning."
/// `apply_page` stores as coverage the tables tracked when the answer is applied, not when the
/// request was made. A table tracked while a pull is in flight (another connection, the
/// background worker, or a host driving the HTTP itself) is recorded as covered by a cursor
/// that was asked for without it: its rows from before that cursor never arrive.
#[test]
fn a_model_tracked_while_a_pull_is_in_flight_is_still_pulled_from_the_start() {
    let (_dir, path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    pull_response(&conn, &page(vec![], 50)).unwrap();
    // The request leaves with cursor 50, which covers tasks only.
    let request = pull_request(&conn);
    assert_eq!(request["last_sync_cursor"], 50);
    // While it is in flight, another connection starts tracking projects.
    let other = open_loaded(&path);
    other
        .execute_batch(
            "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
             SELECT tether_track('projects');",
        )
        .unwrap();
    assert_eq!(
        pull_request(&conn)["last_sync_cursor"],
        Value::Null,
        "tracking alone re-pulls"
    );
    // The answer to the request that left before (rows changed after 50 only).
    pull_response(&conn, &page(vec![], 60)).unwrap();
    assert_eq!(
        pull_request(&conn)["last_sync_cursor"],
        Value::Null,
        "projects changed before cursor 50 would never arrive"
    );
}

/// The same through tether_sync against the real server: a column added to a tracked table by
/// another connection while the pull request is in flight (a delayed answer).
#[test]
fn a_column_added_while_a_real_pull_is_in_flight_is_still_pulled() {
    let server = Server::start(&[]);
    let (_d1, _p1, writer) = synced_client(&server);
    writer
        .execute_batch(
            "ALTER TABLE tasks ADD COLUMN status TEXT; SELECT tether_status();
             INSERT INTO tasks (title, status) VALUES ('milk', 'open');",
        )
        .unwrap();
    json(&writer, "SELECT tether_sync()");
    let (_d2, path, reader) = synced_client(&server);
    json(&reader, "SELECT tether_sync()");
    // The next pull's answer is slow; meanwhile the app's migration adds the column.
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "delay_ms": 1500}),
    );
    let migrate = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let other = open_loaded(&path);
        other
            .execute_batch("ALTER TABLE tasks ADD COLUMN status TEXT; SELECT tether_status();")
            .unwrap();
    });
    let result = json(&reader, "SELECT tether_pull()");
    migrate.join().unwrap();
    let _ = result;
    json(&reader, "SELECT tether_sync()");
    assert_eq!(
        column::<Option<String>>(&reader, "SELECT status FROM tasks"),
        [Some("open".to_string())],
        "the value of the column synced later never arrives"
    );
}

// ---------------------------------------------------------------------------------------------
// Foreign key actions while applying
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Quarantine cost
// ---------------------------------------------------------------------------------------------

/// A chain of rows waiting on each other (a task's parent task, an outline) plus one orphan that
/// will never apply. Each retry pass runs the batch deferred (all apply), fails the orphan's key
/// at COMMIT, re-runs it row by row in key order, where only the row whose parent already exists
/// applies, and repeats: one row per pass, N passes of 2N writes each, inside one pull.
#[test]
fn a_chain_of_quarantined_rows_with_one_orphan_recovers_in_reasonable_time() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, parent TEXT);
         SELECT tether_track('tasks');
         CREATE UNIQUE INDEX tasks_key ON tasks (tether_id);",
    )
    .unwrap();
    // SQLite cannot add a foreign key to a table: rebuild it with one (tether repairs).
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF;
         CREATE TABLE tasks_new (id INTEGER PRIMARY KEY, title TEXT,
                                 parent TEXT REFERENCES tasks (tether_id), tether_id TEXT);
         DROP TABLE tasks; ALTER TABLE tasks_new RENAME TO tasks;
         CREATE UNIQUE INDEX tasks_key ON tasks (tether_id);
         PRAGMA foreign_keys = ON;
         SELECT tether_status();",
    )
    .unwrap();
    let n = 300;
    let mut keys: Vec<String> = (0..n + 1).map(|_| ulid(&conn)).collect();
    keys.sort();
    let root = keys.pop().unwrap();
    // keys[i] -> keys[i + 1], the last -> root: in key order each row's parent comes after it.
    let mut chain: Vec<Value> = (0..n)
        .map(|i| {
            let parent = if i + 1 < n { &keys[i + 1] } else { &root };
            upsert(
                &keys[i],
                "Task",
                json!({"title": format!("t{i}"), "parent": parent}),
            )
        })
        .collect();
    let orphan = ulid(&conn);
    chain.push(upsert(
        &orphan,
        "Task",
        json!({"title": "orphan", "parent": ulid(&conn)}),
    ));
    let first = pull_response(&conn, &page(chain, 10)).unwrap();
    assert_eq!(first["quarantined"], n + 1, "{first}");
    let started = std::time::Instant::now();
    let result = pull_response(
        &conn,
        &page(vec![upsert(&root, "Task", json!({"title": "root"}))], 20),
    )
    .unwrap();
    let took = started.elapsed();
    assert_eq!(result["pulled"], n + 1, "{result}");
    // The orphan is tried once per pass: how many passes this pull made over the quarantine.
    let attempts: i64 = conn
        .query_row(
            "SELECT attempts FROM tether_quarantine WHERE entity_id = ?1",
            [&orphan],
            |r| r.get(0),
        )
        .unwrap();
    let passes = attempts - 2;
    assert!(
        passes < 10 && took < std::time::Duration::from_secs(5),
        "one pull of one row made {passes} passes over the quarantine and took {took:?} to \
         recover a chain of {n} rows (quadratic: every pass re-runs all rows twice)"
    );
}

/// Thousands of rows the database keeps refusing: every pull, even one that brings nothing,
/// writes every one of them again (a failed write and an `attempts` update each), in one
/// transaction after another.
#[test]
fn an_empty_pull_with_a_large_quarantine_stays_cheap() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT CHECK (length(title) < 10))",
        "'tasks'",
    );
    let rows: Vec<Value> = (0..5000)
        .map(|i| {
            upsert(
                &ulid(&conn),
                "Task",
                json!({"title": format!("far too long {i}")}),
            )
        })
        .collect();
    let first = pull_response(&conn, &page(rows, 10)).unwrap();
    assert_eq!(first["quarantined"], 5000);
    let empty = std::time::Instant::now();
    pull_response(&conn, &page(vec![], 11)).unwrap();
    let took = empty.elapsed();
    let attempts: i64 = conn
        .query_row("SELECT max(attempts) FROM tether_quarantine", [], |r| {
            r.get(0)
        })
        .unwrap();
    eprintln!("empty pull with 5000 quarantined: {took:?}, attempts now {attempts}");
    assert!(
        took < std::time::Duration::from_secs(3),
        "an empty pull took {took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Settling deferred snapshots
// ---------------------------------------------------------------------------------------------

/// Two edits of one row in one request: the first rejected (`validation_failed`), the second
/// applied, so the server holds the second (a full row). `settle_deferred` decides by the last
/// entry it was given per entity, and `apply_answer` gives applied ones first and rejected ones
/// after, whatever their queue order: the row counts as "rejected for good" and the older server
/// snapshot that waited is written over the accepted edit. The next local edit then carries that
/// old value back to the server, undoing the accepted edit there too.
#[test]
fn an_accepted_edit_after_a_rejected_one_is_not_overwritten_by_the_waiting_snapshot() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, priority INTEGER)",
        "'tasks'",
    );
    conn.execute_batch("INSERT INTO tasks (title, priority) VALUES ('first', 1)")
        .unwrap();
    let entity = key_of(&conn, "tasks", 1);
    let mut server = FakeServer::default();
    server.push(&conn, &HashSet::new());
    conn.execute_batch(
        "UPDATE tasks SET title = 'far too long a title';
         UPDATE tasks SET title = 'good';",
    )
    .unwrap();
    // A snapshot from before these edits waits for them.
    pull_response(
        &conn,
        &page(
            vec![upsert(
                &entity,
                "Task",
                json!({"title": "first", "priority": 1}),
            )],
            10,
        ),
    )
    .unwrap();
    let body = push_request(&conn).unwrap();
    let ids = mutation_ids(&body);
    server
        .rows
        .insert(entity.clone(), body["mutations"][1]["payload"].clone());
    push_response(
        &conn,
        &json!({"applied": [ids[1]],
                "rejected": [{"mutation_id": ids[0], "reason": "validation_failed",
                              "data": {"messages": {"title": ["too long"]}}}]}),
    );
    finish_push(&conn);
    let local = column::<String>(&conn, "SELECT title FROM tasks");
    conn.execute_batch("UPDATE tasks SET priority = 2").unwrap();
    server.push(&conn, &HashSet::new());
    assert_eq!(
        (local[0].as_str(), server.rows[&entity]["title"].clone()),
        ("good", json!("good")),
        "(local title after the answer, server title after the next edit): the server held \
         'good', the old snapshot was written over it and the next edit sent it back"
    );
}

/// Commit 7fee1db applies a waiting snapshot when the row's mutation is answered applied, if the
/// snapshot arrived "after the mutation may have reached the server" — judged by the mutation
/// having its id. But ids are given to a whole `push_batch_size` of pending mutations while
/// `push_batch_bytes` may cut the request shorter, so a mutation that never left (the first request failed) counts as possibly sent: the
/// older server state then overwrites the edit the server has just accepted, and the next local
/// edit, pushed before a pull brings the echo, sends the old value back.
#[test]
fn a_snapshot_deferred_behind_a_mutation_that_was_never_sent_does_not_overwrite_it() {
    let (_dir, path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, priority INTEGER)",
        "'tasks'",
    );
    conn.execute_batch(
        "INSERT INTO tasks (title, priority) VALUES ('a', 1);
         INSERT INTO tasks (title, priority) VALUES ('b', 1);",
    )
    .unwrap();
    let b = key_of(&conn, "tasks", 2);
    let mut server = FakeServer::default();
    server.push(&conn, &HashSet::new());
    // Room for one mutation per request (ids are still given to a whole push_batch_size).
    set_config(&conn, "push_batch_bytes", 100);
    conn.execute_batch(
        "UPDATE tasks SET title = 'a2' WHERE id = 1; UPDATE tasks SET title = 'b2' WHERE id = 2;",
    )
    .unwrap();
    // The first request is built (b's update gets its id too) but never reaches the server.
    let first = push_request(&conn).unwrap();
    assert_ne!(first["mutations"][0]["entity_id"], json!(b));
    drop(conn);
    // The app starts again. A pull brings another device's older edit of b: it waits.
    let conn = open_loaded(&path);
    let pulled = pull_response(
        &conn,
        &page(
            vec![upsert(
                &b,
                "Task",
                json!({"title": "theirs", "priority": 1}),
            )],
            10,
        ),
    )
    .unwrap();
    assert_eq!(pulled["pulled"], 0, "{pulled}");
    // The push goes through: the server takes b2 (the newer edit).
    server.push(&conn, &HashSet::new());
    assert_eq!(server.rows[&b]["title"], "b2");
    let local: String = conn
        .query_row("SELECT title FROM tasks WHERE id = 2", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch("UPDATE tasks SET priority = 2 WHERE id = 2")
        .unwrap();
    server.push(&conn, &HashSet::new());
    assert_eq!(
        (local.as_str(), server.rows[&b]["title"].clone()),
        ("b2", json!("b2")),
        "(local title after the push, server title after the next edit)"
    );
}

// ---------------------------------------------------------------------------------------------
// Sans-IO push bookkeeping
// ---------------------------------------------------------------------------------------------

/// README: "Within one push (until tether_push_request() returns NULL), a mutation the server
/// left unanswered is not requested again; the next push sends it." When the push ends on
/// mutations that all fail locally, tether_push_request returns NULL but keeps its position: the
/// next push starts where the last one stopped, skips the requeue of transient failures, and
/// does not send the unanswered mutation (only the push after it does).
#[test]
fn the_push_after_one_that_ended_on_an_unsendable_mutation_resends_what_was_unanswered() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    set_config(&conn, "push_batch_size", 1);
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES ('ok');
         INSERT INTO tasks (title) VALUES (CAST(x'C328' AS TEXT));",
    )
    .unwrap();
    let first = push_request(&conn).unwrap();
    push_response(&conn, &json!({})); // left unanswered
    assert!(
        push_request(&conn).is_none(),
        "the unsendable one fails locally"
    );
    // A new push.
    let again = push_request(&conn);
    assert_eq!(
        again.as_ref().map(mutation_ids),
        Some(mutation_ids(&first)),
        "the next push must send the unanswered mutation"
    );
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// A column becomes JSON when the server first sends an array for it, but the applying
/// transaction keeps the table as it was read at its start: a text in that column later in the
/// same 500-row transaction is stored raw (`123`) instead of as JSON text (`"123"`), unlike the
/// same value one transaction later, and goes back to the server as the number 123.
#[test]
fn a_string_after_an_array_in_the_same_page_keeps_its_type() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, tags TEXT)",
        "'tasks'",
    );
    let (a, b, c) = (ulid(&conn), ulid(&conn), ulid(&conn));
    pull_response(
        &conn,
        &page(
            vec![
                upsert(&a, "Task", json!({"title": "a", "tags": ["x"]})),
                upsert(&b, "Task", json!({"title": "b", "tags": "123"})),
            ],
            10,
        ),
    )
    .unwrap();
    pull_response(
        &conn,
        &page(
            vec![upsert(&c, "Task", json!({"title": "c", "tags": "123"}))],
            20,
        ),
    )
    .unwrap();
    let stored = column::<String>(&conn, "SELECT tags FROM tasks ORDER BY title");
    conn.execute_batch("UPDATE tasks SET title = title || '!'")
        .unwrap();
    let body = push_request(&conn).unwrap();
    let sent: Vec<Value> = body["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["tags"].clone())
        .collect();
    assert_eq!(
        (stored, sent),
        (
            vec![
                "[\"x\"]".to_string(),
                "\"123\"".to_string(),
                "\"123\"".to_string()
            ],
            vec![json!(["x"]), json!("123"), json!("123")]
        ),
        "(stored, sent back after a local edit): the same value, stored and sent differently \
         by its position in the page"
    );
}

/// README: "A response applied twice ... changes nothing." Applied a second time, the answer
/// that held an update back behind its create's transient failure records the update's
/// `not_found` as final: `held_back` only looks for the create among mutations still pending,
/// and the first application made it `failed`. The edit never reaches the server.
#[test]
fn an_answer_applied_twice_does_not_record_the_update_it_held_back() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES ('draft'); UPDATE tasks SET title = 'final';",
    )
    .unwrap();
    let body = push_request(&conn).unwrap();
    let ids = mutation_ids(&body);
    let answer = json!({"rejected": [
        {"mutation_id": ids[0], "reason": "error", "data": {"message": "deadlock"}},
        {"mutation_id": ids[1], "reason": "not_found", "data": {}}]});
    push_response(&conn, &answer);
    let again = push_response(&conn, &answer);
    assert_eq!(
        again["failed"], 0,
        "the second application changed something: {again}"
    );
    finish_push(&conn);
    assert_eq!(
        statuses(&conn),
        ["create:failed:error", "update:pending:"],
        "the held update must stay pending"
    );
}

// ---------------------------------------------------------------------------------------------
// Attacks that held (kept: cases not covered elsewhere)
// ---------------------------------------------------------------------------------------------

/// Several rows interleaved, each create failing transiently with its update in the same
/// request, and another row applied between them: both updates are held, the next push sends
/// each create before its update, nothing is lost.
#[test]
fn interleaved_rows_each_keep_their_order_behind_a_transient_failure() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    set_config(&conn, "max_retry_attempts", 2);
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES ('a0'); INSERT INTO tasks (title) VALUES ('b0');
         INSERT INTO tasks (title) VALUES ('c0');
         UPDATE tasks SET title = 'a1' WHERE id = 1; UPDATE tasks SET title = 'b1' WHERE id = 2;
         UPDATE tasks SET title = 'c1' WHERE id = 3;",
    )
    .unwrap();
    let (a, b, c) = (
        key_of(&conn, "tasks", 1),
        key_of(&conn, "tasks", 2),
        key_of(&conn, "tasks", 3),
    );
    let mut server = FakeServer::default();
    let body = push_request(&conn).unwrap();
    let mut answer = server.answer(&body, &HashSet::new());
    // The server failed a's and b's creates with a passing error (so never found their rows).
    let creates = mutation_ids(&body);
    server.rows.remove(&a);
    server.rows.remove(&b);
    for id in [&creates[0], &creates[1], &creates[3], &creates[4]] {
        server.applied.remove(id);
    }
    let applied: Vec<Value> = answer["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|id| *id != &json!(creates[0]) && *id != &json!(creates[1]))
        .filter(|id| *id != &json!(creates[3]) && *id != &json!(creates[4]))
        .cloned()
        .collect();
    answer = json!({"applied": applied, "rejected": [
        {"mutation_id": creates[0], "reason": "error"},
        {"mutation_id": creates[1], "reason": "error"},
        {"mutation_id": creates[3], "reason": "not_found"},
        {"mutation_id": creates[4], "reason": "not_found"}]});
    let outcome = push_response(&conn, &answer);
    assert_eq!(outcome["failed"], 2, "{outcome}");
    finish_push(&conn);
    server.push(&conn, &HashSet::new());
    let titles: Vec<Value> = [&a, &b, &c]
        .iter()
        .map(|k| server.rows[*k]["title"].clone())
        .collect();
    assert_eq!(titles, [json!("a1"), json!("b1"), json!("c1")]);
    assert!(
        statuses(&conn).iter().all(|s| s.contains("synced")),
        "{:?}",
        statuses(&conn)
    );
}

/// The deferred-key re-run must behave like the first run: one page with an orphan (so the
/// COMMIT fails and the page is written again row by row), a column learned as JSON in it (DDL
/// inside the transaction that is rolled back and done again), the same entity twice (refused,
/// then applied; applied, then refused), and a create-then-delete.
#[test]
fn the_row_by_row_rerun_handles_duplicates_and_learned_json_like_the_first_run() {
    let (_dir, _path, conn) = family_with(
        "title TEXT CHECK (title <> 'bad'), tags TEXT, project TEXT REFERENCES projects (tether_id)",
    );
    let (orphan, twice, later_bad, gone) = (ulid(&conn), ulid(&conn), ulid(&conn), ulid(&conn));
    let snapshots = vec![
        upsert(
            &orphan,
            "Task",
            json!({"title": "o", "project": ulid(&conn)}),
        ),
        upsert(&twice, "Task", json!({"title": "bad", "tags": ["x"]})),
        upsert(
            &twice,
            "Task",
            json!({"title": "fixed", "tags": ["x", "y"]}),
        ),
        upsert(&later_bad, "Task", json!({"title": "fine"})),
        upsert(&later_bad, "Task", json!({"title": "bad"})),
        upsert(&gone, "Task", json!({"title": "g"})),
        delete(&gone, "Task"),
    ];
    let result = pull_response(&conn, &page(snapshots, 10)).unwrap();
    assert_eq!(result["quarantined"], 3, "{result}");
    assert_eq!(cursor(&conn), 10);
    let rows: Vec<(String, Option<String>)> = {
        let mut stmt = conn
            .prepare("SELECT title, tags FROM tasks ORDER BY title")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        rows,
        [
            ("fine".to_string(), None),
            ("fixed".to_string(), Some("[\"x\",\"y\"]".to_string()))
        ]
    );
    let waiting: Vec<String> = column(
        &conn,
        "SELECT entity_id FROM tether_quarantine ORDER BY entity_id",
    );
    let mut expected = vec![orphan.clone(), later_bad.clone()];
    expected.sort();
    assert_eq!(waiting, expected);
    let status = json(&conn, "SELECT tether_status()");
    let tasks = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "tasks")
        .cloned();
    assert!(
        format!("{tasks:?}").contains("tags"),
        "tags learned as JSON: {status}"
    );
    assert_eq!(
        column::<i64>(&conn, "SELECT count(*) FROM tether_mutation_logs"),
        [0]
    );
}

/// Entity ids that are not ULIDs or not strings, and a model whose table was dropped: neither
/// stops the page, the cursor moves on, the other rows apply.
#[test]
fn odd_entity_ids_and_a_dropped_table_never_stop_the_page() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        "'tasks'",
    );
    json(&conn, "SELECT tether_track('notes')");
    conn.execute_batch("DROP TABLE notes").unwrap();
    let good = ulid(&conn);
    let snapshots = vec![
        upsert("not-a-ulid", "Task", json!({"title": "x"})),
        json!({"entity_id": 42, "model": "Task", "operation": "upsert", "payload": {"title": "y"}}),
        upsert(&ulid(&conn), "Note", json!({"body": "b"})),
        upsert(&good, "Task", json!({"title": "ok"})),
    ];
    let result = pull_response(&conn, &page(snapshots, 10)).unwrap();
    assert_eq!(result["pulled"], 1, "{result}");
    assert_eq!(cursor(&conn), 10);
    assert_eq!(column::<String>(&conn, "SELECT title FROM tasks"), ["ok"]);
    // A second pull gets through too.
    pull_response(&conn, &page(vec![], 11)).unwrap();
    assert_eq!(cursor(&conn), 11);
}

// ---------------------------------------------------------------------------------------------
// Schema history
// ---------------------------------------------------------------------------------------------
