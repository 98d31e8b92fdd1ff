//! Every way applications write SQLite is captured as the entity the user means: REPLACE in all
//! its forms, key changes, JSON and bytes, renames and rebuilds by other tools, re-tracking.
//! Writes come from connections that never loaded tether unless a test says otherwise.
use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

const TASKS: &str =
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE, done INTEGER DEFAULT 0);";

#[test]
fn insert_or_replace_of_an_existing_row_is_an_update_of_the_same_entity() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch("INSERT INTO tasks (id, title, slug) VALUES (1, 'a', 'a')")
        .unwrap();
    let key = key_of(&plain, "tasks", 1);
    for (n, statement) in [
        "INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (1, 'by primary key', 'a')",
        "REPLACE INTO tasks (id, title, slug) VALUES (1, 'replace into', 'a')",
        "INSERT OR REPLACE INTO tasks (title, slug) VALUES ('by unique slug', 'a')",
        "INSERT INTO tasks (id, title, slug) VALUES (1, 'upsert', 'a') ON CONFLICT DO UPDATE SET title = excluded.title",
    ]
    .iter()
    .enumerate()
    {
        let before = last_log_id(&conn);
        plain.execute_batch(statement).unwrap();
        let rows: Vec<(String, String)> = column::<String>(&plain, "SELECT tether_id || '|' || title FROM tasks")
            .into_iter()
            .map(|r| {
                let (k, t) = r.split_once('|').unwrap();
                (k.to_string(), t.to_string())
            })
            .collect();
        assert_eq!(rows.len(), 1, "{statement}: still one row");
        assert_eq!(rows[0].0, key, "{statement}: the row keeps its key");
        assert_eq!(
            ops_after(&conn, before),
            [op("update", &key)],
            "step {n}: {statement} is one update of the same entity"
        );
    }
    let last = mutations(&conn).pop().unwrap();
    assert_eq!(last.payload["title"], "upsert");
}

#[test]
fn a_column_declared_on_conflict_replace_keeps_the_entity() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE settings (id INTEGER PRIMARY KEY, name TEXT UNIQUE ON CONFLICT REPLACE, value TEXT);",
        "'settings'",
    );
    plain
        .execute_batch("INSERT INTO settings (name, value) VALUES ('theme', 'dark')")
        .unwrap();
    let key = key_of(&plain, "settings", 1);
    let before = last_log_id(&conn);
    // A plain INSERT: the constraint's own REPLACE deletes the old row, no trigger sees it.
    plain
        .execute_batch("INSERT INTO settings (name, value) VALUES ('theme', 'light')")
        .unwrap();
    let keys: Vec<String> = column(&plain, "SELECT tether_id FROM settings");
    assert_eq!(keys, vec![key.clone()]);
    assert_eq!(ops_after(&conn, before), [op("update", &key)]);
}

#[test]
fn rows_replace_deletes_through_another_constraint_are_captured_as_deletes() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch(
            "INSERT INTO tasks (id, title, slug) VALUES (1, 'one', 'one'), (2, 'two', 'two'), (3, 'three', 'three');",
        )
        .unwrap();
    let (k1, k2, k3) = (
        key_of(&plain, "tasks", 1),
        key_of(&plain, "tasks", 2),
        key_of(&plain, "tasks", 3),
    );
    // Row 1 by primary key and row 2 by slug: the new row is row 1's entity, row 2 is deleted.
    let before = last_log_id(&conn);
    plain
        .execute_batch("INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (1, 'merged', 'two')")
        .unwrap();
    assert_eq!(
        ops_after(&conn, before),
        [op("delete", &k2), op("update", &k1)],
        "the delete goes first, so the server never holds two rows with one slug"
    );
    // UPDATE OR REPLACE onto another row's slug deletes that row.
    let before = last_log_id(&conn);
    plain
        .execute_batch("UPDATE OR REPLACE tasks SET slug = 'two' WHERE id = 3")
        .unwrap();
    assert_eq!(
        ops_after(&conn, before),
        [op("delete", &k1), op("update", &k3)]
    );
    // UPDATE OR REPLACE onto another row's primary key deletes that row.
    plain
        .execute_batch("INSERT INTO tasks (id, title, slug) VALUES (4, 'four', 'four')")
        .unwrap();
    let k4 = key_of(&plain, "tasks", 4);
    let before = last_log_id(&conn);
    plain
        .execute_batch("UPDATE OR REPLACE tasks SET id = 4 WHERE id = 3")
        .unwrap();
    assert_eq!(ops_after(&conn, before), [op("delete", &k4)]);
    assert_eq!(
        key_of(&plain, "tasks", 4),
        k3,
        "row 3 moved to id 4 with its key"
    );
    let keys: Vec<String> = column(&plain, "SELECT tether_id FROM tasks");
    assert_eq!(keys, [k3]);
}

#[test]
fn ignored_inserts_and_upserts_leave_nothing_that_a_later_write_misreads() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch("INSERT INTO tasks (id, title, slug) VALUES (1, 'one', 'one')")
        .unwrap();
    let k1 = key_of(&plain, "tasks", 1);
    let before = last_log_id(&conn);
    plain
        .execute_batch(
            "INSERT OR IGNORE INTO tasks (title, slug) VALUES ('dup', 'one');
             INSERT INTO tasks (title, slug) VALUES ('up', 'one') ON CONFLICT (slug) DO UPDATE SET done = 1;",
        )
        .unwrap();
    assert_eq!(ops_after(&conn, before), [op("update", &k1)]);
    let before = last_log_id(&conn);
    plain
        .execute_batch(
            "DELETE FROM tasks WHERE id = 1;
             UPDATE tasks SET title = 'nothing to update';
             INSERT INTO tasks (id, title, slug) VALUES (1, 'new', 'one');",
        )
        .unwrap();
    let k_new = key_of(&plain, "tasks", 1);
    assert_ne!(k_new, k1, "a deleted entity's key is never reused");
    assert_eq!(
        ops_after(&conn, before),
        [op("delete", &k1), op("create", &k_new)],
        "exactly one delete, then a create"
    );
}

#[test]
fn the_sync_key_cannot_be_changed_cleared_or_set_to_a_non_ulid() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch("INSERT INTO tasks (title) VALUES ('a')")
        .unwrap();
    let key = key_of(&plain, "tasks", 1);
    let before = last_log_id(&conn);
    for (statement, expected) in [
        ("UPDATE tasks SET tether_id = NULL", "cannot be changed or cleared"),
        (
            "UPDATE tasks SET tether_id = '01ARZ3NDEKTSV4RRFFQ69G5FAV'",
            "cannot be changed or cleared",
        ),
        (
            "INSERT INTO tasks (title, tether_id) VALUES ('b', 'not-a-ulid')",
            "must be a ULID",
        ),
        ("INSERT INTO tasks (title, tether_id) VALUES ('b', 42)", "must be a ULID"),
        (
            "INSERT INTO tasks (title, tether_id) VALUES ('b', lower('01ARZ3NDEKTSV4RRFFQ69G5FAV'))",
            "must be a ULID",
        ),
        ("INSERT INTO tasks (title, tether_id) VALUES ('b', x'01')", "must be a ULID"),
    ] {
        let err = plain.execute_batch(statement).unwrap_err().to_string();
        assert!(err.contains(expected) && err.contains("tasks.tether_id"), "{statement}: {err}");
    }
    assert_eq!(key_of(&plain, "tasks", 1), key);
    assert!(
        ops_after(&conn, before).is_empty(),
        "refused writes queue nothing"
    );
    let given = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    plain
        .execute(
            "INSERT INTO tasks (id, title, tether_id) VALUES (2, 'b', ?1)",
            [given],
        )
        .unwrap();
    assert_eq!(ops_after(&conn, before), [op("create", given)]);
}

#[test]
fn values_keep_their_kind_and_json_follows_one_rule() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, tags JSON, meta TEXT CHECK (json_valid(meta)),
                             picked TEXT, image BLOB, score REAL, n INTEGER);",
        r#"'notes', '{"json": ["picked"]}'"#,
    );
    plain
        .execute_batch(
            r#"INSERT INTO notes (title, tags, meta, picked, image, score, n)
               VALUES (json_array('made', 'by', 'json'), '["a","b"]', '{"k": 1}', '[1,2]', x'89504E47', 1.0, 7);
               INSERT INTO notes (title, tags, meta, picked) VALUES ('["looks","like","json"]', 'not json', '{}', 'plain');"#,
        )
        .unwrap();
    let log = mutations(&conn);
    assert_eq!(
        log[0].payload,
        json!({"title": "[\"made\",\"by\",\"json\"]", "tags": ["a", "b"], "meta": {"k": 1},
               "picked": [1, 2], "image": "89504E47", "score": 1.0, "n": 7}),
        "a TEXT column is a string even when a JSON function wrote it; JSON columns are JSON"
    );
    assert!(log[0].payload["score"].is_f64() && log[0].payload["n"].is_i64());
    assert_eq!(
        log[1].payload,
        json!({"title": "[\"looks\",\"like\",\"json\"]", "tags": "not json", "meta": {},
               "picked": "plain", "image": null, "score": null, "n": null})
    );
}

#[test]
fn a_value_that_cannot_be_sent_fails_alone_and_the_queue_goes_on() {
    let (_dir, path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch(
            "INSERT INTO tasks (title) VALUES ('before');
             INSERT INTO tasks (title) VALUES (CAST(x'c328' AS TEXT));
             INSERT INTO tasks (title) VALUES ('after');",
        )
        .unwrap();
    // A key written before the guard existed (an older tether): forced in past the triggers.
    plain
        .execute_batch(
            "INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
             VALUES (42, 'Task', 'update', '{}', 1);",
        )
        .unwrap();
    set_config(&conn, "server_url", "http://127.0.0.1:9");
    let body: String = conn
        .query_row("SELECT tether_push_request()", [], |r| r.get(0))
        .unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    let titles: Vec<&Value> = body["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["payload"]["title"])
        .collect();
    assert_eq!(titles, [&json!("before"), &json!("after")]);
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["failed"], 2, "{status}");
    let reasons: Vec<String> = column(
        &conn,
        "SELECT rejection_reason || ': ' || json_extract(rejection_data, '$.message') FROM tether_mutation_logs WHERE sync_status = 'failed' ORDER BY id",
    );
    assert!(
        reasons[0].starts_with("invalid_value") && reasons[0].contains("UTF-8"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("sync key"), "{reasons:?}");
    drop(path);
}

#[test]
fn a_user_trigger_on_the_log_that_writes_another_tracked_table_swaps_no_keys() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);
         SELECT tether_track('audit');",
        "'tasks'",
    );
    plain
        .execute_batch(
            "CREATE TRIGGER audit_every_mutation AFTER INSERT ON tether_mutation_logs
              WHEN NEW.model = 'Task'
              BEGIN INSERT INTO audit (what) VALUES (NEW.operation); END;
             INSERT INTO tasks (title) VALUES ('a');",
        )
        .unwrap();
    let task_key = key_of(&plain, "tasks", 1);
    let audit_key = key_of(&plain, "audit", 1);
    assert_ne!(task_key, audit_key);
    let by_model: Vec<(String, String)> = mutations(&conn)
        .into_iter()
        .map(|m| (m.model, m.entity_id))
        .collect();
    assert!(
        by_model.contains(&("Task".into(), task_key)),
        "{by_model:?}"
    );
    assert!(
        by_model.contains(&("Audit".into(), audit_key)),
        "{by_model:?}"
    );
}

#[test]
fn a_renamed_table_is_followed_under_its_model() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch(
            "INSERT INTO tasks (title) VALUES ('a');
             ALTER TABLE tasks RENAME TO todo_items;
             INSERT INTO todo_items (title) VALUES ('written after the rename');",
        )
        .unwrap();
    let status = json(&conn, "SELECT tether_status()");
    let tables = status["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "{status}");
    assert_eq!(tables[0]["table"], "todo_items");
    assert_eq!(
        tables[0]["model"], "Task",
        "the server's model does not change"
    );
    assert_eq!(tables[0]["state"], "ok");
    // Tracking the new name is a re-track, not a second set of triggers.
    let again = json(&conn, "SELECT tether_track('todo_items')");
    assert_eq!(again["retracked"], true);
    let before = last_log_id(&conn);
    plain
        .execute_batch("UPDATE todo_items SET title = 'once' WHERE id = 1")
        .unwrap();
    let log: Vec<(String, String)> = mutations(&conn)
        .into_iter()
        .filter(|m| m.id > before)
        .map(|m| (m.model, m.operation))
        .collect();
    assert_eq!(
        log,
        [("Task".to_string(), "update".to_string())],
        "captured once"
    );
    let names: Vec<String> = column(
        &conn,
        "SELECT name FROM sqlite_schema WHERE type IN ('trigger', 'index') AND name LIKE 'tether%' AND tbl_name NOT LIKE 'tether%' ORDER BY name",
    );
    assert!(names.iter().all(|n| n.ends_with("todo_items")), "{names:?}");
}

/// What Alembic's batch mode, Room and Prisma do: copy into a new table, drop, rename.
fn rebuild(plain: &Connection, columns: &str, copy: &str) {
    plain
        .execute_batch(&format!(
            "BEGIN;
             CREATE TABLE _new_tasks ({columns});
             INSERT INTO _new_tasks SELECT {copy} FROM tasks;
             DROP TABLE tasks;
             ALTER TABLE _new_tasks RENAME TO tasks;
             COMMIT;"
        ))
        .unwrap();
}

#[test]
fn a_rebuilt_table_is_repaired_keeping_every_row_key() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch("INSERT INTO tasks (title, slug) VALUES ('a', 'a'), ('b', 'b'), ('c', 'c')")
        .unwrap();
    let keys: Vec<String> = column(&plain, "SELECT tether_id FROM tasks ORDER BY id");
    rebuild(
        &plain,
        "id INTEGER PRIMARY KEY, title TEXT NOT NULL, slug TEXT UNIQUE, done INTEGER DEFAULT 0, tether_id TEXT",
        "id, title, slug, done, tether_id",
    );
    // Written in the window before any repair: no triggers exist.
    plain
        .execute_batch("INSERT INTO tasks (title, slug) VALUES ('in the window', 'w'); DELETE FROM tasks WHERE id = 2;")
        .unwrap();
    let before = last_log_id(&conn);
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["tables"][0]["state"], "ok", "{status}");
    let after: Vec<String> = column(
        &plain,
        "SELECT tether_id FROM tasks WHERE id IN (1, 3) ORDER BY id",
    );
    assert_eq!(after, [keys[0].clone(), keys[2].clone()]);
    let window = key_of(&plain, "tasks", 4);
    assert_eq!(
        ops_after(&conn, before),
        [op("create", &window), op("delete", &keys[1])],
        "a row inserted in the window is created; one deleted in it is deleted"
    );
    let before = last_log_id(&conn);
    plain
        .execute_batch("UPDATE tasks SET title = 'captured again' WHERE id = 1")
        .unwrap();
    assert_eq!(ops_after(&conn, before), [op("update", &keys[0])]);
}

#[test]
fn a_rebuild_that_drops_the_key_column_gives_every_row_back_its_own_key() {
    // Django's AlterField rebuilds the table from its own model, which has no tether_id.
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch("INSERT INTO tasks (title, slug) VALUES ('a', 'a'), ('b', 'b')")
        .unwrap();
    let keys: Vec<String> = column(&plain, "SELECT tether_id FROM tasks ORDER BY id");
    rebuild(
        &plain,
        "id INTEGER PRIMARY KEY, title TEXT NOT NULL, slug TEXT UNIQUE, done INTEGER DEFAULT 0",
        "id, title, slug, done",
    );
    let before = last_log_id(&conn);
    // The first thing after the migration is a sync: it repairs before anything is sent.
    set_config(&conn, "server_url", "http://127.0.0.1:9");
    let _ = conn.query_row("SELECT tether_push()", [], |r| r.get::<_, String>(0));
    let after: Vec<String> = column(&plain, "SELECT tether_id FROM tasks ORDER BY id");
    assert_eq!(after, keys, "every row has its own key again");
    assert!(
        ops_after(&conn, before).is_empty(),
        "no row is sent again as a new entity"
    );
}

#[test]
fn a_dropped_table_is_reported_not_an_error() {
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain.execute_batch("DROP TABLE tasks").unwrap();
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["tables"][0]["state"], "dropped", "{status}");
    assert_eq!(status["tables"][0]["exists"], false);
    let body: Option<String> = conn
        .query_row("SELECT tether_push_request()", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("push after a drop: {e}"));
    assert!(body.is_none());
}

#[test]
fn retracking_never_creates_what_the_server_has() {
    let (_dir, path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch("INSERT INTO tasks (title) VALUES ('sent')")
        .unwrap();
    give_identities(&path);
    conn.execute_batch(
        "UPDATE tether_mutation_logs SET sync_status = 'synced', synced_at = CURRENT_TIMESTAMP",
    )
    .unwrap();
    // A row that arrived by pull: applied without capture, as the engine does.
    let pulled = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let page = json!({"snapshots": [{"entity_id": pulled, "model": "Task", "operation": "upsert", "payload": {"title": "pulled"}}],
                      "new_sync_cursor": 5, "has_more": false});
    json(&conn, &format!("SELECT tether_pull_response('{page}')"));
    let before = last_log_id(&conn);
    json(&conn, "SELECT tether_untrack('tasks')");
    plain
        .execute_batch("INSERT INTO tasks (title) VALUES ('while untracked')")
        .unwrap();
    let result = json(&conn, "SELECT tether_track('tasks')");
    assert_eq!(result["queued_creates"], 1, "{result}");
    let ops = ops_after(&conn, before);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].0, "create");
    let created: String = plain
        .query_row(
            "SELECT title FROM tasks WHERE tether_id = ?1",
            [&ops[0].1],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(created, "while untracked");
}

#[test]
fn changed_options_rerender_what_is_queued() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, secret TEXT);",
        "'tasks'",
    );
    plain
        .execute_batch("INSERT INTO tasks (title, secret) VALUES ('a', 'keep me local')")
        .unwrap();
    let result = json(
        &conn,
        r#"SELECT tether_track('tasks', '{"except": ["secret"], "model": "Todo"}')"#,
    );
    assert_eq!(result["pending_rerendered"], 2, "{result}");
    let log = mutations(&conn);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].model, "Todo");
    assert_eq!(
        log[0].payload,
        json!({"title": "a"}),
        "a newly excluded value is never sent"
    );
}

#[test]
fn tables_whose_primary_key_carries_data_sync_it() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE task_tag (task_key TEXT NOT NULL, tag TEXT NOT NULL, weight INTEGER, PRIMARY KEY (task_key, tag)) WITHOUT ROWID;
         CREATE TABLE countries (code TEXT PRIMARY KEY, name TEXT);
         SELECT tether_track('countries');",
        "'task_tag'",
    );
    plain
        .execute_batch(
            "INSERT INTO task_tag (task_key, tag, weight) VALUES ('01ARZ3NDEKTSV4RRFFQ69G5FAV', 'home', 1);
             INSERT OR REPLACE INTO task_tag (task_key, tag, weight) VALUES ('01ARZ3NDEKTSV4RRFFQ69G5FAV', 'home', 2);
             INSERT INTO countries (code, name) VALUES ('NL', 'Netherlands');
             UPDATE countries SET code = 'NLD' WHERE code = 'NL';",
        )
        .unwrap();
    let log = mutations(&conn);
    let shown: Vec<(String, String, Value)> = log
        .iter()
        .map(|m| (m.model.clone(), m.operation.clone(), m.payload.clone()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                "TaskTag".into(),
                "create".into(),
                json!({"task_key": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "tag": "home", "weight": 1})
            ),
            (
                "TaskTag".into(),
                "update".into(),
                json!({"task_key": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "tag": "home", "weight": 2})
            ),
            (
                "Country".into(),
                "create".into(),
                json!({"code": "NL", "name": "Netherlands"})
            ),
            (
                "Country".into(),
                "update".into(),
                json!({"code": "NLD", "name": "Netherlands"})
            ),
        ]
    );
    assert_eq!(
        log[0].entity_id, log[1].entity_id,
        "REPLACE kept the entity"
    );
    assert_eq!(log[2].entity_id, log[3].entity_id);
}

#[test]
fn a_foreign_key_to_a_local_row_number_is_warned_about() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, project_id INTEGER REFERENCES projects(id));",
        "'projects'",
    );
    let result = json(&conn, "SELECT tether_track('tasks')");
    let codes: Vec<(&str, &str)> = result["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["code"].as_str().unwrap(),
                w["column"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(codes, [("local_foreign_key", "project_id")], "{result}");
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(
        status["tables"][1]["warnings"][0]["code"],
        "local_foreign_key"
    );
    let fine = json(
        &conn,
        r#"SELECT tether_track('tasks', '{"except": ["project_id"]}')"#,
    );
    assert_eq!(fine["warnings"], json!([]));
}

#[test]
fn dropping_a_column_the_options_name_does_not_wedge_syncing() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, draft TEXT);",
        r#"'tasks', '{"except": ["draft"]}'"#,
    );
    let err = plain
        .execute_batch("ALTER TABLE tasks DROP COLUMN title")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("title"),
        "a synced column cannot be dropped under the triggers: {err}"
    );
    plain
        .execute_batch(
            "ALTER TABLE tasks DROP COLUMN draft; INSERT INTO tasks (title) VALUES ('a');",
        )
        .unwrap();
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["tables"][0]["state"], "ok", "{status}");
    assert_eq!(status["repair_error"], Value::Null, "{status}");
    let body: String = conn
        .query_row("SELECT tether_push_request()", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("push after the drop: {e}"));
    assert!(body.contains("\"title\":\"a\""), "{body}");
}

#[test]
fn with_recursive_triggers_on_replace_is_still_one_row_once() {
    // With recursive_triggers on, SQLite fires the delete trigger for rows REPLACE deletes.
    let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
    plain
        .execute_batch(
            "PRAGMA recursive_triggers = ON;
             INSERT INTO tasks (id, title, slug) VALUES (1, 'one', 'one'), (2, 'two', 'two');",
        )
        .unwrap();
    let (k1, k2) = (key_of(&plain, "tasks", 1), key_of(&plain, "tasks", 2));
    for (statement, old) in [
        (
            "INSERT OR REPLACE INTO tasks (title, slug) VALUES ('by slug', 'one')",
            &k1,
        ),
        (
            "INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (2, 'by id', 'two')",
            &k2,
        ),
    ] {
        let before = last_log_id(&conn);
        plain.execute_batch(statement).unwrap();
        let ops = ops_after(&conn, before);
        let keys: Vec<String> = column(
            &plain,
            &format!(
                "SELECT tether_id FROM tasks WHERE slug = '{}'",
                if old == &k1 { "one" } else { "two" }
            ),
        );
        let now = &keys[0];
        let one_update = ops == [op("update", old)] && now == old;
        let delete_then_create = ops == [op("delete", old), op("create", now)] && now != old;
        assert!(
            one_update || delete_then_create,
            "{statement}: {ops:?}, key now {now}"
        );
    }
}

/// The INSERT triggers split a row inserted without a key (`tether_keyless_*`) from the full
/// path (`tether_insert_*`, REPLACE and keys given), which clears the notes the keyless
/// trigger's WHEN reads: the keyless one must fire first. SQLite fires a table's triggers newest
/// first, also after the schema is read again by another connection; tether creates it last.
#[test]
fn the_insert_triggers_fire_keyless_first_on_every_connection() {
    let (_dir, path, conn, plain) = tracked_db(TASKS, "'tasks'");
    let created: Vec<String> = column(
        &plain,
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name IN ('tether_insert_tasks', 'tether_keyless_tasks') ORDER BY rowid",
    );
    assert_eq!(created, ["tether_insert_tasks", "tether_keyless_tasks"]);
    let probe = Connection::open(&path).unwrap();
    probe
        .execute_batch(
            "CREATE TABLE order_probe (x);
             CREATE TRIGGER probe_first AFTER INSERT ON order_probe BEGIN INSERT INTO order_probe_log VALUES ('first'); END;
             CREATE TABLE order_probe_log (name);
             CREATE TRIGGER probe_second AFTER INSERT ON order_probe BEGIN INSERT INTO order_probe_log VALUES ('second'); END;
             INSERT INTO order_probe VALUES (1);",
        )
        .unwrap();
    let reopened = Connection::open(&path).unwrap();
    reopened
        .execute_batch("INSERT INTO order_probe VALUES (2)")
        .unwrap();
    assert_eq!(
        column::<String>(&reopened, "SELECT name FROM order_probe_log ORDER BY rowid"),
        ["second", "first", "second", "first"],
        "this SQLite fires a table's triggers newest first, on the creating connection and after a reload"
    );
    // And so a REPLACE through the full path is one update, with no second create.
    plain
        .execute_batch("INSERT INTO tasks (id, title, slug) VALUES (1, 'a', 'a')")
        .unwrap();
    let key = key_of(&plain, "tasks", 1);
    let before = last_log_id(&conn);
    let fresh = Connection::open(&path).unwrap();
    fresh
        .execute_batch("INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (1, 'b', 'a')")
        .unwrap();
    assert_eq!(ops_after(&conn, before), [op("update", &key)]);
}

/// The keyless trigger's key write starts the user's triggers; one that inserts into the same
/// table and is skipped leaves the notes of its BEFORE trigger behind, which the full path, firing
/// next, must not take for the new row's (it would capture the row a second time).
#[test]
fn a_skipped_insert_by_a_trigger_the_key_write_starts_leaves_the_row_captured_once() {
    use tether_harness::server_backed::ServerBacked;
    for body in [
        "INSERT OR IGNORE INTO tasks (id, title) VALUES (1, 'root');",
        "INSERT INTO tasks (id, title) VALUES (1, 'root') ON CONFLICT DO NOTHING;",
        "INSERT INTO tasks (id, title) VALUES (1, 'root') ON CONFLICT (id) DO UPDATE SET title = title;",
        "INSERT OR IGNORE INTO tasks (id, title) VALUES (NEW.id, NEW.title);",
    ] {
        let s = ServerBacked::new(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);",
            &["tasks"],
            "{}",
        );
        s.write("INSERT INTO tasks (id, title) VALUES (1, 'root')");
        s.write(&format!(
            "CREATE TRIGGER user_touch AFTER UPDATE ON tasks WHEN NEW.id <> 1 BEGIN {body} END"
        ));
        let before = last_log_id(&s.conn);
        s.write("INSERT INTO tasks (title) VALUES ('child')");
        let key = key_of(&s.plain, "tasks", 2);
        assert_eq!(
            ops_after(&s.conn, before),
            [op("create", &key)],
            "{body}: one create"
        );
        s.sync();
        assert_eq!(s.applied_to(&key), 1, "{body}: applied once on the server");
        s.assert_converged();
    }
}

/// A tool that recreates tether's triggers in another order (the full path newest) would make
/// the full path fire first; tether finds it when it next checks the table and installs the
/// triggers again.
#[test]
fn insert_triggers_recreated_out_of_order_are_put_back_in_order() {
    // (the trigger recreated, so that it fires first; the pair in the order tether creates them)
    for (recreated, pair) in [
        (
            "tether_insert_tasks",
            ["tether_insert_tasks", "tether_keyless_tasks"],
        ),
        (
            "tether_watch_insert_tasks",
            ["tether_watch_insert_tasks", "tether_sweep_insert_tasks"],
        ),
        (
            "tether_watch_update_tasks",
            ["tether_watch_update_tasks", "tether_sweep_update_tasks"],
        ),
    ] {
        let (_dir, _path, conn, plain) = tracked_db(TASKS, "'tasks'");
        plain
            .execute_batch(
                "INSERT INTO tasks (id, title, slug) VALUES (1, 'a', 'a'), (2, 'b', 'b')",
            )
            .unwrap();
        let (first, second) = (key_of(&plain, "tasks", 1), key_of(&plain, "tasks", 2));
        let sql = column::<String>(
            &plain,
            &format!("SELECT sql FROM sqlite_schema WHERE name = '{recreated}'"),
        );
        plain
            .execute_batch(&format!("DROP TRIGGER {recreated}; {};", sql[0]))
            .unwrap();
        json(&conn, "SELECT tether_status()");
        let created: Vec<String> = column(
            &plain,
            &format!(
                "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name IN ('{}', '{}') ORDER BY rowid",
                pair[0], pair[1]
            ),
        );
        assert_eq!(created, pair, "{recreated}: put back in order");
        let before = last_log_id(&conn);
        plain
            .execute_batch("INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (1, 'c', 'a')")
            .unwrap();
        plain
            .execute_batch("UPDATE OR REPLACE tasks SET slug = 'a' WHERE id = 2")
            .unwrap();
        assert_eq!(
            ops_after(&conn, before),
            [
                op("update", &first),
                op("delete", &first),
                op("update", &second)
            ],
            "{recreated}"
        );
    }
}

/// README ("What is not done yet"): a BEFORE INSERT trigger of yours that inserts into the same
/// table during a REPLACE keeps the replaced entity when it is created after `tether_track`, so
/// that it fires before tether's BEFORE INSERT trigger notes the rows about to be replaced.
#[test]
fn a_before_insert_trigger_of_yours_created_after_tracking_keeps_the_replaced_entity() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);",
        "'tasks'",
    );
    plain
        .execute_batch(
            "CREATE TRIGGER yours BEFORE INSERT ON tasks WHEN NEW.title = 'replacement'
             BEGIN INSERT INTO tasks (title) VALUES ('side row'); END;
             INSERT INTO tasks (id, title) VALUES (1, 'a');",
        )
        .unwrap();
    let key = key_of(&plain, "tasks", 1);
    let before = last_log_id(&conn);
    plain
        .execute_batch("INSERT OR REPLACE INTO tasks (id, title) VALUES (1, 'replacement')")
        .unwrap();
    let side = column::<String>(
        &plain,
        "SELECT tether_id FROM tasks WHERE title = 'side row'",
    );
    let mut ops = ops_after(&conn, before);
    ops.sort();
    let mut want = vec![op("create", &side[0]), op("update", &key)];
    want.sort();
    assert_eq!(
        ops, want,
        "the replaced row's entity is updated, the side row created"
    );
}

/// A trigger of yours that inserts into the same table while a REPLACE is under way (an AFTER
/// INSERT trigger created after tracking fires before tether's, once the row is in place) must
/// leave the REPLACE's notes to the row that wrote them: the replaced entity is updated, not
/// lost and brought back by the next pull. Through the primary key, through a UNIQUE column with
/// a row number SQLite picks, and with the side row itself replacing another.
#[test]
fn a_trigger_of_yours_inserting_into_the_same_table_during_a_replace_keeps_both_entities() {
    use tether_harness::server_backed::ServerBacked;
    let cases = [
        (
            "pk, side row new",
            "INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, 'b')",
            "INSERT INTO tasks (title) VALUES ('side')",
            "INSERT OR REPLACE INTO tasks (id, title) VALUES (1, 'a2')",
        ),
        (
            "unique, side row new",
            "INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, 'b')",
            "INSERT INTO tasks (title) VALUES ('side')",
            "INSERT OR REPLACE INTO tasks (title, n) VALUES ('a', 7)",
        ),
        (
            "pk, side row replacing another",
            "INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, 'b')",
            "INSERT OR REPLACE INTO tasks (id, title) VALUES (2, 'side')",
            "INSERT OR REPLACE INTO tasks (id, title) VALUES (1, 'a2')",
        ),
    ];
    for (case, seed, side, replace) in cases {
        for options in ["{}", r#"{"keys": "on_sync"}"#] {
            let s = ServerBacked::new(
                "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT UNIQUE, n INTEGER);",
                &["tasks"],
                options,
            );
            s.write(seed);
            s.sync();
            let replaced = key_of(&s.plain, "tasks", 1);
            let other = key_of(&s.plain, "tasks", 2);
            s.write(&format!(
                "CREATE TRIGGER yours AFTER INSERT ON tasks WHEN NEW.title NOT IN ('side', 'b')
                 BEGIN {side}; END"
            ));
            s.write(replace);
            s.sync();
            let on = format!("{case}, {options}");
            assert_eq!(
                column::<String>(
                    &s.plain,
                    "SELECT tether_id FROM tasks WHERE id = 1 OR title = 'a'"
                ),
                std::slice::from_ref(&replaced),
                "{on}: the row in the replaced row's place keeps its entity"
            );
            let side_keys: Vec<String> =
                column(&s.plain, "SELECT tether_id FROM tasks WHERE title = 'side'");
            assert_eq!(side_keys.len(), 1, "{on}: one side row");
            if side.contains("REPLACE") {
                assert_eq!(
                    side_keys,
                    std::slice::from_ref(&other),
                    "{on}: the side row takes over row 2"
                );
            }
            assert_eq!(
                s.applied_to(&replaced),
                2,
                "{on}: created, then updated once"
            );
            s.assert_converged();
        }
    }
}

/// A skipped row's notes (INSERT OR IGNORE, an upsert) name rows that still exist: they are
/// never read as another row's, and the next row's BEFORE triggers sweep them, so a statement
/// that skips many rows leaves the notes of one at most, and the next sync none.
#[test]
fn notes_a_skipped_row_left_are_swept_by_the_next_row_and_never_read() {
    use tether_harness::server_backed::ServerBacked;
    let s = ServerBacked::new(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT UNIQUE);",
        &["tasks"],
        "{}",
    );
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, 'x')");
    let (first, second) = (key_of(&s.plain, "tasks", 1), key_of(&s.plain, "tasks", 2));
    let notes = |conn: &Connection| column::<i64>(conn, "SELECT count(*) FROM tether_replaced")[0];
    let before = last_log_id(&s.conn);
    // Skipped: its notes name row 2, which holds 'x'.
    s.write("INSERT OR IGNORE INTO tasks (id, title) VALUES (5, 'x')");
    assert_eq!(
        notes(&s.plain),
        1,
        "the skipped row's note stays after its statement"
    );
    // Deletes rows 1 and 2, takes over row 1's entity, deletes row 2's.
    s.write("INSERT OR REPLACE INTO tasks (id, title) VALUES (1, 'x')");
    assert_eq!(notes(&s.plain), 0, "swept before the REPLACE noted its own");
    s.write("INSERT INTO tasks (title) VALUES ('d')");
    // A statement that skips many rows keeps the notes of its last skipped row only.
    s.write(
        "INSERT INTO tasks (id, title) SELECT value, 'x' FROM json_each('[10, 11, 12, 13, 14]')
          WHERE 1 ON CONFLICT DO NOTHING",
    );
    assert_eq!(notes(&s.plain), 1, "one skipped row's note at a time");
    s.write("INSERT OR REPLACE INTO tasks (id, title) VALUES (7, 'e')");
    assert_eq!(
        ops_after(&s.conn, before),
        [
            op("delete", &second),
            op("update", &first),
            op("create", &key_of(&s.plain, "tasks", 2)),
            op("create", &key_of(&s.plain, "tasks", 7)),
        ],
        "the REPLACE deletes row 2's entity and takes over row 1's; each new row is one create"
    );
    // Copies of rows with their primary keys and keys (a re-import) are swept as well: their notes
    // name rows just like the ones they note.
    s.write(
        "INSERT OR IGNORE INTO tasks (id, title, tether_id)
         SELECT id, title, tether_id FROM tasks UNION ALL SELECT id, title, tether_id FROM tasks",
    );
    assert_eq!(notes(&s.plain), 1, "one skipped copy's note at a time");
    s.write("INSERT OR IGNORE INTO tasks (id, title) VALUES (8, 'e')");
    s.sync();
    assert_eq!(notes(&s.plain), 0, "tether's write cleared every note");
    assert_eq!(s.applied_to(&first), 2);
    s.assert_converged();
}

/// Triggers of yours that write the same table while tether's REPLACE bookkeeping is under way
/// (found by review): each REPLACE is still one update of the entity it takes over and one delete
/// of each other entity it deletes, checked against the server. (Not when the REPLACE gives the
/// row both the primary key and the key of the row it replaces: README, "What is not done yet".)
#[test]
fn triggers_of_yours_writing_the_same_table_during_a_replace_keep_every_entity_right() {
    use tether_harness::server_backed::ServerBacked;
    // (case, seed, your trigger, the write, the rows whose entities it updates and deletes)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, &'a [i64], &'a [i64]);
    let cases: [Case; 5] = [
        (
            "REPLACE by the row's key, your AFTER INSERT trigger adds a row",
            "INSERT INTO tasks (id, title) VALUES (1, 'a')",
            "AFTER INSERT ON tasks WHEN NEW.title <> 'side' BEGIN INSERT INTO tasks (title) VALUES ('side'); END",
            "INSERT OR REPLACE INTO tasks (tether_id, title) SELECT tether_id, 'a2' FROM tasks WHERE id = 1",
            &[1],
            &[],
        ),
        (
            "REPLACE by the row's key, your AFTER INSERT trigger trims the new row",
            "INSERT INTO tasks (id, title) VALUES (1, 'a')",
            "AFTER INSERT ON tasks WHEN NEW.title <> trim(NEW.title) BEGIN UPDATE tasks SET title = trim(NEW.title) WHERE id = NEW.id; END",
            "INSERT OR REPLACE INTO tasks (title, tether_id) SELECT ' a2 ', tether_id FROM tasks WHERE id = 1",
            &[1, 1],
            &[],
        ),
        (
            "UPDATE OR REPLACE, your AFTER UPDATE trigger updates the same row again",
            "INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, 'B')",
            "AFTER UPDATE OF title ON tasks WHEN NEW.title <> lower(NEW.title) BEGIN UPDATE tasks SET title = lower(NEW.title) WHERE id = NEW.id; END",
            "UPDATE OR REPLACE tasks SET title = 'B' WHERE id = 1",
            &[1, 1],
            &[2],
        ),
        (
            "REPLACE through a UNIQUE column, your trigger inserts the same values, ignored",
            "INSERT INTO tasks (id, title) VALUES (1, 'a')",
            "AFTER INSERT ON tasks BEGIN INSERT OR IGNORE INTO tasks (title) VALUES (lower(NEW.title)); END",
            "INSERT OR REPLACE INTO tasks (title, n) VALUES ('a', 5)",
            &[1],
            &[],
        ),
        (
            "REPLACE, your AFTER INSERT trigger's UPDATE (OR REPLACE, inherited) deletes another row",
            "INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, 'b')",
            "AFTER INSERT ON tasks WHEN NEW.title <> trim(NEW.title) BEGIN UPDATE tasks SET title = trim(NEW.title) WHERE id = NEW.id; END",
            "INSERT OR REPLACE INTO tasks (id, title) VALUES (1, ' b ')",
            &[1],
            &[2],
        ),
    ];
    for (case, seed, trigger, write, updated, deleted) in cases {
        let s = ServerBacked::new(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT UNIQUE, n INTEGER);",
            &["tasks"],
            "{}",
        );
        s.write(seed);
        s.sync();
        let keys: Vec<String> = column(&s.plain, "SELECT tether_id FROM tasks ORDER BY id");
        let key = |id: i64| keys[id as usize - 1].clone();
        s.write(&format!("CREATE TRIGGER yours {trigger}"));
        let before = last_log_id(&s.conn);
        s.write(write);
        let ops = ops_after(&s.conn, before);
        let mut of_seed: Vec<(String, String)> = ops
            .iter()
            .filter(|(_, entity)| keys.contains(entity))
            .cloned()
            .collect();
        of_seed.sort();
        let mut want: Vec<(String, String)> = updated
            .iter()
            .map(|id| op("update", &key(*id)))
            .chain(deleted.iter().map(|id| op("delete", &key(*id))))
            .collect();
        want.sort();
        assert_eq!(of_seed, want, "{case}: {ops:?}");
        assert!(
            ops.iter()
                .filter(|(o, _)| o == "create")
                .all(|(_, entity)| !keys.contains(entity)),
            "{case}: no entity created twice: {ops:?}"
        );
        assert_eq!(
            column::<i64>(&s.plain, "SELECT count(*) FROM tether_replaced")[0],
            0,
            "{case}: no note left"
        );
        s.sync();
        s.assert_converged();
    }
}

/// An application's AFTER UPDATE trigger created after tracking fires before tether's and writes
/// the row again: tether's trigger then runs last with a `NEW` from before that write, so the
/// payload is read from the row as it is, and the last `update` sent carries what the row holds.
#[test]
fn an_update_is_sent_as_the_row_ends_when_your_trigger_writes_it_again() {
    use tether_harness::server_backed::ServerBacked;
    let s = ServerBacked::new(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);",
        &["tasks"],
        "{}",
    );
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'a')");
    s.sync();
    s.write(
        "CREATE TRIGGER yours AFTER UPDATE OF title ON tasks WHEN NEW.title <> upper(NEW.title)
         BEGIN UPDATE tasks SET title = upper(NEW.title) WHERE id = NEW.id; END",
    );
    s.write("UPDATE tasks SET title = 'b' WHERE id = 1");
    let last: Vec<String> = column(
        &s.plain,
        "SELECT payload ->> 'title' FROM tether_mutation_logs ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(last, ["B"], "the last update carries the row as it ends");
    s.sync();
    s.assert_converged();
    assert_eq!(s.on_server().len(), 1);
    assert!(s.on_server()[0].ends_with("|B"), "{:?}", s.on_server());
}

/// A BEFORE UPDATE trigger sees a generated column NULL when the UPDATE does not name the columns
/// it is computed from, an AFTER UPDATE trigger its value: an UPDATE OR REPLACE onto another row's
/// primary key still logs that row's delete (found by review: the notes' name read the generated
/// column, so the AFTER trigger did not find them).
#[test]
fn update_or_replace_onto_a_primary_key_with_a_generated_unique_column_deletes_the_row_it_replaces()
{
    for kind in ["VIRTUAL", "STORED"] {
        let (_dir, _path, conn, plain) = tracked_db(
            &format!(
                "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, n INTEGER,
                                     g TEXT GENERATED ALWAYS AS (lower(title)) {kind} UNIQUE);"
            ),
            "'tasks'",
        );
        plain
            .execute_batch("INSERT INTO tasks (id, title) VALUES (1, 'a'), (3, 'b')")
            .unwrap();
        let (first, third) = (key_of(&plain, "tasks", 1), key_of(&plain, "tasks", 3));
        let before = last_log_id(&conn);
        plain
            .execute_batch("UPDATE OR REPLACE tasks SET id = 3 WHERE id = 1")
            .unwrap();
        assert_eq!(ops_after(&conn, before), [op("delete", &third)], "{kind}");
        assert_eq!(key_of(&plain, "tasks", 3), first, "{kind}");
        assert_eq!(
            column::<i64>(&plain, "SELECT count(*) FROM tether_replaced")[0],
            0,
            "{kind}: no note left"
        );
    }
}

/// README ("What is not done yet"): a REPLACE giving the row both the primary key and the key of
/// the row it replaces, while an AFTER INSERT trigger of yours created after tracking writes the
/// table, is logged as a create; calling `tether_track` again after creating the trigger makes
/// tether's triggers fire first, and it is one update.
#[test]
fn a_replace_giving_its_own_key_beside_your_after_trigger_is_an_update_once_tracked_again() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT UNIQUE);",
        "'tasks'",
    );
    plain
        .execute_batch(
            "INSERT INTO tasks (id, title) VALUES (1, 'a');
             CREATE TRIGGER yours AFTER INSERT ON tasks WHEN NEW.title <> 'side'
             BEGIN INSERT INTO tasks (title) VALUES ('side'); END;",
        )
        .unwrap();
    json(&conn, "SELECT tether_track('tasks')");
    let key = key_of(&plain, "tasks", 1);
    let before = last_log_id(&conn);
    plain
        .execute_batch(
            "INSERT OR REPLACE INTO tasks (id, tether_id, title)
             SELECT id, tether_id, 'a2' FROM tasks WHERE id = 1",
        )
        .unwrap();
    let side = column::<String>(&plain, "SELECT tether_id FROM tasks WHERE title = 'side'");
    let mut ops = ops_after(&conn, before);
    ops.sort();
    let mut want = vec![op("update", &key), op("create", &side[0])];
    want.sort();
    assert_eq!(ops, want);
}

/// A REPLACE that deletes two rows, the first of which a foreign key of the same table sets NULL
/// in a third (an UPDATE while the REPLACE is under way): the second row's note must survive that
/// UPDATE's sweep, so its entity is deleted (found by review).
#[test]
fn a_replace_whose_foreign_key_updates_the_same_table_deletes_every_row_it_replaces() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY,
                             parent_id INTEGER REFERENCES tasks (id) ON DELETE SET NULL,
                             pos INTEGER, title TEXT UNIQUE, UNIQUE (parent_id, pos));",
        "'tasks'",
    );
    plain
        .execute_batch(
            "PRAGMA foreign_keys = ON;
             INSERT INTO tasks (id, parent_id, pos, title)
             VALUES (1, NULL, 1, 'h1'), (2, NULL, 2, 'x'), (3, 1, 1, 'c');",
        )
        .unwrap();
    let keys: Vec<String> = (1..=3).map(|id| key_of(&plain, "tasks", id)).collect();
    let before = last_log_id(&conn);
    plain
        .execute_batch("REPLACE INTO tasks (id, parent_id, pos, title) VALUES (1, NULL, 9, 'x')")
        .unwrap();
    let mut ops = ops_after(&conn, before);
    ops.sort();
    let mut want = vec![
        op("update", &keys[2]),
        op("delete", &keys[1]),
        op("update", &keys[0]),
    ];
    want.sort();
    assert_eq!(
        ops, want,
        "the child set NULL, row 2 deleted, row 1 replaced"
    );
    assert_eq!(key_of(&plain, "tasks", 1), keys[0]);
}

/// A column declared `COLLATE NOCASE` or `RTRIM` compares a change of case or of trailing spaces
/// equal; the change is still captured, or the server keeps the old text (found by review).
#[test]
fn a_change_of_case_or_trailing_spaces_in_a_collated_column_is_captured() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, email TEXT COLLATE NOCASE UNIQUE,
                             title TEXT COLLATE RTRIM);",
        "'tasks'",
    );
    plain
        .execute_batch("INSERT INTO tasks (id, email, title) VALUES (1, 'Bob@x.com', 'a')")
        .unwrap();
    let key = key_of(&plain, "tasks", 1);
    for (set, field, value) in [
        ("email = 'bob@x.com'", "email", "bob@x.com"),
        ("title = 'a  '", "title", "a  "),
    ] {
        let before = last_log_id(&conn);
        plain
            .execute_batch(&format!("UPDATE tasks SET {set} WHERE id = 1"))
            .unwrap();
        assert_eq!(ops_after(&conn, before), [op("update", &key)], "{set}");
        let payload: Vec<String> = column(
            &conn,
            &format!("SELECT payload ->> '{field}' FROM tether_mutation_logs WHERE id > {before}"),
        );
        assert_eq!(payload, [value], "{set}");
    }
}
