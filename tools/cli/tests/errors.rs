//! Errors that say what to do: in the command line (with `tether config …` commands) and in SQL
//! (with `SELECT tether_config(…)`), never quoting a secret.
mod common;

use std::path::Path;

use common::*;
use rusqlite::Connection;

/// The error of `tether push` (exit 1, nothing on stdout).
fn push_error(path: &Path) -> String {
    let out = tether(path, &["push"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        !stderr.contains("SELECT"),
        "CLI errors suggest commands: {stderr}"
    );
    stderr
}

/// A connection with the extension linked statically, pointed at `url`, with a row queued.
fn sql_client(dir: &Path, url: &str) -> Connection {
    let conn = Connection::open(dir.join("sql.db")).unwrap();
    tether::register_without_workers(&conn).unwrap();
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks');
         INSERT INTO tasks (title) VALUES ('x');",
    )
    .unwrap();
    set_config(&conn, "server_url", url);
    conn
}

#[test]
fn a_refused_token_says_how_to_set_one() {
    let server = Server::start(&["--model", TASK, "--token", "right-token"]);
    let (dir, path) = database(&server);
    let stderr = push_error(&path);
    for expected in [
        "HTTP 401",
        "no auth_token is set",
        "tether config auth_token TOKEN",
        "TETHER_AUTH_TOKEN",
    ] {
        assert!(stderr.contains(expected), "lacks {expected:?}: {stderr}");
    }
    tether(&path, &["config", "auth_token", "wrong-token-31"]);
    let stderr = push_error(&path);
    assert!(
        stderr.contains("refused the auth_token sent")
            && stderr.contains("tether config auth_token TOKEN")
            && stderr.contains("TETHER_AUTH_TOKEN"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-token-31"), "{stderr}");
    // From the environment, the token works as well.
    tether(&path, &["config", "auth_token", "--unset"]);
    let out = command()
        .arg("--db")
        .arg(&path)
        .arg("push")
        .env("TETHER_AUTH_TOKEN", "right-token")
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));

    // In SQL, the suggestion stays SQL.
    let conn = sql_client(dir.path(), &server.url);
    let err = error_of(&conn, "SELECT tether_push()");
    assert!(
        err.contains("HTTP 401")
            && err.contains("SELECT tether_config('auth_token', 'TOKEN')")
            && err.contains("TETHER_AUTH_TOKEN"),
        "{err}"
    );
}

#[test]
fn forbidden_says_to_check_the_token() {
    let url = answering(
        "403 Forbidden",
        r#"{"message": "This action is unauthorized."}"#,
    );
    let (_dir, path) = database_at(&url);
    tether(&path, &["config", "auth_token", "tok-403-secret"]);
    let stderr = push_error(&path);
    assert!(
        stderr.contains("HTTP 403")
            && stderr.contains("refused access with the auth_token sent")
            && stderr.contains("tether config auth_token TOKEN")
            && stderr.contains("TETHER_AUTH_TOKEN"),
        "{stderr}"
    );
    assert!(!stderr.contains("tok-403-secret"), "{stderr}");
}

#[test]
fn not_found_says_the_route_is_appended_and_shows_the_url_tried() {
    let server = Server::start(&["--model", TASK]);
    let host = server.url.trim_start_matches("http://");
    // A password in the URL, never shown.
    let (dir, path) = database_at(&format!("http://user:pa55word@{host}/api"));
    let stderr = push_error(&path);
    let tried = format!("http://***@{host}/api/tether/push");
    for expected in [
        "HTTP 404",
        "appends /tether/push to server_url",
        &format!("the URL tried was {tried}"),
        "tether config server_url URL",
    ] {
        assert!(stderr.contains(expected), "lacks {expected:?}: {stderr}");
    }
    assert!(!stderr.contains("pa55word"), "{stderr}");

    // server_url set to a route itself: the fix is spelled out.
    tether(
        &path,
        &[
            "config",
            "server_url",
            &format!("{}/tether/pull", server.url),
        ],
    );
    let out = tether(&path, &["pull"]);
    let stderr = text(&out).1;
    assert!(
        stderr.contains("appends /tether/pull to server_url")
            && stderr.contains(&format!("tether config server_url {}\n", server.url)),
        "{stderr}"
    );

    // A push_url set whole names push_url.
    tether(&path, &["config", "server_url", &server.url]);
    tether(
        &path,
        &["config", "push_url", &format!("{}/v2/push", server.url)],
    );
    let stderr = push_error(&path);
    assert!(
        stderr.contains("set whole by push_url")
            && stderr.contains("tether config push_url --unset"),
        "{stderr}"
    );

    let conn = sql_client(dir.path(), &format!("{}/api", server.url));
    let err = error_of(&conn, "SELECT tether_push()");
    assert!(
        err.contains("appends /tether/push to server_url")
            && err.contains(&format!("the URL tried was {}/api/tether/push", server.url))
            && err.contains("SELECT tether_config('server_url', 'https://your-server.example')"),
        "{err}"
    );
}

#[test]
fn https_against_a_plain_http_server_suggests_http() {
    let server = Server::start(&["--model", TASK]);
    let host = server.url.trim_start_matches("http://");
    let (dir, path) = database_at(&format!("https://{host}"));
    let stderr = push_error(&path);
    assert!(
        stderr.contains("seems to speak plain HTTP")
            && stderr.contains(&format!("tether config server_url http://{host}")),
        "{stderr}"
    );
    let conn = sql_client(dir.path(), &format!("https://{host}"));
    let err = error_of(&conn, "SELECT tether_push()");
    assert!(
        err.contains("seems to speak plain HTTP")
            && err.contains(&format!(
                "SELECT tether_config('server_url', 'http://{host}')"
            )),
        "{err}"
    );
}

#[test]
fn no_server_suggests_the_command_in_the_cli_and_sql_in_sql() {
    let (dir, path) = tracked();
    let stderr = push_error(&path);
    assert!(
        stderr.contains("no server configured") && stderr.contains("tether config server_url URL"),
        "{stderr}"
    );
    let conn = Connection::open(dir.path().join("sql.db")).unwrap();
    tether::register_without_workers(&conn).unwrap();
    let err = error_of(&conn, "SELECT tether_push()");
    assert!(err.contains("SELECT tether_config('server_url'"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_and_a_directory_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        (
            "notes.txt",
            b"just some text, not a database at all".as_slice(),
        ),
        ("short.db", b"SQLite".as_slice()),
        ("zeros.db", [0u8; 4096].as_slice()),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        let out = tether(&file, &["status"]);
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("is not a SQLite database"),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("JSON"), "{stderr}");
    }
    let out = tether(dir.path(), &["status"]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("is a directory, not a database"),
        "{stderr}"
    );
    let out = tether(&dir.path().join("missing.db"), &["status"]);
    assert!(
        text(&out).1.contains("no such database"),
        "{:?}",
        text(&out)
    );
    // An empty file is an empty database for SQLite: tether sets it up.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = tether(&empty, &["status"]);
    assert!(out.status.success(), "{:?}", text(&out));
}
