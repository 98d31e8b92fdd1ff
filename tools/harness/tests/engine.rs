//! The sync engine against scripted answers, through the sans-IO functions: every row of the
//! protocol's "client handling" table, retries, batching, pull paging and bad answers.
use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

fn client() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, status TEXT, priority INTEGER,
                             due_date TEXT, done INTEGER, tags TEXT, local_note TEXT);
         SELECT tether_track('tasks', '{\"except\": [\"local_note\"]}');",
    )
    .unwrap();
    (dir, path, conn)
}

fn insert_tasks(conn: &Connection, n: usize) {
    for i in 0..n {
        conn.execute(
            "INSERT INTO tasks (title) VALUES (?1)",
            [format!("task {i}")],
        )
        .unwrap();
    }
}

fn push_request(conn: &Connection) -> Option<Value> {
    let body: Option<String> = conn
        .query_row("SELECT tether_push_request()", [], |r| r.get(0))
        .unwrap();
    body.map(|b| serde_json::from_str(&b).unwrap())
}

fn push_response(conn: &Connection, answer: &Value) -> Value {
    json(
        conn,
        &format!(
            "SELECT tether_push_response('{}')",
            answer.to_string().replace('\'', "''")
        ),
    )
}

fn pull_response(conn: &Connection, answer: &Value) -> Result<Value, String> {
    conn.query_row(
        "SELECT tether_pull_response(?1)",
        [answer.to_string()],
        |r| r.get::<_, String>(0),
    )
    .map(|t| serde_json::from_str(&t).unwrap())
    .map_err(|e| e.to_string())
}

fn ids(request: &Value) -> Vec<String> {
    request["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mutation_id"].as_str().unwrap().to_string())
        .collect()
}

fn statuses(conn: &Connection) -> Vec<(String, Option<String>, i64)> {
    conn.prepare(
        "SELECT sync_status, rejection_reason, retry_count FROM tether_mutation_logs ORDER BY id",
    )
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn keys(value: &Value) -> Vec<String> {
    let mut k: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn push_requests_match_the_fixture_field_for_field() {
    let (_dir, _path, conn) = client();
    conn.execute(
        "INSERT INTO tasks (title, priority) VALUES ('Buy milk', 2)",
        [],
    )
    .unwrap();
    conn.execute("UPDATE tasks SET title = 'Buy oat milk'", [])
        .unwrap();
    conn.execute("DELETE FROM tasks", []).unwrap();
    let request = push_request(&conn).unwrap();
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/fixtures/push-request.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(keys(&request), keys(&fixture));
    let mutations = request["mutations"].as_array().unwrap();
    for (m, f) in mutations
        .iter()
        .zip(fixture["mutations"].as_array().unwrap())
    {
        assert_eq!(keys(m), keys(f));
        assert_eq!(m["operation"], f["operation"]);
        assert!(m["version"].is_i64() && m["timestamp"].is_i64());
    }
    assert_eq!(
        mutations
            .iter()
            .map(|m| m["version"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        mutations[1]["payload"],
        json!({"title": "Buy oat milk", "status": null, "priority": 2, "due_date": null, "done": null, "tags": null})
    );
    assert_eq!(mutations[2]["payload"], json!({}));
    assert_eq!(
        request["client_id"],
        json(&conn, "SELECT tether_config()")["client_id"]
    );
}

/// The app changes a row while a push of its earlier change is out; the server answers that
/// earlier change with a conflict. The newer change is not sent yet: the row keeps it (it goes
/// with the next request, the full row) instead of taking the conflict's server state.
#[test]
fn a_conflict_answer_keeps_a_change_made_while_the_request_was_out() {
    let (_dir, path, conn) = client();
    insert_tasks(&conn, 1);
    finish_push_with_all_applied(&conn);
    conn.execute("UPDATE tasks SET status = 'open'", [])
        .unwrap();
    let request = push_request(&conn).unwrap();
    let m = ids(&request);
    let key: String = conn
        .query_row("SELECT tether_id FROM tasks", [], |r| r.get(0))
        .unwrap();
    open_plain(&path)
        .execute("UPDATE tasks SET status = 'closed'", [])
        .unwrap();
    let answer = json!({"conflicts": [{"mutation_id": m[0], "reason": "conflict", "data": {
        "server_state": {"tether_id": key, "title": "Server title", "status": "open"},
        "server_updated_at": "2026-11-25T12:00:00+00:00"}}]});
    let result = push_response(&conn, &answer);
    assert_eq!(result["conflicts"], 1, "{result}");
    let (title, status): (String, String) = conn
        .query_row("SELECT title, status FROM tasks", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((title.as_str(), status.as_str()), ("task 0", "closed"));
    // The change is sent next, as the row is.
    let request = push_request(&conn).unwrap();
    assert_eq!(
        request["mutations"][0]["payload"]["status"], "closed",
        "{request}"
    );
}

/// A row whose create the server refused for good, then deleted: nothing is left to undo
/// there, and the delete is settled even when it is all the queue holds.
#[test]
fn deleting_the_only_row_whose_create_was_refused_settles_its_delete() {
    let (_dir, _path, conn) = client();
    insert_tasks(&conn, 1);
    let request = push_request(&conn).unwrap();
    let m = ids(&request);
    push_response(
        &conn,
        &json!({"rejected": [{"mutation_id": m[0], "reason": "validation_failed",
                              "data": {"messages": {"title": ["No."]}}}]}),
    );
    while push_request(&conn).is_some() {}
    conn.execute("DELETE FROM tasks", []).unwrap();
    assert!(push_request(&conn).is_none(), "nothing to send");
    let status = json(&conn, "SELECT tether_status()");
    assert_eq!(status["pending"], 0, "{status}");
    let ops: Vec<String> = column(
        &conn,
        "SELECT operation || ' ' || sync_status FROM tether_mutation_logs ORDER BY id",
    );
    assert_eq!(ops, ["create resolved", "delete synced"]);
}

fn finish_push_with_all_applied(conn: &Connection) {
    while let Some(request) = push_request(conn) {
        push_response(conn, &json!({"applied": ids(&request)}));
    }
}

#[test]
fn every_row_of_the_client_handling_table() {
    let (_dir, _path, conn) = client();
    insert_tasks(&conn, 7);
    let request = push_request(&conn).unwrap();
    let m = ids(&request);
    let conflict_key: String = conn
        .query_row("SELECT tether_id FROM tasks WHERE id = 6", [], |r| r.get(0))
        .unwrap();
    let answer = json!({
        "applied": [m[0]],
        "rejected": [
            {"mutation_id": m[1], "reason": "duplicate", "data": []},
            {"mutation_id": m[2], "reason": "validation_failed", "data": {"messages": {"title": ["The title field is required."]}}},
            {"mutation_id": m[3], "reason": "not_found", "data": {"model": "Task", "entity_id": "x"}},
            {"mutation_id": m[4], "reason": "teapot"}
        ],
        "conflicts": [{"mutation_id": m[5], "reason": "conflict", "data": {
            "server_state": {"id": 999, "tether_id": conflict_key, "title": "Server title", "status": "done", "done": true, "tags": ["a"], "updated_at": "2026-11-25T12:00:00.000000Z"},
            "server_updated_at": "2026-11-25T12:00:00+00:00"}}]
    });
    let result = push_response(&conn, &answer);
    assert_eq!(
        (
            result["pushed"].as_i64(),
            result["failed"].as_i64(),
            result["conflicts"].as_i64()
        ),
        (Some(2), Some(3), Some(1))
    );
    let reasons: Vec<&str> = result["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["validation_failed", "not_found", "teapot"]);
    assert_eq!(
        result["rejections"][0]["data"]["messages"]["title"],
        json!(["The title field is required."])
    );
    let s = statuses(&conn);
    assert_eq!(s[0].0, "synced");
    assert_eq!(s[1].0, "synced", "duplicate counts as synced");
    assert_eq!(
        (s[2].0.as_str(), s[2].1.as_deref(), s[2].2),
        ("failed", Some("validation_failed"), 1)
    );
    assert_eq!(s[3].1.as_deref(), Some("not_found"));
    assert_eq!(
        (s[4].0.as_str(), s[4].1.as_deref()),
        ("failed", Some("teapot")),
        "unknown reasons are kept"
    );
    assert_eq!(
        (s[5].0.as_str(), s[5].1.as_deref()),
        ("conflict", Some("conflict"))
    );
    assert_eq!(s[6].0, "pending", "absent from the answer: still pending");
    let data: String = conn
        .query_row(
            "SELECT rejection_data FROM tether_mutation_logs WHERE id = 6",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["title"],
        "Server title",
        "rejection_data = server_state"
    );
    let row: (i64, String, String, i64, String) = conn
        .query_row(
            "SELECT id, title, status, done, tags FROM tasks WHERE tether_id = ?1",
            [&conflict_key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (6, "Server title".into(), "done".into(), 1, "[\"a\"]".into()),
        "server state applied, local id kept"
    );
    assert_eq!(
        mutations(&conn).len(),
        7,
        "applying the server state captured nothing"
    );

    assert!(
        push_request(&conn).is_none(),
        "within one push an unanswered mutation is not resent"
    );
    let next = push_request(&conn).unwrap();
    assert_eq!(
        ids(&next),
        [m[6].clone()],
        "the next push sends it again; permanent failures stay out"
    );
    let again = push_response(&conn, &answer);
    assert_eq!(
        (
            again["pushed"].as_i64(),
            again["failed"].as_i64(),
            again["conflicts"].as_i64()
        ),
        (Some(0), Some(0), Some(0)),
        "an answer applied twice changes nothing"
    );
}

#[test]
fn error_rejections_are_retried_up_to_the_limit_with_the_same_id() {
    let (_dir, _path, conn) = client();
    insert_tasks(&conn, 1);
    let mut sent = Vec::new();
    while let Some(request) = push_request(&conn) {
        let id = ids(&request)[0].clone();
        sent.push(id.clone());
        push_response(
            &conn,
            &json!({"rejected": [{"mutation_id": id, "reason": "error", "data": {"message": "db down"}}]}),
        );
        assert!(push_request(&conn).is_none());
        if sent.len() > 5 {
            break;
        }
    }
    assert_eq!(
        sent.len(),
        3,
        "sent at most 3 times with the default max_retry_attempts"
    );
    assert!(
        sent.iter().all(|id| *id == sent[0]),
        "every retry carries the same mutation id"
    );
    assert_eq!(
        statuses(&conn)[0],
        ("failed".to_string(), Some("error".to_string()), 3)
    );

    let (_dir2, _path2, conn) = client();
    conn.query_row("SELECT tether_config('max_retry_attempts', 0)", [], |_| {
        Ok(())
    })
    .unwrap();
    insert_tasks(&conn, 1);
    let id = ids(&push_request(&conn).unwrap())[0].clone();
    push_response(
        &conn,
        &json!({"rejected": [{"mutation_id": id, "reason": "error"}]}),
    );
    assert!(
        push_request(&conn).is_none() && push_request(&conn).is_none(),
        "0 disables retries"
    );
}

#[test]
fn batches_follow_push_batch_size() {
    let (_dir, _path, conn) = client();
    insert_tasks(&conn, 3);
    set_config(&conn, "push_batch_size", 2);
    let first = push_request(&conn).unwrap();
    let second = push_request(&conn).unwrap();
    assert_eq!((ids(&first).len(), ids(&second).len()), (2, 1));
    assert!(push_request(&conn).is_none());
    set_config(&conn, "push_batch_size", 0);
    assert_eq!(
        ids(&push_request(&conn).unwrap()).len(),
        3,
        "0 = everything in one request"
    );
}

#[test]
fn bad_push_answers_change_nothing() {
    let (_dir, _path, conn) = client();
    insert_tasks(&conn, 2);
    let request = push_request(&conn).unwrap();
    let m = ids(&request);
    let good = json!({"applied": [m[0]], "rejected": [{"mutation_id": m[1], "reason": "error"}]})
        .to_string();
    for (body, expect) in [
        (
            "<html><body>502 Bad Gateway</body></html>".to_string(),
            "not JSON",
        ),
        (good[..good.len() / 2].to_string(), "not JSON"),
        ("[1, 2]".to_string(), "not a JSON object"),
        (r#"{"applied": "all"}"#.to_string(), "must be a list"),
        (
            r#"{"rejected": [{"reason": "error"}]}"#.to_string(),
            "no mutation_id",
        ),
    ] {
        let err = conn
            .query_row("SELECT tether_push_response(?1)", [&body], |r| {
                r.get::<_, String>(0)
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tether_push_response") && err.contains(expect),
            "{body}: {err}"
        );
        assert!(
            statuses(&conn)
                .iter()
                .all(|s| *s == ("pending".to_string(), None, 0)),
            "{body}: queue untouched"
        );
    }
    let ok: String = conn
        .query_row("SELECT tether_push_response(?1)", [&good], |r| r.get(0))
        .unwrap();
    assert!(ok.contains("\"pushed\":1"), "{ok}");
    let unknown = push_response(&conn, &json!({"applied": ["01JDQ90A1B2C3D4E5F6G7H8J9K"]}));
    assert_eq!(
        unknown["pushed"], 0,
        "an answer for a batch never requested is harmless"
    );
}

#[test]
fn pull_applies_the_fixture_page() {
    let (_dir, _path, conn) = client();
    conn.execute_batch("INSERT INTO tasks (title, local_note) VALUES ('to be deleted', 'mine')")
        .unwrap();
    let doomed: String = conn
        .query_row("SELECT tether_id FROM tasks", [], |r| r.get(0))
        .unwrap();
    conn.execute("UPDATE tether_mutation_logs SET sync_status = 'synced'", [])
        .unwrap();
    let request: Value = json(&conn, "SELECT tether_pull_request()");
    assert_eq!(
        request,
        json!({"client_id": request["client_id"], "last_sync_cursor": null})
    );
    set_config(&conn, "pull_page_size", 500);
    let paged: Value = json(&conn, "SELECT tether_pull_request()");
    assert_eq!(paged["limit"], 500);

    let text =
        std::fs::read_to_string(repo_root().join("tests/fixtures/pull-response.json")).unwrap();
    let mut page: Value = serde_json::from_str(&text).unwrap();
    page["snapshots"][1]["entity_id"] = json!(doomed);
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(
        (
            result["pulled"].as_i64(),
            result["pull_errors"].as_i64(),
            result["has_more"].as_bool()
        ),
        (Some(2), Some(1), Some(true)),
        "{result}"
    );
    let rows = json(
        &conn,
        "SELECT json_group_array(json_object('id', id, 'tether_id', tether_id, 'title', title,
                'priority', priority, 'due_date', due_date, 'done', done, 'tags', tags)) FROM tasks",
    );
    assert_eq!(
        rows.as_array().unwrap().len(),
        1,
        "the delete snapshot removed the local row"
    );
    let row = &rows[0];
    assert_ne!(
        row["id"], 12,
        "the server id never overwrites the local primary key"
    );
    assert_eq!(
        row,
        &json!({"id": row["id"], "tether_id": "01JDQ8ZZZZXYWVTSRQPNMKJHGF", "title": "Buy oat milk", "priority": 2,
                "due_date": null, "done": 1, "tags": "[\"home\",\"food\"]"}),
        "booleans become 0/1, arrays JSON text, null stays null"
    );
    assert_eq!(
        mutations(&conn).len(),
        1,
        "applying snapshots captured nothing"
    );
    assert_eq!(
        json(&conn, "SELECT tether_status()")["last_sync_cursor"],
        1764072005456000i64
    );
    let next: Value = json(&conn, "SELECT tether_pull_request()");
    assert_eq!(
        next["last_sync_cursor"], 1764072005456000i64,
        "the next request carries the stored cursor"
    );
}

#[test]
fn a_page_that_does_not_advance_is_refused_whole() {
    let (_dir, _path, conn) = client();
    let page = json!({"snapshots": [{"entity_id": "01JDQ8ZZZZXYWVTSRQPNMKJHGF", "model": "Task", "operation": "upsert", "payload": {"title": "x"}}],
                      "new_sync_cursor": 100, "has_more": true});
    pull_response(&conn, &page).unwrap();
    let err = pull_response(&conn, &page).unwrap_err();
    assert!(err.contains("did not advance"), "{err}");
    let stuck = json!({"snapshots": [], "new_sync_cursor": null, "has_more": true});
    assert!(pull_response(&conn, &stuck)
        .unwrap_err()
        .contains("did not advance"));
    for bad in [
        "<html></html>",
        "{\"snapshots\": {}}",
        "{\"new_sync_cursor\": \"soon\"}",
        "{\"has_more\": \"yes\"}",
    ] {
        let err = conn
            .query_row("SELECT tether_pull_response(?1)", [bad], |r| {
                r.get::<_, String>(0)
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tether_pull_response: pull answer"),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        json(&conn, "SELECT tether_status()")["last_sync_cursor"],
        100
    );
}

#[test]
fn pull_keeps_unsent_local_changes_and_isolates_bad_snapshots() {
    let (_dir, _path, conn) = client();
    conn.execute("INSERT INTO tasks (title) VALUES ('local edit')", [])
        .unwrap();
    let key: String = conn
        .query_row("SELECT tether_id FROM tasks", [], |r| r.get(0))
        .unwrap();
    let page = json!({"snapshots": [
        {"entity_id": key, "model": "Task", "operation": "upsert", "payload": {"title": "server says"}},
        {"entity_id": "01JDQ8AAAAXYWVTSRQPNMKJHGF", "model": "Task", "operation": "upsert", "payload": {"status": "no title"}},
        {"entity_id": "01JDQ8BBBBXYWVTSRQPNMKJHGF", "model": "Task", "operation": "upsert", "payload": {"title": "fine", "unknown": 1}},
        {"model": "Task", "operation": "upsert", "payload": {}}
    ], "new_sync_cursor": 5, "has_more": false});
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(
        (result["pulled"].as_i64(), result["pull_errors"].as_i64()),
        (Some(1), Some(2)),
        "{result}"
    );
    let titles: Vec<String> = column(&conn, "SELECT title FROM tasks ORDER BY id");
    assert_eq!(
        titles,
        ["local edit", "fine"],
        "the pending local change survives; NOT NULL failure skipped alone"
    );
}

#[test]
fn a_snapshot_held_back_for_a_local_change_applies_if_that_change_is_discarded() {
    let (_dir, _path, conn) = client();
    insert_tasks(&conn, 2);
    conn.execute("UPDATE tether_mutation_logs SET sync_status = 'synced'", [])
        .unwrap();
    let keys: Vec<String> = column(&conn, "SELECT tether_id FROM tasks ORDER BY id");
    conn.execute("UPDATE tasks SET title = 'local ' || id", [])
        .unwrap();
    let page = json!({"snapshots": [
        {"entity_id": keys[0], "model": "Task", "operation": "delete", "payload": []},
        {"entity_id": keys[1], "model": "Task", "operation": "upsert", "payload": {"title": "server 2"}}
    ], "new_sync_cursor": 10, "has_more": false});
    assert_eq!(
        pull_response(&conn, &page).unwrap()["pulled"],
        0,
        "both rows have unsent changes"
    );
    let request = push_request(&conn).unwrap();
    let m = ids(&request);
    push_response(
        &conn,
        &json!({"applied": [m[1]], "rejected": [{"mutation_id": m[0], "reason": "not_found"}]}),
    );
    let titles: Vec<String> = column(&conn, "SELECT title FROM tasks ORDER BY id");
    assert_eq!(
        titles,
        ["local 1", "local 2"],
        "rejected for good: the local value waits for the user; accepted: the local change stays"
    );
    let waiting = "SELECT count(*) FROM tether_deferred_snapshots";
    assert_eq!(
        column::<i64>(&conn, waiting),
        [1],
        "the server's delete waits"
    );
    let discarded = json(
        &conn,
        &format!("SELECT tether_discard('tasks', '{}')", keys[0]),
    );
    assert_eq!(
        discarded["rows"][0]["outcome"], "server state put back",
        "{discarded}"
    );
    let titles: Vec<String> = column(&conn, "SELECT title FROM tasks ORDER BY id");
    assert_eq!(
        titles,
        ["local 2"],
        "discarded: the server's delete applies"
    );
    assert_eq!(column::<i64>(&conn, waiting), [0]);
    assert_eq!(mutations(&conn).len(), 4, "nothing of this was captured");
}

/// tether_retry() puts a conflict's local change back into the row. When the database refuses
/// that change now (it names a parent deleted since), that row is left as it is and reported;
/// the other rows are retried.
#[test]
fn a_retry_the_database_refuses_now_leaves_that_row_and_goes_on() {
    let (_dir, conn) = family();
    conn.execute_batch("INSERT INTO projects (name) VALUES ('p1'), ('p2');")
        .unwrap();
    let p1 = key_of(&conn, "projects", 1);
    let p2 = key_of(&conn, "projects", 2);
    conn.execute(
        "INSERT INTO tasks (title, project) VALUES ('t', ?1), ('u', NULL)",
        [&p1],
    )
    .unwrap();
    finish_push_with_all_applied(&conn);
    conn.execute("UPDATE tasks SET project = ?1 WHERE title = 't'", [&p2])
        .unwrap();
    conn.execute("UPDATE tasks SET title = 'refused' WHERE title = 'u'", [])
        .unwrap();
    let request = push_request(&conn).unwrap();
    let m = ids(&request);
    let t = key_of(&conn, "tasks", 1);
    push_response(
        &conn,
        &json!({
            "conflicts": [{"mutation_id": m[0], "reason": "conflict", "data": {
                "server_state": {"tether_id": t, "title": "t", "project": p1}}}],
            "rejected": [{"mutation_id": m[1], "reason": "validation_failed",
                          "data": {"messages": {"title": ["No."]}}}]
        }),
    );
    while push_request(&conn).is_some() {}
    conn.execute("DELETE FROM projects WHERE id = 2", [])
        .unwrap();
    let result = json(&conn, "SELECT tether_retry()");
    let refused: Vec<&Value> = result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["error"].is_string())
        .collect();
    assert_eq!(refused.len(), 1, "{result}");
    assert!(
        refused[0]["error"]
            .as_str()
            .unwrap()
            .contains("FOREIGN KEY"),
        "{result}"
    );
    assert_eq!(result["retried"], 1, "{result}");
    let project: String = conn
        .query_row("SELECT project FROM tasks WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(project, p1, "the row keeps the server's version");
}
