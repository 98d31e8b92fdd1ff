//! The server's embedded store (SQLite): one table per model, the applied-mutation log,
//! tombstones for models without soft deletes, and the microsecond clock.
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::{json, Map, Value};

use crate::models::{Model, Rule};

pub type Result<T> = std::result::Result<T, rusqlite::Error>;

/// How long a statement waits for a lock another connection holds before failing.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An open transaction on the store; rolled back when dropped without [`Transaction::commit`].
pub struct Transaction<'a> {
    store: &'a mut Store,
    open: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        // If COMMIT fails the transaction is still open: dropping `self` rolls it back.
        self.store.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }

    /// Runs `f` inside a savepoint: kept when `f` returns `Ok`, undone when it returns `Err`
    /// (the error is then returned).
    pub fn savepoint<T>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T>,
    ) -> Result<std::result::Result<T, rusqlite::Error>> {
        self.store.conn.execute_batch("SAVEPOINT mutation")?;
        match f(self.store) {
            Ok(value) => {
                self.store.conn.execute_batch("RELEASE mutation")?;
                Ok(Ok(value))
            }
            Err(e) => {
                self.store
                    .conn
                    .execute_batch("ROLLBACK TO mutation; RELEASE mutation")?;
                Ok(Err(e))
            }
        }
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store
    }
}

impl std::ops::DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.store
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open && !self.store.conn.is_autocommit() {
            if let Err(e) = self.store.conn.execute_batch("ROLLBACK") {
                eprintln!("tether-server: could not roll back a transaction: {e}");
            }
        }
    }
}

/// A stored row of a model table.
pub struct Row {
    pub id: i64,
    pub tether_id: String,
    pub owner: Option<String>,
    pub values: Vec<Sql>,
    pub created_us: i64,
    pub updated_us: i64,
    pub deleted_us: Option<i64>,
}

pub struct Store {
    pub conn: Connection,
    pub models: Vec<Model>,
    frozen_us: Option<i64>,
    last_us: i64,
}

impl Store {
    pub fn open(path: &std::path::Path, models: Vec<Model>) -> Result<Store> {
        let conn = Connection::open(path)?;
        // Another process reading or writing the file (a database browser, a backup) makes us
        // wait a little instead of failing the request.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS tether_applied_mutations (
                 mutation_id TEXT PRIMARY KEY, client_id TEXT, model TEXT, entity_id TEXT, applied_us INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS tether_tombstones (
                 model TEXT NOT NULL, tether_id TEXT NOT NULL, owner TEXT, changed_us INTEGER NOT NULL,
                 PRIMARY KEY (model, tether_id));
             CREATE INDEX IF NOT EXISTS tether_tombstones_changed ON tether_tombstones (changed_us);",
        )?;
        for model in &models {
            let mut columns: Vec<String> = model.fields.iter().map(|f| quote(&f.name)).collect();
            if let Some(scope) = &model.scope {
                columns.push(format!("{} TEXT", quote(scope)));
            }
            let table = quote(&model.table);
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     tether_id TEXT NOT NULL UNIQUE,
                     {columns},
                     created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL,
                     deleted_us INTEGER, changed_us INTEGER NOT NULL);
                 CREATE INDEX IF NOT EXISTS {index} ON {table} (changed_us, id);",
                columns = columns.join(", "),
                index = quote(&format!("{}_changed", model.table)),
            ))?;
            // A database made with an earlier config: fields added since become columns (null in
            // the rows already there); fields since removed stay in the table, unused.
            let existing: Vec<String> = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")?
                .query_map([&model.table], |r| r.get(0))?
                .collect::<Result<_>>()?;
            let wanted = model
                .fields
                .iter()
                .map(|f| (f.name.as_str(), ""))
                .chain(model.scope.as_deref().map(|s| (s, " TEXT")));
            for (column, kind) in wanted {
                if !existing.iter().any(|e| e.eq_ignore_ascii_case(column)) {
                    conn.execute_batch(&format!(
                        "ALTER TABLE {table} ADD COLUMN {}{kind}",
                        quote(column)
                    ))?;
                }
            }
        }
        // The clock restarts from the latest apply time on record: cursors already handed out
        // are apply times, so a clock stepped back (or a restart on another machine) must not
        // give new changes an earlier one, or the clients holding those cursors skip them.
        let mut sources: Vec<String> = models
            .iter()
            .map(|m| format!("SELECT max(changed_us) FROM {}", quote(&m.table)))
            .collect();
        sources.push("SELECT max(changed_us) FROM tether_tombstones".into());
        sources.push("SELECT max(applied_us) FROM tether_applied_mutations".into());
        let mut last_us = 0;
        for sql in &sources {
            let latest: Option<i64> = conn.query_row(sql, [], |r| r.get(0))?;
            last_us = last_us.max(latest.unwrap_or(0));
        }
        Ok(Store {
            conn,
            models,
            frozen_us: None,
            last_us,
        })
    }

    /// Opens a transaction (`BEGIN IMMEDIATE`) that ends on every path: committed by
    /// [`Transaction::commit`], rolled back when dropped otherwise (an early return, an error,
    /// a panic).
    pub fn begin(&mut self) -> Result<Transaction<'_>> {
        if !self.conn.is_autocommit() {
            // Never expected; but a transaction left open would fail every later request.
            self.conn.execute_batch("ROLLBACK")?;
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Transaction {
            store: self,
            open: true,
        })
    }

    /// Microseconds since the epoch, always later than any time it gave before (in this process
    /// or, through the database, an earlier one); fixed while a test froze it.
    pub fn now_us(&mut self) -> i64 {
        if let Some(frozen) = self.frozen_us {
            self.last_us = self.last_us.max(frozen);
            return frozen;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        self.last_us = now.max(self.last_us.saturating_add(1));
        self.last_us
    }

    pub fn freeze_clock(&mut self, at_us: Option<i64>) {
        self.frozen_us = at_us;
    }

    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }

    pub fn is_applied(&self, mutation_id: &str) -> Result<bool> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM tether_applied_mutations WHERE mutation_id = ?1)",
            )?
            .query_row([mutation_id], |r| r.get(0))
    }

    pub fn record_applied(
        &mut self,
        mutation_id: &str,
        client: &str,
        model: &str,
        entity: &str,
    ) -> Result<()> {
        let now = self.now_us();
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO tether_applied_mutations (mutation_id, client_id, model, entity_id, applied_us)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute((mutation_id, client, model, entity, now))?;
        Ok(())
    }

    fn select_columns(model: &Model) -> String {
        let mut columns = vec!["id".to_string(), "tether_id".to_string()];
        columns.push(
            model
                .scope
                .as_ref()
                .map_or("NULL".to_string(), |s| quote(s)),
        );
        columns.extend(["created_us", "updated_us", "deleted_us"].map(String::from));
        columns.extend(model.fields.iter().map(|f| quote(&f.name)));
        columns.join(", ")
    }

    fn read_row(model: &Model, r: &rusqlite::Row<'_>) -> Result<Row> {
        let mut values = Vec::with_capacity(model.fields.len());
        for i in 0..model.fields.len() {
            values.push(r.get::<_, Sql>(6 + i)?);
        }
        Ok(Row {
            id: r.get(0)?,
            tether_id: r.get(1)?,
            owner: r.get(2)?,
            created_us: r.get(3)?,
            updated_us: r.get(4)?,
            deleted_us: r.get(5)?,
            values,
        })
    }

    pub fn find(&self, model: &Model, tether_id: &str) -> Result<Option<Row>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE tether_id = ?1",
            Self::select_columns(model),
            quote(&model.table)
        );
        self.conn
            .prepare_cached(&sql)?
            .query_row([tether_id], |r| Self::read_row(model, r))
            .optional()
    }

    /// Inserts or updates the row with `tether_id`, taking only writable fields from `payload`.
    /// A soft-deleted row is restored; a tombstone is dropped. `at_us` is when the client made
    /// the change: it becomes `updated_at` (never moving it back), which later mutations are
    /// compared with. The pull order uses the server's own apply time (`changed_us`) instead, so
    /// a change made offline long ago still reaches clients whose cursors are past its time.
    pub fn upsert(
        &mut self,
        model: &Model,
        tether_id: &str,
        payload: &Map<String, Value>,
        owner: Option<&str>,
        at_us: i64,
    ) -> Result<()> {
        let now = self.now_us();
        let given: Vec<&crate::models::Field> = model
            .fields
            .iter()
            .filter(|f| payload.contains_key(&f.name))
            .collect();
        let values: Vec<Sql> = given.iter().map(|f| to_sql(&payload[&f.name], f)).collect();
        let table = quote(&model.table);
        if let Some(existing) = self.find(model, tether_id)? {
            let sets: String = given
                .iter()
                .enumerate()
                .map(|(i, f)| format!("{} = ?{}, ", quote(&f.name), i + 4))
                .collect();
            let sql = format!(
                "UPDATE {table} SET {sets} updated_us = max(updated_us, ?3), deleted_us = NULL, changed_us = ?1 WHERE id = ?2"
            );
            let mut params = vec![
                Sql::Integer(now),
                Sql::Integer(existing.id),
                Sql::Integer(at_us),
            ];
            params.extend(values);
            self.conn
                .prepare_cached(&sql)?
                .execute(params_from_iter(params))?;
        } else {
            let mut columns: Vec<String> = given.iter().map(|f| quote(&f.name)).collect();
            let mut params = values;
            if let (Some(scope), Some(owner)) = (&model.scope, owner) {
                columns.push(quote(scope));
                params.push(Sql::Text(owner.to_string()));
            }
            columns
                .extend(["tether_id", "created_us", "updated_us", "changed_us"].map(String::from));
            params.extend([
                Sql::Text(tether_id.to_string()),
                Sql::Integer(at_us),
                Sql::Integer(at_us),
                Sql::Integer(now),
            ]);
            let marks: Vec<String> = (1..=params.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                columns.join(", "),
                marks.join(", ")
            );
            self.conn
                .prepare_cached(&sql)?
                .execute(params_from_iter(params))?;
        }
        self.conn
            .prepare_cached("DELETE FROM tether_tombstones WHERE model = ?1 AND tether_id = ?2")?
            .execute((&model.name, tether_id))?;
        Ok(())
    }

    /// Deletes the row (soft: `deleted_at` = `at_us`, when the client deleted it).
    pub fn delete(&mut self, model: &Model, row: &Row, at_us: i64) -> Result<()> {
        let now = self.now_us();
        let table = quote(&model.table);
        if model.soft_deletes {
            self.conn.execute(
                &format!("UPDATE {table} SET deleted_us = ?3, changed_us = ?1 WHERE id = ?2"),
                (now, row.id, at_us),
            )?;
        } else {
            self.conn
                .execute(&format!("DELETE FROM {table} WHERE id = ?1"), [row.id])?;
            self.conn.execute(
                "INSERT OR REPLACE INTO tether_tombstones (model, tether_id, owner, changed_us) VALUES (?1, ?2, ?3, ?4)",
                (&model.name, &row.tether_id, &row.owner, now),
            )?;
        }
        Ok(())
    }

    /// The row as the Laravel server serialises a model (`toArray()`): every column of its table
    /// — `id`, the sync key, the fields, the scope column, `created_at`, `updated_at`, and
    /// `deleted_at` only with soft deletes — with the casts the rules imply (booleans, arrays).
    pub fn payload(model: &Model, row: &Row) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(row.id));
        out.insert("tether_id".into(), json!(row.tether_id));
        for (field, value) in model.fields.iter().zip(&row.values) {
            out.insert(field.name.clone(), to_json(value, field));
        }
        if let Some(scope) = &model.scope {
            out.insert(scope.clone(), json!(row.owner));
        }
        out.insert("created_at".into(), json!(model_time(row.created_us)));
        out.insert("updated_at".into(), json!(model_time(row.updated_us)));
        // Only a model with soft deletes has the column (and so the attribute).
        if model.soft_deletes {
            out.insert("deleted_at".into(), json!(row.deleted_us.map(model_time)));
        }
        Value::Object(out)
    }

    /// Change times after `after` of every source (model rows and tombstones) a client can see,
    /// at most `limit` from each, smallest first.
    pub fn change_times(&self, client: &str, after: i64, limit: i64) -> Result<Vec<i64>> {
        let mut times = Vec::new();
        for model in &self.models {
            let (filter, params) = scope_filter(model, client, 2);
            let sql = format!(
                "SELECT changed_us FROM {} WHERE changed_us > ?1 {filter} ORDER BY changed_us LIMIT {limit}",
                quote(&model.table)
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut all = vec![Sql::Integer(after)];
            all.extend(params);
            times.extend(
                stmt.query_map(params_from_iter(all), |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>>>()?,
            );
            let mut tombs = self.conn.prepare_cached(&format!(
                "SELECT changed_us FROM tether_tombstones WHERE model = ?1 AND changed_us > ?2 {} ORDER BY changed_us LIMIT {limit}",
                if model.scope.is_some() { "AND owner IS ?3" } else { "" }
            ))?;
            let mut params = vec![Sql::Text(model.name.clone()), Sql::Integer(after)];
            if model.scope.is_some() {
                params.push(Sql::Text(client.to_string()));
            }
            times.extend(
                tombs
                    .query_map(params_from_iter(params), |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        times.sort_unstable();
        Ok(times)
    }

    /// Snapshots with `after < change time <= through`, ordered by change time, then model
    /// registration order, then row id.
    pub fn snapshots(&self, client: &str, after: i64, through: i64) -> Result<Vec<(i64, Value)>> {
        let mut out: Vec<(i64, usize, i64, Value)> = Vec::new();
        for (index, model) in self.models.iter().enumerate() {
            let (filter, params) = scope_filter(model, client, 3);
            let sql = format!(
                "SELECT {}, changed_us FROM {} WHERE changed_us > ?1 AND changed_us <= ?2 {filter} ORDER BY changed_us, id",
                Self::select_columns(model),
                quote(&model.table)
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut all = vec![Sql::Integer(after), Sql::Integer(through)];
            all.extend(params);
            let column = 6 + model.fields.len();
            let rows = stmt.query_map(params_from_iter(all), |r| {
                Ok((Self::read_row(model, r)?, r.get::<_, i64>(column)?))
            })?;
            for row in rows {
                let (row, changed) = row?;
                let snapshot = if row.deleted_us.is_some() {
                    json!({"entity_id": row.tether_id, "model": model.name, "operation": "delete", "payload": []})
                } else {
                    json!({"entity_id": row.tether_id, "model": model.name, "operation": "upsert", "payload": Self::payload(model, &row)})
                };
                out.push((changed, index, row.id, snapshot));
            }
            let mut tombs = self.conn.prepare_cached(&format!(
                "SELECT rowid, tether_id, changed_us FROM tether_tombstones
                  WHERE model = ?1 AND changed_us > ?2 AND changed_us <= ?3 {}",
                if model.scope.is_some() {
                    "AND owner IS ?4"
                } else {
                    ""
                }
            ))?;
            let mut params = vec![
                Sql::Text(model.name.clone()),
                Sql::Integer(after),
                Sql::Integer(through),
            ];
            if model.scope.is_some() {
                params.push(Sql::Text(client.to_string()));
            }
            for tomb in tombs.query_map(params_from_iter(params), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })? {
                let (rowid, entity, changed) = tomb?;
                // Tombstones sort after live rows of the same time: ids there are table ids.
                out.push((changed, index, i64::MAX / 2 + rowid, json!({"entity_id": entity, "model": model.name, "operation": "delete", "payload": []})));
            }
        }
        out.sort_by_key(|a| (a.0, a.1, a.2));
        Ok(out
            .into_iter()
            .map(|(changed, _, _, snapshot)| (changed, snapshot))
            .collect())
    }
}

/// `AND owner IS ?N` for scoped models, with the client id as parameter N.
fn scope_filter(model: &Model, client: &str, n: usize) -> (String, Vec<Sql>) {
    match &model.scope {
        Some(scope) => (
            format!("AND {} IS ?{n}", quote(scope)),
            vec![Sql::Text(client.to_string())],
        ),
        None => (String::new(), Vec::new()),
    }
}

/// Laravel's JSON form of a model timestamp: `2026-11-25T12:00:05.456000Z`.
pub fn model_time(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us).map_or_else(String::new, |t| {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    })
}

/// ISO 8601 with offset, as in `server_updated_at`: `2026-11-25T12:00:00+00:00`.
pub fn iso_time(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us).map_or_else(String::new, |t| {
        t.to_rfc3339_opts(SecondsFormat::Secs, false)
    })
}

fn to_sql(value: &Value, field: &crate::models::Field) -> Sql {
    match value {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(Sql::Integer)
            .unwrap_or_else(|| Sql::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) if field.has(&Rule::Boolean) => {
            Sql::Integer(i64::from(s == "1" || s == "true"))
        }
        Value::String(s) if field.has(&Rule::Integer) => s
            .trim()
            .parse()
            .map(Sql::Integer)
            .unwrap_or(Sql::Text(s.clone())),
        Value::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

fn to_json(value: &Sql, field: &crate::models::Field) -> Value {
    match value {
        Sql::Null => Value::Null,
        Sql::Integer(i) if field.has(&Rule::Boolean) => json!(*i != 0),
        Sql::Integer(i) => json!(i),
        Sql::Real(f) => json!(f),
        Sql::Text(s) if field.has(&Rule::Array) => {
            serde_json::from_str(s).unwrap_or_else(|_| json!(s))
        }
        Sql::Text(s) => json!(s),
        Sql::Blob(b) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelConfig;

    /// What a push reports as ignored is decided by `Model::has_attribute`: it must name every
    /// attribute a pull returns, with and without soft deletes and a scope.
    #[test]
    fn every_attribute_of_a_payload_is_one_the_model_has() {
        for config in [
            json!({"name": "Task", "fields": {"title": "", "done": "boolean"}}),
            json!({"name": "Task", "fields": {"title": ""}, "soft_deletes": true, "scope": "owner"}),
        ] {
            let config: ModelConfig = serde_json::from_value(config).unwrap();
            let model = Model::from_config(config).unwrap();
            let row = Row {
                id: 1,
                tether_id: "x".into(),
                owner: Some("c".into()),
                values: model.fields.iter().map(|_| Sql::Null).collect(),
                created_us: 0,
                updated_us: 0,
                deleted_us: None,
            };
            let payload = Store::payload(&model, &row);
            let payload = payload.as_object().unwrap();
            assert!(
                payload.keys().all(|k| model.has_attribute(k)),
                "{payload:?}"
            );
            assert!(model.ignored_fields(payload).is_empty());
        }
    }
}
