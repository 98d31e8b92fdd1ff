//! A captured DELETE leaves the row's `tether_row_keys` record (dropping it is one more page per
//! commit); tether drops the record when it next indexes the queue. Until then no trigger may take
//! that record for a row a REPLACE just deleted: a row written at that primary key, by INSERT or by
//! moving another row there, is its own entity, and a rebuild in between still gives the rows it
//! copied their keys back. Every case runs with keys given on insert and on sync, on a table with
//! and without a UNIQUE column (their BEFORE triggers differ). Writes come from connections that
//! never loaded tether, with no write of tether's in between; outcomes are checked against the
//! server's own table and its record of applied mutations.
use tether_harness::server_backed::{ServerBacked, ON_SYNC};
use tether_harness::{column, key_of};

const KEYS_ON_INSERT: &str = "{}";
const WITH_UNIQUE: &str =
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);";
const PLAIN: &str = "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);";

/// Each way of tracking `tasks` the triggers differ by.
fn each_setup(case: impl Fn(&ServerBacked, &str)) {
    for options in [KEYS_ON_INSERT, ON_SYNC] {
        for schema in [WITH_UNIQUE, PLAIN] {
            let s = ServerBacked::new(schema, &["tasks"], options);
            case(&s, &format!("{options} {schema}"));
        }
    }
}

/// The rebuild of `ServerBacked::rebuild_without_the_key_column`, from the schema `each_setup`
/// named in `setup`.
fn rebuild_without_the_key_column(s: &ServerBacked, setup: &str) {
    s.rebuild_without_the_key_column(if setup.contains("UNIQUE") {
        WITH_UNIQUE
    } else {
        PLAIN
    });
}

#[test]
fn a_row_inserted_where_a_deleted_row_was_is_a_new_entity() {
    each_setup(|s, setup| {
        s.write("INSERT INTO tasks (id, title) VALUES (1, 'one'), (2, 'two'), (3, 'three')");
        s.sync();
        let (k2, k3) = (key_of(&s.plain, "tasks", 2), key_of(&s.plain, "tasks", 3));
        // An explicit primary key, then the rowid SQLite reuses after the newest row is deleted.
        s.write(
            "DELETE FROM tasks WHERE id = 2;
             INSERT INTO tasks (id, title) VALUES (2, 'new two');
             DELETE FROM tasks WHERE id = 3;
             INSERT INTO tasks (title) VALUES ('new three');",
        );
        assert_eq!(
            column::<i64>(&s.plain, "SELECT id FROM tasks ORDER BY id"),
            [1, 2, 3]
        );
        s.sync();
        s.assert_converged();
        for (id, old) in [(2, &k2), (3, &k3)] {
            assert_ne!(
                &key_of(&s.plain, "tasks", id),
                old,
                "{setup}: row {id} is a new entity"
            );
            assert!(s.deleted_on_server(old), "{setup}: {old} deleted");
            assert_eq!(
                s.applied_to(old),
                2,
                "{setup}: {old} created and deleted, once each"
            );
            assert_eq!(s.deletes_logged(old), 1, "{setup}");
        }
        assert_eq!(s.entities_on_server().len(), 5, "{setup}");
    });
}

#[test]
fn a_row_moved_onto_a_deleted_rows_primary_key_deletes_that_entity_once() {
    each_setup(|s, setup| {
        s.write("INSERT INTO tasks (id, title) VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')");
        s.sync();
        let keys: Vec<String> = (1..=4).map(|id| key_of(&s.plain, "tasks", id)).collect();
        s.write(
            "DELETE FROM tasks WHERE id = 2;
             UPDATE tasks SET id = 2 WHERE id = 1;
             UPDATE OR REPLACE tasks SET id = 4 WHERE id = 3;",
        );
        s.sync();
        s.assert_converged();
        assert_eq!(
            key_of(&s.plain, "tasks", 2),
            keys[0],
            "{setup}: the moved row keeps its entity"
        );
        assert_eq!(key_of(&s.plain, "tasks", 4), keys[2], "{setup}");
        for gone in [&keys[1], &keys[3]] {
            assert!(s.deleted_on_server(gone), "{setup}: {gone} deleted");
            assert_eq!(s.deletes_logged(gone), 1, "{setup}: one delete of {gone}");
            assert_eq!(s.applied_to(gone), 2, "{setup}");
        }
    });
}

/// A row waiting for its key (keys on sync) where a deleted row was, then moved: the deleted
/// row's record must not travel with it and give it the deleted entity's key.
#[test]
fn a_waiting_row_moved_from_where_a_deleted_row_was_is_a_new_entity() {
    for schema in [WITH_UNIQUE, PLAIN] {
        let s = ServerBacked::new(schema, &["tasks"], ON_SYNC);
        s.write("INSERT INTO tasks (id, title) VALUES (1, 'one'), (3, 'three')");
        s.sync();
        let k3 = key_of(&s.plain, "tasks", 3);
        s.write(
            "DELETE FROM tasks WHERE id = 3;
             INSERT INTO tasks (id, title) VALUES (3, 'waiting');
             UPDATE tasks SET id = 9 WHERE id = 3;",
        );
        s.sync();
        s.assert_converged();
        assert_ne!(key_of(&s.plain, "tasks", 9), k3, "{schema}");
        assert!(s.deleted_on_server(&k3), "{schema}");
        assert_eq!(s.applied_to(&k3), 2, "{schema}");
    }
}

/// What the BEFORE INSERT trigger notes for a primary key that is there: an upsert's DO UPDATE
/// and OR IGNORE leave the row (and its entity), REPLACE puts a row in its place that takes the
/// entity over.
#[test]
fn upserts_ignores_and_replaces_by_primary_key_keep_the_entity() {
    each_setup(|s, setup| {
        s.write("INSERT INTO tasks (id, title) VALUES (1, 'one')");
        s.sync();
        let k1 = key_of(&s.plain, "tasks", 1);
        s.write(
            "INSERT INTO tasks (id, title) VALUES (1, 'upserted')
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title;
             INSERT OR IGNORE INTO tasks (id, title) VALUES (1, 'ignored');
             INSERT INTO tasks (title) VALUES ('two');
             INSERT OR REPLACE INTO tasks (id, title) VALUES (1, 'replaced');",
        );
        assert_eq!(
            key_of(&s.plain, "tasks", 1),
            k1,
            "{setup}: REPLACE took the entity over"
        );
        s.sync();
        s.assert_converged();
        assert_eq!(s.entities_on_server().len(), 2, "{setup}");
        assert_eq!(s.deletes_logged(&k1), 0, "{setup}");
        assert!(s.on_server().contains(&format!("{k1}|replaced")), "{setup}");
    });
}

/// A tool rebuilds the table without the sync key column after most rows were deleted: the rows
/// it copied get their own keys back (not new ones, which the server would take for new rows).
#[test]
fn a_rebuild_after_most_rows_were_deleted_gives_the_rest_their_keys_back() {
    each_setup(|s, setup| {
        s.write(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
             INSERT INTO tasks (id, title) SELECT i, 'row ' || i FROM n;",
        );
        s.sync();
        let kept: Vec<String> = (7..=10).map(|id| key_of(&s.plain, "tasks", id)).collect();
        s.write("DELETE FROM tasks WHERE id <= 6");
        rebuild_without_the_key_column(s, setup);
        s.sync();
        let now: Vec<String> = (7..=10).map(|id| key_of(&s.plain, "tasks", id)).collect();
        assert_eq!(now, kept, "{setup}: the copied rows keep their entities");
        s.assert_converged();
        assert_eq!(
            s.entities_on_server().len(),
            10,
            "{setup}: no entity created twice"
        );
    });
}

/// A row written where a deleted row was, by a statement with its own conflict clause (Room's
/// `@Insert` is `INSERT OR ABORT`): the clause also governs the statements of the triggers it
/// starts, so the record the delete left must not make the write fail or stay in its place.
#[test]
fn a_row_written_with_a_conflict_clause_where_a_deleted_row_was_is_kept_with_its_key() {
    for verb in [
        "INSERT OR ABORT",
        "INSERT OR FAIL",
        "INSERT OR ROLLBACK",
        "INSERT OR IGNORE",
    ] {
        each_setup(|s, setup| {
            s.write("INSERT INTO tasks (id, title) VALUES (1, 'one'), (2, 'two')");
            s.sync();
            let k2 = key_of(&s.plain, "tasks", 2);
            s.write(&format!(
                "DELETE FROM tasks WHERE id = 2; {verb} INTO tasks (title) VALUES ('new two');"
            ));
            s.sync();
            let new = key_of(&s.plain, "tasks", 2);
            assert_ne!(new, k2, "{verb} {setup}");
            // The new row's record is what a rebuild gives its key back from.
            rebuild_without_the_key_column(s, setup);
            s.sync();
            assert_eq!(key_of(&s.plain, "tasks", 2), new, "{verb} {setup}");
            s.assert_converged();
            assert_eq!(
                s.entities_on_server().len(),
                3,
                "{verb} {setup}: none created twice"
            );
        });
    }
}

/// With keys on sync, the application gives a waiting row its key with `UPDATE OR ABORT` where a
/// deleted row's record still is.
#[test]
fn a_key_given_with_a_conflict_clause_where_a_deleted_row_was_is_kept() {
    for schema in [WITH_UNIQUE, PLAIN] {
        let s = ServerBacked::new(schema, &["tasks"], ON_SYNC);
        s.write("INSERT INTO tasks (title) VALUES ('one'), ('two')");
        s.sync();
        let key: String = s
            .conn
            .query_row("SELECT tether_ulid()", [], |r| r.get(0))
            .unwrap();
        s.write("DELETE FROM tasks WHERE id = 2; INSERT INTO tasks (title) VALUES ('waiting');");
        s.plain
            .execute(
                "UPDATE OR ABORT tasks SET tether_id = ?1 WHERE id = 2",
                [&key],
            )
            .unwrap();
        s.sync();
        assert_eq!(key_of(&s.plain, "tasks", 2), key, "{schema}");
        s.assert_converged();
        assert_eq!(s.applied_to(&key), 1, "{schema}");
    }
}

/// A row deleted and put back with its own key and primary key (an undo; an ORM's save as DELETE
/// and INSERT; REPLACE of the whole row with recursive triggers on, which fires the delete
/// trigger): its record is the row's again, and a rebuild gives the row its key back.
#[test]
fn a_row_put_back_with_its_key_keeps_its_record() {
    for recursive in ["OFF", "ON"] {
        each_setup(|s, setup| {
            s.write("INSERT INTO tasks (id, title) VALUES (1, 'one'), (2, 'two'), (3, 'three')");
            s.sync();
            let keys: Vec<String> = (1..=3).map(|id| key_of(&s.plain, "tasks", id)).collect();
            s.write(&format!(
                "PRAGMA recursive_triggers = {recursive};
                 BEGIN;
                 DELETE FROM tasks WHERE id = 1;
                 INSERT INTO tasks (id, title, tether_id) VALUES (1, 'one again', '{}');
                 COMMIT;
                 INSERT OR REPLACE INTO tasks (id, title, tether_id) VALUES (2, 'two saved', '{}');",
                keys[0], keys[1]
            ));
            s.sync();
            rebuild_without_the_key_column(s, setup);
            s.sync();
            let now: Vec<String> = (1..=3).map(|id| key_of(&s.plain, "tasks", id)).collect();
            assert_eq!(now, keys, "recursive_triggers {recursive} {setup}");
            s.assert_converged();
            assert_eq!(
                s.on_server().len(),
                3,
                "recursive_triggers {recursive} {setup}"
            );
        });
    }
}

/// A table rebuilt under a new name (keeping its keys) right after a delete is found by the keys
/// it holds, not mistaken for a table that holds a deleted row's key (an archive of deleted rows).
#[test]
fn a_table_renamed_by_a_rebuild_after_a_delete_is_followed_not_an_archive_of_deleted_rows() {
    let s = ServerBacked::new(
        "CREATE TABLE tasks_archive (id INTEGER, title TEXT, tether_id TEXT);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TRIGGER archive AFTER DELETE ON tasks BEGIN
             INSERT INTO tasks_archive VALUES (OLD.id, OLD.title, OLD.tether_id);
         END;",
        &["tasks"],
        KEYS_ON_INSERT,
    );
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'one'), (2, 'two')");
    s.sync();
    s.write(
        "DELETE FROM tasks WHERE id = 1;
         CREATE TABLE todo_items (id INTEGER PRIMARY KEY, title TEXT, tether_id TEXT);
         INSERT INTO todo_items SELECT id, title, tether_id FROM tasks;
         DROP TABLE tasks;",
    );
    s.sync();
    let tracked: Vec<String> = column(&s.plain, "SELECT table_name FROM tether_tracked_tables");
    assert_eq!(tracked, ["todo_items"]);
    s.write("UPDATE todo_items SET title = 'two edited' WHERE id = 2");
    s.sync();
    let k2 = key_of(&s.plain, "todo_items", 2);
    assert_eq!(s.on_server(), [format!("{k2}|two edited")]);
}

/// The same when more than 10,000 writes wait and tether indexes them in chunks of 10,000 before
/// its next write: the delete ends one chunk and the row put back begins the next.
#[test]
fn a_row_put_back_with_its_key_keeps_its_record_when_indexed_in_chunks() {
    let s = ServerBacked::new(PLAIN, &["tasks"], KEYS_ON_INSERT);
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'one')");
    s.sync();
    let k1 = key_of(&s.plain, "tasks", 1);
    s.write(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
         INSERT INTO tasks (id, title) SELECT i, 'row ' || i FROM n;
         DELETE FROM tasks WHERE id = 1;
         INSERT INTO tasks (id, title, tether_id) VALUES (1, 'one again', '{k1}');"
    ));
    assert_eq!(
        s.unindexed(),
        10_001,
        "the delete is the 10,000th row of the tail"
    );
    s.sync();
    s.rebuild_without_the_key_column(PLAIN);
    s.sync();
    assert_eq!(key_of(&s.plain, "tasks", 1), k1);
    s.assert_converged();
    assert_eq!(s.entities_on_server().len(), 10_000, "none created twice");
}

/// Rows saved as DELETE and INSERT of the whole row (an ORM's save), then the table rebuilt under
/// a new name keeping its keys, all before tether writes again: the rebuilt table is still found
/// by the keys its rows hold (their records were written after their deletes).
#[test]
fn a_table_renamed_by_a_rebuild_after_its_rows_were_saved_as_delete_and_insert_is_followed() {
    let s = ServerBacked::new(PLAIN, &["tasks"], KEYS_ON_INSERT);
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'one'), (2, 'two')");
    s.sync();
    let keys: Vec<String> = (1..=2).map(|id| key_of(&s.plain, "tasks", id)).collect();
    s.write(&format!(
        "BEGIN;
         DELETE FROM tasks WHERE id = 1;
         INSERT INTO tasks (id, title, tether_id) VALUES (1, 'one saved', '{}');
         DELETE FROM tasks WHERE id = 2;
         INSERT INTO tasks (id, title, tether_id) VALUES (2, 'two saved', '{}');
         COMMIT;
         CREATE TABLE todo_items (id INTEGER PRIMARY KEY, title TEXT, slug TEXT, tether_id TEXT);
         INSERT INTO todo_items SELECT id, title, slug, tether_id FROM tasks;
         DROP TABLE tasks;",
        keys[0], keys[1]
    ));
    s.sync();
    let tracked: Vec<String> = column(&s.plain, "SELECT table_name FROM tether_tracked_tables");
    assert_eq!(tracked, ["todo_items"]);
    s.write("UPDATE todo_items SET title = 'two edited' WHERE id = 2");
    s.sync();
    assert_eq!(s.on_server(), {
        let mut rows = vec![
            format!("{}|one saved", keys[0]),
            format!("{}|two edited", keys[1]),
        ];
        rows.sort();
        rows
    });
}

/// A row moved to another primary key by DELETE and INSERT with its key, three times, a sync
/// after each: each record a delete left names a place the moved row no longer holds. None may
/// survive to a rebuild's repair (records of rows that are gone make a rebuild look like a new
/// table, whose rows would all get new keys), or give a new row where the row first was the
/// moved row's key.
#[test]
fn a_row_moved_by_delete_and_insert_leaves_no_record_at_its_old_places() {
    each_setup(|s, setup| {
        s.write("INSERT INTO tasks (id, title) VALUES (1, 'one'), (2, 'two')");
        s.sync();
        let k1 = key_of(&s.plain, "tasks", 1);
        for (from, to) in [(1, 101), (101, 201), (201, 301)] {
            s.write(&format!(
                "BEGIN;
                 DELETE FROM tasks WHERE id = {from};
                 INSERT INTO tasks (id, title, tether_id) VALUES ({to}, 'one moved', '{k1}');
                 COMMIT;"
            ));
            s.sync();
        }
        let k2 = key_of(&s.plain, "tasks", 2);
        rebuild_without_the_key_column(s, setup);
        s.sync();
        assert_eq!(key_of(&s.plain, "tasks", 301), k1, "{setup}");
        assert_eq!(key_of(&s.plain, "tasks", 2), k2, "{setup}");
        s.write("INSERT INTO tasks (id, title) VALUES (1, 'new one')");
        s.sync();
        assert_ne!(key_of(&s.plain, "tasks", 1), k1, "{setup}");
        s.assert_converged();
        assert_eq!(s.on_server().len(), 3, "{setup}");
    });
}

/// Pruning (here `retention_days` 0: every synced mutation once synced) keeps the log's newest
/// row, so the queue's ids never start again below the ids records were written at: the records
/// of rows deleted after a prune still go, and a rebuild then keeps the other rows' keys.
#[test]
fn records_of_rows_deleted_after_the_log_was_pruned_still_go() {
    each_setup(|s, setup| {
        tether_harness::set_config(&s.conn, "retention_days", 0);
        s.write(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
             INSERT INTO tasks (id, title) SELECT i, 'row ' || i FROM n;",
        );
        s.sync();
        s.sync();
        let kept: Vec<String> = (7..=10).map(|id| key_of(&s.plain, "tasks", id)).collect();
        s.write("DELETE FROM tasks WHERE id <= 6");
        s.sync();
        rebuild_without_the_key_column(s, setup);
        s.sync();
        let now: Vec<String> = (7..=10).map(|id| key_of(&s.plain, "tasks", id)).collect();
        assert_eq!(now, kept, "{setup}: the copied rows keep their entities");
        s.assert_converged();
        assert_eq!(s.on_server().len(), 4, "{setup}");
    });
}
