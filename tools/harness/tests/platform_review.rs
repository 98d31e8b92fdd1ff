//! Adversarial review of loading (never crash the host), the bounded transport and the sync
//! lock's liveness. Hosts that might crash run as child processes; mock servers listen on
//! 127.0.0.1 only.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

// ---------------------------------------------------------------------------------------------
// Mock HTTP servers with full control of the socket.

/// One request as the mock saw it: head lines, body.
type Seen = (Vec<String>, String);

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().find_map(|h| {
        let (n, v) = h.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Serves `count` connections: reads each request, then hands the socket to `answer`, which
/// writes whatever it likes (and may stall). Write failures are the client hanging up.
fn serve_raw(
    count: usize,
    mut answer: impl FnMut(&mut TcpStream, &[String], &str) + Send + 'static,
) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..count {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if line.trim().is_empty() {
                    break;
                }
                head.push(line.trim().to_string());
            }
            let length = header(&head, "Content-Length").map_or(0, |v| v.parse().unwrap());
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body).to_string();
            answer(&mut stream, &head, &body);
            let _ = tx.send((head, body));
            let _ = stream.flush();
        }
    });
    (url, rx)
}

/// A raw HTTP/1.1 answer that closes the connection.
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

/// Serves `count` requests, each answered with the bytes `answer` makes.
fn serve(
    count: usize,
    mut answer: impl FnMut(&[String], &str) -> Vec<u8> + Send + 'static,
) -> (String, mpsc::Receiver<Seen>) {
    serve_raw(count, move |stream, head, body| {
        let _ = stream.write_all(&answer(head, body));
    })
}

/// A client with `rows` tasks queued, pointed at `url` with a token (connection scope).
fn client(url: &str, rows: usize) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
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
    conn.query_row(
        "SELECT tether_config('auth_token', 'tok-9', 'connection')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    (dir, path, conn)
}

/// (sync_status, retry_count) of every queued mutation.
fn queue(conn: &Connection) -> Vec<(String, i64)> {
    column::<String>(
        conn,
        "SELECT sync_status || ':' || retry_count FROM tether_mutation_logs ORDER BY id",
    )
    .into_iter()
    .map(|s| {
        let (a, b) = s.split_once(':').unwrap();
        (a.to_string(), b.parse().unwrap())
    })
    .collect()
}

fn cursor(conn: &Connection) -> Value {
    json(conn, "SELECT tether_status()")["last_sync_cursor"].clone()
}

fn task_count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap()
}

/// A pull page bringing one new task and cursor 99.
fn one_task_page() -> String {
    json!({
        "snapshots": [{"entity_id": "01JDQ8ZZZZXYWVTSRQPNMKJHGF", "model": "Task",
                       "operation": "upsert", "payload": {"title": "from the server"}}],
        "new_sync_cursor": 99,
        "has_more": false
    })
    .to_string()
}

/// The last row of the sync log: (error, result).
fn last_log(conn: &Connection) -> (Option<String>, Option<String>) {
    conn.query_row(
        "SELECT error, result FROM tether_sync_log ORDER BY id DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 2. Transport

#[test]
fn a_chunked_answer_without_length_stops_at_the_limit() {
    let (url, _seen) = serve_raw(1, |stream, _, _| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        let chunk = vec![b' '; 4096];
        // Far past the limit; the client must hang up long before the end.
        for _ in 0..4096 {
            let head = format!("{:x}\r\n", chunk.len());
            if stream.write_all(head.as_bytes()).is_err()
                || stream.write_all(&chunk).is_err()
                || stream.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
    });
    let (_dir, _path, conn) = client(&url, 0);
    set_config(&conn, "max_response_bytes", 10_000);
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(
        err.contains("larger than max_response_bytes (10000 bytes)"),
        "{err}"
    );
    assert_eq!(cursor(&conn), Value::Null);
}

#[test]
fn a_server_that_stalls_after_its_headers_is_cut_off_by_timeout_ms() {
    let (url, _seen) = serve_raw(1, |stream, _, _| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"snap",
        );
        let _ = stream.flush();
        std::thread::sleep(Duration::from_secs(8));
    });
    let (_dir, _path, conn) = client(&url, 0);
    set_config(&conn, "timeout_ms", 1000);
    let started = Instant::now();
    let err = error_of(&conn, "SELECT tether_pull()");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}: {err}");
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(cursor(&conn), Value::Null);
}

#[test]
fn a_server_that_trickles_its_body_is_cut_off_by_timeout_ms() {
    // Each byte arrives well inside any per-read timeout, the whole never ends.
    let (url, _seen) = serve_raw(1, |stream, _, _| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for _ in 0..200 {
            if stream.write_all(b"1\r\n \r\n").is_err() {
                return;
            }
            let _ = stream.flush();
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (_dir, _path, conn) = client(&url, 0);
    set_config(&conn, "timeout_ms", 1000);
    let started = Instant::now();
    let err = error_of(&conn, "SELECT tether_pull()");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}: {err}");
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn a_content_length_longer_than_the_body_is_an_error_and_applies_nothing() {
    let page = one_task_page();
    let (url, _seen) = serve(1, move |_, _| {
        http(
            "200 OK",
            &[("Content-Length", (page.len() + 50).to_string())],
            page.as_bytes(),
        )
    });
    let (_dir, _path, conn) = client(&url, 0);
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(err.contains("/tether/pull"), "{err}");
    assert_eq!(task_count(&conn), 0);
    assert_eq!(cursor(&conn), Value::Null);
}

#[test]
fn a_content_length_shorter_than_the_body_is_an_error_and_applies_nothing() {
    let page = one_task_page();
    let (url, _seen) = serve(1, move |_, _| {
        http(
            "200 OK",
            &[("Content-Length", (page.len() - 2).to_string())],
            page.as_bytes(),
        )
    });
    let (_dir, _path, conn) = client(&url, 0);
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(err.contains("pull answer is not JSON"), "{err}");
    assert_eq!(task_count(&conn), 0);
}

#[test]
fn a_304_is_not_reported_as_a_redirect() {
    let (url, _seen) = serve(1, |_, _| http("304 Not Modified", &[], b""));
    let (_dir, _path, conn) = client(&url, 0);
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(err.contains("HTTP 304"), "{err}");
    assert!(
        !err.contains("redirect"),
        "304 Not Modified is no redirect, and there is no final address to set: {err}"
    );
}

#[test]
fn informational_and_empty_answers_are_handled() {
    // 100 Continue before the real answer is skipped; 204 is an error naming the status.
    let page = one_task_page();
    let (url, _seen) = serve(1, move |_, _| {
        let mut out = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        out.extend(ok_json(page.as_bytes()));
        out
    });
    let (_dir, _path, conn) = client(&url, 0);
    let result = json(&conn, "SELECT tether_pull()");
    assert_eq!(result["pulled"], 1, "{result}");

    let (url, _seen) = serve(1, |_, _| http("204 No Content", &[], b""));
    set_config(&conn, "server_url", url.as_str());
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(err.contains("pull answer is not JSON"), "{err}");
    assert_eq!(cursor(&conn), 99);
}

#[test]
fn a_huge_header_line_is_refused_without_exhausting_memory() {
    let (url, _seen) = serve_raw(1, |stream, _, _| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Huge: ");
        let filler = vec![b'a'; 64 * 1024];
        for _ in 0..(256 * 16) {
            // 256 MiB of one header line, if nobody stops reading
            if stream.write_all(&filler).is_err() {
                return;
            }
        }
        let _ = stream.write_all(b"\r\nContent-Length: 2\r\n\r\n{}");
    });
    let (_dir, _path, conn) = client(&url, 0);
    set_config(&conn, "timeout_ms", 20_000);
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(err.contains("/tether/pull"), "{err}");
    assert_eq!(cursor(&conn), Value::Null);
}

#[test]
fn trailing_garbage_a_bom_and_invalid_utf8_are_errors_that_apply_nothing() {
    let page = one_task_page();
    let bodies: Vec<Vec<u8>> = vec![
        format!("{page}<html>oops</html>").into_bytes(),
        [b"\xEF\xBB\xBF".as_slice(), page.as_bytes()].concat(),
        [page.as_bytes(), b" \xff\xfe"].concat(),
    ];
    let served = bodies.clone();
    let mut next = served.into_iter();
    let (url, _seen) = serve(3, move |_, _| ok_json(&next.next().unwrap()));
    let (_dir, _path, conn) = client(&url, 0);
    for (body, expected) in bodies.iter().zip([
        "pull answer is not JSON",
        "pull answer is not JSON",
        "not UTF-8",
    ]) {
        let err = error_of(&conn, "SELECT tether_pull()");
        assert!(
            err.contains(expected),
            "{:?}: {err}",
            String::from_utf8_lossy(&body[..20])
        );
        assert_eq!(task_count(&conn), 0);
        assert_eq!(cursor(&conn), Value::Null);
    }
}

#[test]
fn a_push_answered_200_with_an_error_object_is_an_error_not_an_empty_success() {
    // An auth layer, a proxy or a framework answering 200 with its own error JSON: none of the
    // answer's keys are there. tether reports success with nothing pushed, every time, forever.
    let (url, _seen) = serve(1, |_, _| {
        ok_json(br#"{"error": "Unauthenticated.", "message": "token expired"}"#)
    });
    let (_dir, _path, conn) = client(&url, 2);
    let outcome = conn.query_row("SELECT tether_push()", [], |r| r.get::<_, String>(0));
    assert!(
        outcome.is_err(),
        "an answer with neither applied, rejected nor conflicts must be an error naming it; got {outcome:?}"
    );
    assert_eq!(queue(&conn), [("pending".into(), 0), ("pending".into(), 0)]);
}

#[test]
fn a_pull_answered_200_with_an_error_object_is_an_error_not_an_empty_success() {
    let (url, _seen) = serve(1, |_, _| {
        ok_json(br#"{"error": "Unauthenticated.", "message": "token expired"}"#)
    });
    let (_dir, _path, conn) = client(&url, 0);
    let outcome = conn.query_row("SELECT tether_pull()", [], |r| r.get::<_, String>(0));
    assert!(
        outcome.is_err(),
        "an answer with neither snapshots nor new_sync_cursor must be an error naming it; got {outcome:?}"
    );
}

/// Every place a secret could surface after a failed cycle: the error, the sync log, the status,
/// the settings.
fn surfaces(conn: &Connection, err: &str) -> String {
    let (logged, _) = last_log(conn);
    let status = json(conn, "SELECT tether_status()").to_string();
    let config: String = conn
        .query_row("SELECT tether_config()", [], |r| r.get(0))
        .unwrap();
    format!("error: {err}\nlog: {logged:?}\nstatus: {status}\nconfig: {config}")
}

#[test]
fn a_password_with_a_slash_in_server_url_is_never_shown() {
    // Unencoded '/', '?' or '#' in a password (a common mistake) ends the authority early for
    // redact_url, which then sees no '@' and shows the URL as it is: in tether_config(), in
    // tether_status(), in every error and in tether_sync_log. (The user name is 127.0.0.1 so
    // that what the HTTP library takes for the host is local; any user name shows the same.)
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    for password in ["9/ss-77", "9?ss-77", "9#ss-77"] {
        let (_dir, path) = temp_db();
        let conn = open_loaded(&path);
        // Such a URL is refused when set (the HTTP library would take the user name for the
        // host), and the refusal does not show the password either.
        let refused = error_of(
            &conn,
            &format!("SELECT tether_config('server_url', 'http://127.0.0.1:{password}@{address}')"),
        );
        assert!(refused.contains("percent-encode"), "{refused}");
        let err = error_of(&conn, "SELECT tether_pull()");
        let everywhere = format!("{refused}\n{}", surfaces(&conn, &err));
        assert!(
            !everywhere.contains("ss-77"),
            "password {password:?} shown:\n{everywhere}"
        );
    }
}

#[test]
fn a_header_value_that_can_never_be_sent_is_refused_when_set() {
    // CR and LF are refused by tether_config('headers'); other control characters are stored,
    // and then every request fails with "http: failed to parse header value", naming no header.
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    let stored = conn.query_row(
        "SELECT tether_config('headers', json_object('X-Api-Key', 'sec' || char(1) || 'ret'))",
        [],
        |r| r.get::<_, rusqlite::types::Value>(0),
    );
    assert!(
        stored.is_err(),
        "stored a header value no request can carry: {stored:?}"
    );
}

#[test]
fn a_token_echoed_by_the_server_in_an_error_answer_is_not_kept() {
    // Auth layers often quote what they refused. tether quotes the body in its error and keeps
    // it in tether_sync_log (in the database file, synced to backups).
    let (url, _seen) = serve(1, |head, _| {
        let auth = header(head, "Authorization")
            .unwrap_or_default()
            .to_string();
        let body = format!("{{\"message\": \"invalid credentials: {auth}\"}}");
        http(
            "401 Unauthorized",
            &[("Content-Length", body.len().to_string())],
            body.as_bytes(),
        )
    });
    let (_dir, _path, conn) = client(&url, 0);
    conn.query_row(
        "SELECT tether_config('auth_token', 'very-secret-token-77', 'connection')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    let err = error_of(&conn, "SELECT tether_pull()");
    assert!(err.contains("HTTP 401"), "{err}");
    let everywhere = surfaces(&conn, &err);
    assert!(!everywhere.contains("very-secret-token-77"), "{everywhere}");
}

// ---------------------------------------------------------------------------------------------
// 1. Loading: hosts run as child processes (this test binary again, running `review_host`).

const HOST_DB: &str = "TETHER_REVIEW_HOST_DB";
const HOST_SCENARIO: &str = "TETHER_REVIEW_HOST_SCENARIO";

mod system_sqlite {
    //! The system's own libsqlite3, a second SQLite in this process (the harness links a bundled
    //! one), as in a process where two libraries each bring their SQLite.
    use std::ffi::{c_char, c_int, c_void, CStr, CString};

    extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }

    type Open = unsafe extern "C" fn(*const c_char, *mut *mut c_void) -> c_int;
    type Enable = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
    type Load =
        unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *mut *mut c_char) -> c_int;
    type Exec = unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        Option<
            unsafe extern "C" fn(*mut c_void, c_int, *mut *mut c_char, *mut *mut c_char) -> c_int,
        >,
        *mut c_void,
        *mut *mut c_char,
    ) -> c_int;
    type Close = unsafe extern "C" fn(*mut c_void) -> c_int;

    pub struct Db {
        db: *mut c_void,
        exec: Exec,
        close: Close,
    }

    unsafe fn sym<T>(lib: *mut c_void, name: &str) -> T {
        let name = CString::new(name).unwrap();
        let ptr = dlsym(lib, name.as_ptr());
        assert!(!ptr.is_null(), "{name:?} missing");
        std::mem::transmute_copy(&ptr)
    }

    /// Opens `path` with the system SQLite and loads `lib` into it; the load's outcome.
    pub fn open_and_load(path: &str, lib: &str) -> (Db, Result<(), String>) {
        unsafe {
            let so = CString::new("libsqlite3.so.0").unwrap();
            let handle = dlopen(so.as_ptr(), 2 /* RTLD_NOW | RTLD_LOCAL */);
            assert!(!handle.is_null(), "no system libsqlite3.so.0");
            let open: Open = sym(handle, "sqlite3_open");
            let enable: Enable = sym(handle, "sqlite3_enable_load_extension");
            let load: Load = sym(handle, "sqlite3_load_extension");
            let db = Db {
                db: std::ptr::null_mut(),
                exec: sym(handle, "sqlite3_exec"),
                close: sym(handle, "sqlite3_close"),
            };
            let mut raw = std::ptr::null_mut();
            let c_path = CString::new(path).unwrap();
            assert_eq!(open(c_path.as_ptr(), &mut raw), 0);
            enable(raw, 1);
            let c_lib = CString::new(lib).unwrap();
            let mut err: *mut c_char = std::ptr::null_mut();
            let rc = load(raw, c_lib.as_ptr(), std::ptr::null(), &mut err);
            let outcome = if rc == 0 {
                Ok(())
            } else {
                Err(if err.is_null() {
                    format!("rc {rc}")
                } else {
                    CStr::from_ptr(err).to_string_lossy().to_string()
                })
            };
            (Db { db: raw, ..db }, outcome)
        }
    }

    impl Db {
        pub fn exec(&self, sql: &str) -> Result<(), String> {
            let sql = CString::new(sql).unwrap();
            let mut err: *mut c_char = std::ptr::null_mut();
            let rc =
                unsafe { (self.exec)(self.db, sql.as_ptr(), None, std::ptr::null_mut(), &mut err) };
            if rc == 0 {
                Ok(())
            } else if err.is_null() {
                Err(format!("rc {rc}"))
            } else {
                Err(unsafe { CStr::from_ptr(err) }.to_string_lossy().to_string())
            }
        }

        pub fn close(self) {
            unsafe { (self.close)(self.db) };
        }
    }
}

/// Not a test on its own: the host process the loading tests start.
#[test]
#[ignore = "run as a child process by the tests below"]
fn review_host() {
    let path = std::env::var(HOST_DB).expect(HOST_DB);
    let scenario = std::env::var(HOST_SCENARIO).unwrap_or_default();
    match scenario.as_str() {
        "two_sqlites" => {
            // The bundled SQLite loads tether first, then the system's SQLite loads the same
            // library in the same process; then the first connection is used and closed.
            let first = open_loaded(Path::new(&path));
            let status = json(&first, "SELECT tether_status()");
            println!("first: {}", status["pending"]);
            let second_path = format!("{path}-second");
            let (second, outcome) =
                system_sqlite::open_and_load(&second_path, extension_path().to_str().unwrap());
            println!("second load: {outcome:?}");
            if outcome.is_ok() {
                println!("second: {:?}", second.exec("SELECT tether_status()"));
            }
            let again: rusqlite::Result<String> =
                first.query_row("SELECT tether_status()", [], |r| r.get(0));
            println!("first again: {}", again.is_ok());
            first
                .execute_batch("CREATE TABLE IF NOT EXISTS n(id INTEGER PRIMARY KEY, b); SELECT tether_track('n'); INSERT INTO n(b) VALUES (1);")
                .unwrap_or_else(|e| println!("first write: {e}"));
            drop(first);
            second.close();
        }
        other => panic!("unknown scenario {other:?}"),
    }
    println!("host: closed");
}

/// Runs [`review_host`] with `scenario` on `path`: (exit success, output).
fn run_host(path: &Path, scenario: &str, env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["review_host", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(HOST_DB, path)
        .env(HOST_SCENARIO, scenario)
        .env("TETHER_EXTENSION", extension_path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}\nstatus: {:?}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status
    );
    (
        output.status.success() && text.contains("host: closed"),
        text,
    )
}

#[test]
fn two_sqlite_libraries_in_one_process_loading_tether_never_crash_it() {
    let (_dir, path) = temp_db();
    let (ok, out) = run_host(&path, "two_sqlites", &[]);
    assert!(ok, "the host process crashed or failed:\n{out}");
}

/// Runs the sqlite3 shell on `db` with `args` (dot-commands and SQL), as a separate process:
/// (exit code, stdout + stderr). A signal (a crash) fails the test at once.
fn shell(db: &str, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (i32, String) {
    let output = Command::new("sqlite3")
        .arg(db)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run the sqlite3 shell");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let code = output
        .status
        .code()
        .unwrap_or_else(|| panic!("the shell crashed ({:?}):\n{text}", output.status));
    (code, text)
}

fn dot_load() -> String {
    format!(".load {}", extension_path().display())
}

fn set_up_by_tether(path: &Path) {
    let conn = open_loaded(path);
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); SELECT tether_track('notes');",
    )
    .unwrap();
}

#[test]
fn a_load_inside_a_transaction_that_is_rolled_back_leaves_a_working_tether_or_is_refused() {
    // The first load migrates inside the host's transaction (a savepoint). The host rolls back:
    // the internal tables are gone, yet tether's functions stay registered on the connection.
    let (_dir, path) = temp_db();
    let conn = open_plain(&path);
    conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); BEGIN;")
        .unwrap();
    let loaded = load(&conn);
    conn.execute_batch("ROLLBACK").unwrap();
    if let Err(e) = loaded {
        // Refusing is fine, if it says why.
        assert!(e.to_string().contains("transaction"), "{e}");
        return;
    }
    let after: rusqlite::Result<String> =
        conn.query_row("SELECT tether_status()", [], |r| r.get(0));
    assert!(
        after.is_ok(),
        "loaded, then unusable on this connection: {:?}",
        after.unwrap_err().to_string()
    );
}

#[test]
fn query_only_is_read_only_for_the_stray_suppression_cleanup() {
    // A read-only connection leaves a stray suppression row to a connection that can write;
    // PRAGMA query_only is not seen (is_readonly reports the open mode), and loading fails.
    let (_dir, path) = temp_db();
    set_up_by_tether(&path);
    open_plain(&path)
        .execute(
            "INSERT INTO tether_capture_suppressed (reason) VALUES ('stray')",
            [],
        )
        .unwrap();
    let db = path.to_str().unwrap();
    let output = Command::new("sqlite3")
        .args(["-readonly", db, &dot_load(), "SELECT 'went on';"])
        .output()
        .unwrap();
    let (code, out) = (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!((code, out.trim()), (0, "went on"), "read-only loads");
    let (code, out) = shell(
        db,
        &["PRAGMA query_only = ON;", &dot_load(), "SELECT 'went on';"],
        &[],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "went on"),
        "a query_only connection loads like a read-only one"
    );
}

#[test]
fn a_read_only_load_that_needs_migration_names_the_cause() {
    // "attempt to write a readonly database" alone leaves the user guessing why loading writes.
    let (_dir, path) = temp_db();
    open_plain(&path)
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    let db = path.to_str().unwrap();
    for (how, args) in [
        ("-readonly", vec!["-readonly".to_string(), db.to_string()]),
        (
            "query_only",
            vec![db.to_string(), "PRAGMA query_only = ON;".to_string()],
        ),
    ] {
        let output = Command::new("sqlite3")
            .args(&args)
            .arg(dot_load())
            .arg("SELECT 'went on';")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stderr).to_string();
        assert_eq!(output.status.code(), Some(1), "{how}: {out}");
        assert!(
            out.contains("migrat") || out.contains("internal tables") || out.contains("set up"),
            "{how}: the error should say tether must create its internal tables and cannot: {out}"
        );
    }
}

#[test]
fn a_recorded_schema_with_a_missing_table_is_refused_or_repaired_on_load() {
    // tether_migrations says "current", but tether_mutation_logs is gone (a partial restore, a
    // cleanup). Loading succeeds and says nothing; then every write of the application to a
    // tracked table fails, in every connection, tether loaded or not.
    let (_dir, path) = temp_db();
    set_up_by_tether(&path);
    open_plain(&path)
        .execute_batch("DROP TABLE tether_mutation_logs")
        .unwrap();
    let db = path.to_str().unwrap();
    let (code, out) = shell(db, &[&dot_load(), "SELECT 'loaded';"], &[]);
    if code != 0 {
        assert!(out.contains("tether_mutation_logs"), "{out}");
        return;
    }
    let (code, out) = shell(
        db,
        &[
            &dot_load(),
            "INSERT INTO notes (body) VALUES ('x');",
            "SELECT 'written';",
        ],
        &[],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "written"),
        "loading said nothing, then the application's write failed"
    );
}

#[test]
fn a_non_utf8_environment_value_is_refused_like_a_malformed_one() {
    use std::os::unix::ffi::OsStrExt;
    let (_dir, path) = temp_db();
    set_up_by_tether(&path);
    let db = path.to_str().unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"tok-\xff-77");
    // TETHER_PUSH_BATCH_SIZE=lots is refused by name; bytes that are not UTF-8 are silently
    // ignored: the token is dropped and requests go out without Authorization.
    let (code, out) = shell(
        db,
        &[&dot_load(), "SELECT quote(tether_config('auth_token'));"],
        &[("TETHER_AUTH_TOKEN", bad)],
    );
    assert!(
        code != 0 && out.contains("TETHER_AUTH_TOKEN"),
        "exit {code}: {out}"
    );
}

#[test]
fn loading_twice_through_sql_on_one_connection_works() {
    // Hosts without a load_extension API (PHP PDO before 8.4, ORMs running init SQL on each
    // checkout) load with `SELECT load_extension(...)`. The second time, the statement doing
    // the loading is itself active, and re-registering the functions is refused by SQLite.
    let (_dir, path) = temp_db();
    let db = path.to_str().unwrap();
    let sql = format!("SELECT load_extension('{}');", extension_path().display());
    let (code, out) = shell(db, &[&sql, &sql, "SELECT tether_version();"], &[]);
    assert!(
        code == 0 && !out.contains("Error") && out.trim() == "0.1.0",
        "exit {code}: {out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Background worker liveness

fn finished_cycles(path: &Path, trigger: &str) -> i64 {
    open_plain(path)
        .query_row(
            "SELECT count(*) FROM tether_sync_log WHERE trigger = ?1 AND finished_at IS NOT NULL",
            [trigger],
            |r| r.get(0),
        )
        .unwrap_or(0)
}

#[test]
fn a_cycle_that_panics_in_the_worker_does_not_end_background_work() {
    // Any panic inside a cycle unwinds out of the worker's loop (catch_unwind wraps the whole
    // thread): the worker is gone, dispatch still answers "dispatched". The panic used here is
    // the lease arithmetic overflowing for the largest timeout_ms the setting accepts (see
    // the_largest_timeout_ms_the_setting_accepts_syncs).
    let (url, _seen) = serve(4, |_, _| {
        ok_json(br#"{"snapshots": [], "new_sync_cursor": null, "has_more": false}"#)
    });
    let (_dir, path, conn) = client(&url, 0);
    set_config(&conn, "timeout_ms", i64::MAX);
    json(&conn, "SELECT tether_dispatch('pull')");
    std::thread::sleep(Duration::from_millis(1500));
    set_config(&conn, "timeout_ms", 2000);
    json(&conn, "SELECT tether_dispatch('pull')");
    assert!(
        wait_for(Duration::from_secs(8), || finished_cycles(
            &path, "dispatch"
        ) >= 1),
        "the second dispatch never ran: the worker died with the first cycle's panic"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Sync lock

fn lock_holder(conn: &Connection) -> Option<(String, Option<i64>)> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT holder, pid FROM tether_locks WHERE name = 'sync'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .unwrap()
}

#[test]
fn many_cycles_taking_over_one_dead_holder_at_once_only_one_wins() {
    use tether::engine::lock::{host_name, Lease};
    let Some(host) = host_name() else {
        eprintln!("no host name: the dead-holder takeover is off, nothing to race");
        return;
    };
    let (_dir, path) = temp_db();
    set_up_by_tether(&path);
    for round in 0..5 {
        let dead = {
            let mut child = Command::new("true").spawn().unwrap();
            let pid = child.id() as i64;
            child.wait().unwrap();
            pid
        };
        let setup = open_plain(&path);
        setup.execute("DELETE FROM tether_locks", []).unwrap();
        setup
            .execute(
                "INSERT INTO tether_locks (name, holder, expires_at, host, pid) VALUES ('sync', 'dead one', ?1, ?2, ?3)",
                rusqlite::params![now_ms() + 60_000, host, dead],
            )
            .unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let conn = Connection::open(&path).unwrap();
                    tether::register(&conn).unwrap();
                    barrier.wait();
                    let lease = Lease::acquire(&conn, 0, None).unwrap();
                    // Hold it a little, as a cycle would, so a late racer sees it held.
                    std::thread::sleep(Duration::from_millis(200));
                    let won = lease.is_some();
                    if let Some(lease) = lease {
                        lease.release(&conn).unwrap();
                    }
                    won
                })
            })
            .collect();
        let winners = racers
            .into_iter()
            .map(|r| r.join().unwrap())
            .filter(|&won| won)
            .count();
        assert_eq!(
            winners, 1,
            "round {round}: {winners} cycles took the dead holder's lock"
        );
    }
}

#[test]
fn a_cycle_that_panics_after_taking_the_lease_releases_it_and_finishes_its_log_entry() {
    // The panic: renewing the lease computes now + (timeout_ms + 10 s) and overflows once the
    // clock passes i64::MAX - timeout_ms - 10 s (debug builds panic; release builds wrap to a
    // lease that expired long ago). Here the acquisition fits, the renewal after a 2 s request
    // does not.
    let (url, _seen) = serve_raw(1, |stream, _, _| {
        std::thread::sleep(Duration::from_secs(2));
        let _ = stream.write_all(&ok_json(
            br#"{"snapshots": [], "new_sync_cursor": null, "has_more": false}"#,
        ));
    });
    let (_dir, _path, conn) = client(&url, 0);
    let timeout = i64::MAX - 10_000 - (now_ms() + 1000);
    set_config(&conn, "timeout_ms", timeout);
    // The lease arithmetic saturates now, so the cycle completes; either way the lease and the
    // log entry must end with it.
    let err = format!(
        "{:?}",
        conn.query_row("SELECT tether_pull()", [], |r| r.get::<_, String>(0))
    );
    assert_eq!(
        lock_holder(&conn),
        None,
        "the lease outlived the cycle ({err})"
    );
    let finished: Option<String> = conn
        .query_row(
            "SELECT finished_at FROM tether_sync_log ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        finished.is_some(),
        "the cycle's log entry is left 'running' forever ({err})"
    );
}

#[test]
fn the_largest_timeout_ms_the_setting_accepts_syncs() {
    // timeout_ms accepts any whole number up to i64::MAX ("no timeout, really"). Lease::acquire
    // adds 10 s to it: an overflow (a panic, "internal error", in debug builds; in release a
    // negative sum, so the lease is 60 s while a request may take forever).
    let (url, _seen) = serve(1, |_, _| {
        ok_json(br#"{"snapshots": [], "new_sync_cursor": null, "has_more": false}"#)
    });
    let (_dir, _path, conn) = client(&url, 0);
    set_config(&conn, "timeout_ms", i64::MAX);
    let outcome: rusqlite::Result<String> =
        conn.query_row("SELECT tether_pull()", [], |r| r.get(0));
    assert!(outcome.is_ok(), "{:?}", outcome.unwrap_err().to_string());
}

#[test]
fn a_live_holder_in_another_pid_namespace_with_the_same_host_name_keeps_the_lock() {
    // Containers sharing the host's UTS namespace (docker --network host, --uts host) or a
    // sandbox with its own pid namespace have the same host name and pids that mean nothing
    // here: kill(pid, 0) says "gone" for a holder that is alive and mid-request.
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("unshare --pid is not available here: not tested");
        return;
    }
    let server = Server::start(&[
        "--model",
        r#"{"name": "Task", "fields": {"title": "required|max:40"}, "soft_deletes": true}"#,
    ]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (title) VALUES ('x')", [])
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "delay_ms": 3000}),
    );
    // Inside the new namespace the shell gets pid 32001, which no process has out here.
    let pid_here = 32001;
    let exists_here = Command::new("sh")
        .args(["-c", &format!("kill -0 {pid_here} 2>/dev/null")])
        .status()
        .unwrap()
        .success();
    assert!(!exists_here, "pick another pid: {pid_here} exists here");
    let script = format!(
        "echo 32000 > /proc/sys/kernel/ns_last_pid && sqlite3 '{}' '.load {}' 'SELECT tether_sync();'; true",
        path.display(),
        extension_path().display()
    );
    let holder = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || lock_holder(&conn).is_some()),
        "the namespaced cycle never took the lock"
    );
    let (_, pid) = lock_holder(&conn).unwrap();
    assert_eq!(pid, Some(pid_here), "the holder's pid as it knows it");
    let ours = json(&conn, "SELECT tether_sync()");
    let theirs = holder.wait_with_output().unwrap();
    let theirs = format!(
        "{}{}",
        String::from_utf8_lossy(&theirs.stdout),
        String::from_utf8_lossy(&theirs.stderr)
    );
    assert_eq!(
        ours["skipped"], true,
        "took the lock of a live holder mid-request: ours {ours}, theirs {theirs}"
    );
}
