//! Rows that a write left without a key and without a create, on tables that give keys on
//! insert. SQLite lets a few writes get past the insert trigger's work:
//!
//! - a trigger of the application's, created after tracking, fires before tether's and moves the
//!   new row (`UPDATE … SET id = …`): tether's trigger no longer finds the row it was told of;
//! - `INSERT OR FAIL` whose trigger of the application's fails on a row: SQLite keeps that row
//!   (FAIL undoes nothing) but runs no trigger after the failing one.
//!
//! Such a row has no key, so no later write of it is captured either, and it would never reach
//! the server. Before each key pass, every such row gets an unkeyed create that names it by its
//! INTEGER PRIMARY KEY, as a table tracked with `{"keys": "on_sync"}` logs an insert; the key
//! pass then gives it its key and reads it as it is (or fails it alone, `invalid_value`, when the
//! table's own triggers refuse the key).
//!
//! On these tables the sync key's index is whole, so looking for rows without a key is one seek
//! that finds nothing on every sync but the rare one. Rows waiting for their keys, rows whose key
//! the table refused and rows whose create the user discarded are not queued again.
use rusqlite::Connection;

use crate::db::write_txn;
use crate::error::Result;
use crate::queue::UNSYNCED;
use crate::tracking::TrackedTable;

use super::place::{locate, Located, Place, TableShape};

/// Queues an unkeyed create for every row of a table with keys on insert (of `only_model`, or
/// of every model) that has no key and no create; returns how many.
pub(super) fn queue_keyless_rows(conn: &Connection, only_model: Option<&str>) -> Result<usize> {
    let mut queued = 0;
    for table in crate::tracking::tracked_tables(conn)? {
        if table.keys_on_sync() || only_model.is_some_and(|model| model != table.model) {
            continue;
        }
        let Some(located) = searchable(conn, &table)? else {
            continue;
        };
        let unqueued = format!(
            "FROM {name} AS t WHERE t.{key} IS NULL AND NOT EXISTS (
                 SELECT 1 FROM tether_mutation_logs AS l
                  WHERE {UNSYNCED} AND l.entity_id = '' AND l.model = ?1 AND l.locator = t.{pk}
                    AND (l.sync_status IN ('unkeyed', 'failed')
                         OR (l.sync_status = 'resolved' AND l.resolution = 'discarded')))",
            name = located.name,
            key = located.key,
            pk = located.pk,
        );
        let any: bool = conn
            .prepare(&format!("SELECT EXISTS (SELECT 1 {unqueued})"))?
            .query_row([&table.model], |r| r.get(0))?;
        if !any {
            continue;
        }
        queued += write_txn(conn, |conn| {
            Ok(conn
                .prepare(&format!(
                    "INSERT INTO tether_mutation_logs
                         (entity_id, model, operation, timestamp, sync_status, locator)
                     SELECT '', ?1, 'create', {now}, 'unkeyed', t.{pk} {unqueued} ORDER BY t.{pk}",
                    now = crate::triggers::now_ms()?,
                    pk = located.pk,
                ))?
                .execute([&table.model])?)
        })?;
    }
    Ok(queued)
}

/// The table as the key pass reads it, when rows without a key can be found by the sync key's
/// whole index (not a partial one, and not a table that changed under tracking).
fn searchable(conn: &Connection, table: &TrackedTable) -> Result<Option<Located>> {
    if crate::tracking::key_index_partial(conn, &table.table)? != Some(false) {
        return Ok(None);
    }
    Ok(match locate(conn, &TableShape::from(table))? {
        Place::Found(located) => Some(located),
        Place::Gone | Place::Changed(_) => None,
    })
}
