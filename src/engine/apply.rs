//! Writing server state into a tracked table: only its synced columns, matched by sync key, the
//! local primary key never touched. Callers run this inside `capture::without_capture`.
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection};
use serde_json::{Map, Value};

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

/// Updates the row whose sync key is `entity`, or inserts it. Payload keys that are not synced
/// columns of the table (server ids, timestamps, hidden fields) are ignored.
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
    let values: Vec<Sql> = columns.iter().map(|c| to_sql(&payload[*c])).collect();
    let name = ident(&table.table);
    let key = ident(&table.sync_key);
    let updated = if columns.is_empty() {
        conn.query_row(
            &format!("SELECT count(*) FROM {name} WHERE {key} = ?1"),
            [entity],
            |r| r.get::<_, i64>(0),
        )? as usize
    } else {
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", ident(c), i + 2))
            .collect();
        let mut params = vec![Sql::Text(entity.to_string())];
        params.extend(values.iter().cloned());
        conn.execute(
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
        conn.execute(
            &format!(
                "INSERT INTO {name} ({}) VALUES ({})",
                names.join(", "),
                marks.join(", ")
            ),
            params_from_iter(params),
        )?;
    }
    Ok(())
}

/// Removes the row whose sync key is `entity`; nothing to do when it is absent.
pub fn delete(conn: &Connection, table: &TrackedTable, entity: &str) -> Result<()> {
    conn.execute(
        &format!(
            "DELETE FROM {} WHERE {} = ?1",
            ident(&table.table),
            ident(&table.sync_key)
        ),
        [entity],
    )?;
    Ok(())
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

/// Keeps a snapshot for a row with unsent local changes (the newest one per row wins).
pub fn defer(
    conn: &Connection,
    entity: &str,
    model: &str,
    operation: &str,
    payload: &Map<String, Value>,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO tether_deferred_snapshots (entity_id, model, operation, payload) VALUES (?1, ?2, ?3, ?4)",
        (entity, model, operation, Value::Object(payload.clone()).to_string()),
    )?;
    Ok(())
}

pub fn forget_deferred(conn: &Connection, entity: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM tether_deferred_snapshots WHERE entity_id = ?1",
        [entity],
    )?;
    Ok(())
}

/// Settles deferred snapshots of rows whose local changes are no longer pending. If the last
/// one was rejected for good, the server never took it: the deferred server state applies. If it
/// was synced (the server has our newer state, which the next pull echoes) or conflicted (the
/// server state was applied then), the deferred snapshot is stale. Runs inside the caller's
/// capture-suppressed transaction; returns how many snapshots were applied.
pub fn settle_deferred(conn: &Connection, tables: &[TrackedTable]) -> Result<usize> {
    let settled: Vec<(String, String, String, String, Option<String>)> = conn
        .prepare(
            "SELECT d.entity_id, d.model, d.operation, d.payload,
                    (SELECT sync_status FROM tether_mutation_logs m WHERE m.entity_id = d.entity_id ORDER BY id DESC LIMIT 1)
               FROM tether_deferred_snapshots d
              WHERE NOT EXISTS (SELECT 1 FROM tether_mutation_logs m
                                 WHERE m.entity_id = d.entity_id AND m.sync_status = 'pending')",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut applied = 0;
    for (entity, model, operation, payload, last_status) in settled {
        forget_deferred(conn, &entity)?;
        let (Some("failed"), Some(table)) = (
            last_status.as_deref(),
            tables.iter().find(|t| t.model == model),
        ) else {
            continue;
        };
        let payload = serde_json::from_str::<Value>(&payload)
            .ok()
            .and_then(|v| payload_object(&v))
            .unwrap_or_default();
        conn.execute_batch("SAVEPOINT tether_deferred")?;
        match snapshot(conn, table, &entity, &operation, &payload) {
            Ok(()) => {
                conn.execute_batch("RELEASE tether_deferred")?;
                applied += 1;
            }
            Err(_) => conn.execute_batch("ROLLBACK TO tether_deferred; RELEASE tether_deferred")?,
        }
    }
    Ok(applied)
}
