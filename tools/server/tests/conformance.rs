//! Conformance with the Laravel `tether/server` package on Laravel 12: every protocol fixture
//! (`tests/fixtures/`, the project's copies) replayed against tether-server, the payload of a
//! model as a Laravel model's attributes serialise, and Laravel 12's validation messages and 422
//! bodies. Only the repository is read.
mod common;
use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

/// The Task of pull-response.json: soft deletes, and the columns its payload has.
const TASK_SOFT: &str = r#"{"name": "Task", "fields": {"title": "required|max:255", "status": "nullable|max:32", "priority": "nullable|integer", "due_date": "nullable", "done": "nullable|boolean", "tags": "nullable|array"}, "soft_deletes": true}"#;
/// The Task of push-response.json: no soft deletes (its conflict's `server_state` has no
/// `deleted_at`), the four columns that state has, and the `max:10` its rejection names.
const TASK_PLAIN: &str = r#"{"name": "Task", "fields": {"title": "required|max:10", "status": "nullable", "priority": "nullable|integer", "due_date": "nullable"}}"#;
const PROJECT: &str =
    r#"{"name": "Project", "fields": {"name": "required|max:255"}, "soft_deletes": true}"#;

/// The cursor of pull-response.json and pull-response-last.json.
const FIXTURE_CURSOR: i64 = 1_764_072_005_456_000;
/// 2026-11-25T12:00:00Z, the `created_at` of pull-response.json's Task, in milliseconds.
const CREATED_MS: i64 = 1_795_608_000_000;

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn is_model_time(value: &Value) -> bool {
    // Laravel's JSON form of a date attribute: 2026-11-25T12:00:05.456000Z
    value.as_str().is_some_and(|s| {
        let b = s.as_bytes();
        b.len() == 27
            && s.ends_with('Z')
            && b[10] == b'T'
            && b[19] == b'.'
            && b[20..26].iter().all(u8::is_ascii_digit)
    })
}

fn mutation_with_id(id: &str, op: &str, entity: &str, payload: Value, timestamp: i64) -> Value {
    json!({"mutation_id": id, "entity_id": entity, "model": "Task", "operation": op, "payload": payload, "version": 1, "timestamp": timestamp})
}

#[test]
fn the_fixtures_are_the_repositorys_own_copies() {
    for name in [
        "pull-request-first.json",
        "pull-request-paged.json",
        "pull-response-last.json",
        "pull-response.json",
        "push-request.json",
        "push-response.json",
    ] {
        assert!(fixture(name).is_object(), "{name}");
    }
}

#[test]
fn push_request_fixture_gets_the_push_response_fixture() {
    let request = fixture("push-request.json");
    let expected = fixture("push-response.json");
    let conflict = &expected["conflicts"][0];
    let state = &conflict["data"]["server_state"];
    // The row the fixture's delete conflicts with, changed after that delete was made. Its title
    // is longer than max:10, so it is written under a laxer config of the same database.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let db = db.to_str().unwrap();
    let delete_ms = request["mutations"][2]["timestamp"].as_i64().unwrap();
    {
        let lax = TASK_PLAIN.replace("max:10", "max:255");
        let server = TestServer::start(&["--db", db, "--model", &lax]);
        let seeded = server.push(
            "another-client",
            json!([mutation(
                "create",
                "Task",
                state["tether_id"].as_str().unwrap(),
                json!({"title": state["title"], "status": state["status"], "priority": state["priority"], "due_date": state["due_date"]}),
                delete_ms + 1
            )]),
        );
        assert_eq!(seeded["applied"].as_array().unwrap().len(), 1, "{seeded}");
    }
    let server = TestServer::start(&["--db", db, "--model", TASK_PLAIN]);

    let answer = server.post("/tether/push", &request);
    assert_eq!(keys(&answer), keys(&expected));
    assert_eq!(answer["applied"], expected["applied"]);

    // The update's title is longer than max:10. The fixture has the wording of Laravel before
    // 10 ("The title may not be greater than 10 characters."); Laravel 12 says this:
    let mut rejection = expected["rejected"][0].clone();
    rejection["data"]["messages"]["title"] =
        json!(["The title field must not be greater than 10 characters."]);
    assert_eq!(answer["rejected"], json!([rejection]));

    let got = &answer["conflicts"][0];
    assert_eq!(answer["conflicts"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(
        (&got["mutation_id"], &got["reason"]),
        (&conflict["mutation_id"], &conflict["reason"])
    );
    assert_eq!(keys(&got["data"]), keys(&conflict["data"]));
    let got_state = &got["data"]["server_state"];
    assert_eq!(
        keys(got_state),
        keys(state),
        "server_state holds the model's attributes, no deleted_at without soft deletes"
    );
    for field in ["tether_id", "title", "status", "priority", "due_date"] {
        assert_eq!(got_state[field], state[field], "{field}");
    }
    assert!(got_state["id"].as_i64().is_some_and(|id| id > 0));
    assert!(is_model_time(&got_state["created_at"]), "{got_state}");
    assert!(is_model_time(&got_state["updated_at"]), "{got_state}");
    // server_updated_at: ISO 8601 with offset, whole seconds, the same instant as updated_at.
    let updated = got_state["updated_at"].as_str().unwrap();
    assert_eq!(
        got["data"]["server_updated_at"].as_str().unwrap(),
        format!("{}+00:00", &updated[..19])
    );
}

#[test]
fn each_rejection_of_the_push_response_fixture() {
    let expected = fixture("push-response.json");
    let rejected = expected["rejected"].as_array().unwrap();
    let server = TestServer::start(&["--model", TASK_PLAIN, "--strict-duplicates"]);

    // not_found: an update of a row the server does not have.
    let not_found = &rejected[1];
    let entity = not_found["data"]["entity_id"].as_str().unwrap();
    let id = not_found["mutation_id"].as_str().unwrap();
    let answer = server.push(
        "c",
        json!([mutation_with_id(
            id,
            "update",
            entity,
            json!({"title": "x"}),
            now_ms()
        )]),
    );
    assert_eq!(answer["rejected"], json!([not_found]));

    // duplicate (strict mode): the same mutation id again.
    let duplicate = &rejected[2];
    let id = duplicate["mutation_id"].as_str().unwrap();
    let create = mutation_with_id(id, "create", &common::id(), json!({"title": "x"}), now_ms());
    assert_eq!(server.push("c", json!([create]))["applied"], json!([id]));
    let answer = server.push("c", json!([create]));
    assert_eq!(answer["rejected"], json!([duplicate]));
    assert_eq!(answer["applied"], json!([]));

    // error: the shape of the fixture's, with a message saying why.
    let error = &rejected[3];
    let id = error["mutation_id"].as_str().unwrap();
    let mut unknown = mutation_with_id(id, "create", &common::id(), json!({}), now_ms());
    unknown["model"] = json!("Nope");
    let answer = server.push("c", json!([unknown]));
    let got = &answer["rejected"][0];
    assert_eq!(keys(got), keys(error));
    assert_eq!(
        (&got["mutation_id"], &got["reason"]),
        (&error["mutation_id"], &error["reason"])
    );
    assert_eq!(got["data"], json!({"message": "Unknown model [Nope]."}));
}

/// Pushes, at the fixture's apply time, the rows pull-response.json shows.
fn seed_pull_fixture(server: &TestServer) {
    let expected = fixture("pull-response.json");
    let task = &expected["snapshots"][0]["payload"];
    let deleted = expected["snapshots"][1]["entity_id"].as_str().unwrap();
    let project = &expected["snapshots"][2]["payload"];
    server.freeze_clock(Some(FIXTURE_CURSOR));
    let fields = |title: &str| {
        json!({"title": title, "status": task["status"], "priority": task["priority"],
               "due_date": task["due_date"], "done": task["done"], "tags": task["tags"]})
    };
    let entity = task["tether_id"].as_str().unwrap();
    let answer = server.push(
        "c",
        json!([
            mutation("create", "Task", entity, fields("Buy milk"), CREATED_MS),
            mutation(
                "update",
                "Task",
                entity,
                fields(task["title"].as_str().unwrap()),
                CREATED_MS + 5_456
            ),
            mutation(
                "create",
                "Task",
                deleted,
                json!({"title": "Old"}),
                CREATED_MS + 1_000
            ),
            mutation("delete", "Task", deleted, json!([]), CREATED_MS + 2_000),
            mutation(
                "create",
                "Project",
                project["tether_id"].as_str().unwrap(),
                json!({"name": project["name"]}),
                CREATED_MS
            ),
        ]),
    );
    assert_eq!(answer["applied"].as_array().unwrap().len(), 5, "{answer}");
}

#[test]
fn pull_response_fixture_replays() {
    let server = TestServer::start(&["--model", TASK_SOFT, "--model", PROJECT]);
    seed_pull_fixture(&server);
    // One more change later, so that a page of 3 has more after it.
    server.freeze_clock(Some(FIXTURE_CURSOR + 1_000));
    server.push(
        "c",
        json!([mutation(
            "create",
            "Project",
            &id(),
            json!({"name": "Later"}),
            now_ms()
        )]),
    );
    server.freeze_clock(None);

    let expected = fixture("pull-response.json");
    let page = server.pull("c", Some(FIXTURE_CURSOR - 1), Some(3));
    assert_eq!(keys(&page), keys(&expected));
    assert_eq!(page["new_sync_cursor"], expected["new_sync_cursor"]);
    assert_eq!(page["has_more"], expected["has_more"]);
    let snapshots = page["snapshots"].as_array().unwrap();
    let wanted = expected["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), wanted.len(), "{page}");

    // The Task upsert is the fixture's, byte for byte, but for its database id.
    let mut task = snapshots[0].clone();
    assert!(
        task["payload"]["id"].as_i64().is_some_and(|id| id > 0),
        "{task}"
    );
    task["payload"]["id"] = wanted[0]["payload"]["id"].clone();
    assert_eq!(task, wanted[0]);

    // The delete: payload [] exactly.
    assert_eq!(snapshots[1], wanted[1]);

    // The Project: the fixture's fields (the server sends its other attributes as well, which the
    // protocol allows).
    let project = &snapshots[2];
    for key in ["entity_id", "model", "operation"] {
        assert_eq!(project[key], wanted[2][key], "{key}");
    }
    for (key, value) in wanted[2]["payload"].as_object().unwrap() {
        assert_eq!(&project["payload"][key], value, "{key}");
    }
}

#[test]
fn pull_response_last_fixture_replays() {
    let server = TestServer::start(&["--model", TASK_SOFT, "--model", PROJECT]);
    seed_pull_fixture(&server);
    server.freeze_clock(None);
    let page = server.pull("c", Some(FIXTURE_CURSOR), None);
    assert_eq!(page, fixture("pull-response-last.json"));
}

#[test]
fn pull_request_fixtures_are_answered() {
    let server = TestServer::start(&[]);
    let first = server.post("/tether/pull", &fixture("pull-request-first.json"));
    assert_eq!(
        first,
        json!({"snapshots": [], "new_sync_cursor": null, "has_more": false})
    );
    let paged = server.post("/tether/pull", &fixture("pull-request-paged.json"));
    assert_eq!(keys(&paged), keys(&fixture("pull-response-last.json")));
    assert_eq!(
        paged,
        json!({"snapshots": [], "new_sync_cursor": 1_764_072_000_123_456i64, "has_more": false}),
        "nothing new: the request's cursor back"
    );
}

#[test]
fn deleted_at_only_for_models_with_soft_deletes() {
    let server = TestServer::start(&[
        "--model",
        r#"{"name": "Note", "fields": {"title": "nullable"}}"#,
        "--model",
        r#"{"name": "Task", "fields": {"title": "nullable"}, "soft_deletes": true}"#,
    ]);
    let (note, task) = (id(), id());
    let later = now_ms() + 60_000;
    server.push(
        "c",
        json!([
            mutation("create", "Note", &note, json!({"title": "n"}), later),
            mutation("create", "Task", &task, json!({"title": "t"}), later),
        ]),
    );
    let (snapshots, _) = server.pull_all("c", None);
    let plain: BTreeSet<String> = ["id", "tether_id", "title", "created_at", "updated_at"]
        .map(String::from)
        .into();
    let mut soft = plain.clone();
    soft.insert("deleted_at".into());
    assert_eq!(keys(&snapshots[0]["payload"]), plain, "{}", snapshots[0]);
    assert_eq!(keys(&snapshots[1]["payload"]), soft, "{}", snapshots[1]);
    assert_eq!(snapshots[1]["payload"]["deleted_at"], Value::Null);

    let stale = server.push(
        "c",
        json!([
            mutation("update", "Note", &note, json!({"title": "old"}), now_ms()),
            mutation("update", "Task", &task, json!({"title": "old"}), now_ms()),
        ]),
    );
    let states: Vec<BTreeSet<String>> = stale["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| keys(&c["data"]["server_state"]))
        .collect();
    assert_eq!(states, [plain, soft], "{stale}");
}

fn rejected_messages(server: &TestServer, payload: Value) -> Value {
    let answer = server.push(
        "c",
        json!([mutation("create", "Item", &id(), payload, now_ms())]),
    );
    match answer["rejected"].as_array().unwrap().first() {
        Some(r) => {
            assert_eq!(r["reason"], "validation_failed", "{answer}");
            r["data"]["messages"].clone()
        }
        None => {
            assert_eq!(answer["applied"].as_array().unwrap().len(), 1, "{answer}");
            json!({})
        }
    }
}

#[test]
fn laravel_12_messages_for_every_rule() {
    let server = TestServer::start(&[
        "--model",
        r#"{"name": "Item", "fields": {"title": "required|string|max:5", "due_date": "required",
            "priority": "integer|max:10", "score": "numeric|max:2.5", "done": "boolean",
            "tags": "array|max:2", "note": "string", "list": "array", "code": "max:3",
            "maybe": "nullable|integer", "startsAt": "nullable|string"}}"#,
    ]);
    assert_eq!(
        rejected_messages(&server, json!({})),
        json!({"title": ["The title field is required."], "due_date": ["The due date field is required."]})
    );
    assert_eq!(
        rejected_messages(
            &server,
            json!({"title": "   ", "due_date": [], "priority": null, "maybe": null, "startsAt": 5})
        ),
        json!({
            "title": ["The title field is required."],
            "due_date": ["The due date field is required."],
            "priority": ["The priority field must be an integer."],
            "startsAt": ["The starts at field must be a string."],
        }),
        "blank and empty are missing; null fails the rules unless nullable"
    );
    assert_eq!(
        rejected_messages(
            &server,
            json!({"title": "too long", "due_date": "x", "priority": "x", "score": "x",
                   "done": "yes", "tags": "x", "note": 5, "list": 5, "code": "abcd", "maybe": 1.5})
        ),
        json!({
            "title": ["The title field must not be greater than 5 characters."],
            "priority": ["The priority field must be an integer."],
            "score": ["The score field must be a number."],
            "done": ["The done field must be true or false."],
            "tags": ["The tags field must be an array."],
            "note": ["The note field must be a string."],
            "list": ["The list field must be an array."],
            "code": ["The code field must not be greater than 3 characters."],
            "maybe": ["The maybe field must be an integer."],
        })
    );
    assert_eq!(
        rejected_messages(
            &server,
            json!({"title": "ok", "due_date": "x", "priority": 11, "score": "3", "tags": [1, 2, 3]})
        ),
        json!({
            "priority": ["The priority field must not be greater than 10."],
            "score": ["The score field must not be greater than 2.5."],
            "tags": ["The tags field must not have more than 2 items."],
        })
    );
    assert_eq!(
        rejected_messages(
            &server,
            json!({"title": "ok", "due_date": "2026-12-01", "priority": "10", "score": 2.5,
                   "done": "1", "tags": {"a": 1}, "note": "", "list": [], "code": "abc",
                   "maybe": null, "startsAt": null})
        ),
        json!({}),
        "every value here passes Laravel's rules"
    );
}

fn invalid(server: &TestServer, path: &str, body: &str) -> Value {
    let (status, text) = server.post_raw(path, body, None);
    assert_eq!(status, 422, "{body}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn the_422_body_lists_every_invalid_field_like_laravel() {
    let server = TestServer::start(&[]);
    assert_eq!(
        invalid(&server, "/tether/push", r#"{"client_id": "c"}"#),
        json!({"message": "The mutations field is required.",
               "errors": {"mutations": ["The mutations field is required."]}})
    );
    assert_eq!(
        invalid(
            &server,
            "/tether/push",
            r#"{"client_id": "c", "mutations": []}"#
        ),
        json!({"message": "The mutations field is required.",
               "errors": {"mutations": ["The mutations field is required."]}})
    );
    let nothing = json!({
        "message": "The client id field is required. (and 1 more error)",
        "errors": {"client_id": ["The client id field is required."],
                   "mutations": ["The mutations field is required."]},
    });
    for body in ["{}", "not json", "[]", "5", ""] {
        assert_eq!(invalid(&server, "/tether/push", body), nothing, "{body:?}");
    }
    assert_eq!(
        invalid(
            &server,
            "/tether/push",
            r#"{"client_id": 5, "mutations": "all"}"#
        ),
        json!({"message": "The client id field must be a string. (and 1 more error)",
               "errors": {"client_id": ["The client id field must be a string."],
                          "mutations": ["The mutations field must be an array."]}})
    );
    assert_eq!(
        invalid(
            &server,
            "/tether/push",
            r#"{"client_id": "c", "mutations": [{"entity_id": "x"}, {"mutation_id": 7}, 5]}"#
        ),
        json!({"message": "The mutations.0.mutation_id field is required. (and 2 more errors)",
               "errors": {
                   "mutations.0.mutation_id": ["The mutations.0.mutation_id field is required."],
                   "mutations.1.mutation_id": ["The mutations.1.mutation_id field must be a string."],
                   "mutations.2.mutation_id": ["The mutations.2.mutation_id field is required."]}})
    );

    assert_eq!(
        invalid(&server, "/tether/pull", "{}"),
        json!({"message": "The client id field is required.",
               "errors": {"client_id": ["The client id field is required."]}})
    );
    assert_eq!(
        invalid(
            &server,
            "/tether/pull",
            r#"{"client_id": "c", "last_sync_cursor": "soon", "limit": 0}"#
        ),
        json!({"message": "The last sync cursor field must be an integer. (and 1 more error)",
               "errors": {"last_sync_cursor": ["The last sync cursor field must be an integer."],
                          "limit": ["The limit field must be at least 1."]}})
    );
    assert_eq!(
        invalid(
            &server,
            "/tether/pull",
            r#"{"client_id": "c", "last_sync_cursor": null, "limit": "many"}"#
        ),
        json!({"message": "The limit field must be an integer.",
               "errors": {"limit": ["The limit field must be an integer."]}})
    );
    assert_eq!(
        invalid(
            &server,
            "/tether/pull",
            r#"{"client_id": "c", "last_sync_cursor": 1.5e300}"#
        )["errors"],
        json!({"last_sync_cursor": ["The last sync cursor field must be an integer."]})
    );
}
