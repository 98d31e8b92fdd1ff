//! Capture writes no entry into the queue's index of unsynced rows: a captured row enters it when
//! tether next writes (its `indexed` flag, set for the whole tail of rows captured since). Until
//! then every reader must still find it: status, the push, the pull's check for unsent local
//! changes, whatever became of the log's newest rows.
use serde_json::{json, Value};
use tether_harness::{
    column, json, open_loaded, open_plain, repo_root, set_config, synced_client, Server,
};

/// How many rows of the log the index does not hold yet.
fn not_indexed(conn: &rusqlite::Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM tether_mutation_logs WHERE indexed IS NULL AND sync_status <> 'synced'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn client_id(conn: &rusqlite::Connection) -> String {
    conn.query_row("SELECT tether_config('client_id')", [], |r| r.get(0))
        .unwrap()
}

/// Sync key and title of every row of `table` that has its key, in primary key order.
fn keyed_titles(conn: &rusqlite::Connection, table: &str) -> Vec<(String, String)> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT tether_id, title FROM {table} WHERE tether_id IS NOT NULL ORDER BY id"
        ))
        .unwrap();
    let found = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    found
}

/// Every local row of `table` is on the server with its local title.
fn assert_server_has(server: &Server, conn: &rusqlite::Connection, table: &str) {
    let rows = server.rows(&client_id(conn));
    let local = keyed_titles(conn, table);
    assert!(!local.is_empty());
    for (key, title) in local {
        assert_eq!(
            rows.get(&key).map(|r| r["title"].clone()),
            Some(Value::from(title.clone())),
            "{table} row {key} ({title}) on the server: {rows:?}"
        );
    }
}

#[test]
fn writes_another_connection_captured_are_counted_held_back_from_the_pull_and_sent() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": "required"}}"#,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required"}}"#,
    ]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute_batch(
        r#"CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);
           SELECT tether_track('notes', '{"keys": "on_sync"}');
           INSERT INTO tasks (title) VALUES ('first');"#,
    )
    .unwrap();
    let first = json(&conn, "SELECT tether_sync()");
    assert_eq!(first["pushed"], 1, "{first}");

    // Another device changes the synced row on the server.
    let (_other_dir, _other_path, other) = synced_client(&server);
    json(&other, "SELECT tether_sync()");
    let shared: String = conn
        .query_row("SELECT tether_id FROM tasks WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    // The application's own connection never loaded tether: its writes are the log's tail.
    let app = open_plain(&path);
    app.execute_batch(
        "UPDATE tasks SET title = 'edited here' WHERE id = 1;
         INSERT INTO tasks (title) VALUES ('second'), ('third');
         INSERT INTO notes (title) VALUES ('a note'), ('another');",
    )
    .unwrap();
    assert_eq!(not_indexed(&conn), 5, "the writes are not in the index yet");
    other
        .execute(
            "UPDATE tasks SET title = 'edited there' WHERE tether_id = ?1",
            [&shared],
        )
        .unwrap();
    json(&other, "SELECT tether_push()");

    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["pending"], 5, "{status}");

    // The pulled version of the row waits for its unsent local change.
    let pulled = json(&conn, "SELECT tether_pull()");
    assert!(pulled["error"].is_null(), "{pulled}");
    let title: String = conn
        .query_row("SELECT title FROM tasks WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(title, "edited here", "{pulled}");
    let waiting: i64 = conn
        .query_row(
            "SELECT count(*) FROM tether_deferred_snapshots WHERE entity_id = ?1",
            [&shared],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(waiting, 1);
    assert_eq!(not_indexed(&conn), 0, "the pull's transaction indexed them");

    let synced = json(&conn, "SELECT tether_sync()");
    assert!(synced["error"].is_null(), "{synced}");
    // Two creates of tasks, the edit of the first (answered with a conflict: the other device's
    // edit is newer) and the two notes.
    assert_eq!(
        synced["pushed"].as_i64().unwrap() + synced["conflicts"].as_i64().unwrap(),
        5,
        "{synced}"
    );
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["pending"], 0, "{status}");
    assert_server_has(&server, &conn, "tasks");
    assert_server_has(&server, &conn, "notes");
}

#[test]
fn rows_captured_after_the_newest_rows_of_the_log_were_deleted_are_found() {
    let server = Server::start(&[]);
    let (_dir, path, conn) = synced_client(&server);
    let app = open_plain(&path);
    app.execute_batch("INSERT INTO tasks (title) VALUES ('one'), ('two'), ('three'), ('four');")
        .unwrap();
    json(&conn, "SELECT tether_sync()");
    // Someone deletes the newest synced rows of the log (the indexed ones the tail starts
    // after): new rows take their ids again.
    conn.execute_batch("DELETE FROM tether_mutation_logs WHERE id > 2")
        .unwrap();
    app.execute_batch("INSERT INTO tasks (title) VALUES ('five'), ('six');")
        .unwrap();
    let ids: Vec<i64> = column(
        &conn,
        "SELECT id FROM tether_mutation_logs WHERE sync_status = 'pending' ORDER BY id",
    );
    assert_eq!(ids, [3, 4], "the new rows reuse the deleted rows' ids");
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 2);

    // And once the log is empty altogether.
    json(&conn, "SELECT tether_sync()");
    conn.execute_batch("DELETE FROM tether_mutation_logs")
        .unwrap();
    app.execute_batch("INSERT INTO tasks (title) VALUES ('seven');")
        .unwrap();
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 1);
    let synced = json(&conn, "SELECT tether_sync()");
    assert_eq!(synced["pushed"], 1, "{synced}");
    assert_server_has(&server, &conn, "tasks");
}

/// A database tether version 6 set up (every unsynced row in the index, no `indexed` column):
/// made here from a current one by undoing migrations 7 to 9.
fn as_schema_6(conn: &rusqlite::Connection) {
    let view =
        std::fs::read_to_string(repo_root().join("sql/migrations/0006_attention_messages.sql"))
            .unwrap();
    conn.execute_batch("DROP VIEW tether_attention; DROP INDEX tether_mutation_logs_unsynced;")
        .unwrap();
    // Version 6's triggers name none of the columns dropped below; the load gives current ones.
    let triggers: Vec<String> = column(
        conn,
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE 'tether%'",
    );
    for name in triggers {
        conn.execute_batch(&format!("DROP TRIGGER \"{name}\""))
            .unwrap();
    }
    conn.execute_batch(
        "UPDATE tether_tracked_tables SET trigger_version = 4;
         ALTER TABLE tether_mutation_logs DROP COLUMN indexed;
         CREATE INDEX tether_mutation_logs_unsynced
             ON tether_mutation_logs (sync_status, id) WHERE sync_status <> 'synced';
         ALTER TABLE tether_row_keys DROP COLUMN log_id;
         ALTER TABLE tether_replaced DROP COLUMN for_row;
         ALTER TABLE tether_replaced DROP COLUMN for_pk;
         CREATE INDEX tether_replaced_table ON tether_replaced (table_id);
         DELETE FROM tether_migrations WHERE version >= 7;",
    )
    .unwrap();
    conn.execute_batch(&view).unwrap();
}

#[test]
fn upgrading_keeps_the_queue_in_the_index() {
    let server = Server::start(&[]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute_batch("INSERT INTO tasks (title) VALUES ('synced before');")
        .unwrap();
    json(&conn, "SELECT tether_sync()");
    conn.execute_batch("INSERT INTO tasks (title) VALUES ('pending at the upgrade'), ('another');")
        .unwrap();
    drop(conn);
    as_schema_6(&open_plain(&path));

    let conn = open_loaded(&path);
    let version: i64 = conn
        .query_row("SELECT max(version) FROM tether_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(version >= 7, "migrated to {version}");
    assert_eq!(not_indexed(&conn), 0);
    // Rows captured after the upgrade come after the newest indexed row.
    open_plain(&path)
        .execute_batch("INSERT INTO tasks (title) VALUES ('after the upgrade');")
        .unwrap();
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 3);
    set_config(&conn, "server_url", server.url.as_str());
    let synced = json(&conn, "SELECT tether_sync()");
    assert_eq!(synced["pushed"], 3, "{synced}");
    assert_server_has(&server, &conn, "tasks");
    let attention: Vec<Value> = column::<String>(
        &conn,
        "SELECT json_object('kind', kind) FROM tether_attention",
    )
    .iter()
    .map(|s| serde_json::from_str(s).unwrap())
    .collect();
    assert_eq!(attention, Vec::<Value>::new(), "{}", json!(attention));
}

/// The key pass of a `{"keys": "on_sync"}` table: a trigger of the application reacting to a
/// key it gives changes an older row still waiting for its key, which logs that row a newer
/// create (inside the pass's own transaction). That create is the row's last: the row is sent
/// after the parent it now refers to, not at its old place.
#[test]
fn a_create_the_key_pass_itself_caused_claims_its_row() {
    let (_dir, _path, conn, _plain) = tether_harness::tracked_db(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT, parent TEXT);",
        r#"'items', '{"keys": "on_sync"}'"#,
    );
    conn.execute_batch(
        "CREATE TRIGGER link AFTER UPDATE OF tether_id ON items WHEN NEW.id = 2
         BEGIN UPDATE items SET parent = NEW.tether_id WHERE id = 1; END;
         INSERT INTO items (title) VALUES ('child'), ('parent');",
    )
    .unwrap();
    let body = tether_harness::push_request(&conn).expect("a request");
    let titles: std::collections::HashMap<String, String> =
        keyed_titles(&conn, "items").into_iter().collect();
    let sent: Vec<(String, String)> = body["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                titles[m["entity_id"].as_str().unwrap()].clone(),
                m["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [("parent".to_string(), "create".to_string())],
        "the child waits for its create logged after the parent's key: {body}"
    );
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 2);
}

/// `tether_retry` puts a row back; a trigger of the application reacting to that logs a change
/// of another row being retried in the same transaction. That change is one of the other row's
/// open mutations: retried with it, not sent on its own before the row's refused create.
#[test]
fn a_change_a_retry_itself_caused_is_retried_with_its_row() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Project", "fields": {"name": "required"}}"#,
        "--model",
        r#"{"name": "Task", "fields": {"title": "required|max:5", "note": "nullable"}}"#,
    ]);
    let client = |server: &Server| {
        let (dir, _path, conn) = tether_harness::family_with("title TEXT, note TEXT");
        set_config(&conn, "server_url", server.url.as_str());
        (dir, conn)
    };
    let (_here_dir, here) = client(&server);
    let (_there_dir, there) = client(&server);
    here.execute_batch("INSERT INTO projects (name) VALUES ('first')")
        .unwrap();
    json(&here, "SELECT tether_sync()");
    json(&there, "SELECT tether_sync()");
    here.execute_batch(
        "CREATE TRIGGER note_it AFTER UPDATE OF name ON projects
         BEGIN UPDATE tasks SET note = NEW.name; END;
         UPDATE projects SET name = 'named here';",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    there
        .execute_batch("UPDATE projects SET name = 'named there'")
        .unwrap();
    json(&there, "SELECT tether_sync()");
    here.execute_batch("INSERT INTO tasks (title) VALUES ('too long')")
        .unwrap();
    let pushed = json(&here, "SELECT tether_push()");
    assert_eq!(
        (pushed["conflicts"].as_i64(), pushed["failed"].as_i64()),
        (Some(1), Some(1)),
        "{pushed}"
    );
    here.execute_batch("UPDATE tasks SET title = 'ok'").unwrap();
    json(&here, "SELECT tether_retry()");
    let pushed = json(&here, "SELECT tether_push()");
    assert_eq!(pushed["failed"], 0, "{pushed}");
    assert_eq!(pushed["rejections"], json!([]), "{pushed}");
    // Not sent ahead of the task's create (the server would not have the row yet).
    let not_found: Vec<String> = column(
        &here,
        "SELECT operation || ' ' || entity_id FROM tether_mutation_logs WHERE rejection_reason = 'not_found'",
    );
    assert_eq!(not_found, Vec::<String>::new(), "{pushed}");
    assert_server_has(&server, &here, "tasks");
}
