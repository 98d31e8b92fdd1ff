//! End to end: client databases syncing through tether-server over real HTTP on 127.0.0.1.
use std::collections::BTreeMap;

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

const TASK: &str = r#"{"name": "Task", "fields": {"title": "required|max:20", "priority": "nullable|integer"}, "soft_deletes": true}"#;

struct Client {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    conn: Connection,
}

fn client(server: &Server) -> Client {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, priority INTEGER); SELECT tether_track('tasks');").unwrap();
    conn.query_row(
        "SELECT tether_config('server_url', ?1)",
        [&server.url],
        |_| Ok(()),
    )
    .unwrap();
    Client {
        _dir: dir,
        path,
        conn,
    }
}

fn sync(c: &Client) -> Value {
    json(&c.conn, "SELECT tether_sync()")
}

fn sync_err(c: &Client, call: &str) -> String {
    error_of(&c.conn, &format!("SELECT {call}"))
}

/// The client's rows by sync key: (title, priority).
fn rows(c: &Client) -> BTreeMap<String, (Option<String>, Option<i64>)> {
    c.conn
        .prepare("SELECT tether_id, title, priority FROM tasks")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn server_rows(server: &Server) -> BTreeMap<String, (Option<String>, Option<i64>)> {
    server
        .rows("any")
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                (
                    v["title"].as_str().map(String::from),
                    v["priority"].as_i64(),
                ),
            )
        })
        .collect()
}

fn queue(c: &Client) -> Vec<(String, i64)> {
    c.conn
        .prepare("SELECT sync_status, retry_count FROM tether_mutation_logs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn two_clients_converge_through_the_server() {
    let server = Server::start(&["--model", TASK]);
    let (a, b) = (client(&server), client(&server));
    a.conn
        .execute_batch(
            "INSERT INTO tasks (title, priority) VALUES ('Buy milk', 1), ('Call mom', 2);",
        )
        .unwrap();
    b.conn
        .execute_batch("INSERT INTO tasks (title) VALUES ('Water plants');")
        .unwrap();
    assert_eq!(sync(&a)["pushed"], 2);
    assert_eq!(sync(&b)["pulled"], 3);
    sync(&a);
    assert_eq!(rows(&a), rows(&b));
    assert_eq!(rows(&a), server_rows(&server));

    b.conn
        .execute("UPDATE tasks SET priority = 9 WHERE title = 'Buy milk'", [])
        .unwrap();
    a.conn
        .execute("DELETE FROM tasks WHERE title = 'Call mom'", [])
        .unwrap();
    sync(&b);
    sync(&a);
    sync(&b);
    assert_eq!(rows(&a), rows(&b));
    assert_eq!(rows(&a).len(), 2);

    // A edits first; B edits later and syncs first: A's older edit conflicts and A takes B's.
    a.conn
        .execute(
            "UPDATE tasks SET title = 'Water lawn' WHERE title = 'Water plants'",
            [],
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    b.conn
        .execute(
            "UPDATE tasks SET title = 'Water roses' WHERE title = 'Water plants'",
            [],
        )
        .unwrap();
    sync(&b);
    let result = sync(&a);
    assert_eq!(result["conflicts"], 1, "{result}");
    assert_eq!(json(&a.conn, "SELECT tether_status()")["conflicts"], 1);
    assert_eq!(rows(&a), rows(&b));
    assert!(rows(&a)
        .values()
        .any(|(t, _)| t.as_deref() == Some("Water roses")));

    a.conn
        .execute(
            "INSERT INTO tasks (title) VALUES ('A title far longer than twenty')",
            [],
        )
        .unwrap();
    let result = sync(&a);
    assert_eq!(
        (result["failed"].as_i64(), result["pushed"].as_i64()),
        (Some(1), Some(0)),
        "{result}"
    );
    assert_eq!(result["rejections"][0]["reason"], "validation_failed");
    assert_eq!(
        result["rejections"][0]["data"]["messages"]["title"],
        json!(["The title field must not be greater than 20 characters."])
    );
    assert_eq!(json(&a.conn, "SELECT tether_status()")["failed"], 1);
    sync(&b);
    assert_eq!(
        rows(&b),
        server_rows(&server),
        "the rejected row never reached the server"
    );
}

#[test]
fn transport_failures_are_errors_that_leave_the_queue_as_it_was() {
    let server = Server::start(&["--model", TASK, "--token", "tok-123"]);
    let c = client(&server);
    c.conn
        .execute("INSERT INTO tasks (title) VALUES ('x')", [])
        .unwrap();
    let untouched = vec![("pending".to_string(), 0)];

    let err = sync_err(&c, "tether_push()");
    assert!(
        err.contains("tether_push") && err.contains("HTTP 401") && err.contains(&server.url),
        "{err}"
    );
    assert_eq!(queue(&c), untouched);
    c.conn
        .query_row(
            "SELECT tether_config('auth_token', 'tok-123', 'connection')",
            [],
            |_| Ok(()),
        )
        .unwrap();

    let cases: [(Value, &str); 4] = [
        (json!({"path": "/tether/push", "status": 500}), "HTTP 500"),
        (json!({"path": "/tether/push", "body": "html"}), "not JSON"),
        (
            json!({"path": "/tether/push", "body": "truncated"}),
            "not JSON",
        ),
        (
            json!({"path": "/tether/push", "delay_ms": 1500}),
            "timed out",
        ),
    ];
    set_config(&c.conn, "timeout_ms", 500);
    for (fault, expect) in cases {
        server.post("/_test/faults", &fault);
        let err = sync_err(&c, "tether_sync()");
        assert!(
            err.contains("tether_sync") && err.contains(expect),
            "{fault}: {err}"
        );
        assert!(!err.contains("tok-123"), "the token never appears: {err}");
        let q = queue(&c);
        assert!(
            q.iter().all(|(_, retries)| *retries == 0),
            "{fault}: retry counts untouched {q:?}"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    set_config(&c.conn, "timeout_ms", 30000);
    let result = sync(&c);
    assert_eq!(result["failed"], 0, "{result}");
    assert_eq!(
        server_rows(&server).len(),
        1,
        "applied once in the end (the truncated answer was applied and is not duplicated)"
    );
    assert_eq!(queue(&c), vec![("synced".to_string(), 0)]);

    let nothing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", nothing.local_addr().unwrap());
    drop(nothing);
    c.conn
        .query_row("SELECT tether_config('server_url', ?1)", [&closed], |_| {
            Ok(())
        })
        .unwrap();
    c.conn
        .execute("INSERT INTO tasks (title) VALUES ('y')", [])
        .unwrap();
    let err = sync_err(&c, "tether_sync()");
    assert!(
        err.contains("connection refused") && err.contains(&closed),
        "{err}"
    );
}

#[test]
fn an_answer_lost_after_the_server_applied_is_resent_with_the_same_ids() {
    let server = Server::start(&["--model", TASK]);
    let c = client(&server);
    c.conn
        .execute_batch("INSERT INTO tasks (title) VALUES ('one'), ('two');")
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "body": "drop"}),
    );
    let err = sync_err(&c, "tether_sync()");
    assert!(
        err.contains("tether_sync") && err.contains("/tether/push"),
        "{err}"
    );
    assert_eq!(
        server_rows(&server).len(),
        2,
        "the server applied the batch"
    );
    let before: Vec<String> = column(
        &c.conn,
        "SELECT mutation_id FROM tether_mutation_logs ORDER BY id",
    );
    let result = sync(&c);
    assert_eq!(result["pushed"], 2);
    let after: Vec<String> = column(
        &c.conn,
        "SELECT mutation_id FROM tether_mutation_logs ORDER BY id",
    );
    assert_eq!(before, after, "the same mutation ids were sent again");
    assert_eq!(server_rows(&server).len(), 2, "nothing duplicated");
    assert_eq!(rows(&c), server_rows(&server));
}

#[test]
fn a_held_lock_skips_and_an_expired_one_does_not() {
    let server = Server::start(&["--model", TASK]);
    let c = client(&server);
    c.conn
        .execute("INSERT INTO tasks (title) VALUES ('x')", [])
        .unwrap();
    let far = now_ms() + 60_000;
    c.conn.execute("INSERT INTO tether_locks (name, holder, expires_at) VALUES ('sync', 'someone else', ?1)", [far]).unwrap();
    let result = sync(&c);
    assert_eq!(
        result,
        json!({"pushed": 0, "pulled": 0, "conflicts": 0, "failed": 0, "rejections": [], "warnings": [], "pull_errors": 0, "pull_error_reasons": {}, "skipped": true})
    );
    c.conn
        .execute("UPDATE tether_locks SET expires_at = ?1", [now_ms() - 1])
        .unwrap();
    assert_eq!(
        sync(&c)["pushed"],
        1,
        "a lease whose holder stopped renewing expires"
    );
    let left: i64 = c
        .conn
        .query_row("SELECT count(*) FROM tether_locks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the lock is released after the cycle");
    set_config(&c.conn, "sync_lock", "false");
    c.conn.execute("INSERT INTO tether_locks (name, holder, expires_at) VALUES ('sync', 'someone else', ?1)", [far]).unwrap();
    assert_eq!(
        sync(&c)["skipped"],
        false,
        "sync_lock false ignores the lock"
    );
}

#[test]
fn syncing_inside_a_transaction_is_refused() {
    let server = Server::start(&["--model", TASK]);
    let c = client(&server);
    c.conn
        .execute_batch("BEGIN; INSERT INTO tasks (title) VALUES ('x');")
        .unwrap();
    let err = sync_err(&c, "tether_sync()");
    assert!(err.contains("transaction"), "{err}");
    c.conn.execute_batch("COMMIT").unwrap();
}

#[test]
fn synced_mutations_are_pruned_after_the_retention() {
    let server = Server::start(&["--model", TASK]);
    let c = client(&server);
    c.conn
        .execute_batch("INSERT INTO tasks (title) VALUES ('a'); UPDATE tasks SET title = 'b';")
        .unwrap();
    sync(&c);
    assert_eq!(queue(&c).len(), 2, "kept for 7 days by default");
    set_config(&c.conn, "retention_days", 0);
    sync(&c);
    assert_eq!(
        queue(&c),
        [("synced".to_string(), 0)],
        "0 keeps none but the log's newest row (so the queue's ids never go back)"
    );
    c.conn.execute("UPDATE tasks SET title = 'c'", []).unwrap();
    let request: Value = serde_json::from_str(
        &c.conn
            .query_row("SELECT tether_push_request()", [], |r| {
                r.get::<_, String>(0)
            })
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        request["mutations"][0]["version"], 3,
        "versions keep increasing after pruning"
    );
    let _ = &c.path;
}

#[test]
fn every_cycle_is_recorded_in_the_sync_log() {
    let server = Server::start(&["--model", TASK]);
    let c = client(&server);
    c.conn
        .execute("INSERT INTO tasks (title) VALUES ('x')", [])
        .unwrap();
    sync(&c);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "status": 503}),
    );
    let err = sync_err(&c, "tether_pull()");
    let log = json(
        &c.conn,
        "SELECT json_group_array(json_object('kind', kind, 'trigger', trigger, 'finished', finished_at IS NOT NULL,
                'result', json(result), 'error', error)) FROM (SELECT * FROM tether_sync_log ORDER BY id)",
    );
    assert_eq!(log.as_array().unwrap().len(), 2, "{log}");
    assert_eq!(
        (log[0]["kind"].as_str(), log[0]["trigger"].as_str()),
        (Some("sync"), Some("foreground"))
    );
    assert_eq!(
        (
            log[0]["finished"].as_i64(),
            log[0]["result"]["pushed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert!(log[0]["error"].is_null());
    assert_eq!(log[1]["kind"], "pull");
    assert!(
        log[1]["result"].is_null()
            && log[1]["error"]
                .as_str()
                .is_some_and(|e| e.contains("HTTP 503")),
        "{log} {err}"
    );
}
