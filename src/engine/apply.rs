//! Writing server state into a tracked table: only its synced columns, matched by sync key, the
//! local primary key never touched. Callers run this inside `capture::without_capture`.
use rusqlite::types::Value as Sql;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::{Map, Value};

use crate::capture::without_capture;
use crate::error::Result;
use crate::sql::ident;
use crate::tracking::TrackedTable;

/// JSON → SQLite: booleans become 0/1, objects and arrays their JSON text.
pub fn to_sql(value: &Value) -> Sql {
    match value {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

/// Bytes travel as upper-case hex text (what SQLite's `hex()` gives; JSON has no bytes); `None`
/// when `text` is anything else, which stays text.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    let upper_hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
    if text.is_empty() || !text.len().is_multiple_of(2) || !text.bytes().all(upper_hex) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// One synced column's value as it is written locally: hex text back into bytes for columns
/// that hold bytes (declared BLOB, or untyped and holding bytes now); for a JSON column the JSON
/// text of the value (a string `"a"` is the text `"a"`, true is `true`), as capture read it.
/// Ambiguities of the wire form, documented in README: an empty or non-hex string in a BLOB
/// column stays text; JSON null is SQL NULL where the column allows it.
fn column_value(
    conn: &Connection,
    table: &TrackedTable,
    entity: &str,
    column: &str,
    value: &Value,
) -> Result<Sql> {
    if table.json_columns.iter().any(|c| c == column) {
        let not_null = table.not_null_columns.iter().any(|c| c == column);
        return Ok(match value {
            Value::String(_) | Value::Bool(_) => Sql::Text(value.to_string()),
            // Beyond 64-bit integers a REAL would change the number: keep its JSON text.
            Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_some() => {
                Sql::Text(n.to_string())
            }
            // JSON null is SQL NULL, unless the column cannot hold that: then the text `null`.
            Value::Null if not_null => Sql::Text("null".into()),
            other => to_sql(other),
        });
    }
    if let Value::String(text) = value {
        let bytes_here = table.blob_columns.iter().any(|c| c == column)
            || (table.untyped_columns.iter().any(|c| c == column)
                && conn
                    .prepare_cached(&format!(
                        "SELECT typeof({}) = 'blob' FROM main.{} WHERE {} = ?1",
                        ident(column),
                        ident(&table.table),
                        ident(&table.sync_key)
                    ))?
                    .query_row([entity], |r| r.get::<_, bool>(0))
                    .optional()?
                    .unwrap_or(false));
        if bytes_here {
            if let Some(bytes) = from_hex(text) {
                return Ok(Sql::Blob(bytes));
            }
        }
    }
    Ok(to_sql(value))
}

/// Updates the row whose sync key is `entity`, or inserts it. Payload keys that are not synced
/// columns of the table (server ids, timestamps, hidden fields) are ignored. A synced column the
/// server sends an array or object for holds JSON from now on (see
/// [`crate::tracking::learn_json_columns`]). The entity is recorded as one the server has.
pub fn upsert(
    conn: &Connection,
    table: &TrackedTable,
    entity: &str,
    payload: &Map<String, Value>,
) -> Result<()> {
    let columns: Vec<&String> = table
        .synced_columns
        .iter()
        .filter(|c| payload.contains_key(*c))
        .collect();
    let learned: Vec<String> = columns
        .iter()
        .filter(|c| payload[**c].is_array() || payload[**c].is_object())
        .filter(|c| !table.json_columns.contains(c))
        .map(|c| c.to_string())
        .collect();
    if !learned.is_empty() {
        crate::tracking::learn_json_columns(conn, &table.table, &learned)?;
    }
    let values: Vec<Sql> = columns
        .iter()
        .map(|c| column_value(conn, table, entity, c, &payload[*c]))
        .collect::<Result<_>>()?;
    let name = format!("main.{}", ident(&table.table));
    let key = ident(&table.sync_key);
    let updated = if columns.is_empty() {
        conn.prepare_cached(&format!("SELECT count(*) FROM {name} WHERE {key} = ?1"))?
            .query_row([entity], |r| r.get::<_, i64>(0))? as usize
    } else {
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", ident(c), i + 2))
            .collect();
        let mut params = vec![Sql::Text(entity.to_string())];
        params.extend(values.iter().cloned());
        execute(
            conn,
            &format!("UPDATE {name} SET {} WHERE {key} = ?1", sets.join(", ")),
            params_from_iter(params),
        )?
    };
    if updated == 0 {
        let mut names = vec![key];
        names.extend(columns.iter().map(|c| ident(c)));
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let mut params = vec![Sql::Text(entity.to_string())];
        params.extend(values);
        execute(
            conn,
            &format!(
                "INSERT INTO {name} ({}) VALUES ({})",
                names.join(", "),
                marks.join(", ")
            ),
            params_from_iter(params),
        )?;
    }
    remember_known(conn, entity)
}

/// The server has this entity: tracking the table again never queues a `create` for it.
fn remember_known(conn: &Connection, entity: &str) -> Result<()> {
    execute(
        conn,
        "INSERT INTO tether_entity_versions (entity_id, version) VALUES (?1, 0) ON CONFLICT DO NOTHING",
        [entity],
    )?;
    Ok(())
}

/// `Connection::execute` through the statement cache: these run once per snapshot, and
/// preparing a statement on a tracked table compiles its trigger programs every time.
fn execute(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// Removes the row whose sync key is `entity`; nothing to do when it is absent.
pub fn delete(conn: &Connection, table: &TrackedTable, entity: &str) -> Result<()> {
    execute(
        conn,
        &format!(
            "DELETE FROM main.{} WHERE {} = ?1",
            ident(&table.table),
            ident(&table.sync_key)
        ),
        [entity],
    )?;
    remember_known(conn, entity)
}

/// A JSON payload as an object: PHP sends an empty one as `[]`.
pub fn payload_object(value: &Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map.clone()),
        Value::Array(items) if items.is_empty() => Some(Map::new()),
        Value::Null => Some(Map::new()),
        _ => None,
    }
}

/// Applies a snapshot: `delete` removes the row, anything else upserts it.
pub fn snapshot(
    conn: &Connection,
    table: &TrackedTable,
    entity: &str,
    operation: &str,
    payload: &Map<String, Value>,
) -> Result<()> {
    if operation == "delete" {
        delete(conn, table, entity)
    } else {
        upsert(conn, table, entity, payload)
    }
}

/// One row of server state to write: a pulled snapshot, a conflict's server state, or a row
/// coming back from the quarantine.
pub struct ServerRow<'a> {
    pub entity: &'a str,
    pub model: &'a str,
    pub operation: &'a str,
    pub payload: &'a Map<String, Value>,
}

/// What became of a [`ServerRow`].
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Outcome {
    Applied,
    /// The row has unsent local changes: the state waits for their push.
    Deferred,
    /// It cannot be written now (a constraint, a missing parent): kept in the quarantine.
    Quarantined,
    /// No tracked table has this model.
    UnknownModel,
}

/// Writes server rows inside one applying transaction, knowing which rows have unsent local
/// changes (read once per transaction, so a local write between transactions is seen).
pub struct Applier {
    tables: Vec<TrackedTable>,
    unsent: HashSet<String>,
    deferred_waiting: Cell<bool>,
    quarantine_waiting: Cell<bool>,
    retry_limit: u64,
}

impl Applier {
    pub fn new(conn: &Connection, retry_limit: u64) -> Result<Applier> {
        let exists = |table: &str| -> Result<bool> {
            Ok(
                conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                    r.get(0)
                })?,
            )
        };
        Ok(Applier {
            tables: crate::tracking::tracked_tables(conn)?,
            unsent: crate::queue::unsent_entities(conn, retry_limit)?,
            deferred_waiting: Cell::new(exists("tether_deferred_snapshots")?),
            quarantine_waiting: Cell::new(exists("tether_quarantine")?),
            retry_limit,
        })
    }

    pub fn tables(&self) -> &[TrackedTable] {
        &self.tables
    }

    /// Applies `row` unless its entity has unsent local changes (then it is deferred).
    pub fn apply(&self, conn: &Connection, row: &ServerRow, source: &str) -> Result<Outcome> {
        if self.table(row.model).is_none() {
            return Ok(Outcome::UnknownModel);
        }
        if self.unsent.contains(row.entity) {
            defer(conn, row, self.retry_limit)?;
            self.deferred_waiting.set(true);
            self.forget_quarantined(conn, row.entity)?;
            return Ok(Outcome::Deferred);
        }
        if self.deferred_waiting.get() {
            forget_deferred(conn, row.entity)?;
        }
        self.write(conn, row, source)
    }

    /// Writes `row` now, whatever is queued for it (a conflict's server state). A row the
    /// database refuses goes to the quarantine; any other failure (disk full, I/O, read-only,
    /// interrupted, a transaction SQLite ended itself) is returned, and the caller's whole
    /// transaction rolls back.
    pub fn write(&self, conn: &Connection, row: &ServerRow, source: &str) -> Result<Outcome> {
        let Some(table) = self.table(row.model) else {
            return Ok(Outcome::UnknownModel);
        };
        match snapshot(conn, table, row.entity, row.operation, row.payload) {
            Ok(()) => {
                self.forget_quarantined(conn, row.entity)?;
                Ok(Outcome::Applied)
            }
            Err(error) => {
                let error = crate::db::still_in_transaction(conn, error)?;
                if !error.is_row_problem() {
                    return Err(error);
                }
                crate::engine::quarantine::keep(conn, row, source, &error)?;
                self.quarantine_waiting.set(true);
                Ok(Outcome::Quarantined)
            }
        }
    }

    fn table(&self, model: &str) -> Option<&TrackedTable> {
        self.tables.iter().find(|t| t.model == model)
    }

    fn forget_quarantined(&self, conn: &Connection, entity: &str) -> Result<()> {
        if self.quarantine_waiting.get() {
            crate::engine::quarantine::forget(conn, entity)?;
        }
        Ok(())
    }
}

/// Runs `body` in an applying transaction (not captured) with foreign keys checked at COMMIT, so
/// a child that comes before its parent in the same transaction applies. If the commit fails a
/// foreign key, the transaction rolls back and `body` runs again with keys checked per statement:
/// the rows that fail then go to the quarantine, the others apply.
pub fn in_transaction<T>(
    conn: &Connection,
    mut body: impl FnMut(&Connection) -> Result<T>,
) -> Result<T> {
    let deferred = without_capture(conn, |conn| {
        conn.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        body(conn)
    });
    match deferred {
        Err(error) if error.is_foreign_key() => without_capture(conn, body),
        other => other,
    }
}

/// Keeps a snapshot for a row with unsent local changes (the newest one per row wins).
/// Notes whether a waiting mutation of the row may already have reached the server.
fn defer(conn: &Connection, row: &ServerRow, retry_limit: u64) -> Result<()> {
    execute(
        conn,
        &format!(
            "INSERT OR REPLACE INTO tether_deferred_snapshots (entity_id, model, operation, payload, after_send)
             VALUES (?1, ?2, ?3, ?4, EXISTS (
                 SELECT 1 FROM tether_mutation_logs
                  WHERE entity_id = ?1 AND mutation_id IS NOT NULL AND sync_status <> 'synced'
                    AND (sync_status = 'pending' OR ({}))))",
            crate::queue::awaiting_retry(retry_limit)
        ),
        (
            row.entity,
            row.model,
            row.operation,
            Value::Object(row.payload.clone()).to_string(),
        ),
    )?;
    Ok(())
}

pub fn forget_deferred(conn: &Connection, entity: &str) -> Result<()> {
    execute(
        conn,
        "DELETE FROM tether_deferred_snapshots WHERE entity_id = ?1",
        [entity],
    )?;
    Ok(())
}

/// How the server answered a mutation, for snapshots that waited on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Settled {
    /// Applied, or answered `duplicate` (applied before).
    Synced,
    /// Rejected for good: the server never took the change.
    Rejected,
    /// A conflict: the server's current state was written then.
    Conflict,
}

/// Settles deferred snapshots of the entities whose mutations an answer just settled, once none
/// of their mutations is unsent. The last answer decides. Rejected: the server never took the
/// local change, so the deferred server state applies (or goes to the quarantine if it cannot).
/// Conflict: the server state was written then, and is newer. Synced: if the snapshot arrived
/// before the mutation could have reached the server, the server now holds the newer local state
/// (the next pull echoes it) and the snapshot is dropped; if it arrived after (the mutation was
/// applied, its answer lost, and it was resent: a `duplicate`), the snapshot may be a later
/// change from elsewhere that no pull will bring again, so it applies — if it is older, the
/// mutation's own change comes back with the next pull. Runs inside the caller's applying
/// transaction; returns how many were applied.
pub fn settle_deferred(
    conn: &Connection,
    applier: &Applier,
    settled: &[(String, Settled)],
) -> Result<usize> {
    if !applier.deferred_waiting.get() || settled.is_empty() {
        return Ok(0);
    }
    let mut last: HashMap<&str, Settled> = HashMap::new();
    for (entity, outcome) in settled {
        last.insert(entity, *outcome);
    }
    let still_unsent = |entity: &str| -> Result<bool> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM tether_mutation_logs
                  WHERE entity_id = ?1 AND sync_status <> 'synced'
                    AND (sync_status = 'pending' OR ({})))",
                crate::queue::awaiting_retry(applier.retry_limit)
            ))?
            .query_row([entity], |r| r.get(0))?)
    };
    let mut applied = 0;
    for (entity, outcome) in last {
        if still_unsent(entity)? {
            continue;
        }
        let deferred: Option<(String, String, String, bool)> = conn
            .prepare_cached(
                "SELECT model, operation, payload, after_send FROM tether_deferred_snapshots WHERE entity_id = ?1",
            )?
            .query_row([entity], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        let Some((model, operation, payload, after_send)) = deferred else {
            continue;
        };
        forget_deferred(conn, entity)?;
        let applies = match outcome {
            Settled::Rejected => true,
            Settled::Conflict => false,
            Settled::Synced => after_send,
        };
        if !applies {
            continue;
        }
        let payload = serde_json::from_str::<Value>(&payload)
            .ok()
            .and_then(|v| payload_object(&v))
            .unwrap_or_default();
        let row = ServerRow {
            entity,
            model: &model,
            operation: &operation,
            payload: &payload,
        };
        if applier.write(conn, &row, "pull")? == Outcome::Applied {
            applied += 1;
        }
    }
    Ok(applied)
}
