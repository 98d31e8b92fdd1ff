//! Adversarial review: behaviour that still differs from the Laravel `tether/server` package (on a
//! default Laravel 12 application) or that does not hold up when the server is left running.
mod common;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn task_payloads(server: &TestServer, client: &str) -> Vec<Value> {
    let (snapshots, _) = server.pull_all(client, None);
    snapshots
        .into_iter()
        .map(|s| s["payload"].clone())
        .collect()
}

/// Laravel 12's default global middleware includes `TrimStrings` and `ConvertEmptyStringsToNull`,
/// which also clean JSON bodies (recursively, so `mutations.*.payload.*` too): a title sent as
/// "  Buy milk  " is validated and stored as "Buy milk", and "" (or "   ") becomes null before
/// the validator sees it.
#[test]
fn strings_are_trimmed_and_blank_strings_become_null_like_laravels_global_middleware() {
    let server = TestServer::start(&[
        "--trim-strings",
        "--model",
        r#"{"name": "Task", "fields": {"title": "required|max:5", "priority": "nullable|integer", "note": "nullable"}, "soft_deletes": true}"#,
    ]);
    // "  Milk  " is 8 characters raw but 4 after TrimStrings: Laravel accepts it under max:5.
    let entity = id();
    let answer = server.push(
        "c",
        json!([mutation(
            "create",
            "Task",
            &entity,
            json!({"title": "  Milk  ", "priority": "", "note": "   "}),
            now_ms()
        )]),
    );
    assert_eq!(
        answer["applied"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    let payloads = task_payloads(&server, "c");
    assert_eq!(payloads[0]["title"], "Milk", "{}", payloads[0]);
    assert_eq!(payloads[0]["priority"], Value::Null, "{}", payloads[0]);
    assert_eq!(payloads[0]["note"], Value::Null, "{}", payloads[0]);
}

/// Same middleware, seen from the validator: a blank string for a non-nullable `integer` field
/// becomes null, and null fails `integer` ("The n field must be an integer.").
#[test]
fn a_blank_string_for_a_non_nullable_integer_fails_like_laravel() {
    let server = TestServer::start(&[
        "--trim-strings",
        "--model",
        r#"{"name": "Task", "fields": {"title": "required", "n": "integer"}}"#,
    ]);
    let answer = server.push(
        "c",
        json!([mutation(
            "create",
            "Task",
            &id(),
            json!({"title": "t", "n": ""}),
            now_ms()
        )]),
    );
    assert_eq!(
        answer["rejected"][0]["data"]["messages"],
        json!({"n": ["The n field must be an integer."]}),
        "{answer}"
    );
}

/// Laravel's `Request::bearerToken()` finds "Bearer " case-insensitively (`strripos`), so a
/// client sending `Authorization: bearer TOKEN` is authenticated by Sanctum.
#[test]
fn the_bearer_scheme_is_case_insensitive_like_laravel() {
    let server = TestServer::start(&["--token", "s3cret"]);
    let (answer, _) = raw_exchange(
        &server.address(),
        b"POST /tether/pull HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: bearer s3cret\r\nContent-Length: 44\r\nConnection: close\r\n\r\n{\"client_id\": \"c\", \"last_sync_cursor\": null}",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A client that sends its timestamp in microseconds by mistake (or a clock in the far future)
/// moves the row's `updated_at` thousands of years ahead: from then on every correct update and
/// delete of that row conflicts, forever. Laravel cannot store such a date (MySQL DATETIME ends
/// in 9999, Carbon's `Y-m-d H:i:s` has 4-digit years), so it never accepts it.
#[test]
fn a_timestamp_beyond_year_9999_does_not_lock_the_row_forever() {
    let server = TestServer::start(&[]);
    let entity = id();
    let micros_by_mistake = now_ms() * 1000;
    server.push(
        "c",
        json!([mutation(
            "create",
            "Task",
            &entity,
            json!({"title": "t"}),
            now_ms()
        )]),
    );
    let bad = server.push(
        "c",
        json!([mutation(
            "update",
            "Task",
            &entity,
            json!({"title": "bad clock"}),
            micros_by_mistake
        )]),
    );
    let correct = server.push(
        "c",
        json!([mutation(
            "update",
            "Task",
            &entity,
            json!({"title": "right"}),
            now_ms() + 1000
        )]),
    );
    assert_eq!(
        correct["applied"].as_array().map(Vec::len),
        Some(1),
        "after {bad}, a correct update is refused: {correct}"
    );
}

/// A timestamp beyond what the server can represent produces `"created_at": ""` and
/// `"updated_at": ""` in snapshots and `"server_updated_at": ""` in conflicts: not dates.
#[test]
fn an_out_of_range_timestamp_never_yields_empty_dates() {
    let server = TestServer::start(&[]);
    let entity = id();
    let answer = server.push(
        "c",
        json!([mutation(
            "create",
            "Task",
            &entity,
            json!({"title": "t"}),
            9_000_000_000_000_000_i64
        )]),
    );
    if answer["applied"].as_array().map(Vec::len) == Some(1) {
        let payloads = task_payloads(&server, "c");
        for key in ["created_at", "updated_at"] {
            assert_ne!(payloads[0][key], "", "{}", payloads[0]);
        }
        let conflict = server.push(
            "c",
            json!([mutation(
                "update",
                "Task",
                &entity,
                json!({"title": "u"}),
                now_ms()
            )]),
        );
        assert_ne!(
            conflict["conflicts"][0]["data"]["server_updated_at"], "",
            "{conflict}"
        );
    }
}

/// Eight clients pushing at once (with overlapping resends of the same mutations): no 500, every
/// mutation applied exactly once, every row pulled exactly once with increasing cursors.
#[test]
fn eight_clients_pushing_at_once_lose_nothing_and_apply_nothing_twice() {
    let server = std::sync::Arc::new(TestServer::start(&[]));
    let batches: Vec<Vec<Value>> = (0..8)
        .map(|c| {
            (0..40)
                .map(|i| {
                    mutation(
                        "create",
                        "Task",
                        &id(),
                        json!({"title": format!("c{c}-{i}"), "priority": i}),
                        now_ms(),
                    )
                })
                .collect()
        })
        .collect();
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|c| {
            let server = server.clone();
            let start = start.clone();
            // Each client also resends its neighbour's batch, as after a lost answer.
            let mine = batches[c].clone();
            let theirs = batches[(c + 1) % 8].clone();
            std::thread::spawn(move || {
                start.wait();
                let mut statuses = Vec::new();
                for chunk in mine.chunks(5).chain(theirs.chunks(7)) {
                    let body =
                        json!({"client_id": format!("client{c}"), "mutations": chunk}).to_string();
                    let (status, text) = server.post_raw("/tether/push", &body, None);
                    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    statuses.push((status, answer["applied"].as_array().map_or(0, Vec::len)));
                    // Interleave pulls with pushes.
                    server.pull(&format!("client{c}"), None, Some(3));
                }
                statuses
            })
        })
        .collect();
    for t in threads {
        for (status, applied) in t.join().unwrap() {
            assert_eq!(status, 200);
            assert!(applied > 0);
        }
    }
    let (snapshots, _) = server.pull_all("anyone", Some(9));
    assert_eq!(snapshots.len(), 8 * 40);
    let mut seen = std::collections::HashSet::new();
    for s in &snapshots {
        assert!(
            seen.insert(s["entity_id"].as_str().unwrap().to_string()),
            "twice: {s}"
        );
        assert_eq!(s["operation"], "upsert");
    }
}

/// Text with every kind of awkward character is stored and returned unchanged, and `max` counts
/// characters (mb_strlen), not bytes or UTF-16 units.
#[test]
fn unicode_and_control_characters_round_trip() {
    let server = TestServer::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": "required|max:4"}}"#,
    ]);
    let awkward = [
        "a\u{0}b\u{1}",
        "😀😀😀😀",
        "e\u{301}\u{202e}\u{2028}",
        "\"\\'\u{7f}",
    ];
    for text in awkward {
        let answer = server.push(
            "c",
            json!([mutation(
                "create",
                "Task",
                &id(),
                json!({ "title": text }),
                now_ms()
            )]),
        );
        assert_eq!(
            answer["applied"].as_array().map(Vec::len),
            Some(1),
            "{text:?}: {answer}"
        );
    }
    let titles: Vec<Value> = task_payloads(&server, "c")
        .iter()
        .map(|p| p["title"].clone())
        .collect();
    assert_eq!(titles, awkward.map(|t| json!(t)));
    let answer = server.push(
        "c",
        json!([mutation(
            "create",
            "Task",
            &id(),
            json!({ "title": "😀😀😀😀😀" }),
            now_ms()
        )]),
    );
    assert_eq!(
        answer["rejected"][0]["data"]["messages"]["title"],
        json!(["The title field must not be greater than 4 characters."])
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
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// `limit` 0 and negative: Laravel's `min:1` message; a float limit like 2.5 is not an integer.
#[test]
fn limit_zero_negative_and_fractional_get_laravels_422() {
    let server = TestServer::start(&[]);
    for (limit, message) in [
        ("0", "The limit field must be at least 1."),
        ("-5", "The limit field must be at least 1."),
        ("2.5", "The limit field must be an integer."),
    ] {
        let (status, text) = server.post_raw(
            "/tether/pull",
            &format!(r#"{{"client_id": "c", "last_sync_cursor": null, "limit": {limit}}}"#),
            None,
        );
        assert_eq!(status, 422, "{limit}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            body,
            json!({"message": message, "errors": {"limit": [message]}})
        );
    }
}

/// An idle connection (no request at all, or idle after a kept-alive answer) is closed after the
/// read timeout, as the README promises: otherwise idle sockets pile up until descriptors run out.
#[test]
fn idle_connections_are_closed_after_the_read_timeout() {
    let server = TestServer::start(&["--read-timeout", "0.5"]);
    // Never sends a byte.
    let (answer, took) = raw_exchange(&server.address(), b"", Duration::from_secs(6));
    assert!(
        took < Duration::from_secs(4),
        "silent connection open for {took:?}: {answer}"
    );
    // One request, then idle on a kept-alive connection.
    let (answer, took) = raw_exchange(
        &server.address(),
        b"POST /tether/pull HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 44\r\n\r\n{\"client_id\": \"c\", \"last_sync_cursor\": null}",
        Duration::from_secs(6),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        took < Duration::from_secs(4),
        "kept-alive idle connection open for {took:?}"
    );
}

/// A Content-Length larger than the body, and the client then half-closes: a JSON answer (not a
/// hang until the timeout, not a 500), and nothing applied.
#[test]
fn a_body_shorter_than_its_content_length_is_refused_without_applying() {
    let server = TestServer::start(&[]);
    let body = json!({"client_id": "c", "mutations": [mutation("create", "Task", &id(), json!({"title": "t"}), now_ms())]}).to_string();
    let request = format!(
        "POST /tether/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len() + 50
    );
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}: {answer}",
        started.elapsed()
    );
    if !answer.is_empty() {
        assert!(!answer.starts_with("HTTP/1.1 5"), "{answer}");
        assert!(answer.contains("{\"message\""), "{answer}");
    }
    assert!(task_payloads(&server, "c").is_empty());
}

/// A client trickling a large body one chunk at a time is cut off at the read timeout even if
/// every chunk arrives quickly after the previous one, and others are served meanwhile.
#[test]
fn a_huge_body_sent_slowly_is_cut_off_and_others_are_served() {
    let server = TestServer::start(&["--read-timeout", "1"]);
    let address = server.address();
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(b"POST /tether/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n{\"client_id\":\"");
        let chunk = vec![b'x'; 1000];
        while started.elapsed() < Duration::from_secs(8) {
            if stream.write_all(&chunk).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let page = server.pull("c", None, None);
    assert_eq!(page["has_more"], false);
    let (answer, took) = slow.join().unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
}

/// A restart with --db: changes made after it sort after every cursor handed out before it,
/// also when pulled with a limit.
#[test]
fn a_restart_keeps_cursors_monotonic_with_paging() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let db = db.to_str().unwrap();
    let cursor = {
        let server = TestServer::start(&["--db", db]);
        for i in 0..5 {
            create_task(&server, "c", &format!("before {i}"));
        }
        let (_, pages) = server.pull_all("c", Some(2));
        pages.last().unwrap()["new_sync_cursor"].as_i64()
    };
    let server = TestServer::start(&["--db", db]);
    let entity = create_task(&server, "c", "after");
    let page = server.pull("c", cursor, Some(2));
    assert_eq!(page["snapshots"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["snapshots"][0]["entity_id"], json!(entity));
    assert!(page["new_sync_cursor"].as_i64() > cursor);
    let empty = server.pull("c", page["new_sync_cursor"].as_i64(), Some(2));
    assert_eq!(
        empty,
        json!({"snapshots": [], "new_sync_cursor": page["new_sync_cursor"], "has_more": false})
    );
}
