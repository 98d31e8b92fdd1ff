//! Helpers shared by the command line's tests: the real `tether` binary, run with a clean
//! environment, against tether-server or tiny servers of the test's own on 127.0.0.1.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use tether_harness::*;

pub const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required|max:20"}, "soft_deletes": true}"#;

/// `tether` with no `TETHER_*` variable nor NO_COLOR from the test's environment.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TETHER_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .stdin(Stdio::null());
    command
}

/// `tether --db DB ARGS…`, waited for.
pub fn tether(db: &Path, args: &[&str]) -> Output {
    command().arg("--db").arg(db).args(args).output().unwrap()
}

/// `tether ARGS…` (no `--db` added), waited for.
pub fn tether_args(args: &[&str]) -> Output {
    command().args(args).output().unwrap()
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A database with a `tasks` table holding one row, tracked by `tether track`, no server set.
pub fn tracked() -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = temp_db();
    let conn = open_plain(&path);
    conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO tasks (title) VALUES ('first');").unwrap();
    drop(conn);
    let out = tether(&path, &["track", "tasks"]);
    assert!(out.status.success(), "{:?}", text(&out));
    (dir, path)
}

/// [`tracked`], pointed at `url`.
pub fn database_at(url: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = tracked();
    let out = tether(&path, &["config", "server_url", url]);
    assert!(out.status.success(), "{:?}", text(&out));
    (dir, path)
}

/// [`tracked`], pointed at `server`.
pub fn database(server: &Server) -> (tempfile::TempDir, PathBuf) {
    database_at(&server.url)
}

/// A loopback URL where nothing listens.
pub fn refused_url() -> String {
    let nothing = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", nothing.local_addr().unwrap());
    drop(nothing);
    url
}

pub fn kill(child: &Child, signal: i32) {
    // SAFETY: signals the test's own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

/// Waits for `child` at most `limit`; kills it and fails the test past that.
pub fn wait_at_most(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {:?}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A server on 127.0.0.1 that accepts connections and never answers; the accepted connections
/// are kept open while it lives.
pub struct Stalling {
    listener: TcpListener,
    pub url: String,
    held: Vec<std::net::TcpStream>,
}

impl Stalling {
    pub fn start() -> Stalling {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        Stalling {
            listener,
            url,
            held: Vec::new(),
        }
    }

    /// Waits (at most 20 s) until a client connected, then lets its request arrive.
    pub fn wait_for_request(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.held.push(stream);
                    std::thread::sleep(Duration::from_millis(300));
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no request came");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

/// A server on 127.0.0.1 answering every request with `status` (e.g. "403 Forbidden") and a
/// JSON body, until the test ends.
pub fn answering(status: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            // Read the head and the body as far as they come, then answer.
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&chunk[..n]);
                if let Some(end) = find(&seen, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Count of a query's single integer.
pub fn count(path: &Path, sql: &str) -> i64 {
    open_plain(path).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The keys of a JSON object, sorted.
pub fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// The only line of `stdout`, parsed as JSON.
pub fn one_json_line(stdout: &str) -> serde_json::Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line of JSON: {stdout:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}
