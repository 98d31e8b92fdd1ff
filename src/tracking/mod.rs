//! `tether_track` / `tether_untrack`: which tables sync, under which model, which columns.
//! Tracking is idempotent: tracking a table again (by hand, or by [`crate::reconcile`] after a
//! rename or rebuild) brings its key column, key index, row keys and triggers back in line
//! without sending any row the server already has.
use std::sync::Arc;

use rusqlite::functions::Context;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value as Json};

use crate::bail;
use crate::db::write_txn;
use crate::error::{Error, Result};
use crate::functions::{self, connection, required_text, text_arg, Kind};
use crate::queue::UNSYNCED;
use crate::settings::{ConnectionSettings, Settings};
use crate::sql::{ident, literal};
use crate::table_info::{table_info, TableInfo};
use crate::triggers::{self, TRIGGER_VERSION};

mod plan;
use plan::parse_options;
pub(crate) use plan::{default_sync_key, fingerprint, plan, Plan};

/// A row of `tether_tracked_tables`.
#[derive(Clone, Debug)]
pub struct TrackedTable {
    pub table: String,
    pub table_id: i64,
    pub model: String,
    pub sync_key: String,
    pub synced_columns: Vec<String>,
    pub table_columns: Vec<String>,
    pub json_columns: Vec<String>,
    pub trigger_version: i64,
    pub triggers_hash: Option<String>,
    pub(crate) options: String,
    /// Synced columns declared BLOB: hex text from the server is decoded into bytes.
    pub blob_columns: Vec<String>,
    /// Synced columns without a declared type: decoded when the local value is bytes.
    pub untyped_columns: Vec<String>,
    /// Synced columns declared NOT NULL.
    pub not_null_columns: Vec<String>,
}

pub fn tracked_tables(conn: &Connection) -> Result<Vec<TrackedTable>> {
    let mut stmt = conn.prepare_cached(
        "SELECT table_name, table_id, model, sync_key, synced_columns, table_columns, json_columns,
                trigger_version, triggers_hash, options
           FROM tether_tracked_tables ORDER BY table_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get(2)?),
            (r.get::<_, String>(3)?, r.get::<_, String>(4)?),
            (r.get::<_, String>(5)?, r.get::<_, String>(6)?),
            (r.get(7)?, r.get(8)?, r.get(9)?),
        ))
    })?;
    rows.map(|row| {
        let ((table, table_id, model), (sync_key, synced), (all, json), (version, hash, options)) =
            row?;
        let synced_columns: Vec<String> = serde_json::from_str(&synced)?;
        let (mut blob_columns, mut untyped_columns, mut not_null_columns) =
            (Vec::new(), Vec::new(), Vec::new());
        for column in crate::table_info::columns(conn, &table)? {
            if !synced_columns.contains(&column.name) {
                continue;
            }
            if column.not_null {
                not_null_columns.push(column.name.clone());
            }
            if column.declared_blob() {
                blob_columns.push(column.name);
            } else if column.untyped() {
                untyped_columns.push(column.name);
            }
        }
        Ok(TrackedTable {
            blob_columns,
            untyped_columns,
            not_null_columns,
            table,
            table_id,
            model,
            sync_key,
            synced_columns,
            table_columns: serde_json::from_str(&all)?,
            json_columns: serde_json::from_str(&json)?,
            trigger_version: version,
            triggers_hash: hash,
            options,
        })
    })
    .collect()
}

impl TrackedTable {
    /// Tracked with `{"keys": "on_sync"}`: rows may wait for their keys (`crate::keys`).
    pub fn keys_on_sync(&self) -> bool {
        serde_json::from_str::<plan::TrackOptions>(&self.options)
            .is_ok_and(|options| options.keys_on_sync().unwrap_or(false))
    }
}

/// Adds the sync key column if missing and its unique index. Tables tracked with
/// `{"keys": "on_sync"}` get a partial index (`WHERE key IS NOT NULL`): a row inserted without a
/// key then writes no index entry until its key is given, one page less per transaction. A
/// foreign key of another table referring to the sync key needs a full index: then it stays full.
fn ensure_sync_key_column(
    conn: &Connection,
    info: &TableInfo,
    sync_key: &str,
    keys_on_sync: bool,
) -> Result<bool> {
    let table = &info.name;
    let added = match info
        .columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(sync_key))
    {
        Some(column) if column.is_primary_key() || column.generated => {
            bail!("{sync_key:?} of {table:?} is a primary key or generated column and cannot hold sync keys")
        }
        Some(_) => false,
        None => {
            conn.execute_batch(&format!(
                "ALTER TABLE main.{} ADD COLUMN {} TEXT",
                ident(table),
                ident(sync_key)
            ))?;
            true
        }
    };
    let partial = keys_on_sync && !referred_to(conn, table, sync_key)?;
    create_key_index(conn, table, sync_key, partial)?;
    Ok(added)
}

/// Creates the sync key's unique index, replacing one that is partial where it should be whole
/// or the other way round.
fn create_key_index(conn: &Connection, table: &str, sync_key: &str, partial: bool) -> Result<()> {
    let index = key_index(table);
    if key_index_partial(conn, table)?.is_some_and(|was| was != partial) {
        conn.execute_batch(&format!("DROP INDEX main.{}", ident(&index)))?;
    }
    let key = ident(sync_key);
    let only_keyed = if partial {
        format!(" WHERE {key} IS NOT NULL")
    } else {
        String::new()
    };
    conn.execute_batch(&format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS main.{} ON {} ({key}){only_keyed}",
        ident(&index),
        ident(table),
    ))
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::new(format!(
                "column {sync_key:?} of {table:?} holds duplicate values; sync keys must be unique"
            ))
        }
        other => other.into(),
    })?;
    Ok(())
}

/// A table created since tracking may refer to an on_sync table's sync key. SQLite takes only a
/// whole unique index as a foreign key's target and otherwise refuses, with "foreign key
/// mismatch", writes to that table, deletes here and the key pass's own UPDATEs: the index is
/// made whole before any key is given.
pub(crate) fn whole_key_index_if_referred(conn: &Connection, table: &TrackedTable) -> Result<()> {
    if key_index_partial(conn, &table.table)? == Some(true)
        && referred_to(conn, &table.table, &table.sync_key)?
    {
        write_txn(conn, |conn| {
            create_key_index(conn, &table.table, &table.sync_key, false)
        })?;
    }
    Ok(())
}

/// Rows of `{"keys": "on_sync"}` tables waiting for their keys get them in the key pass's own
/// short transactions first, where a row a trigger of the user's refuses (even with
/// RAISE(ROLLBACK)) fails alone; what is left (a table whose shape changed) is settled inside
/// the tracking transaction. Not inside the caller's transaction: everything is settled there.
fn settle_waiting_rows(conn: &Connection, name: &str) -> Result<()> {
    if !conn.is_autocommit() || crate::keys::first_unkeyed(conn)? == i64::MAX {
        return Ok(());
    }
    let tracked = tracked_tables(conn)?
        .into_iter()
        .find(|t| t.table.eq_ignore_ascii_case(name));
    if let Some(table) = tracked {
        whole_key_index_if_referred(conn, &table)?;
        crate::keys::give(conn, Some(&table.model), &mut || Ok(()))?;
    }
    Ok(())
}

/// Whether `table`'s sync key index leaves rows without a key out; `None` when it has none.
pub(crate) fn key_index_partial(conn: &Connection, table: &str) -> Result<Option<bool>> {
    Ok(conn
        .query_row(
            "SELECT partial FROM pragma_index_list(?1, 'main') WHERE name = ?2",
            [table, &key_index(table)],
            |r| r.get(0),
        )
        .optional()?)
}

/// True when a foreign key of some table refers to `table`'s column `column`.
pub(crate) fn referred_to(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (
             SELECT 1 FROM main.sqlite_schema AS s, pragma_foreign_key_list(s.name, 'main') AS f
              WHERE s.type = 'table' AND f.\"table\" = ?1 COLLATE NOCASE AND f.\"to\" = ?2 COLLATE NOCASE)",
        [table, column],
        |r| r.get(0),
    )?)
}

/// The name of the unique index on a table's sync key.
pub fn key_index(table: &str) -> String {
    format!("tether_sync_key_{table}")
}

/// Columns that hold JSON, learned from a server that sent an array or object for them: from
/// now on their text travels as JSON, whoever writes the row. Runs inside the applying
/// transaction; the registry is read again, so learning twice changes nothing.
/// Remembers columns of `model` that pulled snapshots carried (the server echoes them back); a
/// column the server once said it ignored and now sends is no longer ignored. Writes only when
/// something is new.
pub(crate) fn learn_server_columns(
    conn: &Connection,
    model: &str,
    columns: &std::collections::BTreeSet<String>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tether_tracked_tables
            SET server_columns = (SELECT json_group_array(value) FROM (
                    SELECT value FROM json_each(coalesce(server_columns, '[]'))
                    UNION SELECT value FROM json_each(?2) ORDER BY value)),
                server_ignored = (SELECT json_group_array(value) FROM (
                    SELECT value FROM json_each(server_ignored)
                     WHERE value NOT IN (SELECT value FROM json_each(?2)) ORDER BY value))
          WHERE model = ?1
            AND (server_columns IS NULL OR EXISTS (
                    SELECT 1 FROM json_each(?2) AS n
                     WHERE n.value NOT IN (SELECT value FROM json_each(server_columns))))",
    )?
    .execute((model, serde_json::to_string(columns)?))?;
    Ok(())
}

/// Remembers fields of `model` a server said it ignored (`fields`: a JSON array; text items
/// only).
pub(crate) fn learn_server_ignored(conn: &Connection, model: &str, fields: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tether_tracked_tables
            SET server_ignored = (SELECT json_group_array(value) FROM (
                    SELECT value FROM json_each(server_ignored)
                    UNION SELECT value FROM json_each(?2) WHERE type = 'text' ORDER BY value))
          WHERE model = ?1",
    )?
    .execute((model, fields))?;
    Ok(())
}

pub(crate) fn learn_json_columns(conn: &Connection, table: &str, learned: &[String]) -> Result<()> {
    let Some(existing) = tracked_tables(conn)?.into_iter().find(|t| t.table == table) else {
        return Ok(());
    };
    if learned.iter().all(|c| existing.json_columns.contains(c)) {
        return Ok(());
    }
    let mut json_columns = existing.json_columns.clone();
    json_columns.extend(learned.iter().cloned());
    let existing = TrackedTable {
        json_columns,
        ..existing
    };
    let plan = plan(
        conn,
        &existing.sync_key,
        table_info(conn, table)?,
        None,
        Some(&existing),
    )?;
    let capture = plan.capture();
    let rendered = triggers::render(&capture)?;
    triggers::install(conn, &capture)?;
    // Text stored so far was a plain string; in a JSON column a string is its JSON text. Without
    // this, "123" stored before would be read back, and sent, as the number 123. (Runs inside
    // the applying transaction: not captured.)
    for column in learned {
        conn.execute(
            &format!(
                "UPDATE main.{table} SET {column} = json_quote({column}) WHERE typeof({column}) = 'text'",
                table = crate::sql::ident(table),
                column = crate::sql::ident(column),
            ),
            [],
        )?;
    }
    conn.execute(
        "UPDATE tether_tracked_tables SET json_columns = ?2, triggers_hash = ?3, updated_at = CURRENT_TIMESTAMP
          WHERE table_name = ?1",
        (table, serde_json::to_string(&plan.json_columns)?, fingerprint(&rendered)),
    )?;
    Ok(())
}

pub(crate) fn track(
    conn: &Connection,
    settings: &Settings,
    name: &str,
    options: Option<&str>,
) -> Result<Json> {
    let given = parse_options(options)?;
    let given_explicitly = given.is_some();
    settle_waiting_rows(conn, name)?;
    write_txn(conn, |conn| {
        let info = table_info(conn, name)?;
        let existing = tracked_tables(conn)?
            .into_iter()
            .find(|t| t.table == info.name);
        let plan = plan(
            conn,
            default_sync_key(settings),
            info,
            given,
            existing.as_ref(),
        )?;
        let table = plan.info.name.clone();
        triggers::remove(conn, &table)?;
        let sync_key_added =
            ensure_sync_key_column(conn, &plan.info, &plan.sync_key, plan.keys_on_sync)?;
        let capture = plan.capture();
        // Rows waiting for their keys ({"keys": "on_sync"}) get them, read as the table is now,
        // after recorded keys are restored and before the rows without either get new ones
        // (which would lose their place in the queue).
        let repair = crate::row_keys::restore(conn, &capture, sync_key_added, || {
            if let Some(previous) = &existing {
                crate::keys::give_in_transaction(conn, &previous.model, (&capture).into(), true)?;
            }
            Ok(())
        })?;
        let known = crate::row_keys::known_to_server(&format!("t.{}", ident(&plan.sync_key)));
        let queued_creates = if plan.options.backfill.unwrap_or(true) {
            triggers::queue_rows(conn, &capture, "create", &format!("NOT ({known})"), [])?
        } else {
            0
        };
        let mut queued_updates = 0;
        let mut rerendered = 0;
        if let Some(previous) = &existing {
            queued_updates = queue_newly_synced(conn, &plan, previous, &known)?;
            // Only options the user changes re-render what is queued; a repair never strips
            // values already captured.
            if given_explicitly {
                rerendered = rerender_pending(conn, &plan, previous)?;
            }
        }
        let queued_deletes = crate::row_keys::queue_orphan_deletes(conn, &capture, &repair)?;
        crate::row_keys::refresh(conn, &capture)?;
        let rendered = triggers::render(&capture)?;
        let trigger_names = triggers::install(conn, &capture)?;
        let mut table_columns: Vec<String> =
            plan.info.columns.iter().map(|c| c.name.clone()).collect();
        if sync_key_added {
            table_columns.push(plan.sync_key.clone());
        }
        conn.execute(
            "INSERT INTO tether_tracked_tables
                 (table_name, table_id, model, sync_key, synced_columns, table_columns, json_columns,
                  trigger_version, triggers_hash, options)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (table_name) DO UPDATE SET
                 model = excluded.model, sync_key = excluded.sync_key, synced_columns = excluded.synced_columns,
                 table_columns = excluded.table_columns, json_columns = excluded.json_columns,
                 trigger_version = excluded.trigger_version, triggers_hash = excluded.triggers_hash,
                 options = excluded.options, updated_at = CURRENT_TIMESTAMP",
            (
                &table,
                plan.table_id,
                &plan.model,
                &plan.sync_key,
                serde_json::to_string(&plan.synced)?,
                serde_json::to_string(&table_columns)?,
                serde_json::to_string(&plan.json_columns)?,
                TRIGGER_VERSION,
                fingerprint(&rendered),
                serde_json::to_string(&plan.options)?,
            ),
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                Error::new(format!("model {:?} is already used by another tracked table; give a distinct \"model\"", plan.model))
            }
            other => other.into(),
        })?;
        let warnings = crate::shape::findings(conn, &table, &plan.sync_key, &plan.synced)?;
        Ok(json!({
            "table": table,
            "model": plan.model,
            "sync_key": plan.sync_key,
            "columns": plan.synced,
            "json_columns": plan.json_columns,
            "sync_key_added": sync_key_added,
            "keys": if plan.keys_on_sync { "on_sync" } else { "on_insert" },
            "keys_restored": repair.restored,
            "keys_assigned": repair.assigned,
            "queued_creates": queued_creates,
            "queued_updates": queued_updates,
            "queued_deletes": queued_deletes,
            "pending_rerendered": rerendered,
            "retracked": existing.is_some(),
            "triggers": trigger_names,
            "warnings": warnings,
        }))
    })
}

/// Columns that joined the synced set since the table was last tracked (ADD COLUMN, changed
/// options) were never captured: rows known to the server whose value there is not the column's
/// default get one `update`, so writes made before the re-track are not lost.
fn queue_newly_synced(
    conn: &Connection,
    plan: &Plan,
    previous: &TrackedTable,
    known: &str,
) -> Result<usize> {
    let differs: Vec<String> = plan
        .synced
        .iter()
        .filter(|c| !previous.synced_columns.contains(c))
        .filter_map(|c| plan.info.column(c))
        .map(|c| {
            let default = c.default.clone().unwrap_or_else(|| "NULL".to_string());
            format!("t.{} IS NOT ({default})", ident(&c.name))
        })
        .collect();
    if differs.is_empty() {
        return Ok(0);
    }
    triggers::queue_rows(
        conn,
        &plan.capture(),
        "update",
        &format!("({known}) AND ({})", differs.join(" OR ")),
        [],
    )
}

/// Queued mutations not yet sent follow changed options: a new model name applies to them, and
/// values of columns no longer synced are taken out (a column newly excluded is never sent).
fn rerender_pending(conn: &Connection, plan: &Plan, previous: &TrackedTable) -> Result<usize> {
    let unsent = format!("{} AND mutation_id IS NULL", crate::queue::PENDING);
    let mut changed = 0;
    let dropped: Vec<&String> = previous
        .synced_columns
        .iter()
        .filter(|c| !plan.synced.contains(c))
        .collect();
    if !dropped.is_empty() {
        let paths = dropped
            .iter()
            .map(|c| triggers::json_path(c).map(|p| literal(&p)))
            .collect::<Result<Vec<_>>>()?;
        changed += conn.execute(
            &format!(
                "UPDATE tether_mutation_logs SET payload = json_remove(payload, {}), updated_at = CURRENT_TIMESTAMP
                  WHERE {unsent} AND model = ?1 AND operation <> 'delete'",
                paths.join(", ")
            ),
            [&previous.model],
        )?;
    }
    if previous.model != plan.model {
        changed += conn.execute(
            &format!("UPDATE tether_mutation_logs SET model = ?2, updated_at = CURRENT_TIMESTAMP WHERE {unsent} AND model = ?1"),
            (&previous.model, &plan.model),
        )?;
        // What waits for the user or for a retry stays the table's: refused and conflicting
        // changes (a retry sends the row under the new model), diverged and quarantined rows.
        for sql in [
            "UPDATE tether_deferred_snapshots SET model = ?2 WHERE model = ?1",
            &format!(
                "UPDATE tether_mutation_logs SET model = ?2
              WHERE {UNSYNCED} AND sync_status IN ('failed', 'conflict') AND model = ?1"
            ),
            "UPDATE tether_diverged SET model = ?2 WHERE model = ?1",
            "UPDATE tether_quarantine SET model = ?2 WHERE model = ?1",
        ] {
            conn.execute(sql, (&previous.model, &plan.model))?;
        }
    }
    Ok(changed)
}

fn untrack(conn: &Connection, name: &str) -> Result<Json> {
    settle_waiting_rows(conn, name)?;
    write_txn(conn, |conn| {
        let table = tracked_tables(conn)?
            .into_iter()
            .find(|t| t.table.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::new(format!("{name:?} is not tracked")))?;
        // The table stays as an application table: a foreign key to its sync key may come
        // later, and SQLite takes only a whole index as its target (nothing checks it after this).
        if key_index_partial(conn, &table.table)? == Some(true) {
            create_key_index(conn, &table.table, &table.sync_key, false)?;
        }
        // Rows still waiting for their keys get them: what is queued is sent as for any table.
        crate::keys::give_in_transaction(conn, &table.model, (&table).into(), false)?;
        triggers::remove(conn, &table.table)?;
        conn.execute(
            "DELETE FROM tether_tracked_tables WHERE table_name = ?1",
            [&table.table],
        )?;
        crate::row_keys::forget(conn, table.table_id)?;
        // With what giving the keys logged (a trigger of the user's reacting to a key).
        crate::queue::index_new_rows(conn)?;
        let pending: i64 = conn.query_row(
            &format!(
                "SELECT count(*) FROM tether_mutation_logs WHERE {} AND model = ?1",
                crate::queue::PENDING
            ),
            [&table.model],
            |r| r.get(0),
        )?;
        Ok(
            json!({"table": table.table, "model": table.model, "untracked": true, "pending": pending}),
        )
    })
}

pub fn register(conn: &Connection, session: Arc<ConnectionSettings>) -> Result<()> {
    let untrack_session = session.clone();
    functions::register(
        conn,
        "tether_track",
        &[1, 2],
        Kind::Writes,
        move |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            let table = required_text(ctx, 0, "the table name")?;
            let options = if ctx.len() > 1 {
                text_arg(ctx, 1, "the options")?
            } else {
                None
            };
            let settings = Settings::load(&conn, &session)?;
            // A renamed table must be followed first, or tracking its new name would capture
            // every write twice.
            session.schema_watch().reconcile(&conn, &settings)?;
            Ok(track(&conn, &settings, &table, options.as_deref())?.to_string())
        },
    )?;
    functions::register(
        conn,
        "tether_untrack",
        &[1],
        Kind::Writes,
        move |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            let table = required_text(ctx, 0, "the table name")?;
            let result = untrack(&conn, &table)?;
            untrack_session.schema_watch().forget();
            Ok(result.to_string())
        },
    )
}
