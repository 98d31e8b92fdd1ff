//! Adversarial review of `tether_retry` / `tether_discard`, `tether_attention` and the push
//! answer's settling of earlier refusals. Each test states what a user relies on: the device's
//! rows, the server's own record, the status counts and the attention view. Tests that fail
//! demonstrate defects (see the report that came with this file).
use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

const NOTE: &str = r#"{"name": "Note", "fields": {"title": "required|max:20"}}"#;

/// A device with `schema` (which must create `notes`), tracked, pointed at `server`.
fn device_with(server: &Server, schema: &str, track: &[&str]) -> (tempfile::TempDir, Connection) {
    let (dir, _path, conn) = tracked_client(server, schema, track);
    (dir, conn)
}

fn device(server: &Server) -> (tempfile::TempDir, Connection) {
    device_with(
        server,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);",
        &["notes"],
    )
}

fn titles(conn: &Connection) -> Vec<String> {
    column(
        conn,
        "SELECT coalesce(title, '<null>') FROM notes ORDER BY title",
    )
}

fn server_titles(server: &Server, conn: &Connection) -> Vec<Value> {
    let mut titles = server.field_of_rows(conn, "title");
    titles.sort_by_key(|t| t.to_string());
    titles
}

fn sync(conn: &Connection) -> Value {
    json(conn, "SELECT tether_sync()")
}

fn pause() {
    std::thread::sleep(std::time::Duration::from_millis(5));
}

// ---------------------------------------------------------------------------------------------
// The push answer settling earlier refusals and conflicts
// ---------------------------------------------------------------------------------------------

/// The user writes an invalid title and corrects it before the next sync: both updates go in
/// one request, the server refuses the first and applies the second. The row is fine on the
/// server; nothing should need attention.
#[test]
fn a_refused_edit_corrected_before_the_same_push_needs_no_attention() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'groceries')", [])
        .unwrap();
    sync(&phone);
    phone
        .execute_batch(
            "UPDATE notes SET title = '' WHERE id = 1; UPDATE notes SET title = 'shopping' WHERE id = 1;",
        )
        .unwrap();
    let result = sync(&phone);
    assert_eq!(
        server_titles(&server, &phone),
        [json!("shopping")],
        "{result}"
    );
    assert_eq!(titles(&phone), ["shopping"]);
    assert_eq!(
        (attention_counts(&phone), attention(&phone)),
        ((0, 0, 0), vec![]),
        "a later change the server applied in the same answer must settle the refusal: {result}"
    );
}

/// Two local edits in one push: the first conflicts (another device edited in between), the
/// second is newer than the other device's and is applied. The server holds the second edit.
/// The conflict is stale; if the user answers it with `tether_retry` (the documented "keep mine"),
/// the older first edit must not overwrite the newer second one.
#[test]
fn a_conflict_followed_by_an_applied_edit_in_the_same_push_is_settled() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    let (_b, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'draft')", [])
        .unwrap();
    sync(&phone);
    sync(&laptop);
    phone
        .execute("UPDATE notes SET title = 'phone first' WHERE id = 1", [])
        .unwrap();
    pause();
    laptop
        .execute("UPDATE notes SET title = 'laptop edit' WHERE id = 1", [])
        .unwrap();
    sync(&laptop);
    pause();
    phone
        .execute("UPDATE notes SET title = 'phone second' WHERE id = 1", [])
        .unwrap();
    let result = sync(&phone);
    assert_eq!(
        server_titles(&server, &phone),
        [json!("phone second")],
        "{result}"
    );
    let after_sync = (titles(&phone), attention_counts(&phone));
    // The user sees a conflict and keeps their version.
    let retried = json(&phone, "SELECT tether_retry()");
    sync(&phone);
    sync(&laptop);
    assert_eq!(
        (server_titles(&server, &phone), titles(&phone), titles(&laptop)),
        (
            vec![json!("phone second")],
            vec!["phone second".to_string()],
            vec!["phone second".to_string()]
        ),
        "after the sync the phone had {after_sync:?}; the retry {retried} sent the older edit again"
    );
    assert_eq!(after_sync.1, (0, 0, 0), "the conflict was stale: {result}");
}

// ---------------------------------------------------------------------------------------------
// Retrying conflicts
// ---------------------------------------------------------------------------------------------

/// Phone: titles at most 12 characters locally (a CHECK); the laptop has no such rule.
const PLAIN_NOTES: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);";

const PHONE_NOTES: &str =
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT CHECK (length(title) <= 12));";

/// A conflict whose server state this database refused (it went to the quarantine): the row
/// still holds the local change. "Keep mine" (`tether_retry`) must send it.
#[test]
fn retrying_a_conflict_whose_server_state_was_quarantined_sends_the_local_change() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device_with(&server, PHONE_NOTES, &["notes"]);
    let (_b, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'draft')", [])
        .unwrap();
    sync(&phone);
    sync(&laptop);
    phone
        .execute("UPDATE notes SET title = 'phone edit' WHERE id = 1", [])
        .unwrap();
    pause();
    laptop
        .execute(
            "UPDATE notes SET title = 'laptop long edit' WHERE id = 1",
            [],
        )
        .unwrap();
    sync(&laptop);
    let result = sync(&phone);
    assert_eq!(result["conflicts"], 1, "{result}");
    assert_eq!(
        titles(&phone),
        ["phone edit"],
        "the server's version was refused here"
    );
    let retried = json(&phone, "SELECT tether_retry('notes', 1)");
    let result = sync(&phone);
    assert_eq!(
        server_titles(&server, &phone),
        [json!("phone edit")],
        "retry answered {retried}, the sync after it {result}"
    );
    assert_eq!(titles(&phone), ["phone edit"]);
}

/// The same with a local delete that conflicted: the server's version could not be written back
/// (the quarantine), so the row is gone here. "Keep mine" must delete it on the server.
#[test]
fn retrying_a_delete_conflict_whose_server_state_was_quarantined_deletes_on_the_server() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device_with(&server, PHONE_NOTES, &["notes"]);
    let (_b, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'draft')", [])
        .unwrap();
    sync(&phone);
    sync(&laptop);
    let key = key_of(&phone, "notes", 1);
    phone.execute("DELETE FROM notes WHERE id = 1", []).unwrap();
    pause();
    laptop
        .execute(
            "UPDATE notes SET title = 'laptop long edit' WHERE id = 1",
            [],
        )
        .unwrap();
    sync(&laptop);
    let result = sync(&phone);
    assert_eq!(result["conflicts"], 1, "{result}");
    assert_eq!(titles(&phone), Vec::<String>::new());
    let retried = json(&phone, &format!("SELECT tether_retry('notes', '{key}')"));
    let result = sync(&phone);
    assert_eq!(
        (server_titles(&server, &phone), titles(&phone)),
        (vec![], vec![]),
        "retry answered {retried}, the sync after it {result}"
    );
}

/// A local delete that conflicted with a newer edit elsewhere: the server's version is written
/// back; "keep mine" deletes it everywhere.
#[test]
fn retrying_a_delete_conflict_deletes_the_row_everywhere() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    let (_b, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'draft')", [])
        .unwrap();
    sync(&phone);
    sync(&laptop);
    let key = key_of(&phone, "notes", 1);
    phone.execute("DELETE FROM notes WHERE id = 1", []).unwrap();
    pause();
    laptop
        .execute("UPDATE notes SET title = 'laptop edit' WHERE id = 1", [])
        .unwrap();
    sync(&laptop);
    let result = sync(&phone);
    assert_eq!(result["conflicts"], 1, "{result}");
    assert_eq!(titles(&phone), ["laptop edit"]);
    let needs = attention(&phone);
    assert_eq!(needs.len(), 1, "{needs:?}");
    assert_eq!(needs[0]["operation"], "delete");
    let retried = json(&phone, &format!("SELECT tether_retry('notes', '{key}')"));
    assert_eq!(retried["rows"][0]["outcome"], "delete", "{retried}");
    sync(&phone);
    sync(&laptop);
    assert_eq!(server_titles(&server, &phone), Vec::<Value>::new());
    assert_eq!(titles(&phone), Vec::<String>::new());
    assert_eq!(titles(&laptop), Vec::<String>::new());
    assert_eq!(attention_counts(&phone), (0, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// A refused change waiting for the user
// ---------------------------------------------------------------------------------------------

/// An update the server refused waits in `tether_attention` for the user (retry once the rules
/// allow it, or discard). Meanwhile another device edits the row and this device pulls it (a
/// scheduled sync): the refused change must not vanish from the row while it is still listed as
/// waiting to be retried — otherwise `tether_retry` "retries" the other device's value.
#[test]
fn a_refused_update_awaiting_the_user_is_not_overwritten_by_a_pull() {
    let (_server_dir, server_db) = temp_db();
    let db = server_db.to_str().unwrap();
    let strict = Server::start(&["--db", db, "--model", NOTE]);
    let (_a, phone) = device(&strict);
    let (_b, laptop) = device(&strict);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'groceries')", [])
        .unwrap();
    sync(&phone);
    sync(&laptop);
    phone
        .execute(
            "UPDATE notes SET title = 'groceries for the whole week' WHERE id = 1",
            [],
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    pause();
    laptop
        .execute("UPDATE notes SET title = 'milk' WHERE id = 1", [])
        .unwrap();
    sync(&laptop);
    sync(&phone);
    let listed = attention(&phone);
    let held = titles(&phone);
    // The rules are relaxed; the user retries the refused change.
    drop(strict);
    let relaxed = Server::start(&[
        "--db",
        db,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required|max:60"}}"#,
    ]);
    set_config(&phone, "server_url", relaxed.url.as_str());
    let retried = json(&phone, "SELECT tether_retry()");
    sync(&phone);
    assert_eq!(
        server_titles(&relaxed, &phone),
        [json!("groceries for the whole week")],
        "after the pull the phone held {held:?} while attention listed {listed:?}; retry: {retried}"
    );
}

// ---------------------------------------------------------------------------------------------
// Discarding a refused create of a parent row
// ---------------------------------------------------------------------------------------------

const PROJECT: &str = r#"{"name": "Project", "fields": {"name": "required"}}"#;
const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required", "project_tether_id": "nullable"}}"#;

fn projects_device(server: &Server, on_delete: &str) -> (tempfile::TempDir, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;
         CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
         SELECT tether_track('projects');
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT,
                             project_tether_id TEXT REFERENCES projects(tether_id) {on_delete});
         SELECT tether_track('tasks');"
    ))
    .unwrap();
    set_config(&conn, "server_url", server.url.as_str());
    (dir, conn)
}

fn task_titles(conn: &Connection) -> Vec<String> {
    column(conn, "SELECT title FROM tasks ORDER BY title")
}

fn server_task_titles(server: &Server, conn: &Connection) -> Vec<Value> {
    server
        .field_of_rows(conn, "title")
        .into_iter()
        .filter(|t| !t.is_null())
        .collect()
}

/// The project's create is refused; its task (the server does not check the reference) is
/// applied. Discarding the project removes it here, and `ON DELETE CASCADE` removes the task
/// here too — without telling the server, which keeps the task: the devices now differ for good.
#[test]
fn discarding_a_refused_parent_keeps_its_cascaded_children_equal_on_the_server() {
    let server = Server::start(&["--model", PROJECT, "--model", TASK]);
    let (_a, phone) = projects_device(&server, "ON DELETE CASCADE");
    phone
        .execute("INSERT INTO projects (id, name) VALUES (1, '')", [])
        .unwrap();
    let project = key_of(&phone, "projects", 1);
    phone
        .execute(
            "INSERT INTO tasks (id, title, project_tether_id) VALUES (1, 'buy milk', ?1)",
            [&project],
        )
        .unwrap();
    let result = sync(&phone);
    assert_eq!(
        (result["failed"].clone(), result["pushed"].clone()),
        (json!(1), json!(1)),
        "{result}"
    );
    let discarded = json(&phone, "SELECT tether_discard('projects', 1)");
    assert_eq!(discarded["rows"][0]["outcome"], "removed", "{discarded}");
    let result = sync(&phone);
    let on_server: Vec<String> = server_task_titles(&server, &phone)
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        task_titles(&phone),
        on_server,
        "device (left) and server (right) differ after the discard {discarded} and sync {result}"
    );
}

/// The project's removal cannot happen here (a task still references it, no cascade): the
/// discard reports it waits in the quarantine. The user then fixes the project's name instead —
/// the server never had the project, so that change must reach it as its create.
#[test]
fn a_parent_whose_discard_waits_in_the_quarantine_can_still_be_fixed_by_editing_it() {
    let server = Server::start(&["--model", PROJECT, "--model", TASK]);
    let (_a, phone) = projects_device(&server, "");
    phone
        .execute("INSERT INTO projects (id, name) VALUES (1, '')", [])
        .unwrap();
    let project = key_of(&phone, "projects", 1);
    phone
        .execute(
            "INSERT INTO tasks (id, title, project_tether_id) VALUES (1, 'buy milk', ?1)",
            [&project],
        )
        .unwrap();
    sync(&phone);
    let discarded = json(&phone, "SELECT tether_discard('projects', 1)");
    let outcome = discarded["rows"][0]["outcome"].clone();
    phone
        .execute("UPDATE projects SET name = 'home' WHERE id = 1", [])
        .unwrap();
    let first = sync(&phone);
    let second = sync(&phone);
    let names: Vec<Value> = server
        .field_of_rows(&phone, "name")
        .into_iter()
        .filter(|n| !n.is_null())
        .collect();
    assert_eq!(
        (names, column::<String>(&phone, "SELECT name FROM projects")),
        (vec![json!("home")], vec!["home".to_string()]),
        "discard: {outcome}; syncs after the fix: {first} / {second}; attention {:?}",
        attention(&phone)
    );
}

// ---------------------------------------------------------------------------------------------
// Naming rows
// ---------------------------------------------------------------------------------------------

/// `tether_attention.local_pk` is documented as a key `tether_retry`/`tether_discard` take. The
/// row was deleted here after its update was refused: the key the view shows must still name it.
#[test]
fn the_local_pk_attention_shows_names_the_row_after_it_was_deleted_here() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'groceries')", [])
        .unwrap();
    sync(&phone);
    phone
        .execute("UPDATE notes SET title = '' WHERE id = 1", [])
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    phone.execute("DELETE FROM notes WHERE id = 1", []).unwrap();
    let shown = attention(&phone);
    assert_eq!(shown[0]["local_pk"], json!({"id": 1}), "{shown:?}");
    let answer: Result<String, _> = phone.query_row(
        "SELECT tether_discard(table_name, local_pk) FROM tether_attention",
        [],
        |r| r.get(0),
    );
    assert!(answer.is_ok(), "{answer:?}");
}

/// Keys of every shape: a TEXT primary key, a composite key as the JSON object the view shows,
/// a mutation id.
#[test]
fn text_and_composite_primary_keys_and_mutation_ids_name_rows() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Tag", "fields": {"code": "required", "label": "required"}}"#,
        "--model",
        r#"{"name": "TaskTag", "fields": {"task_key": "required", "tag": "required", "note": "required"}}"#,
    ]);
    let (_a, phone) = device_with(
        &server,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TABLE tags (code TEXT PRIMARY KEY, label TEXT);
         CREATE TABLE task_tags (task_key TEXT, tag TEXT, note TEXT, PRIMARY KEY (task_key, tag)) WITHOUT ROWID;",
        &["tags", "task_tags"],
    );
    phone
        .execute_batch(
            "INSERT INTO tags (code, label) VALUES ('work', ''), ('home', '');
             INSERT INTO task_tags (task_key, tag, note) VALUES ('a', 'work', ''), ('b', 'home', '');",
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 4);
    let shown: Vec<Value> = column::<String>(
        &phone,
        "SELECT local_pk FROM tether_attention WHERE table_name = 'task_tags' ORDER BY local_pk",
    )
    .iter()
    .map(|k| serde_json::from_str(k).unwrap())
    .collect();
    assert_eq!(
        shown,
        [
            json!({"task_key": "b", "tag": "home"}),
            json!({"task_key": "a", "tag": "work"})
        ]
    );
    let mutation: String = phone
        .query_row(
            "SELECT mutation_id FROM tether_attention WHERE local_pk = '{\"code\":\"home\"}'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    phone
        .execute_batch(
            "UPDATE tags SET label = 'Work' WHERE code = 'work'; UPDATE task_tags SET note = 'x';",
        )
        .unwrap();
    let a = json(&phone, "SELECT tether_retry('tags', 'work')");
    let b = json(
        &phone,
        &format!("SELECT tether_discard('tags', '{mutation}')"),
    );
    let c = json(
        &phone,
        r#"SELECT tether_retry('task_tags', '{"task_key":"a","tag":"work"}')"#,
    );
    let d = json(
        &phone,
        r#"SELECT tether_discard('task_tags', '{"tag":"home","task_key":"b"}')"#,
    );
    assert_eq!(
        [
            &a["rows"][0]["outcome"],
            &b["rows"][0]["outcome"],
            &c["rows"][0]["outcome"],
            &d["rows"][0]["outcome"]
        ],
        [
            &json!("create"),
            &json!("removed"),
            &json!("create"),
            &json!("removed")
        ]
    );
    sync(&phone);
    assert_eq!(attention_counts(&phone), (0, 0, 0));
    assert_eq!(column::<String>(&phone, "SELECT code FROM tags"), ["work"]);
    assert_eq!(
        column::<String>(&phone, "SELECT tag FROM task_tags"),
        ["work"]
    );
    let client: String = phone
        .query_row("SELECT tether_config('client_id')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(server.rows(&client).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

/// A refused row of a table no longer tracked cannot be retried: the result must not count it
/// as retried.
#[test]
fn rows_of_untracked_tables_are_not_counted_as_retried() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, '')", [])
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    json(&phone, "SELECT tether_untrack('notes')");
    let retried = json(&phone, "SELECT tether_retry()");
    assert_eq!(retried["retried"], 0, "{retried}");
    assert_eq!(retried["mutations"], 0, "{retried}");
}

/// A row the user discarded (left diverged until the pull brings it back) is not what a later
/// `tether_retry()` — "every row that needs attention" — should send: that pushes exactly the
/// change the user chose to throw away.
#[test]
fn retrying_everything_does_not_resend_a_change_the_user_discarded() {
    let (_server_dir, server_db) = temp_db();
    let db = server_db.to_str().unwrap();
    let strict = Server::start(&["--db", db, "--model", NOTE]);
    let (_a, phone) = device(&strict);
    phone
        .execute_batch("INSERT INTO notes (id, title) VALUES (1, 'groceries'), (2, 'bills');")
        .unwrap();
    sync(&phone);
    phone
        .execute_batch(
            "UPDATE notes SET title = 'a title far too long to keep' WHERE id = 1;
             UPDATE notes SET title = 'bills, a title too long as well' WHERE id = 2;",
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 2);
    // Row 1: the user gives up the change (the row stays diverged until the next pull).
    let discarded = json(&phone, "SELECT tether_discard('notes', 1)");
    assert_eq!(discarded["rows"][0]["outcome"], "diverged", "{discarded}");
    // The server's rules are relaxed; the user retries what still needs attention.
    drop(strict);
    let relaxed = Server::start(&[
        "--db",
        db,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required|max:60"}}"#,
    ]);
    set_config(&phone, "server_url", relaxed.url.as_str());
    let retried = json(&phone, "SELECT tether_retry()");
    sync(&phone);
    assert_eq!(
        server_titles(&relaxed, &phone),
        [json!("bills, a title too long as well"), json!("groceries")],
        "retry: {retried}"
    );
    assert_eq!(
        titles(&phone),
        ["bills, a title too long as well", "groceries"]
    );
}

// ---------------------------------------------------------------------------------------------
// Guards: flows that work and must keep working
// ---------------------------------------------------------------------------------------------

/// Hundreds of refused rows are retried across transactions of 200 rows, counted and listed as
/// documented, and all reach the server once its rules allow them.
#[test]
fn retrying_hundreds_of_rows_reaches_the_server_with_every_row() {
    let (_server_dir, server_db) = temp_db();
    let db = server_db.to_str().unwrap();
    let strict = Server::start(&["--db", db, "--model", NOTE]);
    let (_a, phone) = device(&strict);
    phone
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 450)
             INSERT INTO notes (id, title) SELECT i, 'a long title number ' || i FROM n;",
        )
        .unwrap();
    let result = sync(&phone);
    assert_eq!(result["failed"], 450);
    drop(strict);
    let relaxed = Server::start(&[
        "--db",
        db,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required|max:60"}}"#,
    ]);
    set_config(&phone, "server_url", relaxed.url.as_str());
    let retried = json(&phone, "SELECT tether_retry()");
    assert_eq!(retried["retried"], 450, "{retried}");
    assert_eq!(retried["mutations"], 450);
    assert_eq!(retried["outcomes"], json!({"create": 450}));
    assert_eq!(retried["more_rows"], 350);
    assert_eq!(retried["rows"].as_array().unwrap().len(), 100);
    assert_eq!(attention_counts(&phone), (0, 0, 0));
    let result = sync(&phone);
    assert_eq!(result["pushed"], 450, "{result}");
    assert_eq!(server_titles(&relaxed, &phone).len(), 450);
    assert_eq!(attention_counts(&phone), (0, 0, 0));
}

/// A refused create followed by more local edits (not sent yet): a retry sends the row once, as
/// its create, with its current state.
#[test]
fn retrying_a_refused_create_with_later_edits_sends_one_create_of_the_current_row() {
    let (_server_dir, server_db) = temp_db();
    let db = server_db.to_str().unwrap();
    let strict = Server::start(&["--db", db, "--model", NOTE]);
    let (_a, phone) = device(&strict);
    phone
        .execute(
            "INSERT INTO notes (id, title) VALUES (1, 'a title far too long to keep')",
            [],
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    phone
        .execute_batch(
            "UPDATE notes SET title = 'another title too long to keep' WHERE id = 1;
             UPDATE notes SET title = 'the last title, too long as well' WHERE id = 1;",
        )
        .unwrap();
    drop(strict);
    let relaxed = Server::start(&[
        "--db",
        db,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required|max:60"}}"#,
    ]);
    set_config(&phone, "server_url", relaxed.url.as_str());
    let retried = json(&phone, "SELECT tether_retry('notes', 1)");
    assert_eq!(retried["rows"][0]["outcome"], "create", "{retried}");
    assert_eq!(retried["mutations"], 3, "{retried}");
    let result = sync(&phone);
    assert_eq!(
        (result["pushed"].clone(), result["failed"].clone()),
        (json!(1), json!(0)),
        "{result}"
    );
    assert_eq!(
        server_titles(&relaxed, &phone),
        [json!("the last title, too long as well")]
    );
    assert_eq!(attention_counts(&phone), (0, 0, 0));
    assert_eq!(attention(&phone), Vec::<Value>::new());
}

/// Two rows' updates were refused. The user discards row 1 (the discard makes the next pull
/// start from the beginning) and keeps row 2's change to retry once the server's rules allow
/// it. The full pull must not replace row 2's waiting change with the server's old value: no
/// other device touched row 2.
#[test]
fn discarding_one_row_does_not_wipe_another_rows_change_awaiting_retry() {
    let (_server_dir, server_db) = temp_db();
    let db = server_db.to_str().unwrap();
    let strict = Server::start(&["--db", db, "--model", NOTE]);
    let (_a, phone) = device(&strict);
    phone
        .execute_batch("INSERT INTO notes (id, title) VALUES (1, 'groceries'), (2, 'bills');")
        .unwrap();
    sync(&phone);
    phone
        .execute_batch(
            "UPDATE notes SET title = 'a title far too long to keep' WHERE id = 1;
             UPDATE notes SET title = 'bills for march and april' WHERE id = 2;",
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 2);
    json(&phone, "SELECT tether_discard('notes', 1)");
    sync(&phone);
    let row2: Vec<String> = column(&phone, "SELECT title FROM notes WHERE id = 2");
    drop(strict);
    let relaxed = Server::start(&[
        "--db",
        db,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required|max:60"}}"#,
    ]);
    set_config(&phone, "server_url", relaxed.url.as_str());
    let retried = json(&phone, "SELECT tether_retry('notes', 2)");
    sync(&phone);
    assert_eq!(
        server_titles(&relaxed, &phone),
        [json!("bills for march and april"), json!("groceries")],
        "after the discard's full pull row 2 held {row2:?}; retry {retried}"
    );
}

/// A discarded row whose server copy was deleted meanwhile: the pull from the start must bring
/// the delete, and the row stops being diverged.
#[test]
fn a_diverged_row_deleted_on_the_server_stops_being_diverged() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    let (_b, laptop) = device(&server);
    phone
        .execute_batch("INSERT INTO notes (id, title) VALUES (1, 'groceries'), (2, 'bills');")
        .unwrap();
    sync(&phone);
    sync(&laptop);
    phone
        .execute(
            "UPDATE notes SET title = 'a title far too long to keep' WHERE id = 1",
            [],
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    let discarded = json(&phone, "SELECT tether_discard('notes', 1)");
    assert_eq!(discarded["rows"][0]["outcome"], "diverged", "{discarded}");
    laptop
        .execute("DELETE FROM notes WHERE id = 1", [])
        .unwrap();
    sync(&laptop);
    sync(&phone);
    assert_eq!(titles(&phone), ["bills"]);
    assert_eq!(attention_counts(&phone), (0, 0, 0));
    assert_eq!(attention(&phone), Vec::<Value>::new());
}

/// A change that failed transiently (it will be retried) holds back a pulled snapshot of its
/// row. Discarding the change puts that snapshot in place; nothing is sent afterwards.
#[test]
fn discarding_a_transient_failure_puts_back_the_snapshot_that_waited() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT)",
        "'notes'",
    );
    conn.execute("INSERT INTO notes (id, title) VALUES (1, 'draft')", [])
        .unwrap();
    let body = push_request(&conn).unwrap();
    push_response(&conn, &json!({"applied": mutation_ids(&body)}));
    finish_push(&conn);
    let entity = key_of(&conn, "notes", 1);
    conn.execute("UPDATE notes SET title = 'mine' WHERE id = 1", [])
        .unwrap();
    let body = push_request(&conn).unwrap();
    let ids = mutation_ids(&body);
    push_response(
        &conn,
        &json!({"rejected": [{"mutation_id": ids[0], "reason": "error", "data": {"message": "deadlock"}}]}),
    );
    finish_push(&conn);
    let page = json!({"snapshots": [{"entity_id": entity, "model": "Note", "operation": "upsert",
                                     "payload": {"title": "theirs"}}],
                      "new_sync_cursor": 5, "has_more": false});
    pull_response(&conn, &page).unwrap();
    assert_eq!(column::<String>(&conn, "SELECT title FROM notes"), ["mine"]);
    let discarded = json(&conn, "SELECT tether_discard('notes', 1)");
    assert_eq!(
        discarded["rows"][0]["outcome"], "server state put back",
        "{discarded}"
    );
    assert_eq!(
        column::<String>(&conn, "SELECT title FROM notes"),
        ["theirs"]
    );
    assert_eq!(push_request(&conn), None, "nothing is left to send");
    assert_eq!(attention_counts(&conn), (0, 0, 0));
}

/// Keeping a local change over a conflict carries BLOB and JSON values as they were.
#[test]
fn retrying_a_conflict_keeps_blob_and_json_values() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Note", "fields": {"title": "required", "data": "nullable", "meta": "nullable|array"}}"#,
    ]);
    let schema = "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, data BLOB, meta JSON);";
    let (_a, phone) = device_with(&server, schema, &["notes"]);
    let (_b, laptop) = device_with(&server, schema, &["notes"]);
    phone
        .execute(
            "INSERT INTO notes (id, title, data, meta) VALUES (1, 'draft', x'00', '{\"a\": 1}')",
            [],
        )
        .unwrap();
    sync(&phone);
    sync(&laptop);
    phone
        .execute(
            "UPDATE notes SET title = 'phone', data = x'CAFE', meta = '{\"tags\": [\"x\"]}' WHERE id = 1",
            [],
        )
        .unwrap();
    pause();
    laptop
        .execute(
            "UPDATE notes SET title = 'laptop', data = x'0102', meta = '[]' WHERE id = 1",
            [],
        )
        .unwrap();
    sync(&laptop);
    assert_eq!(sync(&phone)["conflicts"], 1);
    json(&phone, "SELECT tether_retry('notes', 1)");
    sync(&phone);
    sync(&laptop);
    let row = |c: &Connection| -> (String, String, String, String) {
        c.query_row(
            "SELECT title, typeof(data), hex(data), json(meta) FROM notes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    };
    let expected = (
        "phone".to_string(),
        "blob".to_string(),
        "CAFE".to_string(),
        r#"{"tags":["x"]}"#.to_string(),
    );
    assert_eq!(row(&phone), expected);
    assert_eq!(row(&laptop), expected);
}

/// A host driving the HTTP itself sent a batch; before the answer arrives the user retries the
/// row the batch carries. The answer then applies to mutations the retry settled: nothing is
/// lost, nothing stays queued for ever, and the row's current state is what the server ends with.
#[test]
fn a_retry_between_a_sans_io_request_and_its_answer_neither_loses_nor_wedges() {
    let (_dir, _path, conn, _plain) = tracked_db(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT)",
        "'notes'",
    );
    conn.execute("INSERT INTO notes (id, title) VALUES (1, 'draft')", [])
        .unwrap();
    let body = push_request(&conn).unwrap();
    push_response(&conn, &json!({"applied": mutation_ids(&body)}));
    finish_push(&conn);
    conn.execute("UPDATE notes SET title = '' WHERE id = 1", [])
        .unwrap();
    let body = push_request(&conn).unwrap();
    push_response(
        &conn,
        &json!({"rejected": [{"mutation_id": mutation_ids(&body)[0], "reason": "validation_failed",
                               "data": {"messages": {"title": ["The title field is required."]}}}]}),
    );
    finish_push(&conn);
    conn.execute("UPDATE notes SET title = 'fixed' WHERE id = 1", [])
        .unwrap();
    let in_flight = push_request(&conn).unwrap();
    let retried = json(&conn, "SELECT tether_retry()");
    assert_eq!(retried["retried"], 1, "{retried}");
    // The server applied the fix that was in flight.
    let answer = push_response(&conn, &json!({"applied": mutation_ids(&in_flight)}));
    let rest = push_request(&conn);
    finish_push(&conn);
    // Whatever the retry queued goes with the next push, with the current state.
    let next = push_request(&conn);
    let sent: Vec<Value> = next
        .iter()
        .chain(rest.iter())
        .flat_map(|b| b["mutations"].as_array().unwrap().clone())
        .collect();
    if let Some(next) = &next {
        push_response(&conn, &json!({"applied": mutation_ids(next)}));
        finish_push(&conn);
    }
    assert!(
        sent.iter().all(|m| m["payload"]["title"] == "fixed"),
        "answer {answer}; sent after: {sent:?}"
    );
    assert_eq!(push_request(&conn), None);
    assert_eq!(attention_counts(&conn), (0, 0, 0));
    let pending: Vec<i64> = column(
        &conn,
        "SELECT count(*) FROM tether_mutation_logs WHERE sync_status IN ('pending', 'failed', 'conflict')",
    );
    assert_eq!(pending, [0]);
}

/// An update answered `not_found` (another device deleted the row): "keep mine" sends the row as
/// a create and every device gets it back.
#[test]
fn retrying_an_update_the_server_answered_not_found_brings_the_row_back_everywhere() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    let (_b, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'draft')", [])
        .unwrap();
    sync(&phone);
    sync(&laptop);
    laptop
        .execute("DELETE FROM notes WHERE id = 1", [])
        .unwrap();
    sync(&laptop);
    pause();
    phone
        .execute("UPDATE notes SET title = 'still needed' WHERE id = 1", [])
        .unwrap();
    let key = key_of(&phone, "notes", 1);
    let result = sync(&phone);
    assert_eq!(result["failed"], 1, "{result}");
    assert_eq!(attention(&phone)[0]["reason"], "not_found");
    // The same sync's pull brought the other device's delete: is the edit still here?
    let held = titles(&phone);
    let retried = json(&phone, &format!("SELECT tether_retry('notes', '{key}')"));
    assert_eq!(
        retried["rows"][0]["outcome"], "create",
        "after the sync the phone held {held:?}; retry {retried}"
    );
    sync(&phone);
    sync(&laptop);
    assert_eq!(server_titles(&server, &phone), [json!("still needed")]);
    assert_eq!(titles(&phone), ["still needed"]);
    assert_eq!(titles(&laptop), ["still needed"]);
    assert_eq!(attention_counts(&phone), (0, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// What tether_attention says
// ---------------------------------------------------------------------------------------------

type Device = (tempfile::TempDir, Connection);

/// A phone (with `phone_schema`) and a laptop that both hold the notes `rows` inserted on the phone.
fn two_devices(server: &Server, phone_schema: &str, rows: &str) -> (Device, Device) {
    let phone = device_with(server, phone_schema, &["notes"]);
    let laptop = device(server);
    phone
        .1
        .execute_batch(&format!("INSERT INTO notes (id, title) VALUES {rows}"))
        .unwrap();
    sync(&phone.1);
    sync(&laptop.1);
    (phone, laptop)
}

/// The message and row of the one conflict `conn` lists.
fn conflict_listed(conn: &Connection) -> Value {
    let needs: Vec<Value> = attention(conn)
        .into_iter()
        .filter(|row| row["kind"] == "conflict")
        .collect();
    assert_eq!(needs.len(), 1, "{needs:?}");
    needs[0].clone()
}

/// A conflict whose server version this database refused says so (it said "the row now holds the
/// server's version" while the row held the local change); a delete that conflicted names the row
/// the server's version brought back (its `local_pk` was NULL).
#[test]
fn the_attention_view_says_where_a_conflicts_server_version_went() {
    let server = Server::start(&["--model", NOTE]);
    let ((_a, phone), (_b, laptop)) =
        two_devices(&server, PHONE_NOTES, "(1, 'draft'), (2, 'list')");
    phone
        .execute_batch(
            "UPDATE notes SET title = 'phone edit' WHERE id = 1; DELETE FROM notes WHERE id = 2;",
        )
        .unwrap();
    pause();
    laptop
        .execute_batch(
            "UPDATE notes SET title = 'laptop long edit' WHERE id = 1;
             UPDATE notes SET title = 'shopping' WHERE id = 2;",
        )
        .unwrap();
    sync(&laptop);
    let result = sync(&phone);
    assert_eq!(result["conflicts"], 2, "{result}");
    assert_eq!(titles(&phone), ["phone edit", "shopping"]);
    let needs: Vec<Value> = attention(&phone)
        .into_iter()
        .filter(|row| row["kind"] == "conflict")
        .collect();
    let edit = needs
        .iter()
        .find(|row| row["operation"] == "update")
        .unwrap();
    assert_eq!(
        edit["message"],
        "the server changed this row after the local change was made; the server's version could not be written here (see its quarantined entry)",
        "{needs:?}"
    );
    assert_eq!(edit["local_pk"], json!({"id": 1}));
    let delete = needs
        .iter()
        .find(|row| row["operation"] == "delete")
        .unwrap();
    assert_eq!(
        delete["message"],
        "the server changed this row after the local change was made; the row now holds the server's version"
    );
    let back: i64 = column(&phone, "SELECT id FROM notes WHERE title = 'shopping'")[0];
    assert_eq!(delete["local_pk"], json!({"id": back}), "{delete}");
}

/// A change of a row the server no longer has is refused `not_found`, whose answer carries no
/// message: the view gives one (it was NULL).
#[test]
fn a_change_refused_not_found_has_a_message() {
    let server = Server::start(&["--model", NOTE]);
    let ((_a, phone), (_b, laptop)) = two_devices(&server, PLAIN_NOTES, "(1, 'draft')");
    laptop
        .execute("DELETE FROM notes WHERE id = 1", [])
        .unwrap();
    sync(&laptop);
    phone
        .execute("UPDATE notes SET title = 'phone edit' WHERE id = 1", [])
        .unwrap();
    let result = json(&phone, "SELECT tether_push()");
    assert_eq!(result["failed"], 1, "{result}");
    assert_eq!(result["rejections"][0]["reason"], "not_found", "{result}");
    let needs = attention(&phone);
    assert_eq!(needs.len(), 1, "{needs:?}");
    assert_eq!(
        needs[0]["message"],
        "the server does not have this row (deleted there, or never created)"
    );
}

/// A conflict answered while the row has a newer change not sent yet: the server's version waits.
#[test]
fn a_conflict_whose_server_version_waits_for_newer_local_changes_says_so() {
    let server = Server::start(&["--model", NOTE]);
    let ((_a, phone), (_b, laptop)) = two_devices(&server, PLAIN_NOTES, "(1, 'draft')");
    phone
        .execute("UPDATE notes SET title = 'phone edit' WHERE id = 1", [])
        .unwrap();
    pause();
    laptop
        .execute("UPDATE notes SET title = 'laptop edit' WHERE id = 1", [])
        .unwrap();
    sync(&laptop);
    // The host drives the push: a newer edit is made while the request is out.
    let request = push_request(&phone).unwrap();
    let answer = server.post("/tether/push", &request);
    phone
        .execute("UPDATE notes SET title = 'newer' WHERE id = 1", [])
        .unwrap();
    let result = push_response(&phone, &answer);
    assert_eq!(result["conflicts"], 1, "{result}");
    assert_eq!(titles(&phone), ["newer"]);
    assert_eq!(
        conflict_listed(&phone)["message"],
        "the server changed this row after the local change was made; the server's version waits until the row's newer local changes are settled (answered by the server, or retried or discarded)"
    );
}

/// Two rows conflict in one answer: the push writes both server versions (the second was taken
/// for a row still held by its own unsent change, deferred, then dropped: the row kept the
/// local change until a pull, while tether_attention said it held the server's version).
#[test]
fn two_conflicts_in_one_answer_both_write_the_servers_version() {
    let server = Server::start(&["--model", NOTE]);
    let ((_a, phone), (_b, laptop)) =
        two_devices(&server, PLAIN_NOTES, "(1, 'one'), (2, 'two'), (3, 'three')");
    phone
        .execute_batch(
            "UPDATE notes SET title = 'phone 1' WHERE id = 1;
             UPDATE notes SET title = 'phone 2' WHERE id = 2;
             DELETE FROM notes WHERE id = 3;",
        )
        .unwrap();
    pause();
    laptop
        .execute_batch("UPDATE notes SET title = 'laptop ' || id;")
        .unwrap();
    sync(&laptop);
    let result = json(&phone, "SELECT tether_push()");
    assert_eq!(result["conflicts"], 3, "{result}");
    assert_eq!(titles(&phone), ["laptop 1", "laptop 2", "laptop 3"]);
    let pks: Vec<Value> = attention(&phone)
        .iter()
        .map(|row| row["local_pk"].clone())
        .collect();
    assert_eq!(pks.len(), 3);
    assert!(pks.iter().all(|pk| !pk.is_null()), "{pks:?}");
}
