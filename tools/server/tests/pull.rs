//! POST /tether/pull over real HTTP: order, paging, cursors, deletes, scopes.
mod common;
use std::collections::HashMap;

use common::*;
use serde_json::{json, Value};

fn create_many(server: &TestServer, client: &str, model: &str, n: usize) -> Vec<String> {
    let entities: Vec<String> = (0..n).map(|_| id()).collect();
    let mutations: Vec<Value> = entities
        .iter()
        .map(|e| mutation("create", model, e, json!({"title": e, "name": e}), now_ms()))
        .collect();
    let answer = server.push(client, json!(mutations));
    assert_eq!(answer["applied"].as_array().unwrap().len(), n, "{answer}");
    entities
}

fn counts(snapshots: &[Value]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for s in snapshots {
        *seen
            .entry(s["entity_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    seen
}

#[test]
fn a_thousand_rows_sharing_one_change_time_arrive_exactly_once_with_limit_7() {
    let server = TestServer::start(&[]);
    server.freeze_clock(Some(1_764_072_000_123_456));
    let entities = create_many(&server, "c1", "Task", 1000);
    let (snapshots, pages) = server.pull_all("c1", Some(7));
    let seen = counts(&snapshots);
    assert_eq!(seen.len(), 1000);
    assert!(
        entities.iter().all(|e| seen[e] == 1),
        "every row exactly once"
    );
    assert_eq!(pages[0]["new_sync_cursor"], 1_764_072_000_123_456i64);
}

#[test]
fn groups_of_equal_change_times_are_never_split_across_pages() {
    let server = TestServer::start(&[]);
    let mut all = Vec::new();
    for (i, n) in [10usize, 10, 3, 1, 12].iter().enumerate() {
        server.freeze_clock(Some(1_764_072_000_000_000 + i as i64 * 1000));
        all.extend(create_many(&server, "c1", "Task", *n));
    }
    server.freeze_clock(None);
    let (snapshots, pages) = server.pull_all("c1", Some(7));
    let seen = counts(&snapshots);
    assert_eq!(seen.len(), all.len());
    assert!(seen.values().all(|n| *n == 1));
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["snapshots"].as_array().unwrap().len())
        .collect();
    assert_eq!(
        sizes,
        [10, 10, 4, 12],
        "pages end only between change times"
    );
    let last = pages.last().unwrap();
    assert_eq!(last["has_more"], false);
    let again = server.pull("c1", last["new_sync_cursor"].as_i64(), Some(7));
    assert_eq!(
        (
            again["snapshots"].as_array().unwrap().len(),
            again["new_sync_cursor"].clone()
        ),
        (0, last["new_sync_cursor"].clone()),
        "nothing new: empty list, same cursor"
    );
}

#[test]
fn models_come_in_registration_order_and_changes_in_time_order() {
    let server = TestServer::start(&[]);
    server.freeze_clock(Some(1_764_000_000_000_000));
    let task = create_many(&server, "c1", "Task", 1);
    let project = create_many(&server, "c1", "Project", 1);
    server.freeze_clock(Some(1_764_000_000_000_001));
    let answer = server.push(
        "c1",
        json!([mutation(
            "update",
            "Task",
            &task[0],
            json!({"title": "later"}),
            now_ms() + 1_000
        )]),
    );
    assert_eq!(
        answer["applied"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    server.freeze_clock(None);
    let (snapshots, _) = server.pull_all("c1", None);
    let order: Vec<(&str, &str)> = snapshots
        .iter()
        .map(|s| {
            (
                s["model"].as_str().unwrap(),
                s["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [("Project", "upsert"), ("Task", "upsert")],
        "Project registered first; the task's later change moves it after"
    );
    assert_eq!(snapshots[1]["payload"]["title"], "later");
    assert_eq!(snapshots[0]["entity_id"], project[0].as_str());
}

#[test]
fn deletes_arrive_as_delete_snapshots_with_or_without_soft_deletes() {
    let server = TestServer::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": ""}, "soft_deletes": true}"#,
        "--model",
        r#"{"name": "Note", "fields": {"title": ""}}"#,
    ]);
    let task = create_many(&server, "c1", "Task", 1);
    let note = create_many(&server, "c1", "Note", 1);
    let (_, pages) = server.pull_all("c1", None);
    let cursor = pages.last().unwrap()["new_sync_cursor"].as_i64();
    std::thread::sleep(std::time::Duration::from_millis(2));
    server.push(
        "c1",
        json!([
            mutation("delete", "Task", &task[0], json!([]), now_ms()),
            mutation("delete", "Note", &note[0], json!([]), now_ms()),
        ]),
    );
    let page = server.pull("c1", cursor, None);
    let snapshots = page["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 2);
    for s in snapshots {
        assert_eq!(
            (s["operation"].as_str(), s["payload"].clone()),
            (Some("delete"), json!([]))
        );
    }
    let again = server.push(
        "c1",
        json!([mutation(
            "update",
            "Task",
            &task[0],
            json!({"title": "zombie"}),
            now_ms()
        )]),
    );
    assert_eq!(
        again["rejected"][0]["reason"], "not_found",
        "a soft-deleted row is not found"
    );
}

#[test]
fn a_scope_isolates_clients() {
    let server = TestServer::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": ""}, "soft_deletes": true, "scope": "owner_id"}"#,
    ]);
    let mine = create_many(&server, "alice", "Task", 2);
    create_many(&server, "bob", "Task", 1);
    let (alice, _) = server.pull_all("alice", None);
    assert_eq!(alice.len(), 2);
    assert!(alice.iter().all(|s| s["payload"]["owner_id"] == "alice"));
    let (bob, _) = server.pull_all("bob", None);
    assert_eq!(bob.len(), 1);
    let intrusion = server.push(
        "bob",
        json!([
            mutation(
                "update",
                "Task",
                &mine[0],
                json!({"title": "mine now"}),
                now_ms()
            ),
            mutation("delete", "Task", &mine[1], json!([]), now_ms()),
            mutation(
                "create",
                "Task",
                &mine[1],
                json!({"title": "taken"}),
                now_ms()
            ),
        ]),
    );
    let reasons: Vec<&str> = intrusion["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["not_found", "not_found", "validation_failed"]);
    let (alice_again, _) = server.pull_all("alice", None);
    assert!(alice_again
        .iter()
        .all(|s| s["payload"]["title"] != "mine now" && s["operation"] == "upsert"));
}
