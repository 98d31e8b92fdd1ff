//! Server state that could not be written locally waits in `tether_quarantine` (one row per
//! entity, the newest state) and is tried again: at the end of the page that brought it (a
//! child that came before its parent), at the end of every pull, and in every later pull. It
//! leaves when it applies or when a newer snapshot of the same row does.
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Map, Value};

use crate::engine::apply::{self, Outcome, ServerRow};
use crate::error::{Error, Result};

/// Rows tried per write transaction.
const ROWS_PER_TRANSACTION: usize = 500;

/// Keeps `row` (replacing an older state of the same entity) with the reason it failed.
pub fn keep(conn: &Connection, row: &ServerRow, source: &str, error: &Error) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO tether_quarantine (entity_id, model, operation, payload, source, error, cursor_before)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (entity_id) DO UPDATE SET
             model = excluded.model, operation = excluded.operation, payload = excluded.payload,
             source = excluded.source, error = excluded.error, attempts = attempts + 1,
             cursor_before = excluded.cursor_before, last_failed_at = excluded.last_failed_at",
    )?
    .execute((
        row.entity,
        row.model,
        row.operation,
        Value::Object(row.payload.clone()).to_string(),
        source,
        error.message(),
        row.cursor_before,
    ))?;
    Ok(())
}

pub fn forget(conn: &Connection, entity: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM tether_quarantine WHERE entity_id = ?1")?
        .execute([entity])?;
    Ok(())
}

pub fn is_empty(conn: &Connection) -> Result<bool> {
    Ok(
        !conn.query_row("SELECT EXISTS (SELECT 1 FROM tether_quarantine)", [], |r| {
            r.get(0)
        })?,
    )
}

/// What `tether_status()` shows: how many rows wait, and the oldest few with their reasons.
pub fn summary(conn: &Connection) -> Result<Value> {
    let count: i64 = conn.query_row("SELECT count(*) FROM tether_quarantine", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT model, entity_id, operation, source, error, attempts, first_failed_at
           FROM tether_quarantine ORDER BY first_failed_at, entity_id LIMIT 10",
    )?;
    let oldest: Vec<Value> = stmt
        .query_map([], |r| {
            Ok(json!({
                "model": r.get::<_, String>(0)?,
                "entity_id": r.get::<_, String>(1)?,
                "operation": r.get::<_, String>(2)?,
                "source": r.get::<_, String>(3)?,
                "error": r.get::<_, String>(4)?,
                "attempts": r.get::<_, i64>(5)?,
                "since": r.get::<_, String>(6)?,
            }))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(json!({"count": count, "oldest": oldest}))
}

/// Tries the quarantined rows again (all of them, or only `entities`), in short transactions,
/// pass after pass while a pass applies something (a parent applied lets its children apply).
/// Returns how many applied (or were handed to a waiting local change).
pub fn retry(conn: &Connection, entities: Option<&[String]>) -> Result<usize> {
    if is_empty(conn)? {
        return Ok(0);
    }
    let mut wanted: Option<Vec<String>> = entities.map(<[String]>::to_vec);
    if let Some(list) = &mut wanted {
        list.sort();
        list.dedup();
    }
    let mut total = 0;
    loop {
        let mut applied_this_pass = 0;
        let mut after = String::new();
        loop {
            let (batch, reached) = next_rows(conn, &after, wanted.as_deref())?;
            let Some(reached) = reached else { break };
            after = reached;
            if batch.is_empty() {
                continue;
            }
            applied_this_pass += apply::in_transaction(conn, |conn, applier| {
                crate::debug::kill_point("quarantine-retry");
                let mut applied = 0;
                let mut waiting: Vec<&QuarantinedRow> = batch.iter().collect();
                // Row by row (after a failed commit), a row whose parent applied later in the
                // same batch applies on the next round, in the same transaction.
                loop {
                    let (before, mut still) = (waiting.len(), Vec::new());
                    for quarantined in waiting {
                        let (entity, model, operation, payload, source, cursor_before) =
                            quarantined;
                        let payload: Map<String, Value> = apply::stored_payload(payload);
                        let row = ServerRow {
                            entity,
                            model,
                            operation,
                            payload: &payload,
                            cursor_before: *cursor_before,
                        };
                        match applier.apply(conn, &row, source)? {
                            Outcome::Applied | Outcome::Deferred => applied += 1,
                            Outcome::Quarantined => still.push(quarantined),
                            // Untracked since: tracking it again pulls it afresh.
                            Outcome::UnknownModel => forget(conn, entity)?,
                        }
                    }
                    if !applier.is_careful() || still.is_empty() || still.len() == before {
                        break;
                    }
                    // The other way round next: a chain whose parents come after their children
                    // in key order applies whole on the way back.
                    still.reverse();
                    waiting = still;
                }
                Ok(applied)
            })?;
        }
        total += applied_this_pass;
        if applied_this_pass == 0 || is_empty(conn)? {
            return Ok(total);
        }
    }
}

type QuarantinedRow = (String, String, String, String, String, Option<i64>);

/// The next rows after entity `after`, and the last entity looked at (`None`: nothing left).
fn next_rows(
    conn: &Connection,
    after: &str,
    entities: Option<&[String]>,
) -> Result<(Vec<QuarantinedRow>, Option<String>)> {
    let read = |r: &rusqlite::Row| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    };
    match entities {
        None => {
            let rows: Vec<QuarantinedRow> = conn
                .prepare_cached(
                    "SELECT entity_id, model, operation, payload, source, cursor_before FROM tether_quarantine
                      WHERE entity_id > ?1 ORDER BY entity_id LIMIT ?2",
                )?
                .query_map((after, ROWS_PER_TRANSACTION as i64), read)?
                .collect::<rusqlite::Result<_>>()?;
            let reached = rows.last().map(|r| r.0.clone());
            Ok((rows, reached))
        }
        Some(entities) => {
            let mut stmt = conn.prepare_cached(
                "SELECT entity_id, model, operation, payload, source, cursor_before FROM tether_quarantine WHERE entity_id = ?1",
            )?;
            let mut rows = Vec::new();
            let mut reached = None;
            for entity in entities
                .iter()
                .filter(|e| e.as_str() > after)
                .take(ROWS_PER_TRANSACTION)
            {
                reached = Some(entity.clone());
                if let Some(row) = stmt.query_row([entity], read).optional()? {
                    rows.push(row);
                }
            }
            Ok((rows, reached))
        }
    }
}
