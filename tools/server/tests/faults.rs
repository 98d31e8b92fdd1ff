//! Fault injection (test controls) and what a client sees.
mod common;
use common::*;
use serde_json::json;

#[test]
fn injected_status_and_html_do_not_apply() {
    let server = TestServer::start(&[]);
    server.fault(
        json!([{"path": "/tether/push", "status": 503}, {"path": "/tether/push", "body": "html"}]),
    );
    let body = json!({"client_id": "c", "mutations": [mutation("create", "Task", &id(), json!({"title": "x"}), now_ms())]}).to_string();
    let (status, text) = server.post_raw("/tether/push", &body, None);
    assert_eq!(status, 503);
    assert!(text.starts_with('{'), "{text}");
    let (status, text) = server.post_raw("/tether/push", &body, None);
    assert_eq!(status, 200);
    assert!(text.starts_with("<html>"));
    assert_eq!(server.pull_all("c", None).0.len(), 0, "nothing applied");
}

#[test]
fn a_dropped_answer_after_applying_is_safe_to_resend() {
    let server = TestServer::start(&[]);
    server.fault(json!({"path": "/tether/push", "body": "drop"}));
    let create = mutation("create", "Task", &id(), json!({"title": "once"}), now_ms());
    let body = json!({"client_id": "c", "mutations": [create]}).to_string();
    let (status, text) = server.post_raw("/tether/push", &body, None);
    let complete = status == 200 && serde_json::from_str::<serde_json::Value>(&text).is_ok();
    assert!(
        !complete,
        "the client must not get a usable answer: {status} {text}"
    );
    let resent = server.post("/tether/push", &serde_json::from_str(&body).unwrap());
    assert_eq!(resent["applied"], json!([create["mutation_id"]]));
    assert_eq!(
        server.pull_all("c", None).0.len(),
        1,
        "applied exactly once"
    );
}

#[test]
fn truncated_answers_and_delays() {
    let server = TestServer::start(&[]);
    server.fault(json!({"path": "/tether/pull", "body": "truncated", "delay_ms": 300}));
    let started = std::time::Instant::now();
    let (status, text) = server.post_raw(
        "/tether/pull",
        r#"{"client_id": "c", "last_sync_cursor": null}"#,
        None,
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(status, 200);
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );
    let (_, text) = server.post_raw(
        "/tether/pull",
        r#"{"client_id": "c", "last_sync_cursor": null}"#,
        None,
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_ok(),
        "one fault, one request"
    );
}

#[test]
fn test_controls_refuse_non_loopback_addresses() {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tether-server"))
        .args(["--listen", "0.0.0.0:0", "--test-controls"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
