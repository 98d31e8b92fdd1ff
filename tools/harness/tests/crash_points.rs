//! Crash points: a sync killed with SIGKILL at each named point of push, pull, pruning and the
//! quarantine retry, then recovered by the next sync in another process.
//!
//! The syncing process is the plain sqlite3 shell loading the extension, with
//! `TETHER_TEST_KILL_POINT=<point>` in its environment only: reaching the point prints
//! `tether-kill-point: <point>` on its stderr and parks the thread, so the test proves the point
//! was reached before killing it there. The recovery runs in this process (no kill point), and
//! then: the client holds exactly the server's rows (every synced column), every mutation it
//! made is synced, the server's own record (`tether_applied_mutations`, read from its database
//! file; the server runs with `--strict-duplicates`) lists each of them exactly once and nothing
//! else, and the pull cursor is the server's latest.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use tether_harness::*;

const ITEM: &str = r#"{"name": "Item", "fields": {"title": "required|max:255", "code": "nullable|max:64", "n": "nullable|integer"}, "soft_deletes": true}"#;

/// The synced columns of `items`, compared one by one with the server's fields.
const COLUMNS: [&str; 3] = ["title", "code", "n"];

const KILL_POINT_ENV: &str = "TETHER_TEST_KILL_POINT";

/// How long a child may take to reach its kill point.
const REACH_TIMEOUT: Duration = Duration::from_secs(30);

/// Mutations per push request in the push workloads: several batches for a dozen mutations.
const PUSH_BATCH: usize = 2;

/// Rows per apply transaction of a pull page (`ROWS_PER_TRANSACTION` in src/engine/pull.rs).
const PULL_CHUNK: usize = 500;

/// What happens before the sync that is killed.
#[derive(Clone, Copy, Debug)]
enum Workload {
    /// The client syncs a few rows, then queues inserts, updates and deletes (of synced rows and
    /// of rows never sent) pushed in batches of [`PUSH_BATCH`]; `retention_days` 0 when `prune`.
    Push { prune: bool },
    /// Another client puts `seed` rows on the server, then updates and deletes some; this client
    /// queues a few writes of its own and pulls everything (pages of `page_size` when given).
    Pull { seed: usize, page_size: Option<i64> },
    /// Two server rows share a `code` this client declares UNIQUE: one is quarantined by an
    /// earlier pull; then the other client changes the first row's code, so the killed sync's
    /// retry of the quarantined row is one that would succeed.
    Quarantine,
}

/// A client database: its directory, path, and a connection of this process that loaded tether.
struct Client {
    _dir: tempfile::TempDir,
    path: PathBuf,
    conn: Connection,
}

impl Client {
    fn new(server: &Server, journal: &str, unique_code: bool) -> Client {
        let (dir, path) = temp_db();
        let conn = open_loaded(&path);
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = {journal};
             CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT NOT NULL, code TEXT{}, n INTEGER);",
            if unique_code { " UNIQUE" } else { "" }
        ))
        .unwrap();
        json(&conn, "SELECT tether_track('items')");
        set_config(&conn, "server_url", server.url.as_str());
        Client {
            _dir: dir,
            path,
            conn,
        }
    }

    fn id(&self) -> String {
        self.conn
            .query_row("SELECT tether_config('client_id')", [], |r| r.get(0))
            .unwrap()
    }

    fn run(&self, sql: &str) {
        self.conn
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A sync that must go through without failures.
    fn sync(&self) -> Value {
        let result = json(&self.conn, "SELECT tether_sync()");
        assert_eq!(result["skipped"], false, "{result}");
        assert_eq!(result["failed"], 0, "{result}");
        assert_eq!(result["conflicts"], 0, "{result}");
        result
    }

    fn key(&self, title: &str) -> String {
        self.conn
            .query_row(
                "SELECT tether_id FROM items WHERE title = ?1",
                [title],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("key of {title:?}: {e}"))
    }

    fn count(&self, sql: &str) -> usize {
        self.conn
            .query_row(sql, [], |r| r.get::<_, i64>(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}")) as usize
    }

    fn unsynced(&self) -> usize {
        self.count("SELECT count(*) FROM tether_mutation_logs WHERE sync_status <> 'synced'")
    }

    fn cursor(&self) -> Option<i64> {
        self.conn
            .query_row(
                "SELECT value FROM tether_sync_state WHERE key = 'last_sync_cursor'",
                [],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .unwrap()
            .flatten()
            .map(|text| text.parse().expect("a numeric cursor"))
    }

    /// Every row, by sync key, as `{title, code, n}`.
    fn rows(&self) -> BTreeMap<String, Value> {
        let mut stmt = self
            .conn
            .prepare("SELECT tether_id, title, code, n FROM items")
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                let mut row = serde_json::Map::new();
                for (i, column) in COLUMNS.iter().enumerate() {
                    let value = match r.get::<_, Sql>(i + 1)? {
                        Sql::Null => Value::Null,
                        Sql::Integer(n) => json!(n),
                        Sql::Real(f) => json!(f),
                        Sql::Text(t) => json!(t),
                        Sql::Blob(b) => json!(format!("blob {b:?}")),
                    };
                    row.insert(column.to_string(), value);
                }
                Ok((r.get::<_, String>(0)?, Value::Object(row)))
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect()
    }
}

/// Every mutation this client made, by log id: its id once given (never to change), operation
/// and entity. Read at several moments, because pruning deletes synced mutations.
#[derive(Default)]
struct Ledger {
    seen: BTreeMap<i64, Mutation>,
}

impl Ledger {
    fn observe(&mut self, client: &Client, when: &str) {
        for m in mutations(&client.conn) {
            match self.seen.get_mut(&m.id) {
                Some(known) => {
                    assert_eq!(
                        (&known.operation, &known.entity_id),
                        (&m.operation, &m.entity_id),
                        "{when}: log id {} was reused for another mutation",
                        m.id
                    );
                    if known.mutation_id.is_some() {
                        assert_eq!(
                            known.mutation_id, m.mutation_id,
                            "{when}: the {} of {} (log id {}) changed its mutation id",
                            m.operation, m.entity_id, m.id
                        );
                    }
                    *known = m;
                }
                None => {
                    self.seen.insert(m.id, m);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.seen.len()
    }
}

/// `(mutation_id, entity_id)` of every mutation the server applied for `client`.
fn applied_on_server(server_db: &Path, client: &str) -> Vec<(String, String)> {
    let conn = Connection::open(server_db).expect("open the server's database");
    let mut stmt = conn
        .prepare("SELECT mutation_id, entity_id FROM tether_applied_mutations WHERE client_id = ?1")
        .unwrap();
    let rows = stmt
        .query_map([client], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// The server's rows as `{title, code, n}`, by sync key, and its latest cursor.
fn server_state(server: &Server, client: &str) -> (BTreeMap<String, Value>, Option<i64>) {
    let rows = server
        .rows(client)
        .into_iter()
        .map(|(key, payload)| {
            let row: serde_json::Map<String, Value> = COLUMNS
                .iter()
                .map(|c| (c.to_string(), payload[*c].clone()))
                .collect();
            (key, Value::Object(row))
        })
        .collect();
    let page = server.post(
        "/tether/pull",
        &json!({"client_id": client, "last_sync_cursor": null}),
    );
    assert_eq!(page["has_more"], false, "one page without a limit");
    (rows, page["new_sync_cursor"].as_i64())
}

/// Runs `tether_sync()` in a sqlite3 shell with the kill point set in its environment, waits
/// until it says it reached the point, and kills it with SIGKILL there. Fails with the shell's
/// output when the point is never reached (the sync ended, or the timeout passed).
fn sync_killed_at(path: &Path, point: &str) {
    let mut child = Command::new("sqlite3")
        .arg(path)
        .arg(format!(".load {}", extension_path().display()))
        .arg("SELECT tether_sync();")
        .env(KILL_POINT_ENV, point)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the sqlite3 shell (apt-get install sqlite3)");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines, received) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let marker = format!("tether-kill-point: {point}");
    let deadline = Instant::now() + REACH_TIMEOUT;
    let mut said = Vec::new();
    let reached = loop {
        match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let hit = line.trim() == marker;
                said.push(line);
                if hit {
                    break true;
                }
            }
            // Timed out, or stderr closed: the shell ended without reaching the point.
            Err(_) => break false,
        }
    };
    child.kill().expect("SIGKILL the shell");
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut stdout)
        .unwrap();
    reader.join().unwrap();
    said.extend(received.try_iter());
    assert!(
        reached,
        "kill point {point:?} was never reached ({status}); the shell said on stdout {stdout:?} and on stderr {said:?}"
    );
    assert_eq!(
        status.signal(),
        Some(9),
        "the shell died of SIGKILL at {point}, not otherwise ({status}); stdout {stdout:?}, stderr {said:?}"
    );
}

/// Figures taken just before the killed sync, for what each point must have left behind.
struct Before {
    applied: usize,
    rows: usize,
    unsynced: usize,
    synced: usize,
    cursor: Option<i64>,
}

/// The whole scenario: set up `workload`, kill a sync at `point`, check what the crash left,
/// recover with two syncs in this process, and check everything converged exactly once.
fn crash_at(point: &str, journal: &str, workload: Workload) {
    assert!(
        std::env::var_os(KILL_POINT_ENV).is_none(),
        "{KILL_POINT_ENV} must be set only in the killed child: this process recovers"
    );
    let store = tempfile::tempdir().unwrap();
    let server_db = store.path().join("server.db");
    let server_db_arg = server_db.to_str().unwrap().to_string();
    let server = Server::start(&[
        "--strict-duplicates",
        "--db",
        &server_db_arg,
        "--model",
        ITEM,
    ]);
    let unique_code = matches!(workload, Workload::Quarantine);
    let client = Client::new(&server, journal, unique_code);
    let me = client.id();
    let mut ledger = Ledger::default();
    // Kept alive for the whole test: its server rows stay the same either way.
    let mut _seeder = None;
    // The quarantined row and the row whose change lets it apply.
    let mut quarantined = None;

    match workload {
        Workload::Push { prune } => {
            set_config(&client.conn, "push_batch_size", PUSH_BATCH as i64);
            client.run(
                "INSERT INTO items (title, code, n) VALUES
                   ('b0', 'c0', 0), ('b1', 'c1', 1), ('b2', 'c2', 2),
                   ('b3', 'c3', 3), ('b4', 'c4', 4), ('b5', 'c5', 5);",
            );
            assert_eq!(client.sync()["pushed"], 6);
            ledger.observe(&client, "after the first sync");
            if prune {
                // Set only now, so nothing is pruned before the ledger saw it.
                set_config(&client.conn, "retention_days", 0);
            }
            client.run(
                "INSERT INTO items (title, code, n) VALUES
                   ('p0', 'q0', 10), ('p1', 'q1', 11), ('p2', NULL, 12), ('p3', 'q3', NULL), ('p4', 'q4', 14);
                 UPDATE items SET title = 'b0 renamed' WHERE title = 'b0';
                 UPDATE items SET n = 101 WHERE title = 'b1';
                 UPDATE items SET code = 'q0 changed' WHERE title = 'p0';
                 DELETE FROM items WHERE title = 'b2';
                 DELETE FROM items WHERE title = 'p1';
                 UPDATE items SET title = 'b3 once' WHERE title = 'b3';
                 UPDATE items SET title = 'b3 twice', code = NULL WHERE title = 'b3 once';",
            );
        }
        Workload::Pull { seed, page_size } => {
            let seeder = Client::new(&server, "WAL", false);
            seeder.run(&format!(
                "WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < {seed})
                 INSERT INTO items (title, code, n) SELECT 's' || n, 'k' || n, n FROM i;"
            ));
            seeder.sync();
            seeder.run(
                "UPDATE items SET title = title || ' updated', n = n * 10 WHERE n % 7 = 3;
                 DELETE FROM items WHERE n % 11 = 5;",
            );
            seeder.sync();
            if let Some(size) = page_size {
                set_config(&client.conn, "pull_page_size", size);
            }
            client.run(
                "INSERT INTO items (title, code, n) VALUES ('v0', 'w0', 0), ('v1', NULL, 1), ('v2', 'w2', NULL);
                 UPDATE items SET title = 'v0 updated' WHERE title = 'v0';
                 DELETE FROM items WHERE title = 'v2';",
            );
            _seeder = Some(seeder);
        }
        Workload::Quarantine => {
            let seeder = Client::new(&server, "WAL", false);
            seeder.run(
                "INSERT INTO items (title, code, n) VALUES
                   ('qa', 'dup', 1), ('qb', 'dup', 2), ('s0', 'k0', 3), ('s1', 'k1', 4), ('s2', NULL, 5);",
            );
            seeder.sync();
            client
                .run("INSERT INTO items (title, code, n) VALUES ('v0', 'w0', 0), ('v1', 'w1', 1);");
            let first = client.sync();
            assert_eq!(
                first["pull_errors"], 1,
                "one row of code 'dup' is refused: {first}"
            );
            ledger.observe(&client, "after the first sync");
            let held: Vec<String> = column(&client.conn, "SELECT entity_id FROM tether_quarantine");
            let [held] = held.as_slice() else {
                panic!("one row quarantined, got {held:?}");
            };
            let (qa, qb) = (seeder.key("qa"), seeder.key("qb"));
            let applied = if *held == qa { qb } else { qa };
            assert_eq!(
                client.count(&format!(
                    "SELECT count(*) FROM items WHERE tether_id = '{applied}' AND code = 'dup'"
                )),
                1,
                "the other row of code 'dup' applied"
            );
            seeder.run(&format!(
                "UPDATE items SET code = 'fixed' WHERE tether_id = '{applied}';"
            ));
            seeder.sync();
            client.run("UPDATE items SET title = 'v0 updated' WHERE title = 'v0';");
            quarantined = Some((held.clone(), applied));
            _seeder = Some(seeder);
        }
    }

    let before = Before {
        applied: applied_on_server(&server_db, &me).len(),
        rows: client.rows().len(),
        unsynced: client.unsynced(),
        synced: client
            .count("SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'synced'"),
        cursor: client.cursor(),
    };

    sync_killed_at(&client.path, point);

    // What the crash left: the point is where the test says it is.
    ledger.observe(&client, "after the kill");
    let applied = applied_on_server(&server_db, &me).len();
    let (server_rows, _) = server_state(&server, &me);
    match point {
        "push-identities-given" => {
            assert_eq!(applied, before.applied, "nothing was sent");
            assert_eq!(client.unsynced(), before.unsynced, "nothing was recorded");
            let identified = client.count(
                "SELECT count(*) FROM tether_mutation_logs WHERE sync_status = 'pending' AND mutation_id IS NOT NULL",
            );
            assert!(
                identified >= PUSH_BATCH,
                "ids were committed before the kill: {identified}"
            );
        }
        "push-between-batches" => {
            assert_eq!(applied, before.applied + PUSH_BATCH, "one batch went");
            assert_eq!(
                client.unsynced(),
                before.unsynced - PUSH_BATCH,
                "its answer was recorded"
            );
        }
        "push-recording-answer" => {
            assert_eq!(
                applied,
                before.applied + PUSH_BATCH,
                "the server applied the first batch"
            );
            assert_eq!(
                client.unsynced(),
                before.unsynced,
                "the client died before recording the answer"
            );
        }
        "pull-inside-chunk" => {
            assert_eq!(client.unsynced(), 0, "the push went through");
            assert_eq!(client.cursor(), before.cursor, "the cursor did not move");
            assert_eq!(
                client.rows().len(),
                before.rows,
                "the rows written in the open transaction are gone"
            );
        }
        "pull-between-chunks" => {
            assert_eq!(client.unsynced(), 0, "the push went through");
            assert_eq!(client.cursor(), before.cursor, "the cursor did not move");
            assert_eq!(
                client.rows().len(),
                before.rows + PULL_CHUNK,
                "the first chunk was committed"
            );
            assert!(server_rows.len() > client.rows().len());
        }
        "pruning" => {
            assert_eq!(client.unsynced(), 0, "push and pull went through");
            assert_eq!(
                mutations(&client.conn).len(),
                ledger.len(),
                "the pruning transaction rolled back"
            );
            assert!(before.synced > 0);
        }
        "quarantine-retry" => {
            let (held, fixed) = quarantined.as_ref().unwrap();
            let still: Vec<String> =
                column(&client.conn, "SELECT entity_id FROM tether_quarantine");
            assert_eq!(still, std::slice::from_ref(held), "the retry rolled back");
            assert_eq!(
                client.count(&format!(
                    "SELECT count(*) FROM items WHERE tether_id = '{fixed}' AND code = 'fixed'"
                )),
                1,
                "the page that frees the code was committed"
            );
        }
        other => panic!("no expectations for kill point {other:?}"),
    }

    // The dead shell's lease row is left behind; a dead holder on this machine is seen at once,
    // so the recovery sync is not skipped.
    let recovery = client.sync();
    assert_eq!(recovery["pull_errors"], 0, "{recovery}");
    ledger.observe(&client, "after the recovery sync");
    let again = client.sync();
    assert_eq!(
        (again["pushed"].as_i64(), again["pulled"].as_i64()),
        (Some(0), Some(0)),
        "the recovery left nothing to do: {again}"
    );
    ledger.observe(&client, "after the second sync");

    // (1) The client holds exactly the server's rows, every synced column.
    let (server_rows, server_cursor) = server_state(&server, &me);
    let local = client.rows();
    let missing: Vec<&String> = server_rows
        .keys()
        .filter(|k| !local.contains_key(*k))
        .collect();
    let extra: Vec<&String> = local
        .keys()
        .filter(|k| !server_rows.contains_key(*k))
        .collect();
    let differ: Vec<(&String, &Value, &Value)> = server_rows
        .iter()
        .filter_map(|(k, s)| local.get(k).filter(|l| *l != s).map(|l| (k, l, s)))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{point}: rows diverge; missing locally {missing:?}, only local {extra:?}, (key, local, server) {differ:?}"
    );

    // (2) Every mutation is synced; nothing waits in the quarantine or behind local changes.
    assert_eq!(client.unsynced(), 0, "{point}: unsynced mutations remain");
    let status = json(&client.conn, "SELECT tether_status()");
    assert_eq!(
        (&status["pending"], &status["failed"], &status["conflicts"]),
        (&json!(0), &json!(0), &json!(0)),
        "{status}"
    );
    assert_eq!(status["quarantine"]["count"], 0, "{status}");
    assert_eq!(
        client.count("SELECT count(*) FROM tether_deferred_snapshots"),
        0,
        "no snapshot waits"
    );
    if matches!(workload, Workload::Push { prune: true }) {
        // All but the log's newest row, which pruning keeps so the queue's ids never go back.
        assert_eq!(
            mutations(&client.conn).len(),
            1,
            "the recovery pruned every synced mutation but the newest"
        );
    }

    // (3) Each mutation was applied exactly once: the server's record for this client holds one
    // row per mutation id the client gave, and nothing else.
    let ours: BTreeMap<String, &Mutation> = ledger
        .seen
        .values()
        .map(|m| {
            let id = m.mutation_id.clone().unwrap_or_else(|| {
                panic!(
                    "{point}: the {} of {} never got an id",
                    m.operation, m.entity_id
                )
            });
            (id, m)
        })
        .collect();
    assert_eq!(ours.len(), ledger.len(), "mutation ids are distinct");
    let record = applied_on_server(&server_db, &me);
    let recorded: BTreeSet<&String> = record.iter().map(|(id, _)| id).collect();
    assert_eq!(recorded.len(), record.len());
    let never: Vec<&String> = ours.keys().filter(|id| !recorded.contains(id)).collect();
    let unknown: Vec<&(String, String)> = record
        .iter()
        .filter(|(id, _)| !ours.contains_key(id))
        .collect();
    assert!(
        never.is_empty() && unknown.is_empty(),
        "{point}: the server's record differs; never applied {never:?}, applied but not made here (sent under another id?) {unknown:?}"
    );
    for (id, entity) in &record {
        assert_eq!(
            &ours[id].entity_id, entity,
            "{point}: {id} applied to another entity"
        );
    }
    let mut creates: BTreeMap<&str, usize> = BTreeMap::new();
    for m in ours.values().filter(|m| m.operation == "create") {
        *creates.entry(&m.entity_id).or_default() += 1;
    }
    let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{point}: entities created twice: {twice:?}"
    );

    // (4) The cursor is the server's latest.
    assert_eq!(
        client.cursor(),
        server_cursor,
        "{point}: the cursor is not the server's latest"
    );

    let operations = |op: &str| ours.values().filter(|m| m.operation == op).count();
    println!(
        "crash point {point}: {} mutations made ({} creates, {} updates, {} deletes), each applied once; {} rows checked ({} columns each); recovery {recovery}",
        ledger.len(),
        operations("create"),
        operations("update"),
        operations("delete"),
        local.len(),
        COLUMNS.len(),
    );
}

#[test]
fn killed_after_push_identities_were_given() {
    crash_at(
        "push-identities-given",
        "WAL",
        Workload::Push { prune: false },
    );
}

#[test]
fn killed_between_push_batches() {
    crash_at(
        "push-between-batches",
        "WAL",
        Workload::Push { prune: false },
    );
}

#[test]
fn killed_while_recording_a_push_answer() {
    crash_at(
        "push-recording-answer",
        "DELETE",
        Workload::Push { prune: false },
    );
}

#[test]
fn killed_inside_a_pull_chunk() {
    crash_at(
        "pull-inside-chunk",
        "DELETE",
        Workload::Pull {
            seed: 40,
            page_size: Some(10),
        },
    );
}

#[test]
fn killed_between_chunks_of_a_pull_page() {
    crash_at(
        "pull-between-chunks",
        "WAL",
        Workload::Pull {
            seed: 1200,
            page_size: None,
        },
    );
}

#[test]
fn killed_while_pruning() {
    crash_at("pruning", "DELETE", Workload::Push { prune: true });
}

#[test]
fn killed_while_retrying_the_quarantine() {
    crash_at("quarantine-retry", "WAL", Workload::Quarantine);
}
