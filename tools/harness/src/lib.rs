//! Shared test helpers: build the loadable extension once, open databases with or without it.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rusqlite::Connection;
use serde_json::Value;

pub mod server_backed;

/// The repository root (holds the extension's Cargo.toml).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Path of `libtether.so`, built once per test process (or taken from `TETHER_EXTENSION`).
pub fn extension_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(path) = std::env::var("TETHER_EXTENSION") {
            return PathBuf::from(path);
        }
        let root = repo_root();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .status()
            .expect("run cargo build for the extension");
        assert!(status.success(), "building libtether failed");
        let lib = root.join("target/debug").join(format!(
            "{}tether{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        assert!(lib.exists(), "{} missing after build", lib.display());
        lib
    })
}

/// A connection that loaded the built extension, as an application would.
pub fn open_loaded(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open database");
    load(&conn).expect("load libtether");
    conn
}

pub fn load(conn: &Connection) -> rusqlite::Result<()> {
    unsafe {
        let _guard = rusqlite::LoadExtensionGuard::new(conn)?;
        conn.load_extension(extension_path(), None::<&str>)
    }
}

/// A connection that never loaded the extension (another process, an ORM pool, the shell).
pub fn open_plain(path: &Path) -> Connection {
    Connection::open(path).expect("open database")
}

/// A loaded database with foreign keys on: `projects (id, name)` and `tasks (id, title, project)`
/// whose `project` refers to a project's sync key, both tracked (the parent's key column and a
/// whole unique index on it exist before the child refers to it).
pub fn family() -> (tempfile::TempDir, Connection) {
    let (dir, _path, conn) =
        family_with("title TEXT, project TEXT REFERENCES projects (tether_id)");
    (dir, conn)
}

/// [`family`] with the columns of `tasks` after its `id` given (one of them referring to
/// `projects (tether_id)`), and the database's path.
pub fn family_with(task_columns: &str) -> (tempfile::TempDir, PathBuf, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
         SELECT tether_track('projects');
         CREATE UNIQUE INDEX projects_key ON projects (tether_id);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, {task_columns});
         SELECT tether_track('tasks');"
    ))
    .unwrap();
    (dir, path, conn)
}

/// A fresh temporary directory with a database path inside.
pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.db");
    (dir, path)
}

/// Runs a query returning one JSON text value and parses it.
pub fn json(conn: &Connection, sql: &str) -> Value {
    let text: String = conn
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{sql} returned non-JSON {text:?}: {e}"))
}

/// The message of the error a statement fails with.
pub fn error_of(conn: &Connection, sql: &str) -> String {
    match conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0)) {
        Ok(v) => panic!("{sql} succeeded with {v:?}, expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A row of `tether_mutation_logs`.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub id: i64,
    /// Given when the mutation is first prepared for sending.
    pub mutation_id: Option<String>,
    pub entity_id: String,
    pub model: String,
    pub operation: String,
    pub payload: Value,
    pub version: Option<i64>,
    pub timestamp: i64,
    pub sync_status: String,
}

pub fn mutations(conn: &Connection) -> Vec<Mutation> {
    let mut stmt = conn
        .prepare(
            "SELECT id, mutation_id, entity_id, model, operation, payload, version, timestamp, sync_status
               FROM tether_mutation_logs ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Mutation {
            id: r.get(0)?,
            mutation_id: r.get(1)?,
            entity_id: r.get(2)?,
            model: r.get(3)?,
            operation: r.get(4)?,
            payload: serde_json::from_str(&r.get::<_, String>(5)?).unwrap(),
            version: r.get(6)?,
            timestamp: r.get(7)?,
            sync_status: r.get(8)?,
        })
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn is_ulid(s: &str) -> bool {
    tether::identity::is_ulid(s)
}

/// Gives pending mutations their ids and versions, as preparing a push does (through the
/// statically linked engine, on its own connection).
pub fn give_identities(path: &Path) -> usize {
    let engine = Connection::open(path).expect("open database");
    tether::register(&engine).expect("register tether");
    tether::queue::assign_identities(&engine, usize::MAX >> 1, i64::MAX).expect("assign identities")
}

pub use tether::identity::ulid_millis;

/// Starts a server binary that prints its URL in its first stdout line (tether-server does);
/// returns the child and the URL.
pub fn start_server(binary: &Path, args: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(binary)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the first line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    (child, url)
}

/// Path of the `tether-server` binary of this workspace, built once per test process.
pub fn server_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let tools = repo_root().join("tools");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "tether-server", "--manifest-path"])
            .arg(tools.join("Cargo.toml"))
            .status()
            .expect("run cargo build for tether-server");
        assert!(status.success(), "building tether-server failed");
        tools.join("target/debug/tether-server")
    })
}

/// A running tether-server on 127.0.0.1 with test controls; killed when dropped.
pub struct Server {
    child: std::process::Child,
    pub url: String,
    /// The `--token` it was started with, sent on its own requests.
    token: Option<String>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let mut all = vec!["--listen", "127.0.0.1:0", "--test-controls", "--quiet"];
        all.extend_from_slice(args);
        let (child, url) = start_server(server_binary(), &all);
        let token = args
            .iter()
            .position(|a| *a == "--token")
            .and_then(|i| args.get(i + 1));
        Server {
            child,
            url,
            token: token.map(|t| t.to_string()),
        }
    }

    /// POSTs JSON to a test-control or protocol endpoint and returns the answer.
    pub fn post(&self, path: &str, body: &Value) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent.post(&format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let text = request
            .send(&body.to_string())
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Everything the server holds for `client`, keyed by sync key (upserts only).
    pub fn rows(&self, client: &str) -> std::collections::BTreeMap<String, Value> {
        let mut rows = std::collections::BTreeMap::new();
        let mut cursor = Value::Null;
        loop {
            let page = self.post(
                "/tether/pull",
                &serde_json::json!({"client_id": client, "last_sync_cursor": cursor}),
            );
            for s in page["snapshots"].as_array().unwrap() {
                let key = s["entity_id"].as_str().unwrap().to_string();
                if s["operation"] == "delete" {
                    rows.remove(&key);
                } else {
                    rows.insert(key, s["payload"].clone());
                }
            }
            cursor = page["new_sync_cursor"].clone();
            if page["has_more"] != true {
                return rows;
            }
        }
    }
}

impl Server {
    /// The values of `field` in every row the server holds for the client `conn` syncs as.
    pub fn field_of_rows(&self, conn: &Connection, field: &str) -> Vec<Value> {
        let client: String = conn
            .query_row("SELECT tether_config('client_id')", [], |r| r.get(0))
            .unwrap();
        self.rows(&client)
            .values()
            .map(|row| row[field].clone())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets a tether setting on `conn` (stored in the database).
pub fn set_config(conn: &Connection, key: &str, value: impl rusqlite::ToSql) {
    conn.query_row(
        "SELECT tether_config(?1, ?2)",
        rusqlite::params![key, value],
        |_| Ok(()),
    )
    .unwrap_or_else(|e| panic!("tether_config({key}): {e}"));
}

/// xorshift64*: small and deterministic, for randomized tests that print their seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A client database (WAL) with a tracked `tasks (id, title)` table pointed at `server`.
pub fn synced_client(server: &Server) -> (tempfile::TempDir, PathBuf, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); SELECT tether_track('tasks');",
    )
    .unwrap();
    set_config(&conn, "server_url", server.url.as_str());
    (dir, path, conn)
}

/// Another client puts `count` tasks (`row 1`, `row 2`, …) on `server`, in one sync.
pub fn seed_tasks(server: &Server, count: usize) {
    let (_dir, _path, other) = synced_client(server);
    other
        .execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO tasks (title) SELECT 'row ' || i FROM n",
            [count as i64],
        )
        .unwrap();
    let result = json(&other, "SELECT tether_sync()");
    assert_eq!(result["pushed"], count, "{result}");
}

/// The first column of every row `sql` returns.
pub fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// A database with `schema`, tracked by `SELECT tether_track({track})` on a loaded connection,
/// and a plain connection for the application's writes: `(dir, path, loaded, plain)`.
pub fn tracked_db(
    schema: &str,
    track: &str,
) -> (tempfile::TempDir, PathBuf, Connection, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(schema).unwrap();
    json(&conn, &format!("SELECT tether_track({track})"));
    let plain = open_plain(&path);
    (dir, path, conn, plain)
}

/// The sync key of the row `id` of `table`.
pub fn key_of(conn: &Connection, table: &str, id: i64) -> String {
    conn.query_row(
        &format!("SELECT tether_id FROM {table} WHERE id = ?1"),
        [id],
        |r| r.get(0),
    )
    .unwrap_or_else(|e| panic!("key of {table} row {id}: {e}"))
}

/// (operation, entity) of every logged mutation after log id `after`.
pub fn ops_after(conn: &Connection, after: i64) -> Vec<(String, String)> {
    mutations(conn)
        .into_iter()
        .filter(|m| m.id > after)
        .map(|m| (m.operation, m.entity_id))
        .collect()
}

/// `(operation, entity)` as [`ops_after`] lists them.
pub fn op(operation: &str, entity: &str) -> (String, String) {
    (operation.to_string(), entity.to_string())
}

/// The highest log id so far (0 when empty).
pub fn last_log_id(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT coalesce(max(id), 0) FROM tether_mutation_logs",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Applies one pull page of `snapshots` (`[entity, model, operation, payload]`) on `conn`
/// through the sans-IO `tether_pull_response`, as a host with its own HTTP would.
pub fn apply_snapshots(conn: &Connection, snapshots: &[(&str, &str, &str, Value)]) -> Value {
    let snapshots: Vec<Value> = snapshots
        .iter()
        .map(|(entity, model, operation, payload)| {
            serde_json::json!({"entity_id": entity, "model": model, "operation": operation, "payload": payload})
        })
        .collect();
    let page = serde_json::json!({"snapshots": snapshots, "new_sync_cursor": 1, "has_more": false});
    conn.query_row("SELECT tether_pull_response(?1)", [page.to_string()], |r| {
        r.get::<_, String>(0)
    })
    .map(|t| serde_json::from_str(&t).unwrap())
    .unwrap_or_else(|e| panic!("pull: {e}"))
}

/// Runs `sql` (on `plain`), which writes row `id` of `table`, and checks that row is a new
/// entity: a fresh key, never `gone`, captured as exactly one `create`. Returns the key.
pub fn assert_writes_a_new_entity(
    conn: &Connection,
    plain: &Connection,
    sql: &str,
    table: &str,
    id: i64,
    gone: &str,
) -> String {
    let before = last_log_id(conn);
    plain
        .execute_batch(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let fresh = key_of(plain, table, id);
    assert_ne!(
        fresh, gone,
        "the new row took the key of an entity that is gone"
    );
    assert_eq!(ops_after(conn, before), [op("create", &fresh)]);
    fresh
}

/// The sans-IO push request body, or `None` when the push in progress is done.
pub fn push_request(conn: &Connection) -> Option<Value> {
    conn.query_row("SELECT tether_push_request()", [], |r| {
        r.get::<_, Option<String>>(0)
    })
    .unwrap()
    .map(|body| serde_json::from_str(&body).unwrap())
}

/// Applies a push answer through `tether_push_response`; panics on an error.
pub fn push_response(conn: &Connection, answer: &Value) -> Value {
    conn.query_row(
        "SELECT tether_push_response(?1)",
        [answer.to_string()],
        |r| r.get::<_, String>(0),
    )
    .map(|t| serde_json::from_str(&t).unwrap())
    .unwrap_or_else(|e| panic!("push response: {e}"))
}

/// Applies one pull page through `tether_pull_response`.
pub fn pull_response(conn: &Connection, page: &Value) -> rusqlite::Result<Value> {
    conn.query_row("SELECT tether_pull_response(?1)", [page.to_string()], |r| {
        r.get::<_, String>(0)
    })
    .map(|t| serde_json::from_str(&t).unwrap())
}

/// The sans-IO pull request body.
pub fn pull_request(conn: &Connection) -> Value {
    json(conn, "SELECT tether_pull_request()")
}

/// Ends the sans-IO push in progress (it runs until a request comes back empty).
pub fn finish_push(conn: &Connection) {
    while push_request(conn).is_some() {}
}

/// A fresh ULID from the extension.
pub fn ulid(conn: &Connection) -> String {
    conn.query_row("SELECT tether_ulid()", [], |r| r.get(0))
        .unwrap()
}

/// The stored pull cursor, as `tether_status()` shows it.
pub fn cursor(conn: &Connection) -> Value {
    json(conn, "SELECT tether_status()")["last_sync_cursor"].clone()
}

/// How many server rows wait in the quarantine.
pub fn quarantined(conn: &Connection) -> i64 {
    json(conn, "SELECT tether_status()")["quarantine"]["count"]
        .as_i64()
        .unwrap()
}

/// The mutation ids of a push request body, in order.
pub fn mutation_ids(body: &Value) -> Vec<String> {
    body["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mutation_id"].as_str().unwrap().to_string())
        .collect()
}

/// Rows of `tether_sync_log` as JSON, oldest first (`finished` is 1 or 0).
pub fn sync_log(path: &Path) -> Vec<Value> {
    let conn = open_plain(path);
    let rows = json(
        &conn,
        "SELECT json_group_array(json_object('id', id, 'kind', kind, 'trigger', trigger,
                'finished', finished_at IS NOT NULL, 'result', json(result), 'error', error))
           FROM (SELECT * FROM tether_sync_log ORDER BY id)",
    );
    rows.as_array().unwrap().clone()
}

/// Waits until `done` holds, at most `limit`; whether it did.
pub fn wait_for(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// What an app whose policy is "the server wins" does after a sync: discards, table by table,
/// every change that needs attention (`tether_attention`). Returns how many rows it discarded.
pub fn discard_everything(conn: &Connection) -> u64 {
    let tables: Vec<String> = column(
        conn,
        "SELECT DISTINCT table_name FROM tether_attention
          WHERE kind IN ('failed', 'conflict') AND table_name IS NOT NULL",
    );
    tables
        .iter()
        .map(|table| {
            let result = conn
                .query_row("SELECT tether_discard(?1)", [table], |r| {
                    r.get::<_, String>(0)
                })
                .unwrap_or_else(|e| panic!("tether_discard({table:?}): {e}"));
            let result: Value = serde_json::from_str(&result).unwrap();
            result["discarded"].as_u64().unwrap_or(0)
        })
        .sum()
}

/// A client database (WAL) with `schema`, the tables `track` tracked, pointed at `server`.
pub fn tracked_client(
    server: &Server,
    schema: &str,
    track: &[&str],
) -> (tempfile::TempDir, PathBuf, Connection) {
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    conn.execute_batch(schema).unwrap();
    for table in track {
        json(&conn, &format!("SELECT tether_track('{table}')"));
    }
    set_config(&conn, "server_url", server.url.as_str());
    (dir, path, conn)
}

/// Every row of the view `tether_attention`, as JSON objects keyed by its column names.
pub fn attention(conn: &Connection) -> Vec<Value> {
    column::<String>(
        conn,
        "SELECT json_object('kind', kind, 'table_name', table_name, 'model', model,
                            'sync_key', sync_key, 'local_pk', json(local_pk),
                            'operation', operation, 'reason', reason, 'message', message,
                            'mutation_id', mutation_id, 'retry_count', retry_count, 'since', since)
           FROM tether_attention",
    )
    .into_iter()
    .map(|row| serde_json::from_str(&row).unwrap())
    .collect()
}

/// (failed, conflicts, diverged) as `tether_status()` counts them.
pub fn attention_counts(conn: &Connection) -> (i64, i64, i64) {
    let status = json(conn, "SELECT tether_status()");
    (
        status["failed"].as_i64().unwrap(),
        status["conflicts"].as_i64().unwrap(),
        status["diverged"].as_i64().unwrap(),
    )
}

/// Calls SQLite makes to the progress handler, one per `VM_STEP` VM instructions.
const VM_STEP: std::os::raw::c_int = 10;

extern "C" fn count_vm_steps(counter: *mut std::os::raw::c_void) -> std::os::raw::c_int {
    // SAFETY: the pointer is the `u64` that `vm_work` keeps alive around the call.
    unsafe { *(counter as *mut u64) += 1 };
    0
}

/// Work done by `sql` on `conn` (bound to `param` if given), and its result: SQLite
/// virtual-machine instructions in units of `VM_STEP`, counted by a progress handler, which sees
/// every statement on the connection, tether's own included. The count depends on the queries,
/// not on the machine's speed, so tests can compare it.
pub fn vm_work(conn: &rusqlite::Connection, sql: &str, param: Option<&str>) -> (u64, String) {
    let mut counter: u64 = 0;
    // SAFETY: the handle is valid while `conn` lives; the handler is removed before `counter`
    // goes out of scope.
    unsafe {
        rusqlite::ffi::sqlite3_progress_handler(
            conn.handle(),
            VM_STEP,
            Some(count_vm_steps),
            &mut counter as *mut u64 as *mut std::os::raw::c_void,
        );
    }
    let result = match param {
        Some(p) => conn.query_row(sql, [p], |r| r.get::<_, Option<String>>(0)),
        None => conn.query_row(sql, [], |r| r.get::<_, Option<String>>(0)),
    };
    unsafe {
        rusqlite::ffi::sqlite3_progress_handler(conn.handle(), 0, None, std::ptr::null_mut())
    };
    (counter, result.unwrap().expect("a result"))
}
