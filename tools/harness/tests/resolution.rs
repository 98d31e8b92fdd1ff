//! Rejected and conflicting changes can be fixed from SQL, and the user sees what happened: a
//! small two-device notes app against tether-server. Every flow ends with both devices and the
//! server's own record equal, and nothing left needing attention.
use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

const NOTE: &str = r#"{"name": "Note", "fields": {"title": "required|max:20"}}"#;

/// A device of the notes app: a `notes` table, tracked, pointed at `server`.
fn device(server: &Server) -> (tempfile::TempDir, Connection) {
    let (dir, _path, conn) = tracked_client(
        server,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT);",
        &["notes"],
    );
    (dir, conn)
}

fn titles(conn: &Connection) -> Vec<String> {
    column(conn, "SELECT title FROM notes ORDER BY title")
}

/// The title of every note the server holds, sorted.
fn server_titles(server: &Server, conn: &Connection) -> Vec<Value> {
    let mut titles = server.field_of_rows(conn, "title");
    titles.sort_by_key(|t| t.to_string());
    titles
}

fn all_clear(conn: &Connection) {
    assert_eq!(attention_counts(conn), (0, 0, 0));
    assert_eq!(attention(conn), Vec::<Value>::new());
}

#[test]
fn a_note_rejected_on_create_is_fixed_by_editing_it_and_reaches_the_other_device() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    let (_b, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (7, '')", [])
        .unwrap();
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(result["failed"], 1, "{result}");
    let needs = attention(&phone);
    assert_eq!(needs.len(), 1, "{needs:?}");
    let row = &needs[0];
    assert_eq!(row["kind"], "failed");
    assert_eq!(row["table_name"], "notes");
    assert_eq!(row["local_pk"], json!({"id": 7}));
    assert_eq!(row["sync_key"], key_of(&phone, "notes", 7));
    assert_eq!(row["operation"], "create");
    assert_eq!(row["reason"], "validation_failed");
    assert_eq!(row["message"], "The title field is required.");
    assert!(
        row["since"].as_str().is_some_and(|s| s.len() == 19),
        "{row}"
    );
    assert_eq!(attention_counts(&phone).0, 1);

    phone
        .execute("UPDATE notes SET title = 'fixed title' WHERE id = 7", [])
        .unwrap();
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(
        (result["pushed"].clone(), result["failed"].clone()),
        (json!(1), json!(0)),
        "{result}"
    );
    all_clear(&phone);
    json(&laptop, "SELECT tether_sync()");
    assert_eq!(titles(&laptop), ["fixed title"]);
    assert_eq!(server_titles(&server, &phone), [json!("fixed title")]);
    // The refusal is kept as a record, settled.
    let settled: Vec<String> = column(
        &phone,
        "SELECT resolution FROM tether_mutation_logs WHERE rejection_reason = 'validation_failed'",
    );
    assert_eq!(settled, ["superseded"]);
}

#[test]
fn a_rejected_update_is_discarded_and_the_row_comes_back_as_the_server_has_it() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    let (_b, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'groceries')", [])
        .unwrap();
    json(&phone, "SELECT tether_sync()");
    json(&laptop, "SELECT tether_sync()");
    phone
        .execute(
            "UPDATE notes SET title = 'a title far too long to keep' WHERE id = 1",
            [],
        )
        .unwrap();
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(result["failed"], 1, "{result}");
    assert_eq!(titles(&phone), ["a title far too long to keep"]);
    assert_eq!(attention(&phone)[0]["reason"], "validation_failed");

    let discarded = json(&phone, "SELECT tether_discard('notes', 1)");
    assert_eq!(discarded["discarded"], 1, "{discarded}");
    assert_eq!(discarded["rows"][0]["outcome"], "diverged", "{discarded}");
    assert_eq!(discarded["pull_from_start"], true, "{discarded}");
    // Until the server sends the row, it is shown as diverged.
    let needs = attention(&phone);
    assert_eq!(needs.len(), 1, "{needs:?}");
    assert_eq!(needs[0]["kind"], "diverged");
    assert_eq!(needs[0]["local_pk"], json!({"id": 1}));
    assert_eq!(attention_counts(&phone), (0, 0, 1));

    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(result["pushed"], 0, "nothing is sent: {result}");
    assert_eq!(titles(&phone), ["groceries"]);
    all_clear(&phone);
    json(&laptop, "SELECT tether_sync()");
    assert_eq!(titles(&laptop), ["groceries"]);
    assert_eq!(server_titles(&server, &phone), [json!("groceries")]);
}

#[test]
fn a_rejected_update_is_retried_once_the_server_accepts_it() {
    let (_server_dir, server_db) = temp_db();
    let db = server_db.to_str().unwrap();
    let strict = Server::start(&["--db", db, "--model", NOTE]);
    let (_a, phone) = device(&strict);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'groceries')", [])
        .unwrap();
    json(&phone, "SELECT tether_sync()");
    phone
        .execute(
            "UPDATE notes SET title = 'groceries for the whole week' WHERE id = 1",
            [],
        )
        .unwrap();
    assert_eq!(json(&phone, "SELECT tether_sync()")["failed"], 1);
    // Retried against the same rules: refused again, recorded as a new failure.
    let retried = json(&phone, "SELECT tether_retry('notes')");
    assert_eq!(retried["retried"], 1, "{retried}");
    assert_eq!(retried["rows"][0]["outcome"], "update", "{retried}");
    assert_eq!(json(&phone, "SELECT tether_sync()")["failed"], 1);
    assert_eq!(attention(&phone).len(), 1);
    drop(strict);

    // The server's rules were relaxed: a retry now goes through.
    let relaxed = Server::start(&[
        "--db",
        db,
        "--model",
        r#"{"name": "Note", "fields": {"title": "required|max:60"}}"#,
    ]);
    set_config(&phone, "server_url", relaxed.url.as_str());
    let retried = json(&phone, "SELECT tether_retry()");
    assert_eq!(retried["retried"], 1, "{retried}");
    assert_eq!(
        attention_counts(&phone).0,
        0,
        "retried rows leave the failed count at once"
    );
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(
        (result["pushed"].clone(), result["failed"].clone()),
        (json!(1), json!(0)),
        "{result}"
    );
    all_clear(&phone);
    let (_b, laptop) = device(&relaxed);
    json(&laptop, "SELECT tether_sync()");
    assert_eq!(titles(&laptop), ["groceries for the whole week"]);
    assert_eq!(
        server_titles(&relaxed, &phone),
        [json!("groceries for the whole week")]
    );
}

/// Both devices edit the same note; the phone's older change conflicts. `keep_local`: the phone
/// retries (its change wins); otherwise it discards (the laptop's wins).
fn conflict_resolved(keep_local: bool) {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    let (_b, laptop) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'draft')", [])
        .unwrap();
    json(&phone, "SELECT tether_sync()");
    json(&laptop, "SELECT tether_sync()");
    phone
        .execute("UPDATE notes SET title = 'phone edit' WHERE id = 1", [])
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    laptop
        .execute("UPDATE notes SET title = 'laptop edit' WHERE id = 1", [])
        .unwrap();
    json(&laptop, "SELECT tether_sync()");
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(result["conflicts"], 1, "{result}");
    assert_eq!(
        titles(&phone),
        ["laptop edit"],
        "the server's version was written"
    );
    let needs = attention(&phone);
    assert_eq!(needs.len(), 1, "{needs:?}");
    assert_eq!(needs[0]["kind"], "conflict");
    assert_eq!(needs[0]["local_pk"], json!({"id": 1}));
    assert_eq!(attention_counts(&phone).1, 1);

    let key = key_of(&phone, "notes", 1);
    let winner = if keep_local {
        let retried = json(&phone, &format!("SELECT tether_retry('notes', '{key}')"));
        assert_eq!(
            retried["rows"][0]["outcome"], "local change written again",
            "{retried}"
        );
        assert_eq!(titles(&phone), ["phone edit"]);
        "phone edit"
    } else {
        let discarded = json(&phone, &format!("SELECT tether_discard('notes', '{key}')"));
        assert_eq!(
            discarded["rows"][0]["outcome"], "row holds the server's version",
            "{discarded}"
        );
        assert_eq!(discarded["pull_from_start"], false);
        "laptop edit"
    };
    assert_eq!(
        attention_counts(&phone).1,
        0,
        "resolved conflicts leave the count"
    );
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(result["conflicts"], 0, "{result}");
    assert_eq!(result["pushed"], if keep_local { 1 } else { 0 }, "{result}");
    json(&laptop, "SELECT tether_sync()");
    assert_eq!(titles(&phone), [winner]);
    assert_eq!(titles(&laptop), [winner]);
    assert_eq!(server_titles(&server, &phone), [json!(winner)]);
    all_clear(&phone);
    all_clear(&laptop);
}

#[test]
fn a_conflict_resolved_by_retrying_keeps_the_local_change_everywhere() {
    conflict_resolved(true);
}

#[test]
fn a_conflict_resolved_by_discarding_keeps_the_servers_version_everywhere() {
    conflict_resolved(false);
}

#[test]
fn discarding_a_refused_create_removes_the_row_the_server_never_had() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    let (_b, laptop) = device(&server);
    phone
        .execute_batch("INSERT INTO notes (id, title) VALUES (1, ''), (2, 'kept');")
        .unwrap();
    assert_eq!(json(&phone, "SELECT tether_sync()")["failed"], 1);
    let discarded = json(&phone, "SELECT tether_discard('notes')");
    assert_eq!(discarded["discarded"], 1, "{discarded}");
    assert_eq!(discarded["rows"][0]["outcome"], "removed", "{discarded}");
    assert_eq!(titles(&phone), ["kept"]);
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(result["pushed"], 0, "the removal is not sent: {result}");
    all_clear(&phone);
    json(&laptop, "SELECT tether_sync()");
    assert_eq!(titles(&laptop), ["kept"]);
    assert_eq!(server_titles(&server, &phone), [json!("kept")]);
}

#[test]
fn resolved_mutations_are_pruned_with_the_retention_period() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, '')", [])
        .unwrap();
    json(&phone, "SELECT tether_sync()");
    json(&phone, "SELECT tether_discard('notes', 1)");
    let resolved = "SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'resolved'";
    assert_eq!(column::<i64>(&phone, resolved), [1]);
    set_config(&phone, "retention_days", 0);
    // Pruning keeps the log's newest row (the queue's ids never go back): a later write.
    phone
        .execute("INSERT INTO notes (id, title) VALUES (2, 'later')", [])
        .unwrap();
    json(&phone, "SELECT tether_sync()");
    assert_eq!(column::<i64>(&phone, resolved), [0]);
}

#[test]
fn resolving_names_what_it_cannot_do() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    phone
        .execute_batch("CREATE TABLE local_only (id INTEGER PRIMARY KEY);")
        .unwrap();
    let error = error_of(&phone, "SELECT tether_retry('local_only')");
    assert!(
        error.contains("\"local_only\" is not a tracked table"),
        "{error}"
    );
    let error = error_of(&phone, "SELECT tether_discard('notes', 99)");
    assert!(
        error.contains("no row of \"notes\" has the sync key, mutation id or primary key 99"),
        "{error}"
    );
    let error = error_of(&phone, "SELECT tether_discard('notes', NULL)");
    assert!(error.contains("the row key is NULL"), "{error}");
    phone.execute_batch("BEGIN").unwrap();
    let error = error_of(&phone, "SELECT tether_retry()");
    assert!(error.contains("inside a transaction"), "{error}");
    phone.execute_batch("ROLLBACK").unwrap();
    // Only top-level SQL may call them (they write).
    phone
        .execute_batch("CREATE VIEW v AS SELECT tether_retry() AS r;")
        .unwrap();
    let error = error_of(&phone, "SELECT r FROM v");
    assert!(error.contains("unsafe use of tether_retry"), "{error}");
    // A row that needs nothing: a discard says so; a retry sends it again as it is.
    phone
        .execute("INSERT INTO notes (id, title) VALUES (3, 'fine')", [])
        .unwrap();
    json(&phone, "SELECT tether_sync()");
    let discarded = json(&phone, "SELECT tether_discard('notes', 3)");
    assert_eq!(discarded["discarded"], 0, "{discarded}");
    assert_eq!(discarded["rows"][0]["outcome"], "nothing needs attention");
    let before = last_log_id(&phone);
    let retried = json(&phone, "SELECT tether_retry('notes', 3)");
    assert_eq!(retried["retried"], 1, "{retried}");
    assert_eq!(retried["rows"][0]["outcome"], "update", "{retried}");
    assert_eq!(
        ops_after(&phone, before),
        [op("update", &key_of(&phone, "notes", 3))]
    );
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(result["pushed"], 1, "{result}");
}

#[test]
fn a_sync_running_elsewhere_makes_resolving_wait_for_it() {
    let server = Server::start(&["--model", NOTE]);
    let (_dir, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, '')", [])
        .unwrap();
    json(&phone, "SELECT tether_sync()");
    // Another process holds the sync lock for a moment (a lease that ends in 300 ms).
    let other = open_plain(std::path::Path::new(phone.path().unwrap()));
    other
        .execute(
            "INSERT INTO tether_locks (name, holder, expires_at) VALUES ('sync', 'elsewhere', ?1)",
            [now_ms() + 300],
        )
        .unwrap();
    let started = std::time::Instant::now();
    let discarded = json(&phone, "SELECT tether_discard('notes', 1)");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    assert_eq!(discarded["discarded"], 1, "{discarded}");
}

#[test]
fn fields_the_server_ignores_are_reported() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    phone
        .execute_batch(
            "ALTER TABLE notes ADD COLUMN color TEXT; SELECT tether_track('notes');
             INSERT INTO notes (id, title, color) VALUES (1, 'groceries', 'red');",
        )
        .unwrap();
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(result["pushed"], 1, "{result}");
    let warning = &result["warnings"][0];
    assert_eq!(warning["reason"], "ignored_fields", "{result}");
    assert_eq!(warning["fields"], json!(["color"]), "{warning}");
    assert_eq!(warning["row"]["table"], "notes", "{warning}");
    assert_eq!(warning["row"]["primary_key"], json!({"id": 1}), "{warning}");
    let status = json(&phone, "SELECT tether_status()");
    let table = &status["tables"][0];
    assert_eq!(table["server_ignored"], json!(["color"]), "{table}");
    // The pull echoed the row back without it.
    assert_eq!(table["not_echoed"], json!(["color"]), "{table}");
    let log: Vec<String> = column(
        &phone,
        "SELECT json_extract(result, '$.warnings[0].fields[0]') FROM tether_sync_log WHERE result IS NOT NULL",
    );
    assert_eq!(log, ["color"]);
}

#[test]
fn a_dropped_table_with_a_failed_change_does_not_stop_syncing_the_others() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    phone
        .execute_batch(
            "CREATE TABLE memos (id INTEGER PRIMARY KEY, body TEXT); SELECT tether_track('memos');
             INSERT INTO memos (body) VALUES ('the server has no Memo model');",
        )
        .unwrap();
    // Refused with reason `error` (unknown model): retried at the next push.
    assert_eq!(json(&phone, "SELECT tether_sync()")["failed"], 1);
    phone.execute_batch("DROP TABLE memos;").unwrap();
    phone
        .execute(
            "INSERT INTO notes (id, title) VALUES (1, 'still syncs')",
            [],
        )
        .unwrap();
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(result["pushed"], 1, "{result}");
    assert_eq!(server_titles(&server, &phone), [json!("still syncs")]);
    let rejection = &result["rejections"][0];
    assert_eq!(rejection["row"]["table"], "memos", "{result}");
    assert_eq!(rejection["row"]["primary_key"], Value::Null, "{result}");
}

/// A title typed wrong and corrected before the sync: both changes go in one request, the server
/// refuses the first and takes the second. Nothing needs attention, and the sync does not report
/// a failure (it reported `failed: 1` and listed the refusal it had already settled).
#[test]
fn a_refusal_a_later_change_in_the_same_request_settled_is_not_reported_as_failed() {
    let server = Server::start(&["--model", NOTE]);
    let (_a, phone) = device(&server);
    phone
        .execute("INSERT INTO notes (id, title) VALUES (1, 'groceries')", [])
        .unwrap();
    json(&phone, "SELECT tether_sync()");
    phone
        .execute_batch(
            "UPDATE notes SET title = 'a title far too long to keep' WHERE id = 1;
             UPDATE notes SET title = 'shopping' WHERE id = 1;",
        )
        .unwrap();
    let result = json(&phone, "SELECT tether_sync()");
    assert_eq!(
        (
            result["pushed"].clone(),
            result["failed"].clone(),
            result["rejections"].clone()
        ),
        (json!(1), json!(0), json!([])),
        "{result}"
    );
    all_clear(&phone);
    assert_eq!(server_titles(&server, &phone), [json!("shopping")]);
    let settled: Vec<String> = column(
        &phone,
        "SELECT resolution FROM tether_mutation_logs WHERE rejection_reason = 'validation_failed'",
    );
    assert_eq!(settled, ["superseded"], "the server did refuse the first");
}
