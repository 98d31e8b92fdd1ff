//! Pull, sans IO: [`request_body`] says where this client stands, [`apply_page`] applies one
//! page of server snapshots and its cursor in one transaction.
use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::bail;
use crate::capture::without_capture;
use crate::engine::{apply, excerpt, PullPage};
use crate::error::{Error, Result};
use crate::tracking::tracked_tables;

pub fn stored_cursor(conn: &Connection) -> Result<Option<i64>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM tether_sync_state WHERE key = 'last_sync_cursor'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(text.and_then(|t| t.parse().ok()))
}

/// `{"client_id", "last_sync_cursor", ["limit"]}`: the cursor always present (null at first).
pub fn request_body(conn: &Connection, client_id: &str, page_size: Option<u64>) -> Result<String> {
    let mut body = json!({"client_id": client_id, "last_sync_cursor": stored_cursor(conn)?});
    if let Some(limit) = page_size {
        body["limit"] = json!(limit);
    }
    Ok(body.to_string())
}

fn set_state(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO tether_sync_state (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = CURRENT_TIMESTAMP",
        (key, value),
    )?;
    Ok(())
}

/// Snapshots applied per write transaction: keeps the write lock short however large the page.
const ROWS_PER_TRANSACTION: usize = 500;

/// Applies one page, in transactions of at most [`ROWS_PER_TRANSACTION`] snapshots; the cursor
/// commits with the page's last rows, so it never passes rows that were not applied (a crash
/// midway re-applies the page, which is idempotent). Snapshots that cannot apply (unknown model, constraint failure) are
/// counted in `pull_errors` and the rest of the page applies. A row that still has unsent local
/// changes is not overwritten: its snapshot waits until the push settles (`apply::settle_deferred`). Refuses, changing nothing, a page that says
/// `has_more` without moving the cursor forward.
pub fn apply_page(conn: &Connection, body: &str) -> Result<PullPage> {
    let page: Value = serde_json::from_str(body)
        .map_err(|_| Error::new(format!("pull answer is not JSON: {}", excerpt(body))))?;
    let Value::Object(page) = page else {
        bail!("pull answer is not a JSON object: {}", excerpt(body));
    };
    let snapshots: &[Value] = match page.get("snapshots") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(_) => bail!(
            "pull answer: \"snapshots\" must be a list: {}",
            excerpt(body)
        ),
    };
    let new_cursor = match page.get("new_sync_cursor") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            Error::new(format!(
                "pull answer: \"new_sync_cursor\" must be an integer, got {}",
                excerpt(&v.to_string())
            ))
        })?),
    };
    let has_more = match page.get("has_more") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => bail!("pull answer: \"has_more\" must be true or false, got {other}"),
    };
    let old_cursor = stored_cursor(conn)?;
    if has_more
        && !matches!((old_cursor, new_cursor), (_, Some(new)) if old_cursor.is_none_or(|old| new > old))
    {
        bail!(
            "the server says has_more but the cursor did not advance ({} -> {}); stopping instead of asking for the same page forever",
            old_cursor.map_or("null".into(), |c| c.to_string()),
            new_cursor.map_or("null".into(), |c| c.to_string())
        );
    }
    let tables = tracked_tables(conn)?;
    let mut out = PullPage {
        has_more,
        cursor: new_cursor.or(old_cursor),
        ..PullPage::default()
    };
    let chunks: Vec<&[Value]> = if snapshots.is_empty() {
        vec![&[]]
    } else {
        snapshots.chunks(ROWS_PER_TRANSACTION).collect()
    };
    for (index, chunk) in chunks.iter().enumerate() {
        without_capture(conn, |conn| {
            // Read inside the transaction: a local write between two chunks is seen.
            let pending: HashSet<String> = conn
                .prepare_cached(&format!(
                    "SELECT DISTINCT entity_id FROM tether_mutation_logs WHERE {}",
                    crate::queue::PENDING
                ))?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let deferred: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM tether_deferred_snapshots)",
                [],
                |r| r.get(0),
            )?;
            for snapshot in *chunk {
                apply_snapshot(conn, &tables, &pending, deferred, snapshot, &mut out)?;
            }
            if index + 1 == chunks.len() {
                if let Some(cursor) = new_cursor {
                    set_state(conn, "last_sync_cursor", &cursor.to_string())?;
                }
                set_state(conn, "last_sync_at", &crate::engine::now_iso(conn)?)?;
            }
            Ok(())
        })?;
    }
    Ok(out)
}

fn apply_snapshot(
    conn: &Connection,
    tables: &[crate::tracking::TrackedTable],
    pending: &HashSet<String>,
    deferred: bool,
    snapshot: &Value,
    out: &mut PullPage,
) -> Result<()> {
    let entity = snapshot.get("entity_id").and_then(Value::as_str);
    let table = snapshot
        .get("model")
        .and_then(Value::as_str)
        .and_then(|model| tables.iter().find(|t| t.model == model));
    let payload = snapshot.get("payload").and_then(apply::payload_object);
    let (Some(entity), Some(table), Some(payload)) = (entity, table, payload) else {
        out.pull_errors += 1;
        return Ok(());
    };
    let operation = snapshot
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or("upsert");
    if pending.contains(entity) {
        apply::defer(conn, entity, &table.model, operation, &payload)?;
        out.kept_local += 1;
        return Ok(());
    }
    if deferred {
        apply::forget_deferred(conn, entity)?;
    }
    // One statement per snapshot (an UPDATE, then an INSERT if it matched nothing): a failing
    // statement undoes itself, so the rest of the page goes on without a savepoint.
    match apply::snapshot(conn, table, entity, operation, &payload) {
        Ok(()) => out.pulled += 1,
        Err(_) => out.pull_errors += 1,
    }
    Ok(())
}
