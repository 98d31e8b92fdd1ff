//! The write paths end to end: two client databases syncing through tether-server on 127.0.0.1,
//! checked against each other and against the server's own rows.
use rusqlite::Connection;
use serde_json::{json, Value};
use tether_harness::*;

struct Client {
    _dir: tempfile::TempDir,
    conn: Connection,
}

fn client(server: &Server, schema: &str, tables: &[&str]) -> Client {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(schema).unwrap();
    for table in tables {
        json(&conn, &format!("SELECT tether_track('{table}')"));
    }
    set_config(&conn, "server_url", server.url.as_str());
    Client { _dir: dir, conn }
}

fn sync(c: &Client) -> Value {
    let result = json(&c.conn, "SELECT tether_sync()");
    assert_eq!(result["failed"], 0, "{result}");
    assert_eq!(result["pull_errors"], 0, "{result}");
    result
}

/// Every row of `table` as JSON objects (BLOBs as `{"blob": hex}`), ordered by sync key.
fn rows(conn: &Connection, table: &str, columns: &[&str]) -> Vec<Value> {
    let select = columns
        .iter()
        .map(|c| {
            format!("CASE typeof({c}) WHEN 'blob' THEN json_object('blob', hex({c})) ELSE {c} END")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT tether_id, {select} FROM {table} ORDER BY tether_id"
        ))
        .unwrap();
    stmt.query_map([], |r| {
        let mut row = serde_json::Map::new();
        row.insert("tether_id".into(), json!(r.get::<_, String>(0)?));
        for (i, c) in columns.iter().enumerate() {
            let value = match r.get_ref(i + 1)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(n) => json!(n),
                rusqlite::types::ValueRef::Real(f) => json!(f),
                rusqlite::types::ValueRef::Text(t) => {
                    let t = String::from_utf8_lossy(t).to_string();
                    serde_json::from_str::<Value>(&t)
                        .ok()
                        .filter(|v| v.get("blob").is_some())
                        .unwrap_or(json!(t))
                }
                rusqlite::types::ValueRef::Blob(b) => json!(b),
            };
            row.insert(c.to_string(), value);
        }
        Ok(Value::Object(row))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn replace_ends_as_one_row_on_every_device() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Setting", "fields": {"name": "required|string", "value": "nullable|string"}}"#,
    ]);
    let schema = "CREATE TABLE settings (id INTEGER PRIMARY KEY, name TEXT UNIQUE, value TEXT);";
    let a = client(&server, schema, &["settings"]);
    let b = client(&server, schema, &["settings"]);
    a.conn
        .execute_batch(
            "INSERT INTO settings (name, value) VALUES ('theme', 'dark'), ('lang', 'en');",
        )
        .unwrap();
    sync(&a);
    sync(&b);
    let plain = open_plain(std::path::Path::new(a.conn.path().unwrap()));
    plain
        .execute_batch(
            "INSERT OR REPLACE INTO settings (name, value) VALUES ('theme', 'light');
             REPLACE INTO settings (id, name, value) VALUES ((SELECT id FROM settings WHERE name = 'lang'), 'lang', 'nl');",
        )
        .unwrap();
    sync(&a);
    sync(&b);
    let on_server = server.rows("check");
    assert_eq!(on_server.len(), 2, "{on_server:?}");
    let expected = rows(&a.conn, "settings", &["name", "value"]);
    assert_eq!(expected.len(), 2);
    assert_eq!(rows(&b.conn, "settings", &["name", "value"]), expected);
    for row in &expected {
        let held = &on_server[row["tether_id"].as_str().unwrap()];
        assert_eq!(
            (&held["name"], &held["value"]),
            (&row["name"], &row["value"])
        );
    }
    assert_eq!(
        expected
            .iter()
            .map(|r| r["value"].as_str().unwrap())
            .collect::<Vec<_>>()
            .len(),
        2
    );
    assert!(
        expected.iter().any(|r| r["value"] == "light")
            && expected.iter().any(|r| r["value"] == "nl")
    );
}

/// Two devices create a row with the same value of an `ON CONFLICT REPLACE` column. The second
/// to sync pulls the first one's row, which pushes its own out (logged as a delete), then the
/// echo of its own row in the same page: that echo must wait for the delete, not push the
/// pulled row out in turn. One row is left, the same everywhere.
#[test]
fn an_on_conflict_replace_column_leaves_one_row_when_two_devices_collide() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Tag", "fields": {"code": "nullable|string", "label": "nullable|string"}}"#,
    ]);
    let schema = "CREATE TABLE tags (id INTEGER PRIMARY KEY, code TEXT UNIQUE ON CONFLICT REPLACE, label TEXT);";
    let a = client(&server, schema, &["tags"]);
    let b = client(&server, schema, &["tags"]);
    a.conn
        .execute_batch("INSERT INTO tags (code, label) VALUES ('k', 'from a');")
        .unwrap();
    sync(&a);
    b.conn
        .execute_batch("INSERT INTO tags (code, label) VALUES ('k', 'from b');")
        .unwrap();
    sync(&b);
    sync(&b);
    sync(&a);
    let on_a = rows(&a.conn, "tags", &["code", "label"]);
    assert_eq!(on_a.len(), 1, "{on_a:?}");
    assert_eq!(rows(&b.conn, "tags", &["code", "label"]), on_a);
    let on_server = server.rows("check");
    assert_eq!(on_server.len(), 1, "{on_server:?}");
    let kept = &on_server[on_a[0]["tether_id"].as_str().unwrap()];
    assert_eq!(kept["label"], on_a[0]["label"]);
}

#[test]
fn bytes_and_json_come_back_as_they_were_written() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "Note", "fields": {"title": "required|string", "tags": "nullable|array", "labels": "nullable|array", "image": "nullable", "score": "nullable|numeric", "n": "nullable|integer"}}"#,
    ]);
    // On A `labels` is declared JSON; on B it is plain TEXT, which B must learn from the server.
    let schema = "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, tags JSON, labels {}, image BLOB, score REAL, n INTEGER);";
    let a = client(&server, &schema.replace("{}", "JSON"), &["notes"]);
    let b = client(&server, &schema.replace("{}", "TEXT"), &["notes"]);
    a.conn
        .execute_batch(
            r#"INSERT INTO notes (title, tags, labels, image, score, n)
               VALUES ('[1] looks like JSON', '["a","b"]', json_array('x'), x'00FF89504E47', 1.0, 3);"#,
        )
        .unwrap();
    sync(&a);
    sync(&b);
    let columns = ["title", "tags", "labels", "image", "score", "n"];
    let on_b = rows(&b.conn, "notes", &columns);
    assert_eq!(on_b, rows(&a.conn, "notes", &columns));
    assert_eq!(
        on_b[0]["image"],
        json!({"blob": "00FF89504E47"}),
        "bytes stay bytes"
    );
    let kinds: Vec<String> = column(
        &b.conn,
        "SELECT typeof(image) || typeof(score) || typeof(n) FROM notes",
    );
    assert_eq!(kinds, ["blobrealinteger"]);
    // `labels` is TEXT, but the server sent an array for it: B learned it holds JSON, so an
    // edit of another column sends it back as an array (the server's `array` rule accepts it).
    let status = json(&b.conn, "SELECT tether_status()");
    assert_eq!(
        status["tables"][0]["json_columns"],
        json!(["labels", "tags"]),
        "{status}"
    );
    b.conn
        .execute_batch("UPDATE notes SET title = 'edited on B'")
        .unwrap();
    sync(&b);
    sync(&a);
    let held = server.rows("check");
    let held = held.values().next().unwrap();
    assert_eq!(
        (&held["tags"], &held["labels"]),
        (&json!(["a", "b"]), &json!(["x"]))
    );
    assert_eq!(held["title"], "edited on B");
    assert_eq!(
        rows(&a.conn, "notes", &columns),
        rows(&b.conn, "notes", &columns)
    );
}

#[test]
fn tables_keyed_by_data_sync_both_ways() {
    let server = Server::start(&[
        "--model",
        r#"{"name": "TaskTag", "fields": {"task_key": "required|string", "tag": "required|string", "weight": "nullable|integer"}}"#,
        "--model",
        r#"{"name": "Country", "fields": {"code": "required|string", "name": "nullable|string"}}"#,
    ]);
    let schema = "CREATE TABLE task_tag (task_key TEXT NOT NULL, tag TEXT NOT NULL, weight INTEGER, PRIMARY KEY (task_key, tag)) WITHOUT ROWID;
                  CREATE TABLE countries (code TEXT PRIMARY KEY NOT NULL, name TEXT);";
    let a = client(&server, schema, &["task_tag", "countries"]);
    let b = client(&server, schema, &["task_tag", "countries"]);
    a.conn
        .execute_batch(
            "INSERT INTO task_tag VALUES ('T1', 'home', 1, NULL), ('T1', 'work', 2, NULL);
             INSERT INTO countries (code, name) VALUES ('NL', 'Netherlands'), ('BE', 'Belgium');",
        )
        .unwrap();
    sync(&a);
    sync(&b);
    b.conn
        .execute_batch(
            "UPDATE task_tag SET weight = 5 WHERE tag = 'work';
             INSERT OR REPLACE INTO countries (code, name) VALUES ('NL', 'Nederland');
             DELETE FROM task_tag WHERE tag = 'home';",
        )
        .unwrap();
    sync(&b);
    sync(&a);
    for (table, columns) in [
        ("task_tag", &["task_key", "tag", "weight"][..]),
        ("countries", &["code", "name"][..]),
    ] {
        let on_a = rows(&a.conn, table, columns);
        assert_eq!(on_a, rows(&b.conn, table, columns), "{table}");
        assert!(
            on_a.iter()
                .all(|r| columns.iter().all(|c| *c == "weight" || !r[*c].is_null())),
            "{on_a:?}"
        );
    }
    let tags: Vec<String> = column(&a.conn, "SELECT tag || weight FROM task_tag");
    assert_eq!(tags, ["work5"]);
    assert_eq!(
        server.rows("check").len(),
        3,
        "one tag and two countries, nothing twice"
    );
}
