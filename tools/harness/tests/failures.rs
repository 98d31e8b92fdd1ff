//! Push and pull under failure: whatever fails, nothing captured is lost or duplicated, the
//! cursor never passes a row that was not applied, and one bad row never stops the others.
//! Scripted answers go through the sans-IO functions; the rest runs against tether-server.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

fn status_of(conn: &Connection, entity: &str) -> (String, Option<String>, i64) {
    conn.query_row(
        "SELECT sync_status, rejection_reason, retry_count FROM tether_mutation_logs
          WHERE entity_id = ?1 ORDER BY id DESC LIMIT 1",
        [entity],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

#[test]
fn an_edit_after_a_create_that_failed_transiently_is_sent_again_after_it_in_order() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES ('draft'); UPDATE tasks SET title = 'final';",
    )
    .unwrap();
    let entity = key_of(&conn, "tasks", 1);
    let first = push_request(&conn).expect("a body");
    let ids = mutation_ids(&first);
    assert_eq!(ids.len(), 2);
    // The server failed the create for a passing reason and so never found the row to update.
    let outcome = push_response(
        &conn,
        &json!({"rejected": [
            {"mutation_id": ids[0], "reason": "error", "data": {"message": "deadlock"}},
            {"mutation_id": ids[1], "reason": "not_found", "data": {}}]}),
    );
    assert_eq!(outcome["failed"], 1, "{outcome}");
    finish_push(&conn);
    let statuses: Vec<(String, Option<String>)> = column::<String>(
        &conn,
        "SELECT sync_status || ':' || coalesce(rejection_reason, '') FROM tether_mutation_logs ORDER BY id",
    )
    .into_iter()
    .map(|s| {
        let (a, b) = s.split_once(':').unwrap();
        (a.to_string(), (!b.is_empty()).then(|| b.to_string()))
    })
    .collect();
    assert_eq!(
        statuses,
        [
            ("failed".to_string(), Some("error".to_string())),
            ("pending".to_string(), None)
        ],
        "the update judged without its create must stay pending"
    );
    // A pull meanwhile must not set the row back to the server's (older) state.
    let page = json!({"snapshots": [{"entity_id": entity, "model": "Task", "operation": "upsert",
                                     "payload": {"title": "draft"}}],
                      "new_sync_cursor": 5, "has_more": false});
    assert_eq!(pull_response(&conn, &page).unwrap()["pulled"], 0);
    assert_eq!(
        column::<String>(&conn, "SELECT title FROM tasks"),
        ["final"]
    );
    // The next push sends both again, create first, with the same ids.
    let again = push_request(&conn).expect("a body");
    assert_eq!(mutation_ids(&again), ids);
    assert_eq!(again["mutations"][1]["payload"]["title"], "final");
    push_response(&conn, &json!({"applied": ids}));
    finish_push(&conn);
    assert_eq!(status_of(&conn, &entity).0, "synced");
    assert_eq!(
        column::<String>(&conn, "SELECT title FROM tasks"),
        ["final"]
    );
}

#[test]
fn a_later_edit_is_held_back_while_an_earlier_one_of_the_same_row_awaits_a_retry() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    set_config(&conn, "push_batch_size", 1);
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES ('a'); INSERT INTO tasks (title) VALUES ('other');
         UPDATE tasks SET title = 'b' WHERE id = 1;",
    )
    .unwrap();
    let create = push_request(&conn).unwrap();
    assert_eq!(create["mutations"][0]["operation"], "create");
    push_response(
        &conn,
        &json!({"rejected": [{"mutation_id": mutation_ids(&create)[0], "reason": "error"}]}),
    );
    // The other row's create goes; the update of row 1 waits for its create's retry.
    let other = push_request(&conn).unwrap();
    assert_eq!(
        other["mutations"][0]["entity_id"],
        key_of(&conn, "tasks", 2)
    );
    push_response(&conn, &json!({"applied": mutation_ids(&other)}));
    assert!(push_request(&conn).is_none(), "the held update was sent");
    let (state, ..) = status_of(&conn, &key_of(&conn, "tasks", 1));
    assert_eq!(state, "pending");
    // Next push: create, then update.
    let retried = push_request(&conn).unwrap();
    assert_eq!(retried["mutations"][0]["operation"], "create");
    push_response(&conn, &json!({"applied": mutation_ids(&retried)}));
    let update = push_request(&conn).unwrap();
    assert_eq!(update["mutations"][0]["operation"], "update");
}

#[test]
fn a_database_error_during_a_pull_moves_no_cursor_and_quarantines_nothing() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    let rows: Vec<Value> = (0..20)
        .map(|_| {
            let key: String = conn
                .query_row("SELECT tether_ulid()", [], |r| r.get(0))
                .unwrap();
            json!({"entity_id": key, "model": "Task", "operation": "upsert",
                   "payload": {"title": "x".repeat(2000)}})
        })
        .collect();
    let page = json!({"snapshots": rows, "new_sync_cursor": 99, "has_more": false});
    conn.execute_batch("PRAGMA query_only = ON").unwrap();
    let error = pull_response(&conn, &page).unwrap_err().to_string();
    assert!(error.contains("SQLITE_READONLY"), "{error}");
    conn.execute_batch("PRAGMA query_only = OFF").unwrap();
    assert_eq!(cursor(&conn), Value::Null);
    assert_eq!(quarantined(&conn), 0);
    // Disk full: the database may not grow past its size now.
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(&format!("PRAGMA max_page_count = {}", pages + 2))
        .unwrap();
    let error = pull_response(&conn, &page).unwrap_err().to_string();
    assert!(error.contains("SQLITE_FULL"), "{error}");
    conn.execute_batch("PRAGMA max_page_count = 1000000")
        .unwrap();
    assert_eq!(
        cursor(&conn),
        Value::Null,
        "the cursor passed rows not applied"
    );
    assert_eq!(quarantined(&conn), 0, "a full disk is not the rows' fault");
    assert_eq!(column::<i64>(&conn, "SELECT count(*) FROM tasks"), [0]);
    // Space again: the same page applies whole.
    assert_eq!(pull_response(&conn, &page).unwrap()["pulled"], 20);
    assert_eq!(cursor(&conn), 99);
}

#[test]
fn a_full_disk_during_a_real_pull_loses_no_row() {
    let server = Server::start(&[]);
    let (_d1, _p1, writer) = synced_client(&server);
    for i in 0..300 {
        writer
            .execute(
                "INSERT INTO tasks (title) VALUES (?1)",
                [format!("{i}-{}", "t".repeat(200))],
            )
            .unwrap();
    }
    assert_eq!(json(&writer, "SELECT tether_sync()")["pushed"], 300);
    let (_d2, _p2, reader) = synced_client(&server);
    let pages: i64 = reader
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    reader
        .execute_batch(&format!("PRAGMA max_page_count = {}", pages + 3))
        .unwrap();
    let error = error_of(&reader, "SELECT tether_pull()");
    assert!(error.contains("SQLITE_FULL"), "{error}");
    assert_eq!(cursor(&reader), Value::Null);
    reader
        .execute_batch("PRAGMA max_page_count = 1000000")
        .unwrap();
    let result = json(&reader, "SELECT tether_pull()");
    assert_eq!(result["pulled"], 300, "{result}");
    assert_eq!(result["pull_errors"], 0, "{result}");
    let mut local = column::<String>(&reader, "SELECT title FROM tasks");
    let mut remote: Vec<String> = server
        .field_of_rows(&reader, "title")
        .into_iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    local.sort();
    remote.sort();
    assert_eq!(local, remote);
}

/// Hosts such as Python's sqlite3 and the sqlite3 shell never turn SQLite's extended result
/// codes on: a failed COMMIT of deferred foreign keys then reads as a plain constraint failure.
#[test]
fn with_foreign_keys_on_a_host_without_extended_result_codes_a_missing_parent_is_quarantined() {
    let (_dir, conn) = family();
    // SAFETY: the handle is valid while `conn` lives.
    unsafe { rusqlite::ffi::sqlite3_extended_result_codes(conn.handle(), 0) };
    let (parent, child) = (ulid(&conn), ulid(&conn));
    let task = json!({"entity_id": child, "model": "Task", "operation": "upsert",
                      "payload": {"title": "t", "project": parent}});
    let page = json!({"snapshots": [task], "new_sync_cursor": 10, "has_more": true});
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(result["quarantined"], 1, "{result}");
    assert_eq!(cursor(&conn), 10);
    let project = json!({"entity_id": parent, "model": "Project", "operation": "upsert",
                         "payload": {"name": "late"}});
    let page = json!({"snapshots": [project], "new_sync_cursor": 20, "has_more": false});
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(
        result["pulled"], 2,
        "the parent, then the child from the quarantine: {result}"
    );
    assert_eq!(
        quarantined(&conn),
        0,
        "the child applied once its parent came"
    );
    let tasks: i64 = conn
        .query_row(
            "SELECT count(*) FROM tasks WHERE project = ?1",
            [&parent],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tasks, 1);
    // A parent delete the children's foreign key refuses waits in the quarantine as well.
    let gone =
        json!({"entity_id": parent, "model": "Project", "operation": "delete", "payload": {}});
    let page = json!({"snapshots": [gone], "new_sync_cursor": 30, "has_more": false});
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(result["quarantined"], 1, "{result}");
    assert_eq!(cursor(&conn), 30);
}

#[test]
fn with_foreign_keys_on_a_child_before_its_parent_arrives() {
    let (_dir, conn) = family();
    let (parent, child, orphan) = (ulid(&conn), ulid(&conn), ulid(&conn));
    let task = |key: &str, project: &str| {
        json!({"entity_id": key, "model": "Task", "operation": "upsert",
               "payload": {"title": "t", "project": project}})
    };
    let project = json!({"entity_id": parent, "model": "Project", "operation": "upsert",
                         "payload": {"name": "p"}});
    // Child first, parent later in the same page.
    let page = json!({"snapshots": [task(&child, &parent), project], "new_sync_cursor": 10,
                      "has_more": false});
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(result["pulled"], 2, "{result}");
    // A child whose parent comes on a later page waits in the quarantine, the cursor moves on.
    let (late_parent, late_child) = (ulid(&conn), ulid(&conn));
    let page = json!({"snapshots": [task(&late_child, &late_parent), task(&orphan, &orphan)],
                      "new_sync_cursor": 20, "has_more": true});
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(result["quarantined"], 2, "{result}");
    assert_eq!(cursor(&conn), 20);
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["quarantine"]["count"], 2, "{status}");
    assert!(
        status["quarantine"]["oldest"][0]["error"]
            .as_str()
            .unwrap()
            .contains("FOREIGN KEY"),
        "{status}"
    );
    let page = json!({"snapshots": [{"entity_id": late_parent, "model": "Project",
                                     "operation": "upsert", "payload": {"name": "late"}}],
                      "new_sync_cursor": 30, "has_more": false});
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(
        result["pulled"], 2,
        "parent and its waiting child: {result}"
    );
    assert_eq!(quarantined(&conn), 1, "only the orphan still waits");
    assert_eq!(
        column::<i64>(&conn, "SELECT count(*) FROM tasks"),
        [2],
        "the child and the early child"
    );
    // Nothing applied from the server was captured back.
    assert_eq!(
        column::<i64>(&conn, "SELECT count(*) FROM tether_mutation_logs"),
        [0]
    );
}

#[test]
fn a_conflict_whose_server_state_cannot_be_written_is_recorded_and_quarantined() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL)",
        "'tasks'",
    );
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES ('a'); INSERT INTO tasks (title) VALUES ('b');",
    )
    .unwrap();
    let body = push_request(&conn).unwrap();
    let ids = mutation_ids(&body);
    let entity = key_of(&conn, "tasks", 2);
    let outcome = push_response(
        &conn,
        &json!({"applied": [ids[0]],
                "conflicts": [{"mutation_id": ids[1], "reason": "conflict",
                               "data": {"server_state": {"tether_id": entity, "title": null},
                                        "server_updated_at": "2026-01-01T00:00:00+00:00"}}]}),
    );
    assert_eq!(
        (outcome["pushed"].clone(), outcome["conflicts"].clone()),
        (json!(1), json!(1))
    );
    finish_push(&conn);
    assert_eq!(status_of(&conn, &key_of(&conn, "tasks", 1)).0, "synced");
    assert_eq!(status_of(&conn, &entity).0, "conflict");
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(
        status["quarantine"]["oldest"][0]["source"], "conflict",
        "{status}"
    );
    assert!(
        push_request(&conn).is_none(),
        "the answer is recorded: nothing to resend"
    );
}

#[test]
fn rows_of_a_model_tracked_later_and_of_a_column_synced_later_arrive() {
    let server = Server::start(&[]);
    let (_d1, _p1, writer) = synced_client(&server);
    writer
        .execute_batch(
            "ALTER TABLE tasks ADD COLUMN status TEXT;
             CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
             SELECT tether_track('projects');
             SELECT tether_status();
             INSERT INTO projects (name) VALUES ('home');
             INSERT INTO tasks (title, status) VALUES ('milk', 'open');",
        )
        .unwrap();
    json(&writer, "SELECT tether_sync()");
    assert!(server
        .field_of_rows(&writer, "status")
        .contains(&json!("open")));
    // The reader syncs before it tracks projects or has the status column.
    let (_d2, _p2, reader) = synced_client(&server);
    let first = json(&reader, "SELECT tether_sync()");
    assert_eq!(first["pulled"], 1, "{first}");
    assert_eq!(
        first["pull_errors"], 1,
        "the Project row, not tracked: {first}"
    );
    reader
        .execute_batch(
            "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
             SELECT tether_track('projects');",
        )
        .unwrap();
    json(&reader, "SELECT tether_sync()");
    assert_eq!(
        column::<String>(&reader, "SELECT name FROM projects"),
        ["home"]
    );
    reader
        .execute_batch("ALTER TABLE tasks ADD COLUMN status TEXT")
        .unwrap();
    json(&reader, "SELECT tether_sync()");
    assert_eq!(
        column::<String>(&reader, "SELECT status FROM tasks"),
        ["open"]
    );
    // Re-pulling changed nothing that would be sent back.
    assert_eq!(
        column::<i64>(&reader, "SELECT count(*) FROM tether_mutation_logs"),
        [0]
    );
}

#[test]
fn the_sans_io_functions_refuse_an_open_transaction() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    conn.execute_batch("INSERT INTO tasks (title) VALUES ('a'); BEGIN;")
        .unwrap();
    for sql in [
        "SELECT tether_push_request()",
        "SELECT tether_pull_request()",
        "SELECT tether_push_response('{}')",
        "SELECT tether_pull_response('{}')",
    ] {
        let error = error_of(&conn, sql);
        assert!(
            error.contains("inside an open transaction"),
            "{sql}: {error}"
        );
    }
    conn.execute_batch("COMMIT").unwrap();
    assert!(push_request(&conn).is_some());
}

/// A server that answers 413 to bodies over `limit` bytes and applies everything else, recording
/// the size of every request it took.
fn size_limited_server(limit: usize) -> (String, Arc<Mutex<Vec<usize>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let (status, answer) = if length > limit {
                ("413 Payload Too Large", json!({"message": "too large"}))
            } else {
                seen.lock().unwrap().push(length);
                let request: Value = serde_json::from_slice(&body).unwrap();
                let ids: Vec<Value> = request["mutations"]
                    .as_array()
                    .map(|m| m.iter().map(|m| m["mutation_id"].clone()).collect())
                    .unwrap_or_default();
                (
                    "200 OK",
                    json!({"applied": ids, "snapshots": [], "has_more": false}),
                )
            };
            let text = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, sizes)
}

#[test]
fn push_requests_stay_under_the_byte_limit_and_a_413_halves_the_batch() {
    let (url, sizes) = size_limited_server(6_000);
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    set_config(&conn, "server_url", url.as_str());
    for i in 0..40 {
        conn.execute(
            "INSERT INTO tasks (title) VALUES (?1)",
            [format!("{i}{}", "x".repeat(400))],
        )
        .unwrap();
    }
    // One row no request can carry.
    conn.execute("INSERT INTO tasks (title) VALUES (?1)", ["y".repeat(9_000)])
        .unwrap();
    set_config(&conn, "push_batch_bytes", 4_000);
    let result = json(&conn, "SELECT tether_push()");
    assert_eq!(result["pushed"], 40, "{result}");
    assert!(
        sizes.lock().unwrap().iter().all(|s| *s <= 4_000),
        "{:?}",
        sizes.lock().unwrap()
    );
    assert_eq!(result["failed"], 1, "{result}");
    assert_eq!(result["rejections"][0]["reason"], "too_large", "{result}");
    // Bytes allowed past what the server takes: its 413 halves the batch until it fits.
    sizes.lock().unwrap().clear();
    for i in 0..40 {
        conn.execute(
            "INSERT INTO tasks (title) VALUES (?1)",
            [format!("{i}{}", "z".repeat(400))],
        )
        .unwrap();
    }
    set_config(&conn, "push_batch_bytes", 1_000_000);
    let result = json(&conn, "SELECT tether_push()");
    assert_eq!(result["pushed"], 40, "{result}");
    assert_eq!(result["failed"], 0, "{result}");
    assert!(sizes.lock().unwrap().iter().all(|s| *s <= 6_000));
    assert_eq!(
        column::<i64>(
            &conn,
            "SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'pending'"
        ),
        [0]
    );
}

#[test]
fn a_temp_table_of_the_same_name_never_takes_the_tracked_tables_place() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)",
        "'tasks'",
    );
    conn.execute_batch(
        "CREATE TEMP TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, tether_id TEXT);",
    )
    .unwrap();
    let key = ulid(&conn);
    let result = apply_snapshots(&conn, &[(&key, "Task", "upsert", json!({"title": "a"}))]);
    assert_eq!(result["pulled"], 1, "{result}");
    assert_eq!(
        column::<String>(&conn, "SELECT title FROM main.tasks"),
        ["a"]
    );
    assert_eq!(column::<i64>(&conn, "SELECT count(*) FROM temp.tasks"), [0]);
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["tables"][0]["state"], "ok", "{status}");
}

/// A pulled parent delete runs the local ON DELETE CASCADE: a child with an edit not sent yet
/// would vanish here while its edit still reaches the server, so its delete is queued after the
/// edit. A child without unsent changes is left to the server's own snapshots.
#[test]
fn a_child_with_unsent_changes_that_a_pulled_parent_delete_cascades_to_is_deleted_on_the_server_too(
) {
    let server = Server::start(&[]);
    let (_dir, _path, conn) = family_with(
        "title TEXT, project_id TEXT REFERENCES projects (tether_id) ON DELETE CASCADE, status TEXT",
    );
    set_config(&conn, "server_url", server.url.as_str());
    conn.execute_batch(
        "INSERT INTO projects (name) VALUES ('home');
         INSERT INTO tasks (title, project_id) SELECT 'synced child', tether_id FROM projects;
         INSERT INTO tasks (title, project_id) SELECT 'edited child', tether_id FROM projects;",
    )
    .unwrap();
    json(&conn, "SELECT tether_sync()");
    let project = key_of(&conn, "projects", 1);
    let edited = key_of(&conn, "tasks", 2);
    // An edit not sent yet, while the server deletes the project.
    conn.execute("UPDATE tasks SET status = 'doing' WHERE id = 2", [])
        .unwrap();
    let page = json!({"snapshots": [{"entity_id": project, "model": "Project",
                                     "operation": "delete", "payload": []}],
                      "new_sync_cursor": 1, "has_more": false});
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(result["pulled"], 1, "{result}");
    assert_eq!(column::<i64>(&conn, "SELECT count(*) FROM tasks"), [0]);
    let queued: Vec<(String, String)> = mutations(&conn)
        .into_iter()
        .filter(|m| m.sync_status == "pending")
        .map(|m| (m.operation, m.entity_id))
        .collect();
    assert_eq!(
        queued,
        [op("update", &edited), op("delete", &edited)],
        "the edited child's delete follows its edit; the synced child is the server's to send"
    );
    json(&conn, "SELECT tether_push()");
    let client: String = conn
        .query_row("SELECT tether_config('client_id')", [], |r| r.get(0))
        .unwrap();
    let left: Vec<String> = server
        .rows(&client)
        .values()
        .filter_map(|row| row["title"].as_str().map(str::to_string))
        .filter(|title| title.contains("child"))
        .collect();
    assert_eq!(left, ["synced child"], "the server kept {left:?}");
}

#[test]
fn a_reference_a_pulled_parent_delete_sets_to_null_on_a_row_with_unsent_changes_is_sent() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
         SELECT tether_track('projects');
         CREATE UNIQUE INDEX projects_key ON projects (tether_id);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT,
                             project_id TEXT REFERENCES projects (tether_id) ON DELETE SET NULL);
         SELECT tether_track('tasks');
         INSERT INTO projects (name) VALUES ('home');
         INSERT INTO tasks (title, project_id) SELECT 'edited', tether_id FROM projects;
         INSERT INTO tasks (title, project_id) SELECT 'untouched', tether_id FROM projects;
         UPDATE tether_mutation_logs SET sync_status = 'synced';
         UPDATE tasks SET title = 'edited!' WHERE id = 1;",
    )
    .unwrap();
    let project = key_of(&conn, "projects", 1);
    let result = apply_snapshots(&conn, &[(&project, "Project", "delete", json!([]))]);
    assert_eq!(result["pulled"], 1, "{result}");
    let queued: Vec<(String, Value)> = mutations(&conn)
        .into_iter()
        .filter(|m| m.sync_status == "pending")
        .map(|m| (m.operation, m.payload))
        .collect();
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert_eq!(queued[1].0, "update");
    let payload = &queued[1].1;
    assert_eq!(payload["project_id"], Value::Null, "{payload}");
    assert_eq!(payload["title"], "edited!");
}

/// Issue 15: a row whose create the server refused (`validation_failed`) is fixed by editing it;
/// the edit goes as the row's create, and a delete of such a row sends nothing.
#[test]
fn fixing_a_row_whose_create_was_refused_sends_it_as_a_create() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": "required|max:20"}, "soft_deletes": true}"#,
    ]);
    let (_dir, _path, conn) = synced_client(&server);
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES (''); INSERT INTO tasks (title) VALUES ('');",
    )
    .unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(result["failed"], 2, "{result}");
    conn.execute_batch(
        "UPDATE tasks SET title = 'fixed title' WHERE id = 1; DELETE FROM tasks WHERE id = 2;",
    )
    .unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(result["failed"], 0, "{result}");
    assert_eq!(result["pushed"], 1, "{result}");
    assert_eq!(
        server.field_of_rows(&conn, "title"),
        [json!("fixed title")],
        "the server has the fixed row"
    );
    // Later edits are ordinary updates of a row the server has now.
    conn.execute("UPDATE tasks SET title = 'again' WHERE id = 1", [])
        .unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(
        (result["pushed"].clone(), result["failed"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(server.field_of_rows(&conn, "title"), [json!("again")]);
    let pending: i64 = conn
        .query_row(
            "SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0);
}

/// Issue 15: every rejection names the table and the row; pull errors say why, per model, in the
/// result, the sync log and the status.
#[test]
fn rejections_name_the_row_and_pull_errors_say_why() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": "required|max:20"}, "soft_deletes": true}"#,
        "--model",
        r#"{"name": "Note", "fields": {"body": "nullable"}}"#,
    ]);
    let (_d1, _p1, other) = synced_client(&server);
    other
        .execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); SELECT tether_track('notes');
             INSERT INTO notes (body) VALUES ('a'), ('b');",
        )
        .unwrap();
    json(&other, "SELECT tether_sync()");
    let (_d2, _p2, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (id, title) VALUES (42, '')", [])
        .unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    let rejection = &result["rejections"][0];
    assert_eq!(rejection["reason"], "validation_failed", "{result}");
    assert_eq!(rejection["row"]["table"], "tasks", "{rejection}");
    assert_eq!(
        rejection["row"]["primary_key"],
        json!({"id": 42}),
        "{rejection}"
    );
    assert_eq!(rejection["row"]["entity_id"], key_of(&conn, "tasks", 42));
    assert_eq!(
        result["pull_error_reasons"],
        json!({"unknown model": {"Note": 2}}),
        "{result}"
    );
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(
        status["last_pull_errors"],
        json!({"unknown model": {"Note": 2}}),
        "{status}"
    );
}
