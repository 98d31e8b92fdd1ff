//! Tracking follows the table. Other tools change the schema without calling tether (ORM
//! migrations that rebuild a table, ALTER TABLE … RENAME, DROP and CREATE), so on load and at
//! the start of every sync, push, pull, track and status, each tracked table is compared with
//! what its registry entry would generate, and brought back in line by tracking it again:
//! - renamed: its triggers (named after the old name) sit on the new table; the registry
//!   follows, keeping the model name;
//! - rebuilt (triggers, key index or key column gone; columns added or changed): re-tracked,
//!   rows given back their own keys (`tether_row_keys`), rows inserted meanwhile queued as
//!   creates, rows deleted meanwhile as deletes;
//! - dropped: left alone and reported by `tether_status()`.
//!
//! The check is skipped while `PRAGMA schema_version` is what it was at the last check.
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value as Json};

use crate::db::write_txn;
use crate::error::Result;
use crate::queue::NOT_INDEXED;
use crate::settings::Settings;
use crate::sql::ident;
use crate::table_info::{find_table, table_info};
use crate::tracking::{self, key_index, tracked_tables, TrackedTable};
use crate::triggers::{self, TRIGGER_VERSION};

/// Per connection: the schema version at which every tracked table was last found in line.
#[derive(Default)]
pub struct SchemaWatch {
    checked: Mutex<Option<i64>>,
}

impl SchemaWatch {
    /// Repairs what drifted since the last check; returns what was repaired.
    pub fn reconcile(&self, conn: &Connection, settings: &Settings) -> Result<Vec<Json>> {
        let mut checked = self.checked.lock();
        let version = schema_version(conn)?;
        if *checked == Some(version) {
            return Ok(Vec::new());
        }
        let repairs = reconcile(conn, settings)?;
        // The version read before the check: a schema change another connection made meanwhile
        // (or a repair's own) is checked next time. A repair that failed waits for the user (or
        // the next schema change), as status shows: trying it at every call would take the write
        // lock each time.
        *checked = Some(version);
        Ok(repairs)
    }

    /// The next call checks again (after tether itself changed the registry).
    pub fn forget(&self) {
        *self.checked.lock() = None;
    }
}

fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA main.schema_version", [], |r| r.get(0))?)
}

/// How a tracked table stands against its registry entry.
#[derive(Debug, PartialEq)]
pub enum Health {
    InLine,
    /// Present, but something tether installed is missing or outdated: the reason.
    Drifted(String),
    /// Gone, its triggers now on another table.
    Renamed(String),
    Dropped,
}

impl Health {
    pub fn label(&self) -> &'static str {
        match self {
            Health::InLine => "ok",
            Health::Drifted(_) => "needs_repair",
            Health::Renamed(_) => "renamed",
            Health::Dropped => "dropped",
        }
    }
}

pub fn health(conn: &Connection, settings: &Settings, table: &TrackedTable) -> Result<Health> {
    if find_table(conn, &table.table)?.is_none() {
        return Ok(match renamed_to(conn, &table.table)? {
            Some(new_name) => Health::Renamed(new_name),
            None => match holder_of_keys(conn, table)? {
                Some(new_name) => Health::Renamed(new_name),
                None => Health::Dropped,
            },
        });
    }
    let info = table_info(conn, &table.table)?;
    let current: Vec<String> = info.columns.iter().map(|c| c.name.clone()).collect();
    let plan = match tracking::plan(
        conn,
        tracking::default_sync_key(settings),
        info,
        None,
        Some(table),
    ) {
        Ok(plan) => plan,
        Err(error) => return Ok(Health::Drifted(error.to_string())),
    };
    if table.trigger_version != TRIGGER_VERSION {
        return Ok(Health::Drifted("triggers from an older tether".into()));
    }
    if !current
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&table.sync_key))
    {
        return Ok(Health::Drifted(format!(
            "the sync key column {:?} is gone",
            table.sync_key
        )));
    }
    if current != table.table_columns {
        return Ok(Health::Drifted("its columns changed".into()));
    }
    let index: Option<String> = conn
        .query_row(
            "SELECT tbl_name FROM main.sqlite_schema WHERE type = 'index' AND name = ?1",
            [key_index(&table.table)],
            |r| r.get(0),
        )
        .optional()?;
    if !index.is_some_and(|t| t.eq_ignore_ascii_case(&table.table)) {
        return Ok(Health::Drifted("the sync key index is gone".into()));
    }
    // A table created after tracking may refer to the sync key: SQLite refuses a partial index
    // as its target ("foreign key mismatch" on every write to that table, every delete here and
    // every key the key pass writes), so the index is made whole again.
    if tracking::key_index_partial(conn, &table.table)? == Some(true)
        && tracking::referred_to(conn, &table.table, &table.sync_key)?
    {
        return Ok(Health::Drifted(format!(
            "a foreign key refers to its sync key {:?}, which needs a whole unique index",
            table.sync_key
        )));
    }
    let capture = plan.capture();
    if !triggers::triggers_fire_in_order(conn, &table.table)? {
        return Ok(Health::Drifted(
            "its triggers fire in the wrong order".into(),
        ));
    }
    if triggers::installed(conn, &table.table)? != triggers::expected_names(&capture) {
        return Ok(Health::Drifted("capture triggers are missing".into()));
    }
    if plan.synced != table.synced_columns
        || plan.json_columns != table.json_columns
        || plan.model != table.model
        || table.triggers_hash.as_deref()
            != Some(tracking::fingerprint(&triggers::render(&capture)?).as_str())
    {
        return Ok(Health::Drifted(
            "its capture triggers are out of date".into(),
        ));
    }
    Ok(Health::InLine)
}

/// The table a renamed table's triggers now sit on (RENAME keeps trigger names).
fn renamed_to(conn: &Connection, old: &str) -> Result<Option<String>> {
    for name in triggers::trigger_names(old) {
        let table: Option<String> = conn
            .query_row(
                "SELECT tbl_name FROM main.sqlite_schema WHERE type = 'trigger' AND name = ?1",
                [&name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(table) = table.filter(|t| !t.eq_ignore_ascii_case(old)) {
            return Ok(Some(table));
        }
    }
    Ok(None)
}

/// A renamed table that was also rebuilt has lost its triggers, but if the rebuild copied the
/// sync key column, the table holding the recorded keys is the same table under its new name.
/// Read outside a write transaction: records of rows whose deletes tether has not indexed yet
/// are still there (`queue::index_new_rows`), and another table may hold their keys (an archive
/// of deleted rows), so they do not count, unless written after the delete (the row put back);
/// rows the lean insert trigger logged since have no record yet, and count by their creates.
fn holder_of_keys(conn: &Connection, table: &TrackedTable) -> Result<Option<String>> {
    let tracked: Vec<String> = tracked_tables(conn)?.into_iter().map(|t| t.table).collect();
    let candidates: Vec<String> = conn
        .prepare_cached(
            "SELECT s.name FROM main.sqlite_schema AS s
              WHERE s.type = 'table' AND substr(s.name, 1, 7) <> 'sqlite_' AND substr(s.name, 1, 7) <> 'tether_'
                AND EXISTS (SELECT 1 FROM pragma_table_info(s.name, 'main') AS c WHERE c.name = ?1 COLLATE NOCASE)",
        )?
        .query_map([&table.sync_key], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for candidate in candidates.into_iter().filter(|c| !tracked.contains(c)) {
        let holds: bool = conn.query_row(
            &format!(
                "WITH deleted AS MATERIALIZED (
                      SELECT entity_id, max(id) AS last FROM tether_mutation_logs
                       WHERE {NOT_INDEXED} AND operation = 'delete' GROUP BY entity_id),
                      created AS MATERIALIZED (
                      SELECT entity_id, id FROM tether_mutation_logs
                       WHERE {NOT_INDEXED} AND operation = 'create' AND locator IS NOT NULL
                         AND entity_id <> '' AND model = ?2)
                 SELECT EXISTS (SELECT 1 FROM main.{table} AS t JOIN tether_row_keys AS s
                                   ON s.table_id = ?1 AND s.sync_key = t.{key}
                                WHERE NOT EXISTS (SELECT 1 FROM deleted AS d
                                                   WHERE d.entity_id = s.sync_key
                                                     AND d.last > coalesce(s.log_id, 0)))
                     OR EXISTS (SELECT 1 FROM main.{table} AS t JOIN created AS c
                                   ON c.entity_id = t.{key}
                                WHERE NOT EXISTS (SELECT 1 FROM deleted AS d
                                                   WHERE d.entity_id = c.entity_id AND d.last > c.id))",
                table = ident(&candidate),
                key = ident(&table.sync_key)
            ),
            (table.table_id, &table.model),
            |r| r.get(0),
        )?;
        if holds {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

fn reconcile(conn: &Connection, settings: &Settings) -> Result<Vec<Json>> {
    let mut repairs = Vec::new();
    for table in tracked_tables(conn)? {
        match health(conn, settings, &table)? {
            Health::InLine | Health::Dropped => {}
            // One table that cannot be repaired (its options need the user) must not stop the
            // others or syncing: its old triggers go on capturing, status shows the problem.
            Health::Drifted(reason) => match tracking::track(conn, settings, &table.table, None) {
                Ok(result) => repairs
                    .push(json!({"table": table.table, "repaired": reason, "result": result})),
                Err(error) => {
                    repairs.push(json!({"table": table.table, "problem": error.to_string()}))
                }
            },
            Health::Renamed(new_name) => {
                follow_rename(conn, settings, &table, &new_name)?;
                repairs.push(
                    json!({"table": new_name, "renamed_from": table.table, "model": table.model}),
                );
            }
        }
    }
    Ok(repairs)
}

fn follow_rename(
    conn: &Connection,
    settings: &Settings,
    table: &TrackedTable,
    new_name: &str,
) -> Result<()> {
    write_txn(conn, |conn| {
        for name in triggers::trigger_names(&table.table) {
            conn.execute_batch(&format!("DROP TRIGGER IF EXISTS main.{}", ident(&name)))?;
        }
        conn.execute_batch(&format!(
            "DROP INDEX IF EXISTS main.{}",
            ident(&key_index(&table.table))
        ))?;
        let already_tracked = tracked_tables(conn)?
            .iter()
            .any(|t| t.table.eq_ignore_ascii_case(new_name));
        if already_tracked {
            // The new name was tracked by hand meanwhile: it wins, the old entry goes.
            conn.execute(
                "DELETE FROM tether_tracked_tables WHERE table_name = ?1",
                [&table.table],
            )?;
            crate::row_keys::forget(conn, table.table_id)?;
        } else {
            // The server's model does not change because a local table was renamed.
            let mut options: serde_json::Map<String, Json> =
                serde_json::from_str(&table.options).unwrap_or_default();
            options.insert("model".into(), json!(table.model));
            conn.execute(
                "UPDATE tether_tracked_tables SET table_name = ?2, options = ?3, updated_at = CURRENT_TIMESTAMP
                  WHERE table_name = ?1",
                (&table.table, new_name, Json::Object(options).to_string()),
            )?;
        }
        tracking::track(conn, settings, new_name, None)?;
        Ok(())
    })
}
