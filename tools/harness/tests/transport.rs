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

/// Kills the child process when dropped, also when a test panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// An HTTPS server (Debian's python3) with a certificate for 127.0.0.1 issued by a private CA
/// made with openssl, answering every POST with an empty pull page. Returns the server, its URL
/// and the CA's certificate file.
fn https_server(dir: &std::path::Path) -> (KillOnDrop, String, std::path::PathBuf) {
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tether test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
        dir,
    );
    let script = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length', 0)))
        body = b'{"snapshots": [], "new_sync_cursor": 42, "has_more": false}'
        self.send_response(200); self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
server = http.server.HTTPServer(('127.0.0.1', 0), H)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(dir.join("leaf.pem"))
        .arg(dir.join("leaf.key"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    (
        KillOnDrop(child),
        format!("https://127.0.0.1:{}", port.trim()),
        dir.join("ca.pem"),
    )
}

#[test]
fn ca_file_adds_a_trusted_certificate_authority() {
    let (_dir, path) = temp_db();
    let (_server, url, ca) = https_server(path.parent().unwrap());
    let conn = open_loaded(&path);
    set_config(&conn, "server_url", url.as_str());
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(
        err.contains(&url) && err.to_lowercase().contains("certificate"),
        "an unknown CA is refused: {err}"
    );
    set_config(&conn, "ca_file", ca.to_str().unwrap());
    let result = json(&conn, "SELECT tether_pull()");
    assert_eq!(result["pull_errors"], 0, "{result}");
    assert_eq!(
        json(&conn, "SELECT tether_status()")["last_sync_cursor"],
        "42"
    );
}
