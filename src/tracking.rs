//! `tether_track` / `tether_untrack`: which tables sync, under which model, which columns.
use rusqlite::functions::Context;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value as Json};

use crate::bail;
use crate::db::write_txn;
use crate::error::{Error, Result};
use crate::functions::{self, connection, required_text, text_arg, Kind};
use crate::settings::{ConnectionSettings, Settings};
use crate::sql::{check_name, ident};
use crate::triggers::{self, Capture, RowLocator, TRIGGER_VERSION};
use std::sync::Arc;

/// A column as `pragma_table_xinfo` describes it.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub primary_key: bool,
    /// Generated (or hidden) columns cannot be written by a pull.
    pub generated: bool,
}

/// Options of `tether_track(table, options)`.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    except: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backfill: Option<bool>,
}

/// A row of `tether_tracked_tables`.
#[derive(Clone, Debug)]
pub struct TrackedTable {
    pub table: String,
    pub model: String,
    pub sync_key: String,
    pub synced_columns: Vec<String>,
    pub table_columns: Vec<String>,
    pub trigger_version: i64,
    options: String,
}

pub fn tracked_tables(conn: &Connection) -> Result<Vec<TrackedTable>> {
    let mut stmt = conn.prepare(
        "SELECT table_name, model, sync_key, synced_columns, table_columns, trigger_version, options
           FROM tether_tracked_tables ORDER BY rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    rows.map(|row| {
        let (table, model, sync_key, synced, all, trigger_version, options) = row?;
        Ok(TrackedTable {
            table,
            model,
            sync_key,
            synced_columns: serde_json::from_str(&synced)?,
            table_columns: serde_json::from_str(&all)?,
            trigger_version,
            options,
        })
    })
    .collect()
}

/// The table's name as stored in the schema (SQLite names are case-insensitive), after checking
/// it is a table tether can track.
fn resolve_table(conn: &Connection, name: &str) -> Result<String> {
    check_name("table", name)?;
    let found: Option<(String, String, Option<String>)> = conn
        .query_row(
            "SELECT name, type, sql FROM sqlite_schema
              WHERE name = ?1 COLLATE NOCASE AND type IN ('table', 'view')
              ORDER BY name = ?1 DESC LIMIT 1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((canonical, kind, sql)) = found else {
        bail!("no such table: {name:?}")
    };
    if kind == "view" {
        bail!("{canonical:?} is a view; only tables can be tracked");
    }
    if sql
        .unwrap_or_default()
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("CREATE VIRTUAL")
    {
        bail!("{canonical:?} is a virtual table; only ordinary tables can be tracked");
    }
    let lower = canonical.to_ascii_lowercase();
    if lower.starts_with("sqlite_") || lower.starts_with("tether_") {
        bail!("{canonical:?} is an internal table and cannot be tracked");
    }
    Ok(canonical)
}

pub fn columns(conn: &Connection, table: &str) -> Result<Vec<Column>> {
    let mut stmt =
        conn.prepare("SELECT name, pk, hidden FROM pragma_table_xinfo(?1) ORDER BY cid")?;
    let columns = stmt
        .query_map([table], |r| {
            Ok(Column {
                name: r.get(0)?,
                primary_key: r.get::<_, i64>(1)? > 0,
                generated: r.get::<_, i64>(2)? != 0,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(columns)
}

fn locator(conn: &Connection, table: &str, columns: &[Column]) -> Result<RowLocator> {
    for alias in ["rowid", "_rowid_", "oid"] {
        let shadowed = columns.iter().any(|c| c.name.eq_ignore_ascii_case(alias));
        if !shadowed
            && conn
                .prepare(&format!("SELECT {alias} FROM {} LIMIT 0", ident(table)))
                .is_ok()
        {
            return Ok(RowLocator::Rowid(alias.to_string()));
        }
    }
    let mut keys: Vec<(i64, String)> = conn
        .prepare("SELECT pk, name FROM pragma_table_info(?1) WHERE pk > 0")?
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    keys.sort();
    if keys.is_empty() {
        bail!("{table:?} has neither a reachable rowid nor a primary key, so its rows cannot be located");
    }
    Ok(RowLocator::PrimaryKey(
        keys.into_iter().map(|(_, name)| name).collect(),
    ))
}

/// The columns that sync: every column but the primary key, the sync key and generated
/// columns, narrowed by `columns` or `except`.
fn synced_columns(
    table: &str,
    all: &[Column],
    sync_key: &str,
    options: &TrackOptions,
) -> Result<Vec<String>> {
    let find = |name: &String| {
        all.iter()
            .find(|c| &c.name == name)
            .ok_or_else(|| Error::new(format!("{table:?} has no column {name:?}")))
    };
    if options.columns.is_some() && options.except.is_some() {
        bail!("give either \"columns\" or \"except\", not both");
    }
    if let Some(chosen) = &options.columns {
        let mut out = Vec::new();
        for name in chosen {
            let column = find(name)?;
            if column.primary_key {
                bail!("{name:?} is the primary key of {table:?}; the local primary key never syncs (the sync key is the row's identity)");
            }
            if column.generated {
                bail!("{name:?} is a generated column of {table:?} and cannot be synced");
            }
            if name == sync_key {
                bail!("{name:?} is the sync key; it travels as entity_id, not in the payload");
            }
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        return Ok(out);
    }
    let except = options.except.clone().unwrap_or_default();
    for name in &except {
        find(name)?;
    }
    Ok(all
        .iter()
        .filter(|c| {
            !c.primary_key && !c.generated && c.name != sync_key && !except.contains(&c.name)
        })
        .map(|c| c.name.clone())
        .collect())
}

fn ensure_sync_key_column(
    conn: &Connection,
    table: &str,
    all: &[Column],
    sync_key: &str,
) -> Result<bool> {
    let added = match all.iter().find(|c| c.name.eq_ignore_ascii_case(sync_key)) {
        Some(column) if column.primary_key || column.generated => {
            bail!("{sync_key:?} of {table:?} is a primary key or generated column and cannot hold sync keys")
        }
        Some(_) => false,
        None => {
            conn.execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN {} TEXT",
                ident(table),
                ident(sync_key)
            ))?;
            true
        }
    };
    let index = format!("tether_sync_key_{table}");
    conn.execute_batch(&format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
        ident(&index),
        ident(table),
        ident(sync_key)
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
    Ok(added)
}

/// Gives every row without a sync key a ULID, and lists those keys in
/// `temp.tether_newly_keyed`. Returns how many rows got one.
fn assign_missing_keys(conn: &Connection, table: &str, sync_key: &str) -> Result<usize> {
    let key = ident(sync_key);
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS tether_newly_keyed (key TEXT PRIMARY KEY);
         DELETE FROM temp.tether_newly_keyed;",
    )?;
    let assign = format!(
        "UPDATE {} SET {key} = tether_ulid() WHERE {key} IS NULL RETURNING {key}",
        ident(table)
    );
    let mut remember = conn.prepare("INSERT INTO temp.tether_newly_keyed (key) VALUES (?1)")?;
    let mut count = 0;
    let mut stmt = conn.prepare(&assign)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        remember.execute([row.get::<_, String>(0)?])?;
        count += 1;
    }
    Ok(count)
}

fn track(
    conn: &Connection,
    settings: &Settings,
    name: &str,
    options: Option<&str>,
) -> Result<Json> {
    let given: Option<TrackOptions> = options
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|e| Error::new(format!("options must be a JSON object: {e}")))
        })
        .transpose()?;
    write_txn(conn, |conn| {
        let table = resolve_table(conn, name)?;
        let existing = tracked_tables(conn)?.into_iter().find(|t| t.table == table);
        let options = match (&given, &existing) {
            (Some(options), _) => options.clone(),
            (None, Some(previous)) => serde_json::from_str(&previous.options)?,
            (None, None) => TrackOptions::default(),
        };
        let sync_key = match &existing {
            Some(previous) => previous.sync_key.clone(),
            None => settings.get("sync_key").unwrap_or("tether_id").to_string(),
        };
        check_name("sync key column", &sync_key)?;
        let model = options
            .model
            .clone()
            .unwrap_or_else(|| crate::naming::model_for_table(&table));
        if model.trim().is_empty() {
            bail!("model must be a non-empty name");
        }
        let all = columns(conn, &table)?;
        let synced = synced_columns(&table, &all, &sync_key, &options)?;
        let locator = locator(conn, &table, &all)?;
        let sync_key_added = ensure_sync_key_column(conn, &table, &all, &sync_key)?;

        let capture_spec = Capture {
            table: &table,
            model: &model,
            sync_key: &sync_key,
            columns: &synced,
            locator: &locator,
        };
        let keys_assigned = assign_missing_keys(conn, &table, &sync_key)?;
        // Rows without a key were never pushed: queue them (unless asked not to). A first
        // tracking queues every row, since none of them was ever pushed from here.
        let queued = match (options.backfill.unwrap_or(true), &existing) {
            (false, _) => 0,
            (true, None) => triggers::queue_creates(conn, &capture_spec, "1")?,
            (true, Some(_)) => triggers::queue_creates(
                conn,
                &capture_spec,
                &format!(
                    "t.{} IN (SELECT key FROM temp.tether_newly_keyed)",
                    ident(&sync_key)
                ),
            )?,
        };
        conn.execute_batch("DELETE FROM temp.tether_newly_keyed")?;
        let trigger_names = triggers::install(conn, &capture_spec)?;

        let stored_options = serde_json::to_string(&options)?;
        let all_names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        let mut table_columns: Vec<String> = all_names.iter().map(|s| s.to_string()).collect();
        if sync_key_added {
            table_columns.push(sync_key.clone());
        }
        conn.execute(
            "INSERT INTO tether_tracked_tables
                 (table_name, model, sync_key, synced_columns, table_columns, trigger_version, options)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (table_name) DO UPDATE SET
                 model = excluded.model, synced_columns = excluded.synced_columns,
                 table_columns = excluded.table_columns, trigger_version = excluded.trigger_version,
                 options = excluded.options, updated_at = CURRENT_TIMESTAMP",
            (
                &table,
                &model,
                &sync_key,
                serde_json::to_string(&synced)?,
                serde_json::to_string(&table_columns)?,
                TRIGGER_VERSION,
                &stored_options,
            ),
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                Error::new(format!("model {model:?} is already used by another tracked table; give a distinct \"model\""))
            }
            other => other.into(),
        })?;
        Ok(json!({
            "table": table,
            "model": model,
            "sync_key": sync_key,
            "columns": synced,
            "sync_key_added": sync_key_added,
            "keys_assigned": keys_assigned,
            "queued_creates": queued,
            "retracked": existing.is_some(),
            "triggers": trigger_names,
        }))
    })
}

fn untrack(conn: &Connection, name: &str) -> Result<Json> {
    write_txn(conn, |conn| {
        let table = tracked_tables(conn)?
            .into_iter()
            .find(|t| t.table.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::new(format!("{name:?} is not tracked")))?;
        triggers::remove(conn, &table.table)?;
        conn.execute(
            "DELETE FROM tether_tracked_tables WHERE table_name = ?1",
            [&table.table],
        )?;
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

/// Regenerates triggers made from older templates, so an upgraded extension captures with the
/// current ones. Runs on load.
pub fn refresh_outdated_triggers(conn: &Connection, settings: &Settings) -> Result<()> {
    for table in tracked_tables(conn)? {
        let still_exists = resolve_table(conn, &table.table).is_ok();
        if table.trigger_version < TRIGGER_VERSION && still_exists {
            track(conn, settings, &table.table, None)?;
        }
    }
    Ok(())
}

pub fn register(conn: &Connection, session: Arc<ConnectionSettings>) -> Result<()> {
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
            Ok(track(&conn, &settings, &table, options.as_deref())?.to_string())
        },
    )?;
    functions::register(
        conn,
        "tether_untrack",
        &[1],
        Kind::Writes,
        |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            let table = required_text(ctx, 0, "the table name")?;
            Ok(untrack(&conn, &table)?.to_string())
        },
    )
}
