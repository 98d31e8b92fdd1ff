//! `tether attention`, `tether retry`, `tether discard`: every rejection names its table and row,
//! and the status counts go back to 0 once resolved.
mod common;

use common::*;
use serde_json::{json, Value};

/// A database whose row 2 the server refused (title too long), synced once.
fn refused(server: &Server) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = database(server);
    open_plain(&path)
        .execute(
            "INSERT INTO tasks (id, title) VALUES (2, 'far too long for the server')",
            [],
        )
        .unwrap();
    let out = tether(&path, &["sync"]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("tasks row {\"id\":2}") && stderr.contains("validation_failed"),
        "the rejection names its table and row: {stderr}"
    );
    assert!(stderr.contains("tether attention"), "{stderr}");
    (dir, path)
}

fn status(path: &std::path::Path) -> Value {
    one_json_line(&text(&tether(path, &["status", "--json"])).0)
}

#[test]
fn attention_lists_the_refused_row_and_discard_clears_it() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = refused(&server);
    assert_eq!(status(&path)["failed"], 1);
    let out = tether(&path, &["status"]);
    assert!(
        text(&out).1.contains("1 row(s) need attention"),
        "{:?}",
        text(&out)
    );

    let out = tether(&path, &["attention"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("failed")
            && stdout.contains("tasks row {\"id\":2}")
            && stdout.contains("validation_failed")
            && stdout.contains("The title field must not be greater than 20 characters."),
        "{stdout}"
    );
    let listed = one_json_line(&text(&tether(&path, &["attention", "--json"])).0);
    assert_eq!(listed["rows"][0]["table"], "tasks", "{listed}");
    assert_eq!(listed["rows"][0]["local_pk"], json!({"id": 2}), "{listed}");

    let out = tether(&path, &["discard", "tasks", "2"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("discarded 1 row(s)"), "{stdout}");
    assert!(
        stdout.contains("removed"),
        "the server never had it: {stdout}"
    );
    let status = status(&path);
    assert_eq!(
        (status["failed"].clone(), status["conflicts"].clone()),
        (json!(0), json!(0))
    );
    assert!(text(&tether(&path, &["attention"]))
        .0
        .contains("nothing needs attention"));
    assert_eq!(count(&path, "SELECT count(*) FROM tasks WHERE id = 2"), 0);
}

#[test]
fn retry_queues_the_row_again_and_json_keeps_the_sql_shape() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = refused(&server);
    let out = tether(&path, &["retry", "tasks", "--json"]);
    let result = one_json_line(&text(&out).0);
    assert_eq!(result["retried"], 1, "{result}");
    assert_eq!(result["rows"][0]["outcome"], "create", "{result}");
    assert_eq!(status(&path)["failed"], 0, "retried rows leave the count");
    // Still too long for the server: refused again, named again.
    let out = tether(&path, &["sync"]);
    assert_eq!(out.status.code(), Some(3));
    open_plain(&path)
        .execute("UPDATE tasks SET title = 'short' WHERE id = 2", [])
        .unwrap();
    let out = tether(&path, &["sync"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(status(&path)["failed"], 0);
    assert_eq!(server.rows("x").len(), 2);
}

#[test]
fn resolving_without_a_table_or_with_an_unknown_row_says_what_is_wrong() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    let out = tether(&path, &["discard"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a usage error: {:?}",
        text(&out)
    );
    let out = tether(&path, &["retry", "tasks", "99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("no row of \"tasks\" has the sync key, mutation id or primary key \"99\""),
        "{:?}",
        text(&out)
    );
    let out = tether(&path, &["retry"]);
    assert!(out.status.success());
    assert!(
        text(&out).0.contains("retried 0 row(s)"),
        "{:?}",
        text(&out)
    );
}
