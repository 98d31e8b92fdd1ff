//! The mutation queue (`tether_mutation_logs`). Capture triggers store only what a write knows;
//! a mutation gets its `mutation_id` and per-entity `version` here, when first prepared for
//! sending. Both are written before any request leaves, so every retry reuses them, which the
//! server's idempotency depends on.
use rusqlite::Connection;

use crate::db::{write_txn, write_txn_after, write_txn_waiting, Setup};
use crate::error::Result;

/// [`UNSYNCED`] followed by `AND` and a condition, as one literal (for constants).
macro_rules! unsynced {
    ($condition:literal) => {
        concat!(
            "sync_status <> 'synced' AND indexed IS NOT NULL AND ",
            $condition
        )
    };
}
pub(crate) use unsynced;

/// The start of every condition served by the partial index of unsynced rows (SQLite uses it only
/// when a query repeats its condition: it cannot infer `<> 'synced'` from `= 'pending'`; without
/// it every scan of the queue reads every synced mutation kept for the retention period).
///
/// Capture does not write the index entry (it is a page write on every captured write): a row
/// enters the index when tether sets its `indexed` flag, for the whole tail of rows captured since,
/// at the start and the end of each of tether's write transactions ([`index_new_rows`]). Inside
/// one of them the index therefore holds every row but those the transaction itself logged since
/// (call [`index_new_rows`] before reading them). Outside, rows captured since are the tail of
/// the log that [`NOT_INDEXED`] finds. Rows with a status only tether sets (failed, conflict,
/// resolved) are always indexed, and so is every row below an indexed one.
pub const UNSYNCED: &str = "sync_status <> 'synced' AND indexed IS NOT NULL";

/// The id of the log's newest indexed row, found by reading back from the end (a scalar
/// subquery; NULL when no row is indexed).
macro_rules! newest_indexed {
    () => {
        "(SELECT n.id FROM tether_mutation_logs AS n
           WHERE n.indexed IS NOT NULL ORDER BY n.id DESC LIMIT 1)"
    };
}
const NEWEST_INDEXED: &str = newest_indexed!();

/// The rows the index does not hold yet: the tail of the log after its newest indexed row, which
/// a read outside tether's write transactions adds to what the index finds. One backward step
/// when the tail is empty. (Every row without the flag comes after every row with it: new rows
/// get the log's highest id plus one, and only [`index_new_rows`] sets the flag, on a whole
/// tail.)
pub const NOT_INDEXED: &str = concat!(
    "id > coalesce(",
    newest_indexed!(),
    ", -9223372036854775808) AND indexed IS NULL"
);

/// The condition for pending mutations (indexed ones: see [`UNSYNCED`]).
pub const PENDING: &str = unsynced!("sync_status = 'pending'");

/// [`PENDING`] and creates still waiting for their sync keys (`crate::keys`).
pub const PENDING_OR_UNKEYED: &str = unsynced!("sync_status IN ('pending', 'unkeyed')");

/// The queue's unsynced rows matching `condition` (on one row, without the index's own terms):
/// the index's, then those of the tail it does not hold yet. For reads outside tether's write
/// transactions, which must see what was captured since.
pub fn unsynced_rows(columns: &str, condition: &str) -> String {
    format!(
        "SELECT {columns} FROM tether_mutation_logs WHERE {UNSYNCED} AND {condition}
         UNION ALL
         SELECT {columns} FROM tether_mutation_logs
          WHERE {NOT_INDEXED} AND sync_status <> 'synced' AND {condition}"
    )
}

/// Puts the rows captured since into the index of unsynced rows (see [`UNSYNCED`]): the whole
/// tail after the newest indexed row, so the rows without the flag stay the log's newest. Run by
/// every write transaction of tether's as it begins and before it ends, and by a transaction
/// about to read rows it logged itself.
pub fn index_new_rows(conn: &Connection) -> Result<()> {
    follow_records(conn, NOT_INDEXED, &[], None)?;
    // Notes of rows about to be replaced only mean something inside the statement that wrote
    // them; the sweeps remove those a skipped row left (sql/triggers/v5_sweep_notes.sql), and
    // tether clears any other here, between statements.
    conn.prepare_cached("DELETE FROM tether_replaced")?
        .execute([])?;

    conn.prepare_cached(&format!(
        "UPDATE tether_mutation_logs SET indexed = 1 WHERE {NOT_INDEXED}"
    ))?
    .execute([])?;
    Ok(())
}

/// Keeps the `tether_row_keys` records in step with the log rows matching `rows` (a condition on
/// the log with the parameters `params`) as they are indexed, which every write transaction of
/// tether's does before anything of tether's reads records: the key pass, repairs and
/// re-tracking. On rowid tables two triggers leave records to this, one page
/// less per captured write each, naming the row by its rowid in `locator`: the delete trigger
/// leaves the deleted row's record (v4_delete.sql), and with keys on insert the lean insert
/// trigger writes none (v6_new_key_insert.sql). In log order, as those triggers would have:
/// - a create writes its key's record at its row number, replacing an older record there; not
///   when a trigger wrote a record there since, or dropped the one there (moving or replacing the
///   row: v6_drop_records.sql notes that in `tether_records_dropped`);
/// - a delete drops the record of its row and key, unless a trigger wrote it after the delete (its
///   `log_id` is the log's newest id then: the row was put back with its key, by an undo or a
///   REPLACE with recursive triggers on), or a later row at that primary key holds another key.
///
/// The notes of dropped records are cleared after, those up to log id `upto` when `rows` ends
/// there (a chunk of a long tail), else all: no create logged before them is left to follow.
fn follow_records(conn: &Connection, rows: &str, params: &[i64], upto: Option<i64>) -> Result<()> {
    let mut logged = conn.prepare_cached(&format!(
        "SELECT l.id, l.operation = 'create', t.table_id, l.locator, l.entity_id
           FROM (SELECT id, operation, model, locator, entity_id FROM tether_mutation_logs
                  WHERE {rows} AND operation IN ('create', 'delete') AND locator IS NOT NULL
                    AND entity_id <> '') AS l
           JOIN tether_tracked_tables AS t ON t.model = l.model
          ORDER BY l.id"
    ))?;
    let mut logged = logged.query(rusqlite::params_from_iter(params))?;
    while let Some(row) = logged.next()? {
        let (id, create, table_id): (i64, bool, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let (row_pk, key): (rusqlite::types::Value, String) = (row.get(3)?, row.get(4)?);
        if create {
            conn.prepare_cached(
                "INSERT INTO tether_row_keys (table_id, row_pk, sync_key, log_id)
                 SELECT ?2, ?3, ?4, ?1
                  WHERE NOT EXISTS (SELECT 1 FROM tether_row_keys
                                     WHERE table_id = ?2 AND row_pk = ?3 AND coalesce(log_id, 0) >= ?1)
                    AND NOT EXISTS (SELECT 1 FROM tether_records_dropped
                                     WHERE table_id = ?2 AND row_pk = ?3 AND log_id >= ?1)
                 ON CONFLICT (table_id, row_pk)
                 DO UPDATE SET sync_key = excluded.sync_key, log_id = excluded.log_id",
            )?
            .execute((id, table_id, &row_pk, &key))?;
        } else {
            conn.prepare_cached(
                "DELETE FROM tether_row_keys
                  WHERE table_id = ?2 AND row_pk = ?3 AND sync_key = ?4 AND coalesce(log_id, 0) < ?1",
            )?
            .execute((id, table_id, &row_pk, &key))?;
        }
    }
    conn.prepare_cached("DELETE FROM tether_records_dropped WHERE log_id <= coalesce(?1, log_id)")?
        .execute([upto])?;
    Ok(())
}

/// The most rows a write transaction indexes at once when a long tail was captured (an
/// application that wrote for days without syncing): see [`index_long_tail`].
const INDEX_CHUNK: i64 = 10_000;

/// Indexes a tail of more than [`INDEX_CHUNK`] captured rows in transactions of that many, oldest
/// first, so the write transaction about to begin (it indexes the whole tail) stays short: run by
/// [`crate::db::write_txn`] before it begins. When the tail is short it only reads.
pub fn index_long_tail(conn: &Connection, patience: std::time::Duration) -> Result<()> {
    // Up to the newest row now: rows a busy writer keeps adding are left to the transaction
    // about to begin, so this ends.
    let (mut after, long, newest): (Option<i64>, bool, Option<i64>) = conn
        .prepare_cached(&format!(
            "SELECT {NEWEST_INDEXED},
                    (SELECT count(*) > ?1
                       FROM (SELECT 1 FROM tether_mutation_logs WHERE {NOT_INDEXED} LIMIT ?1 + 1)),
                    (SELECT max(id) FROM tether_mutation_logs)"
        ))?
        .query_row([INDEX_CHUNK], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if !long {
        return Ok(());
    }
    let setup = Setup {
        index_queue: false,
        ..Setup::NONE
    };
    loop {
        // Each chunk goes on above the last row the previous one indexed while that row still
        // holds the flag (rows without it are then all above it: new rows take the highest id
        // plus one); if it was deleted meanwhile, the tail is found again from the end.
        let indexed: Vec<i64> = write_txn_waiting(conn, patience, setup, |conn| {
            let ids = conn
                .prepare_cached(&format!(
                    "UPDATE tether_mutation_logs SET indexed = 1
                      WHERE id IN (
                            SELECT id FROM tether_mutation_logs
                             WHERE indexed IS NULL
                               AND id > CASE WHEN EXISTS (SELECT 1 FROM tether_mutation_logs
                                                           WHERE id = ?1 AND indexed IS NOT NULL)
                                             THEN ?1
                                             ELSE coalesce({NEWEST_INDEXED}, -9223372036854775808) END
                               AND id <= ?3
                             ORDER BY id LIMIT ?2)
                     RETURNING id"
                ))?
                .query_map((after, INDEX_CHUNK, newest), |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            // The chunk is every row from its lowest id to its highest (no indexed row lies
            // between: see NOT_INDEXED).
            if let (Some(low), Some(high)) = (ids.iter().min(), ids.iter().max()) {
                follow_records(conn, "id BETWEEN ?1 AND ?2", &[*low, *high], Some(*high))?;
            }
            Ok(ids)
        })?;
        if (indexed.len() as i64) < INDEX_CHUNK {
            return Ok(());
        }
        after = indexed.into_iter().max();
    }
}

/// Gives identities to at most `limit` pending mutations below log id `below` that lack them,
/// oldest first, in a few set-based statements. Returns how many were given. Versions follow queue order (each
/// entity continues from its highest version given so far), so they equal what assigning at
/// capture time would have produced; each id's time part is the mutation's capture time.
pub fn assign_identities(conn: &Connection, limit: usize, below: i64) -> Result<usize> {
    let limit = limit.min(i64::MAX as usize) as i64;
    // Created before the transaction: a schema change inside it would expire what ends it if the
    // host interrupts (see `db::write_txn_after`).
    let batch_table = "CREATE TEMP TABLE IF NOT EXISTS tether_identity_batch (
        id INTEGER PRIMARY KEY, entity_id TEXT NOT NULL, timestamp INTEGER NOT NULL, version INTEGER NOT NULL)";
    let setup = Setup {
        sql: batch_table,
        ..Setup::NONE
    };
    write_txn_after(conn, setup, |conn| {
        conn.execute_batch("DELETE FROM temp.tether_identity_batch")?;
        let given = conn.prepare_cached(&format!(
            "INSERT INTO temp.tether_identity_batch (id, entity_id, timestamp, version)
             SELECT b.id, b.entity_id, b.timestamp,
                    coalesce(v.version, 0) + row_number() OVER (PARTITION BY b.entity_id ORDER BY b.id)
               FROM (SELECT id, entity_id, timestamp FROM tether_mutation_logs
                      WHERE {PENDING} AND mutation_id IS NULL AND id < ?2 ORDER BY id LIMIT ?1) AS b
               LEFT JOIN tether_entity_versions AS v ON v.entity_id = b.entity_id"
        ))?
        .execute([limit, below])?;
        if given == 0 {
            return Ok(0);
        }
        let id = crate::triggers::ulid_at("(SELECT timestamp FROM temp.tether_identity_batch b WHERE b.id = tether_mutation_logs.id)")?;
        conn.prepare_cached(&format!(
            "UPDATE tether_mutation_logs
                SET mutation_id = {id},
                    version = (SELECT version FROM temp.tether_identity_batch b WHERE b.id = tether_mutation_logs.id),
                    updated_at = CURRENT_TIMESTAMP
              WHERE id IN (SELECT id FROM temp.tether_identity_batch)"
        ))?
        .execute([])?;
        conn.prepare_cached(
            "INSERT INTO tether_entity_versions (entity_id, version)
             SELECT entity_id, max(version) FROM temp.tether_identity_batch WHERE true GROUP BY entity_id
             ON CONFLICT (entity_id) DO UPDATE SET version = excluded.version",
        )?
        .execute([])?;
        Ok(given)
    })
}

/// The condition for mutations that failed with the transient reason `error` and will be sent
/// again at the start of a later push (`retry_count` below `max_retry_attempts`).
pub fn awaiting_retry(retry_limit: u64) -> String {
    format!(
        "{UNSYNCED} AND sync_status = 'failed' AND rejection_reason = 'error' AND retry_count < {}",
        retry_limit.min(i64::MAX as u64)
    )
}

/// The condition for mutations the server has not taken yet: pending, or failed and awaiting a
/// retry. Written so SQLite uses the partial index of unsynced rows.
pub fn unsent(retry_limit: u64) -> String {
    format!(
        "{UNSYNCED} AND sync_status IN ('pending', 'failed')
         AND (sync_status = 'pending' OR ({}))",
        awaiting_retry(retry_limit)
    )
}

/// The condition for mutations that keep a row's local state from being overwritten by a pulled
/// snapshot (the snapshot waits in `tether_deferred_snapshots`): unsent ones, and failed ones,
/// which wait for the user's `tether_retry` or `tether_discard` with the local value kept.
pub const HELD: &str = unsynced!("sync_status IN ('pending', 'failed')");

/// Rows whose local state a pulled snapshot must not overwrite ([`HELD`]). The flag: one of
/// their mutations has already gone into a request (the server may have it).
/// Read inside a write transaction: the rows it logged itself so far are indexed first.
pub fn held_entities(conn: &Connection) -> Result<std::collections::HashMap<String, bool>> {
    index_new_rows(conn)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT entity_id, max(first_sent_at IS NOT NULL) FROM tether_mutation_logs
          WHERE {HELD} GROUP BY entity_id"
    ))?;
    let entities = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(entities)
}

/// Notes that these mutations went into a request body (kept from the first time).
pub fn mark_sent(conn: &Connection, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    write_txn(conn, |conn| {
        conn.prepare_cached(
            "UPDATE tether_mutation_logs SET first_sent_at = CURRENT_TIMESTAMP
              WHERE id IN (SELECT value FROM json_each(?1)) AND first_sent_at IS NULL",
        )?
        .execute([serde_json::to_string(ids)?])?;
        Ok(())
    })
}
