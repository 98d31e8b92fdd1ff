//! POST /tether/push over real HTTP: every outcome of the protocol's server behaviour.
mod common;
use common::*;
use serde_json::json;

#[test]
fn each_rejection_reason_and_applied() {
    let server = TestServer::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": "required|max:10", "priority": "integer"}, "soft_deletes": true}"#,
    ]);
    let ok = mutation(
        "create",
        "Task",
        &id(),
        json!({"title": "Milk", "priority": 2}),
        now_ms(),
    );
    let too_long = mutation(
        "create",
        "Task",
        &id(),
        json!({"title": "far too long a title", "priority": "x"}),
        now_ms(),
    );
    let missing = mutation("update", "Task", &id(), json!({"title": "Ghost"}), now_ms());
    let unknown = mutation("create", "Nope", &id(), json!({}), now_ms());
    let answer = server.push("c1", json!([ok, too_long, missing, unknown]));
    assert_eq!(answer["applied"], json!([ok["mutation_id"]]));
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3);
    assert_eq!(rejected[0]["mutation_id"], too_long["mutation_id"]);
    assert_eq!(rejected[0]["reason"], "validation_failed");
    assert_eq!(
        rejected[0]["data"]["messages"]["title"],
        json!(["The title field must not be greater than 10 characters."])
    );
    assert_eq!(
        rejected[0]["data"]["messages"]["priority"],
        json!(["The priority field must be an integer."])
    );
    assert_eq!(
        (
            rejected[1]["reason"].as_str(),
            rejected[1]["data"]["entity_id"].clone()
        ),
        (Some("not_found"), missing["entity_id"].clone())
    );
    assert_eq!(rejected[2]["reason"], "error");
    assert!(rejected[2]["data"]["message"]
        .as_str()
        .unwrap()
        .contains("Nope"));
    assert_eq!(answer["conflicts"], json!([]));
}

#[test]
fn duplicates_are_listed_as_applied_but_not_applied_again() {
    let server = TestServer::start(&[]);
    let entity = id();
    let create = mutation(
        "create",
        "Task",
        &entity,
        json!({"title": "first"}),
        now_ms(),
    );
    server.push("c1", json!([create]));
    let update = mutation(
        "update",
        "Task",
        &entity,
        json!({"title": "second"}),
        now_ms() + 10,
    );
    server.push("c1", json!([update]));
    let replay = server.push("c1", json!([create]));
    assert_eq!(replay["applied"], json!([create["mutation_id"]]));
    let (snapshots, _) = server.pull_all("c1", None);
    assert_eq!(snapshots.len(), 1);
    assert_eq!(
        snapshots[0]["payload"]["title"], "second",
        "the replayed create changed nothing"
    );
}

#[test]
fn strict_mode_rejects_duplicates() {
    let server = TestServer::start(&["--strict-duplicates"]);
    let create = mutation("create", "Task", &id(), json!({"title": "once"}), now_ms());
    server.push("c1", json!([create]));
    let replay = server.push("c1", json!([create]));
    assert_eq!(replay["applied"], json!([]));
    assert_eq!(replay["rejected"][0]["reason"], "duplicate");
}

#[test]
fn creates_are_idempotent_by_sync_key() {
    let server = TestServer::start(&[]);
    let entity = create_task(&server, "c1", "a");
    let again = server.push(
        "c1",
        json!([mutation(
            "create",
            "Task",
            &entity,
            json!({"title": "b"}),
            now_ms()
        )]),
    );
    assert_eq!(again["applied"].as_array().unwrap().len(), 1);
    let (snapshots, _) = server.pull_all("c1", None);
    assert_eq!(snapshots.len(), 1, "one row, updated");
    assert_eq!(snapshots[0]["payload"]["title"], "b");
}

#[test]
fn an_older_update_or_delete_conflicts_and_a_newer_one_applies() {
    let server = TestServer::start(&[]);
    let entity = create_task(&server, "c1", "server");
    let stale = mutation(
        "update",
        "Task",
        &entity,
        json!({"title": "stale"}),
        now_ms() - 60_000,
    );
    let stale_delete = mutation("delete", "Task", &entity, json!([]), now_ms() - 60_000);
    let answer = server.push("c2", json!([stale, stale_delete]));
    let conflicts = answer["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 2);
    assert_eq!(conflicts[0]["mutation_id"], stale["mutation_id"]);
    assert_eq!(conflicts[0]["reason"], "conflict");
    let state = &conflicts[0]["data"]["server_state"];
    assert_eq!(
        (state["tether_id"].as_str(), state["title"].as_str()),
        (Some(entity.as_str()), Some("server"))
    );
    let updated_at = conflicts[0]["data"]["server_updated_at"].as_str().unwrap();
    assert!(
        updated_at.ends_with("+00:00") && updated_at.len() == 25,
        "{updated_at}"
    );

    std::thread::sleep(std::time::Duration::from_millis(5));
    let fresh = mutation(
        "update",
        "Task",
        &entity,
        json!({"title": "fresh"}),
        now_ms(),
    );
    let answer = server.push("c2", json!([fresh]));
    assert_eq!(answer["applied"], json!([fresh["mutation_id"]]));
    assert_eq!(answer["conflicts"], json!([]));
}

#[test]
fn only_writable_fields_are_taken() {
    let server = TestServer::start(&[]);
    let entity = id();
    server.push(
        "c1",
        json!([mutation(
            "create",
            "Task",
            &entity,
            json!({"title": "t", "id": 999, "secret": "x", "created_at": "1999-01-01"}),
            now_ms()
        )]),
    );
    let (snapshots, _) = server.pull_all("c1", None);
    let payload = &snapshots[0]["payload"];
    assert_ne!(payload["id"], 999);
    assert!(payload.get("secret").is_none());
    assert_ne!(payload["created_at"], "1999-01-01");
}

#[test]
fn malformed_requests_get_422_json_and_unknown_routes_json() {
    let server = TestServer::start(&[]);
    for body in [
        "not json",
        "[]",
        r#"{"mutations": []}"#,
        r#"{"client_id": "c", "mutations": {}}"#,
        r#"{"client_id": "c", "mutations": [{"entity_id": "x"}]}"#,
    ] {
        let (status, text) = server.post_raw("/tether/push", body, None);
        assert_eq!(status, 422, "{body}: {text}");
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("422 answers are JSON");
        assert!(
            parsed["message"].is_string() && parsed["errors"].is_object(),
            "{text}"
        );
    }
    for body in [
        r#"{"client_id": "c", "last_sync_cursor": "soon"}"#,
        r#"{"client_id": "c", "last_sync_cursor": null, "limit": 0}"#,
    ] {
        assert_eq!(server.post_raw("/tether/pull", body, None).0, 422, "{body}");
    }
    let (status, text) = server.post_raw("/nowhere", "{}", None);
    assert_eq!(status, 404);
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_ok(),
        "{text}"
    );
}

#[test]
fn a_configured_token_is_required() {
    let server = TestServer::start(&["--token", "s3cret"]);
    let create = mutation("create", "Task", &id(), json!({"title": "t"}), now_ms());
    let body = json!({"client_id": "c", "mutations": [create]}).to_string();
    let (status, text) = server.post_raw("/tether/push", &body, None);
    assert_eq!(
        (status, text.as_str()),
        (401, r#"{"message":"Unauthenticated."}"#)
    );
    assert_eq!(server.post_raw("/tether/push", &body, Some("wrong")).0, 401);
    assert_eq!(
        server
            .post_raw(
                "/tether/pull",
                r#"{"client_id": "c", "last_sync_cursor": null}"#,
                Some("s3cret")
            )
            .0,
        200
    );
    assert_eq!(
        server.post_raw("/tether/push", &body, Some("s3cret")).0,
        200
    );
}

#[test]
fn fixtures_parse_and_answers_have_their_shape() {
    let server = TestServer::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": "required|max:10", "status": "", "priority": "integer", "due_date": ""}, "soft_deletes": true}"#,
    ]);
    for name in [
        "pull-request-first.json",
        "pull-request-paged.json",
        "pull-response-last.json",
        "pull-response.json",
        "push-request.json",
        "push-response.json",
    ] {
        fixture(name);
    }
    let request = fixture("push-request.json");
    let answer = server.post("/tether/push", &request);
    let expected = fixture("push-response.json");
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&answer), keys(&expected));
    // The fixture's update is too long for max:10 and its delete targets a missing row.
    assert_eq!(answer["applied"], json!(["01JDQ90A1B2C3D4E5F6G7H8J9K"]));
    assert_eq!(answer["rejected"][0]["reason"], "validation_failed");
    assert_eq!(keys(&answer["rejected"][0]), keys(&expected["rejected"][0]));
    assert_eq!(answer["rejected"][1]["reason"], "not_found");

    let pull = server.post("/tether/pull", &fixture("pull-request-first.json"));
    assert_eq!(keys(&pull), keys(&fixture("pull-response.json")));
    let snapshot = &pull["snapshots"][0];
    assert_eq!(
        keys(snapshot),
        keys(&fixture("pull-response.json")["snapshots"][0])
    );
    for field in [
        "id",
        "tether_id",
        "title",
        "created_at",
        "updated_at",
        "deleted_at",
    ] {
        assert!(
            snapshot["payload"].get(field).is_some(),
            "payload has {field}: {snapshot}"
        );
    }
    let paged = server.post("/tether/pull", &fixture("pull-request-paged.json"));
    assert_eq!(keys(&paged), keys(&fixture("pull-response-last.json")));
}

#[test]
fn a_client_editing_its_new_row_before_pushing_does_not_conflict_with_itself() {
    let server = TestServer::start(&[]);
    let entity = id();
    let t = now_ms() - 30_000;
    let answer = server.push(
        "c1",
        json!([
            mutation("create", "Task", &entity, json!({"title": "draft"}), t),
            mutation("update", "Task", &entity, json!({"title": "final"}), t + 5),
        ]),
    );
    assert_eq!(answer["applied"].as_array().unwrap().len(), 2, "{answer}");
    let (snapshots, _) = server.pull_all("c2", None);
    assert_eq!(snapshots[0]["payload"]["title"], "final");
    let updated_at = snapshots[0]["payload"]["updated_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        updated_at.starts_with(&tether_time(t + 5)),
        "updated_at is the client's change time: {updated_at}"
    );
}

#[test]
fn a_change_made_offline_long_ago_still_reaches_clients_that_pulled_since() {
    let server = TestServer::start(&[]);
    create_task(&server, "c1", "first");
    let (_, pages) = server.pull_all("c2", None);
    let cursor = pages.last().unwrap()["new_sync_cursor"].as_i64();
    let old = now_ms() - 3_600_000;
    server.push(
        "c3",
        json!([mutation(
            "create",
            "Task",
            &id(),
            json!({"title": "made offline an hour ago"}),
            old
        )]),
    );
    let page = server.pull("c2", cursor, None);
    assert_eq!(
        page["snapshots"][0]["payload"]["title"],
        "made offline an hour ago"
    );
}

/// `2026-11-25T12:00:05.456` for Unix milliseconds.
fn tether_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}
