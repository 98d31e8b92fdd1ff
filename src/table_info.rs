//! What tether needs to know about a user table: its columns, how a row is located, what its
//! primary key is, and which columns hold JSON or bytes. Read from the schema each time it is
//! needed, so it follows ALTER TABLE and rebuilds.
use rusqlite::{Connection, OptionalExtension};

use crate::bail;
use crate::error::Result;
use crate::sql::{check_name, ident};

/// A column as `pragma_table_xinfo` describes it.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    /// The declared type as written (`""` when none).
    pub declared_type: String,
    /// Position in the primary key (1-based), 0 when not part of it.
    pub pk_position: i64,
    /// Generated (or hidden) columns cannot be written by a pull.
    pub generated: bool,
    pub not_null: bool,
    /// The DEFAULT expression as SQL text.
    pub default: Option<String>,
}

impl Column {
    pub fn is_primary_key(&self) -> bool {
        self.pk_position > 0
    }

    /// Declared as bytes: values read back from JSON hex text are decoded for it.
    pub fn declared_blob(&self) -> bool {
        self.declared_type.to_ascii_uppercase().contains("BLOB")
    }

    /// No declared type: it holds whatever is written, bytes included.
    pub fn untyped(&self) -> bool {
        self.declared_type.trim().is_empty()
    }
}

/// How capture finds the row that fired a trigger.
#[derive(Clone, Debug)]
pub enum RowLocator {
    /// A rowid table: the name that reaches its rowid (`rowid`, or `_rowid_`/`oid` if shadowed).
    Rowid(String),
    /// A WITHOUT ROWID table: its primary key columns.
    PrimaryKey(Vec<String>),
}

impl RowLocator {
    /// `a.<locator> = b.<locator>`, with `a` empty for unqualified columns.
    pub fn matches(&self, a: &str, b: &str) -> String {
        let qualify = |row: &str, column: &str| {
            if row.is_empty() {
                column.to_string()
            } else {
                format!("{row}.{column}")
            }
        };
        match self {
            RowLocator::Rowid(name) => format!("{} = {}", qualify(a, name), qualify(b, name)),
            RowLocator::PrimaryKey(columns) => columns
                .iter()
                .map(|c| format!("{} = {}", qualify(a, &ident(c)), qualify(b, &ident(c))))
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

/// `a` and `b` (table aliases, `NEW` or `OLD`) hold equal values in `columns` (name, collation),
/// compared by those collations, as a key or UNIQUE constraint on them compares.
pub fn same_values(columns: &[(String, String)], a: &str, b: &str) -> String {
    columns
        .iter()
        .map(|(c, collation)| {
            format!(
                "{a}.{col} = {b}.{col} COLLATE {}",
                ident(collation),
                col = ident(c)
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// What identifies a row locally, for `tether_row_keys`.
#[derive(Clone, Debug)]
pub enum PrimaryKey {
    /// A lone INTEGER PRIMARY KEY of a rowid table: the rowid itself, local to this device; it
    /// never syncs.
    RowidAlias(String),
    /// Declared key columns that carry data (TEXT keys, composite keys, WITHOUT ROWID): they sync.
    /// Each with the collation the key compares it by.
    Columns(Vec<(String, String)>),
    /// No declared key: the rowid, which a rebuild or VACUUM may renumber.
    RowidOnly(String),
}

impl PrimaryKey {
    /// The value stored as `row_pk` for `row` (`NEW`, `OLD` or a table alias): never NULL.
    pub fn row_pk(&self, row: &str) -> String {
        match self {
            PrimaryKey::RowidAlias(column) => format!("{row}.{}", ident(column)),
            PrimaryKey::RowidOnly(rowid) => format!("{row}.{rowid}"),
            // Values the key holds equal are recorded equal, so REPLACE under NOCASE or RTRIM
            // finds the row it replaced.
            PrimaryKey::Columns(columns) => columns
                .iter()
                .map(|(c, collation)| {
                    let value = format!("{row}.{}", ident(c));
                    match collation.to_ascii_uppercase().as_str() {
                        "NOCASE" => format!("quote(lower({value}))"),
                        "RTRIM" => format!("quote(rtrim({value}))"),
                        _ => format!("quote({value})"),
                    }
                })
                .collect::<Vec<_>>()
                .join(" || ',' || "),
        }
    }

    /// `a` and `b` (table aliases, `NEW` or `OLD`) hold the same primary key, compared as the key
    /// compares (its collations): the rows a REPLACE through the primary key deletes.
    pub fn matches(&self, a: &str, b: &str) -> String {
        match self {
            PrimaryKey::RowidAlias(column) => {
                format!("{a}.{col} = {b}.{col}", col = ident(column))
            }
            PrimaryKey::RowidOnly(rowid) => format!("{a}.{rowid} = {b}.{rowid}"),
            PrimaryKey::Columns(columns) => same_values(columns, a, b),
        }
    }

    /// The columns an UPDATE OF must name to see the key change; none for a bare rowid.
    pub fn columns(&self) -> Vec<String> {
        match self {
            PrimaryKey::RowidAlias(column) => vec![column.clone()],
            PrimaryKey::Columns(columns) => columns.iter().map(|(c, _)| c.clone()).collect(),
            PrimaryKey::RowidOnly(_) => Vec::new(),
        }
    }
}

/// Everything about one table's shape that capture and apply use.
#[derive(Clone, Debug)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<Column>,
    pub locator: RowLocator,
    pub primary_key: PrimaryKey,
    /// The CREATE TABLE text, where CHECK constraints and conflict clauses live.
    pub create_sql: String,
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Columns that hold JSON by declaration: a type naming JSON, or a CHECK (json_valid(col)),
    /// as ORMs write for JSON fields.
    pub fn declared_json(&self) -> Vec<String> {
        let sql = self.create_sql.to_ascii_lowercase();
        self.columns
            .iter()
            .filter(|c| {
                c.declared_type.to_ascii_uppercase().contains("JSON") || {
                    let lower = c.name.to_ascii_lowercase();
                    [
                        format!("json_valid({lower})"),
                        format!("json_valid(\"{}\")", lower.replace('"', "\"\"")),
                        format!("json_valid(`{lower}`)"),
                        format!("json_valid([{lower}])"),
                    ]
                    .iter()
                    .any(|pattern| sql.replace(' ', "").contains(&pattern.replace(' ', "")))
                }
            })
            .map(|c| c.name.clone())
            .collect()
    }
}

/// The declared primary key columns of `table`, in key order (empty: a rowid table without one).
pub fn primary_key_columns(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM pragma_table_info(?1, 'main') WHERE pk > 0 ORDER BY pk",
    )?;
    let names = stmt
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(names)
}

/// Whether `table` (its exact stored name) is a table of the main schema.
pub fn table_exists(conn: &Connection, table: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = ?1)",
        )?
        .query_row([table], |r| r.get(0))?)
}

/// The table's name as stored in the schema (SQLite names are case-insensitive), after checking
/// it is a table tether can track. `None` when there is no such table or view.
pub fn find_table(conn: &Connection, name: &str) -> Result<Option<(String, String)>> {
    check_name("table", name)?;
    let found: Option<(String, String, Option<String>)> = conn
        .query_row(
            "SELECT name, type, sql FROM main.sqlite_schema
              WHERE name = ?1 COLLATE NOCASE AND type IN ('table', 'view')
              ORDER BY name = ?1 DESC LIMIT 1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((canonical, kind, sql)) = found else {
        return Ok(None);
    };
    if kind == "view" {
        bail!("{canonical:?} is a view; only tables can be tracked");
    }
    let sql = sql.unwrap_or_default();
    if sql
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
    Ok(Some((canonical, sql)))
}

pub fn columns(conn: &Connection, table: &str) -> Result<Vec<Column>> {
    let mut stmt = conn.prepare(
        "SELECT name, coalesce(type, ''), pk, hidden, \"notnull\", dflt_value
           FROM pragma_table_xinfo(?1, 'main') ORDER BY cid",
    )?;
    let columns = stmt
        .query_map([table], |r| {
            Ok(Column {
                name: r.get(0)?,
                declared_type: r.get(1)?,
                pk_position: r.get(2)?,
                generated: r.get::<_, i64>(3)? != 0,
                not_null: r.get::<_, i64>(4)? != 0,
                default: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(columns)
}

/// Reads the shape of an existing table (see [`find_table`] for which tables qualify).
pub fn table_info(conn: &Connection, name: &str) -> Result<TableInfo> {
    let Some((table, create_sql)) = find_table(conn, name)? else {
        bail!("no such table: {name:?}")
    };
    let columns = columns(conn, &table)?;
    let mut keys: Vec<&Column> = columns.iter().filter(|c| c.is_primary_key()).collect();
    keys.sort_by_key(|c| c.pk_position);
    let rowid = reachable_rowid(conn, &table, &columns);
    let locator = match &rowid {
        Some(alias) => RowLocator::Rowid(alias.clone()),
        None if keys.is_empty() => bail!(
            "{table:?} has neither a reachable rowid nor a primary key, so its rows cannot be located"
        ),
        None => RowLocator::PrimaryKey(keys.iter().map(|c| c.name.clone()).collect()),
    };
    let (alias, _) = rowid_shape(conn, &table, &columns)?;
    let primary_key = match (keys.as_slice(), &rowid, alias) {
        (_, Some(_), Some(alias)) => PrimaryKey::RowidAlias(alias),
        ([], Some(rowid), None) => PrimaryKey::RowidOnly(rowid.clone()),
        _ => {
            let collation = |name: &str| -> Result<String> {
                Ok(conn
                    .query_row(
                        "SELECT x.coll FROM pragma_index_list(?1, 'main') AS l, pragma_index_xinfo(l.name, 'main') AS x
                          WHERE l.origin = 'pk' AND x.name = ?2",
                        [&table, name],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?
                    .unwrap_or_else(|| "BINARY".to_string()))
            };
            PrimaryKey::Columns(
                keys.iter()
                    .map(|c| Ok((c.name.clone(), collation(&c.name)?)))
                    .collect::<Result<_>>()?,
            )
        }
    };
    Ok(TableInfo {
        name: table,
        columns,
        locator,
        primary_key,
        create_sql,
    })
}

/// The column aliasing the rowid, if any, and whether the table has a rowid at all. SQLite
/// makes an alias only of a lone primary key typed exactly INTEGER in a rowid table, and then
/// builds no primary-key index: a 'pk' index means another key, WITHOUT ROWID, or the
/// `INTEGER PRIMARY KEY DESC` quirk. A WITHOUT ROWID table's 'pk' index never holds the rowid.
pub fn rowid_shape(
    conn: &Connection,
    table: &str,
    columns: &[Column],
) -> Result<(Option<String>, bool)> {
    let (pk_index, has_rowid): (bool, bool) = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_index_list(?1, 'main') WHERE origin = 'pk'),
                NOT EXISTS (SELECT 1 FROM pragma_index_list(?1, 'main') l WHERE l.origin = 'pk'
                   AND NOT EXISTS (SELECT 1 FROM pragma_index_xinfo(l.name, 'main') WHERE cid = -1))",
        [table],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let keys: Vec<&Column> = columns.iter().filter(|c| c.pk_position > 0).collect();
    let alias = match keys.as_slice() {
        [key] if !pk_index && key.declared_type.eq_ignore_ascii_case("INTEGER") => Some(&key.name),
        _ => None,
    };
    Ok((alias.cloned(), has_rowid))
}

/// The name that reaches the rowid of a rowid table (`rowid`, or `_rowid_`/`oid` when a column
/// shadows it); `None` for WITHOUT ROWID tables.
fn reachable_rowid(conn: &Connection, table: &str, columns: &[Column]) -> Option<String> {
    ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|alias| {
            !columns.iter().any(|c| c.name.eq_ignore_ascii_case(alias))
                && conn
                    .prepare(&format!(
                        "SELECT {alias} FROM main.{} LIMIT 0",
                        ident(table)
                    ))
                    .is_ok()
        })
        .map(str::to_string)
}
