//! `tether_status()`: what is queued, where sync stands, and whether tracked tables drifted.
use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::functions::Context;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value as Json};

use crate::error::Result;
use crate::functions::{self, connection, Kind};
use crate::queue::unsynced_rows;
use crate::reconcile::health;
use crate::settings::{redact_url, ConnectionSettings, Settings};
use crate::table_info::columns;
use crate::tracking::tracked_tables;

fn state(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM tether_sync_state WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// Rows of an `{"keys": "on_sync"}` table waiting for their keys: one per row still there (a row
/// may have several creates logged, the last claims it; a row deleted since sends nothing).
fn waiting_for_keys(conn: &Connection, model: &str, table: &str) -> Result<i64> {
    if !crate::table_info::table_exists(conn, table)? {
        return Ok(0);
    }
    Ok(conn.query_row(
        &format!(
            "SELECT count(*) FROM (SELECT DISTINCT locator FROM ({})) AS w
              WHERE EXISTS (SELECT 1 FROM main.{} WHERE rowid = w.locator)",
            unsynced_rows("locator", "sync_status = 'unkeyed' AND model = ?1"),
            crate::sql::ident(table)
        ),
        [model],
        |r| r.get(0),
    )?)
}

pub fn status(
    conn: &Connection,
    settings: &Settings,
    repair_error: Option<String>,
) -> Result<Json> {
    // Served by the partial index on unsynced rows and the tail captured since tether last
    // wrote, in one pass: cost follows the backlog, not the log size.
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut pending_by_model: HashMap<String, i64> = HashMap::new();
    let mut stmt = conn.prepare(&format!(
        "SELECT sync_status, model, count(*) FROM ({}) GROUP BY sync_status, model",
        unsynced_rows("sync_status, model", "true")
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (status, model, count) = row?;
        *counts.entry(status.clone()).or_default() += count;
        if status == "pending" {
            pending_by_model.insert(model, count);
        }
    }
    let tracked = tracked_tables(conn)?;
    for table in &tracked {
        // Rows waiting for their keys, and on tables with keys on insert rows a write left
        // without one (`tether::keys`): waiting once a sync queued them, even if that sync
        // stopped before it gave their keys. (Only tables with an INTEGER PRIMARY KEY have
        // either: `waiting_for_keys` finds rows by rowid.)
        let waiting = if table.keys_on_sync() {
            waiting_for_keys(conn, &table.model, &table.table)?
        } else {
            match crate::keys::keyless_rows_unqueued(conn, table)? {
                Some(unqueued) => unqueued + waiting_for_keys(conn, &table.model, &table.table)?,
                None => 0,
            }
        };
        if waiting > 0 {
            *pending_by_model.entry(table.model.clone()).or_default() += waiting;
        }
    }

    let mut tables = Vec::new();
    for table in tracked {
        let health = health(conn, settings, &table)?;
        let current: Vec<String> = columns(conn, &table.table)?
            .into_iter()
            .map(|c| c.name)
            .collect();
        let exists = !current.is_empty();
        let added: Vec<&String> = current
            .iter()
            .filter(|c| !table.table_columns.contains(c))
            .collect();
        let removed: Vec<&String> = table
            .table_columns
            .iter()
            .filter(|c| exists && !current.contains(c))
            .collect();
        let installed = crate::triggers::installed(conn, &table.table)?;
        let warnings = if exists {
            crate::shape::findings(conn, &table.table, &table.sync_key, &table.synced_columns)?
        } else {
            Vec::new()
        };
        let (server_columns, server_ignored): (Option<String>, String) = conn
            .prepare_cached(
                "SELECT server_columns, server_ignored FROM tether_tracked_tables WHERE table_id = ?1",
            )?
            .query_row([table.table_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        // Synced columns the server's snapshots never carried: it does not know them (once any
        // snapshot of the table arrived).
        let not_echoed: Option<Vec<&String>> = server_columns
            .and_then(|text| serde_json::from_str::<Vec<String>>(&text).ok())
            .map(|seen| {
                table
                    .synced_columns
                    .iter()
                    .filter(|c| !seen.contains(c))
                    .collect()
            });
        let server_ignored: Json = serde_json::from_str(&server_ignored).unwrap_or(json!([]));
        tables.push(json!({
            "table": table.table,
            "model": table.model,
            "sync_key": table.sync_key,
            // When new rows get their sync keys: `on_insert` (the default) or `on_sync`.
            "keys": if table.keys_on_sync() { "on_sync" } else { "on_insert" },
            "columns": table.synced_columns,
            "json_columns": table.json_columns,
            "pending": pending_by_model.get(&table.model).copied().unwrap_or(0),
            "exists": exists,
            "state": health.label(),
            "problem": match &health {
                crate::reconcile::Health::Drifted(reason) => Some(reason.clone()),
                crate::reconcile::Health::Renamed(to) => Some(format!("renamed to {to:?}")),
                crate::reconcile::Health::Dropped => Some("the table no longer exists; tether_untrack it to stop tracking".to_string()),
                crate::reconcile::Health::InLine => None,
            },
            "triggers_installed": exists && health == crate::reconcile::Health::InLine,
            "triggers": installed,
            "columns_changed": !added.is_empty() || !removed.is_empty(),
            "added_columns": added,
            "removed_columns": removed,
            "warnings": warnings,
            "server_ignored": server_ignored,
            "not_echoed": not_echoed,
        }));
    }

    Ok(json!({
        // Rows waiting for their keys (`{"keys": "on_sync"}`) are pending too.
        "pending": pending_by_model.values().sum::<i64>(),
        "failed": counts.get("failed").copied().unwrap_or(0),
        "conflicts": counts.get("conflict").copied().unwrap_or(0),
        // Rows whose local changes were discarded with no server state known to put back: they
        // come back with the next pull (see tether_attention).
        "diverged": conn.query_row("SELECT count(*) FROM tether_diverged", [], |r| r.get::<_, i64>(0))?,
        // Server rows this database refused (a constraint, a parent that has not arrived):
        // tried again at the end of every pull.
        "quarantine": crate::engine::quarantine::summary(conn)?,
        // Why the last pull left snapshots out, by reason and model (from the sync log).
        "last_pull_errors": last_pull_errors(conn)?,
        // A number, as in pull requests and `new_sync_cursor` (stored as text).
        "last_sync_cursor": crate::engine::pull::stored_cursor(conn)?,
        "last_sync_at": state(conn, "last_sync_at")?,
        "client_id": settings.get("client_id"),
        "server_url": settings.get("server_url").map(redact_url),
        "tables": tables,
        "repair_error": repair_error,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

fn last_pull_errors(conn: &Connection) -> Result<Json> {
    let text: Option<String> = conn
        .query_row(
            "SELECT json_extract(result, '$.pull_error_reasons') FROM tether_sync_log
              WHERE kind IN ('pull', 'sync') AND result IS NOT NULL
                AND json_extract(result, '$.skipped') = 0
              ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({})))
}

/// True when every statement running on the connection only reads: a repair's own transaction
/// inside a writing statement would end that statement's work.
fn only_readers_running(conn: &Connection) -> bool {
    use rusqlite::ffi;
    // SAFETY: the handle is valid for the call; the statements are only inspected.
    unsafe {
        let db = conn.handle();
        let mut stmt = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
        while !stmt.is_null() {
            if ffi::sqlite3_stmt_busy(stmt) != 0 && ffi::sqlite3_stmt_readonly(stmt) == 0 {
                return false;
            }
            stmt = ffi::sqlite3_next_stmt(db, stmt);
        }
    }
    true
}

pub fn register(
    conn: &Connection,
    session: Arc<ConnectionSettings>,
    worker: Arc<crate::background::Worker>,
) -> Result<()> {
    functions::register(
        conn,
        "tether_status",
        &[0],
        Kind::Reads,
        move |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            let settings = Settings::load(&conn, &session)?;
            // Repairs write: inside the caller's transaction, or called from a statement that
            // writes (`INSERT … SELECT tether_status()`), status only reports.
            let repair_error = if conn.is_autocommit() && only_readers_running(&conn) {
                session
                    .schema_watch()
                    .reconcile(&conn, &settings)
                    .err()
                    .map(|e| e.to_string())
            } else {
                None
            };
            let mut shown = status(&conn, &settings, repair_error)?;
            shown["worker"] = worker.health();
            Ok(shown.to_string())
        },
    )
}
