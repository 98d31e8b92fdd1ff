//! tether::shape: each track-time warning appears for the bad table shape and not for the
//! corrected one.
use rusqlite::Connection;
use tether::shape::{findings, unique_column_sets, Finding};

fn db(schema: &str) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(schema).unwrap();
    conn
}

/// The columns `tether_track` syncs by default: all but the primary key, generated columns
/// and the sync key.
fn default_synced(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM pragma_table_xinfo(?1)
              WHERE pk = 0 AND hidden = 0 AND name <> 'tether_id' ORDER BY cid",
        )
        .unwrap();
    let names = stmt.query_map([table], |r| r.get(0)).unwrap();
    names.collect::<rusqlite::Result<_>>().unwrap()
}

fn check(conn: &Connection, table: &str, synced: &[String]) -> Vec<Finding> {
    findings(conn, table, "tether_id", synced).unwrap()
}

/// (column, message) of the findings with `code`, for tables synced with default columns.
fn found(conn: &Connection, table: &str, code: &str) -> Vec<(Option<String>, String)> {
    of(check(conn, table, &default_synced(conn, table)), code)
}

fn of(findings: Vec<Finding>, code: &str) -> Vec<(Option<String>, String)> {
    findings
        .into_iter()
        .filter(|f| f.code == code)
        .map(|f| (f.column, f.message))
        .collect()
}

fn columns(found: &[(Option<String>, String)]) -> Vec<Option<&str>> {
    found.iter().map(|(c, _)| c.as_deref()).collect()
}

const PARENTS: &str = "
    CREATE TABLE projects (id INTEGER PRIMARY KEY, tether_id TEXT UNIQUE, name TEXT);
    CREATE TABLE people (id integer primary key, tether_id TEXT UNIQUE);
    CREATE TABLE codes (code TEXT PRIMARY KEY);
    CREATE TABLE bigs (id BIGINT PRIMARY KEY);
    CREATE TABLE descs (id INTEGER PRIMARY KEY DESC);
    CREATE TABLE wide (id INTEGER PRIMARY KEY, x) WITHOUT ROWID;";

#[test]
fn local_foreign_key_warns_on_references_to_a_rowid() {
    let conn = db(&format!(
        "{PARENTS}
         CREATE TABLE tasks (
           id INTEGER PRIMARY KEY,
           project_id INTEGER REFERENCES projects(id),
           owner_id INTEGER REFERENCES people,
           parent_task INTEGER REFERENCES tasks(ID),
           via_rowid INTEGER REFERENCES projects(rowid),
           title TEXT,
           tether_id TEXT);"
    ));
    let bad = found(&conn, "tasks", "local_foreign_key");
    assert_eq!(
        columns(&bad),
        [
            Some("project_id"),
            Some("owner_id"),
            Some("parent_task"),
            Some("via_rowid")
        ],
        "{bad:#?}"
    );
    let message = &bad[0].1;
    for part in [
        "\"tasks\"",
        "\"project_id\"",
        "device-local",
        "\"project_tether_id\" TEXT REFERENCES \"projects\"(\"tether_id\")",
        "exclude",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }

    let excluded: Vec<String> = vec!["title".into()];
    assert!(of(check(&conn, "tasks", &excluded), "local_foreign_key").is_empty());

    let conn = db(&format!(
        "{PARENTS}
         CREATE TABLE tasks (
           id INTEGER PRIMARY KEY,
           project_key TEXT REFERENCES projects(tether_id),
           owner_key TEXT REFERENCES people(tether_id),
           code TEXT REFERENCES codes,
           big INTEGER REFERENCES bigs,
           descending INTEGER REFERENCES descs,
           wide_id INTEGER REFERENCES wide(id),
           missing INTEGER REFERENCES nowhere(id),
           tether_id TEXT);"
    ));
    let good = found(&conn, "tasks", "local_foreign_key");
    assert!(good.is_empty(), "not rowid aliases: {good:#?}");
}

#[test]
fn rowid_only_warns_on_a_table_without_primary_key() {
    let conn = db("CREATE TABLE notes (body TEXT, tether_id TEXT)");
    let bad = found(&conn, "notes", "rowid_only");
    assert_eq!(columns(&bad), [None]);
    assert!(bad[0].1.contains("\"notes\"") && bad[0].1.contains("INTEGER PRIMARY KEY"));

    for schema in [
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, tether_id TEXT)",
        "CREATE TABLE notes (code TEXT PRIMARY KEY, body TEXT, tether_id TEXT)",
        "CREATE TABLE notes (a, b, body TEXT, tether_id TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID",
    ] {
        let conn = db(schema);
        assert!(found(&conn, "notes", "rowid_only").is_empty(), "{schema}");
    }
}

#[test]
fn not_null_unsynced_warns_on_required_columns_a_pull_cannot_fill() {
    let conn = db("CREATE TABLE items (
                     id INTEGER PRIMARY KEY NOT NULL,
                     tether_id TEXT NOT NULL,
                     sku TEXT NOT NULL,
                     local_note TEXT NOT NULL,
                     cached TEXT NOT NULL DEFAULT '',
                     scratch TEXT NOT NULL DEFAULT NULL,
                     doubled TEXT GENERATED ALWAYS AS (sku || sku) NOT NULL)");
    let synced: Vec<String> = vec!["sku".into()];
    let bad = of(check(&conn, "items", &synced), "not_null_unsynced");
    assert_eq!(
        columns(&bad),
        [Some("local_note"), Some("scratch")],
        "{bad:#?}"
    );
    assert!(bad[0].1.contains("\"items\"") && bad[0].1.contains("\"local_note\""));
    assert!(bad[0].1.contains("DEFAULT"));

    let all = vec!["sku".into(), "local_note".into(), "scratch".into()];
    assert!(of(check(&conn, "items", &all), "not_null_unsynced").is_empty());

    // A WITHOUT ROWID key is NOT NULL and never synced: pulled creates cannot fill it.
    let conn = db("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT, tether_id TEXT) WITHOUT ROWID");
    assert_eq!(
        columns(&found(&conn, "kv", "not_null_unsynced")),
        [Some("k")]
    );
}

#[test]
fn unique_not_covered_warns_on_partial_and_expression_unique_indexes() {
    let conn = db(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, tether_id TEXT, email TEXT, handle TEXT,
                                org TEXT, UNIQUE (org, handle));
         CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));
         CREATE UNIQUE INDEX accounts_handle ON accounts (handle) WHERE handle IS NOT NULL;
         CREATE UNIQUE INDEX tether_sync_key_accounts ON accounts (tether_id) WHERE tether_id > '';
         CREATE INDEX accounts_lower_handle ON accounts (lower(handle));",
    );
    let bad = found(&conn, "accounts", "unique_not_covered");
    assert_eq!(columns(&bad), [None, Some("handle")], "{bad:#?}");
    assert!(bad[0].1.contains("\"accounts_email\"") && bad[0].1.contains("expressions"));
    assert!(bad[1].1.contains("\"handle\"") && bad[1].1.contains("partial"));
    assert!(bad[1].1.contains("\"accounts\"") && bad[1].1.contains("INSERT OR REPLACE"));
    assert_eq!(
        unique_column_sets(&conn, "accounts", "tether_id").unwrap(),
        [vec![
            ("org".to_string(), "BINARY".to_string()),
            ("handle".to_string(), "BINARY".to_string())
        ]],
        "only plain unique indexes are watched"
    );

    let conn = db(
        "CREATE TABLE accounts (code TEXT PRIMARY KEY, tether_id TEXT UNIQUE, email TEXT,
                                handle TEXT UNIQUE, org TEXT, UNIQUE (org, handle));
         CREATE UNIQUE INDEX accounts_email ON accounts (email COLLATE NOCASE);
         CREATE UNIQUE INDEX accounts_handle ON accounts (handle);
         CREATE UNIQUE INDEX tether_sync_key_accounts ON accounts (tether_id);",
    );
    assert!(found(&conn, "accounts", "unique_not_covered").is_empty());
    let mut sets = unique_column_sets(&conn, "accounts", "tether_id").unwrap();
    sets.sort();
    let pair = |c: &str, coll: &str| (c.to_string(), coll.to_string());
    assert_eq!(
        sets,
        [
            vec![pair("email", "NOCASE")],
            vec![pair("handle", "BINARY")],
            vec![pair("org", "BINARY"), pair("handle", "BINARY")]
        ],
        "no primary key, no sync key, each column list once, with the index's collation"
    );
}

#[test]
fn deferred_foreign_key_warns_on_initially_deferred_references() {
    let conn = db(&format!(
        "{PARENTS}
         CREATE TABLE pairs (a, b, PRIMARY KEY (a, b));
         CREATE TABLE tasks (
           id INTEGER PRIMARY KEY,
           project_key TEXT REFERENCES projects(tether_id) deferrable /* why */ initially deferred,
           a TEXT, b TEXT,
           note TEXT DEFAULT 'DEFERRABLE INITIALLY DEFERRED', -- DEFERRABLE INITIALLY DEFERRED
           tether_id TEXT,
           CONSTRAINT \"fk, pair\" FOREIGN KEY (a, [b]) REFERENCES pairs (a, b)
             DEFERRABLE INITIALLY DEFERRED)"
    ));
    let bad = found(&conn, "tasks", "deferred_foreign_key");
    assert_eq!(columns(&bad), [Some("project_key"), None], "{bad:#?}");
    assert!(bad[0].1.contains("\"tasks\"") && bad[0].1.contains("\"project_key\""));
    assert!(bad[0].1.contains("COMMIT"));
    assert!(bad[1].1.contains(r#"["a", "b"]"#), "{}", bad[1].1);

    let conn = db(&format!(
        "{PARENTS}
         CREATE TABLE pairs (a, b, PRIMARY KEY (a, b));
         CREATE TABLE tasks (
           id INTEGER PRIMARY KEY,
           project_key TEXT REFERENCES projects(tether_id) NOT DEFERRABLE INITIALLY DEFERRED,
           owner_key TEXT REFERENCES people(tether_id) DEFERRABLE INITIALLY IMMEDIATE,
           a TEXT, b TEXT,
           note TEXT DEFAULT 'DEFERRABLE INITIALLY DEFERRED', -- DEFERRABLE INITIALLY DEFERRED
           \"deferrable initially deferred\" TEXT,
           tether_id TEXT,
           FOREIGN KEY (a, b) REFERENCES pairs (a, b) DEFERRABLE)"
    ));
    let good = found(&conn, "tasks", "deferred_foreign_key");
    assert!(good.is_empty(), "{good:#?}");
}

#[test]
fn on_conflict_clause_warns_on_rollback_and_fail() {
    let conn = db(r#"CREATE TABLE "line items" (
                       id INTEGER PRIMARY KEY,
                       sku TEXT NOT NULL ON CONFLICT ROLLBACK,
                       "odd ""name""" TEXT UNIQUE on conflict fail,
                       a TEXT, b TEXT,
                       "on conflict fail" TEXT DEFAULT 'ON CONFLICT ROLLBACK',
                       tether_id TEXT,
                       UNIQUE (a, b) ON CONFLICT FAIL)"#);
    let bad = found(&conn, "line items", "on_conflict_clause");
    assert_eq!(
        columns(&bad),
        [Some("sku"), Some("odd \"name\""), None],
        "{bad:#?}"
    );
    assert!(bad[0].1.contains("\"line items\"") && bad[0].1.contains("ON CONFLICT ROLLBACK"));
    assert!(bad[0].1.contains("rolls back"));
    assert!(bad[1].1.contains("ON CONFLICT FAIL") && bad[1].1.contains("half-applied"));
    assert!(bad[2].1.contains(r#"["a", "b"]"#), "{}", bad[2].1);

    let conn = db(r#"CREATE TABLE "line items" (
                       id INTEGER PRIMARY KEY,
                       sku TEXT NOT NULL ON CONFLICT ABORT,
                       "odd ""name""" TEXT UNIQUE,
                       a TEXT, b TEXT,
                       "on conflict fail" TEXT DEFAULT 'ON CONFLICT ROLLBACK',
                       tether_id TEXT,
                       UNIQUE (a, b) ON CONFLICT IGNORE)"#);
    let good = found(&conn, "line items", "on_conflict_clause");
    assert!(good.is_empty(), "{good:#?}");
}

#[test]
fn a_well_shaped_table_has_no_findings_and_a_missing_one_is_an_error() {
    let conn = db(&format!(
        "{PARENTS}
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL,
                             project_key TEXT REFERENCES projects(tether_id), tether_id TEXT);
         CREATE UNIQUE INDEX tether_sync_key_tasks ON tasks (tether_id);"
    ));
    let all = check(&conn, "tasks", &default_synced(&conn, "tasks"));
    assert!(all.is_empty(), "{all:#?}");
    let err = findings(&conn, "nope", "tether_id", &[]).unwrap_err();
    assert!(err.message().contains("nope"), "{err}");
}

#[test]
fn columns_the_server_sets_itself_are_named() {
    let conn = db("CREATE TABLE notes (key TEXT PRIMARY KEY, id INTEGER, title TEXT, Updated_At TEXT, created TEXT);
                   CREATE TABLE fine (id INTEGER PRIMARY KEY, title TEXT, created TEXT)");
    let named: Vec<Option<String>> = found(&conn, "notes", "server_attribute")
        .into_iter()
        .map(|(column, message)| {
            assert!(
                message.contains("sets") && message.contains("except"),
                "{message}"
            );
            column
        })
        .collect();
    assert_eq!(
        named,
        [Some("id".to_string()), Some("Updated_At".to_string())]
    );
    // The primary key `id` does not sync: nothing to say.
    assert!(found(&conn, "fine", "server_attribute").is_empty());
    // Left out of syncing: nothing either.
    let synced = vec!["title".to_string()];
    assert!(of(check(&conn, "notes", &synced), "server_attribute").is_empty());
}
