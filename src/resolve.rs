//! Resolving what the server refused or answered with a conflict, from SQL. `tether_retry` sends
//! rows' current state again; `tether_discard` gives up their local changes and puts back the
//! server's last known state. Either settles the rows' failed, conflicting and unsent mutations
//! as `resolved` (out of the status counts, pruned with `retention_days`). What needs attention is
//! the view `tether_attention` (sql/migrations/0004).
use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::functions::Context;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Map, Value};

use crate::bail;
use crate::engine::apply::{self, Outcome, ServerRow, Settled};
use crate::engine::lock::Lease;
use crate::error::{Error, Result};
use crate::functions::{self, connection, required_text, Kind};
use crate::queue::UNSYNCED;
use crate::settings::{ConnectionSettings, Settings};
use crate::sql::ident;
use crate::tracking::{tracked_tables, TrackedTable};

/// Rows settled per write transaction: the write lock stays short however many rows a call
/// resolves.
const ROWS_PER_TRANSACTION: usize = 200;
/// Rows listed one by one in a result (all are counted).
const ROWS_LISTED: usize = 100;
/// How long a call waits for a running sync cycle to finish.
const LOCK_WAIT_MS: u64 = 10_000;

#[derive(Clone, Copy, PartialEq)]
enum Resolution {
    Retry,
    Discard,
}

impl Resolution {
    fn label(self) -> &'static str {
        match self {
            Resolution::Retry => "retried",
            Resolution::Discard => "discarded",
        }
    }
}

/// The rows a call is about: every row that needs attention, those of one table, or one row.
struct Target {
    table: Option<TrackedTable>,
    /// The row's sync key, when one row was named.
    entity: Option<String>,
}

/// One call's tally, and the result JSON it becomes.
#[derive(Default)]
struct Tally {
    rows: usize,
    mutations: usize,
    outcomes: std::collections::BTreeMap<&'static str, usize>,
    listed: Vec<Value>,
    /// Rows left as they are (their table is no longer tracked).
    skipped: usize,
    pull_from_start: bool,
}

impl Tally {
    fn row(&mut self, report: Value, outcome: &'static str, mutations: usize) {
        if outcome == NOT_TRACKED || outcome == DROPPED || outcome == REFUSED_NOW {
            self.skipped += 1;
        } else {
            self.rows += 1;
        }
        self.mutations += mutations;
        *self.outcomes.entry(outcome).or_default() += 1;
        if self.listed.len() < ROWS_LISTED {
            self.listed.push(report);
        }
    }

    fn to_json(&self, resolution: Resolution) -> Value {
        let mut out = json!({
            "mutations": self.mutations,
            "outcomes": self.outcomes,
            "rows": self.listed,
            "skipped": self.skipped,
            "more_rows": (self.rows + self.skipped).saturating_sub(self.listed.len()),
        });
        out[resolution.label()] = json!(self.rows);
        if resolution == Resolution::Discard {
            out["pull_from_start"] = json!(self.pull_from_start);
        }
        out
    }
}

/// Finds which rows `table` and `key` name. `key` is the row's sync key, one of its mutation
/// ids, or its local primary key (the value, or a JSON object of the key columns as
/// `tether_attention.local_pk` shows it).
fn target(conn: &Connection, table: Option<&str>, key: Option<Sql>) -> Result<Target> {
    let Some(name) = table else {
        return Ok(Target {
            table: None,
            entity: None,
        });
    };
    let Some(table) = tracked_tables(conn)?.into_iter().find(|t| t.table == name) else {
        bail!("{name:?} is not a tracked table (tether_status() lists them)");
    };
    let Some(key) = key else {
        // A dropped table's rows are listed as left alone, like an untracked table's.
        return Ok(Target {
            table: Some(table),
            entity: None,
        });
    };
    if !crate::table_info::table_exists(conn, name)? {
        bail!("{name:?} no longer exists: track it again (tether_track) to resolve its rows, or untrack it");
    }
    let entity = entity_of(conn, &table, &key)?.ok_or_else(|| {
        Error::new(format!(
            "no row of {name:?} has the sync key, mutation id or primary key {}",
            describe(&key)
        ))
    })?;
    if entity.is_empty() {
        bail!(
            "row {} of {name:?} is waiting for its sync key, which could not be written (tether_attention says why): tether_retry({name:?}) tries every such row of the table again, tether_discard({name:?}) leaves them unsynced",
            describe(&key)
        );
    }
    Ok(Target {
        table: Some(table),
        entity: Some(entity),
    })
}

fn describe(key: &Sql) -> String {
    match key {
        Sql::Text(text) => format!("{text:?}"),
        Sql::Integer(i) => i.to_string(),
        Sql::Real(r) => r.to_string(),
        Sql::Null => "NULL".into(),
        Sql::Blob(_) => "(a BLOB)".into(),
    }
}

fn entity_of(conn: &Connection, table: &TrackedTable, key: &Sql) -> Result<Option<String>> {
    if let Sql::Text(text) = key {
        let by_mutation: Option<String> = conn
            .prepare_cached(
                "SELECT entity_id FROM tether_mutation_logs WHERE mutation_id = ?1 AND model = ?2",
            )?
            .query_row((text, &table.model), |r| r.get(0))
            .optional()?;
        if by_mutation.is_some() {
            return Ok(by_mutation);
        }
        let known: bool = conn
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM main.{} WHERE {} = ?1)
                     OR EXISTS (SELECT 1 FROM tether_diverged WHERE entity_id = ?1 AND model = ?2)
                     OR EXISTS ({})",
                ident(&table.table),
                ident(&table.sync_key),
                crate::queue::unsynced_rows("1", "entity_id = ?1 AND model = ?2")
            ))?
            .query_row((text, &table.model), |r| r.get(0))?;
        if known {
            return Ok(Some(text.clone()));
        }
    }
    // The local primary key: one value, or a JSON object of the key columns.
    let columns = crate::table_info::primary_key_columns(conn, &table.table)?;
    let object = match key {
        Sql::Text(text) if text.starts_with('{') => {
            serde_json::from_str::<Map<String, Value>>(text).ok()
        }
        _ => None,
    };
    let object_key = object.clone();
    let (conditions, values): (Vec<String>, Vec<Sql>) = match object {
        Some(object) => {
            let mut pairs = (Vec::new(), Vec::new());
            for (name, value) in &object {
                let column = match columns.iter().find(|c| *c == name) {
                    Some(column) => ident(column),
                    None if columns.is_empty() && name == "rowid" => "rowid".to_string(),
                    None => bail!("{name:?} is not a primary key column of {:?}", table.table),
                };
                pairs.0.push(format!("{column} = ?{}", pairs.1.len() + 1));
                pairs.1.push(apply::to_sql(value));
            }
            pairs
        }
        None if columns.len() > 1 => return Ok(None),
        None => {
            let column = columns.first().map_or("rowid".to_string(), |c| ident(c));
            (vec![format!("{column} = ?1")], vec![key.clone()])
        }
    };
    if conditions.is_empty() {
        return Ok(None);
    }
    let live: Option<String> = conn
        .prepare_cached(&format!(
            "SELECT {} FROM main.{} WHERE {} AND {} IS NOT NULL",
            ident(&table.sync_key),
            ident(&table.table),
            conditions.join(" AND "),
            ident(&table.sync_key)
        ))?
        .query_row(rusqlite::params_from_iter(values), |r| r.get(0))
        .optional()?;
    if live.is_some() {
        return Ok(live);
    }
    // A row gone here since: the primary key recorded when its change failed or was discarded.
    let name = match (&object_key, columns.as_slice()) {
        (Some(object), _) => {
            return recorded(conn, table, &Value::Object(object.clone()).to_string());
        }
        (None, [column]) => column.as_str(),
        (None, []) => "rowid",
        _ => return Ok(None),
    };
    // A key typed as text ("7", from a command line) may name the integer key 7.
    let mut forms = vec![json!({ name: sql_to_json(key) })];
    if let Sql::Text(text) = key {
        if let Ok(number) = text.parse::<i64>() {
            if number.to_string() == *text {
                forms.push(json!({ name: number }));
            }
        }
    }
    for form in forms {
        if let Some(entity) = recorded(conn, table, &form.to_string())? {
            return Ok(Some(entity));
        }
    }
    Ok(None)
}

/// The row a failed, conflicting or diverged change recorded `local_pk` for.
fn recorded(conn: &Connection, table: &TrackedTable, local_pk: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT entity_id FROM tether_mutation_logs
              WHERE {UNSYNCED} AND sync_status IN ('failed', 'conflict')
                AND model = ?1 AND local_pk = ?2
             UNION ALL
             SELECT entity_id FROM tether_diverged WHERE model = ?1 AND local_pk = ?2
             LIMIT 1"
        ))?
        .query_row((&table.model, local_pk), |r| r.get(0))
        .optional()?)
}

fn sql_to_json(value: &Sql) -> Value {
    match value {
        Sql::Integer(i) => json!(i),
        Sql::Real(r) => json!(r),
        Sql::Text(t) => json!(t),
        Sql::Null | Sql::Blob(_) => Value::Null,
    }
}

/// The rows to resolve, oldest failure first (so a parent goes before its children): rows with
/// a failed or conflicting mutation, and a row a discard left diverged when a retry names it
/// (never in a retry of many rows: its local value is what the user discarded).
fn rows_to_resolve(
    conn: &Connection,
    target: &Target,
    resolution: Resolution,
) -> Result<Vec<(String, String)>> {
    let model = target.table.as_ref().map(|t| t.model.clone());
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT entity_id, model FROM (
             SELECT entity_id, model, min(id) AS first FROM tether_mutation_logs
              WHERE {UNSYNCED} AND sync_status IN ('failed', 'conflict')
                AND (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR entity_id = ?2)
                AND entity_id <> ''
              GROUP BY entity_id
             UNION ALL
             SELECT entity_id, model, NULL FROM tether_diverged
              WHERE ?3 AND (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR entity_id = ?2))
          GROUP BY entity_id ORDER BY min(first) IS NULL, min(first), entity_id"
    ))?;
    let rows = stmt
        .query_map(
            (
                &model,
                &target.entity,
                resolution == Resolution::Retry && target.entity.is_some(),
            ),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// A row's mutations that the server has not taken: failed, conflicting, or unsent.
struct Open {
    ids: Vec<i64>,
    /// The last one is a conflict (the local change it carried was overwritten then).
    last_conflict: Option<(String, String)>,
    failed_or_conflict: bool,
    only_conflicts: bool,
    /// One of them was sent and not answered: the server may have it.
    maybe_taken: bool,
    last_operation: Option<String>,
}

fn open_mutations(conn: &Connection, entity: &str) -> Result<Open> {
    // With what this transaction's own writes logged so far (a trigger of the user's reacting
    // to a row put back).
    crate::queue::index_new_rows(conn)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, sync_status, operation, payload, first_sent_at IS NOT NULL
           FROM tether_mutation_logs
          WHERE {UNSYNCED} AND sync_status IN ('failed', 'conflict', 'pending')
            AND entity_id = ?1
          ORDER BY id"
    ))?;
    let mut open = Open {
        ids: Vec::new(),
        last_conflict: None,
        failed_or_conflict: false,
        only_conflicts: true,
        maybe_taken: false,
        last_operation: None,
    };
    let mut rows = stmt.query([entity])?;
    while let Some(row) = rows.next()? {
        let (status, operation): (String, String) = (row.get(1)?, row.get(2)?);
        open.ids.push(row.get(0)?);
        open.failed_or_conflict |= status != "pending";
        open.only_conflicts &= status == "conflict";
        open.maybe_taken |= status == "pending" && row.get::<_, bool>(4)?;
        open.last_conflict = if status == "conflict" {
            Some((operation.clone(), row.get(3)?))
        } else {
            None
        };
        open.last_operation = Some(operation);
    }
    Ok(open)
}

/// Settles a row's open mutations as resolved.
fn resolve(conn: &Connection, ids: &[i64], resolution: Resolution) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tether_mutation_logs
            SET sync_status = 'resolved', resolution = ?2, resolved_at = CURRENT_TIMESTAMP,
                updated_at = CURRENT_TIMESTAMP
          WHERE id IN (SELECT value FROM json_each(?1))",
    )?
    .execute((serde_json::to_string(ids)?, resolution.label()))?;
    Ok(())
}

/// Whether the server has never had the row, or no longer has it: its latest create was refused,
/// or a change was answered `not_found`, and no change of it was applied since. Reads the index
/// of unsynced mutations, then only the log after that answer.
fn server_lacks(conn: &Connection, entity: &str) -> Result<bool> {
    let refused: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT max(id) FROM tether_mutation_logs
              WHERE {UNSYNCED} AND sync_status IN ('failed', 'resolved')
                AND entity_id = ?1
                AND ((operation = 'create' AND rejection_reason <> 'conflict')
                     OR rejection_reason = 'not_found')"
        ))?
        .query_row([entity], |r| r.get(0))?;
    let Some(refused) = refused else {
        return Ok(false);
    };
    let applied_since: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tether_mutation_logs
              WHERE id > ?1 AND entity_id = ?2 AND sync_status = 'synced' AND operation <> 'delete')",
        )?
        .query_row((refused, entity), |r| r.get(0))?;
    Ok(!applied_since)
}

/// Rows of a model no longer tracked are left as they are (tracking the table again brings them
/// back within reach).
const NOT_TRACKED: &str = "not tracked: track its table again to resolve it";
/// Rows of a tracked table that no longer exists are left as they are too.
const DROPPED: &str = "its table no longer exists: track it again, or untrack it";
/// A retry whose row the database refuses now (its local change names a parent deleted since,
/// holds a value another row took): left as it was, the others go on.
const REFUSED_NOW: &str = "left as it is: the database refuses its local change now (see error)";

fn untracked(model: &str, entity: &str, outcome: &'static str) -> (Value, &'static str, usize) {
    (json!({"model": model, "entity_id": entity}), outcome, 0)
}

/// The tracked table of `model`, if it still exists; else why its rows are left alone.
fn usable<'t>(
    conn: &Connection,
    tables: &'t [TrackedTable],
    model: &str,
) -> Result<std::result::Result<&'t TrackedTable, &'static str>> {
    Ok(match tables.iter().find(|t| t.model == model) {
        None => Err(NOT_TRACKED),
        Some(table) if !crate::table_info::table_exists(conn, &table.table)? => Err(DROPPED),
        Some(table) => Ok(table),
    })
}

fn queue_delete(conn: &Connection, table: &TrackedTable, entity: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
         VALUES (?1, ?2, 'delete', '{}', ?3)",
    )?
    .execute((entity, &table.model, crate::engine::lock::now_ms()))?;
    crate::queue::index_new_rows(conn)
}

fn last_log_id(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(max(id), 0) FROM tether_mutation_logs",
        [],
        |r| r.get(0),
    )?)
}

fn exists_locally(conn: &Connection, table: &TrackedTable, entity: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM main.{} WHERE {} = ?1)",
            ident(&table.table),
            ident(&table.sync_key)
        ))?
        .query_row([entity], |r| r.get(0))?)
}

/// Retries one row: its open mutations are resolved and the row's current state is queued (a
/// `create` when the server lacks it, else an `update`; a `delete` when the row is gone here but
/// not there). When the last of them is a conflict, the local change it carried is written to
/// the row again, captured, so it is queued over the server's version that replaced it.
fn retry_row(
    conn: &Connection,
    plans: &mut HashMap<String, crate::tracking::Plan>,
    table: &TrackedTable,
    entity: &str,
) -> Result<(&'static str, usize)> {
    let open = open_mutations(conn, entity)?;
    let lacks = server_lacks(conn, entity)?;
    resolve(conn, &open.ids, Resolution::Retry)?;
    conn.prepare_cached("DELETE FROM tether_diverged WHERE entity_id = ?1")?
        .execute([entity])?;
    // The local state wins: a server state waiting in the quarantine is older than what goes now.
    crate::engine::quarantine::forget(conn, entity)?;
    if let Some((operation, payload)) = &open.last_conflict {
        let before = last_log_id(conn)?;
        if operation == "delete" {
            apply::delete(conn, table, entity)?;
            if last_log_id(conn)? == before && !lacks {
                // The row was already gone here (the server's version could not be written).
                queue_delete(conn, table, entity)?;
            }
            return Ok(("delete", open.ids.len()));
        }
        apply::upsert(conn, table, entity, &apply::stored_payload(payload))?;
        if last_log_id(conn)? != before {
            return Ok(("local change written again", open.ids.len()));
        }
        // The row still holds the local change (the server's version could not be written):
        // it goes as it is.
    }
    if !exists_locally(conn, table, entity)? {
        if lacks {
            return Ok(("nothing to send", open.ids.len()));
        }
        queue_delete(conn, table, entity)?;
        return Ok(("delete", open.ids.len()));
    }
    if !plans.contains_key(&table.table) {
        let plan = crate::tracking::plan(
            conn,
            &table.sync_key,
            crate::table_info::table_info(conn, &table.table)?,
            None,
            Some(table),
        )?;
        plans.insert(table.table.clone(), plan);
    }
    let capture = plans[&table.table].capture();
    let operation = if lacks { "create" } else { "update" };
    let filter = format!("t.{} = ?1", ident(&table.sync_key));
    crate::triggers::queue_rows(conn, &capture, operation, &filter, [entity])?;
    Ok((operation, open.ids.len()))
}

/// Discards one row's open changes and puts back the server's last known state: a snapshot that
/// waited for the push, else one in the quarantine; a row the server lacks is removed; a row
/// whose only open changes are conflicts already holds the server's version. Otherwise nothing
/// is known: the row is recorded as diverged (and the caller pulls from the start).
fn discard_row(
    conn: &Connection,
    applier: &apply::Applier,
    table: &TrackedTable,
    entity: &str,
) -> Result<(&'static str, usize)> {
    let open = open_mutations(conn, entity)?;
    let count = open.ids.len();
    if !open.failed_or_conflict {
        return Ok(("nothing to discard", 0));
    }
    discard_open(conn, applier, table, entity, open).map(|outcome| (outcome, count))
}

fn discard_open(
    conn: &Connection,
    applier: &apply::Applier,
    table: &TrackedTable,
    entity: &str,
    open: Open,
) -> Result<&'static str> {
    let lacks = server_lacks(conn, entity)? && !open.maybe_taken;
    resolve(conn, &open.ids, Resolution::Discard)?;
    let last = open.ids.last().copied().unwrap_or_default();
    if apply::settle_deferred(
        conn,
        applier,
        &[(last, entity.to_string(), Settled::Rejected)],
    )? > 0
    {
        return Ok("server state put back");
    }
    type Waiting = (String, String, String, String);
    let quarantined: Option<Waiting> = conn
        .prepare_cached(
            "SELECT model, operation, payload, source FROM tether_quarantine WHERE entity_id = ?1",
        )?
        .query_row([entity], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    if let Some((model, operation, payload, source)) = quarantined {
        let payload = apply::stored_payload(&payload);
        let row = ServerRow {
            entity,
            model: &model,
            operation: &operation,
            payload: &payload,
            cursor_before: None,
        };
        return Ok(match applier.write(conn, &row, &source)? {
            Outcome::Applied => "server state put back",
            _ => "server state waits in the quarantine",
        });
    }
    if lacks {
        if !exists_locally(conn, table, entity)? {
            return Ok("removed");
        }
        let row = ServerRow {
            entity,
            model: &table.model,
            operation: "delete",
            payload: &Map::new(),
            cursor_before: None,
        };
        return Ok(match applier.write(conn, &row, apply::DISCARD)? {
            Outcome::Applied => "removed",
            _ => "removal waits in the quarantine",
        });
    }
    if open.only_conflicts {
        return Ok("row holds the server's version");
    }
    let row = applier.which_row(conn, &table.model, entity)?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO tether_diverged (entity_id, model, operation, local_pk, message)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute((
        entity,
        &table.model,
        &open.last_operation,
        row.get("primary_key").filter(|k| !k.is_null()).map(Value::to_string),
        "local changes discarded; the row stays as it is here until the server sends it again (the next pull starts from the beginning)",
    ))?;
    crate::engine::pull::rewind_cursor(conn, None)?;
    Ok("diverged")
}

/// Waits (a while) for the sync lock, so no cycle sends or records these rows meanwhile.
fn take_lock(conn: &Connection) -> Result<Lease> {
    let start = std::time::Instant::now();
    loop {
        if let Some(lease) = Lease::acquire(conn, 0, crate::db::SameFile::for_cleanup(conn))? {
            return Ok(lease);
        }
        if start.elapsed().as_millis() as u64 >= LOCK_WAIT_MS {
            bail!("a sync is running (another connection or process holds the sync lock); try again when it ends");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Creates of `{"keys": "on_sync"}` rows whose key could not be written (they failed with no
/// entity): a retry puts them back to wait for the next key pass, a discard leaves the rows
/// unsynced. Only when no single row is named (such a row has no key to name it by).
fn resolve_keyless(
    conn: &Connection,
    resolution: Resolution,
    target: &Target,
    tally: &mut Tally,
) -> Result<()> {
    if target.entity.is_some() {
        return Ok(());
    }
    let model = target.table.as_ref().map(|t| t.model.clone());
    let set = match resolution {
        Resolution::Retry => {
            "sync_status = 'unkeyed', rejection_reason = NULL, rejection_data = NULL, local_pk = NULL"
        }
        Resolution::Discard => {
            "sync_status = 'resolved', resolution = 'discarded', resolved_at = CURRENT_TIMESTAMP"
        }
    };
    let rows: Vec<(String, Option<String>)> = crate::db::write_txn(conn, |conn| {
        let rows = conn
            .prepare(&format!(
                "UPDATE tether_mutation_logs SET {set}, updated_at = CURRENT_TIMESTAMP
                  WHERE {UNSYNCED} AND sync_status = 'failed' AND entity_id = ''
                    AND (?1 IS NULL OR model = ?1)
                 RETURNING model, json_extract(rejection_data, '$.message')"
            ))?
            .query_map([&model], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    })?;
    let outcome = match resolution {
        Resolution::Retry => "key given at the next sync",
        Resolution::Discard => "left unsynced",
    };
    for (model, message) in rows {
        tally.row(json!({"model": model, "message": message}), outcome, 1);
    }
    Ok(())
}

fn run(conn: &Connection, resolution: Resolution, target: &Target) -> Result<Value> {
    let lease = take_lock(conn)?;
    let done = (|| -> Result<Value> {
        let mut keyless = Tally::default();
        resolve_keyless(conn, resolution, target, &mut keyless)?;
        let mut rows = rows_to_resolve(conn, target, resolution)?;
        // One row named that needs nothing: a retry sends it again as it is (an update made
        // while its capture was down, a field the server only listed since).
        if let (Resolution::Retry, Some(entity), Some(table), true) =
            (resolution, &target.entity, &target.table, rows.is_empty())
        {
            rows.push((entity.clone(), table.model.clone()));
        }
        if let (Some(entity), true) = (&target.entity, rows.is_empty()) {
            let mut tally = Tally::default();
            let table = target.table.as_ref().map(|t| t.table.clone());
            tally.listed.push(
                json!({"table": table, "entity_id": entity, "outcome": "nothing needs attention"}),
            );
            return Ok(tally.to_json(resolution));
        }
        let mut tally = keyless;
        let mut plans = HashMap::new();
        for chunk in rows.chunks(ROWS_PER_TRANSACTION) {
            let reports: Vec<(Value, &'static str, usize)> = match resolution {
                Resolution::Retry => crate::db::write_txn(conn, |conn| {
                    let tables = tracked_tables(conn)?;
                    let mut reports = Vec::new();
                    for (entity, model) in chunk {
                        let table = match usable(conn, &tables, model)? {
                            Ok(table) => table,
                            Err(why) => {
                                reports.push(untracked(model, entity, why));
                                continue;
                            }
                        };
                        conn.execute_batch("SAVEPOINT tether_retry_row")?;
                        match retry_row(conn, &mut plans, table, entity) {
                            Ok((outcome, count)) => {
                                conn.execute_batch("RELEASE tether_retry_row")?;
                                let row = apply::which_row(conn, &tables, model, entity)?;
                                reports.push((row, outcome, count));
                            }
                            Err(error) if error.is_row_problem() && !conn.is_autocommit() => {
                                conn.execute_batch(
                                    "ROLLBACK TO tether_retry_row; RELEASE tether_retry_row",
                                )?;
                                let mut row = apply::which_row(conn, &tables, model, entity)?;
                                row["error"] = json!(error.message());
                                reports.push((row, REFUSED_NOW, 0));
                            }
                            Err(error) => {
                                return Err(crate::db::still_in_transaction(conn, error)?)
                            }
                        }
                    }
                    Ok(reports)
                })?,
                Resolution::Discard => apply::in_transaction(conn, |conn, applier| {
                    let mut reports = Vec::new();
                    for (entity, model) in chunk {
                        let table = match usable(conn, &applier.tables(), model)? {
                            Ok(table) => table.clone(),
                            Err(why) => {
                                reports.push(untracked(model, entity, why));
                                continue;
                            }
                        };
                        let (outcome, count) = discard_row(conn, applier, &table, entity)?;
                        reports.push((applier.which_row(conn, model, entity)?, outcome, count));
                    }
                    Ok(reports)
                })?,
            };
            for (mut row, outcome, count) in reports {
                tally.pull_from_start |= outcome == "diverged";
                row["outcome"] = json!(outcome);
                tally.row(row, outcome, count);
            }
            lease.renew(conn)?;
        }
        Ok(tally.to_json(resolution))
    })();
    let released = lease.release(conn);
    let result = done?;
    released?;
    Ok(result)
}

pub fn register(conn: &Connection, session: Arc<ConnectionSettings>) -> Result<()> {
    for (name, resolution, arities) in [
        ("tether_retry", Resolution::Retry, &[0, 1, 2][..]),
        ("tether_discard", Resolution::Discard, &[1, 2][..]),
    ] {
        let session = session.clone();
        functions::register(
            conn,
            name,
            arities,
            Kind::Writes,
            move |ctx: &Context<'_>| {
                let conn = connection(ctx)?;
                if !conn.is_autocommit() {
                    bail!("cannot run inside a transaction: it takes the sync lock and commits in steps; call it outside BEGIN … COMMIT");
                }
                // Tables renamed or rebuilt since are followed first, as a sync would.
                let settings = Settings::load(&conn, &session)?;
                session.schema_watch().reconcile(&conn, &settings)?;
                let table = match ctx.len() {
                    0 => None,
                    _ => Some(required_text(ctx, 0, "the table")?),
                };
                let key = match ctx.len() {
                2 => match ctx.get::<Sql>(1)? {
                    Sql::Null => bail!("the row key is NULL: give the row's sync key, a mutation id or its primary key, or leave it out for the whole table"),
                    key => Some(key),
                },
                _ => None,
            };
                let target = target(&conn, table.as_deref(), key)?;
                Ok(run(&conn, resolution, &target)?.to_string())
            },
        )?;
    }
    Ok(())
}
