//! Second adversarial review of capture, repair and apply: each test is a write path, schema
//! or sequence where a committed change must reach the server once, as the entity the user
//! means, with the value the user wrote. Each fails at the commit it was written against.
use serde_json::json;
use tether_harness::*;

const SERVER_KEY: &str = "01J00000000000000000000000";

/// A table without other UNIQUE constraints: the REPLACE watch (BEFORE INSERT) runs only for
/// inserts that give a key, and the notes it leaves when the row is not written (INSERT OR
/// IGNORE, an upsert's DO UPDATE) are cleared only by the next AFTER INSERT. UPDATE OR REPLACE
/// of the primary key then deletes the noted row (its delete is logged by the rekey trigger,
/// but the note stays), and the next insert without a key — which runs no BEFORE trigger —
/// takes the deleted entity's key from the stale note: an `update` of an entity the server was
/// just told to delete (not_found there; the new row never arrives).
#[test]
fn a_note_left_by_an_ignored_insert_never_gives_a_new_row_a_deleted_entitys_key() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);",
        "'tasks'",
    );
    plain
        .execute_batch("INSERT INTO tasks (title) VALUES ('a'), ('b')")
        .unwrap();
    let (a, b) = (key_of(&plain, "tasks", 1), key_of(&plain, "tasks", 2));
    plain
        .execute(
            "INSERT OR IGNORE INTO tasks (id, title, tether_id) VALUES (9, 'dup', ?1)",
            [&a],
        )
        .unwrap();
    let before = last_log_id(&conn);
    plain
        .execute_batch("UPDATE OR REPLACE tasks SET id = 1 WHERE id = 2")
        .unwrap();
    assert_eq!(key_of(&plain, "tasks", 1), b);
    assert_eq!(ops_after(&conn, before), [op("delete", &a)]);
    assert_writes_a_new_entity(
        &conn,
        &plain,
        "INSERT INTO tasks (title) VALUES ('brand new')",
        "tasks",
        2,
        &a,
    );
}

/// The same stale note, consumed by a pulled row instead: the AFTER INSERT trigger drops the
/// tether_row_keys records of noted rows whose key no row holds, without asking whether its
/// BEFORE trigger ran (it does not under capture suppression). The record it drops is now the
/// record of the live row that moved to that primary key. A later REPLACE by that primary key
/// no longer finds the row's key: it logs a `create` of a new entity, and the replaced entity,
/// never deleted, stays on the server next to it (a duplicate).
#[test]
fn a_pulled_row_never_drops_the_key_record_of_a_live_row() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);",
        "'tasks'",
    );
    plain
        .execute_batch("INSERT INTO tasks (title) VALUES ('a'), ('b')")
        .unwrap();
    let (a, b) = (key_of(&plain, "tasks", 1), key_of(&plain, "tasks", 2));
    plain
        .execute(
            "INSERT INTO tasks (id, title, tether_id) VALUES (1, 'a', ?1)
             ON CONFLICT (id) DO UPDATE SET title = excluded.title",
            [&a],
        )
        .unwrap();
    plain
        .execute_batch("UPDATE OR REPLACE tasks SET id = 1 WHERE id = 2")
        .unwrap();
    let result = apply_snapshots(
        &conn,
        &[(
            SERVER_KEY,
            "Task",
            "create",
            json!({"title": "from the server"}),
        )],
    );
    assert_eq!(result["pulled"], 1, "{result}");
    let before = last_log_id(&conn);
    plain
        .execute_batch("INSERT OR REPLACE INTO tasks (id, title) VALUES (1, 'b edited')")
        .unwrap();
    assert_eq!(
        ops_after(&conn, before),
        [op("update", &b)],
        "the row at id 1 is entity b; it must stay b (the server would hold b and a copy)"
    );
    assert_eq!(key_of(&plain, "tasks", 1), b);
}

/// A TEXT primary key declared COLLATE NOCASE: 'red' replaces 'Red'. tether_row_keys is keyed
/// by quote() of the key, which is case-sensitive, so the replacing row finds no record: it is
/// logged as the `create` of a new entity and the replaced one vanishes without a `delete`:
/// the server holds both rows, two entities with one primary key value.
#[test]
fn replace_through_a_nocase_primary_key_keeps_the_entity() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tags (code TEXT PRIMARY KEY COLLATE NOCASE, label TEXT);",
        "'tags'",
    );
    plain
        .execute_batch("INSERT INTO tags (code, label) VALUES ('Red', 'first')")
        .unwrap();
    let first: String = plain
        .query_row("SELECT tether_id FROM tags", [], |r| r.get(0))
        .unwrap();
    plain
        .execute_batch("INSERT OR REPLACE INTO tags (code, label) VALUES ('red', 'second')")
        .unwrap();
    let now: String = plain
        .query_row("SELECT tether_id FROM tags", [], |r| r.get(0))
        .unwrap();
    let ops = ops_after(&conn, 1);
    let kept_entity = now == first && ops == [op("update", &first)];
    let deleted_then_created = ops == [op("delete", &first), op("create", &now)];
    assert!(
        kept_entity || deleted_then_created,
        "entity {first} vanished locally without a delete: {ops:?}"
    );
}

/// A UNIQUE generated column: UPDATE OR REPLACE of the column it is computed from deletes the
/// row that held the generated value. The update watch is `BEFORE UPDATE OF <generated>`,
/// which an UPDATE setting only the source column never fires: no `delete` is logged, and the
/// server keeps two rows with one unique value.
#[test]
fn update_or_replace_through_a_unique_generated_column_captures_the_delete() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT,
                             email_key TEXT GENERATED ALWAYS AS (lower(email)) VIRTUAL UNIQUE);",
        "'users'",
    );
    plain
        .execute_batch("INSERT INTO users (email) VALUES ('a@x.io'), ('b@x.io')")
        .unwrap();
    let (first, second) = (key_of(&plain, "users", 1), key_of(&plain, "users", 2));
    let before = last_log_id(&conn);
    plain
        .execute_batch("UPDATE OR REPLACE users SET email = 'A@X.IO' WHERE id = 2")
        .unwrap();
    let keys: Vec<String> = column(&plain, "SELECT tether_id FROM users");
    assert_eq!(keys, vec![second.clone()], "REPLACE deleted row 1");
    assert_eq!(
        ops_after(&conn, before),
        [op("delete", &first), op("update", &second)]
    );
}

/// A snapshot pulled into a table whose UNIQUE column is declared ON CONFLICT REPLACE deletes
/// the local row holding that value (no trigger sees it: capture is suppressed and REPLACE
/// fires no delete trigger). Its tether_row_keys record stays, so the next row written at its
/// primary key takes the vanished entity's key and is sent as an `update` of that entity
/// instead of the `create` of a new one.
#[test]
fn a_row_a_pulled_snapshot_replaced_leaves_no_key_for_a_later_row() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT,
                             slug TEXT UNIQUE ON CONFLICT REPLACE);",
        "'tasks'",
    );
    plain
        .execute_batch("INSERT INTO tasks (title, slug) VALUES ('a', 'a'), ('b', 'b')")
        .unwrap();
    let b = key_of(&plain, "tasks", 2);
    let result = apply_snapshots(
        &conn,
        &[(
            SERVER_KEY,
            "Task",
            "create",
            json!({"title": "server", "slug": "b"}),
        )],
    );
    assert_eq!(result["pulled"], 1, "{result}");
    assert_writes_a_new_entity(
        &conn,
        &plain,
        "INSERT INTO tasks (id, title, slug) VALUES (2, 'new row', 'c')",
        "tasks",
        2,
        &b,
    );
}

/// A REAL column holding infinity (1e999, an overflowing computation): the payload carries
/// 9.0e+999, which no JSON parser reads as a number. It is not caught locally (RawValue checks
/// the syntax only), so every push body is refused by the server (HTTP 422) and nothing ever
/// syncs again. README: a value that cannot be sent fails alone and later mutations go on.
#[test]
fn an_infinite_real_fails_alone_and_the_queue_goes_on() {
    let server = Server::start(&[]);
    let (_dir, _path, conn) = synced_client(&server);
    conn.execute_batch(
        "ALTER TABLE tasks ADD COLUMN ratio REAL;
         SELECT tether_status();
         INSERT INTO tasks (title, ratio) VALUES ('overflowed', 1e999);
         INSERT INTO tasks (title, ratio) VALUES ('fine', 1.5);",
    )
    .unwrap();
    let result: Result<String, _> = conn.query_row("SELECT tether_sync()", [], |r| r.get(0));
    let titles = server.field_of_rows(&conn, "title");
    assert!(
        titles.contains(&json!("fine")),
        "the sendable row reaches the server; sync: {result:?}"
    );
}

/// tether_status() is not DIRECTONLY and repairs drifted tables when the connection is in
/// autocommit mode, which it still is while a statement of the user's runs. Called inside an
/// ordinary INSERT (an app keeping a health log) after a migration rebuilt a tracked table, the
/// repair's BEGIN/COMMIT/ROLLBACK runs inside that statement: the user's INSERT fails with
/// "abort due to ROLLBACK".
#[test]
fn status_inside_a_users_insert_never_fails_that_insert() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TABLE health_log (status TEXT);",
        "'tasks'",
    );
    plain
        .execute_batch(
            "INSERT INTO tasks (title) VALUES ('a');
             CREATE TABLE tasks_new (id INTEGER PRIMARY KEY, title TEXT);
             INSERT INTO tasks_new (id, title) SELECT id, title FROM tasks;
             DROP TABLE tasks;
             ALTER TABLE tasks_new RENAME TO tasks;",
        )
        .unwrap();
    conn.execute("INSERT INTO health_log (status) SELECT tether_status()", [])
        .expect("the user's insert succeeds");
    let logged: Vec<String> = column(&conn, "SELECT status FROM health_log");
    assert_eq!(logged.len(), 1);
}

/// The common "touch updated_at" trigger (AFTER UPDATE … WHEN NEW.updated_at IS
/// OLD.updated_at). tether gives a new row its key with an UPDATE inside its AFTER INSERT
/// trigger, before it logs the create: that UPDATE fires the user's trigger, whose write is
/// captured as an `update` of the entity, logged before its `create`. The server gets an
/// update for an entity it does not have (rejected not_found: a failed mutation).
#[test]
fn a_touch_trigger_never_makes_an_update_precede_the_create() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, updated_at TEXT DEFAULT 'new');
         CREATE TRIGGER tasks_touch AFTER UPDATE ON tasks
          WHEN NEW.updated_at IS OLD.updated_at
         BEGIN UPDATE tasks SET updated_at = 'touched' WHERE id = OLD.id; END;",
        "'tasks'",
    );
    plain
        .execute_batch("INSERT INTO tasks (title) VALUES ('a')")
        .unwrap();
    let key = key_of(&plain, "tasks", 1);
    let ops = ops_after(&conn, 0);
    assert_eq!(
        ops.first(),
        Some(&op("create", &key)),
        "an entity's first mutation is its create: {ops:?}"
    );
}

/// An append-only table (a ledger, an audit log) guarded by BEFORE UPDATE … RAISE(ABORT) cannot
/// take tether's key assignment, which is an UPDATE of the new row: README tells such
/// applications to give the key in the INSERT, and that works, from any connection.
#[test]
fn an_append_only_table_is_captured_when_its_inserts_give_the_key() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL);
         CREATE TRIGGER ledger_immutable BEFORE UPDATE ON ledger
         BEGIN SELECT RAISE(ABORT, 'ledger rows are immutable'); END;",
        "'ledger'",
    );
    let err = plain
        .execute_batch("INSERT INTO ledger (amount) VALUES (5)")
        .unwrap_err()
        .to_string();
    assert!(err.contains("immutable"), "{err}");
    let key = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    plain
        .execute(
            "INSERT INTO ledger (amount, tether_id) VALUES (5, ?1)",
            [key],
        )
        .expect("an insert that gives its key");
    assert_eq!(ops_after(&conn, 0), [op("create", key)]);
}

/// tether removes every trigger on a tracked table whose name starts with "tether_", taking
/// the application's own `tether_audit` trigger for one of its own: tracking the table
/// silently drops it (and so does every repair).
#[test]
fn tracking_keeps_the_users_own_triggers_whatever_their_names() {
    let (_dir, _path, _conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TABLE audit (message TEXT);
         CREATE TRIGGER tether_audit AFTER INSERT ON tasks
         BEGIN INSERT INTO audit (message) VALUES ('inserted ' || NEW.title); END;",
        "'tasks'",
    );
    plain
        .execute_batch("INSERT INTO tasks (title) VALUES ('a')")
        .unwrap();
    let audit: Vec<String> = column(&plain, "SELECT message FROM audit");
    assert_eq!(
        audit,
        ["inserted a"],
        "the application's trigger still runs"
    );
}

/// A JSON column (CHECK json_valid) holding the number 18446744073709551615 (a u64, as JSON
/// allows): pulled, the value is written as the REAL 1.8446744073709552e19 (serde's u64 goes
/// through as_f64), so the device holds, and sends back on its next edit, another number.
#[test]
fn a_large_json_number_is_pulled_as_written() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT CHECK (json_valid(body)));",
        "'docs'",
    );
    let page = format!(
        r#"{{"snapshots": [{{"entity_id": "{SERVER_KEY}", "model": "Doc", "operation": "create",
             "payload": {{"body": 18446744073709551615}}}}], "new_sync_cursor": 1, "has_more": false}}"#
    );
    let result = json(&conn, &format!("SELECT tether_pull_response('{page}')"));
    assert_eq!(result["pulled"], 1, "{result}");
    let body: String = plain
        .query_row("SELECT CAST(body AS TEXT) FROM docs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(body, "18446744073709551615");
}

/// An application trigger that gives new rows their key itself (created after tether_track, so
/// it runs first): tether keeps that key rather than overwriting it, which the key guard would
/// refuse, failing the user's insert.
#[test]
fn a_key_given_by_the_users_own_trigger_is_kept() {
    let (_dir, _path, conn, plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);",
        "'tasks'",
    );
    plain
        .execute_batch(
            "CREATE TRIGGER app_keys AFTER INSERT ON tasks WHEN NEW.tether_id IS NULL
             BEGIN UPDATE tasks SET tether_id = '01ARZ3NDEKTSV4RRFFQ69G5F' || printf('%02d', NEW.id) WHERE id = NEW.id; END;
             INSERT INTO tasks (title) VALUES ('a');",
        )
        .expect("the insert succeeds");
    let key = key_of(&plain, "tasks", 1);
    assert_eq!(key, "01ARZ3NDEKTSV4RRFFQ69G5F01");
    assert_eq!(ops_after(&conn, 0), [op("create", &key)]);
}
