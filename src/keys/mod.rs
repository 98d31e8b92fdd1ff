//! The key pass of tables tracked with `{"keys": "on_sync"}`. Their capture trigger logs an
//! INSERT as one `create` with `sync_status = 'unkeyed'`, no key, no payload and the row's
//! INTEGER PRIMARY KEY as `locator` (sql/triggers/v3_keyless_insert.sql). When a sync, push or
//! pull starts, each such create, newest first, is settled by what the database holds now:
//!
//! - a newer create for the same row waits or failed (logged by another connection during the
//!   pass, or refused): that one speaks for the row; this one goes;
//! - no row at the locator: the row was deleted before it was ever sent; the create goes;
//! - a row that already has its key and its `tether_row_keys` record: a later create for the
//!   same locator claimed it (rowid reuse, REPLACE of a keyless row), or a repair or the
//!   full-path trigger keyed it; the create goes;
//! - a row with a key but no record (the user set it): the create is that key's;
//! - a row without a key: it takes over the key of its locator's record when no row holds that
//!   key (it replaced a keyed row through INSERT OR REPLACE: one `update` of that entity), else
//!   a new ULID (one `create`); the key is written into the row (the user's own triggers run, as
//!   they would at insert), then the payload is read from the row as it is now.
//!
//! The settled create keeps its place in the queue, so rows reach the server in the order they
//! were written, and nothing after the oldest unkeyed create is sent before it is settled
//! ([`first_unkeyed`]). Chunks are short transactions; a crash loses at most the chunk running.
//! A row the database will not take its key or payload for (a trigger of the table's own, a
//! value too large) fails alone (`invalid_value`); any other error fails the pass, to be run
//! again. Rows of tables with keys on insert that a write left without a key get such a create
//! first ([`orphans`]).
use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

use crate::db::write_txn;
use crate::error::{Error, Result};
use crate::queue::UNSYNCED;

mod orphans;
mod place;
pub use orphans::keyless_rows_unqueued;
pub use place::TableShape;
use place::{locate, Located, Place};

/// What the message of a create that failed because its table changed asks for; tracking the
/// table again retries those (and only those).
const RETRACK: &str = "tether_track the table again (it gives the key then)";

/// Unkeyed creates settled per transaction.
const CHUNK: i64 = 500;

/// The condition for creates waiting for their keys (served by the partial index of unsynced
/// mutations).
pub const UNKEYED: &str = crate::queue::unsynced!("sync_status = 'unkeyed'");

/// Creates of rows that have no key yet: waiting for it, or failed to get it (`locator` names the
/// row).
pub const WAITING_OR_REFUSED: &str =
    crate::queue::unsynced!("sync_status IN ('unkeyed', 'failed') AND entity_id = ''");

/// The log id of the oldest unkeyed create: mutations from it on wait (`i64::MAX` when none).
/// Read outside a transaction too: the index first, then the rows captured since.
pub fn first_unkeyed(conn: &Connection) -> Result<i64> {
    let first: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT coalesce(
                 (SELECT id FROM tether_mutation_logs WHERE {UNKEYED} ORDER BY id LIMIT 1),
                 (SELECT id FROM tether_mutation_logs
                   WHERE {} AND sync_status = 'unkeyed' ORDER BY id LIMIT 1))",
            crate::queue::NOT_INDEXED
        ))?
        .query_row([], |r| r.get(0))?;
    Ok(first.unwrap_or(i64::MAX))
}

/// What a key pass did.
#[derive(Default)]
pub struct Given {
    /// Creates settled: given their keys, or dropped.
    pub settled: usize,
    /// Creates that failed locally (their rows could not get keys), as a push reports
    /// mutations that failed before they could be sent.
    pub failed: Vec<serde_json::Value>,
}

/// Settles every unkeyed create (of `only_model`, or of all models), newest first, in short
/// transactions (a sync cycle renews its lease in each: [`crate::engine::lock::Lease::fence`]),
/// calling `between_chunks` after each.
pub fn give(
    conn: &Connection,
    only_model: Option<&str>,
    between_chunks: &mut dyn FnMut() -> Result<()>,
) -> Result<Given> {
    orphans::queue_keyless_rows(conn, only_model)?;
    if first_unkeyed(conn)? == i64::MAX {
        return Ok(Given::default());
    }
    let mut tables = HashMap::new();
    for table in crate::tracking::tracked_tables(conn)? {
        if only_model.is_some_and(|model| model != table.model) {
            continue;
        }
        // Whatever the schema check saw (it may not have run since the table appeared).
        if table.keys_on_sync() {
            crate::tracking::whole_key_index_if_referred(conn, &table)?;
        }
        let place = locate(conn, &TableShape::from(&table))?;
        tables.insert(table.model.clone(), place);
    }
    let (mut below, mut settled, mut failed) = (i64::MAX, 0, Vec::new());
    loop {
        let mut ended = None;
        let chunk = write_txn(conn, |conn| {
            let chunk = settle_chunk(conn, &tables, only_model, below, &mut ended)?;
            match &ended {
                Some(end) => Err(Error::new(end.message.clone())),
                None => Ok(chunk),
            }
        });
        // A trigger of the user's ended the whole transaction (RAISE(ROLLBACK)) while a row got
        // its key: that row fails alone, and the chunk runs again without it.
        if let Some(end) = ended {
            write_txn(conn, |conn| {
                fail(
                    conn,
                    end.id,
                    &end.message,
                    Some((&end.pk_name, end.locator)),
                )
            })?;
            failed.push(end.id);
            continue;
        }
        let chunk = chunk?;
        failed.extend(&chunk.failed);
        let Some(lowest) = chunk.lowest else {
            return Ok(Given {
                settled,
                failed: failures(conn, &failed)?,
            });
        };
        settled += chunk.count;
        below = lowest;
        between_chunks()?;
    }
}

/// The failed creates as a push's local failures list them.
fn failures(conn: &Connection, ids: &[i64]) -> Result<Vec<serde_json::Value>> {
    let mut stmt = conn.prepare_cached(
        "SELECT model, rejection_data, local_pk FROM tether_mutation_logs
          WHERE id = ?1 AND sync_status = 'failed'",
    )?;
    let mut out = Vec::new();
    for id in ids {
        let row: Option<(String, String, Option<String>)> = stmt
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if let Some((model, data, local_pk)) = row {
            let parse = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
            out.push(serde_json::json!({
                "mutation_id": null,
                "reason": "invalid_value",
                "data": parse(&data),
                "row": {"model": model, "primary_key": local_pk.as_deref().map(parse)},
            }));
        }
    }
    Ok(out)
}

/// Settles the unkeyed creates logged under `model` inside the caller's transaction, for the
/// table as `shape` describes it now (tracking settles them before it changes the triggers,
/// untracking before it removes them). With `retry_refused`, creates that failed to get their
/// key are tried again (tracking again is what their message asks for).
pub fn give_in_transaction(
    conn: &Connection,
    model: &str,
    shape: TableShape,
    retry_refused: bool,
) -> Result<usize> {
    if retry_refused {
        conn.prepare_cached(
            &format!("UPDATE tether_mutation_logs
                SET sync_status = 'unkeyed', rejection_reason = NULL, rejection_data = NULL, local_pk = NULL
              WHERE {UNSYNCED} AND sync_status = 'failed' AND entity_id = '' AND model = ?1
                AND instr(rejection_data, ?2) > 0"),
        )?
        .execute((model, RETRACK))?;
    }
    if first_unkeyed(conn)? == i64::MAX {
        return Ok(0);
    }
    let tables = HashMap::from([(model.to_string(), locate(conn, &shape)?)]);
    let (mut below, mut settled) = (i64::MAX, 0);
    loop {
        let mut ended = None;
        let chunk = settle_chunk(conn, &tables, Some(model), below, &mut ended)?;
        // The caller's transaction is gone with it: nothing more can be written.
        if let Some(end) = ended {
            return Err(crate::db::still_in_transaction(
                conn,
                Error::new(end.message),
            )?);
        }
        let Some(lowest) = chunk.lowest else {
            return Ok(settled);
        };
        settled += chunk.count;
        below = lowest;
    }
}

struct Chunk {
    count: usize,
    /// Creates that failed locally.
    failed: Vec<i64>,
    /// The lowest log id seen; None when there was nothing below the bound.
    lowest: Option<i64>,
}

/// A create whose key's write a trigger of the user's answered by ending the transaction.
struct Ended {
    id: i64,
    message: String,
    pk_name: String,
    locator: i64,
}

/// Settles the creates below log id `below`, newest first. When a trigger of the user's ends
/// the transaction (RAISE(ROLLBACK)) it stops there, naming the create in `ended`.
fn settle_chunk(
    conn: &Connection,
    tables: &HashMap<String, Place>,
    only_model: Option<&str>,
    below: i64,
    ended: &mut Option<Ended>,
) -> Result<Chunk> {
    let creates: Vec<(i64, String, Option<i64>, i64)> = conn
        .prepare_cached(&format!(
            "SELECT id, model, locator, timestamp FROM tether_mutation_logs
              WHERE {UNKEYED} AND id < ?1 AND (?2 IS NULL OR model = ?2)
              ORDER BY id DESC LIMIT ?3"
        ))?
        .query_map((below, only_model, CHUNK), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let lowest = creates.last().map(|c| c.0);
    let mut failed = Vec::new();
    for (id, model, locator, timestamp) in &creates {
        match (tables.get(model), locator) {
            (Some(Place::Found(table)), Some(locator)) => {
                let settled = settle(conn, table, model, *id, *locator, *timestamp)?;
                if settled == Ok(true) {
                    failed.push(*id);
                }
                if let Err(message) = settled {
                    *ended = Some(Ended {
                        id: *id,
                        message,
                        pk_name: table.pk_name.clone(),
                        locator: *locator,
                    });
                    return Ok(Chunk {
                        count: 0,
                        failed: Vec::new(),
                        lowest: None,
                    });
                }
            }
            (Some(Place::Changed(why)), Some(locator)) => {
                let message = format!("row {locator} waits for its sync key, but {why}: {RETRACK}");
                fail(conn, *id, &message, None)?;
                failed.push(*id);
            }
            _ => drop_create(conn, *id)?,
        }
        crate::debug::kill_point("keys-inside-chunk");
    }
    Ok(Chunk {
        count: creates.len(),
        failed,
        lowest,
    })
}

/// A create that cannot get its key fails locally (`invalid_value`) with the reason, and
/// `local_pk` naming the row when known: it is listed for attention and holds nothing back.
/// `tether_retry` and tracking the table again put it back to wait for the next key pass.
fn fail(conn: &Connection, id: i64, message: &str, row: Option<(&str, i64)>) -> Result<()> {
    fail_as(conn, id, message, row, None)
}

/// [`fail`], naming the entity when the row has its key (only its payload could not be read).
fn fail_as(
    conn: &Connection,
    id: i64,
    message: &str,
    row: Option<(&str, i64)>,
    entity: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tether_mutation_logs SET sync_status = 'failed', rejection_reason = 'invalid_value',
                entity_id = coalesce(?5, entity_id),
                rejection_data = json_object('message', 'cannot be sent: ' || ?2),
                local_pk = CASE WHEN ?3 IS NOT NULL THEN json_object(?3, ?4) END,
                updated_at = CURRENT_TIMESTAMP
          WHERE id = ?1",
    )?
    .execute((id, message, row.map(|r| r.0), row.map(|r| r.1), entity))?;
    if entity.is_none() {
        // One failure per row: each change of a refused row logs another create, which fails
        // the same way; the older ones are superseded by it.
        conn.prepare_cached(&format!(
            "UPDATE tether_mutation_logs
                SET sync_status = 'resolved', resolution = 'superseded',
                    resolved_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP
              WHERE {UNSYNCED} AND sync_status = 'failed' AND entity_id = ''
                AND id < ?1
                AND model = (SELECT model FROM tether_mutation_logs WHERE id = ?1)
                AND locator = (SELECT locator FROM tether_mutation_logs WHERE id = ?1)"
        ))?
        .execute([id])?;
    }
    Ok(())
}

/// The row itself is what the write cannot take: a constraint or a trigger's RAISE, a value too
/// large, a datatype mismatch, or a function a trigger calls failing on this row's values (a
/// plain SQLITE_ERROR). Not a function, table or column missing ("no such …"): that is this
/// connection's or the schema's, and every row would fail alike; the sync fails until it is
/// fixed. On a table with keys on insert that too fails the row alone
/// ([`Located::any_error_fails_the_row`]).
fn refused_by_the_row(error: &Error, table: &Located) -> bool {
    match error.sqlite_code() {
        Some(
            rusqlite::ErrorCode::ConstraintViolation
            | rusqlite::ErrorCode::TooBig
            | rusqlite::ErrorCode::TypeMismatch,
        ) => true,
        Some(rusqlite::ErrorCode::Unknown) => {
            table.any_error_fails_the_row || !error.message().contains("no such ")
        }
        _ => false,
    }
}

/// Drops a waiting create whose row is gone. The log's newest row is kept, resolved as superseded:
/// the log's ids (an INTEGER PRIMARY KEY without AUTOINCREMENT) must never go back, or a record
/// written while it was the newest (`tether_row_keys.log_id`, `tether_records_dropped`) would
/// seem newer than rows logged after it (`crate::queue`); `crate::engine::prune` keeps it too.
fn drop_create(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM tether_mutation_logs
          WHERE id = ?1 AND id < (SELECT max(id) FROM tether_mutation_logs)",
    )?
    .execute([id])?;
    conn.prepare_cached(
        "UPDATE tether_mutation_logs
            SET sync_status = 'resolved', resolution = 'superseded',
                resolved_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP
          WHERE id = ?1",
    )?
    .execute([id])?;
    Ok(())
}

/// Settles one create; `Ok(Ok(true))` when it failed locally. `Ok(Err(message))`: a trigger of
/// the user's ended the transaction while the row got its key; nothing more may be written in
/// it.
fn settle(
    conn: &Connection,
    table: &Located,
    model: &str,
    id: i64,
    locator: i64,
    timestamp: i64,
) -> Result<std::result::Result<bool, String>> {
    let Located {
        name,
        key,
        pk,
        payload,
        table_id,
        ..
    } = table;
    // A create logged for the same row after this pass began (by another connection, between
    // two chunks) is the row's last: it claims the row at the next pass, at its own place. A
    // newer one that failed to get the key speaks for the row too (a retry puts it back). Only
    // creates newer than the pass are still waiting above this one, and few failed: cheap
    // ranges of the index of unsynced mutations, once it holds what this pass's own writes
    // logged (a trigger of the user's reacting to a key it gave).
    crate::queue::index_new_rows(conn)?;
    let newer: bool = conn
        .prepare_cached(
            &format!("SELECT EXISTS (SELECT 1 FROM tether_mutation_logs
                             WHERE {WAITING_OR_REFUSED} AND id > ?1 AND model = ?2 AND locator = ?3)"),
        )?
        .query_row((id, model, locator), |r| r.get(0))?;
    if newer {
        return drop_create(conn, id).map(|_| Ok(false));
    }
    let row: Option<Option<String>> = conn
        .prepare_cached(&format!("SELECT {key} FROM {name} WHERE {pk} = ?1"))?
        .query_row([locator], |r| r.get(0))
        .optional()?;
    let record: Option<String> = conn
        .prepare_cached("SELECT sync_key FROM tether_row_keys WHERE table_id = ?1 AND row_pk = ?2")?
        .query_row((table_id, locator), |r| r.get(0))
        .optional()?;
    let (entity, operation, give) = match row {
        None => return drop_create(conn, id).map(|_| Ok(false)),
        Some(Some(held)) if record.as_deref() == Some(held.as_str()) => {
            return drop_create(conn, id).map(|_| Ok(false))
        }
        Some(Some(held)) => {
            let known: bool = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM tether_entity_versions WHERE entity_id = ?1)",
                )?
                .query_row([&held], |r| r.get(0))?;
            (held, if known { "update" } else { "create" }, false)
        }
        Some(None) => {
            let mut taken_over = None;
            if let Some(recorded) = record.clone() {
                let held: bool = conn
                    .prepare_cached(&format!(
                        "SELECT EXISTS (SELECT 1 FROM {name} WHERE {key} = ?1)"
                    ))?
                    .query_row([&recorded], |r| r.get(0))?;
                taken_over = (!held).then_some(recorded);
            }
            match taken_over {
                Some(recorded) => (recorded, "update", true),
                None => (
                    crate::identity::ulid_at(timestamp.max(0) as u64),
                    "create",
                    true,
                ),
            }
        }
    };
    // A trigger of the table's own may refuse the key (an append-only guard), ignore it
    // (RAISE(IGNORE)) or delete the row: the row's writes then go in a savepoint, undone, and
    // the row fails alone, as an unsendable value does; the others go on. Without such
    // triggers only the payload can fail (too large): the row keeps its key, and its create
    // fails as that entity's. (A savepoint journals every page it changes: half the pass.)
    let guarded = table.user_triggers;
    if guarded {
        conn.prepare_cached("SAVEPOINT tether_key")?.execute([])?;
    }
    let key_written = std::cell::Cell::new(!give);
    let written = (|| -> Result<Option<String>> {
        // The record first: the trigger that logs a key the application gives
        // (v4_key_given.sql) then knows this one is tether's.
        conn.prepare_cached(
            "INSERT OR REPLACE INTO tether_row_keys (table_id, row_pk, sync_key) VALUES (?1, ?2, ?3)",
        )?
        .execute((table_id, locator, &entity))?;
        if give {
            let changed = conn
                .prepare_cached(&format!(
                    "UPDATE {name} SET {key} = ?1 WHERE {pk} = ?2 AND {key} IS NULL"
                ))?
                .execute((&entity, locator))?;
            if changed == 0 {
                return Ok(Some("a trigger of the table ignored the write".to_string()));
            }
            key_written.set(true);
        }
        // Read after the key is written, found by its key: a trigger of the user's may have
        // changed the row or moved it (its record moved with it).
        let filled = conn
            .prepare_cached(&format!(
                "UPDATE tether_mutation_logs
                    SET entity_id = ?2, operation = ?3, sync_status = 'pending',
                        updated_at = CURRENT_TIMESTAMP,
                        payload = (SELECT {payload} FROM {name} AS t WHERE t.{key} = ?2)
                  WHERE id = ?1 AND EXISTS (SELECT 1 FROM {name} AS t WHERE t.{key} = ?2)"
            ))?
            .execute((id, &entity, operation))?;
        Ok((filled == 0).then(|| "a trigger of the table deleted the row".to_string()))
    })();
    let refused = match written {
        Ok(None) => {
            if guarded {
                conn.prepare_cached("RELEASE tether_key")?.execute([])?;
            }
            return Ok(Ok(false));
        }
        Ok(Some(why)) => why,
        Err(error) if refused_by_the_row(&error, table) && conn.is_autocommit() => {
            return Ok(Err(format!(
                "row {locator} of {:?} could not be given its sync key: {}",
                table.table,
                error.message()
            )))
        }
        Err(error) if refused_by_the_row(&error, table) => error.message().to_string(),
        // Anything else (a function a trigger calls that this connection lacks, on a table with
        // keys on sync; I/O, memory) says nothing against the row: the sync fails and is tried
        // again.
        Err(error) => return Err(error),
    };
    let row = Some((table.pk_name.as_str(), locator));
    if guarded {
        conn.execute_batch("ROLLBACK TO tether_key; RELEASE tether_key")?;
        let message = format!(
            "row {locator} of {:?} could not be given its sync key: {refused}",
            table.table
        );
        fail(conn, id, &message, row)?;
    } else if key_written.get() {
        let message = format!("row {locator} of {:?}: {refused}", table.table);
        fail_as(conn, id, &message, row, Some(&entity))?;
    } else {
        // The key's write failed (its statement undone by SQLite): the record goes back to
        // what it was.
        match &record {
            Some(previous) => conn
                .prepare_cached(
                    "UPDATE tether_row_keys SET sync_key = ?3 WHERE table_id = ?1 AND row_pk = ?2",
                )?
                .execute((table_id, locator, previous))?,
            None => conn
                .prepare_cached("DELETE FROM tether_row_keys WHERE table_id = ?1 AND row_pk = ?2")?
                .execute((table_id, locator))?,
        };
        let message = format!(
            "row {locator} of {:?} could not be given its sync key: {refused}",
            table.table
        );
        fail(conn, id, &message, row)?;
    }
    Ok(Ok(true))
}
