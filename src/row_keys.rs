//! `tether_row_keys`: each tracked row's sync key by its local primary key. The capture triggers
//! keep it; tracking rebuilds it, and uses it to give rows back their own keys after a tool
//! rebuilt the table without the sync key column (a new key would make the server see a new
//! entity, and every row would be duplicated there).
use rusqlite::Connection;

use crate::error::Result;
use crate::sql::{ident, literal};
use crate::triggers::{now_ms, Capture};

/// A condition on the key expression `key`: the server has the entity or will get it (it was
/// sent, is queued, or arrived by pull).
pub fn known_to_server(key: &str) -> String {
    format!(
        "{key} IN (SELECT entity_id FROM tether_entity_versions) OR {key} IN (SELECT entity_id FROM tether_mutation_logs)"
    )
}

/// What [`restore`] did.
#[derive(Default, Debug)]
pub struct Repair {
    /// Rows given back the key they had.
    pub restored: usize,
    /// Rows that had no key and no record: new keys, listed in `temp.tether_newly_keyed`.
    pub assigned: usize,
    /// Recorded keys still held by a row: fewer than half of the records means the table was
    /// emptied or created anew rather than rebuilt.
    pub live_records: usize,
    pub records: usize,
}

/// Gives every row without a key its recorded key (by primary key), then a new ULID to the
/// rest, listing the new ones in `temp.tether_newly_keyed`.
///
/// Keys are restored by primary key only when the key column itself had vanished (a tool
/// rebuilt the table from a model that does not know it) and at least half of the recorded rows
/// are there again: a rebuild copies the rows. A table dropped and created anew holds new rows,
/// even where their primary keys repeat old ones; they get new keys.
///
/// `before_new_keys` runs between the two: rows of a `{"keys": "on_sync"}` table waiting for
/// their keys get them there, in queue order (they have no records, so they do not change what
/// is restored).
pub fn restore(
    conn: &Connection,
    capture: &Capture,
    key_column_vanished: bool,
    before_new_keys: impl FnOnce() -> Result<()>,
) -> Result<Repair> {
    let table = format!("main.{}", ident(capture.table));
    let key = ident(capture.sync_key);
    let row_pk = capture.primary_key.row_pk(&ident(capture.table));
    let id = capture.table_id;
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS tether_newly_keyed (key TEXT PRIMARY KEY);
         DELETE FROM temp.tether_newly_keyed;",
    )?;
    let recorded = format!(
        "EXISTS (SELECT 1 FROM tether_row_keys AS s WHERE s.table_id = {id} AND s.row_pk = {row_pk})"
    );
    // Rows of a `{"keys": "on_sync"}` table waiting for their keys have no record and do not
    // count: waiting rows deleted before a rebuild would make a rebuild look like a new table
    // (and duplicate every row on the server), which is worse than the rare case they would
    // catch (a key given by UPDATE before the first sync, then the table dropped and created
    // anew with a new row at that number, which then takes that key).
    let records: i64 = conn.query_row(
        "SELECT count(*) FROM tether_row_keys WHERE table_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let matching: i64 = if key_column_vanished && records > 0 {
        conn.query_row(
            &format!("SELECT count(*) FROM {table} WHERE {key} IS NULL AND {recorded}"),
            [],
            |r| r.get(0),
        )?
    } else {
        0
    };
    let rebuilt = matching > 0 && matching * 2 >= records;
    if key_column_vanished && !rebuilt {
        // Created anew (or emptied): the records name rows that are gone. A new row at a
        // recorded number must not take over the old key, here or in the key pass below.
        conn.execute("DELETE FROM tether_row_keys WHERE table_id = ?1", [id])?;
    }
    let restored = if !rebuilt {
        0
    } else {
        conn.execute(
            &format!(
                "UPDATE {table} SET {key} = (
                 SELECT s.sync_key FROM tether_row_keys AS s
                  WHERE s.table_id = {id} AND s.row_pk = {row_pk}
                    AND NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{key} = s.sync_key))
              WHERE {key} IS NULL AND {recorded}"
            ),
            [],
        )?
    };
    // Counted before the key pass, whose new records say nothing of a rebuild.
    let live_records: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM tether_row_keys AS s WHERE s.table_id = {id}
                AND EXISTS (SELECT 1 FROM {table} AS t WHERE t.{key} = s.sync_key)"
        ),
        [],
        |r| r.get(0),
    )?;
    before_new_keys()?;
    let mut remember = conn.prepare("INSERT INTO temp.tether_newly_keyed (key) VALUES (?1)")?;
    // Not a row whose key the key pass could not write (a trigger of the table's own refused
    // it): it waits, failed, for the user; writing it here would be refused the same way.
    let mut assign = conn.prepare(&format!(
        "UPDATE {table} SET {key} = tether_ulid()
          WHERE {key} IS NULL
            AND NOT EXISTS (SELECT 1 FROM tether_mutation_logs AS l
                             WHERE l.sync_status <> 'synced' AND l.indexed IS NOT NULL AND l.sync_status = 'failed'
                               AND l.entity_id = '' AND l.model = {model} AND l.locator = {row_pk})
         RETURNING {key}",
        model = literal(capture.model),
    ))?;
    let mut rows = assign.query([])?;
    let mut assigned = 0;
    while let Some(row) = rows.next()? {
        remember.execute([row.get::<_, String>(0)?])?;
        assigned += 1;
    }
    Ok(Repair {
        restored,
        assigned,
        live_records: live_records as usize,
        records: records as usize,
    })
}

/// Recorded rows whose key no row holds any more were deleted without a trigger seeing it (in
/// the window between a rebuild and its repair, or by REPLACE through a constraint capture could
/// not watch): each gets a `delete`. Not when fewer than half of the recorded keys are still
/// held: that table was emptied or created anew by a schema tool, not edited, and the server
/// keeps its rows.
pub fn queue_orphan_deletes(
    conn: &Connection,
    capture: &Capture,
    repair: &Repair,
) -> Result<usize> {
    if repair.live_records == 0 || repair.live_records * 2 < repair.records {
        return Ok(0);
    }
    let queued = conn.execute(
        &format!(
            "INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
             SELECT s.sync_key, {model}, 'delete', '{{}}', {now}
               FROM tether_row_keys AS s
              WHERE s.table_id = {id}
                AND NOT EXISTS (SELECT 1 FROM main.{table} AS t WHERE t.{key} = s.sync_key)",
            model = literal(capture.model),
            now = now_ms()?,
            id = capture.table_id,
            table = ident(capture.table),
            key = ident(capture.sync_key),
        ),
        [],
    )?;
    crate::queue::index_new_rows(conn)?;
    Ok(queued)
}

/// Rewrites the table's records from its rows.
pub fn refresh(conn: &Connection, capture: &Capture) -> Result<()> {
    forget(conn, capture.table_id)?;
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO tether_row_keys (table_id, row_pk, sync_key)
             SELECT {id}, {row_pk}, t.{key} FROM main.{table} AS t WHERE t.{key} IS NOT NULL",
            id = capture.table_id,
            row_pk = capture.primary_key.row_pk("t"),
            table = ident(capture.table),
            key = ident(capture.sync_key),
        ),
        [],
    )?;
    Ok(())
}

pub fn forget(conn: &Connection, table_id: i64) -> Result<()> {
    conn.execute(
        "DELETE FROM tether_row_keys WHERE table_id = ?1",
        [table_id],
    )?;
    conn.execute(
        "DELETE FROM tether_replaced WHERE table_id = ?1",
        [table_id],
    )?;
    Ok(())
}
