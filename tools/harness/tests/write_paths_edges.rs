//! Edge cases of capture found by an adversarial review: each test is a write path, schema or
//! sequence where a committed change must still reach the server once, as the entity the user
//! means, with the value the user wrote. Each failed when written.
use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

/// Everything `conn` captured, applied as creates of `model` on a fresh database with `schema`
/// (another device): returns that device's connection and the pull result.
fn deliver_to_another_device(
    conn: &Connection,
    schema: &str,
    table: &str,
    model: &str,
) -> (tempfile::TempDir, Connection, Value, Vec<(String, Value)>) {
    let sent: Vec<(String, Value)> = mutations(conn)
        .into_iter()
        .map(|m| (m.entity_id, m.payload))
        .collect();
    let (dir, path) = temp_db();
    let other = open_loaded(&path);
    other.execute_batch(schema).unwrap();
    json(&other, &format!("SELECT tether_track('{table}')"));
    let snapshots: Vec<(&str, &str, &str, Value)> = sent
        .iter()
        .map(|(k, p)| (k.as_str(), model, "create", p.clone()))
        .collect();
    let result = apply_snapshots(&other, &snapshots);
    (dir, other, result, sent)
}

const TASKS: &str = "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);";

/// REPLACE through the slug moves entity K from row 1 to row 2; row 1's record in
/// tether_row_keys is never removed. Once K is deleted, the next row to get id 1 takes K and is
/// logged as an `update` of the deleted entity: the server answers not_found and the new row
/// never reaches it. (INTEGER PRIMARY KEY reuses id 1 as soon as the table is empty.)
#[test]
fn a_new_row_never_takes_the_key_of_an_entity_that_replace_moved_and_a_delete_removed() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch(
            "INSERT INTO tasks (title, slug) VALUES ('a', 'a');
             INSERT OR REPLACE INTO tasks (title, slug) VALUES ('a again', 'a');",
        )
        .unwrap();
    let moved = key_of(&plain, "tasks", 2);
    plain
        .execute_batch(
            "DELETE FROM tasks;
             INSERT INTO tasks (title, slug) VALUES ('brand new', 'b');",
        )
        .unwrap();
    let fresh = key_of(&plain, "tasks", 1);
    assert_ne!(fresh, moved, "a deleted entity's key is never reused");
    let ops = ops_after(&conn, 0);
    assert_eq!(ops[2], op("delete", &moved));
    assert_eq!(
        ops[3],
        op("create", &fresh),
        "the brand new row is a create, not an update of the deleted entity: {ops:?}"
    );
}

/// The same through UPDATE OR REPLACE of a unique column and a WITHOUT ROWID table: the deleted
/// row's record stays, and a new row with its primary key revives the deleted entity.
#[test]
fn update_or_replace_leaves_no_record_that_revives_the_deleted_entity() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE m (a TEXT NOT NULL, b INT NOT NULL, code TEXT UNIQUE, v TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;",
        "'m'",
    );
    plain
        .execute_batch(
            "INSERT INTO m (a, b, code, v) VALUES ('x', 1, 'c1', 'v1'), ('x', 2, 'c2', 'v2');
             UPDATE OR REPLACE m SET code = 'c2' WHERE b = 1;",
        )
        .unwrap();
    let gone: String = mutations(&conn)[2].entity_id.clone();
    assert_eq!(mutations(&conn)[2].operation, "delete");
    plain
        .execute_batch("INSERT INTO m (a, b, code, v) VALUES ('x', 2, 'c3', 'new row')")
        .unwrap();
    let new_key: String = plain
        .query_row("SELECT tether_id FROM m WHERE b = 2", [], |r| r.get(0))
        .unwrap();
    let last = mutations(&conn).pop().unwrap();
    assert_ne!(
        new_key, gone,
        "the new row ('x', 2) got the deleted entity's key"
    );
    assert_eq!(
        (last.operation.as_str(), last.entity_id.as_str()),
        ("create", new_key.as_str())
    );
}

/// A trigger of the application's, created after tether_track (a later migration), that
/// touches the row. SQLite fires the newest trigger first, so it runs before tether's, and
/// tether's payload is built from NEW (the values of the outer statement), not from the row:
/// the create lacks the value the user's trigger wrote, and the last update carries a stale one.
#[test]
fn a_users_trigger_that_writes_the_row_is_captured_with_the_rows_final_values() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT, edits INTEGER DEFAULT 0);",
        "'tasks'",
    );
    plain
        .execute_batch(
            "CREATE TRIGGER fill_slug AFTER INSERT ON tasks
              BEGIN UPDATE tasks SET slug = lower(NEW.title) WHERE id = NEW.id; END;
             CREATE TRIGGER count_edits AFTER UPDATE OF title ON tasks
              BEGIN UPDATE tasks SET edits = edits + 1 WHERE id = NEW.id; END;
             INSERT INTO tasks (title) VALUES ('Hello');
             UPDATE tasks SET title = 'World';",
        )
        .unwrap();
    let row: Value = json(
        &plain,
        "SELECT json_object('title', title, 'slug', slug, 'edits', edits) FROM tasks",
    );
    assert_eq!(row, json!({"title": "World", "slug": "hello", "edits": 1}));
    let log = mutations(&conn);
    assert_eq!(
        log[0].payload["slug"], "hello",
        "the create carries the slug the user's trigger wrote: {:?}",
        log[0].payload
    );
    assert_eq!(
        log.last().unwrap().payload,
        row,
        "the last mutation leaves the server with the row as it is; log: {:?}",
        log.iter().map(|m| &m.payload).collect::<Vec<_>>()
    );
}

/// A UNIQUE index with COLLATE NOCASE is a plain column list, so it counts as watched, but the
/// watch compares with `t.email = NEW.email` (BINARY): REPLACE deletes 'a@x.io' for 'A@X.IO'
/// without a delete, and the server keeps two users with one email.
#[test]
fn replace_through_a_nocase_unique_index_captures_the_delete() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, name TEXT);
         CREATE UNIQUE INDEX users_email ON users (email COLLATE NOCASE);",
        "'users'",
    );
    plain
        .execute_batch("INSERT INTO users (email, name) VALUES ('a@x.io', 'A')")
        .unwrap();
    let first = key_of(&plain, "users", 1);
    plain
        .execute_batch("INSERT OR REPLACE INTO users (email, name) VALUES ('A@X.IO', 'A again')")
        .unwrap();
    let keys: Vec<String> = column(&plain, "SELECT tether_id FROM users");
    let ops = ops_after(&conn, 1);
    let kept_entity = ops == [op("update", &first)] && keys == [first.clone()];
    let deleted_then_created = ops.len() == 2 && ops[0] == op("delete", &first);
    assert!(
        kept_entity || deleted_then_created,
        "entity {first} vanished locally without a delete: {ops:?}"
    );
}

/// A JSON column (CHECK json_valid) holding a JSON string, JSON null or true. Capture sends the
/// JSON value ("quoted", null, true); applying it on another device writes the bare text
/// 'quoted', SQL NULL and 1: the first two break the CHECK (pull_errors, the row never
/// arrives), the third changes the value.
#[test]
fn a_json_column_round_trips_every_json_value_to_another_device() {
    let schema =
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT NOT NULL CHECK (json_valid(body)));";
    let (_dir, _path, conn, plain) = tracked_db(schema, "'docs'");
    plain
        .execute_batch(
            r#"INSERT INTO docs (body) VALUES ('"quoted"'), ('null'), ('true'), ('[1]')"#,
        )
        .unwrap();
    let (_dir2, other, result, sent) = deliver_to_another_device(&conn, schema, "docs", "Doc");
    let bodies: Vec<String> = column(&other, "SELECT body FROM docs ORDER BY id");
    assert_eq!(
        (result["pull_errors"].clone(), bodies),
        (
            json!(0),
            vec![
                "\"quoted\"".to_string(),
                "null".into(),
                "true".into(),
                "[1]".into()
            ]
        ),
        "payloads sent: {sent:?}; pull: {result}"
    );
}

/// A table that already has the key column spelled in another case. tether uses the column
/// (matched without case) but also syncs it as data (the filter compares with case): the key
/// assignment is logged as an `update` before the `create`, the key travels in the payload, and
/// status reports "the sync key column is gone" for ever.
#[test]
fn a_sync_key_column_spelled_in_another_case_is_the_sync_key() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, Tether_Id TEXT, title TEXT);",
        "'items'",
    );
    plain
        .execute_batch("INSERT INTO items (title) VALUES ('x')")
        .unwrap();
    let log = mutations(&conn);
    let shown: Vec<(String, Value)> = log
        .iter()
        .map(|m| (m.operation.clone(), m.payload.clone()))
        .collect();
    assert_eq!(shown, [("create".to_string(), json!({"title": "x"}))]);
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["tables"][0]["state"], "ok", "{status}");
}

/// PRAGMA recursive_triggers = ON makes SQLite fire the delete trigger for rows REPLACE
/// deletes: the entity gets a `delete`, and then the unique watch hands its key to the new row,
/// logged as an `update` of the entity just deleted (the server answers not_found: row lost).
/// Fails at fdb701c; passes since d0851b7 (forget_replaced in the delete trigger).
#[test]
fn replace_under_recursive_triggers_never_updates_an_entity_it_deleted() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch(
            "PRAGMA recursive_triggers = ON;
             INSERT INTO tasks (id, title, slug) VALUES (1, 'a', 'a');
             INSERT OR REPLACE INTO tasks (title, slug) VALUES ('via slug', 'a');",
        )
        .unwrap();
    let ops = ops_after(&conn, 1);
    let deleted: Vec<&String> = ops
        .iter()
        .filter(|(o, _)| o == "delete")
        .map(|(_, k)| k)
        .collect();
    for (operation, key) in &ops {
        assert!(
            !(operation == "update" && deleted.contains(&key)),
            "update of an entity deleted just before: {ops:?}"
        );
    }
}

/// A column declared BLOB may hold text (SQLite keeps what it is given). Capture sends text as
/// itself and bytes as upper-case hex, so "cafe" was text; the apply decodes any hex-looking
/// string for a BLOB column, and the other device gets bytes x'CAFE' (and x'' for '').
#[test]
fn text_in_a_blob_column_arrives_as_text() {
    let schema = "CREATE TABLE files (id INTEGER PRIMARY KEY, name TEXT, data BLOB);";
    let (_dir, _path, conn, plain) = tracked_db(schema, "'files'");
    plain
        .execute_batch(
            "INSERT INTO files (name, data) VALUES ('a', 'cafe'), ('b', ''), ('c', x'CAFE')",
        )
        .unwrap();
    let (_dir2, other, _, sent) = deliver_to_another_device(&conn, schema, "files", "File");
    let here: Vec<String> = column(&plain, "SELECT quote(data) FROM files ORDER BY name");
    let there: Vec<String> = column(&other, "SELECT quote(data) FROM files ORDER BY name");
    assert_eq!(there, here, "payloads: {sent:?}");
}

/// "columns" names the synced columns; a migration renames one (ALTER TABLE … RENAME COLUMN,
/// which SQLite follows in tether's triggers). The repair must neither fail every later call
/// (HEAD: "tasks" has no column "title" in repair_error) nor quietly sync nothing and strip the
/// captured value out of the pending create (working tree: stored options pruned to []).
#[test]
fn renaming_a_column_named_in_columns_loses_nothing_already_captured() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, note TEXT);",
        r#"'tasks', '{"columns": ["title"]}'"#,
    );
    plain
        .execute_batch(
            "INSERT INTO tasks (title, note) VALUES ('written before', 'n');
             ALTER TABLE tasks RENAME COLUMN title TO name;",
        )
        .unwrap();
    let status = json(&conn, "SELECT tether_status()");
    assert!(status["repair_error"].is_null(), "{status}");
    plain
        .execute_batch("INSERT INTO tasks (name) VALUES ('written after')")
        .unwrap();
    let payloads: Vec<Value> = mutations(&conn).into_iter().map(|m| m.payload).collect();
    let holds = |p: &Value, v: &str| p.as_object().unwrap().values().any(|x| x == v);
    assert!(
        holds(&payloads[0], "written before"),
        "the captured value is still sent: {payloads:?}"
    );
    assert!(
        payloads.len() == 2 && holds(&payloads[1], "written after"),
        "the renamed column still syncs: {payloads:?}; {status}"
    );
}

/// The app resets a table (DROP + CREATE, e.g. a destructive migration or "clear cache") and
/// inserts one new row. The repair sees a recorded key for id 1, so it calls this a rebuild:
/// the new row silently takes entity A's key (its content is never sent), and B and C are
/// deleted on the server, although README says a table dropped and created anew keeps the
/// server's rows.
#[test]
fn a_dropped_and_recreated_table_with_one_new_row_sends_that_row() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);",
        "'tasks'",
    );
    plain
        .execute_batch(
            "INSERT INTO tasks (title) VALUES ('A'), ('B'), ('C');
             DROP TABLE tasks;
             CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
             INSERT INTO tasks (id, title) VALUES (1, 'fresh row after reset');",
        )
        .unwrap();
    json(&conn, "SELECT tether_status()");
    let key = key_of(&plain, "tasks", 1);
    let after: Vec<(String, String, Value)> = mutations(&conn)
        .into_iter()
        .skip(3)
        .map(|m| (m.operation, m.entity_id, m.payload))
        .collect();
    assert!(
        after
            .iter()
            .any(|(_, k, p)| *k == key && p["title"] == "fresh row after reset"),
        "the new row's content is queued: {after:?}"
    );
    assert!(
        after.iter().all(|(o, _, _)| o != "delete"),
        "a recreated table keeps the server's rows: {after:?}"
    );
}

const SERVER_TASK: &str = r#"{"name": "Task", "fields": {"title": "nullable|max:40", "slug": "nullable|max:40"}, "soft_deletes": true}"#;

/// The same as the first test, end to end against tether-server: the brand new row is
/// rejected (not_found) and the server never holds it.
#[test]
fn a_new_row_after_replace_and_delete_reaches_the_server() {
    let server = Server::start(&["--model", SERVER_TASK]);
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    set_config(&conn, "server_url", server.url.as_str());
    plain
        .execute_batch(
            "INSERT INTO tasks (title, slug) VALUES ('a', 'a');
             INSERT OR REPLACE INTO tasks (title, slug) VALUES ('a again', 'a');
             DELETE FROM tasks;
             INSERT INTO tasks (title, slug) VALUES ('brand new', 'b');",
        )
        .unwrap();
    let result = json(&conn, "SELECT tether_sync()");
    let titles = server.field_of_rows(&conn, "title");
    assert_eq!(titles, [json!("brand new")], "sync result: {result}");
}

/// REPLACE through the sync key itself (the application writes the row again with its key but
/// no primary key): the row moves to a new primary key as the same entity, and once it is
/// deleted no later row takes its key.
#[test]
fn replace_through_the_sync_key_moves_the_entity_and_leaves_no_revivable_record() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch("INSERT INTO tasks (title) VALUES ('a')")
        .unwrap();
    let key = key_of(&plain, "tasks", 1);
    let before = last_log_id(&conn);
    plain
        .execute(
            "INSERT OR REPLACE INTO tasks (title, tether_id) VALUES ('moved', ?1)",
            [&key],
        )
        .unwrap();
    assert_eq!(key_of(&plain, "tasks", 2), key);
    assert_eq!(ops_after(&conn, before), [op("update", &key)]);
    let before = last_log_id(&conn);
    plain
        .execute_batch("DELETE FROM tasks; INSERT INTO tasks (id, title) VALUES (1, 'new')")
        .unwrap();
    let new_key = key_of(&plain, "tasks", 1);
    assert_ne!(new_key, key);
    assert_eq!(
        ops_after(&conn, before),
        [op("delete", &key), op("create", &new_key)]
    );
}
