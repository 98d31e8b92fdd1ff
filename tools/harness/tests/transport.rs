//! What goes over the wire: headers and bodies seen by a recording mock server on 127.0.0.1,
//! and transport settings that are wrong.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use serde_json::{json, Value};
use tether_harness::*;

/// Answers `answers` requests in order, sending each request (head lines, body) back.
fn mock(answers: Vec<String>) -> (String, mpsc::Receiver<(Vec<String>, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for answer in answers {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                head.push(line.trim().to_string());
            }
            let length = head
                .iter()
                .find_map(|h| {
                    h.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            tx.send((head, String::from_utf8(body).unwrap())).unwrap();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    (url, rx)
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().find_map(|h| {
        let (n, v) = h.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn requests_carry_the_protocol_headers_and_bodies() {
    let (url, seen) = mock(vec![
        r#"{"applied": []}"#.into(),
        r#"{"snapshots": [], "new_sync_cursor": null, "has_more": false}"#.into(),
    ]);
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks'); INSERT INTO tasks (title) VALUES ('x');").unwrap();
    set_config(&conn, "server_url", url.as_str());
    set_config(&conn, "headers", r#"{"X-Tenant": "acme"}"#);
    conn.query_row(
        "SELECT tether_config('auth_token', 'tok-9', 'connection')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    set_config(&conn, "pull_page_size", 50);
    json(&conn, "SELECT tether_sync()");

    let (head, body) = seen.recv().unwrap();
    assert_eq!(head[0], "POST /tether/push HTTP/1.1");
    assert_eq!(header(&head, "Content-Type"), Some("application/json"));
    assert_eq!(header(&head, "Accept"), Some("application/json"));
    assert_eq!(header(&head, "Authorization"), Some("Bearer tok-9"));
    assert_eq!(header(&head, "X-Tenant"), Some("acme"));
    assert!(
        header(&head, "X-Tether-Client-Version").is_some_and(|v| v.starts_with("tether-sqlite/")),
        "{head:?}"
    );
    assert!(
        header(&head, "Accept-Encoding").is_some_and(|v| v.contains("gzip")),
        "{head:?}"
    );
    let push: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(push["mutations"].as_array().unwrap().len(), 1);

    let (head, body) = seen.recv().unwrap();
    assert_eq!(head[0], "POST /tether/pull HTTP/1.1");
    let pull: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        pull,
        json!({"client_id": push["client_id"], "last_sync_cursor": null, "limit": 50})
    );
}

#[test]
fn errors_name_the_url_without_its_credentials() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    set_config(
        &conn,
        "server_url",
        format!("http://alice:s3cr3t@{address}").as_str(),
    );
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(
        err.contains(&format!("http://***@{address}/tether/pull")),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
    let status = json(&conn, "SELECT tether_status()").to_string();
    assert!(!status.contains("s3cr3t"), "{status}");
}

#[test]
fn unusable_transport_settings_fail_clearly() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    let err = error_of(&conn, "SELECT tether_sync()");
    assert!(err.contains("no server configured (server_url"), "{err}");
    set_config(&conn, "server_url", "https://127.0.0.1:9");
    set_config(&conn, "ca_file", "/nonexistent/ca.pem");
    let err = error_of(&conn, "SELECT tether_sync()");
    assert!(
        err.contains("ca_file") && err.contains("cannot be read"),
        "{err}"
    );
    let empty = path.with_file_name("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    set_config(&conn, "ca_file", empty.to_str().unwrap());
    let err = error_of(&conn, "SELECT tether_sync()");
    assert!(err.contains("no PEM certificate"), "{err}");
}
