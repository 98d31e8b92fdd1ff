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
//! the table refused and rows whose create the user discarded (`tether::engine::prune` keeps such
//! creates) are not queued again. On these tables nothing of the application's ran on the
//! syncing connection before, so any error of the table's triggers while the key is written
//! fails that row alone (a function they call that this connection lacks included).
use std::collections::HashSet;

use rusqlite::Connection;

use crate::db::write_txn;
use crate::error::Result;
use crate::tracking::TrackedTable;

use super::place::{locate, Located, Place, TableShape};

/// Discarded creates without a key that still name their rows (`locator`): each leaves its row
/// unsynced.
const DISCARDS_NAMING_ROWS: &str = crate::queue::unsynced!(
    "sync_status = 'resolved' AND resolution = 'discarded' AND entity_id = '' AND locator IS NOT NULL"
);

/// Queues an unkeyed create for every row of a table with keys on insert (of `only_model`, or
/// of every model) that has no key and no create; returns how many.
pub(super) fn queue_keyless_rows(conn: &Connection, only_model: Option<&str>) -> Result<usize> {
    let mut queued = 0;
    // One pass over the resolved mutations for every table, not one per table.
    let with_discards: HashSet<String> = conn
        .prepare(&format!(
            "SELECT DISTINCT model FROM tether_mutation_logs WHERE {DISCARDS_NAMING_ROWS}"
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for table in crate::tracking::tracked_tables(conn)? {
        if only_model.is_some_and(|model| model != table.model) {
            continue;
        }
        let Place::Found(located) = locate(conn, &TableShape::from(&table))? else {
            continue;
        };
        if with_discards.contains(&table.model) {
            forget_discards_of_deleted_rows(conn, &table.model, &located)?;
        }
        let Some(unqueued) = unqueued_rows(conn, &table, &located)? else {
            continue;
        };
        // In a write transaction, once the records follow the log (tether::queue).
        queued += write_txn(conn, |conn| {
            Ok(conn
                .prepare(&format!(
                    "INSERT INTO tether_mutation_logs
                         (entity_id, model, operation, timestamp, sync_status, locator)
                     SELECT '', ?1, 'create', {now}, 'unkeyed', t.{pk} {unqueued} ORDER BY t.{pk}",
                    now = crate::triggers::now_ms()?,
                    pk = located.pk,
                ))?
                .execute((&table.model, table.table_id))?)
        })?;
    }
    Ok(queued)
}

/// How many rows of `table` the next sync will queue this way (`tether_status()` counts them as
/// pending, with the rows a sync queued and did not key yet); None when the table has no row
/// without a key or is not one this looks at (keys on sync, no INTEGER PRIMARY KEY, WITHOUT
/// ROWID, changed under tracking). Outside a write transaction a create logged since tether last
/// wrote may not have its record yet: such a row counts until then.
pub fn keyless_rows_unqueued(conn: &Connection, table: &TrackedTable) -> Result<Option<i64>> {
    let Place::Found(located) = locate(conn, &TableShape::from(table))? else {
        return Ok(None);
    };
    let Some(unqueued) = unqueued_rows(conn, table, &located)? else {
        return Ok(None);
    };
    Ok(Some(
        conn.prepare(&format!("SELECT count(*) {unqueued}"))?
            .query_row((&table.model, table.table_id), |r| r.get(0))?,
    ))
}

/// `FROM … WHERE …` of the rows of a table with keys on insert that have no key and that no
/// create speaks for (`?1` the model, `?2` the table id); None when the table has no row without
/// a key (one seek on the sync key's whole index), or gives keys on sync (such rows wait there).
///
/// A row whose place has a record was given a key that a trigger of the table's own then
/// ignored (RAISE(IGNORE)): its create went out under that key, and a second one would make it
/// two entities. The creates that speak for rows are read once (not per row: rows left failed or
/// discarded stay), through the index of unsynced mutations.
fn unqueued_rows(
    conn: &Connection,
    table: &TrackedTable,
    located: &Located,
) -> Result<Option<String>> {
    if table.keys_on_sync()
        || crate::tracking::key_index_partial(conn, &table.table)? != Some(false)
    {
        return Ok(None);
    }
    let Located { name, key, pk, .. } = located;
    let any: bool = conn
        .prepare(&format!(
            "SELECT EXISTS (SELECT 1 FROM {name} WHERE {key} IS NULL)"
        ))?
        .query_row([], |r| r.get(0))?;
    // Also the creates logged since tether last wrote: `tether_status()` reads outside a write
    // transaction (a sync that stopped after queuing rows, before their keys).
    let speaking = crate::queue::unsynced_rows(
        "locator",
        "sync_status IN ('unkeyed', 'failed', 'resolved') AND entity_id = '' AND model = ?1
         AND locator IS NOT NULL AND (sync_status <> 'resolved' OR resolution = 'discarded')",
    );
    Ok(any.then(|| {
        format!(
            "FROM {name} AS t
              WHERE t.{key} IS NULL
                AND NOT EXISTS (SELECT 1 FROM tether_row_keys AS r
                                 WHERE r.table_id = ?2 AND r.row_pk = t.{pk})
                AND t.{pk} NOT IN ({speaking})"
        )
    }))
}

/// A discarded create without a key leaves its row unsynced while the row is there (prune keeps
/// it); once the row is deleted it names nothing, and a new row given that number must not stay
/// unsynced by it: it no longer names a row (`locator` NULL), and prune takes it.
fn forget_discards_of_deleted_rows(conn: &Connection, model: &str, table: &Located) -> Result<()> {
    let Located { name, pk, .. } = table;
    let discards_of_deleted_rows = format!(
        "SELECT l.id FROM tether_mutation_logs AS l
          WHERE {DISCARDS_NAMING_ROWS} AND l.model = ?1
            AND NOT EXISTS (SELECT 1 FROM {name} AS t WHERE t.{pk} = l.locator)"
    );
    let any: bool = conn
        .prepare(&format!("SELECT EXISTS ({discards_of_deleted_rows})"))?
        .query_row([model], |r| r.get(0))?;
    if any {
        write_txn(conn, |conn| {
            conn.prepare(&format!(
                "UPDATE tether_mutation_logs SET locator = NULL, updated_at = CURRENT_TIMESTAMP
                  WHERE id IN ({discards_of_deleted_rows})"
            ))?
            .execute([model])?;
            Ok(())
        })?;
    }
    Ok(())
}
