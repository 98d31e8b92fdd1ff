//! Leaving the server running: transactions that always end, a clock that never goes back across
//! restarts, size and time limits, other processes on the database, a config that grows, a log
//! that cannot be forged, and panics that are answered and logged.
mod common;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn create(title: &str) -> Value {
    mutation("create", "Task", &id(), json!({ "title": title }), now_ms())
}

fn push_body(mutations: Value) -> String {
    json!({"client_id": "c", "mutations": mutations}).to_string()
}

fn titles(server: &TestServer) -> Vec<String> {
    let (snapshots, _) = server.pull_all("c", None);
    snapshots
        .iter()
        .map(|s| {
            s["payload"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn now_us() -> i64 {
    now_ms() * 1000
}

#[test]
fn a_push_failing_inside_its_transaction_rolls_back_and_the_next_request_works() {
    let server = TestServer::start(&[]);
    server.fault(json!({"path": "/tether/push", "fail": "before_commit"}));
    let (status, text) = server.post_raw(
        "/tether/push",
        &push_body(json!([create("lost"), create("lost too")])),
        None,
    );
    assert_eq!(
        (status, text.as_str()),
        (500, r#"{"message":"Server Error"}"#),
        "a failure answers 500 without its internal text"
    );
    assert_eq!(titles(&server), Vec::<String>::new(), "nothing was applied");
    let answer = server.push("c", json!([create("kept")]));
    assert_eq!(answer["applied"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(titles(&server), ["kept"]);
}

#[test]
fn a_panicking_request_is_answered_500_logged_and_the_server_goes_on() {
    let server = TestServer::start_logged(&[]);
    server.fault(json!({"path": "/tether/push", "fail": "panic"}));
    let (status, text) = server.post_raw("/tether/push", &push_body(json!([create("lost")])), None);
    assert_eq!(
        (status, text.as_str()),
        (500, r#"{"message":"Server Error"}"#)
    );
    let answer = server.push("c", json!([create("kept")]));
    assert_eq!(answer["applied"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(
        titles(&server),
        ["kept"],
        "the panicked push was rolled back"
    );
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("POST /tether/push 500") && l.contains("panic: injected panic")),
        "{log}"
    );
}

#[test]
fn a_database_error_is_logged_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let server = TestServer::start_logged(&["--db", db.to_str().unwrap()]);
    let other = rusqlite::Connection::open(&db).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON tasks
             BEGIN SELECT RAISE(ABORT, 'secret internal detail'); END;",
        )
        .unwrap();
    let answer = server.push("c", json!([create("refused")]));
    let rejection = &answer["rejected"][0];
    assert_eq!(rejection["reason"], "error", "{answer}");
    assert!(
        !answer.to_string().contains("secret"),
        "the database's text stays on the server: {answer}"
    );
    assert!(server.log().contains("secret internal detail"));
    other.execute_batch("DROP TRIGGER boom").unwrap();
    let answer = server.push("c", json!([create("accepted")]));
    assert_eq!(answer["applied"].as_array().unwrap().len(), 1, "{answer}");
}

#[test]
fn another_process_holding_the_database_makes_requests_wait_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let server = TestServer::start(&["--db", db.to_str().unwrap()]);
    server.push("c", json!([create("first")]));

    // A reader in the middle of a long read.
    let reader = rusqlite::Connection::open(&db).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    let answer = server.push("c", json!([create("during a read")]));
    assert_eq!(answer["applied"].as_array().unwrap().len(), 1, "{answer}");
    reader.execute_batch("COMMIT").unwrap();

    // A writer holding the lock for a moment.
    let writer = rusqlite::Connection::open(&db).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        writer.execute_batch("COMMIT").unwrap();
    });
    let answer = server.push("c", json!([create("after a write")]));
    assert_eq!(answer["applied"].as_array().unwrap().len(), 1, "{answer}");
    release.join().unwrap();
    assert_eq!(titles(&server).len(), 3);
}

#[test]
fn the_clock_never_gives_a_cursor_below_one_handed_out_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let db = db.to_str().unwrap();
    // The first run hands out a cursor an hour ahead of this clock (as after a clock stepped
    // back, or a move to a machine whose clock is behind).
    let ahead = now_us() + 3_600_000_000;
    let cursor = {
        let server = TestServer::start(&["--db", db]);
        server.freeze_clock(Some(ahead));
        server.push("c", json!([create("before the restart")]));
        let page = server.pull("c", None, None);
        assert_eq!(page["new_sync_cursor"], ahead);
        page["new_sync_cursor"].as_i64()
    };
    let server = TestServer::start(&["--db", db]);
    server.push("c", json!([create("after the restart")]));
    let page = server.pull("c", cursor, None);
    let got: Vec<&Value> = page["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["payload"]["title"])
        .collect();
    assert_eq!(got, [&json!("after the restart")], "{page}");
    assert!(page["new_sync_cursor"].as_i64() > cursor);
}

#[test]
fn consecutive_changes_get_increasing_cursors() {
    let server = TestServer::start(&[]);
    let mut cursor = None;
    for i in 0..50 {
        server.push("c", json!([create(&format!("t{i}"))]));
        let page = server.pull("c", cursor, None);
        assert_eq!(page["snapshots"].as_array().unwrap().len(), 1, "{page}");
        assert!(page["new_sync_cursor"].as_i64() > cursor);
        cursor = page["new_sync_cursor"].as_i64();
    }
}

#[test]
fn a_field_added_to_a_model_of_an_existing_database_becomes_a_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let db = db.to_str().unwrap();
    let old = id();
    {
        let server = TestServer::start(&[
            "--db",
            db,
            "--model",
            r#"{"name": "Note", "fields": {"title": "required"}}"#,
        ]);
        server.push(
            "c",
            json!([mutation(
                "create",
                "Note",
                &old,
                json!({"title": "old"}),
                now_ms()
            )]),
        );
    }
    let server = TestServer::start(&[
        "--db",
        db,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required", "body": "nullable|string"}}"#,
    ]);
    let new = id();
    let answer = server.push(
        "c",
        json!([mutation(
            "create",
            "Note",
            &new,
            json!({"title": "new", "body": "text"}),
            now_ms()
        )]),
    );
    assert_eq!(answer["applied"].as_array().unwrap().len(), 1, "{answer}");
    let (snapshots, _) = server.pull_all("c", None);
    let bodies: Vec<(&Value, &Value)> = snapshots
        .iter()
        .map(|s| (&s["entity_id"], &s["payload"]["body"]))
        .collect();
    assert_eq!(
        bodies,
        [(&json!(old), &Value::Null), (&json!(new), &json!("text"))],
        "the new column is null in the rows already there"
    );
}

/// Sends raw bytes and returns what comes back until the server closes or `wait` passes.
fn raw_exchange(address: &str, request: &[u8], wait: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => break,
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn bodies_over_the_limit_get_a_clear_413() {
    let server = TestServer::start(&["--max-body", "2K"]);
    let big = json!({"client_id": "x".repeat(3000), "mutations": [create("t")]}).to_string();
    let (status, text) = server.post_raw("/tether/push", &big, None);
    assert_eq!(
        (status, text.as_str()),
        (413, r#"{"message":"The POST data is too large."}"#)
    );
    // The same without a Content-Length: counted while read.
    let address = server.address();
    let chunked = format!(
        "POST /tether/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let (answer, _) = raw_exchange(&address, chunked.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.ends_with(r#"{"message":"The POST data is too large."}"#),
        "{answer}"
    );
    // Under the limit all is well.
    let answer = server.push("c", json!([create("small")]));
    assert_eq!(answer["applied"].as_array().unwrap().len(), 1);

    // The default limit is 8 MiB; a client still sending a larger body gets the answer too.
    let server = TestServer::start(&[]);
    let huge = json!({"client_id": "x".repeat(9 << 20), "mutations": [create("t")]}).to_string();
    for _ in 0..3 {
        let (status, text) = server.post_raw("/tether/push", &huge, None);
        assert_eq!(
            (status, text.as_str()),
            (413, r#"{"message":"The POST data is too large."}"#)
        );
    }
    // A declared length far beyond it is refused without waiting for the body.
    let (answer, _) = raw_exchange(
        &server.address(),
        b"POST /tether/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 268435456\r\n\r\n{",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn slow_clients_are_cut_off() {
    let server = TestServer::start(&["--read-timeout", "0.5"]);
    let address = server.address();
    // Headers that never end.
    let (answer, took) = raw_exchange(
        &address,
        b"POST /tether/pull HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(10),
    );
    assert!(
        took < Duration::from_secs(5),
        "closed after {took:?}: {answer}"
    );
    // A body that never ends.
    let (answer, took) = raw_exchange(
        &address,
        b"POST /tether/pull HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"client_id\"",
        Duration::from_secs(10),
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Everyone else is served as usual.
    let page = server.pull("c", None, None);
    assert_eq!(page["has_more"], false);
}

#[test]
fn huge_limits_and_cursors_do_not_overflow() {
    let server = TestServer::start(&[]);
    server.push("c", json!([create("one")]));
    for limit in [i64::MAX, i64::MAX - 1, 1 << 40, u32::MAX as i64] {
        let page = server.pull("c", None, Some(limit));
        assert_eq!(
            page["snapshots"].as_array().unwrap().len(),
            1,
            "{limit}: {page}"
        );
        assert_eq!(page["has_more"], false);
    }
    for cursor in [i64::MAX, i64::MIN, -1] {
        let page = server.pull("c", Some(cursor), Some(i64::MAX));
        assert!(page["snapshots"].is_array(), "{cursor}: {page}");
    }
    let (status, _) = server.post_raw(
        "/tether/pull",
        r#"{"client_id": "c", "last_sync_cursor": null, "limit": 18446744073709551615}"#,
        None,
    );
    assert_eq!(status, 422, "beyond PHP's integers");
}

#[test]
fn client_strings_cannot_forge_log_lines() {
    let server = TestServer::start_logged(&[]);
    let forged = "evil\nPOST /tether/push 200 client=\"admin\" forged\r\x1b[2J";
    let body = json!({"client_id": forged, "mutations": [create("t")]});
    server.post("/tether/push", &body);
    server.post(
        "/tether/pull",
        &json!({"client_id": forged, "last_sync_cursor": null}),
    );
    let (status, _) = server.post_raw("/nowhere%0Aforged", "{}", None);
    assert_eq!(status, 404);
    let log = server.log();
    assert!(!log.contains('\x1b'), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("forged") && !l.contains("evil") && !l.contains("/nowhere")),
        "{log}"
    );
    assert!(
        log.contains(r#"client="evil\nPOST /tether/push 200 client=\"admin\" forged\r\u{1b}[2J""#),
        "{log}"
    );
}
