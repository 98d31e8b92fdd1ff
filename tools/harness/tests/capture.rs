//! Plain-SQL capture: what each write queues, from connections with and without the extension.
use rusqlite::Connection;
use serde_json::json;
use tether_harness::*;

fn tasks_db() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, status TEXT DEFAULT 'open', priority INTEGER);
         SELECT tether_track('tasks');",
    )
    .unwrap();
    (dir, path, conn)
}

fn sync_key(conn: &Connection, id: i64) -> String {
    conn.query_row("SELECT tether_id FROM tasks WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn insert_update_delete_each_queue_one_correct_mutation() {
    let (_dir, path, conn) = tasks_db();
    let before = now_ms();
    conn.execute(
        "INSERT INTO tasks (title, priority) VALUES ('Buy milk', 2)",
        [],
    )
    .unwrap();
    let key = sync_key(&conn, 1);
    assert!(is_ulid(&key), "new row got a ULID sync key: {key}");
    conn.execute("UPDATE tasks SET title = 'Buy oat milk' WHERE id = 1", [])
        .unwrap();
    conn.execute("UPDATE tasks SET status = 'done' WHERE id = 1", [])
        .unwrap();
    conn.execute("DELETE FROM tasks WHERE id = 1", []).unwrap();
    let after = now_ms();

    let log = mutations(&conn);
    assert!(
        log.iter()
            .all(|m| m.mutation_id.is_none() && m.version.is_none()),
        "identities wait for the first send"
    );
    assert_eq!(give_identities(&path), 4);
    let log = mutations(&conn);
    assert_eq!(
        log.iter().map(|m| m.operation.as_str()).collect::<Vec<_>>(),
        ["create", "update", "update", "delete"]
    );
    assert_eq!(
        log.iter().map(|m| m.version.unwrap()).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        log[0].payload,
        json!({"title": "Buy milk", "status": "open", "priority": 2})
    );
    assert_eq!(
        log[1].payload,
        json!({"title": "Buy oat milk", "status": "open", "priority": 2})
    );
    assert_eq!(
        log[2].payload,
        json!({"title": "Buy oat milk", "status": "done", "priority": 2})
    );
    assert_eq!(log[3].payload, json!({}));
    for m in &log {
        assert_eq!(m.entity_id, key);
        assert_eq!(m.model, "Task");
        assert_eq!(m.sync_status, "pending");
        let id = m.mutation_id.as_deref().unwrap();
        assert!(is_ulid(id), "{id}");
        assert_eq!(
            ulid_millis(id),
            Some(m.timestamp),
            "the id's time part is the capture time"
        );
        assert!(
            m.timestamp >= before && m.timestamp <= after,
            "timestamp {} outside {before}..{after}",
            m.timestamp
        );
        let keys = m.payload.as_object().unwrap();
        assert!(
            !keys.contains_key("id") && !keys.contains_key("tether_id"),
            "no primary key, no sync key: {keys:?}"
        );
    }
    let ids: std::collections::HashSet<_> = log.iter().map(|m| &m.mutation_id).collect();
    assert_eq!(ids.len(), 4, "mutation ids are unique");
}

#[test]
fn writes_from_a_connection_without_the_extension_are_captured() {
    let (_dir, path, conn) = tasks_db();
    let plain = open_plain(&path);
    let has_tether: i64 = plain
        .query_row(
            "SELECT count(*) FROM pragma_function_list WHERE name LIKE 'tether%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(has_tether, 0, "this connection really lacks the extension");
    plain
        .execute("INSERT INTO tasks (title) VALUES ('from plain')", [])
        .unwrap();
    plain.execute("UPDATE tasks SET priority = 5", []).unwrap();
    plain.execute("DELETE FROM tasks", []).unwrap();
    give_identities(&path);
    let log = mutations(&conn);
    assert_eq!(
        log.iter()
            .map(|m| (m.operation.as_str(), m.version.unwrap()))
            .collect::<Vec<_>>(),
        [("create", 1), ("update", 2), ("delete", 3)]
    );
    assert!(is_ulid(&log[0].entity_id));
    assert!(log
        .iter()
        .all(|m| is_ulid(m.mutation_id.as_deref().unwrap())));
    assert_eq!(log[1].payload["priority"], 5);
}

#[test]
fn many_rows_in_one_statement_get_distinct_ids() {
    let (_dir, path, conn) = tasks_db();
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
         INSERT INTO tasks (title) SELECT 'task ' || i FROM n;",
    )
    .unwrap();
    give_identities(&path);
    let (rows, keys, muts): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM tasks), (SELECT count(DISTINCT tether_id) FROM tasks),
                    (SELECT count(DISTINCT mutation_id) FROM tether_mutation_logs)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((rows, keys, muts), (500, 500, 500));
    let mismatched: i64 = conn
        .query_row(
            "SELECT count(*) FROM tasks t JOIN tether_mutation_logs m ON m.entity_id = t.tether_id
              WHERE json_extract(m.payload, '$.title') <> t.title",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mismatched, 0, "each create carries its own row");
}

#[test]
fn rollback_leaves_nothing_and_noop_update_queues_nothing() {
    let (_dir, _path, conn) = tasks_db();
    conn.execute_batch(
        "BEGIN; INSERT INTO tasks (title) VALUES ('gone'); UPDATE tasks SET title = 'x'; ROLLBACK;",
    )
    .unwrap();
    assert!(mutations(&conn).is_empty());
    conn.execute("INSERT INTO tasks (title) VALUES ('kept')", [])
        .unwrap();
    conn.execute("UPDATE tasks SET title = 'kept'", []).unwrap();
    conn.execute("UPDATE tasks SET tether_id = tether_id", [])
        .unwrap();
    assert_eq!(mutations(&conn).len(), 1, "only the create");
}

#[test]
fn an_explicit_sync_key_is_kept_and_versions_continue() {
    let (_dir, path, conn) = tasks_db();
    let key = "01JDQ8ZZZZXYWVTSRQPNMKJHGF";
    conn.execute(
        "INSERT INTO tasks (title, tether_id) VALUES ('mine', ?1)",
        [key],
    )
    .unwrap();
    conn.execute("DELETE FROM tasks", []).unwrap();
    conn.execute(
        "INSERT INTO tasks (title, tether_id) VALUES ('again', ?1)",
        [key],
    )
    .unwrap();
    give_identities(&path);
    let log = mutations(&conn);
    assert!(log.iter().all(|m| m.entity_id == key));
    assert_eq!(
        log.iter().map(|m| m.version.unwrap()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn versions_keep_increasing_after_old_log_rows_are_pruned() {
    let (_dir, path, conn) = tasks_db();
    conn.execute("INSERT INTO tasks (title) VALUES ('a')", [])
        .unwrap();
    conn.execute("UPDATE tasks SET title = 'b'", []).unwrap();
    give_identities(&path);
    let key = sync_key(&conn, 1);
    conn.execute_batch("DELETE FROM tether_mutation_logs")
        .unwrap();
    conn.execute("UPDATE tasks SET title = 'c'", []).unwrap();
    give_identities(&path);
    let log = mutations(&conn);
    assert_eq!(
        (log[0].entity_id.as_str(), log[0].version),
        (key.as_str(), Some(3))
    );
}

#[test]
fn identities_once_given_never_change() {
    let (_dir, path, conn) = tasks_db();
    conn.execute("INSERT INTO tasks (title) VALUES ('a')", [])
        .unwrap();
    give_identities(&path);
    let first = mutations(&conn);
    conn.execute("UPDATE tasks SET title = 'b'", []).unwrap();
    assert_eq!(give_identities(&path), 1, "only the new mutation gets one");
    let second = mutations(&conn);
    assert_eq!(first[0].mutation_id, second[0].mutation_id);
    assert_eq!(first[0].version, second[0].version);
    assert_eq!(second[1].version, Some(2));
}

#[test]
fn capture_suppression_is_private_to_the_applying_transaction() {
    let (_dir, path) = temp_db();
    // The engine's internal entry point, linked statically.
    let engine = Connection::open(&path).unwrap();
    tether::register(&engine).unwrap();
    engine.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks');").unwrap();
    let other = open_plain(&path);

    tether::capture::without_capture(&engine, false, |conn| {
        conn.execute("INSERT INTO tasks (title, tether_id) VALUES ('from server', '01JDQ8ZZZZXYWVTSRQPNMKJHGF')", [])?;
        conn.execute("UPDATE tasks SET title = 'server edit'", [])?;
        let seen_elsewhere: i64 = other.query_row("SELECT count(*) FROM tether_capture_suppressed", [], |r| r.get(0))?;
        assert_eq!(seen_elsewhere, 0, "another connection does not see the flag");
        Ok(())
    })
    .unwrap();
    assert!(
        mutations(&engine).is_empty(),
        "applied server state is not captured"
    );
    let flags: i64 = engine
        .query_row("SELECT count(*) FROM tether_capture_suppressed", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(flags, 0, "the flag does not outlive the transaction");

    other
        .execute("UPDATE tasks SET title = 'user edit'", [])
        .unwrap();
    engine
        .execute(
            "INSERT INTO tasks (title) VALUES ('engine connection, later')",
            [],
        )
        .unwrap();
    assert_eq!(
        mutations(&engine)
            .iter()
            .map(|m| m.operation.as_str())
            .collect::<Vec<_>>(),
        ["update", "create"]
    );

    let failed = tether::capture::without_capture(&engine, false, |conn| {
        conn.execute("INSERT INTO tasks (title) VALUES ('half applied')", [])?;
        Err::<(), _>(tether::Error::new("boom"))
    });
    assert!(failed.is_err());
    let rows: i64 = engine
        .query_row(
            "SELECT count(*) FROM tasks WHERE title = 'half applied'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let flags: i64 = engine
        .query_row("SELECT count(*) FROM tether_capture_suppressed", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        (rows, flags),
        (0, 0),
        "a failed apply leaves neither rows nor the flag"
    );
}

#[test]
fn blobs_and_json_types_do_not_break_user_writes() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE files (id INTEGER PRIMARY KEY, name TEXT, data BLOB, size REAL); SELECT tether_track('files');").unwrap();
    conn.execute(
        "INSERT INTO files (name, data, size) VALUES ('a', x'00FF10', 1.5)",
        [],
    )
    .unwrap();
    let log = mutations(&conn);
    assert_eq!(
        log[0].payload,
        json!({"name": "a", "data": "00FF10", "size": 1.5})
    );
}
