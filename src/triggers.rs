//! The capture triggers: plain SQL rendered from `sql/triggers`, so writes from connections that
//! never loaded the extension are captured too.
use rusqlite::Connection;

use crate::bail;
use crate::error::Result;
use crate::sql::{ident, literal, Template};

/// Version of the templates below; tables tracked with an older one are regenerated on load.
pub const TRIGGER_VERSION: i64 = 1;

const NEW_ULID: &str = include_str!("../sql/triggers/v1_new_ulid.sql");
const NOW_MS: &str = include_str!("../sql/triggers/v1_now_ms.sql");
const INSERT: &str = include_str!("../sql/triggers/v1_insert.sql");
const UPDATE: &str = include_str!("../sql/triggers/v1_update.sql");
const DELETE: &str = include_str!("../sql/triggers/v1_delete.sql");

/// json_object() takes at most 127 arguments on older SQLites: 63 columns per call.
const COLUMNS_PER_CALL: usize = 63;

/// How capture finds the row that fired a trigger.
#[derive(Clone, Debug)]
pub enum RowLocator {
    /// A rowid table: the name that reaches its rowid (`rowid`, or `_rowid_`/`oid` if shadowed).
    Rowid(String),
    /// A WITHOUT ROWID table: its primary key columns.
    PrimaryKey(Vec<String>),
}

impl RowLocator {
    fn matches(&self, row: &str) -> String {
        match self {
            RowLocator::Rowid(name) => format!("{name} = {row}.{name}"),
            RowLocator::PrimaryKey(columns) => columns
                .iter()
                .map(|c| format!("{col} = {row}.{col}", col = ident(c)))
                .collect::<Vec<_>>()
                .join(" AND "),
        }
    }

    /// The row order of the table, columns qualified by `row`.
    pub fn order_by(&self, row: &str) -> String {
        match self {
            RowLocator::Rowid(name) => format!("{row}.{name}"),
            RowLocator::PrimaryKey(columns) => columns
                .iter()
                .map(|c| format!("{row}.{}", ident(c)))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// What the triggers of one table are generated from.
pub struct Capture<'a> {
    pub table: &'a str,
    pub model: &'a str,
    pub sync_key: &'a str,
    pub columns: &'a [String],
    pub locator: &'a RowLocator,
}

pub fn trigger_names(table: &str) -> [String; 3] {
    ["insert", "update", "delete"].map(|op| format!("tether_{op}_{table}"))
}

/// A JSON object of the synced columns of `row` (`NEW`, `OLD` or a table alias). BLOBs, which
/// JSON cannot hold, travel as hex text instead of failing the user's write.
pub fn payload_expr(columns: &[String], row: &str) -> Result<String> {
    let value = |c: &String| {
        let v = format!("{row}.{}", ident(c));
        format!("CASE WHEN typeof({v}) = 'blob' THEN hex({v}) ELSE {v} END")
    };
    let mut chunks = columns.chunks(COLUMNS_PER_CALL);
    let first = chunks.next().unwrap_or(&[]);
    let mut expr = format!(
        "json_object({})",
        first
            .iter()
            .map(|c| format!("{}, {}", literal(c), value(c)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for chunk in chunks {
        let mut args = vec![expr];
        for c in chunk {
            if c.contains('"') || c.contains('\\') {
                bail!("column {c:?} is beyond the 63rd synced column and its name holds a quote or backslash, which JSON paths of this SQLite cannot address; rename it or sync fewer columns");
            }
            args.push(literal(&format!("$.\"{c}\"")));
            args.push(value(c));
        }
        expr = format!("json_insert({})", args.join(", "));
    }
    Ok(expr)
}

fn now_ms() -> Result<String> {
    Template::new(NOW_MS).render()
}

fn new_ulid() -> Result<String> {
    ulid_at(&now_ms()?)
}

/// A plain-SQL expression for a new ULID whose time part is `ms` (an expression in Unix ms).
pub fn ulid_at(ms: &str) -> Result<String> {
    Template::new(NEW_ULID).set("now_ms", ms).render()
}

/// Drops any existing capture triggers of the table and creates current ones.
pub fn install(conn: &Connection, capture: &Capture) -> Result<Vec<String>> {
    remove(conn, capture.table)?;
    let names = trigger_names(capture.table);
    let sync_key = ident(capture.sync_key);
    let changed = if capture.columns.is_empty() {
        "0".to_string()
    } else {
        capture
            .columns
            .iter()
            .map(|c| format!("OLD.{col} IS NOT NEW.{col}", col = ident(c)))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    // With nothing synced, updates never capture; the sync key keeps the trigger well-formed.
    let synced_columns = if capture.columns.is_empty() {
        ident(capture.sync_key)
    } else {
        capture
            .columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for template in [INSERT, UPDATE, DELETE] {
        let sql = Template::new(template)
            .set("insert_trigger", &ident(&names[0]))
            .set("update_trigger", &ident(&names[1]))
            .set("delete_trigger", &ident(&names[2]))
            .set("table", &ident(capture.table))
            .set("model", &literal(capture.model))
            .set("payload_new", &payload_expr(capture.columns, "NEW")?)
            .set("row_match_new", &capture.locator.matches("NEW"))
            .set("changed", &changed)
            .set("synced_columns", &synced_columns)
            .set("new_ulid", &new_ulid()?)
            .set("now_ms", &now_ms()?)
            .set("sync_key", &sync_key)
            .render()?;
        conn.execute_batch(&sql)?;
    }
    Ok(names.to_vec())
}

pub fn remove(conn: &Connection, table: &str) -> Result<()> {
    for name in trigger_names(table) {
        conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", ident(&name)))?;
    }
    Ok(())
}

/// How many of the table's capture triggers exist.
pub fn installed_count(conn: &Connection, table: &str) -> Result<usize> {
    let mut count = 0;
    for name in trigger_names(table) {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND name = ?1)",
            [&name],
            |r| r.get(0),
        )?;
        count += usize::from(exists);
    }
    Ok(count)
}

/// Queues a `create` for each row of the table matched by `filter` (a SQL condition on `t`).
pub fn queue_creates(conn: &Connection, capture: &Capture, filter: &str) -> Result<usize> {
    let sync_key = format!("t.{}", ident(capture.sync_key));
    let sql = format!(
        "INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
         SELECT {sync_key}, {model}, 'create', {payload}, {now}
           FROM {table} AS t
          WHERE {sync_key} IS NOT NULL AND ({filter})
          ORDER BY {order}",
        model = literal(capture.model),
        payload = payload_expr(capture.columns, "t")?,
        now = now_ms()?,
        table = ident(capture.table),
        order = capture.locator.order_by("t"),
    );
    Ok(conn.execute(&sql, [])?)
}
