//! tether_track / tether_untrack: schema changes, backfill, re-tracking, odd tables.
use serde_json::json;
use tether_harness::*;

#[test]
fn existing_rows_get_keys_and_are_queued_as_creates() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE order_items (id INTEGER PRIMARY KEY, sku TEXT, qty INTEGER);
         INSERT INTO order_items (sku, qty) VALUES ('A', 1), ('B', 2), ('C', 3);",
    )
    .unwrap();
    let result = json(&conn, "SELECT tether_track('order_items')");
    assert_eq!(result["model"], "OrderItem");
    assert_eq!(result["sync_key_added"], true);
    assert_eq!(result["keys_assigned"], 3);
    assert_eq!(result["queued_creates"], 3);
    assert_eq!(result["columns"], json!(["sku", "qty"]));
    give_identities(&path);
    let log = mutations(&conn);
    assert_eq!(log.len(), 3);
    let keys: Vec<String> = column(&conn, "SELECT tether_id FROM order_items ORDER BY id");
    for (m, key) in log.iter().zip(&keys) {
        assert!(is_ulid(key));
        assert_eq!(
            (&m.entity_id, m.operation.as_str(), m.version),
            (key, "create", Some(1))
        );
    }
    assert_eq!(log[1].payload, json!({"sku": "B", "qty": 2}));
    let unique: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_index_list('order_items') WHERE \"unique\" = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unique, 1, "the sync key has a unique index");
}

#[test]
fn backfill_false_keys_rows_without_queueing() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO tasks (title) VALUES ('old');").unwrap();
    let result = json(
        &conn,
        r#"SELECT tether_track('tasks', '{"backfill": false}')"#,
    );
    assert_eq!(
        (
            result["keys_assigned"].as_i64(),
            result["queued_creates"].as_i64()
        ),
        (Some(1), Some(0))
    );
    assert!(mutations(&conn).is_empty());
}

#[test]
fn retracking_is_idempotent_and_picks_up_added_columns() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO tasks (title) VALUES ('a');").unwrap();
    json(&conn, "SELECT tether_track('tasks')");
    let again = json(&conn, "SELECT tether_track('tasks')");
    assert_eq!(
        (
            again["retracked"].as_bool(),
            again["queued_creates"].as_i64()
        ),
        (Some(true), Some(0))
    );
    assert_eq!(
        mutations(&conn).len(),
        1,
        "re-tracking queues nothing twice"
    );

    // Another connection adds a column and fills it before anything of tether runs again: the
    // old triggers do not watch the new column, so the repair must queue what was written.
    let plain = open_plain(&path);
    plain
        .execute_batch(
            "ALTER TABLE tasks ADD COLUMN notes TEXT; UPDATE tasks SET notes = 'remember';",
        )
        .unwrap();
    let status = json(&conn, "SELECT tether_status()");
    let table = &status["tables"][0];
    assert_eq!(table["columns"], json!(["title", "notes"]), "{status}");
    assert_eq!(table["state"], "ok", "{status}");
    assert_eq!(table["columns_changed"], false);
    let log = mutations(&conn);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1].operation, "update");
    assert_eq!(log[1].payload, json!({"title": "a", "notes": "remember"}));

    plain
        .execute("UPDATE tasks SET notes = 'again'", [])
        .unwrap();
    let log = mutations(&conn);
    assert_eq!(
        log.last().unwrap().payload,
        json!({"title": "a", "notes": "again"}),
        "the repaired triggers watch the new column"
    );
}

#[test]
fn retracking_without_options_keeps_the_earlier_ones() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, local_note TEXT);")
        .unwrap();
    json(
        &conn,
        r#"SELECT tether_track('tasks', '{"except": ["local_note"], "model": "Todo"}')"#,
    );
    let again = json(&conn, "SELECT tether_track('tasks')");
    assert_eq!(
        (again["model"].clone(), again["columns"].clone()),
        (json!("Todo"), json!(["title"]))
    );
    conn.execute(
        "INSERT INTO tasks (title, local_note) VALUES ('t', 'private')",
        [],
    )
    .unwrap();
    conn.execute("UPDATE tasks SET local_note = 'still private'", [])
        .unwrap();
    let log = mutations(&conn);
    assert_eq!(log.len(), 1, "changing an excluded column queues nothing");
    assert_eq!(
        (log[0].model.as_str(), log[0].payload.clone()),
        ("Todo", json!({"title": "t"}))
    );
}

#[test]
fn columns_option_selects_and_validates() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, status TEXT, secret TEXT);",
    )
    .unwrap();
    for (options, expect) in [
        (r#"{"columns": ["nope"]}"#, "no column \"nope\""),
        (r#"{"columns": ["id"]}"#, "INTEGER PRIMARY KEY"),
        (
            r#"{"columns": ["title"], "except": ["status"]}"#,
            "not both",
        ),
        (r#"{"colums": ["title"]}"#, "colums"),
        ("not json", "JSON"),
    ] {
        let err = error_of(&conn, &format!("SELECT tether_track('tasks', '{options}')"));
        assert!(err.contains(expect), "{options}: {err}");
    }
    assert!(mutations(&conn).is_empty());
    let cols: i64 = conn
        .query_row("SELECT count(*) FROM pragma_table_info('tasks')", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(cols, 4, "a refused track leaves the table as it was");
    let result = json(
        &conn,
        r#"SELECT tether_track('tasks', '{"columns": ["status", "title"]}')"#,
    );
    assert_eq!(result["columns"], json!(["status", "title"]));
}

#[test]
fn hostile_identifiers_work() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        r#"CREATE TABLE "my ""odd"" tâble" ("select" INTEGER PRIMARY KEY, "it's" TEXT, "a b" TEXT, "ключ" TEXT, "order" INTEGER);"#,
    )
    .unwrap();
    let result = json(&conn, r#"SELECT tether_track('my "odd" tâble')"#);
    assert_eq!(result["columns"], json!(["it's", "a b", "ключ", "order"]));
    conn.execute(r#"INSERT INTO "my ""odd"" tâble" ("it's", "a b", "ключ", "order") VALUES ('x', 'y', 'z', 1)"#, []).unwrap();
    conn.execute(r#"UPDATE "my ""odd"" tâble" SET "order" = 2"#, [])
        .unwrap();
    conn.execute(r#"DELETE FROM "my ""odd"" tâble""#, [])
        .unwrap();
    let log = mutations(&conn);
    assert_eq!(log.len(), 3);
    assert_eq!(
        log[1].payload,
        json!({"it's": "x", "a b": "y", "ключ": "z", "order": 2})
    );
    json(&conn, r#"SELECT tether_untrack('my "odd" tâble')"#);
}

#[test]
fn without_rowid_and_keyless_tables_are_tracked() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
         CREATE TABLE events (happened_at TEXT, what TEXT);
         SELECT tether_track('settings'); SELECT tether_track('events');
         INSERT INTO settings (name, value) VALUES ('theme', 'dark');
         INSERT INTO events (happened_at, what) VALUES ('now', 'opened');
         UPDATE settings SET value = 'light';",
    )
    .unwrap();
    let keyed: i64 = conn
        .query_row("SELECT (SELECT count(*) FROM settings WHERE tether_id IS NOT NULL) + (SELECT count(*) FROM events WHERE tether_id IS NOT NULL)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keyed, 2);
    let log = mutations(&conn);
    assert_eq!(
        log.iter()
            .map(|m| (m.model.as_str(), m.operation.as_str()))
            .collect::<Vec<_>>(),
        [
            ("Setting", "create"),
            ("Event", "create"),
            ("Setting", "update")
        ]
    );
    assert_eq!(
        log[0].payload,
        json!({"name": "theme", "value": "dark"}),
        "a primary key that carries data syncs: a pulled row could not be written without it"
    );
    assert_eq!(
        log[1].payload,
        json!({"happened_at": "now", "what": "opened"}),
        "keyless table syncs every column"
    );
}

#[test]
fn untrackable_things_fail_clearly() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE VIEW open_tasks AS SELECT * FROM tasks;
         CREATE VIRTUAL TABLE docs USING fts5(body);
         CREATE TABLE dupes (id INTEGER PRIMARY KEY, tether_id TEXT); INSERT INTO dupes (tether_id) VALUES ('X'), ('X');",
    )
    .unwrap();
    for (call, expect) in [
        ("tether_track('nope')", "no such table"),
        ("tether_track('open_tasks')", "is a view"),
        ("tether_track('docs')", "virtual table"),
        ("tether_track('tether_mutation_logs')", "internal table"),
        ("tether_track('dupes')", "duplicate values"),
        ("tether_track(NULL)", "NULL"),
        ("tether_untrack('tasks')", "not tracked"),
    ] {
        let err = error_of(&conn, &format!("SELECT {call}"));
        assert!(err.contains(expect), "{call}: {err}");
    }
    json(&conn, "SELECT tether_track('tasks')");
    conn.execute_batch("CREATE TABLE other (id INTEGER PRIMARY KEY, x TEXT)")
        .unwrap();
    let err = error_of(
        &conn,
        r#"SELECT tether_track('other', '{"model": "Task"}')"#,
    );
    assert!(err.contains("already used"), "{err}");
}

#[test]
fn untrack_stops_capture_and_keeps_data() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks'); INSERT INTO tasks (title) VALUES ('a');").unwrap();
    let result = json(&conn, "SELECT tether_untrack('tasks')");
    assert_eq!(
        (result["untracked"].as_bool(), result["pending"].as_i64()),
        (Some(true), Some(1))
    );
    conn.execute("INSERT INTO tasks (title) VALUES ('b')", [])
        .unwrap();
    assert_eq!(mutations(&conn).len(), 1);
    let keyed: i64 = conn
        .query_row("SELECT count(tether_id) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keyed, 1, "the sync key column and its values stay");
    assert_eq!(json(&conn, "SELECT tether_status()")["tables"], json!([]));
}

#[test]
fn status_counts_and_reports_missing_triggers() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks');
         INSERT INTO tasks (title) VALUES ('a'), ('b'), ('c');
         UPDATE tether_mutation_logs SET sync_status = 'failed' WHERE id = 1;
         UPDATE tether_mutation_logs SET sync_status = 'conflict' WHERE id = 2;
         INSERT INTO tether_sync_state (key, value) VALUES ('last_sync_cursor', '1764072005456000');",
    )
    .unwrap();
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(
        (
            status["pending"].as_i64(),
            status["failed"].as_i64(),
            status["conflicts"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(status["last_sync_cursor"], 1764072005456000i64);
    assert_eq!(status["tables"][0]["pending"], 1);
    assert_eq!(status["tables"][0]["triggers_installed"], true);
    conn.execute_batch("DROP TRIGGER tether_update_tasks")
        .unwrap();
    // Inside the caller's transaction status only reports; in autocommit it repairs.
    conn.execute_batch("BEGIN").unwrap();
    let inside = json(&conn, "SELECT tether_status()");
    conn.execute_batch("COMMIT").unwrap();
    assert_eq!(inside["tables"][0]["triggers_installed"], false);
    assert_eq!(inside["tables"][0]["state"], "needs_repair");
    let repaired = json(&conn, "SELECT tether_status()");
    assert_eq!(repaired["tables"][0]["triggers_installed"], true);
    assert_eq!(repaired["tables"][0]["state"], "ok");
}

#[test]
fn options_given_again_change_what_they_name_and_forget_columns_gone_since() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, body TEXT, tags TEXT);",
    )
    .unwrap();
    json(
        &conn,
        r#"SELECT tether_track('notes', '{"model": "Memo", "json": ["tags"], "except": ["body"]}')"#,
    );
    let result = json(
        &conn,
        r#"SELECT tether_track('notes', '{"backfill": false}')"#,
    );
    assert_eq!(result["model"], "Memo", "{result}");
    assert_eq!(result["columns"], json!(["title", "tags"]), "{result}");
    assert_eq!(result["json_columns"], json!(["tags"]), "{result}");
    // A renamed column: tracking asks for options naming the columns now, and those work.
    conn.execute_batch("ALTER TABLE notes RENAME COLUMN tags TO labels")
        .unwrap();
    let result = json(
        &conn,
        r#"SELECT tether_track('notes', '{"except": ["body"]}')"#,
    );
    assert_eq!(result["model"], "Memo", "{result}");
    assert_eq!(result["columns"], json!(["title", "labels"]), "{result}");
}
