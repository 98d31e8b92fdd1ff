//! The notes of rows about to be replaced (`tether_replaced`): which rows a BEFORE trigger notes,
//! under which name, and which notes a trigger reads as its own row's. A REPLACE (or UPDATE OR
//! REPLACE) deletes the rows in its way without a trigger; the BEFORE trigger of the row notes
//! them while they exist and the AFTER triggers of the same row read them. Each note names the row
//! that wrote it (`for_row`), so that a statement a trigger of the user's runs on the same table
//! meanwhile neither reads nor sweeps them.
use super::Capture;
use crate::sql::ident;
use crate::table_info::{same_values, PrimaryKey};

/// The columns of the table's UNIQUE constraints other than the primary key and the sync key,
/// sorted, each once.
pub fn unique_columns(capture: &Capture) -> Vec<String> {
    let mut all: Vec<String> = capture
        .unique_sets
        .iter()
        .flatten()
        .map(|(c, _)| c.clone())
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The name of an inserted row's notes: its primary key (`pk`), sync key and unique values, read
/// from `row` (`NEW`, or a row `t` of the table). One `printf` call: `quote()` per value cost a
/// REPLACE about 7% more instructions (`tools/bench/note_paths.py`).
fn owner_of(capture: &Capture, row: &str, pk: &str) -> String {
    let mut values = vec![pk.to_string(), format!("{row}.{}", ident(capture.sync_key))];
    values.extend(
        unique_columns(capture)
            .iter()
            .map(|c| format!("{row}.{}", ident(c))),
    );
    let format = vec!["%Q"; values.len()].join(",");
    format!("printf('{format}', {})", values.join(", "))
}

/// The name the BEFORE INSERT trigger gives the notes of the row `NEW`. A row number SQLite picks
/// is -1 to a BEFORE trigger: the row is named with its primary key NULL then, and read back
/// under either name ([`notes_of`]).
pub fn note_owner_before(capture: &Capture) -> String {
    let pk_new = capture.primary_key.row_pk("NEW");
    match capture.primary_key {
        PrimaryKey::Columns(_) => owner_of(capture, "NEW", &pk_new),
        _ => owner_of(capture, "NEW", &format!("nullif({pk_new}, -1)")),
    }
}

/// True for the notes (`alias`: `r` or `tether_replaced`) that the BEFORE INSERT trigger of `row`
/// wrote: `NEW` in its AFTER INSERT triggers, or a row `t` of the table (the row that took the
/// place of the rows a REPLACE under way noted).
pub fn notes_of(capture: &Capture, row: &str, alias: &str) -> String {
    let owner = owner_of(capture, row, &capture.primary_key.row_pk(row));
    match capture.primary_key {
        PrimaryKey::Columns(_) => format!("{alias}.for_row = {owner}"),
        _ => format!(
            "{alias}.for_row IN ({owner}, {})",
            owner_of(capture, row, "NULL")
        ),
    }
}

/// The name of an updated row's notes: its primary key before the update, and the values of its
/// primary key and unique columns before and after, which its BEFORE and AFTER UPDATE triggers
/// see alike. The values make the names of an UPDATE OR REPLACE and of a second update of the
/// same row that a trigger of the user's runs meanwhile differ (the first changed one of them).
pub fn update_note_owner(capture: &Capture) -> String {
    let mut columns = capture.primary_key.columns();
    for column in unique_columns(capture) {
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    let mut values = vec![capture.primary_key.row_pk("OLD")];
    for row in ["OLD", "NEW"] {
        values.extend(columns.iter().map(|c| format!("{row}.{}", ident(c))));
    }
    let format = vec!["%Q"; values.len()].join(",");
    format!("printf('u:{format}', {})", values.join(", "))
}

/// `SELECT table_id, sync key, row_pk, for_row` of rows holding the unique values of `NEW`; with
/// `exclude_old`, other than the row being updated.
pub fn holders_of_new(capture: &Capture, exclude_old: bool) -> String {
    capture
        .unique_sets
        .iter()
        .map(|set| keyed_rows_where(capture, &same_values(set, "t", "NEW"), exclude_old))
        .collect::<Vec<_>>()
        .join(" UNION ")
}

/// `SELECT table_id, sync key, row_pk, for_row` of the keyed row holding `NEW`'s primary key;
/// with `exclude_old`, other than the row being updated.
pub fn pk_holder_of_new(capture: &Capture, exclude_old: bool) -> String {
    keyed_rows_where(
        capture,
        &capture.primary_key.matches("t", "NEW"),
        exclude_old,
    )
}

/// `SELECT table_id, sync key, row_pk, for_row` of the keyed rows `t` of the table matching
/// `condition`, as notes of the row `NEW` ([`note_owner_before`]); with `exclude_old`, other than
/// the row being updated, as notes of that row ([`update_note_owner`]).
pub fn keyed_rows_where(capture: &Capture, condition: &str, exclude_old: bool) -> String {
    let (other, owner) = if exclude_old {
        (
            format!(" AND NOT ({})", capture.locator.matches("t", "OLD")),
            update_note_owner(capture),
        )
    } else {
        (String::new(), note_owner_before(capture))
    };
    format!(
        "SELECT {id}, t.{key}, {pk}, {owner} FROM {table} AS t WHERE {condition} AND t.{key} IS NOT NULL{other}",
        id = capture.table_id,
        key = ident(capture.sync_key),
        table = ident(capture.table),
        pk = capture.primary_key.row_pk("t"),
    )
}
