//! Second adversarial review of push/pull failure handling, on the code that fixed the first
//! review's findings: cases that still lose or duplicate data, move the pull cursor past a row
//! never applied, wedge, or crash. Each test states what should happen. (Foreign key actions of
//! a pulled delete are queued only for rows with unsent changes — README, "Foreign keys" — so the
//! review's tests expecting every cascaded row to be sent were dropped with that decision.)

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

fn statuses(conn: &Connection) -> Vec<String> {
    column(
        conn,
        "SELECT operation || ':' || sync_status || ':' || coalesce(rejection_reason, '')
           FROM tether_mutation_logs ORDER BY id",
    )
}

/// POSTs a request body to the server's protocol endpoint, as a host with its own HTTP would.
fn post(server: &Server, path: &str, body: &Value) -> Value {
    server.post(path, body)
}

/// The titles of the tasks the server holds for `conn`'s client (rows without a title are
/// projects).
fn server_titles(server: &Server, conn: &Connection) -> Vec<Value> {
    server
        .field_of_rows(conn, "title")
        .into_iter()
        .filter(|t| !t.is_null())
        .collect()
}

const PROJECT: &str = r#"{"name": "Project", "fields": {"name": "required|max:60"}}"#;
const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required|max:60", "project": "nullable|string"}}"#;

/// A client with `projects` and `tasks` (`project` refers to a project's sync key with
/// `on_delete`), foreign keys on, pointed at `server`.
fn family_client(server: &Server, on_delete: &str) -> (tempfile::TempDir, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         SELECT tether_track('projects');
         CREATE UNIQUE INDEX projects_key ON projects (tether_id);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL,
                             project TEXT REFERENCES projects (tether_id) {on_delete});
         SELECT tether_track('tasks');"
    ))
    .unwrap();
    set_config(&conn, "server_url", server.url.as_str());
    (dir, conn)
}

// ---------------------------------------------------------------------------------------------
// Cascades
// ---------------------------------------------------------------------------------------------

/// README ("A pulled delete of a parent runs your ON DELETE … SET NULL actions; the tracked rows
/// they change are queued as … updates"). B deletes a project (its SET NULL is captured), then
/// renames the project's task: the task's newest server state (new title, no project) comes
/// after the project's delete in A's page. A's delete runs SET NULL on its *stale* copy of the task
/// and queues an update carrying every synced column of that stale copy, stamped now; the
/// task's newer snapshot then applies (its entity was not "unsent" when the transaction began),
/// and A's next push overwrites B's title on the server with the old one (last writer wins on
/// the update's timestamp). B's rename is lost on every device, without anyone editing it.
#[test]
fn a_cascaded_set_null_does_not_send_back_stale_values_of_the_other_columns() {
    let server = Server::start(&["--model", PROJECT, "--model", TASK]);
    let (_da, a) = family_client(&server, "ON DELETE SET NULL");
    let (_db, b) = family_client(&server, "ON DELETE SET NULL");
    a.execute_batch(
        "INSERT INTO projects (name) VALUES ('home');
         INSERT INTO tasks (title, project) SELECT 'old title', tether_id FROM projects;",
    )
    .unwrap();
    json(&a, "SELECT tether_sync()");
    json(&b, "SELECT tether_sync()");
    assert_eq!(
        column::<String>(&b, "SELECT title FROM tasks"),
        ["old title"]
    );
    b.execute_batch(
        "DELETE FROM projects;
         UPDATE tasks SET title = 'renamed by b';",
    )
    .unwrap();
    json(&b, "SELECT tether_sync()");
    // A syncs twice: the pull, then the push of what it queued and the pull after it.
    let first = json(&a, "SELECT tether_sync()");
    let second = json(&a, "SELECT tether_sync()");
    json(&b, "SELECT tether_sync()");
    let on_server = server_titles(&server, &a);
    let (on_a, on_b) = (
        column::<String>(&a, "SELECT title FROM tasks"),
        column::<String>(&b, "SELECT title FROM tasks"),
    );
    assert_eq!(
        (on_server, on_a, on_b),
        (
            vec![json!("renamed by b")],
            vec!["renamed by b".to_string()],
            vec!["renamed by b".to_string()]
        ),
        "(server, A, B) titles: B's rename was overwritten by A's cascade; A's syncs: {first} {second}; A's log: {:?}",
        statuses(&a)
    );
}

/// The same stale cascade with ON DELETE CASCADE: B (foreign keys off on its connection, as
/// SQLite starts) deletes a project, then moves its task to another project. A's page brings the
/// project's delete, then the task's new state. The delete cascades to A's *stale* task (still
/// in the deleted project) and queues a delete for it; the task's new state then applies (the
/// task is re-created here, in its new project), and A's push deletes it on the server. The
/// task B kept and moved is gone from every device.
#[test]
fn a_cascaded_delete_does_not_delete_a_row_moved_away_from_the_parent_later_in_the_page() {
    let server = Server::start(&["--model", PROJECT, "--model", TASK]);
    let (_da, a) = family_client(&server, "ON DELETE CASCADE");
    let (_db, b) = family_client(&server, "ON DELETE CASCADE");
    a.execute_batch(
        "INSERT INTO projects (name) VALUES ('old'), ('new');
         INSERT INTO tasks (title, project) SELECT 'kept', tether_id FROM projects WHERE name = 'old';",
    )
    .unwrap();
    json(&a, "SELECT tether_sync()");
    json(&b, "SELECT tether_sync()");
    b.execute_batch(
        "PRAGMA foreign_keys = OFF;
         DELETE FROM projects WHERE name = 'old';
         UPDATE tasks SET project = (SELECT tether_id FROM projects WHERE name = 'new');",
    )
    .unwrap();
    json(&b, "SELECT tether_sync()");
    let first = json(&a, "SELECT tether_sync()");
    let second = json(&a, "SELECT tether_sync()");
    json(&b, "SELECT tether_sync()");
    assert_eq!(
        (
            server_titles(&server, &a),
            column::<String>(&a, "SELECT title FROM tasks"),
            column::<String>(&b, "SELECT title FROM tasks"),
        ),
        (
            vec![json!("kept")],
            vec!["kept".to_string()],
            vec!["kept".to_string()]
        ),
        "(server, A, B): the task B moved to another project was deleted by A's stale cascade; \
         A's syncs: {first} {second}; A's log: {:?}",
        statuses(&a)
    );
}

/// README ("the tracked rows they delete … are queued as deletes …, so the server loses them
/// too"). B's connection has foreign keys off (SQLite's default), so B's app deletes a project
/// and then its tasks itself: the server sends the project's delete before the tasks' deletes.
/// A's cascade deletes the tasks and queues deletes for them; the tasks' own deletes in the same
/// page find nothing to do; A's push then asks the server to delete rows it deleted already,
/// which it answers `not_found`: permanent failures, reported as rejections to A's app, left
/// `failed` in the log for good, for a change every device agrees on. A cascade delete the
/// server already has (a later delete snapshot of the same row in the page, or `not_found` for
/// a delete) should not be a failure.
#[test]
fn a_cascaded_delete_the_server_already_has_is_not_a_permanent_failure() {
    let server = Server::start(&["--model", PROJECT, "--model", TASK]);
    let (_da, a) = family_client(&server, "ON DELETE CASCADE");
    let (_db, b) = family_client(&server, "ON DELETE CASCADE");
    a.execute_batch(
        "INSERT INTO projects (name) VALUES ('home');
         INSERT INTO tasks (title, project) SELECT 'one', tether_id FROM projects;
         INSERT INTO tasks (title, project) SELECT 'two', tether_id FROM projects;",
    )
    .unwrap();
    json(&a, "SELECT tether_sync()");
    json(&b, "SELECT tether_sync()");
    b.execute_batch(
        "PRAGMA foreign_keys = OFF;
         DELETE FROM projects;
         DELETE FROM tasks;",
    )
    .unwrap();
    json(&b, "SELECT tether_sync()");
    let pulled = json(&a, "SELECT tether_sync()");
    let pushed = json(&a, "SELECT tether_sync()");
    assert_eq!(column::<i64>(&a, "SELECT count(*) FROM tasks"), [0]);
    assert!(server_titles(&server, &a).is_empty());
    let failed = json(&a, "SELECT tether_status()")["failed"].clone();
    assert_eq!(
        (pushed["failed"].clone(), failed),
        (json!(0), json!(0)),
        "a delete every device agrees on failed for good on A: {pulled} {pushed}; A's log: {:?}",
        statuses(&a)
    );
}

// ---------------------------------------------------------------------------------------------
// The pull cursor rewind
// ---------------------------------------------------------------------------------------------

/// README ("If it is accepted … the pull goes back to where that snapshot arrived … Cost: the
/// pages since then are fetched again"). A row the app edits between each push and the next
/// pull (auto_sync pushes after writes and a schedule pulls; or a busy row written from another
/// connection) comes back in every pull (the server's echo of its last push) while it has an
/// unsent edit: the echo waits with `cursor_before` = where that pull started, and the next push
/// rewinds there. But the pull that follows starts from that rewound point, so the next echo
/// records the *same* point again: the cursor is pinned where it stood before the first such
/// pull, and every pull downloads everything since then, more each cycle, forever.
#[test]
fn a_row_edited_between_every_push_and_pull_does_not_pin_the_cursor() {
    let server = Server::start(&[]);
    let (_da, _pa, a) = synced_client(&server);
    let (_db, _pb, b) = synced_client(&server);
    a.execute("INSERT INTO tasks (title) VALUES ('busy')", [])
        .unwrap();
    json(&a, "SELECT tether_sync()");
    let mut pulled = Vec::new();
    for round in 0..8 {
        json(&a, "SELECT tether_push()");
        a.execute(
            "UPDATE tasks SET title = ?1 WHERE id = 1",
            [format!("busy {round}")],
        )
        .unwrap();
        // Another device adds one row per round.
        b.execute(
            "INSERT INTO tasks (title) VALUES (?1)",
            [format!("from b {round}")],
        )
        .unwrap();
        json(&b, "SELECT tether_push()");
        pulled.push(json(&a, "SELECT tether_pull()")["pulled"].as_u64().unwrap());
    }
    json(&a, "SELECT tether_sync()");
    assert_eq!(column::<i64>(&a, "SELECT count(*) FROM tasks"), [9]);
    assert!(
        pulled.iter().all(|n| *n <= 2),
        "rows applied by each pull, while one new row arrived per round: {pulled:?}"
    );
}

/// README ("Driving the HTTP yourself"; "the sans-IO functions do not take the sync lock"; a
/// snapshot deferred behind an accepted change: "the pull goes back to where that snapshot
/// arrived and the row comes again as the server has it now"). The rewind only moves the stored
/// cursor; a pull request already on its way carries the later cursor, and its answer sets the
/// cursor to where *that* request ended, undoing the rewind. Here A's create was applied but its
/// answer lost; B then changed the row; A's pull defers B's state behind the unsent create; a
/// second pull request leaves; the resend of the create is answered `duplicate` (the deferred
/// state is dropped, the cursor rewound); then the second pull's answer arrives and moves the
/// cursor past B's change again. A keeps its own title for good; the server has B's.
#[test]
fn a_pull_answer_in_flight_during_a_rewind_does_not_undo_it() {
    let server = Server::start(&["--strict-duplicates"]);
    let (_da, _pa, a) = synced_client(&server);
    let (_db, _pb, b) = synced_client(&server);
    a.execute("INSERT INTO tasks (title) VALUES ('from a')", [])
        .unwrap();
    // The server applies A's create; its answer never comes back.
    let lost = push_request(&a).unwrap();
    post(&server, "/tether/push", &lost);
    assert!(push_request(&a).is_none(), "that push is over");
    json(&b, "SELECT tether_sync()");
    b.execute("UPDATE tasks SET title = 'from b'", []).unwrap();
    json(&b, "SELECT tether_sync()");
    // A's pull: B's state waits behind A's unsent create.
    let request = pull_request(&a);
    let answer = post(&server, "/tether/pull", &request);
    let result = pull_response(&a, &answer).unwrap();
    assert_eq!(result["pulled"], 0, "{result}");
    // The next pull request leaves; while it is on its way, the resend is answered.
    let in_flight = pull_request(&a);
    let resend = push_request(&a).unwrap();
    let answer = post(&server, "/tether/push", &resend);
    let pushed = push_response(&a, &answer);
    assert_eq!(pushed["pushed"], 1, "{pushed}");
    assert!(push_request(&a).is_none());
    let late = post(&server, "/tether/pull", &in_flight);
    pull_response(&a, &late).unwrap();
    // Any number of later syncs.
    json(&a, "SELECT tether_sync()");
    json(&a, "SELECT tether_sync()");
    assert_eq!(
        (
            column::<String>(&a, "SELECT title FROM tasks"),
            server_titles(&server, &a)
        ),
        (vec!["from b".to_string()], vec![json!("from b")]),
        "(A, server): the rewind was undone by the answer of a request sent before it"
    );
}

// ---------------------------------------------------------------------------------------------
// Cascades: what is followed
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Refusals and the row-by-row re-run
// ---------------------------------------------------------------------------------------------

/// README ("An application trigger that refuses a row with RAISE(ABORT) or RAISE(FAIL) sends it
/// to the quarantine like a constraint"). Unlike ABORT, RAISE(FAIL) keeps what the failing
/// statement did before it: the row's UPDATE and whatever the trigger wrote first. Outside the
/// row-by-row mode rows are written without a savepoint, so the "refused" row is written *and*
/// quarantined, and every later pull retries it: the trigger's side effect (an audit row here)
/// is written again on every pull, forever.
#[test]
fn a_row_refused_with_raise_fail_is_not_half_written_on_every_pull() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TABLE audit (title TEXT);",
        "'tasks'",
    );
    conn.execute_batch(
        "INSERT INTO tasks (title) VALUES ('mine');
         UPDATE tether_mutation_logs SET sync_status = 'synced';
         CREATE TRIGGER audited AFTER UPDATE ON tasks
           BEGIN INSERT INTO audit VALUES (NEW.title); SELECT RAISE(FAIL, 'locked'); END;",
    )
    .unwrap();
    let entity = key_of(&conn, "tasks", 1);
    let result = apply_snapshots(
        &conn,
        &[(&entity, "Task", "upsert", json!({"title": "theirs"}))],
    );
    assert_eq!(result["quarantined"], 1, "{result}");
    for cursor in 2..5 {
        pull_response(
            &conn,
            &json!({"snapshots": [], "new_sync_cursor": cursor, "has_more": false}),
        )
        .unwrap();
    }
    assert_eq!(quarantined(&conn), 1);
    assert_eq!(
        (
            column::<String>(&conn, "SELECT title FROM tasks"),
            column::<String>(&conn, "SELECT title FROM audit")
        ),
        (vec!["mine".to_string()], vec![]),
        "(the row, the audit rows): the refused row was written anyway, and its side effect again on every pull"
    );
}

// ---------------------------------------------------------------------------------------------
// Deferred snapshots
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// The first review's `a_string_after_an_array_in_the_same_page_keeps_its_type`, when the row
/// that brought the array is itself refused (a CHECK). `upsert` learns the column as JSON (DDL
/// and registry, kept: no savepoint outside the row-by-row mode) before the row's write fails;
/// the Applier's table is only refreshed when the write succeeds, so the rest of the
/// transaction goes on with the column as plain text: the string `"123"` later in the page is
/// stored raw (`123`), and, the column being JSON now, goes back to the server as the number
/// 123 on the next local edit.
#[test]
fn a_string_after_an_array_of_a_refused_row_keeps_its_type() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT CHECK (title <> 'bad'), tags TEXT)",
        "'tasks'",
    );
    let key = || -> String {
        conn.query_row("SELECT tether_ulid()", [], |r| r.get(0))
            .unwrap()
    };
    let task = |entity: &str, payload: Value| json!({"entity_id": entity, "model": "Task", "operation": "upsert", "payload": payload});
    let page = json!({"snapshots": [task(&key(), json!({"title": "bad", "tags": ["x"]})),
                                    task(&key(), json!({"title": "b", "tags": "123"}))],
                      "new_sync_cursor": 10, "has_more": false});
    let result = pull_response(&conn, &page).unwrap();
    assert_eq!(result["quarantined"], 1, "{result}");
    conn.execute_batch("UPDATE tasks SET title = 'b!'").unwrap();
    let body = push_request(&conn).unwrap();
    // The refused row was undone with its savepoint, learning included: the column is not
    // JSON, and the string stays a string either way.
    assert_eq!(
        body["mutations"][0]["payload"]["tags"],
        json!("123"),
        "the string the server sent went back as a number"
    );
}

/// A column is learned as JSON when the server first sends an array or object for it; values it
/// stored as plain text before (a string `"123"`, `"true"`, `"null"` from an earlier page) are
/// left as they are, and from then on are read as JSON by capture: the next local edit of such a
/// row sends the server a number, a boolean or null instead of the string it sent.
#[test]
fn strings_stored_before_a_column_is_learned_as_json_keep_their_type() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, tags TEXT)",
        "'tasks'",
    );
    let key = || -> String {
        conn.query_row("SELECT tether_ulid()", [], |r| r.get(0))
            .unwrap()
    };
    let task = |entity: &str, payload: Value| json!({"entity_id": entity, "model": "Task", "operation": "upsert", "payload": payload});
    for (cursor, snapshot) in [
        (10, task(&key(), json!({"title": "b", "tags": "123"}))),
        (20, task(&key(), json!({"title": "a", "tags": ["x"]}))),
    ] {
        pull_response(
            &conn,
            &json!({"snapshots": [snapshot], "new_sync_cursor": cursor, "has_more": false}),
        )
        .unwrap();
    }
    conn.execute_batch("UPDATE tasks SET title = 'b!' WHERE title = 'b'")
        .unwrap();
    let body = push_request(&conn).unwrap();
    assert_eq!(
        body["mutations"][0]["payload"]["tags"],
        json!("123"),
        "the string the server sent went back as another type: {body}"
    );
}
