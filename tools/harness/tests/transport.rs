//! What goes over the wire: headers and bodies seen by a recording mock server on 127.0.0.1,
//! and transport settings that are wrong.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use serde_json::{json, Value};
use tether_harness::*;

/// One request as the mock saw it: head lines, body.
type Seen = (Vec<String>, String);

/// Serves `count` connections on 127.0.0.1: reads each request, sends it back, and answers with
/// the raw bytes `answer` makes of it. Write failures are ignored: a client may hang up while
/// the answer is still coming (that is what a size limit does).
fn serve(
    count: usize,
    mut answer: impl FnMut(&[String], &str) -> Vec<u8> + Send + 'static,
) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..count {
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
            let length = header(&head, "Content-Length").map_or(0, |v| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let response = answer(&head, &body);
            let _ = tx.send((head, body));
            let _ = stream.write_all(&response);
        }
    });
    (url, rx)
}

/// A raw HTTP/1.1 answer that closes the connection; `headers` as given (say Content-Length
/// there, or the body ends with the connection).
fn http(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A JSON 200 answer with its Content-Length.
fn ok_json(body: &[u8]) -> Vec<u8> {
    http(
        "200 OK",
        &[
            ("Content-Type", "application/json".into()),
            ("Content-Length", body.len().to_string()),
        ],
        body,
    )
}

/// Answers `answers` requests in order with 200 and the JSON given.
fn mock(answers: Vec<String>) -> (String, mpsc::Receiver<Seen>) {
    let mut answers = answers.into_iter();
    let count = answers.len();
    serve(count, move |_, _| {
        ok_json(answers.next().unwrap().as_bytes())
    })
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
        42
    );
}

/// A client with `rows` tasks queued, pointed at `url` with a token and a custom header.
fn client(url: &str, rows: usize) -> (tempfile::TempDir, rusqlite::Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks');",
    )
    .unwrap();
    for i in 0..rows {
        conn.execute("INSERT INTO tasks (title) VALUES (?1)", [format!("t{i}")])
            .unwrap();
    }
    set_config(&conn, "server_url", url);
    set_config(&conn, "headers", r#"{"X-Tenant": "acme"}"#);
    conn.query_row(
        "SELECT tether_config('auth_token', 'tok-9', 'connection')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    (dir, conn)
}

/// (sync_status, retry_count) of every queued mutation.
fn queue(conn: &rusqlite::Connection) -> Vec<(String, i64)> {
    let mut stmt = conn
        .prepare("SELECT sync_status, retry_count FROM tether_mutation_logs ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn cursor(conn: &rusqlite::Connection) -> Value {
    json(conn, "SELECT tether_status()")["last_sync_cursor"].clone()
}

fn task_count(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap()
}

/// `value` as JSON text padded with spaces to `size` bytes.
fn padded(value: Value, size: usize) -> Vec<u8> {
    let mut text = value.to_string().into_bytes();
    assert!(text.len() <= size);
    text.resize(size, b' ');
    text
}

/// A pull page bringing one new task and cursor 99, `size` bytes long.
fn page(size: usize) -> Vec<u8> {
    padded(
        json!({
            "snapshots": [{"entity_id": "01JDQ8ZZZZXYWVTSRQPNMKJHGF", "model": "Task",
                           "operation": "upsert", "payload": {"title": "from the server"}}],
            "new_sync_cursor": 99,
            "has_more": false
        }),
        size,
    )
}

/// The push answer applying every mutation of the request `body`, `size` bytes long.
fn applied_all(body: &str, size: usize) -> Vec<u8> {
    let request: Value = serde_json::from_str(body).unwrap();
    let ids: Vec<Value> = request["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mutation_id"].clone())
        .collect();
    padded(json!({ "applied": ids }), size)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// The most memory this process ever held (VmHWM), in bytes.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

fn assert_too_large(err: &str, limit: u64, url: &str) {
    assert!(
        err.contains(&format!(
            "POST {url}: the answer is larger than max_response_bytes ({limit} bytes); raise it with tether_config('max_response_bytes'"
        )),
        "{err}"
    );
}

#[test]
fn a_push_answer_over_max_response_bytes_fails_and_changes_nothing() {
    // Declared with Content-Length: refused before its body is read.
    let (url, _seen) = serve(2, |_, body| ok_json(&applied_all(body, 5000)));
    let (_dir, conn) = client(&url, 2);
    set_config(&conn, "max_response_bytes", 1000);
    let before = queue(&conn);
    assert_eq!(before, vec![("pending".to_string(), 0); 2]);
    let err = error_of(&conn, "SELECT tether_push()");
    assert_too_large(&err, 1000, &format!("{url}/tether/push"));
    assert_eq!(queue(&conn), before, "nothing was marked");

    // The same answer within the limit is applied: the refusal above was the limit's doing.
    set_config(&conn, "max_response_bytes", 5000);
    let result = json(&conn, "SELECT tether_push()");
    assert_eq!(result["pushed"], 2, "{result}");
    assert!(queue(&conn).iter().all(|(status, _)| status == "synced"));
}

#[test]
fn a_pull_answer_over_max_response_bytes_fails_and_changes_nothing() {
    // No Content-Length: the answer ends with the connection, so only counting can stop it.
    let close_delimited = |_: &[String], _: &str| {
        http(
            "200 OK",
            &[("Content-Type", "application/json".into())],
            &page(5000),
        )
    };
    let (url, _seen) = serve(2, close_delimited);
    let (_dir, conn) = client(&url, 0);
    set_config(&conn, "max_response_bytes", 1000);
    let err = error_of(&conn, "SELECT tether_pull()");
    assert_too_large(&err, 1000, &format!("{url}/tether/pull"));
    assert_eq!(cursor(&conn), Value::Null, "the cursor did not move");
    assert_eq!(task_count(&conn), 0);

    set_config(&conn, "max_response_bytes", 5000);
    let result = json(&conn, "SELECT tether_pull()");
    assert_eq!(result["pulled"], 1, "{result}");
    assert_eq!(cursor(&conn), 99);
    assert_eq!(task_count(&conn), 1);
}

#[test]
fn the_limit_counts_the_decoded_answer() {
    let body = gzip(&page(5000));
    assert!(body.len() < 1000, "{} bytes compressed", body.len());
    let answer = move |_: &[String], _: &str| {
        http(
            "200 OK",
            &[
                ("Content-Type", "application/json".into()),
                ("Content-Encoding", "gzip".into()),
                ("Content-Length", body.len().to_string()),
            ],
            &body,
        )
    };
    let (url, seen) = serve(2, answer);
    let (_dir, conn) = client(&url, 0);
    set_config(&conn, "max_response_bytes", 1000);
    let err = error_of(&conn, "SELECT tether_pull()");
    assert_too_large(&err, 1000, &format!("{url}/tether/pull"));
    assert_eq!(cursor(&conn), Value::Null);
    let (head, _) = seen.recv().unwrap();
    assert!(
        header(&head, "Accept-Encoding").is_some_and(|v| v.contains("gzip")),
        "{head:?}"
    );

    // Within the limit, the gzip answer is decoded and applied.
    set_config(&conn, "max_response_bytes", 5000);
    let result = json(&conn, "SELECT tether_pull()");
    assert_eq!(result["pulled"], 1, "{result}");
    assert_eq!(cursor(&conn), 99);
}

#[test]
fn a_gzip_bomb_fails_at_the_default_limit_without_exhausting_memory() {
    // 1 MiB of spaces gzips to about 1 KB; 1024 such members (gzip allows a stream of members,
    // and ureq decodes them all) make an answer of about 1 MB that decodes to 1 GiB.
    let member = gzip(&vec![b' '; 1 << 20]);
    let bomb = member.repeat(1024);
    assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
    let answer = move |_: &[String], _: &str| {
        http(
            "200 OK",
            &[
                ("Content-Type", "application/json".into()),
                ("Content-Encoding", "gzip".into()),
                ("Content-Length", bomb.len().to_string()),
            ],
            &bomb,
        )
    };
    let (url, _seen) = serve(1, answer);
    let (_dir, conn) = client(&url, 0);
    let before = peak_memory();
    let started = std::time::Instant::now();
    let err = error_of(&conn, "SELECT tether_pull()");
    let elapsed = started.elapsed();
    let grown = peak_memory().saturating_sub(before);
    assert_too_large(&err, 67108864, &format!("{url}/tether/pull"));
    assert_eq!(cursor(&conn), Value::Null);
    // The answer buffer never exceeds the 64 MiB limit (a reallocation may briefly hold the old
    // and the new buffer); reading the whole 1 GiB would take over a gigabyte.
    assert!(grown < 256 << 20, "peak memory grew by {} MiB", grown >> 20);
    assert!(
        elapsed < std::time::Duration::from_secs(20),
        "took {elapsed:?}"
    );
}

#[test]
fn encodings_tether_cannot_decode_are_refused() {
    let mut deflated = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    deflated.write_all(&page(200)).unwrap();
    let deflated = deflated.finish().unwrap();
    let mut answers = vec![("br", vec![0x1b, 0x2f, 0x00, 0xf8]), ("deflate", deflated)].into_iter();
    let answer = move |_: &[String], _: &str| {
        let (coding, body) = answers.next().unwrap();
        http(
            "200 OK",
            &[
                ("Content-Type", "application/json".into()),
                ("Content-Encoding", coding.into()),
                ("Content-Length", body.len().to_string()),
            ],
            &body,
        )
    };
    let (url, _seen) = serve(2, answer);
    let (_dir, conn) = client(&url, 0);
    for coding in ["br", "deflate"] {
        let err = error_of(&conn, "SELECT tether_pull()");
        assert!(
            err.contains(&format!(
                "POST {url}/tether/pull: HTTP 200, the answer has Content-Encoding \"{coding}\", which tether cannot decode"
            )),
            "{err}"
        );
        assert_eq!(cursor(&conn), Value::Null);
    }
}

/// A listener nobody serves: any connection made to it waits in its backlog.
fn untouched_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn assert_never_contacted(listener: &TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => panic!("accept: {e}"),
        Ok((_, from)) => panic!("the redirect target received a connection from {from}"),
    }
}

#[test]
fn redirects_are_refused_never_followed() {
    let statuses = [
        "301 Moved Permanently",
        "302 Found",
        "303 See Other",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ];
    let (target, port) = untouched_listener();
    let location = format!("http://127.0.0.1:{port}/tether/push");
    let answer_location = location.clone();
    let mut statuses_served = statuses.into_iter();
    let answer = move |_: &[String], _: &str| {
        http(
            statuses_served.next().unwrap(),
            &[
                ("Location", answer_location.clone()),
                ("Content-Length", "0".into()),
            ],
            b"",
        )
    };
    let (url, seen) = serve(statuses.len(), answer);
    let (_dir, conn) = client(&url, 2);
    let before = queue(&conn);
    for status in statuses {
        let code = &status[..3];
        let err = error_of(&conn, "SELECT tether_push()");
        assert!(
            err.contains(&format!(
                "POST {url}/tether/push answered HTTP {code} redirecting to {location}; set server_url to the final address (tether does not follow redirects"
            )),
            "{err}"
        );
        assert_eq!(queue(&conn), before, "after {status}");
        // The token went to the configured host only.
        let (head, _) = seen.recv().unwrap();
        assert_eq!(header(&head, "Authorization"), Some("Bearer tok-9"));
    }
    assert_never_contacted(&target);
}

#[test]
fn redirect_targets_are_named_without_credentials() {
    let (target, port) = untouched_listener();
    let locations = [
        format!("http://eve:pw-77@127.0.0.1:{port}/steal"),
        "/v2/tether/pull".to_string(),
    ];
    let mut served = locations.clone().into_iter();
    let answer = move |_: &[String], _: &str| {
        http(
            "307 Temporary Redirect",
            &[
                ("Location", served.next().unwrap()),
                ("Content-Length", "0".into()),
            ],
            b"",
        )
    };
    let (url, _seen) = serve(2, answer);
    let (_dir, conn) = client(&url, 0);
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(
        err.contains(&format!(
            "redirecting to http://***@127.0.0.1:{port}/steal;"
        )),
        "{err}"
    );
    assert!(!err.contains("pw-77"), "{err}");
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(
        err.contains(&format!("redirecting to {url}/v2/tether/pull;")),
        "{err}"
    );
    assert_eq!(cursor(&conn), Value::Null);
    assert_never_contacted(&target);
}

/// An error answer with `status` and a body far over any small max_response_bytes.
fn error_answer(status: &'static str) -> impl FnMut(&[String], &str) -> Vec<u8> + Send {
    move |_, _| {
        let body = format!("request entity too large{}", " ".repeat(100_000));
        http(
            status,
            &[
                ("Content-Type", "text/plain".into()),
                ("Content-Length", body.len().to_string()),
            ],
            body.as_bytes(),
        )
    }
}

#[test]
fn http_errors_keep_their_status_and_change_nothing() {
    // The status is what counts, not the size of the explanation: bodies are far over the limit.
    let (url, _seen) = serve(1, error_answer("413 Payload Too Large"));
    let (_dir, conn) = client(&url, 3);
    set_config(&conn, "max_response_bytes", 1000);
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(
        err.contains(&format!(
            "POST {url}/tether/pull answered HTTP 413: \"request entity too large\""
        )),
        "{err}"
    );
    assert_eq!(cursor(&conn), Value::Null);

    let (url, _seen) = serve(1, error_answer("500 Internal Server Error"));
    set_config(&conn, "server_url", url.as_str());
    let before = queue(&conn);
    let err = error_of(&conn, "SELECT tether_push()");
    assert!(
        err.contains(&format!(
            "POST {url}/tether/push answered HTTP 500: \"request entity too large\""
        )),
        "{err}"
    );
    assert_eq!(queue(&conn), before, "still pending, retry_count unchanged");

    // An error answer in gzip is quoted decoded.
    let body = gzip(b"{\"message\": \"database unavailable\"}");
    let (url, _seen) = serve(1, move |_, _| {
        http(
            "503 Service Unavailable",
            &[
                ("Content-Encoding", "gzip".into()),
                ("Content-Length", body.len().to_string()),
            ],
            &body,
        )
    });
    set_config(&conn, "server_url", url.as_str());
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(
        err.contains("answered HTTP 503") && err.contains("database unavailable"),
        "{err}"
    );
}

#[test]
fn a_push_answered_413_is_known_by_its_status() {
    // The push engine reads the status (not the text) of a 413 to halve the batch; a mutation
    // answered 413 even alone fails as too_large. The body is over max_response_bytes.
    let (url, seen) = serve(3, error_answer("413 Payload Too Large"));
    let (_dir, conn) = client(&url, 2);
    set_config(&conn, "max_response_bytes", 1000);
    let result = json(&conn, "SELECT tether_push()");
    assert_eq!(result["failed"], 2, "{result}");
    for rejection in result["rejections"].as_array().unwrap() {
        assert_eq!(rejection["reason"], "too_large", "{result}");
    }
    let batch_sizes: Vec<usize> = seen
        .try_iter()
        .map(|(_, body)| {
            let request: Value = serde_json::from_str(&body).unwrap();
            request["mutations"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(batch_sizes, [2, 1, 1], "halved after the first 413");
}
