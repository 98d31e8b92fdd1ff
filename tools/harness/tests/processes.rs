//! Other processes on the same database file: a sync killed with SIGKILL mid-request, and two
//! processes syncing at once. The other process is the plain sqlite3 shell loading the extension.
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required|max:40"}, "soft_deletes": true}"#;

/// `sqlite3 DB ".load libtether" "SELECT tether_sync();"` in the background.
fn shell_sync(path: &std::path::Path) -> Child {
    Command::new("sqlite3")
        .arg(path)
        .arg(format!(".load {}", extension_path().display()))
        .arg("SELECT tether_sync();")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the sqlite3 shell (apt-get install sqlite3)")
}

fn output(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lease of a killed holder expires 60 s after its last renewal; skip the wait.
fn let_the_dead_lease_expire(conn: &Connection) {
    conn.execute("UPDATE tether_locks SET expires_at = 0", [])
        .unwrap();
}

fn titles(conn: &Connection) -> Vec<String> {
    column(conn, "SELECT title FROM tasks ORDER BY title")
}

fn server_titles(server: &Server) -> Vec<String> {
    let mut t: Vec<String> = server
        .rows("x")
        .values()
        .map(|v| v["title"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

#[test]
fn a_sync_killed_during_its_push_converges_on_the_next_one() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute_batch("INSERT INTO tasks (title) VALUES ('a'), ('b'), ('c');")
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "delay_ms": 1500}),
    );
    let mut child = shell_sync(&path);
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        json(&conn, "SELECT tether_sync()")["skipped"],
        true,
        "the dead holder's lease still stands"
    );
    let_the_dead_lease_expire(&conn);
    std::thread::sleep(Duration::from_millis(1200));
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(
        (result["pushed"].as_i64(), result["failed"].as_i64()),
        (Some(3), Some(0)),
        "{result}"
    );
    assert_eq!(titles(&conn), server_titles(&server));
    assert_eq!(
        server_titles(&server),
        ["a", "b", "c"],
        "nothing lost, nothing doubled"
    );
    assert_eq!(json(&conn, "SELECT tether_status()")["pending"], 0);
}

#[test]
fn a_sync_killed_during_its_pull_converges_on_the_next_one() {
    let server = Server::start(&["--model", TASK]);
    let (_d1, _p1, writer) = synced_client(&server);
    writer
        .execute_batch("INSERT INTO tasks (title) VALUES ('x'), ('y');")
        .unwrap();
    json(&writer, "SELECT tether_sync()");
    let (_dir, path, conn) = synced_client(&server);
    set_config(&conn, "pull_page_size", 1);
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/pull", "delay_ms": 1500}),
    );
    let mut child = shell_sync(&path);
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let_the_dead_lease_expire(&conn);
    let result = json(&conn, "SELECT tether_sync()");
    assert_eq!(result["pull_errors"], 0, "{result}");
    assert_eq!(titles(&conn), ["x", "y"]);
    assert_eq!(
        json(&conn, "SELECT tether_status()")["pending"],
        0,
        "pulled rows were not captured"
    );
}

#[test]
fn two_processes_syncing_at_once_one_runs_the_other_skips() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (title) VALUES ('only once')", [])
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "delay_ms": 1000}),
    );
    let first = shell_sync(&path);
    std::thread::sleep(Duration::from_millis(300));
    let second = output(shell_sync(&path));
    let first = output(first);
    let parse = |text: &str| -> Value {
        serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("not a result: {text}"))
    };
    assert_eq!(parse(&second)["skipped"], true, "{second}");
    assert_eq!(parse(&first)["pushed"], 1, "{first}");
    assert_eq!(server_titles(&server), ["only once"]);
}

#[test]
fn debug_output_goes_to_stderr_without_secrets() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path, conn) = synced_client(&server);
    conn.execute("INSERT INTO tasks (title) VALUES ('x')", [])
        .unwrap();
    let out = Command::new("sqlite3")
        .arg(&path)
        .arg(format!(".load {}", extension_path().display()))
        .arg("SELECT tether_config('auth_token', 'very-secret-token', 'connection');")
        .arg("SELECT tether_config('debug_level', 3, 'connection');")
        .arg("SELECT tether_sync();")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[TETHER] POST") && stderr.contains("/tether/push"),
        "{stderr}"
    );
    assert!(stderr.contains("[TETHER] sync (foreground)"), "{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with("[TETHER]")),
        "{stderr}"
    );
    assert!(!stderr.contains("very-secret-token"), "{stderr}");
    let quiet = Command::new("sqlite3")
        .arg(&path)
        .arg(format!(".load {}", extension_path().display()))
        .arg("SELECT tether_sync();")
        .output()
        .unwrap();
    assert!(quiet.stderr.is_empty(), "debug_level 0 prints nothing");
}
