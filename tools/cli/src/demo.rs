//! `tether demo`: the main job on an embedded default. Starts tether-server on a free loopback
//! port with a temporary database, creates two client databases, tracks a table, writes on one,
//! syncs both, shows the second receiving the rows, then a conflict and a validation rejection
//! and how each is reported, then status. Leaves nothing running and nothing behind.
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use std::cell::RefCell;

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::output::Out;

const MODEL: &str = r#"{"name": "Task", "fields": {"title": "required|max:40", "done": "nullable|boolean"}, "soft_deletes": true}"#;

/// The server process, stopped when dropped (also on errors).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server_binary() -> Result<PathBuf, String> {
    let beside = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("tether-server");
    if beside.is_file() {
        return Ok(beside);
    }
    Err(format!(
        "tether-server not found beside {} (build it: cargo build --release -p tether-server in tools/)",
        beside.display()
    ))
}

fn start_server() -> Result<(Server, String), String> {
    let mut child = crate::signals::demo_spawn(
        Command::new(server_binary()?)
            .args(["--listen", "127.0.0.1:0", "--quiet", "--model", MODEL])
            .stdout(Stdio::piped()),
    )
    .map_err(|e| format!("cannot start tether-server: {e}"))?;
    let stdout = child.stdout.take().ok_or("tether-server has no stdout")?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or(format!("unexpected tether-server output {line:?}"))?;
    Ok((server, url.to_string()))
}

/// Tells the story: as text for people, or (`--json`) as events collected for one JSON object.
struct Story<'a> {
    out: &'a Out,
    events: RefCell<Vec<Value>>,
}

impl Story<'_> {
    fn event(&self, kind: &str, client: Option<&str>, text: &str, rows: Option<Vec<Value>>) {
        self.events.borrow_mut().push(json!({
            "kind": kind, "client": client, "text": text, "rows": rows,
        }));
    }

    fn say(&self, text: &str) {
        if self.out.json {
            self.event("say", None, text, None);
        } else {
            self.out.line(format!("\n# {text}"));
        }
    }

    fn note(&self, text: &str) {
        if self.out.json {
            self.event("note", None, text, None);
        } else {
            self.out.line(text);
        }
    }

    /// Runs SQL on a client, echoing it, and prints what it returns.
    fn sql(&self, name: &str, conn: &Connection, statement: &str) -> Result<(), String> {
        if !self.out.json {
            self.out.line(format!("{name}> {statement}"));
        }
        let mut stmt = conn.prepare(statement).map_err(|e| e.to_string())?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
        let mut all = Vec::new();
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let cells: Vec<Value> = (0..columns)
                .map(|i| match row.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Text(t)) => {
                        let text = String::from_utf8_lossy(t).into_owned();
                        match serde_json::from_str::<Value>(&text) {
                            Ok(v @ Value::Object(_)) => v,
                            _ => Value::String(text),
                        }
                    }
                    Ok(rusqlite::types::ValueRef::Integer(i)) => i.into(),
                    Ok(rusqlite::types::ValueRef::Real(r)) => r.into(),
                    Ok(rusqlite::types::ValueRef::Null) => Value::Null,
                    other => format!("{other:?}").into(),
                })
                .collect();
            if !self.out.json {
                let shown: Vec<String> = cells
                    .iter()
                    .map(|cell| match cell {
                        Value::Object(_) => serde_json::to_string_pretty(cell).unwrap_or_default(),
                        Value::String(text) => text.clone(),
                        Value::Null => "NULL".into(),
                        other => other.to_string(),
                    })
                    .collect();
                self.out
                    .line(format!("  {}", shown.join(" | ").replace('\n', "\n  ")));
            }
            all.push(Value::Array(cells));
        }
        if self.out.json {
            self.event("sql", Some(name), statement, Some(all));
        }
        Ok(())
    }
}

fn client(dir: &std::path::Path, name: &str, url: &str, out: &Out) -> Result<Connection, String> {
    let conn = Connection::open(dir.join(format!("{name}.db"))).map_err(|e| e.to_string())?;
    tether::register_without_workers(&conn).map_err(|e| e.to_string())?;
    if out.verbose > 0 {
        conn.query_row(
            "SELECT tether_config('debug_level', ?1, 'connection')",
            [out.verbose.min(3).to_string()],
            |_| Ok(()),
        )
        .map_err(|e| e.to_string())?;
    }
    conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER DEFAULT 0); SELECT tether_track('tasks');")
        .map_err(|e| e.to_string())?;
    conn.query_row("SELECT tether_config('server_url', ?1)", [url], |_| Ok(()))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

pub fn run(out: &Out) -> Result<(), String> {
    let (server, url) = start_server()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    crate::signals::demo_dir(dir.path());
    let story = Story {
        out,
        events: RefCell::new(Vec::new()),
    };
    story.say(&format!(
        "A reference server runs at {url} (model Task: title required, at most 40 characters)"
    ));
    let alice = client(dir.path(), "alice", &url, out)?;
    let bob = client(dir.path(), "bob", &url, out)?;
    story.note("alice.db and bob.db each track a tasks table and point at the server.");

    story.say("Alice writes offline, then syncs");
    story.sql(
        "alice",
        &alice,
        "INSERT INTO tasks (title) VALUES ('Buy milk'), ('Water the plants'), ('Call the bank')",
    )?;
    story.sql("alice", &alice, "SELECT tether_sync()")?;

    story.say("Bob syncs and receives Alice's rows");
    story.sql("bob", &bob, "SELECT tether_sync()")?;
    story.sql("bob", &bob, "SELECT id, title, done, tether_id FROM tasks")?;

    story.say("A conflict: Alice edits a row offline; Bob edits it later and syncs first");
    story.sql(
        "alice",
        &alice,
        "UPDATE tasks SET title = 'Buy oat milk' WHERE title = 'Buy milk'",
    )?;
    std::thread::sleep(std::time::Duration::from_millis(20));
    story.sql(
        "bob",
        &bob,
        "UPDATE tasks SET title = 'Buy almond milk', done = 1 WHERE title = 'Buy milk'",
    )?;
    story.sql("bob", &bob, "SELECT tether_sync()")?;
    story.note("Alice's change is older than the server's row: reported as a conflict; Alice takes the server's state.");
    story.sql("alice", &alice, "SELECT tether_sync()")?;
    story.sql(
        "alice",
        &alice,
        "SELECT title, done FROM tasks WHERE title LIKE 'Buy%'",
    )?;

    story.say("A validation rejection: a title longer than the server allows");
    story.sql("bob", &bob, "INSERT INTO tasks (title) VALUES ('A title that is far too long for the server to accept')")?;
    story.sql("bob", &bob, "SELECT tether_sync()")?;
    story.sql("bob", &bob, "SELECT operation, sync_status, rejection_reason, rejection_data FROM tether_mutation_logs WHERE sync_status = 'failed'")?;

    story.say("Status");
    story.sql("alice", &alice, "SELECT tether_status()")?;
    story.sql("bob", &bob, "SELECT tether_status()")?;
    story.say("Done: the server is stopped and the temporary databases are removed.");
    if out.json {
        out.json(&json!({"server_url": url, "events": story.events.into_inner()}));
    }
    drop(server);
    Ok(())
}
