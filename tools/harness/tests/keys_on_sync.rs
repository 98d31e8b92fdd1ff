//! Tables tracked with {"keys": "on_sync"}: an INSERT logs one 'unkeyed' create and the row gets
//! its sync key when a sync starts. Every write path before that first sync must reach the
//! server as the entities the user means, each once: checked against the server's own table
//! and the mutations it recorded as applied. Writes come from connections that never loaded
//! tether.

use rusqlite::Connection;
use serde_json::Value;
use tether_harness::server_backed::{ServerBacked as Setup, ON_SYNC};
use tether_harness::*;

const TASKS: &str = "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);";

fn setup(schema: &str, tables: &[&str]) -> Setup {
    Setup::new(schema, tables, ON_SYNC)
}

/// `tasks` (keys on sync) with a `column` referring to a row of `parent (id, name)`, whose keys
/// are given on insert.
fn setup_with_parent(parent: &str, column: &str) -> Setup {
    let s = setup(
        &format!(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT, {column} TEXT);
             CREATE TABLE {parent} (id INTEGER PRIMARY KEY, name TEXT);"
        ),
        &["tasks"],
    );
    json(&s.conn, &format!("SELECT tether_track('{parent}')"));
    s
}

#[test]
fn a_new_row_has_no_key_until_a_sync_starts_and_is_created_once() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (title) VALUES ('buy milk')");
    assert_eq!(
        s.local(),
        ["NULL|buy milk"],
        "tether_id stays NULL until a sync"
    );
    assert_eq!(s.statuses(), ["create unkeyed"]);
    let status = json(&s.conn, "SELECT tether_status()");
    assert_eq!(
        status["pending"], 1,
        "a create waiting for its key is pending: {status}"
    );
    // A change before the sync logs a new create (the last one claims the row, so the row is
    // sent at the place of its last change); the row is still one pending change.
    s.write("UPDATE tasks SET title = 'buy oat milk'");
    assert_eq!(s.statuses(), ["create unkeyed", "create unkeyed"]);
    assert_eq!(json(&s.conn, "SELECT tether_status()")["pending"], 1);
    let result = s.sync();
    assert_eq!(result["pushed"], 1, "{result}");
    let key = key_of(&s.plain, "tasks", 1);
    assert!(is_ulid(&key), "{key}");
    assert_eq!(s.on_server(), [format!("{key}|buy oat milk")]);
    assert_eq!(s.applied_to(&key), 1, "one create, applied once");
    assert_eq!(s.statuses(), ["create synced"]);
    // From then on the row is captured like any other.
    s.write("UPDATE tasks SET title = 'done'");
    s.sync();
    assert_eq!(s.on_server(), [format!("{key}|done")]);
    assert_eq!(s.applied_to(&key), 2);
}

#[test]
fn rows_deleted_reused_or_replaced_before_the_first_sync_are_sent_as_they_end() {
    let s = setup(TASKS, &["tasks"]);
    s.write(
        "INSERT INTO tasks (id, title) VALUES (1, 'gone'), (2, 'first at 2'), (3, 'replaced');
         DELETE FROM tasks WHERE id = 1;
         DELETE FROM tasks WHERE id = 2;
         INSERT INTO tasks (id, title) VALUES (2, 'second at 2');
         INSERT OR REPLACE INTO tasks (id, title) VALUES (3, 'replacement');
         INSERT INTO tasks (id, title) VALUES (4, 'upserted') ON CONFLICT (id) DO UPDATE SET title = excluded.title;
         INSERT INTO tasks (id, title) VALUES (4, 'upserted again') ON CONFLICT (id) DO UPDATE SET title = excluded.title;",
    );
    s.sync();
    assert_eq!(
        column::<String>(&s.plain, "SELECT title FROM tasks ORDER BY id"),
        ["second at 2", "replacement", "upserted again"]
    );
    s.assert_converged();
    assert_eq!(
        s.entities_on_server().len(),
        3,
        "one entity per row, none for deleted rows"
    );
    for key in column::<String>(&s.plain, "SELECT tether_id FROM tasks") {
        assert_eq!(s.applied_to(&key), 1, "{key}: created once");
    }
}

#[test]
fn a_synced_row_replaced_by_primary_key_stays_its_entity_whatever_follows() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    s.sync();
    let (k1, k2, k3) = (
        key_of(&s.plain, "tasks", 1),
        key_of(&s.plain, "tasks", 2),
        key_of(&s.plain, "tasks", 3),
    );
    // REPLACE without a key: the new row is the same entity (an update), and takes over the key
    // at once (other tables' foreign keys may refer to it).
    s.write(
        "INSERT OR REPLACE INTO tasks (id, title) VALUES (1, 'a replaced');
         INSERT OR REPLACE INTO tasks (id, title) VALUES (2, 'b replaced');
         DELETE FROM tasks WHERE id = 2;
         INSERT OR REPLACE INTO tasks (id, title) VALUES (3, 'c replaced');
         UPDATE tasks SET id = 30 WHERE id = 3;",
    );
    assert_eq!(s.local()[0], format!("{k1}|a replaced"));
    s.sync();
    assert_eq!(key_of(&s.plain, "tasks", 1), k1, "row 1 kept its entity");
    assert_eq!(
        key_of(&s.plain, "tasks", 30),
        k3,
        "row 3 moved to 30 as its entity"
    );
    assert!(
        s.deleted_on_server(&k2),
        "the replaced then deleted row 2 is deleted"
    );
    s.assert_converged();
    assert_eq!(s.entities_on_server().len(), 3, "no new entity");
    assert_eq!(s.applied_to(&k1), 2, "create, then one update");
    assert_eq!(s.applied_to(&k3), 2, "create, then one update");
}

#[test]
fn replacing_a_synced_row_logs_one_update_and_no_waiting_create() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (id, title, slug) VALUES (1, 'a', 'a')");
    s.sync();
    // The full path takes the key over and clears the REPLACE notes; the keyless trigger, whose
    // WHEN reads those notes, must have fired before it and passed.
    s.write(
        "INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (1, 'by primary key', 'a');
         INSERT OR REPLACE INTO tasks (title, slug) VALUES ('by unique slug', 'a');",
    );
    assert_eq!(
        s.statuses(),
        ["create synced", "update pending", "update pending"],
        "each REPLACE is one update, nothing waits for a key"
    );
}

#[test]
fn primary_key_changes_before_the_first_sync_create_each_row_once() {
    let s = setup(TASKS, &["tasks"]);
    s.write(
        "INSERT INTO tasks (id, title) VALUES (1, 'one'), (2, 'two');
         UPDATE tasks SET id = 3 WHERE id = 1;
         UPDATE tasks SET id = 1 WHERE id = 2;
         UPDATE tasks SET id = 2 WHERE id = 3;
         INSERT INTO tasks (id, title) VALUES (3, 'three');
         UPDATE tasks SET id = 10 WHERE id = 3;
         INSERT INTO tasks (id, title) VALUES (3, 'new three');
         UPDATE OR REPLACE tasks SET id = 3 WHERE id = 10;",
    );
    s.sync();
    assert_eq!(
        column::<String>(&s.plain, "SELECT id || ' ' || title FROM tasks ORDER BY id"),
        ["1 two", "2 one", "3 three"]
    );
    s.assert_converged();
    assert_eq!(s.entities_on_server().len(), 3);
}

#[test]
fn a_key_given_in_the_insert_is_kept_and_captured_at_once() {
    let s = setup(TASKS, &["tasks"]);
    let key: String = s
        .conn
        .query_row("SELECT tether_ulid()", [], |r| r.get(0))
        .unwrap();
    s.plain
        .execute(
            "INSERT INTO tasks (title, tether_id) VALUES ('keyed', ?1)",
            [&key],
        )
        .unwrap();
    assert_eq!(s.statuses(), ["create pending"]);
    assert_eq!(
        ops_after(&s.conn, 0),
        [op("create", &key)],
        "captured with its key at once"
    );
    s.sync();
    assert_eq!(s.on_server(), [format!("{key}|keyed")]);
    assert_eq!(s.applied_to(&key), 1);
}

#[test]
fn unique_constraints_replace_and_update_or_replace_as_with_keys_on_insert() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (id, title, slug) VALUES (1, 'q', 'q'), (2, 'p', 'p')");
    s.sync();
    let (kq, kp) = (key_of(&s.plain, "tasks", 1), key_of(&s.plain, "tasks", 2));
    s.write(
        // A new row through the unique slug of a synced row: that entity, at once.
        "INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (5, 'p again', 'p');
         -- A row without a key takes a synced row's slug: that row is deleted.
         INSERT INTO tasks (id, title, slug) VALUES (6, 'r', 'r');
         UPDATE OR REPLACE tasks SET slug = 'q' WHERE id = 6;",
    );
    assert_eq!(key_of(&s.plain, "tasks", 5), kp);
    s.sync();
    assert!(
        s.deleted_on_server(&kq),
        "the row UPDATE OR REPLACE removed is deleted"
    );
    s.assert_converged();
    assert_eq!(
        column::<String>(&s.plain, "SELECT slug FROM tasks ORDER BY id"),
        ["p", "q"]
    );
}

#[test]
fn rows_reach_the_server_in_the_order_they_were_written() {
    let s = setup(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        &["tasks"],
    );
    // notes keep keys on insert: their mutations sit between the waiting creates.
    json(&s.conn, "SELECT tether_track('notes')");
    s.write(
        "INSERT INTO tasks (title) VALUES ('first');
         INSERT INTO notes (body) VALUES ('second');
         INSERT INTO tasks (title) VALUES ('third');",
    );
    let body = s.push_request();
    let order: Vec<String> = body["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["payload"];
            p["title"]
                .as_str()
                .or(p["body"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(order, ["first", "second", "third"]);
}

#[test]
fn nothing_logged_after_a_waiting_create_is_sent_before_it() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (title) VALUES ('synced')");
    s.sync();
    s.write(
        "UPDATE tasks SET title = 'one' WHERE id = 1;
         INSERT INTO tasks (id, title) VALUES (7, 'waiting');
         UPDATE tasks SET title = 'two' WHERE id = 1;",
    );
    // A batch built without a key pass first (as a push's later batches are, when another
    // connection logs a create meanwhile) stops before the waiting create.
    let engine = Connection::open(&s.path).unwrap();
    tether::register(&engine).unwrap();
    let limits = tether::engine::push::Limits {
        count: 100,
        bytes: 1 << 20,
        retry_limit: 3,
    };
    let batch = tether::engine::push::next_batch(&engine, "client", 0, limits)
        .unwrap()
        .expect("a batch");
    assert_eq!(
        batch.size, 1,
        "only what was logged before the waiting create"
    );
    // A push request gives keys first: all three go, in the order they were written.
    let body = s.push_request();
    let sent: Vec<String> = body["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["operation"].as_str().unwrap(),
                m["payload"]["title"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(sent, ["update one", "create waiting", "update two"]);
}

#[test]
fn a_sync_killed_inside_the_key_pass_converges_on_the_next() {
    let s = setup(TASKS, &["tasks"]);
    let values: Vec<String> = (1..=1200).map(|i| format!("({i}, 'row {i}')")).collect();
    s.write(&format!(
        "INSERT INTO tasks (id, title) VALUES {}",
        values.join(", ")
    ));
    let mut child = std::process::Command::new("sqlite3")
        .arg(&s.path)
        .arg(format!(".load {}", extension_path().display()))
        .arg("SELECT tether_sync();")
        .env("TETHER_TEST_KILL_POINT", "keys-inside-chunk")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sqlite3 shell");
    let stderr = child.stderr.take().unwrap();
    let reached = {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("tether-kill-point: keys-inside-chunk"))
    };
    assert!(reached, "the sync reached the key pass");
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed inside the pass's first transaction: nothing of it stayed.
    let keyed: i64 = s
        .plain
        .query_row(
            "SELECT count(*) FROM tasks WHERE tether_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keyed, 0);
    s.conn.execute("DELETE FROM tether_locks", []).unwrap();
    s.sync();
    s.assert_converged();
    assert_eq!(s.entities_on_server().len(), 1200);
}

#[test]
fn untracking_and_retracking_give_waiting_rows_their_keys_first() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (title) VALUES ('a'), ('b')");
    // Re-tracking with other options first gives the waiting rows their keys.
    json(
        &s.conn,
        "SELECT tether_track('tasks', '{\"keys\": \"on_insert\"}')",
    );
    assert_eq!(s.statuses(), ["create pending", "create pending"]);
    s.write("INSERT INTO tasks (title) VALUES ('c')");
    assert!(
        !s.local()[2].starts_with("NULL"),
        "keys on insert again: {:?}",
        s.local()
    );
    json(
        &s.conn,
        &format!("SELECT tether_track('tasks', '{ON_SYNC}')"),
    );
    s.write("INSERT INTO tasks (title) VALUES ('d')");
    let result = json(&s.conn, "SELECT tether_untrack('tasks')");
    assert_eq!(result["pending"], 4, "{result}");
    assert!(s.local().iter().all(|r| !r.starts_with("NULL")));
    s.sync();
    s.assert_converged();
}

#[test]
fn switching_when_keys_are_given_keeps_the_other_options() {
    let s = setup(
        "CREATE TABLE todo_items (id INTEGER PRIMARY KEY, title TEXT, remark TEXT);",
        &[],
    );
    json(
        &s.conn,
        r#"SELECT tether_track('todo_items', '{"model": "Task", "keys": "on_sync", "except": ["remark"]}')"#,
    );
    s.write("INSERT INTO todo_items (title, remark) VALUES ('a', 'local only');");
    let result = json(
        &s.conn,
        r#"SELECT tether_track('todo_items', '{"keys": "on_insert"}')"#,
    );
    assert_eq!(
        (&result["model"], &result["keys"], &result["columns"]),
        (
            &Value::from("Task"),
            &Value::from("on_insert"),
            &serde_json::json!(["title"])
        ),
        "{result}"
    );
    s.write("UPDATE todo_items SET remark = 'still local', title = 'b';");
    s.sync();
    assert_eq!(s.on_server().len(), 1);
    let server = Connection::open(&s.server_db).unwrap();
    let (title, remark): (String, Option<String>) = server
        .query_row("SELECT title, remark FROM tasks", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((title.as_str(), remark), ("b", None));
    // Named again, a list replaces the other: columns instead of except.
    let result = json(
        &s.conn,
        r#"SELECT tether_track('todo_items', '{"columns": ["title", "remark"]}')"#,
    );
    assert_eq!(
        result["columns"],
        serde_json::json!(["title", "remark"]),
        "{result}"
    );
    assert_eq!(result["model"], "Task", "{result}");
}

/// A table dropped and created anew (most recorded numbers gone): its records are stale, and a
/// new row at a recorded number must not take over the old key in the key pass.
#[test]
fn a_table_created_anew_keeps_its_new_row_where_a_keyed_row_was() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (title) VALUES ('old0'), ('old1'), ('old2');");
    s.conn
        .execute_batch("UPDATE tasks SET tether_id = tether_ulid()")
        .unwrap();
    let old0 = key_of(&s.plain, "tasks", 1);
    s.write(
        "DROP TABLE tasks;
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);
         INSERT INTO tasks (title) VALUES ('NEW');",
    );
    s.sync();
    s.sync();
    let new_row: String = s
        .plain
        .query_row("SELECT tether_id FROM tasks WHERE title = 'NEW'", [], |r| {
            r.get(0)
        })
        .expect("the new row is still there");
    assert_ne!(new_row, old0, "the new row is not the old entity");
    assert_eq!(s.applied_to(&new_row), 1);
    s.assert_converged();
}

/// Rows waiting for their keys that were deleted before a rebuild say nothing about it: the
/// synced rows copied by the rebuild keep their entities.
#[test]
fn a_rebuild_after_most_waiting_rows_were_deleted_keeps_the_synced_entities() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (title) VALUES ('s0'), ('s1');");
    s.sync();
    s.write(
        "INSERT INTO tasks (title) VALUES ('w0'), ('w1'), ('w2'), ('w3'), ('w4'), ('w5'), ('w6'), ('w7');
         DELETE FROM tasks WHERE title IN ('w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'w6');
         CREATE TABLE tasks_new (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);
         INSERT INTO tasks_new (id, title, slug) SELECT id, title, slug FROM tasks;
         DROP TABLE tasks;
         ALTER TABLE tasks_new RENAME TO tasks;",
    );
    s.sync();
    s.sync();
    assert_eq!(s.local().len(), 3);
    assert_eq!(s.entities_on_server().len(), 3, "nothing created twice");
    s.assert_converged();
}

#[test]
fn the_option_needs_an_integer_primary_key() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE codes (code TEXT PRIMARY KEY, label TEXT)")
        .unwrap();
    let error = error_of(&conn, &format!("SELECT tether_track('codes', '{ON_SYNC}')"));
    assert!(error.contains("INTEGER PRIMARY KEY"), "{error}");
    let error = error_of(
        &conn,
        r#"SELECT tether_track('codes', '{"keys": "later"}')"#,
    );
    assert!(error.contains("\"on_insert\" or \"on_sync\""), "{error}");
}

#[test]
fn a_dropped_table_does_not_hold_back_the_queue() {
    let s = setup(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
         CREATE TABLE scratch (id INTEGER PRIMARY KEY, body TEXT);",
        &["tasks", "scratch"],
    );
    s.write(
        "INSERT INTO scratch (body) VALUES ('temporary');
         INSERT INTO tasks (title) VALUES ('kept');
         DROP TABLE scratch;",
    );
    s.sync();
    s.assert_converged();
    assert_eq!(s.statuses(), ["create synced"]);
}

#[test]
fn a_row_whose_own_trigger_refuses_its_key_fails_alone() {
    let s = setup(TASKS, &["tasks"]);
    s.write(
        "CREATE TRIGGER append_only BEFORE UPDATE ON tasks
         WHEN OLD.title = 'ledger' BEGIN SELECT RAISE(ABORT, 'ledger rows are never updated'); END;
         INSERT INTO tasks (title) VALUES ('ledger'), ('ordinary');",
    );
    let result = s.sync_failing(1);
    assert_eq!(result["pushed"], 1, "the other row goes: {result}");
    assert_eq!(
        result["rejections"][0]["row"]["primary_key"]["id"], 1,
        "{result}"
    );
    let reason: Vec<String> = column(
        &s.plain,
        "SELECT rejection_reason || ': ' || (rejection_data ->> '$.message') || ' ' || local_pk
           FROM tether_mutation_logs WHERE sync_status = 'failed'",
    );
    assert_eq!(reason.len(), 1, "{reason:?}");
    assert!(
        reason[0].contains("row 1 of \"tasks\" could not be given its sync key")
            && reason[0].contains("ledger rows are never updated")
            && reason[0].ends_with(r#"{"id":1}"#),
        "{reason:?}"
    );
    assert_eq!(json(&s.conn, "SELECT tether_status()")["failed"], 1);
    // Nothing is left waiting, nothing wedges: the next sync has nothing to do.
    let again = s.sync();
    assert_eq!(again["pushed"], 0, "{again}");
    // Such a row has no key to name it by: the table is named.
    let error = error_of(&s.conn, "SELECT tether_retry('tasks', 1)");
    assert!(error.contains("waiting for its sync key"), "{error}");
    s.write("DROP TRIGGER append_only");
    let retried = json(&s.conn, "SELECT tether_retry('tasks')");
    assert_eq!(
        retried["outcomes"]["key given at the next sync"], 1,
        "{retried}"
    );
    s.sync();
    s.assert_converged();
    assert_eq!(s.on_server().len(), 2);
}

#[test]
fn a_row_left_without_a_key_by_a_discard_stays_local() {
    let s = setup(TASKS, &["tasks"]);
    s.write(
        "CREATE TRIGGER append_only BEFORE UPDATE ON tasks
         BEGIN SELECT RAISE(ABORT, 'never updated'); END;
         INSERT INTO tasks (title) VALUES ('ledger');",
    );
    s.sync_failing(1);
    let discarded = json(&s.conn, "SELECT tether_discard('tasks')");
    assert_eq!(discarded["outcomes"]["left unsynced"], 1, "{discarded}");
    let status = json(&s.conn, "SELECT tether_status()");
    assert_eq!(
        (status["failed"].as_i64(), status["pending"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(s.on_server().is_empty());
    assert_eq!(s.local(), ["NULL|ledger"]);
}

#[test]
fn a_renamed_column_with_rows_waiting_syncs_them_as_the_table_is_now() {
    let s = setup(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT, note TEXT);",
        &["tasks"],
    );
    s.write(
        "INSERT INTO tasks (title, slug, note) VALUES ('a', 'x', 'n');
         ALTER TABLE tasks RENAME COLUMN note TO remark;
         INSERT INTO tasks (title, slug, remark) VALUES ('b', 'y', 'r');",
    );
    s.sync();
    s.assert_converged();
    assert_eq!(s.entities_on_server().len(), 2);
    let remarks: Vec<String> = column(
        &Connection::open(&s.server_db).unwrap(),
        "SELECT coalesce(remark, 'none') FROM tasks ORDER BY id",
    );
    assert_eq!(remarks, ["n", "r"], "sent under the column's new name");
}

#[test]
fn a_rebuild_without_the_key_column_while_rows_wait_keys_them_once() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'synced')");
    s.sync();
    let k1 = key_of(&s.plain, "tasks", 1);
    // A migration tool's rebuild from a model that does not know tether_id.
    s.write(
        "INSERT INTO tasks (id, title) VALUES (2, 'waiting');
         BEGIN;
         CREATE TABLE tasks_new (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);
         INSERT INTO tasks_new (id, title, slug) SELECT id, title, slug FROM tasks;
         DROP TABLE tasks;
         ALTER TABLE tasks_new RENAME TO tasks;
         COMMIT;",
    );
    s.sync();
    assert_eq!(
        key_of(&s.plain, "tasks", 1),
        k1,
        "the synced row keeps its key"
    );
    let k2 = key_of(&s.plain, "tasks", 2);
    assert!(is_ulid(&k2), "{k2}");
    s.assert_converged();
    assert_eq!(s.entities_on_server().len(), 2);
    assert_eq!(s.applied_to(&k2), 1);
}

#[test]
fn a_key_the_application_gives_with_an_update_is_that_row_from_then_on() {
    let s = setup(TASKS, &["tasks"]);
    let key: String = s
        .conn
        .query_row("SELECT tether_ulid()", [], |r| r.get(0))
        .unwrap();
    s.write("INSERT INTO tasks (id, title) VALUES (7, 'given later')");
    s.plain
        .execute("UPDATE tasks SET tether_id = ?1 WHERE id = 7", [&key])
        .unwrap();
    s.write(
        "UPDATE tasks SET id = 5 WHERE id = 7;
         UPDATE tasks SET title = 'moved' WHERE id = 5;",
    );
    s.sync();
    assert_eq!(s.on_server(), [format!("{key}|moved")]);
    // And a REPLACE of it afterwards is an update of that entity.
    s.write("INSERT OR REPLACE INTO tasks (id, title) VALUES (5, 'replaced')");
    assert_eq!(key_of(&s.plain, "tasks", 5), key);
    s.sync();
    s.assert_converged();
    assert_eq!(s.entities_on_server(), [key]);
}

#[test]
fn a_row_changed_to_refer_to_a_newer_row_is_sent_after_it() {
    let s = setup_with_parent("projects", "project");
    s.write(
        "INSERT INTO tasks (title) VALUES ('child');
         INSERT INTO projects (name) VALUES ('parent');
         UPDATE tasks SET project = (SELECT tether_id FROM projects);",
    );
    let body = s.push_request();
    let models: Vec<&str> = body["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["Project", "Task"], "the parent first: {body}");
}

#[test]
fn a_row_a_trigger_writes_while_server_rows_are_applied_is_synced_too() {
    let s = setup(TASKS, &["tasks"]);
    s.write("CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);");
    json(&s.conn, "SELECT tether_track('projects')");
    s.write(
        "CREATE TRIGGER inbox AFTER INSERT ON projects
         BEGIN INSERT INTO tasks (title) VALUES ('inbox of ' || NEW.name); END;",
    );
    // The server's row arrives in a pull page, applied without being captured.
    let page = serde_json::json!({
        "snapshots": [{"entity_id": "01JZZZZZZZZZZZZZZZZZZZZZZZ", "model": "Project",
                       "operation": "create", "payload": {"name": "from server"},
                       "updated_at": "2026-11-26T10:00:00Z"}],
        "new_sync_cursor": 1, "has_more": false
    });
    s.conn
        .query_row(
            "SELECT tether_pull_response(?1)",
            [page.to_string()],
            |_| Ok(()),
        )
        .unwrap();
    assert_eq!(s.local(), ["NULL|inbox of from server"]);
    s.conn
        .query_row("SELECT tether_push_request()", [], |_| Ok(()))
        .unwrap();
    assert!(!s.local()[0].starts_with("NULL"), "{:?}", s.local());
    assert_eq!(json(&s.conn, "SELECT tether_status()")["pending"], 1);
}

#[test]
fn the_key_index_leaves_rows_without_keys_out_unless_a_foreign_key_needs_it_whole() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT, tether_id TEXT);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT,
                             project TEXT REFERENCES projects (tether_id));
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
    )
    .unwrap();
    let index_sql = |table: &str| -> String {
        conn.query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'tether_sync_key_' || ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap()
    };
    json(&conn, &format!("SELECT tether_track('notes', '{ON_SYNC}')"));
    assert!(index_sql("notes").ends_with("WHERE \"tether_id\" IS NOT NULL"));
    json(
        &conn,
        &format!("SELECT tether_track('projects', '{ON_SYNC}')"),
    );
    assert!(
        !index_sql("projects").contains("WHERE"),
        "a foreign key refers to it"
    );
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         INSERT INTO projects (id, name, tether_id) VALUES (1, 'keyed', '01JZZZZZZZZZZZZZZZZZZZZZZZ');
         INSERT INTO tasks (title, project) VALUES ('child', '01JZZZZZZZZZZZZZZZZZZZZZZZ');",
    )
    .unwrap();
    // Back to keys on insert: a full index again.
    json(
        &conn,
        r#"SELECT tether_track('notes', '{"keys": "on_insert"}')"#,
    );
    assert!(!index_sql("notes").contains("WHERE"));
}

#[test]
fn a_table_created_later_that_refers_to_the_sync_key_gets_a_whole_index_at_the_next_sync() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (title) VALUES ('keep'), ('drop');");
    s.sync();
    let keep = key_of(&s.plain, "tasks", 1);
    let index_sql = || -> String {
        s.plain
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'tether_sync_key_tasks'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(index_sql().contains("WHERE"), "{}", index_sql());
    // Foreign keys on for the application's connections, tether's own included, and a row
    // waiting for its key when the table that refers to the key appears.
    s.conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    s.write(
        "INSERT INTO tasks (title) VALUES ('waiting');
         CREATE TABLE notes (id INTEGER PRIMARY KEY, task TEXT REFERENCES tasks (tether_id));
         PRAGMA foreign_keys = ON;",
    );
    let refused = s
        .plain
        .execute("INSERT INTO notes (task) VALUES (?1)", [&keep])
        .unwrap_err()
        .to_string();
    assert!(refused.contains("foreign key mismatch"), "{refused}");
    s.sync();
    assert!(!index_sql().contains("WHERE"), "{}", index_sql());
    let waiting: String = s
        .plain
        .query_row(
            "SELECT tether_id FROM tasks WHERE title = 'waiting'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    s.write(&format!(
        "INSERT INTO notes (task) VALUES ('{keep}'), ('{waiting}'); DELETE FROM tasks WHERE id = 2;"
    ));
    s.sync();
    assert_eq!(
        s.local(),
        vec![format!("{keep}|keep"), format!("{waiting}|waiting")]
    );
    s.assert_converged();
    // New rows still wait for their keys, and a key given later is referred to.
    s.write("INSERT INTO tasks (title) VALUES ('later');");
    assert_eq!(s.local()[2], "NULL|later");
    s.sync();
    let later: String = s
        .plain
        .query_row(
            "SELECT tether_id FROM tasks WHERE title = 'later'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    s.write(&format!("INSERT INTO notes (task) VALUES ('{later}');"));
    s.assert_converged();
}

#[test]
fn untracking_leaves_a_whole_key_index_inside_a_transaction_too() {
    for waiting in [true, false] {
        let s = setup(TASKS, &["tasks"]);
        s.write("INSERT INTO tasks (title) VALUES ('synced');");
        s.sync();
        if waiting {
            s.write("INSERT INTO tasks (title) VALUES ('waiting');");
        }
        s.conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        s.write(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, task TEXT REFERENCES tasks (tether_id));",
        );
        s.conn.execute_batch("BEGIN").unwrap();
        json(&s.conn, "SELECT tether_untrack('tasks')");
        s.conn.execute_batch("COMMIT").unwrap();
        let partial: bool = s
            .plain
            .query_row(
                "SELECT partial FROM pragma_index_list('tasks') WHERE name = 'tether_sync_key_tasks'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!partial, "waiting rows: {waiting}");
        s.write(
            "PRAGMA foreign_keys = ON;
             INSERT INTO notes (task) SELECT tether_id FROM tasks;
             INSERT INTO tasks (title) VALUES ('after');
             DELETE FROM tasks WHERE title = 'after';",
        );
        assert_eq!(s.local().len(), 1 + waiting as usize);
        assert!(
            s.local().iter().all(|r| !r.starts_with("NULL|")),
            "{:?}",
            s.local()
        );
    }
}

#[test]
fn a_table_whose_name_holds_where_is_repaired_once() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(r#"CREATE TABLE "a WHERE b" (id INTEGER PRIMARY KEY, name TEXT);"#)
        .unwrap();
    json(
        &conn,
        &format!(r#"SELECT tether_track('a WHERE b', '{ON_SYNC}')"#),
    );
    conn.execute_batch(
        r#"CREATE TABLE c (id INTEGER PRIMARY KEY, a TEXT REFERENCES "a WHERE b" (tether_id));"#,
    )
    .unwrap();
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["tables"][0]["state"], "ok", "{status}");
    let schema = |conn: &Connection| -> i64 {
        conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
            .unwrap()
    };
    let before = schema(&conn);
    let other = open_loaded(&path);
    let status = json(&other, "SELECT tether_status()");
    assert_eq!(status["tables"][0]["state"], "ok", "{status}");
    assert_eq!(schema(&other), before, "nothing repaired again");
}

#[test]
fn a_rebuild_while_rows_wait_keeps_the_synced_rows_entities() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (id, title) VALUES (1, 's1'), (2, 's2'), (3, 's3')");
    s.sync();
    let synced: Vec<String> = column(&s.plain, "SELECT tether_id FROM tasks ORDER BY id");
    // More rows wait for their keys than there are synced rows, then a tool rebuilds the table
    // from a model without tether_id.
    s.write(
        "INSERT INTO tasks (title) VALUES ('n1'), ('n2'), ('n3'), ('n4'), ('n5');
         CREATE TABLE tasks_new (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);
         INSERT INTO tasks_new (id, title, slug) SELECT id, title, slug FROM tasks;
         DROP TABLE tasks;
         ALTER TABLE tasks_new RENAME TO tasks;",
    );
    s.sync();
    let kept: Vec<String> = column(
        &s.plain,
        "SELECT tether_id FROM tasks WHERE id <= 3 ORDER BY id",
    );
    assert_eq!(kept, synced, "the synced rows keep their entities");
    for key in &synced {
        assert!(!s.deleted_on_server(key), "{key} was deleted on the server");
    }
    s.assert_converged();
    assert_eq!(s.entities_on_server().len(), 8);
}

#[test]
fn auto_sync_pushes_rows_waiting_for_their_keys() {
    let s = setup(TASKS, &["tasks"]);
    set_config(&s.conn, "auto_sync", "true");
    s.write("INSERT INTO tasks (title) VALUES ('written elsewhere')");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.on_server().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    json(&s.conn, "SELECT tether_stop()");
    assert_eq!(s.on_server().len(), 1, "auto_sync pushed the row");
    s.assert_converged();
}

#[test]
fn a_trigger_that_rolls_back_or_ignores_the_key_write_fails_its_row_alone() {
    for raise in ["RAISE(ROLLBACK, 'locked')", "RAISE(IGNORE)"] {
        let s = setup(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT, locked INTEGER);",
            &["tasks"],
        );
        s.write(&format!(
            "CREATE TRIGGER guard_locked BEFORE UPDATE ON tasks WHEN OLD.locked
             BEGIN SELECT {raise}; END;
             INSERT INTO tasks (title, locked) VALUES ('a', 1), ('b', 0), ('c', 1);"
        ));
        let result = s.sync_failing(2);
        assert_eq!(
            result["pushed"], 1,
            "{raise}: the unlocked row goes: {result}"
        );
        let failed: Vec<String> = column(
            &s.plain,
            "SELECT rejection_data ->> '$.message' FROM tether_mutation_logs WHERE sync_status = 'failed'",
        );
        assert_eq!(failed.len(), 2, "{raise}: {failed:?}");
        assert!(
            failed
                .iter()
                .all(|m| m.contains("could not be given its sync key")),
            "{failed:?}"
        );
        assert!(
            column::<String>(
                &s.plain,
                "SELECT row_pk || ' ' || sync_key FROM tether_row_keys"
            )
            .len()
                == 1,
            "{raise}: only the keyed row has a record"
        );
        // Untracking still works, and what failed stays listed.
        json(&s.conn, "SELECT tether_untrack('tasks')");
    }
}

#[test]
fn a_row_changed_by_another_connection_between_two_chunks_is_sent_after_what_it_refers_to() {
    let s = setup_with_parent("sessions", "session");
    let values: Vec<String> = (1..=700).map(|i| format!("('t{i}')")).collect();
    s.write(&format!(
        "INSERT INTO tasks (title) VALUES {}",
        values.join(", ")
    ));
    // The pass settles the newest 500 first; between the chunks another connection creates a
    // session and points the oldest task at it.
    let engine = Connection::open(&s.path).unwrap();
    tether::register(&engine).unwrap();
    let mut chunks = 0;
    tether::keys::give(&engine, None, &mut || {
        chunks += 1;
        if chunks == 1 {
            s.plain.execute_batch(
                "INSERT INTO sessions (name) VALUES ('S');
                 UPDATE tasks SET session = (SELECT tether_id FROM sessions) WHERE id = 1;",
            )?;
        }
        Ok(())
    })
    .unwrap();
    assert!(chunks >= 2);
    // The next pass settles the row's newer create, which stands after the session's.
    tether::keys::give(&engine, None, &mut || Ok(())).unwrap();
    let order: Vec<String> = column(
        &s.plain,
        "SELECT model || ' ' || coalesce(payload ->> '$.title', payload ->> '$.name')
           FROM tether_mutation_logs
          WHERE sync_status = 'pending' AND (model = 'Session' OR payload ->> '$.title' = 't1')
          ORDER BY id",
    );
    assert_eq!(order, ["Session S", "Task t1"]);
    let session: String = s
        .plain
        .query_row("SELECT tether_id FROM sessions", [], |r| r.get(0))
        .unwrap();
    let sent: String = s
        .plain
        .query_row(
            "SELECT payload ->> '$.session' FROM tether_mutation_logs WHERE payload ->> '$.title' = 't1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sent, session);
}

#[test]
fn a_row_whose_key_or_payload_cannot_be_written_fails_alone() {
    let s = setup(TASKS, &["tasks"]);
    // Under a 2,000-byte limit: row 1 can be written but its payload (every quote escaped) not;
    // row 2 cannot even be written with its key; row 3 goes.
    s.write(&format!(
        "INSERT INTO tasks (title) VALUES ('{}'), ('{}'), ('small')",
        "\"".repeat(1500),
        "x".repeat(3000)
    ));
    let engine = Connection::open(&s.path).unwrap();
    tether::register(&engine).unwrap();
    // SAFETY: the handle is this open connection's, used on this thread only.
    unsafe {
        rusqlite::ffi::sqlite3_limit(engine.handle(), rusqlite::ffi::SQLITE_LIMIT_LENGTH, 2000)
    };
    tether::keys::give(&engine, None, &mut || Ok(())).unwrap();
    let keyed = key_of(&s.plain, "tasks", 1);
    assert_eq!(
        s.local()[1],
        format!("NULL|{}", "x".repeat(3000)),
        "row 2 keeps no key"
    );
    let failed: Vec<String> = column(
        &s.plain,
        "SELECT id || ' ' || entity_id || ' ' || rejection_reason FROM tether_mutation_logs
          WHERE sync_status = 'failed' ORDER BY id",
    );
    assert_eq!(
        failed,
        [
            format!("1 {keyed} invalid_value"),
            "2  invalid_value".to_string()
        ]
    );
    assert_eq!(
        column::<i64>(
            &s.plain,
            "SELECT row_pk FROM tether_row_keys ORDER BY row_pk"
        ),
        [1, 3],
        "records only for rows holding their keys"
    );
    // Once they can be read: row 1 is retried as its entity, row 2 by table.
    json(&s.conn, &format!("SELECT tether_retry('tasks', '{keyed}')"));
    json(&s.conn, "SELECT tether_retry('tasks')");
    s.sync();
    s.assert_converged();
    assert_eq!(s.on_server().len(), 3);
}

#[test]
fn a_trigger_that_moves_the_row_when_it_gets_its_key_leaves_one_record() {
    let s = setup(TASKS, &["tasks"]);
    s.write(
        "CREATE TRIGGER mv AFTER UPDATE OF tether_id ON tasks
         BEGIN UPDATE tasks SET id = id + 100 WHERE id = NEW.id AND id < 100; END;
         INSERT INTO tasks (title) VALUES ('a');",
    );
    s.sync();
    let key = key_of(&s.plain, "tasks", 101);
    assert_eq!(
        column::<String>(
            &s.plain,
            "SELECT row_pk || ' ' || sync_key FROM tether_row_keys"
        ),
        [format!("101 {key}")]
    );
    assert_eq!(s.applied_to(&key), 1, "created once");
    // No record is left at the old number for a new row there to take over.
    s.write(
        "DROP TRIGGER mv; DELETE FROM tasks;
         INSERT INTO tasks (id, title) VALUES (1, 'unrelated');",
    );
    s.sync();
    s.assert_converged();
    assert!(s.deleted_on_server(&key));
}

#[test]
fn a_function_that_fails_on_one_row_fails_that_row_alone() {
    let s = setup(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT, h TEXT);",
        &["tasks"],
    );
    let picky = |conn: &Connection| {
        conn.create_scalar_function(
            "app_check",
            1,
            rusqlite::functions::FunctionFlags::SQLITE_UTF8,
            |ctx| {
                let title = ctx.get::<String>(0)?;
                if title == "bad" {
                    return Err(rusqlite::Error::UserFunctionError("not this one".into()));
                }
                Ok(format!("ok:{title}"))
            },
        )
        .unwrap()
    };
    picky(&s.plain);
    picky(&s.conn);
    s.write(
        "CREATE TRIGGER h AFTER UPDATE OF tether_id ON tasks
         BEGIN UPDATE tasks SET h = app_check(NEW.title) WHERE id = NEW.id; END;
         INSERT INTO tasks (title) VALUES ('a'), ('bad'), ('c');",
    );
    let result = s.sync_failing(1);
    assert!(result.to_string().contains("not this one"), "{result}");
    let keyed: i64 = s
        .plain
        .query_row(
            "SELECT count(*) FROM tasks WHERE tether_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keyed, 2, "the other rows went on");
    assert_eq!(s.on_server().len(), 2);
}

#[test]
fn a_missing_function_fails_the_sync_not_the_rows() {
    let s = setup(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT, h TEXT);",
        &["tasks"],
    );
    // The application's writing connection has its own function, which a trigger calls.
    let app_hash = |conn: &Connection| {
        conn.create_scalar_function(
            "app_hash",
            1,
            rusqlite::functions::FunctionFlags::SQLITE_UTF8,
            |ctx| Ok(format!("h:{}", ctx.get::<String>(0)?)),
        )
        .unwrap()
    };
    app_hash(&s.plain);
    s.write(
        "CREATE TRIGGER h AFTER UPDATE OF tether_id ON tasks
         BEGIN UPDATE tasks SET h = app_hash(NEW.title) WHERE id = NEW.id; END;
         INSERT INTO tasks (title) VALUES ('a');",
    );
    // The syncing connection lacks it: the sync fails, the row waits.
    let error = error_of(&s.conn, "SELECT tether_sync()");
    assert!(error.contains("app_hash"), "{error}");
    assert_eq!(s.statuses(), ["create unkeyed"]);
    app_hash(&s.conn);
    s.sync();
    s.assert_converged();
}

#[test]
fn a_table_created_anew_while_rows_wait_deletes_nothing_on_the_server() {
    let s = setup(TASKS, &["tasks"]);
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')");
    s.sync();
    s.write(
        "INSERT INTO tasks (id, title) VALUES (5, 'w5'), (6, 'w6');
         CREATE TABLE tasks_new (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);
         INSERT INTO tasks_new (id, title) SELECT id, title FROM tasks WHERE id > 4;
         DROP TABLE tasks;
         ALTER TABLE tasks_new RENAME TO tasks;",
    );
    s.sync();
    let deletes: i64 = s
        .plain
        .query_row(
            "SELECT count(*) FROM tether_mutation_logs WHERE operation = 'delete'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        deletes, 0,
        "a table created anew: the server keeps its rows"
    );
    assert_eq!(s.entities_on_server().len(), 6);
}

#[test]
fn a_refusing_trigger_blocks_neither_tracking_again_nor_untracking() {
    let s = setup(TASKS, &["tasks"]);
    s.write(
        "CREATE TRIGGER rb BEFORE UPDATE ON tasks WHEN NEW.title = 'bad'
         BEGIN SELECT RAISE(ROLLBACK, 'no'); END;
         INSERT INTO tasks (title) VALUES ('bad'), ('good');",
    );
    json(
        &s.conn,
        &format!("SELECT tether_track('tasks', '{ON_SYNC}')"),
    );
    assert_eq!(s.statuses(), ["create failed", "create pending"]);
    // Inside the application's transaction the pass cannot fail one row alone: the error says
    // the transaction is gone.
    s.write("INSERT INTO tasks (title) VALUES ('bad')");
    s.conn.execute_batch("BEGIN").unwrap();
    let error = error_of(
        &s.conn,
        &format!("SELECT tether_track('tasks', '{ON_SYNC}')"),
    );
    assert!(error.contains("rolled the transaction back"), "{error}");
    assert!(s.conn.is_autocommit());
    json(&s.conn, "SELECT tether_untrack('tasks')");
}

#[test]
fn a_row_changed_several_times_whose_key_is_ignored_fails_once() {
    let s = setup(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT, locked INTEGER);",
        &["tasks"],
    );
    s.write(
        "CREATE TRIGGER guard BEFORE UPDATE OF tether_id ON tasks WHEN OLD.locked
         BEGIN SELECT RAISE(IGNORE); END;
         INSERT INTO tasks (title, locked) VALUES ('a', 1);
         UPDATE tasks SET title = 'b';
         UPDATE tasks SET title = 'c';",
    );
    s.sync_failing(1);
    assert_eq!(json(&s.conn, "SELECT tether_status()")["failed"], 1);
    // Changed again after it failed: still one failure listed for the row.
    s.write("UPDATE tasks SET title = 'd'");
    s.sync_failing(1);
    assert_eq!(json(&s.conn, "SELECT tether_status()")["failed"], 1);
    let attention: i64 = s
        .plain
        .query_row("SELECT count(*) FROM tether_attention", [], |r| r.get(0))
        .unwrap();
    assert_eq!(attention, 1);
}

#[test]
fn other_options_keep_the_tables_keys_choice() {
    let s = setup(TASKS, &["tasks"]);
    let result = json(
        &s.conn,
        r#"SELECT tether_track('tasks', '{"except": ["slug"]}')"#,
    );
    assert_eq!(result["keys"], "on_sync", "{result}");
    s.write("INSERT INTO tasks (title) VALUES ('a')");
    assert_eq!(s.statuses(), ["create unkeyed"]);
}

#[test]
fn a_server_delete_cascading_through_a_row_waiting_for_its_key_reaches_the_rows_below() {
    let s = setup(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT,
                             project_key TEXT REFERENCES projects (tether_id) ON DELETE CASCADE);
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT,
                             task_id INTEGER REFERENCES tasks (id) ON DELETE CASCADE);",
        &[],
    );
    for (table, options) in [("projects", "{}"), ("tasks", ON_SYNC), ("notes", "{}")] {
        json(
            &s.conn,
            &format!("SELECT tether_track('{table}', '{options}')"),
        );
    }
    s.conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    // The project comes from the server.
    let project = "01JZZZZZZZZZZZZZZZZZZZZZZZ";
    let page = |operation: &str, cursor: i64| {
        serde_json::json!({
            "snapshots": [{"entity_id": project, "model": "Project", "operation": operation,
                           "payload": {"name": "P"}, "updated_at": "2026-11-26T10:00:00Z"}],
            "new_sync_cursor": cursor, "has_more": false
        })
        .to_string()
    };
    let apply = |body: String| {
        s.conn
            .query_row("SELECT tether_pull_response(?1)", [body], |_| Ok(()))
            .unwrap()
    };
    apply(page("create", 1));
    // A task waiting for its key, and a note under it that has one.
    s.conn
        .execute(
            "INSERT INTO tasks (title, project_key) VALUES ('C', ?1)",
            [project],
        )
        .unwrap();
    s.conn
        .execute_batch("INSERT INTO notes (body, task_id) VALUES ('G', 1)")
        .unwrap();
    let note = key_of(&s.conn, "notes", 1);
    apply(page("delete", 2));
    assert!(column::<i64>(&s.plain, "SELECT id FROM notes").is_empty());
    assert_eq!(
        ops_after(&s.conn, 0)
            .into_iter()
            .filter(|(_, entity)| *entity == note)
            .map(|(operation, _)| operation)
            .collect::<Vec<_>>(),
        ["create", "delete"],
        "the note's delete follows its create: the server ends without it"
    );
}

/// `tether_status()` counts a row waiting for its key once, and not at all once it is deleted:
/// what the next sync will send (it counted every create logged, deleted rows too).
#[test]
fn status_counts_waiting_rows_the_next_sync_sends() {
    let s = setup(TASKS, &["tasks"]);
    s.write(
        "INSERT INTO tasks (title) VALUES ('a'), ('b'), ('c');
         UPDATE tasks SET title = 'b2' WHERE title = 'b';
         DELETE FROM tasks WHERE title = 'c';",
    );
    let status = json(&s.conn, "SELECT tether_status()");
    assert_eq!(status["pending"], 2, "{status}");
    assert_eq!(status["tables"][0]["pending"], 2, "{status}");
    let result = json(&s.conn, "SELECT tether_sync()");
    assert_eq!(result["pushed"], 2, "{result}");
    assert_eq!(json(&s.conn, "SELECT tether_status()")["pending"], 0);
}

/// The guard skips its checks for the key an insert trigger just logged (it reads the log row at
/// `last_insert_rowid()`, as the trigger's own UPDATE does): a value given to a waiting row is
/// checked even when the application's last INSERT happens to name a log row, like an 'unkeyed'
/// create, whose entity is empty.
#[test]
fn a_waiting_row_takes_only_a_ulid_whatever_the_last_insert_was() {
    let s = setup(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);
         CREATE TABLE other (id INTEGER PRIMARY KEY);",
        &["tasks"],
    );
    s.write("INSERT INTO tasks (title) VALUES ('waiting')");
    let unkeyed: i64 = s
        .plain
        .query_row(
            "SELECT id FROM tether_mutation_logs WHERE sync_status = 'unkeyed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    s.write(&format!("INSERT INTO other (id) VALUES ({unkeyed})"));
    for value in [
        "''",
        "'not-a-ulid'",
        "lower('01ARZ3NDEKTSV4RRFFQ69G5FAV')",
        "42",
    ] {
        let statement = format!("UPDATE tasks SET tether_id = {value} WHERE id = 1");
        let err = s.plain.execute_batch(&statement).unwrap_err().to_string();
        assert!(err.contains("must be a ULID"), "{statement}: {err}");
    }
    let given = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    s.write(&format!(
        "UPDATE tasks SET tether_id = '{given}' WHERE id = 1"
    ));
    s.sync();
    assert_eq!(s.local(), [format!("{given}|waiting")]);
    s.assert_converged();
}

/// A key column declared with a collation: the guard compares the key tether just logged byte for
/// byte, so a lower-case copy of it is refused like any value that is not a ULID.
#[test]
fn a_waiting_row_takes_no_lower_case_copy_of_a_logged_key_in_a_nocase_column() {
    let s = setup(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT,
                             tether_id TEXT COLLATE NOCASE);
         CREATE TABLE other (id INTEGER PRIMARY KEY);",
        &["tasks"],
    );
    let logged = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    s.write(&format!(
        "INSERT INTO tasks (id, title, tether_id) VALUES (1, 'given', '{logged}');
         INSERT INTO tasks (id, title) VALUES (2, 'waiting');"
    ));
    let log_id: i64 = s
        .plain
        .query_row(
            "SELECT id FROM tether_mutation_logs WHERE entity_id = ?1",
            [logged],
            |r| r.get(0),
        )
        .unwrap();
    s.write(&format!(
        "DELETE FROM tasks WHERE id = 1; INSERT INTO other (id) VALUES ({log_id});"
    ));
    let err = s
        .plain
        .execute_batch(&format!(
            "UPDATE tasks SET tether_id = lower('{logged}') WHERE id = 2"
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be a ULID"), "{err}");
}
