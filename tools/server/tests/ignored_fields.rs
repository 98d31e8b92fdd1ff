//! Fields the server ignored: a create or update whose payload carries fields the model does not
//! list is applied as Laravel's server applies it (those fields dropped), and the answer says so
//! in `warnings`, an extension of the protocol; the server logs a line per such mutation.
mod common;

use common::*;
use serde_json::{json, Value};

fn mutation_with_id(id: &str, op: &str, entity: &str, payload: Value, timestamp: i64) -> Value {
    json!({"mutation_id": id, "entity_id": entity, "model": "Task", "operation": op, "payload": payload, "version": 1, "timestamp": timestamp})
}

fn warning(id: &str, model: &str, fields: &[&str], message: &str) -> Value {
    json!({"mutation_id": id, "reason": "ignored_fields", "model": model, "fields": fields, "message": message})
}

/// The snapshot of `entity` a pull returns.
fn pulled(server: &TestServer, entity: &str) -> Value {
    let (snapshots, _) = server.pull_all("c", None);
    snapshots
        .into_iter()
        .rev()
        .find(|s| s["entity_id"] == entity)
        .unwrap_or_else(|| panic!("{entity} was not pulled"))
}

#[test]
fn a_create_with_an_unlisted_field_is_applied_with_a_warning_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let server = TestServer::start(&["--db", db.to_str().unwrap()]);
    let (mid, entity) = (id(), id());
    let answer = server.push(
        "c",
        json!([mutation_with_id(
            &mid,
            "create",
            &entity,
            json!({"title": "t", "color": "red"}),
            now_ms()
        )]),
    );
    assert_eq!(
        answer,
        json!({
            "applied": [mid],
            "rejected": [],
            "conflicts": [],
            "warnings": [warning(&mid, "Task", &["color"], "Task does not list color: the server ignored it")],
        })
    );
    let snapshot = pulled(&server, &entity);
    assert_eq!(snapshot["payload"]["title"], "t");
    assert!(snapshot["payload"].get("color").is_none(), "{snapshot}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('tasks')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(columns.contains(&"title".to_string()), "{columns:?}");
    assert!(!columns.contains(&"color".to_string()), "{columns:?}");
}

#[test]
fn an_update_with_unlisted_fields_is_applied_with_a_warning_naming_them() {
    let server = TestServer::start(&[]);
    let entity = create_task(&server, "c", "t");
    let mid = id();
    let answer = server.push(
        "c",
        json!([mutation_with_id(
            &mid,
            "update",
            &entity,
            json!({"title": "u", "size": 3, "color": "red"}),
            now_ms()
        )]),
    );
    assert_eq!(answer["applied"], json!([mid]), "{answer}");
    assert_eq!(
        answer["warnings"],
        json!([warning(
            &mid,
            "Task",
            &["color", "size"],
            "Task does not list color, size: the server ignored them"
        )])
    );
    let payload = &pulled(&server, &entity)["payload"];
    assert_eq!(payload["title"], "u");
    assert!(payload.get("size").is_none() && payload.get("color").is_none());
}

#[test]
fn a_field_no_longer_listed_is_reported_and_its_old_column_stays_empty() {
    // A field dropped from the config keeps its column (new fields become columns; old ones stay,
    // unused): a value for it is still ignored, and said to be.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let db = db.to_str().unwrap();
    drop(TestServer::start(&[
        "--db",
        db,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required", "color": "nullable"}}"#,
    ]));
    let server = TestServer::start(&[
        "--db",
        db,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required"}}"#,
    ]);
    let (mid, entity) = (id(), id());
    let answer = server.push(
        "c",
        json!([{"mutation_id": mid, "entity_id": entity, "model": "Note", "operation": "create",
                "payload": {"title": "t", "color": "red"}, "version": 1, "timestamp": now_ms()}]),
    );
    assert_eq!(answer["applied"], json!([mid]), "{answer}");
    assert_eq!(
        answer["warnings"],
        json!([warning(
            &mid,
            "Note",
            &["color"],
            "Note does not list color: the server ignored it"
        )])
    );
    let conn = rusqlite::Connection::open(db).unwrap();
    let (title, color): (String, Option<String>) = conn
        .query_row(
            "SELECT title, color FROM notes WHERE tether_id = ?1",
            [&entity],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((title.as_str(), color), ("t", None));
}

#[test]
fn a_payload_of_listed_fields_gets_no_warnings_key() {
    let server = TestServer::start(&[]);
    let entity = id();
    let now = now_ms();
    let answer = server.push(
        "c",
        json!([
            mutation(
                "create",
                "Task",
                &entity,
                json!({"title": "t", "status": "open", "priority": 1, "due_date": null, "done": false, "tags": ["a"]}),
                now
            ),
            mutation("update", "Task", &entity, json!({"title": "u"}), now + 1),
            mutation("delete", "Task", &entity, json!([]), now + 2),
        ]),
    );
    assert_eq!(answer["applied"].as_array().unwrap().len(), 3, "{answer}");
    assert!(answer.get("warnings").is_none(), "{answer}");
    assert_eq!(
        answer.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["applied", "conflicts", "rejected"]
    );
}

#[test]
fn the_sync_key_and_the_attributes_the_server_sets_are_not_reported() {
    // What a pull returns may be pushed back as it is: the sync key, id, the timestamps and (with
    // soft deletes, as the demo Task has) deleted_at are the server's to set, never "ignored".
    let server = TestServer::start(&[]);
    let entity = id();
    let answer = server.push(
        "c",
        json!([mutation(
            "create",
            "Task",
            &entity,
            json!({"title": "t", "tether_id": entity}),
            now_ms()
        )]),
    );
    assert!(answer.get("warnings").is_none(), "{answer}");
    let payload = pulled(&server, &entity)["payload"].clone();
    let answer = server.push(
        "c",
        json!([mutation("update", "Task", &entity, payload, now_ms() + 1)]),
    );
    assert_eq!(answer["applied"].as_array().unwrap().len(), 1, "{answer}");
    assert!(answer.get("warnings").is_none(), "{answer}");
}

#[test]
fn a_scoped_model_without_soft_deletes() {
    // The scope column is the server's to set; deleted_at, without soft deletes, is not a column
    // of the model at all, so a client's value for it is ignored and said to be.
    let server = TestServer::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": "required"}, "scope": "owner"}"#,
    ]);
    let mid = id();
    let answer = server.push(
        "c",
        json!([mutation_with_id(
            &mid,
            "create",
            &id(),
            json!({"title": "t", "owner": "someone", "deleted_at": null}),
            now_ms()
        )]),
    );
    assert_eq!(
        answer["warnings"],
        json!([warning(
            &mid,
            "Task",
            &["deleted_at"],
            "Task does not list deleted_at: the server ignored it"
        )])
    );
}

#[test]
fn each_mutation_of_a_batch_gets_its_own_warning_whatever_its_outcome() {
    let server = TestServer::start(&[]);
    let existing = create_task(&server, "c", "t");
    let now = now_ms();
    let ids: Vec<String> = (0..7).map(|_| id()).collect();
    let answer = server.push(
        "c",
        json!([
            mutation_with_id(&ids[0], "create", &id(), json!({"title": "a", "size": 1}), now),
            mutation_with_id(&ids[1], "create", &id(), json!({"title": "b"}), now),
            mutation_with_id(&ids[2], "create", &id(), json!({"title": "c", "Title": "x", "b": 1, "a": 2}), now),
            // Rejected (no title) and in conflict (older than the row): the fields are still not
            // listed, so the client hears it now rather than after fixing the rest.
            mutation_with_id(&ids[3], "create", &id(), json!({"colour": "red"}), now),
            mutation_with_id(&ids[4], "update", &existing, json!({"title": "old", "weight": 2}), 1_000),
            // A delete's payload is not used; an unknown model has no fields to compare.
            mutation_with_id(&ids[5], "delete", &existing, json!({"junk": 1}), now),
            json!({"mutation_id": ids[6], "entity_id": id(), "model": "Nope", "operation": "create", "payload": {"x": 1}, "version": 1, "timestamp": now}),
        ]),
    );
    assert_eq!(
        answer["applied"],
        json!([ids[0], ids[1], ids[2], ids[5]]),
        "{answer}"
    );
    assert_eq!(answer["rejected"][0]["mutation_id"], ids[3], "{answer}");
    assert_eq!(answer["rejected"][1]["mutation_id"], ids[6], "{answer}");
    assert_eq!(answer["conflicts"][0]["mutation_id"], ids[4], "{answer}");
    assert_eq!(
        answer["warnings"],
        json!([
            warning(
                &ids[0],
                "Task",
                &["size"],
                "Task does not list size: the server ignored it"
            ),
            warning(
                &ids[2],
                "Task",
                &["Title", "a", "b"],
                "Task does not list Title, a, b: the server ignored them"
            ),
            warning(
                &ids[3],
                "Task",
                &["colour"],
                "Task does not list colour: the server ignored it"
            ),
            warning(
                &ids[4],
                "Task",
                &["weight"],
                "Task does not list weight: the server ignored it"
            ),
        ])
    );
}

#[test]
fn a_repeated_mutation_is_warned_about_again() {
    // The client may never have seen the first answer.
    let server = TestServer::start(&[]);
    let m = mutation(
        "create",
        "Task",
        &id(),
        json!({"title": "t", "x": 1}),
        now_ms(),
    );
    let first = server.push("c", json!([m]));
    let again = server.push("c", json!([m]));
    assert_eq!(first["warnings"], again["warnings"], "{again}");
    assert_eq!(again["warnings"].as_array().unwrap().len(), 1, "{again}");
}

#[test]
fn each_warning_is_logged_on_one_escaped_line() {
    let server = TestServer::start_logged(&[]);
    let forged = "bad\nPOST /tether/push 200 forged \"x\"\r\x1b[2J";
    let mid = id();
    let mut payload = json!({"title": "t", "plain": 1});
    payload[forged] = json!("v");
    let answer = server.push(
        "c",
        json!([mutation_with_id(&mid, "create", &id(), payload, now_ms())]),
    );
    // Sorted by bytes: "bad…" before "plain".
    assert_eq!(answer["warnings"][0]["fields"], json!([forged, "plain"]));
    assert_eq!(
        answer["warnings"][0]["message"],
        format!("Task does not list {forged}, plain: the server ignored them")
    );
    let log = server.log();
    assert!(!log.contains('\x1b'), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("POST /tether/push 200 forged")),
        "{log}"
    );
    let expected = format!(
        r#"tether-server: mutation "{mid}" of model "Task": ignored fields the model does not list: "bad\nPOST /tether/push 200 forged \"x\"\r\u{{1b}}[2J", "plain""#
    );
    assert_eq!(
        log.lines().filter(|l| *l == expected).count(),
        1,
        "expected {expected}\nin {log}"
    );
    // The request line follows; a push with nothing ignored adds no such line.
    create_task(&server, "c", "fine");
    assert_eq!(
        server
            .log()
            .lines()
            .filter(|l| l.contains("ignored fields"))
            .count(),
        1
    );
}

#[test]
fn the_log_line_is_written_with_quiet_too_and_stays_short() {
    // As the other per-mutation lines are: --quiet only silences the line per request.
    let server = TestServer::start_logged(&["--quiet"]);
    let mid = id();
    let mut payload = json!({"title": "t"});
    for i in 0..12 {
        payload[format!("f{i:02}")] = json!(i);
    }
    payload["long".repeat(30)] = json!(1);
    let answer = server.push(
        "c",
        json!([mutation_with_id(&mid, "create", &id(), payload, now_ms())]),
    );
    assert_eq!(
        answer["warnings"][0]["fields"].as_array().unwrap().len(),
        13
    );
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].starts_with(&format!(
            "tether-server: mutation \"{mid}\" of model \"Task\": "
        )),
        "{log}"
    );
    assert!(
        lines[0].ends_with(
            r#""f00", "f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09", and 3 more"#
        ),
        "{log}"
    );
}
