//! On rowid tables with keys on insert, the lean insert trigger writes no `tether_row_keys` record
//! (a page of its own in every transaction that inserts): tether writes it from the create when it
//! indexes the queue. Every case here writes from a connection that never loaded tether and has
//! the table rebuilt, re-tracked or changed before tether writes again, so the records must come
//! out as the trigger would have written them. Outcomes are checked against the server's own table
//! and its record of applied mutations.
use tether_harness::server_backed::ServerBacked;
use tether_harness::{column, json, key_of};

const KEYS_ON_INSERT: &str = "{}";
const WITH_UNIQUE: &str =
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE);";
const PLAIN: &str = "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);";

/// `tasks` (keys on insert) and `drafts`, tracked with `{"keys": "on_sync"}`: the key pass drops
/// the creates of drafts deleted before a sync.
fn with_drafts() -> ServerBacked {
    let s = ServerBacked::new(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
         CREATE TABLE drafts (id INTEGER PRIMARY KEY, title TEXT);",
        &["tasks"],
        KEYS_ON_INSERT,
    );
    json(
        &s.conn,
        r#"SELECT tether_track('drafts', '{"keys": "on_sync"}')"#,
    );
    s
}

#[test]
fn rows_inserted_moved_and_deleted_just_before_a_rebuild_keep_their_entities() {
    for schema in [PLAIN, WITH_UNIQUE] {
        let s = ServerBacked::new(schema, &["tasks"], KEYS_ON_INSERT);
        s.write("INSERT INTO tasks (id, title) VALUES (1, 'synced')");
        s.sync();
        s.write(
            "INSERT INTO tasks (title) VALUES ('two');
             INSERT INTO tasks (id, title) VALUES (3, 'three');
             INSERT INTO tasks (id, title) VALUES (4, 'moved');
             UPDATE tasks SET id = 40 WHERE id = 4;
             INSERT INTO tasks (id, title) VALUES (5, 'gone');",
        );
        let gone = key_of(&s.plain, "tasks", 5);
        s.write(
            "DELETE FROM tasks WHERE id = 5;
             INSERT INTO tasks (id, title) VALUES (4, 'new at the moved row''s old place');",
        );
        let before: Vec<String> = column(&s.plain, "SELECT tether_id FROM tasks ORDER BY id");
        assert_eq!(
            s.unindexed(),
            6,
            "{schema}: no write of tether's since the sync"
        );
        s.rebuild_without_the_key_column(schema);
        s.sync();
        let after: Vec<String> = column(&s.plain, "SELECT tether_id FROM tasks ORDER BY id");
        assert_eq!(after, before, "{schema}: every copied row has its key back");
        s.assert_converged();
        assert_eq!(
            s.entities_on_server().len(),
            6,
            "{schema}: no entity created twice"
        );
        assert_eq!(s.deletes_logged(&gone), 1, "{schema}");
        assert_eq!(s.applied_to(&gone), 2, "{schema}: created and deleted once");
        for key in &before {
            assert_eq!(s.deletes_logged(key), 0, "{schema}: {key} is still a row");
        }
    }
}

#[test]
fn rows_inserted_before_a_rebuild_keep_their_keys_when_indexed_in_chunks() {
    let s = ServerBacked::new(PLAIN, &["tasks"], KEYS_ON_INSERT);
    s.write(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10050)
         INSERT INTO tasks (title) SELECT 'row ' || i FROM n;",
    );
    let before: Vec<String> = column(&s.plain, "SELECT tether_id FROM tasks ORDER BY id");
    assert_eq!(
        s.unindexed(),
        10_050,
        "more than one chunk of 10,000 to index"
    );
    s.rebuild_without_the_key_column(PLAIN);
    s.sync();
    let after: Vec<String> = column(&s.plain, "SELECT tether_id FROM tasks ORDER BY id");
    assert_eq!(after, before, "every copied row has its key back");
    s.assert_converged();
    assert_eq!(s.entities_on_server().len(), 10_050, "none created twice");
}

/// A REPLACE through a partial UNIQUE index deletes a row without any trigger seeing it (the
/// warning `unique_not_covered`): the next repair finds the row's record with no row holding its
/// key and deletes the entity. Here the row was inserted, and deleted so, before tether wrote.
#[test]
fn a_row_deleted_unseen_before_tether_wrote_is_deleted_on_the_server_at_the_next_repair() {
    let s = ServerBacked::new(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
         CREATE UNIQUE INDEX tasks_slug ON tasks (slug) WHERE slug IS NOT NULL;",
        &["tasks"],
        KEYS_ON_INSERT,
    );
    s.write("INSERT INTO tasks (id, title, slug) VALUES (1, 'a', 'a')");
    let unseen = key_of(&s.plain, "tasks", 1);
    s.write("INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (2, 'b', 'a')");
    assert_eq!(
        column::<i64>(&s.plain, "SELECT id FROM tasks"),
        [2],
        "the REPLACE deleted row 1"
    );
    assert_eq!(s.deletes_logged(&unseen), 0, "no trigger saw it");
    json(&s.conn, "SELECT tether_track('tasks')");
    assert_eq!(s.deletes_logged(&unseen), 1, "the repair found it");
    s.sync();
    assert!(s.deleted_on_server(&unseen));
    s.assert_converged();
}

/// A REPLACE that takes over one row's entity and deletes another through a UNIQUE column logs
/// that delete itself: the next repair must not find the deleted row's key unheld and delete the
/// entity a second time.
#[test]
fn a_row_a_replace_deleted_before_tether_wrote_is_deleted_once() {
    let s = ServerBacked::new(WITH_UNIQUE, &["tasks"], KEYS_ON_INSERT);
    s.write(
        "INSERT INTO tasks (id, title, slug) VALUES (1, 'a', 'a');
         INSERT INTO tasks (id, title, slug) VALUES (9, 'x', 'x');",
    );
    let (deleted, kept) = (key_of(&s.plain, "tasks", 1), key_of(&s.plain, "tasks", 9));
    s.write("INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (9, 'new', 'a')");
    assert_eq!(key_of(&s.plain, "tasks", 9), kept, "row 9 keeps its entity");
    assert_eq!(s.deletes_logged(&deleted), 1);
    json(&s.conn, "SELECT tether_track('tasks')");
    assert_eq!(s.deletes_logged(&deleted), 1, "not deleted a second time");
    s.sync();
    s.assert_converged();
    assert_eq!(s.applied_to(&deleted), 2, "created and deleted once");
    assert_eq!(
        column::<i64>(
            &s.plain,
            "SELECT count(*) FROM tether_mutation_logs WHERE sync_status <> 'synced'"
        ),
        [0],
        "nothing refused or left"
    );
}

/// The records tether writes for new rows name each row's key at its primary key, exactly as a
/// re-track would write them from the rows.
#[test]
fn the_records_of_new_rows_are_those_of_the_rows() {
    for schema in [PLAIN, WITH_UNIQUE] {
        let s = ServerBacked::new(schema, &["tasks"], KEYS_ON_INSERT);
        s.write(
            "INSERT INTO tasks (title) VALUES ('a'), ('b'), ('c');
             UPDATE tasks SET id = 30 WHERE id = 3;
             DELETE FROM tasks WHERE id = 2;
             INSERT INTO tasks (id, title) VALUES (3, 'at 3 again');
             INSERT INTO tasks (title) VALUES ('d');
             UPDATE tasks SET id = 10 WHERE id = 1;",
        );
        let records = "SELECT row_pk || ' ' || sync_key FROM tether_row_keys ORDER BY row_pk";
        let rows = "SELECT id || ' ' || tether_id FROM tasks ORDER BY id";
        s.sync();
        assert_eq!(
            column::<String>(&s.plain, records),
            column::<String>(&s.plain, rows),
            "{schema}"
        );
    }
}

/// Rows inserted and moved (`UPDATE … SET id`) before tether writes, then a rebuild without the
/// key column that leaves another row out: each moved row has one record (where the rekey
/// trigger put it), so the repair sees a rebuild, not a new table, and gives every row its key.
#[test]
fn rows_moved_before_a_rebuild_that_leaves_a_row_out_keep_their_keys() {
    let s = ServerBacked::new(PLAIN, &["tasks"], KEYS_ON_INSERT);
    s.write("INSERT INTO tasks (id, title) VALUES (1, 'left out by the migration')");
    s.sync();
    s.write(
        "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 11)
         INSERT INTO tasks (id, title) SELECT i, 'row ' || i FROM n;
         UPDATE tasks SET id = id + 100 WHERE id >= 2;",
    );
    let before: Vec<String> = column(
        &s.plain,
        "SELECT tether_id FROM tasks WHERE id > 100 ORDER BY id",
    );
    s.write(
        "BEGIN;
         CREATE TABLE tasks_new (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
         INSERT INTO tasks_new (id, title, slug) SELECT id, title, slug FROM tasks WHERE id <> 1;
         DROP TABLE tasks;
         ALTER TABLE tasks_new RENAME TO tasks;
         COMMIT;",
    );
    json(&s.conn, "SELECT tether_track('tasks')");
    let after: Vec<String> = column(&s.plain, "SELECT tether_id FROM tasks ORDER BY id");
    assert_eq!(after, before);
    s.sync();
    s.assert_converged();
    assert_eq!(s.entities_on_server().len(), 11, "none created twice");
}

/// A row moved before tether writes (by `UPDATE … SET id`, or by REPLACE of a copy carrying its
/// key), then a rebuild that also writes a new row where the moved one was: the new row never
/// takes the moved row's key.
#[test]
fn a_row_written_where_a_moved_row_was_before_a_rebuild_gets_a_key_of_its_own() {
    for mv in [
        "UPDATE tasks SET id = 101 WHERE id = 1",
        "INSERT OR REPLACE INTO tasks (id, title, tether_id) SELECT 101, title, tether_id FROM tasks WHERE id = 1;
         DELETE FROM tasks WHERE id = 1",
    ] {
        let s = ServerBacked::new(PLAIN, &["tasks"], KEYS_ON_INSERT);
        s.write(
            "INSERT INTO tasks (id, title) VALUES (1, 'alice');
             INSERT INTO tasks (id, title) VALUES (2, 'bob');",
        );
        s.write(mv);
        let alice = key_of(&s.plain, "tasks", 101);
        s.write(
            "BEGIN;
             CREATE TABLE tasks_new (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
             INSERT INTO tasks_new (id, title, slug) SELECT id, title, slug FROM tasks;
             DROP TABLE tasks;
             ALTER TABLE tasks_new RENAME TO tasks;
             INSERT INTO tasks (id, title) VALUES (1, 'seed');
             COMMIT;",
        );
        s.sync();
        assert_eq!(key_of(&s.plain, "tasks", 101), alice, "{mv}");
        assert_ne!(key_of(&s.plain, "tasks", 1), alice, "{mv}");
        s.assert_converged();
        assert_eq!(s.entities_on_server().len(), 3, "{mv}: none created twice");
    }
}

/// A row inserted and moved before tether writes, then deleted unseen (REPLACE through a partial
/// UNIQUE index): the next repair deletes its entity once, however many other rows there are.
#[test]
fn a_moved_row_deleted_unseen_before_tether_wrote_is_deleted_once() {
    for others in [0, 3] {
        let s = ServerBacked::new(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
             CREATE UNIQUE INDEX tasks_slug ON tasks (slug) WHERE slug IS NOT NULL;",
            &["tasks"],
            KEYS_ON_INSERT,
        );
        for i in 0..others {
            s.write(&format!(
                "INSERT INTO tasks (id, title) VALUES ({}, 'other')",
                10 + i
            ));
        }
        s.write("INSERT INTO tasks (id, title, slug) VALUES (1, 'a', 'a')");
        let unseen = key_of(&s.plain, "tasks", 1);
        s.write(
            "UPDATE tasks SET id = 3 WHERE id = 1;
             INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (5, 'b', 'a');",
        );
        json(&s.conn, "SELECT tether_track('tasks')");
        assert_eq!(s.deletes_logged(&unseen), 1, "{others} other rows");
        s.sync();
        assert!(s.deleted_on_server(&unseen), "{others} other rows");
        s.assert_converged();
    }
}

/// A rebuild that keeps the key column but renumbers the rows (a tool's own renumbering, or a
/// table without a declared primary key copied in another order) before tether indexed their
/// creates, then a row deleted unseen before the repair (REPLACE through a partial UNIQUE index):
/// the records follow the keys to the rows' new numbers, so the repair sees the table rebuilt and
/// finds the deleted row.
#[test]
fn rows_renumbered_by_a_rebuild_keep_records_that_find_a_row_deleted_unseen() {
    let schema = "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
                  CREATE UNIQUE INDEX tasks_slug ON tasks (slug) WHERE slug IS NOT NULL;";
    let s = ServerBacked::new(schema, &["tasks"], KEYS_ON_INSERT);
    s.write(
        "INSERT INTO tasks (id, title, slug) VALUES (1, 'a', 'a'), (2, 'b', 'b'), (3, 'c', 'c')",
    );
    let unseen = key_of(&s.plain, "tasks", 1);
    s.write(
        "BEGIN;
         CREATE TABLE tasks_new (id INTEGER PRIMARY KEY, title TEXT, slug TEXT, tether_id TEXT);
         INSERT INTO tasks_new (id, title, slug, tether_id)
              SELECT id + 10, title, slug, tether_id FROM tasks;
         DROP TABLE tasks;
         ALTER TABLE tasks_new RENAME TO tasks;
         CREATE UNIQUE INDEX tasks_slug ON tasks (slug) WHERE slug IS NOT NULL;
         CREATE UNIQUE INDEX tether_sync_key_tasks ON tasks (tether_id);
         COMMIT;",
    );
    s.write("INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (20, 'a again', 'a')");
    json(&s.conn, "SELECT tether_track('tasks')");
    assert_eq!(s.deletes_logged(&unseen), 1);
    s.sync();
    assert!(s.deleted_on_server(&unseen));
    s.assert_converged();
}

/// A key pass that drops the newest creates (rows of a `{"keys": "on_sync"}` table inserted and
/// deleted before a sync) lets the log reuse their ids: rows inserted into a keys-on-insert table
/// after that still get their records, and keep their keys through a rebuild.
#[test]
fn rows_inserted_after_a_key_pass_dropped_the_newest_creates_keep_their_keys() {
    let s = with_drafts();
    s.write(
        "INSERT INTO tasks (title) VALUES ('first');
         INSERT INTO drafts (title) VALUES ('a'), ('b'), ('c');
         DELETE FROM drafts;",
    );
    json(&s.conn, "SELECT tether_push_request()");
    s.write("INSERT INTO tasks (title) VALUES ('second'), ('third'), ('fourth');");
    let before: Vec<String> = column(&s.plain, "SELECT tether_id FROM tasks ORDER BY id");
    s.rebuild_without_the_key_column(PLAIN);
    json(&s.conn, "SELECT tether_track('tasks')");
    let after: Vec<String> = column(&s.plain, "SELECT tether_id FROM tasks ORDER BY id");
    assert_eq!(after, before);
}

/// The key pass drops waiting creates of rows deleted before a sync; when they are the log's
/// newest, their ids must not be given again: a record written while one of them was the newest
/// (here by moving a row) would seem newer than the rows logged after, and a row inserted where
/// the moved row then was deleted would get the deleted row's key back after a rebuild.
#[test]
fn a_row_inserted_where_a_moved_row_was_deleted_keeps_its_key_after_a_key_pass_and_a_rebuild() {
    let s = with_drafts();
    s.write(
        "INSERT INTO tasks (id, title) VALUES (1, 'a');
         INSERT INTO drafts (title) VALUES ('x'), ('y'), ('z');
         UPDATE tasks SET id = 2 WHERE id = 1;
         DELETE FROM drafts;",
    );
    json(
        &s.conn,
        r#"SELECT tether_track('drafts', '{"keys": "on_sync"}')"#,
    );
    let deleted = key_of(&s.plain, "tasks", 2);
    s.write(
        "DELETE FROM tasks WHERE id = 2;
         INSERT INTO tasks (id, title) VALUES (2, 'b');",
    );
    let kept = key_of(&s.plain, "tasks", 2);
    s.rebuild_without_the_key_column(PLAIN);
    json(&s.conn, "SELECT tether_status()");
    assert_eq!(key_of(&s.plain, "tasks", 2), kept);
    assert_ne!(kept, deleted);
    s.sync();
    s.assert_converged();
    assert!(s.deleted_on_server(&deleted));
}
