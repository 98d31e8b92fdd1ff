//! The capture triggers: plain SQL rendered from `sql/triggers`, so writes from connections that
//! never loaded the extension are captured too. Per table:
//! - `tether_keyless_<t>` and `tether_insert_<t>`: an INSERT, split by WHEN clauses that negate
//!   each other between a lean trigger for a row inserted without a key and the full path (a key
//!   given, REPLACE, server state applied). With keys on insert the lean one gives a new key at
//!   once; with `{"keys": "on_sync"}` it logs one 'unkeyed' create (`crate::keys` gives the key
//!   later);
//! - `tether_update_<t>`, `tether_delete_<t>`: the mutation log. The row-key record
//!   (`tether_row_keys`), by which a repair gives rows back their keys, is written by the insert
//!   triggers; on rowid tables with keys on insert the lean one leaves it to tether
//!   (`crate::queue`);
//! - `tether_guard_<t>`: the sync key is given once, never changed, always a ULID;
//! - `tether_rekey_<t>` (tables with a declared primary key): follows primary key changes;
//! - `tether_watch_insert_<t>`: notes rows REPLACE is about to delete through the primary key,
//!   the sync key or another UNIQUE constraint (the row a REPLACE by primary key puts in their
//!   place takes over their entity); `tether_watch_update_<t>` (tables with a declared primary
//!   key or other UNIQUE constraints): the same for UPDATE OR REPLACE; each note names the row
//!   that wrote it ([`notes`]);
//! - `tether_sweep_insert_<t>`, `tether_sweep_update_<t>`: before the watches, when the table has
//!   notes, sweep those a skipped row left;
//! - `tether_key_given_<t>` (`{"keys": "on_sync"}`): captures a key the application writes into
//!   a waiting row.
use rusqlite::Connection;

use crate::bail;
use crate::error::Result;
use crate::sql::{ident, literal, Template};
use crate::table_info::{PrimaryKey, RowLocator};

mod notes;
use notes::{
    holders_of_new, keyed_rows_where, notes_of_new, notes_of_update, pk_holder_of_new,
    unique_columns,
};

/// Version of the templates below; tables tracked with an older one are regenerated on load.
pub const TRIGGER_VERSION: i64 = 9;

const NEW_ULID: &str = include_str!("../sql/triggers/v1_new_ulid.sql");
const NOW_MS: &str = include_str!("../sql/triggers/v1_now_ms.sql");
const INSERT: &str = include_str!("../sql/triggers/v5_insert.sql");
const NEW_KEY_INSERT: &str = include_str!("../sql/triggers/v6_new_key_insert.sql");
const UPDATE: &str = include_str!("../sql/triggers/v5_update.sql");
const DELETE: &str = include_str!("../sql/triggers/v4_delete.sql");
const GUARD: &str = include_str!("../sql/triggers/v3_guard.sql");
const REKEY: &str = include_str!("../sql/triggers/v6_rekey.sql");
const WATCH_INSERT: &str = include_str!("../sql/triggers/v5_watch_insert.sql");
const WATCH_UPDATE: &str = include_str!("../sql/triggers/v5_watch_update.sql");
const SWEEP_INSERT: &str = include_str!("../sql/triggers/v5_sweep_insert.sql");
const SWEEP_UPDATE: &str = include_str!("../sql/triggers/v5_sweep_update.sql");
// Tables tracked with {"keys": "on_sync"}.
const KEYLESS_INSERT: &str = include_str!("../sql/triggers/v5_keyless_insert.sql");
const INSERT_KEYED: &str = include_str!("../sql/triggers/v5_insert_keyed.sql");
const UPDATE_KEYS_ON_SYNC: &str = include_str!("../sql/triggers/v3_update.sql");
const KEY_GIVEN: &str = include_str!("../sql/triggers/v4_key_given.sql");
// Parts of several insert triggers.
const REPLACED_ON_INSERT: &str = include_str!("../sql/triggers/v5_replaced_on_insert.sql");
const RECORDED_ON_INSERT: &str = include_str!("../sql/triggers/v6_recorded_on_insert.sql");
const LOG_INSERTED_ROW: &str = include_str!("../sql/triggers/v6_log_inserted_row.sql");
const RECORD_NEW_ROW: &str = include_str!("../sql/triggers/v5_record_new_row.sql");
const DROP_RECORDS: &str = include_str!("../sql/triggers/v6_drop_records.sql");
const NOTE_DROPPED: &str = include_str!("../sql/triggers/v6_note_dropped.sql");
const REPLACED_ROWS: &str = include_str!("../sql/triggers/v6_replaced_rows.sql");
const MOVED_ROWS: &str = include_str!("../sql/triggers/v6_moved_rows.sql");
const CLEAR_NESTED_NOTES: &str = include_str!("../sql/triggers/v5_clear_nested_notes.sql");
const SWEEP_NOTES: &str = include_str!("../sql/triggers/v5_sweep_notes.sql");

/// json_object() takes at most 127 arguments on older SQLites: 63 columns per call.
const COLUMNS_PER_CALL: usize = 63;

const NOT_SUPPRESSED: &str = "NOT EXISTS (SELECT 1 FROM tether_capture_suppressed)";

/// What the triggers of one table are generated from.
pub struct Capture<'a> {
    pub table: &'a str,
    /// `tether_tracked_tables.table_id`: stable across renames.
    pub table_id: i64,
    pub model: &'a str,
    pub sync_key: &'a str,
    /// Synced columns, payload order.
    pub columns: &'a [String],
    /// Synced columns whose text travels as JSON.
    pub json_columns: &'a [String],
    pub locator: &'a RowLocator,
    pub primary_key: &'a PrimaryKey,
    /// Column sets (name, collation) of plain UNIQUE constraints other than the primary key and
    /// the sync key.
    pub unique_sets: &'a [Vec<(String, String)>],
    /// Generated columns of the table.
    pub generated: &'a [String],
    /// `{"keys": "on_sync"}`: an INSERT without a key logs one 'unkeyed' create and nothing
    /// else; the key is given when the next sync starts (`crate::keys`).
    pub keys_on_sync: bool,
}

/// Every trigger name tether may create on `table`, whichever exist.
pub fn trigger_names(table: &str) -> Vec<String> {
    [
        "insert",
        "update",
        "delete",
        "guard",
        "rekey",
        "watch_insert",
        "watch_update",
        "sweep_insert",
        "sweep_update",
        "keyless",
        "key_given",
    ]
    .iter()
    .map(|kind| name(kind, table))
    .collect()
}

fn name(kind: &str, table: &str) -> String {
    format!("tether_{kind}_{table}")
}

/// One column's value in a payload. BLOBs, which JSON cannot hold, travel as hex text; a JSON
/// column's text that parses travels as JSON; any other text as a string, never as JSON because
/// of the subtype a JSON function left on the value being written (`|| ''` drops it).
fn value_expr(row: &str, column: &str, json: bool) -> String {
    let v = format!("{row}.{}", ident(column));
    if json {
        format!("CASE WHEN typeof({v}) = 'blob' THEN hex({v}) WHEN json_valid({v}) THEN json({v}) WHEN typeof({v}) = 'text' THEN {v} || '' ELSE {v} END")
    } else {
        format!(
            "CASE typeof({v}) WHEN 'blob' THEN hex({v}) WHEN 'text' THEN {v} || '' ELSE {v} END"
        )
    }
}

/// A JSON object of the synced columns of `row` (`NEW`, `OLD` or a table alias).
pub fn payload_expr(columns: &[String], json_columns: &[String], row: &str) -> Result<String> {
    let value = |c: &String| value_expr(row, c, json_columns.contains(c));
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
            args.push(literal(&json_path(c)?));
            args.push(value(c));
        }
        expr = format!("json_insert({})", args.join(", "));
    }
    Ok(expr)
}

/// `$."name"`: the JSON path of a top-level key.
pub fn json_path(column: &str) -> Result<String> {
    if column.contains('"') || column.contains('\\') {
        bail!("column {column:?} holds a quote or backslash, which JSON paths of this SQLite cannot address; rename it or leave it out of the synced columns");
    }
    Ok(format!("$.\"{column}\""))
}

pub fn now_ms() -> Result<String> {
    Template::new(NOW_MS).render()
}

fn new_ulid() -> Result<String> {
    ulid_at(&now_ms()?)
}

/// A plain-SQL expression for a new ULID whose time part is `ms` (an expression in Unix ms).
pub fn ulid_at(ms: &str) -> Result<String> {
    Template::new(NEW_ULID).set("now_ms", ms).render()
}

/// True for a ULID as Laravel's `tetherUlid()` column holds it: 26 upper-case Crockford base32
/// characters, the first 0-7.
pub fn valid_key_expr(value: &str) -> String {
    format!(
        "typeof({value}) = 'text' AND length({value}) = 26 AND {value} GLOB '[0-7]{}'",
        "[0-9A-HJKMNP-TV-Z]".repeat(25)
    )
}

/// `columns` followed by those of `more` it does not hold yet.
fn with_columns(mut columns: Vec<String>, more: &[String]) -> Vec<String> {
    for column in more {
        if !columns.contains(column) {
            columns.push(column.clone());
        }
    }
    columns
}

/// True when an UPDATE changed any of `columns` (false for none). Compared byte for byte: a column
/// declared `COLLATE NOCASE` or `RTRIM` would otherwise hide a change of case or of trailing spaces.
fn any_changed(columns: &[String]) -> String {
    if columns.is_empty() {
        return "0".to_string();
    }
    columns
        .iter()
        .map(|c| format!("OLD.{col} IS NOT NEW.{col} COLLATE BINARY", col = ident(c)))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The SQL of the table's capture triggers, one text per template.
pub fn render(capture: &Capture) -> Result<Vec<String>> {
    let table = capture.table;
    let sync_key = ident(capture.sync_key);
    let table_id = capture.table_id.to_string();
    let watching = !capture.unique_sets.is_empty();
    let changed = any_changed(capture.columns);
    let unique_columns = unique_columns(capture);
    let unique_changed = any_changed(&unique_columns);
    let displacing_columns = with_columns(capture.primary_key.columns(), &unique_columns);
    // With nothing synced, updates never capture; the sync key keeps the trigger well-formed.
    let mut watched = with_columns(capture.columns.to_vec(), &unique_columns);
    if watched.is_empty() {
        watched.push(capture.sync_key.to_string());
    }
    let join_idents = |names: &[String]| {
        names
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let alive = |row: &str| {
        format!(
            "EXISTS (SELECT 1 FROM {} AS t WHERE t.{sync_key} = {row}.sync_key)",
            ident(table)
        )
    };
    // Rowid tables name the row of a logged delete, and of a create the lean insert trigger logs,
    // by its rowid in `locator`, and the row's record follows later (`crate::queue`): a delete
    // leaves the record, and with keys on insert the lean insert writes none
    // (v6_new_key_insert.sql); triggers that drop records note where (v6_drop_records.sql). Other
    // tables' `row_pk` would not compare equal to a locator.
    let by_locator = !matches!(capture.primary_key, PrimaryKey::Columns(_));
    let defers_records = by_locator && !capture.keys_on_sync;
    // UPDATE OR REPLACE through a UNIQUE constraint: only tables that have one. Where records
    // follow the log, the deletes name their rows and leave the records to tether, like a captured
    // DELETE: dropping them here would also take notes of the drops (v6_drop_records.sql), more
    // statements in a program SQLite sets up for every UPDATE of the table.
    let (or_unique_changed, replaced_deletes, clear_replaced, unique_holders) = if watching {
        let (locator_column, locator, drop_records) = if defers_records {
            (", locator", ", r.row_pk", String::new())
        } else {
            (
                "",
                "",
                format!(
                    "DELETE FROM tether_row_keys
                      WHERE table_id = {table_id} AND ({unique_changed}) AND row_pk IN (
                            SELECT r.row_pk FROM tether_replaced AS r
                             WHERE r.table_id = {table_id} AND {mine} AND NOT {gone});",
                    gone = alive("r"),
                    mine = notes_of_update(capture, "r"),
                ),
            )
        };
        (
            format!("OR {unique_changed}"),
            format!(
                "INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp{locator_column})
                 SELECT r.sync_key, {model}, 'delete', '{{}}', {now}{locator} FROM tether_replaced AS r
                  WHERE r.table_id = {table_id} AND {mine} AND ({unique_changed}) AND NOT {gone};
                 {drop_records}",
                model = literal(capture.model),
                now = now_ms()?,
                gone = alive("r"),
                mine = notes_of_update(capture, "r"),
            ),
            format!(
                "DELETE FROM tether_replaced WHERE table_id = {table_id} AND {};",
                notes_of_update(capture, "tether_replaced")
            ),
            format!(" UNION {}", holders_of_new(capture, false)),
        )
    } else {
        Default::default()
    };
    let pk_columns = capture.primary_key.columns();
    let holders_of_new_row = format!(
        "{key_holder}
         UNION {pk_holder}{unique_holders}",
        key_holder = keyed_rows_where(capture, &format!("t.{sync_key} = NEW.{sync_key}"), false),
        pk_holder = pk_holder_of_new(capture, false),
    );
    // UPDATE OR REPLACE onto another row's primary key or unique values.
    let displaced_by_update = {
        let mut holders = Vec::new();
        if !pk_columns.is_empty() {
            holders.push(pk_holder_of_new(capture, true));
        }
        if watching {
            holders.push(holders_of_new(capture, true));
        }
        holders.join(" UNION ")
    };
    let watch_insert_when = if !watching {
        // Without a key in the INSERT and nothing at its primary key, there is nothing to note.
        format!(
            "WHEN NEW.{sync_key} IS NOT NULL OR EXISTS ({})",
            pk_holder_of_new(capture, false)
        )
    } else {
        String::new()
    };
    let (delete_locator, record_goes, create_locator) = if by_locator {
        (
            capture.primary_key.row_pk("OLD"),
            format!("NOT (OLD.{sync_key} IS NOT NULL AND {NOT_SUPPRESSED})"),
            capture.primary_key.row_pk("NEW"),
        )
    } else {
        ("NULL".to_string(), "1".to_string(), "NULL".to_string())
    };
    let rekey_unkeyed = if capture.keys_on_sync {
        format!(
            "INSERT INTO tether_mutation_logs (entity_id, model, operation, timestamp, sync_status, locator)
             SELECT '', {model}, 'create', {now}, 'unkeyed', {pk_new}
              WHERE NEW.{sync_key} IS NULL AND {NOT_SUPPRESSED};",
            model = literal(capture.model),
            now = now_ms()?,
            pk_new = capture.primary_key.row_pk("NEW"),
        )
    } else {
        String::new()
    };
    // A generated unique column changes through columns an UPDATE names instead: watch them all.
    let generated_unique = unique_columns.iter().any(|c| capture.generated.contains(c));
    let of = |names: &[String]| {
        if generated_unique {
            String::new()
        } else {
            format!("OF {}", join_idents(names))
        }
    };
    let taken_over = format!(
        "(SELECT r.sync_key FROM tether_replaced AS r
           WHERE r.table_id = {table_id} AND {mine} AND NOT {r_alive}
           ORDER BY r.row_pk IS NOT {pk_new}, r.rowid LIMIT 1)",
        pk_new = capture.primary_key.row_pk("NEW"),
        r_alive = alive("r"),
        mine = notes_of_new(capture, "r"),
    );
    let key_name = format!("{}.{}", capture.table, capture.sync_key);
    // Both modes split an INSERT between a lean trigger for a row without a key (`keyless`) and
    // the full path (`insert`), by WHEN clauses that negate each other. The full path clears the
    // notes the keyless trigger's WHEN reads, so the keyless one must fire first: SQLite fires a
    // table's triggers newest first (reparsing the schema keeps that order), so it is created
    // after the full path. So is the sweep of notes after the watch that writes this row's.
    let mut templates = if capture.keys_on_sync {
        if !matches!(capture.primary_key, PrimaryKey::RowidAlias(_)) {
            bail!("{{\"keys\": \"on_sync\"}} needs an INTEGER PRIMARY KEY to find a row again when its key is given; {table:?} has none: track it without the option");
        }
        vec![
            INSERT_KEYED,
            KEYLESS_INSERT,
            UPDATE_KEYS_ON_SYNC,
            // A row without a key has no record of its own, and deleting it logs nothing.
            DELETE,
            GUARD,
            WATCH_INSERT,
            SWEEP_INSERT,
            KEY_GIVEN,
        ]
    } else {
        vec![
            INSERT,
            NEW_KEY_INSERT,
            UPDATE,
            DELETE,
            GUARD,
            WATCH_INSERT,
            SWEEP_INSERT,
        ]
    };
    if !pk_columns.is_empty() {
        templates.push(REKEY);
    }
    if !displaced_by_update.is_empty() {
        templates.push(WATCH_UPDATE);
        templates.push(SWEEP_UPDATE);
    }
    let keyless_when = format!(
        "NEW.{sync_key} IS NULL AND {NOT_SUPPRESSED}
          AND NOT EXISTS (SELECT 1 FROM tether_replaced WHERE table_id = {table_id})"
    );
    // The key of a row the full path logs with none of its own and none taken over; with keys on
    // sync there is none, and the full path logs a row outside server state only if it took one
    // over (v6_log_inserted_row.sql).
    let (fallback_key, key_logged) = if capture.keys_on_sync {
        (
            "NULL".to_string(),
            format!("\n       AND (NOT {NOT_SUPPRESSED} OR {taken_over} IS NOT NULL)"),
        )
    } else {
        (new_ulid()?, String::new())
    };
    let fill = |template: &str, fragments: &[(&'static str, &str)]| {
        let mut template = Template::new(template);
        for (name, text) in fragments {
            template = template.set(name, text);
        }
        template
            .set("keyless_when", &keyless_when)
            .set("fallback_key", &fallback_key)
            .set("key_logged", &key_logged)
            .set("insert_trigger", &ident(&name("insert", table)))
            .set("keyless_trigger", &ident(&name("keyless", table)))
            .set("key_given_trigger", &ident(&name("key_given", table)))
            .set("update_trigger", &ident(&name("update", table)))
            .set("delete_trigger", &ident(&name("delete", table)))
            .set("guard_trigger", &ident(&name("guard", table)))
            .set("rekey_trigger", &ident(&name("rekey", table)))
            .set("watch_insert_trigger", &ident(&name("watch_insert", table)))
            .set("watch_update_trigger", &ident(&name("watch_update", table)))
            .set("sweep_insert_trigger", &ident(&name("sweep_insert", table)))
            .set("sweep_update_trigger", &ident(&name("sweep_update", table)))
            .set("table", &ident(table))
            .set("table_id", &table_id)
            .set("model", &literal(capture.model))
            .set("sync_key", &sync_key)
            .set(
                "payload_row",
                &payload_expr(capture.columns, capture.json_columns, "t")?,
            )
            .set("row_match_new", &capture.locator.matches("", "NEW"))
            .set("t_is_new", &capture.locator.matches("t", "NEW"))
            .set("pk_new", &capture.primary_key.row_pk("NEW"))
            .set("pk_old", &capture.primary_key.row_pk("OLD"))
            .set("pk_t", &capture.primary_key.row_pk("t"))
            .set("pk_columns", &join_idents(&pk_columns))
            .set("changed", &changed)
            .set("of_watched", &of(&watched))
            .set("of_displacing_columns", &of(&displacing_columns))
            .set("taken_over", &taken_over)
            .set("holders_of_new", &holders_of_new_row)
            .set("watch_insert_when", &watch_insert_when)
            .set("notes_of_new", &notes_of_new(capture, "r"))
            .set("own_notes_of_new", &notes_of_new(capture, "tether_replaced"))
            .set("notes_of_update", &notes_of_update(capture, "r"))
            .set("own_notes_of_update", &notes_of_update(capture, "tether_replaced"))
            .set("rekey_unkeyed", &rekey_unkeyed)
            .set("delete_locator", &delete_locator)
            .set("create_locator", &create_locator)
            .set(
                "newest_log_id",
                "(SELECT max(id) FROM tether_mutation_logs)",
            )
            .set("record_goes", &record_goes)
            .set("other_holders_of_new", &displaced_by_update)
            .set("clear_replaced", &clear_replaced)
            .set("or_unique_changed", &or_unique_changed)
            .set("replaced_deletes", &replaced_deletes)
            .set("not_suppressed", NOT_SUPPRESSED)
            .set("new_ulid", &new_ulid()?)
            .set("now_ms", &now_ms()?)
            .set("valid_new_key", &valid_key_expr(&format!("NEW.{sync_key}")))
            .set("valid_old_key", &valid_key_expr(&format!("OLD.{sync_key}")))
            .set(
                "invalid_key_message",
                &literal(&format!(
                    "tether: {key_name} must be a ULID (26 upper-case Crockford base32 characters, as tether_ulid() returns) or NULL to have one given"
                )),
            )
            .set(
                "key_change_message",
                &literal(&format!(
                    "tether: {key_name} is the row's identity on the server and cannot be changed or cleared; delete the row and insert a new one instead"
                )),
            )
            .render()
    };
    // Statements several insert triggers run, rendered once.
    let record_new_row = fill(RECORD_NEW_ROW, &[])?;
    // Records dropped at the row numbers `rows` (a template of a SELECT of them), noted where the
    // lean insert leaves its record to tether.
    let drop_records = |rows: &str| -> Result<String> {
        let rows = fill(rows, &[])?;
        let note = if defers_records {
            fill(NOTE_DROPPED, &[("dropped_rows", &rows)])?
        } else {
            String::new()
        };
        fill(
            DROP_RECORDS,
            &[("dropped_rows", &rows), ("note_dropped", &note)],
        )
    };
    let fragments = [
        ("replaced_on_insert", fill(REPLACED_ON_INSERT, &[])?),
        (
            "recorded_on_insert",
            fill(
                RECORDED_ON_INSERT,
                &[
                    ("record_new_row", &record_new_row),
                    ("drop_replaced_records", &drop_records(REPLACED_ROWS)?),
                ],
            )?,
        ),
        ("drop_moved_records", drop_records(MOVED_ROWS)?),
        (
            "record_in_trigger",
            if defers_records {
                String::new()
            } else {
                record_new_row.clone()
            },
        ),
        ("log_inserted_row", fill(LOG_INSERTED_ROW, &[])?),
        ("clear_nested_notes", fill(CLEAR_NESTED_NOTES, &[])?),
        ("sweep_notes", fill(SWEEP_NOTES, &[("swept", "1")])?),
        // An UPDATE may run while a REPLACE deletes the rows in its way one by one (a foreign key's
        // ON DELETE SET NULL on the same table): the REPLACE's notes of rows not deleted yet look
        // like a skipped row's, so an UPDATE sweeps only notes an UPDATE wrote.
        (
            "sweep_update_notes",
            fill(SWEEP_NOTES, &[("swept", "substr(for_row, 1, 2) = 'u:'")])?,
        ),
    ];
    let fragments: Vec<(&'static str, &str)> =
        fragments.iter().map(|(n, t)| (*n, t.as_str())).collect();
    templates
        .into_iter()
        .map(|template| fill(template, &fragments))
        .collect()
}

/// The names of the triggers [`render`] creates for the table.
pub fn expected_names(capture: &Capture) -> Vec<String> {
    let mut kinds = vec![
        "insert",
        "keyless",
        "update",
        "delete",
        "guard",
        "watch_insert",
        "sweep_insert",
    ];
    if !capture.primary_key.columns().is_empty() {
        kinds.push("rekey");
    }
    if !capture.primary_key.columns().is_empty() || !capture.unique_sets.is_empty() {
        kinds.push("watch_update");
        kinds.push("sweep_update");
    }
    if capture.keys_on_sync {
        kinds.push("key_given");
    }
    let mut names: Vec<String> = kinds.iter().map(|k| name(k, capture.table)).collect();
    names.sort();
    names
}

/// Drops any existing capture triggers of the table and creates current ones.
pub fn install(conn: &Connection, capture: &Capture) -> Result<Vec<String>> {
    remove(conn, capture.table)?;
    for sql in render(capture)? {
        conn.execute_batch(&sql)?;
    }
    installed(conn, capture.table)
}

/// Drops tether's triggers of `table`: those named after it and those sitting on it (a renamed
/// table keeps triggers named after its old name).
pub fn remove(conn: &Connection, table: &str) -> Result<()> {
    let mut names = trigger_names(table);
    names.extend(installed(conn, table)?);
    for name in names {
        conn.execute_batch(&format!("DROP TRIGGER IF EXISTS main.{}", ident(&name)))?;
    }
    Ok(())
}

/// The names of tether's triggers that sit on `table` (matched by the table they are on, so a
/// renamed table's triggers, still named after its old name, are found too).
pub fn installed(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM main.sqlite_schema
          WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE
            AND (name LIKE 'tether\\_insert\\_%' ESCAPE '\\' OR name LIKE 'tether\\_update\\_%' ESCAPE '\\'
                 OR name LIKE 'tether\\_delete\\_%' ESCAPE '\\' OR name LIKE 'tether\\_guard\\_%' ESCAPE '\\'
                 OR name LIKE 'tether\\_rekey\\_%' ESCAPE '\\' OR name LIKE 'tether\\_watch\\_%' ESCAPE '\\'
                 OR name LIKE 'tether\\_keyless\\_%' ESCAPE '\\' OR name LIKE 'tether\\_key\\_given\\_%' ESCAPE '\\'
                 OR name LIKE 'tether\\_sweep\\_%' ESCAPE '\\')
          ORDER BY name",
    )?;
    let names = stmt
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

/// False when one of the table's insert or update triggers would fire out of order (see
/// [`render`]): the keyless one after the full path, which clears the notes the keyless one's
/// WHEN reads, or a sweep after its watch, which would sweep the notes the watch just wrote. SQLite fires a table's
/// triggers newest first, reading the schema in rowid order. Only a tool that recreated tether's
/// triggers in another order causes it; the caller then installs them again.
pub fn triggers_fire_in_order(conn: &Connection, table: &str) -> Result<bool> {
    let newest = |kind: &str| {
        format!(
            "(SELECT max(rowid) FROM main.sqlite_schema WHERE type = 'trigger'
               AND tbl_name = ?1 COLLATE NOCASE AND name LIKE 'tether\\_{kind}\\_%' ESCAPE '\\')"
        )
    };
    let in_order: Option<bool> = conn.query_row(
        &format!(
            "SELECT {} > {} AND coalesce({} > {}, 1) AND coalesce({} > {}, 1)",
            newest("keyless"),
            newest("insert"),
            newest("sweep\\_insert"),
            newest("watch\\_insert"),
            newest("sweep\\_update"),
            newest("watch\\_update"),
        ),
        [table],
        |r| r.get(0),
    )?;
    Ok(in_order.unwrap_or(true))
}

/// Queues a mutation (`create` or `update`, the full synced row) for each row of the table
/// matched by `filter` (a SQL condition on `t`, with `params`), in row order.
pub fn queue_rows(
    conn: &Connection,
    capture: &Capture,
    operation: &str,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<usize> {
    let sync_key = format!("t.{}", ident(capture.sync_key));
    let sql = format!(
        "INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
         SELECT {sync_key}, {model}, {operation}, {payload}, {now}
           FROM main.{table} AS t
          WHERE {sync_key} IS NOT NULL AND ({filter})
          ORDER BY {order}",
        model = literal(capture.model),
        operation = literal(operation),
        payload = payload_expr(capture.columns, capture.json_columns, "t")?,
        now = now_ms()?,
        table = ident(capture.table),
        order = capture.locator.order_by("t"),
    );
    let queued = conn.prepare_cached(&sql)?.execute(params)?;
    crate::queue::index_new_rows(conn)?;
    Ok(queued)
}
