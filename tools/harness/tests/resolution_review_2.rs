//! Second adversarial review of resolution (`tether_retry`, `tether_discard`, `tether_attention`,
//! the CLI's `attention|retry|discard`) and of the "held" semantics for rows with a change the
//! server refused for good. Complements `resolution_review.rs` (not repeated here). Each test
//! states what a user relies on; failing tests demonstrate defects.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

const NOTE: &str = r#"{"name": "Note", "fields": {"title": "required|max:20"}}"#;
const NOTE_RELAXED: &str = r#"{"name": "Note", "fields": {"title": "required|max:60"}}"#;
const MEMO: &str = r#"{"name": "Memo", "fields": {"title": "required|max:20"}}"#;
const PROJECT: &str = r#"{"name": "Project", "fields": {"name": "required"}}"#;
const TASK: &str =
    r#"{"name": "Task", "fields": {"title": "required", "project_tether_id": "nullable"}}"#;

fn device(server: &Server) -> (tempfile::TempDir, PathBuf, Connection) {
    tracked_client(
        server,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);",
        &["notes"],
    )
}

fn titles(conn: &Connection, table: &str) -> Vec<String> {
    column(
        conn,
        &format!("SELECT coalesce(title, '<null>') FROM {table} ORDER BY title"),
    )
}

fn server_field(server: &Server, conn: &Connection, field: &str) -> Vec<Value> {
    let mut values: Vec<Value> = server
        .field_of_rows(conn, field)
        .into_iter()
        .filter(|v| !v.is_null())
        .collect();
    values.sort_by_key(|t| t.to_string());
    values
}

fn sync(conn: &Connection) -> Value {
    json(conn, "SELECT tether_sync()")
}

fn try_json(conn: &Connection, sql: &str) -> Result<Value, String> {
    conn.query_row(sql, [], |r| r.get::<_, String>(0))
        .map(|t| serde_json::from_str(&t).unwrap())
        .map_err(|e| e.to_string())
}

/// The `tether` command line of this workspace, built once per test process.
fn cli_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let tools = repo_root().join("tools");
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "tether-cli", "--manifest-path"])
            .arg(tools.join("Cargo.toml"))
            .status()
            .expect("run cargo build for tether-cli");
        assert!(status.success(), "building tether-cli failed");
        tools.join("target/debug/tether")
    })
}

/// `tether --db DB ARGS…`: (exit code, stdout, stderr).
fn cli(db: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = std::process::Command::new(cli_binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TETHER_") {
            command.env_remove(name);
        }
    }
    let out = command
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn projects_device(server: &Server, on_delete: &str) -> (tempfile::TempDir, PathBuf, Connection) {
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
    (dir, path, conn)
}

// ---------------------------------------------------------------------------------------------
// Tables that changed under the refused rows: dropped, renamed, re-tracked with another model
// ---------------------------------------------------------------------------------------------

/// Two tables each have a refused row. The app drops one table (a feature removed; tether shows
/// it `dropped`). "Retry everything" must still retry the other table's row, and leave the
/// dropped table's row alone (as for an untracked table) rather than fail the whole call.
#[test]
fn retrying_everything_is_not_blocked_by_a_dropped_table() {
    let server = Server::start(&["--model", NOTE, "--model", MEMO]);
    let (_a, _path, phone) = tracked_client(
        &server,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);
         CREATE TABLE memos (id INTEGER PRIMARY KEY, title TEXT);",
        &["notes", "memos"],
    );
    phone
        .execute_batch(
            "INSERT INTO memos (id, title) VALUES (1, 'a memo title far too long');
             INSERT INTO notes (id, title) VALUES (1, '');",
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 2);
    phone.execute_batch("DROP TABLE memos;").unwrap();
    let status = json(&phone, "SELECT tether_status()");
    let retried = try_json(&phone, "SELECT tether_retry()");
    let retried = retried.unwrap_or_else(|e| {
        panic!("tether_retry() failed because of the dropped table: {e}; status {status}")
    });
    assert_eq!(retried["retried"], 1, "{retried}");
    // And discarding what needs attention, table by table, as an app does, must not fail either.
    let discard = try_json(&phone, "SELECT tether_discard('memos')");
    assert!(discard.is_ok(), "tether_discard('memos'): {discard:?}");
}

/// A migration renames the table (`ALTER TABLE … RENAME TO`); tracking follows it. Right after
/// the migration the app resolves the refused row under the table's new name, as
/// `tether_attention` shows it.
#[test]
fn resolving_right_after_a_rename_uses_the_new_name() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, _path, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, '')", [])
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    phone
        .execute_batch("ALTER TABLE notes RENAME TO notebook;")
        .unwrap();
    let shown = attention(&phone);
    let everything = try_json(&phone, "SELECT tether_retry()");
    let by_name = try_json(&phone, "SELECT tether_discard('notebook', 1)");
    assert!(
        everything.is_ok() && by_name.is_ok(),
        "attention shows {shown:?}; tether_retry(): {everything:?}; tether_discard('notebook', 1): {by_name:?}"
    );
}

/// The same, after `tether_status()` has followed the rename: attention names the new table and
/// the row can be resolved by it.
#[test]
fn after_a_rename_is_followed_attention_and_resolution_use_the_new_name() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, _path, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, '')", [])
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    phone
        .execute_batch("ALTER TABLE notes RENAME TO notebook;")
        .unwrap();
    json(&phone, "SELECT tether_status()");
    let shown = attention(&phone);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["table_name"], "notebook", "{shown:?}");
    let discarded = json(&phone, "SELECT tether_discard('notebook', 1)");
    assert_eq!(discarded["discarded"], 1, "{discarded}");
    assert_eq!(attention_counts(&phone), (0, 0, 0));
    assert_eq!(attention(&phone), Vec::<Value>::new());
}

/// The table is tracked again with another model name (documented: "a new model renames" the
/// queued mutations). Its refused row is still the table's row: attention must name the table,
/// and retrying or discarding that table must reach it — otherwise it can never leave `failed`
/// and the row stays held (pulled snapshots of it wait forever).
#[test]
fn a_refused_row_stays_resolvable_after_the_model_is_renamed() {
    let server = Server::start(&["--model", NOTE, "--model", MEMO]);
    let (_a, _path, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, '')", [])
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    json(
        &phone,
        r#"SELECT tether_track('notes', '{"model": "Memo"}')"#,
    );
    let shown = attention(&phone);
    let discarded = json(&phone, "SELECT tether_discard('notes')");
    assert_eq!(
        (
            shown[0]["table_name"].clone(),
            discarded["discarded"].clone()
        ),
        (json!("notes"), json!(1)),
        "attention {shown:?}; discard {discarded}"
    );
    assert_eq!(attention_counts(&phone).0, 0);
}

// ---------------------------------------------------------------------------------------------
// Pruning what NeverHad and server_lacks still need
// ---------------------------------------------------------------------------------------------

/// The project's create was refused; the discard could not remove it (a task references it), so
/// the row stayed. tether remembers the server never had it through the discarded create — which
/// `retention_days` prunes. After a cycle has pruned it, the user fixes the project's name: that
/// change must still reach the server as its create.
#[test]
fn a_discarded_create_whose_row_stayed_is_still_created_after_pruning() {
    let server = Server::start(&["--model", PROJECT, "--model", TASK]);
    let (_a, _path, phone) = projects_device(&server, "");
    set_config(&phone, "retention_days", 0);
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
    assert_eq!(
        discarded["rows"][0]["outcome"], "removal waits in the quarantine",
        "{discarded}"
    );
    // An ordinary scheduled cycle: nothing to push; it prunes what was resolved.
    sync(&phone);
    phone
        .execute("UPDATE projects SET name = 'home' WHERE id = 1", [])
        .unwrap();
    let first = sync(&phone);
    let second = sync(&phone);
    assert_eq!(
        (
            server_field(&server, &phone, "name"),
            column::<String>(&phone, "SELECT name FROM projects")
        ),
        (vec![json!("home")], vec!["home".to_string()]),
        "syncs after the fix: {first} / {second}; attention {:?}",
        attention(&phone)
    );
}

/// The same without pruning (the default retention): the guard for the flow above.
#[test]
fn a_discarded_create_whose_row_stayed_is_created_by_a_later_fix() {
    let server = Server::start(&["--model", PROJECT, "--model", TASK]);
    let (_a, _path, phone) = projects_device(&server, "");
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
    json(&phone, "SELECT tether_discard('projects', 1)");
    sync(&phone);
    phone
        .execute("UPDATE projects SET name = 'home' WHERE id = 1", [])
        .unwrap();
    sync(&phone);
    sync(&phone);
    assert_eq!(server_field(&server, &phone, "name"), [json!("home")]);
    assert_eq!(
        column::<String>(&phone, "SELECT name FROM projects"),
        ["home"]
    );
    assert_eq!(attention_counts(&phone), (0, 0, 0));
}

/// A refused update answered `not_found` (another device deleted the row); the user keeps the
/// row with `tether_retry`, which must send it as a create. With `retention_days` 0 a cycle may
/// prune between the refusal and the user's decision — the `not_found` answer is still failed
/// (never pruned), so the create must still go.
#[test]
fn keeping_a_row_deleted_elsewhere_recreates_it_on_the_server() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, _pa, phone) = device(&server);
    let (_b, _pb, laptop) = device(&server);
    set_config(&phone, "retention_days", 0);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'groceries')", [])
        .unwrap();
    sync(&phone);
    sync(&laptop);
    laptop.execute("DELETE FROM notes", []).unwrap();
    sync(&laptop);
    std::thread::sleep(Duration::from_millis(5));
    phone
        .execute("UPDATE notes SET title = 'groceries!' WHERE id = 1", [])
        .unwrap();
    let result = sync(&phone);
    assert_eq!(result["failed"], 1, "{result}");
    // The pulled delete waits for the user; the row keeps the local value.
    assert_eq!(titles(&phone, "notes"), ["groceries!"]);
    sync(&phone);
    let retried = json(&phone, "SELECT tether_retry('notes', 1)");
    assert_eq!(retried["rows"][0]["outcome"], "create", "{retried}");
    sync(&phone);
    sync(&laptop);
    assert_eq!(
        server_field(&server, &phone, "title"),
        [json!("groceries!")]
    );
    assert_eq!(titles(&laptop, "notes"), ["groceries!"]);
    assert_eq!(titles(&phone, "notes"), ["groceries!"]);
    assert_eq!(attention_counts(&phone), (0, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// Cascades now that held rows count as changed
// ---------------------------------------------------------------------------------------------

/// The phone's edit of a task was refused (held, waiting for the user). The laptop deletes the
/// task's project; the phone's `ON DELETE CASCADE` removes the task here. Everyone must end
/// without the task (the server too), and nothing may be left needing attention for a row that
/// no longer exists anywhere. (Found: the held task counts as "changed", so the cascade queues a
/// delete for it; the laptop's own cascade already deleted it on the server, so that delete is
/// answered `not_found` and fails too: two failures listed for a row gone everywhere.)
#[test]
fn a_held_child_removed_by_a_pulled_parent_delete_is_removed_everywhere() {
    let server = Server::start(&["--model", PROJECT, "--model", TASK]);
    let (_a, _pa, phone) = projects_device(&server, "ON DELETE CASCADE");
    let (_b, _pb, laptop) = projects_device(&server, "ON DELETE CASCADE");
    phone
        .execute("INSERT INTO projects (id, name) VALUES (1, 'home')", [])
        .unwrap();
    let project = key_of(&phone, "projects", 1);
    phone
        .execute(
            "INSERT INTO tasks (id, title, project_tether_id) VALUES (1, 'buy milk', ?1)",
            [&project],
        )
        .unwrap();
    sync(&phone);
    sync(&laptop);
    phone
        .execute("UPDATE tasks SET title = '' WHERE id = 1", [])
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    laptop.execute("DELETE FROM projects", []).unwrap();
    sync(&laptop);
    sync(&phone);
    sync(&phone);
    sync(&laptop);
    assert_eq!(server_field(&server, &phone, "title"), Vec::<Value>::new());
    assert_eq!(titles(&phone, "tasks"), Vec::<String>::new());
    assert_eq!(titles(&laptop, "tasks"), Vec::<String>::new());
    assert_eq!(
        (attention_counts(&phone), attention(&phone)),
        ((0, 0, 0), vec![]),
        "a row gone everywhere needs no one's attention"
    );
}

// ---------------------------------------------------------------------------------------------
// The quarantine retry path for held rows
// ---------------------------------------------------------------------------------------------

/// A server row this database refused (a local CHECK) waits in the quarantine. The phone then
/// edits that row and the server refuses the edit: the row is held. The quarantined state must not
/// silently vanish from everything the user can see: either it stays listed, or discarding the
/// edit brings it back (here it cannot be written, so it must be listed again).
#[test]
fn a_quarantined_server_state_of_a_held_row_stays_visible() {
    let server = Server::start(&["--model", NOTE_RELAXED]);
    let (_a, _pa, phone) = tracked_client(
        &server,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT CHECK (length(title) <= 30));",
        &["notes"],
    );
    let (_b, _pb, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'groceries')", [])
        .unwrap();
    sync(&phone);
    sync(&laptop);
    laptop
        .execute(
            "UPDATE notes SET title = 'groceries for the whole long week' WHERE id = 1",
            [],
        )
        .unwrap();
    sync(&laptop);
    sync(&phone);
    assert_eq!(quarantined(&phone), 1);
    std::thread::sleep(Duration::from_millis(5));
    phone
        .execute("UPDATE notes SET title = '' WHERE id = 1", [])
        .unwrap();
    let result = sync(&phone);
    assert_eq!(result["failed"], 1, "{result}");
    sync(&phone);
    let kinds: Vec<String> = column(&phone, "SELECT kind FROM tether_attention ORDER BY kind");
    let discarded = json(&phone, "SELECT tether_discard('notes', 1)");
    let after: Vec<String> = column(&phone, "SELECT kind FROM tether_attention ORDER BY kind");
    assert_eq!(
        after,
        ["quarantined"],
        "before the discard attention listed {kinds:?}; discard {discarded}"
    );
    assert_eq!(attention_counts(&phone), (0, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// The command line with odd keys
// ---------------------------------------------------------------------------------------------

/// A TEXT primary key that looks like a number ("007", a product code). `tether retry TABLE KEY`
/// must find it, as `SELECT tether_retry('codes', '007')` does.
#[test]
fn cli_retry_finds_a_text_primary_key_that_looks_like_a_number() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Code", "fields": {"code": "required", "title": "required|max:20"}}"#,
    ]);
    let (_a, path, phone) = tracked_client(
        &server,
        "CREATE TABLE codes (code TEXT PRIMARY KEY, title TEXT);",
        &["codes"],
    );
    phone
        .execute(
            "INSERT INTO codes (code, title) VALUES ('007', 'a title far too long to keep')",
            [],
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    let (code, stdout, stderr) = cli(&path, &["retry", "codes", "007", "--json"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["retried"], 1, "{result}");
}

/// A negative integer primary key: `tether discard notes -5` names row -5 (not an option).
#[test]
fn cli_discard_takes_a_negative_primary_key() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, path, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (-5, '')", [])
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    let (code, stdout, stderr) = cli(&path, &["discard", "notes", "-5", "--json"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["discarded"], 1, "{result}");
}

/// Keys as `tether attention` shows them: the JSON object of `local_pk`, the sync key and the
/// mutation id each name the row on the command line.
#[test]
fn cli_keys_as_attention_shows_them_name_the_row() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, path, phone) = device(&server);
    phone
        .execute_batch("INSERT INTO notes (id, title) VALUES (7, ''), (8, ''), (9, '');")
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 3);
    let (code, stdout, _) = cli(&path, &["attention", "--json"]);
    assert_eq!(code, Some(0));
    let listed: Value = serde_json::from_str(stdout.trim()).unwrap();
    let rows = listed["rows"].as_array().unwrap().clone();
    let of = |id: i64| {
        rows.iter()
            .find(|r| r["local_pk"] == json!({"id": id}))
            .unwrap_or_else(|| panic!("row {id} in {listed}"))
            .clone()
    };
    let by_object = of(7)["local_pk"].to_string();
    let by_key = of(8)["sync_key"].as_str().unwrap().to_string();
    let by_mutation = of(9)["mutation_id"].as_str().unwrap().to_string();
    for key in [&by_object, &by_key, &by_mutation] {
        let (code, stdout, stderr) = cli(&path, &["discard", "notes", key, "--json"]);
        assert_eq!(code, Some(0), "{key}: {stdout}{stderr}");
        let result: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(result["discarded"], 1, "{key}: {result}");
    }
    assert_eq!(attention_counts(&phone), (0, 0, 0));
    assert_eq!(titles(&phone, "notes"), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Background work and concurrency
// ---------------------------------------------------------------------------------------------

/// With `auto_sync`, a `tether_retry` queues the row again, which must wake the worker: the
/// server gets the row without the app calling sync.
#[test]
fn auto_sync_pushes_what_a_retry_queued() {
    let (_server_dir, server_db) = temp_db();
    let db = server_db.to_str().unwrap();
    let strict = Server::start(&["--db", db, "--model", NOTE]);
    let (_a, _path, phone) = device(&strict);
    phone
        .execute(
            "INSERT INTO notes (id, title) VALUES (1, 'a title far too long to keep')",
            [],
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    drop(strict);
    let relaxed = Server::start(&["--db", db, "--model", NOTE_RELAXED]);
    set_config(&phone, "server_url", relaxed.url.as_str());
    set_config(&phone, "auto_sync", "true");
    std::thread::sleep(Duration::from_millis(500));
    json(&phone, "SELECT tether_retry()");
    let arrived = wait_for(Duration::from_secs(10), || {
        !server_field(&relaxed, &phone, "title").is_empty()
    });
    json(&phone, "SELECT tether_stop()");
    assert!(arrived, "the retried row never reached the server");
    assert_eq!(
        server_field(&relaxed, &phone, "title"),
        [json!("a title far too long to keep")]
    );
}

/// A discard in another process while a sync runs (its push answer is slow): the discard waits
/// for the sync lock, then settles the row; the sync's own answer does not undo it.
#[test]
fn a_discard_during_a_running_sync_waits_and_settles_the_row() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, path, phone) = device(&server);
    let (_b, _pb, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'groceries')", [])
        .unwrap();
    sync(&phone);
    sync(&laptop);
    phone
        .execute("UPDATE notes SET title = '' WHERE id = 1", [])
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 1);
    laptop
        .execute("UPDATE notes SET title = 'milk' WHERE id = 1", [])
        .unwrap();
    sync(&laptop);
    // Another write of another row, pushed slowly.
    phone
        .execute("INSERT INTO notes (id, title) VALUES (2, 'bills')", [])
        .unwrap();
    server.post(
        "/_test/faults",
        &json!({"path": "/tether/push", "delay_ms": 1500}),
    );
    let background = {
        let path = path.clone();
        std::thread::spawn(move || {
            let conn = open_loaded(&path);
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            try_json(&conn, "SELECT tether_sync()")
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    let other = open_loaded(&path);
    other.busy_timeout(Duration::from_secs(10)).unwrap();
    let discarded = try_json(&other, "SELECT tether_discard('notes', 1)");
    let synced = background.join().unwrap();
    assert!(discarded.is_ok(), "discard: {discarded:?}; sync {synced:?}");
    sync(&phone);
    assert_eq!(
        titles(&phone, "notes"),
        ["bills", "milk"],
        "discard {discarded:?}; sync {synced:?}"
    );
    assert_eq!(
        server_field(&server, &phone, "title"),
        [json!("bills"), json!("milk")]
    );
    assert_eq!(attention_counts(&phone), (0, 0, 0));
}

/// Two processes retry everything at once (chunks of 200, the sync lock between them): every
/// refused row is queued again exactly once, and the results add up.
#[test]
fn two_processes_retrying_at_once_queue_each_row_once() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, path, phone) = device(&server);
    phone
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 450)
             INSERT INTO notes (id, title) SELECT i, 'a long title number ' || i FROM n;",
        )
        .unwrap();
    assert_eq!(sync(&phone)["failed"], 450);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let conn = open_loaded(&path);
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                try_json(&conn, "SELECT tether_retry()")
            })
        })
        .collect();
    let results: Vec<Result<Value, String>> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();
    let total: u64 = results
        .iter()
        .map(|r| r.as_ref().map_or(0, |v| v["retried"].as_u64().unwrap()))
        .sum();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(total, 450, "{results:?}");
    let pending: i64 = phone
        .query_row(
            "SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 450);
    assert_eq!(attention_counts(&phone), (0, 0, 0));
}
