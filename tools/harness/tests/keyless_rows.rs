//! Rows that a write leaves without a key and without a create on a table with keys on insert
//! (a trigger of the application's that moves the new row first, `INSERT OR FAIL` whose trigger
//! fails): the next sync gives them their keys and sends them, once. Each test fails on a build
//! without the fix it covers, but for two guards: tables with keys on sync, and the status of
//! tables this does not look at (which a first version broke).
use tether_harness::server_backed::ServerBacked;
use tether_harness::*;

const TASKS: &str = "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);";

/// Created after tracking, the application's trigger fires before tether's.
const MOVE_NEW_ROWS: &str = "CREATE TRIGGER move_new_rows AFTER INSERT ON tasks WHEN NEW.id < 100
     BEGIN UPDATE tasks SET id = NEW.id + 100 WHERE id = NEW.id; END";

fn keyless(s: &ServerBacked) -> i64 {
    column(
        &s.plain,
        "SELECT count(*) FROM tasks WHERE tether_id IS NULL",
    )[0]
}

/// A sync leaves the server holding the `rows` local rows, each created there once.
fn sync_sends_each_row_once(s: &ServerBacked, rows: usize) {
    s.sync();
    s.assert_converged();
    assert_eq!(s.on_server().len(), rows, "{:?}", s.on_server());
    for entity in s.entities_on_server() {
        assert_eq!(s.applied_to(&entity), 1, "{entity} applied once");
    }
}

#[test]
fn a_row_your_trigger_moves_before_tether_keys_it_reaches_the_server_as_it_is() {
    let s = ServerBacked::new(TASKS, &["tasks"], "{}");
    s.write(MOVE_NEW_ROWS);
    s.write("INSERT INTO tasks (title) VALUES ('a')");
    assert_eq!(keyless(&s), 1, "the write left the row without a key");
    // Not captured either, having no key: the create sent carries it.
    s.write("UPDATE tasks SET title = 'a, edited' WHERE id = 101");
    let status = json(&s.conn, "SELECT tether_status()");
    assert_eq!(status["pending"], 1, "counted before the sync: {status}");
    assert_eq!(status["tables"][0]["pending"], 1, "{status}");
    s.sync();
    assert_eq!(keyless(&s), 0);
    s.assert_converged();
    let key = key_of(&s.plain, "tasks", 101);
    assert_eq!(s.on_server(), [format!("{key}|a, edited")]);
    assert_eq!(s.applied_to(&key), 1, "one create, applied once");
    // Captured from then on, and never queued again.
    s.write("UPDATE tasks SET title = 'b' WHERE id = 101");
    let again = s.sync();
    assert_eq!(again["pushed"], 1, "{again}");
    s.assert_converged();
    assert_eq!(s.applied_to(&key), 2);
    assert_eq!(s.entities_on_server(), [key]);
}

#[test]
fn a_row_insert_or_fail_keeps_after_your_trigger_failed_reaches_the_server() {
    let s = ServerBacked::new(TASKS, &["tasks"], "{}");
    s.write(
        "CREATE TRIGGER refuse AFTER INSERT ON tasks WHEN NEW.title = 'second'
         BEGIN SELECT RAISE(FAIL, 'not that one'); END",
    );
    let error = s
        .plain
        .execute_batch("INSERT OR FAIL INTO tasks (title) VALUES ('first'), ('second'), ('third')")
        .unwrap_err()
        .to_string();
    assert!(error.contains("not that one"), "{error}");
    // FAIL undoes nothing: the row whose trigger failed stays, without a key.
    assert_eq!(s.local().len(), 2, "{:?}", s.local());
    assert_eq!(keyless(&s), 1);
    sync_sends_each_row_once(&s, 2);
}

/// A sync that stopped after queuing such a row (its create logged, `unkeyed`) and before its key
/// pass (an interrupt, a crash): the row still counts as pending, once, and the next sync sends it.
#[test]
fn a_keyless_row_queued_but_not_yet_keyed_counts_as_pending_once() {
    let s = ServerBacked::new(TASKS, &["tasks"], "{}");
    s.write(MOVE_NEW_ROWS);
    s.write("INSERT INTO tasks (title) VALUES ('a')");
    // What the sweep commits before the key pass runs.
    s.write(
        "INSERT INTO tether_mutation_logs (entity_id, model, operation, timestamp, sync_status, locator)
         VALUES ('', 'Task', 'create', 0, 'unkeyed', 101)",
    );
    let status = json(&s.conn, "SELECT tether_status()");
    assert_eq!(status["pending"], 1, "{status}");
    sync_sends_each_row_once(&s, 1);
}

/// A trigger of yours on the UPDATE that writes a new row's key (no `OF` list) inserting into the
/// same table: SQLite does not start tether's insert trigger again while it runs.
#[test]
fn a_row_your_trigger_inserts_while_tether_keys_another_reaches_the_server() {
    let s = ServerBacked::new(TASKS, &["tasks"], "{}");
    s.write(
        "CREATE TRIGGER follow_up AFTER UPDATE ON tasks
          WHEN NEW.title = 'a' AND NOT EXISTS (SELECT 1 FROM tasks WHERE title = 'follow-up of a')
         BEGIN INSERT INTO tasks (title) VALUES ('follow-up of a'); END;
         INSERT INTO tasks (title) VALUES ('a');",
    );
    assert_eq!(keyless(&s), 1, "the follow-up row was not captured");
    sync_sends_each_row_once(&s, 2);
}

/// The key pass writes the key with an UPDATE, which a trigger of the table's own may refuse:
/// that row fails alone, the rest is sent, and a discarded row is never queued again.
#[test]
fn a_keyless_row_whose_key_the_table_refuses_fails_alone_and_stays_discarded() {
    let s = ServerBacked::new(TASKS, &["tasks"], "{}");
    s.write(MOVE_NEW_ROWS);
    s.write(
        "CREATE TRIGGER moved_rows_are_final BEFORE UPDATE OF tether_id ON tasks WHEN OLD.id BETWEEN 100 AND 199
         BEGIN SELECT RAISE(ABORT, 'moved rows are final'); END;
         INSERT INTO tasks (id, title) VALUES (300, 'kept apart');",
    );
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'moved')");
    assert_eq!(keyless(&s), 1);
    let first = s.sync_failing(1);
    let reason = first["rejections"][0]["data"]["message"].to_string();
    assert!(reason.contains("moved rows are final"), "{first}");
    assert_eq!(s.on_server().len(), 1, "the other row is sent");
    let again = s.sync();
    assert_eq!(again["pushed"], 0, "nothing queued again: {again}");
    let discarded = json(&s.conn, "SELECT tether_discard('tasks')");
    assert_eq!(discarded["outcomes"]["left unsynced"], 1, "{discarded}");
    for _ in 0..2 {
        let after = s.sync();
        assert_eq!(
            (after["pushed"].as_i64(), after["failed"].as_i64()),
            (Some(0), Some(0)),
            "{after}"
        );
    }
    let creates: i64 = column(
        &s.plain,
        "SELECT count(*) FROM tether_mutation_logs WHERE entity_id = ''",
    )[0];
    assert_eq!(creates, 1, "the discarded row was queued once");
    let status = json(&s.conn, "SELECT tether_status()");
    assert_eq!(
        (status["failed"].as_i64(), status["pending"].as_i64()),
        (Some(0), Some(0)),
        "a discarded row is not pending: {status}"
    );
}

/// A trigger of the table's own that ignores the key's write (RAISE(IGNORE)) leaves the row
/// without a key after its create went out under one: that row is not sent a second time as
/// another entity (its record says it had a key).
#[test]
fn a_row_whose_key_your_trigger_ignored_is_not_created_twice() {
    let s = ServerBacked::new(TASKS, &["tasks"], "{}");
    s.write(
        "CREATE TRIGGER archived_rows_stay BEFORE UPDATE ON tasks WHEN OLD.title = 'archived'
         BEGIN SELECT RAISE(IGNORE); END;
         INSERT INTO tasks (id, title) VALUES (1, 'archived');",
    );
    assert_eq!(keyless(&s), 1);
    for _ in 0..2 {
        s.sync();
    }
    let creates: i64 = column(
        &s.plain,
        "SELECT count(*) FROM tether_mutation_logs WHERE operation = 'create'",
    )[0];
    assert_eq!(creates, 1, "one create, logged by the insert");
    assert_eq!(s.entities_on_server().len(), 1);
}

/// Row 1 left without a key (INSERT OR FAIL whose trigger failed), its key refused by a trigger
/// of the table's own, its create discarded; pruning takes everything it may at every sync.
fn with_a_discarded_row() -> ServerBacked {
    let s = ServerBacked::new(TASKS, &["tasks"], "{}");
    set_config(&s.conn, "retention_days", "0");
    s.write(
        "CREATE TRIGGER refuse AFTER INSERT ON tasks WHEN NEW.title LIKE 'orphan%'
         BEGIN SELECT RAISE(FAIL, 'refused'); END;
         CREATE TRIGGER no_key_for_it BEFORE UPDATE OF tether_id ON tasks WHEN OLD.title = 'orphan, bad'
         BEGIN SELECT RAISE(ABORT, 'no key for it'); END;",
    );
    let _ = s
        .plain
        .execute_batch("INSERT OR FAIL INTO tasks (id, title) VALUES (1, 'orphan, bad')");
    s.sync_failing(1);
    let discarded = json(&s.conn, "SELECT tether_discard('tasks')");
    assert_eq!(discarded["outcomes"]["left unsynced"], 1, "{discarded}");
    s
}

/// A discarded row stays unsynced after the log is pruned: the discarded create is kept.
#[test]
fn a_discarded_keyless_row_stays_unsynced_after_pruning() {
    let s = with_a_discarded_row();
    for round in 0..3 {
        // A newer row each time: the discarded create is not the log's newest (kept anyway).
        s.write(&format!(
            "INSERT INTO tasks (title) VALUES ('sent {round}')"
        ));
        s.sync();
        if round == 1 {
            s.write("DROP TRIGGER no_key_for_it");
        }
    }
    assert_eq!(s.on_server().len(), 3, "{:?}", s.on_server());
    assert_eq!(keyless(&s), 1, "the discarded row stays local");
}

/// Once a discarded row is deleted its discarded create names nothing: a row given that number
/// later, and left without a key too, is sent (the create goes at the next prune).
#[test]
fn a_new_row_at_a_deleted_discarded_rows_number_is_sent() {
    let s = with_a_discarded_row();
    s.write("DELETE FROM tasks WHERE id = 1");
    s.sync();
    let _ = s
        .plain
        .execute_batch("INSERT OR FAIL INTO tasks (id, title) VALUES (1, 'orphan, good')");
    assert_eq!(keyless(&s), 1);
    s.sync();
    s.assert_converged();
    assert_eq!(s.on_server().len(), 1, "{:?}", s.on_server());
    let discards: i64 = column(
        &s.plain,
        "SELECT count(*) FROM tether_mutation_logs WHERE resolution = 'discarded'",
    )[0];
    assert_eq!(discards, 0, "pruned once it named nothing");
}

/// The syncing connection lacks a function that a trigger of the application's calls on the
/// key's write (the app registers it on its own connection): on a table with keys on insert,
/// where nothing of the application's ran on the syncing connection before, that row fails
/// alone and the rest is sent.
#[test]
fn a_keyless_row_whose_trigger_needs_the_apps_function_fails_alone() {
    let s = ServerBacked::new(TASKS, &["tasks"], "{}");
    s.plain
        .create_scalar_function(
            "app_touch",
            0,
            rusqlite::functions::FunctionFlags::SQLITE_UTF8,
            |_| Ok(1),
        )
        .unwrap();
    s.write(
        "CREATE TRIGGER touch AFTER UPDATE OF tether_id ON tasks BEGIN SELECT app_touch(); END;
         CREATE TRIGGER refuse AFTER INSERT ON tasks WHEN NEW.title = 'second'
         BEGIN SELECT RAISE(FAIL, 'not that one'); END;",
    );
    let _ = s
        .plain
        .execute_batch("INSERT OR FAIL INTO tasks (title) VALUES ('first'), ('second')");
    s.write("INSERT INTO tasks (title) VALUES ('third')");
    let first = s.sync_failing(1);
    let reason = first["rejections"][0]["data"]["message"].to_string();
    assert!(reason.contains("no such function: app_touch"), "{first}");
    assert_eq!(s.on_server().len(), 2, "{:?}", s.on_server());
    let again = s.sync();
    assert_eq!(again["failed"], 0, "listed once: {again}");
}

/// Rows waiting for their keys on a table with keys on sync are not queued twice.
#[test]
fn rows_waiting_for_their_keys_on_sync_are_queued_once() {
    let s = ServerBacked::new(TASKS, &["tasks"], r#"{"keys": "on_sync"}"#);
    s.write("INSERT INTO tasks (title) VALUES ('a'), ('b')");
    sync_sends_each_row_once(&s, 2);
}

/// Tables this does not look at (no INTEGER PRIMARY KEY, WITHOUT ROWID) keep a working status.
#[test]
fn status_counts_tables_without_an_integer_primary_key_as_before() {
    let s = ServerBacked::new(
        "CREATE TABLE tasks (code TEXT PRIMARY KEY, title TEXT) WITHOUT ROWID;
         CREATE TABLE notes (code TEXT PRIMARY KEY, body TEXT);",
        &["tasks", "notes"],
        "{}",
    );
    s.write(
        "INSERT INTO tasks (code, title) VALUES ('a', 'a');
         INSERT INTO notes (code, body) VALUES ('n', 'n');",
    );
    let status = json(&s.conn, "SELECT tether_status()");
    assert_eq!(status["pending"], 2, "{status}");
}
