//! A client database tracked against a `tether-server` that keeps its own database file, so tests
//! check outcomes against the server's table and its record of applied mutations, not against
//! what the client reports. Writes go through a second connection that never loaded tether.
use std::path::PathBuf;

use rusqlite::Connection;
use serde_json::Value;

use crate::{column, json, open_loaded, open_plain, set_config, temp_db, Server};

/// The server's `Task`: every field optional.
pub const TASK_MODEL: &str = r#"{"name": "Task", "fields": {"title": "nullable|string", "slug": "nullable|string", "remark": "nullable|string"}}"#;
pub const ON_SYNC: &str = r#"{"keys": "on_sync"}"#;

pub struct ServerBacked {
    _server: Server,
    pub server_db: PathBuf,
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    /// Loaded tether: syncs.
    pub conn: Connection,
    /// Never loaded tether: the application's writes.
    pub plain: Connection,
}

impl ServerBacked {
    /// `schema` (SQL) with `tables` tracked with `options` (a JSON text).
    pub fn new(schema: &str, tables: &[&str], options: &str) -> ServerBacked {
        let (dir, path) = temp_db();
        let server_db = dir.path().join("server.db");
        let server = Server::start(&["--db", server_db.to_str().unwrap(), "--model", TASK_MODEL]);
        let conn = open_loaded(&path);
        conn.execute_batch(&format!("PRAGMA journal_mode = WAL; {schema}"))
            .unwrap();
        for table in tables {
            json(
                &conn,
                &format!("SELECT tether_track('{table}', '{options}')"),
            );
        }
        set_config(&conn, "server_url", server.url.as_str());
        let plain = open_plain(&path);
        ServerBacked {
            _server: server,
            server_db,
            _dir: dir,
            path,
            conn,
            plain,
        }
    }
}

impl ServerBacked {
    pub fn sync(&self) -> Value {
        self.sync_failing(0)
    }

    /// A sync whose result counts `failed` local failures (rows whose keys could not be given).
    pub fn sync_failing(&self, failed: usize) -> Value {
        let result = json(&self.conn, "SELECT tether_sync()");
        assert_eq!(result["failed"], failed, "{result}");
        result
    }

    pub fn write(&self, sql: &str) {
        self.plain
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// `tether_id|title` of every local row, by id.
    pub fn local(&self) -> Vec<String> {
        column(
            &self.plain,
            "SELECT coalesce(tether_id, 'NULL') || '|' || coalesce(title, '') FROM tasks ORDER BY id",
        )
    }

    /// `tether_id|title` of every live row the server holds, by sync key.
    pub fn on_server(&self) -> Vec<String> {
        let conn = Connection::open(&self.server_db).unwrap();
        column(
            &conn,
            "SELECT tether_id || '|' || coalesce(title, '') FROM tasks WHERE deleted_us IS NULL ORDER BY tether_id",
        )
    }

    /// How many mutations the server applied to the entity `key`.
    pub fn applied_to(&self, key: &str) -> i64 {
        let conn = Connection::open(&self.server_db).unwrap();
        conn.query_row(
            "SELECT count(*) FROM tether_applied_mutations WHERE entity_id = ?1",
            [key],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Every entity the server ever got a mutation of.
    pub fn entities_on_server(&self) -> Vec<String> {
        let conn = Connection::open(&self.server_db).unwrap();
        column(
            &conn,
            "SELECT DISTINCT entity_id FROM tether_applied_mutations ORDER BY entity_id",
        )
    }

    /// Local rows and server rows are the same set (by key and title), and the server never
    /// heard of an entity no local row holds (nothing created twice, nothing left behind).
    pub fn assert_converged(&self) {
        let mut local = self.local();
        local.sort();
        assert!(
            local.iter().all(|r| !r.starts_with("NULL|")),
            "every row has its key after a sync: {local:?}"
        );
        assert_eq!(
            self.on_server(),
            local,
            "the server holds exactly the local rows"
        );
        let keys: Vec<String> = local
            .iter()
            .map(|r| r.split('|').next().unwrap().to_string())
            .collect();
        for entity in self.entities_on_server() {
            assert!(
                keys.contains(&entity) || self.deleted_on_server(&entity),
                "the server got entity {entity}, which no local row is and which was not deleted"
            );
        }
    }

    pub fn deleted_on_server(&self, key: &str) -> bool {
        let conn = Connection::open(&self.server_db).unwrap();
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE tether_id = ?1 AND deleted_us IS NOT NULL)
                 OR EXISTS (SELECT 1 FROM tether_tombstones WHERE tether_id = ?1)",
            [key],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// The body `tether_push_request()` builds (after its key pass).
    pub fn push_request(&self) -> Value {
        json(&self.conn, "SELECT tether_push_request()")
    }

    /// What a migration tool does from a model that does not know `tether_id`: `tasks` made anew
    /// from `schema` (its `CREATE TABLE tasks` statement, without the sync key) and the rows
    /// copied, in one transaction.
    pub fn rebuild_without_the_key_column(&self, schema: &str) {
        self.write(&format!(
            "BEGIN;
             {};
             INSERT INTO tasks_new (id, title, slug) SELECT id, title, slug FROM tasks;
             DROP TABLE tasks;
             ALTER TABLE tasks_new RENAME TO tasks;
             COMMIT;",
            schema
                .replace("TABLE tasks", "TABLE tasks_new")
                .trim_end_matches(';')
        ));
    }

    /// How many log rows tether has not indexed yet (captured since its last write).
    pub fn unindexed(&self) -> i64 {
        self.plain
            .query_row(
                "SELECT count(*) FROM tether_mutation_logs WHERE indexed IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// How many `delete`s of the entity `key` the queue holds.
    pub fn deletes_logged(&self, key: &str) -> i64 {
        self.plain
            .query_row(
                "SELECT count(*) FROM tether_mutation_logs WHERE entity_id = ?1 AND operation = 'delete'",
                [key],
                |r| r.get(0),
            )
            .unwrap()
    }

    pub fn statuses(&self) -> Vec<String> {
        column(
            &self.plain,
            "SELECT operation || ' ' || sync_status FROM tether_mutation_logs ORDER BY id",
        )
    }
}
