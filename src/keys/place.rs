//! Where the rows of a model are for the key pass, checked against the table as it is now.
use rusqlite::Connection;

use crate::error::Result;
use crate::sql::ident;
use crate::table_info::PrimaryKey;
use crate::tracking::TrackedTable;
use crate::triggers::Capture;

/// What the key pass reads of a tracked table.
pub struct TableShape<'a> {
    pub model: &'a str,
    pub table: &'a str,
    pub table_id: i64,
    pub sync_key: &'a str,
    pub synced: &'a [String],
    pub json_columns: &'a [String],
    pub keys_on_sync: bool,
}

impl<'a> From<&'a Capture<'a>> for TableShape<'a> {
    fn from(capture: &'a Capture<'a>) -> Self {
        TableShape {
            model: capture.model,
            table: capture.table,
            table_id: capture.table_id,
            sync_key: capture.sync_key,
            synced: capture.columns,
            json_columns: capture.json_columns,
            keys_on_sync: capture.keys_on_sync,
        }
    }
}

impl<'a> From<&'a TrackedTable> for TableShape<'a> {
    fn from(table: &'a TrackedTable) -> Self {
        TableShape {
            model: &table.model,
            table: &table.table,
            table_id: table.table_id,
            sync_key: &table.sync_key,
            synced: &table.synced_columns,
            json_columns: &table.json_columns,
            keys_on_sync: table.keys_on_sync(),
        }
    }
}

/// Where the rows of one model are, and how to read them.
pub(super) enum Place {
    Found(Located),
    /// The table is gone (or untracked): its rows cannot be read. A table that comes back (a
    /// rebuild) is repaired by tracking, which keys and queues every row without a key.
    Gone,
    /// The table is there but not as tracked (a column renamed or dropped, no INTEGER PRIMARY
    /// KEY any more) and tracking could not repair it: why.
    Changed(String),
}

pub(super) struct Located {
    pub(super) table: String,
    pub(super) table_id: i64,
    /// `main."table"`, the quoted key and primary key columns, the payload expression on `t`.
    pub(super) name: String,
    pub(super) key: String,
    pub(super) pk: String,
    /// The primary key column's name, unquoted.
    pub(super) pk_name: String,
    pub(super) payload: String,
    /// The table has triggers of its own, which may refuse, ignore or undo the key's write.
    pub(super) user_triggers: bool,
    /// Keys on insert: the rows this pass keys were left without one by a write
    /// ([`super::orphans`]), and nothing of the table's ran on this connection before, so any
    /// error its triggers raise while the key is written (a function this connection lacks
    /// included) fails that row alone rather than every sync.
    pub(super) any_error_fails_the_row: bool,
}

/// The table as it is now: every column the key pass names is checked to exist (a name that
/// does not could be read as a string literal by SQLite).
pub(super) fn locate(conn: &Connection, shape: &TableShape) -> Result<Place> {
    let TableShape {
        table,
        table_id,
        sync_key,
        synced,
        json_columns,
        ..
    } = *shape;
    if !crate::table_info::table_exists(conn, table)? {
        return Ok(Place::Gone);
    }
    let info = crate::table_info::table_info(conn, table)?;
    let PrimaryKey::RowidAlias(pk) = &info.primary_key else {
        return Ok(Place::Changed(format!(
            "{table:?} has no INTEGER PRIMARY KEY any more"
        )));
    };
    let missing: Vec<&str> = std::iter::once(sync_key)
        .chain(synced.iter().map(String::as_str))
        .filter(|c| info.column(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Ok(Place::Changed(format!(
            "{table:?} has no column {missing:?} any more"
        )));
    }
    let user_triggers: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM main.sqlite_schema
                             WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE
                               AND name NOT LIKE 'tether\\_%' ESCAPE '\\')",
        )?
        .query_row([table], |r| r.get(0))?;
    Ok(Place::Found(Located {
        user_triggers,
        any_error_fails_the_row: !shape.keys_on_sync,
        name: format!("main.{}", ident(table)),
        key: ident(sync_key),
        pk: ident(pk),
        pk_name: pk.clone(),
        payload: crate::triggers::payload_expr(synced, json_columns, "t")?,
        table: table.to_string(),
        table_id,
    }))
}
