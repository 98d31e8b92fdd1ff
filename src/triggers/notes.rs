//! The notes of rows about to be replaced (`tether_replaced`): which rows a BEFORE trigger notes,
//! under which name, and which notes a trigger reads as its own row's. A REPLACE (or UPDATE OR
//! REPLACE) deletes the rows in its way without a trigger; the BEFORE trigger of the row notes
//! them while they exist and the AFTER triggers of the same row read them. Each note names the row
//! that wrote it (`for_pk`, `for_row`), so that a statement a trigger of the user's runs on the
//! same table meanwhile neither reads nor sweeps them.
//!
//! Every trigger program on a table costs each INSERT in proportion to its registers, which SQLite
//! zeroes before it reads the WHEN clause, so the names are cheap: a table without other UNIQUE
//! constraints names an inserted row by its primary key and sync key alone, with no function call.
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

/// The unique columns a name may read from `NEW` in both a BEFORE and an AFTER trigger: not
/// generated ones, which a BEFORE UPDATE trigger sees NULL when the UPDATE does not name the
/// columns they are computed from.
fn named_unique_columns(capture: &Capture) -> Vec<String> {
    unique_columns(capture)
        .into_iter()
        .filter(|c| !capture.generated.contains(c))
        .collect()
}

/// `for_row` of an inserted row's notes, read from `row`: its sync key, and its unique values if
/// the table has other UNIQUE constraints (one `printf`).
fn values_of(capture: &Capture, row: &str) -> String {
    let key = format!("{row}.{}", ident(capture.sync_key));
    let unique = named_unique_columns(capture);
    if unique.is_empty() {
        return key;
    }
    let mut values = vec![key];
    values.extend(unique.iter().map(|c| format!("{row}.{}", ident(c))));
    let format = vec!["%Q"; values.len()].join(",");
    format!("printf('{format}', {})", values.join(", "))
}

/// `for_pk, for_row` of the notes the BEFORE INSERT trigger of the row `NEW` writes. A row number
/// SQLite picks is -1 to a BEFORE trigger: `for_pk` is NULL then, and the notes are read as those
/// of whatever row number the row got ([`notes_of`]).
fn note_owner_before(capture: &Capture) -> String {
    let pk_new = capture.primary_key.row_pk("NEW");
    let pk = match capture.primary_key {
        PrimaryKey::Columns(_) => pk_new,
        _ => format!("nullif({pk_new}, -1)"),
    };
    format!("{pk}, {}", values_of(capture, "NEW"))
}

/// True, in the AFTER INSERT triggers, for the notes (`alias`: `r` or `tether_replaced`) that the
/// BEFORE INSERT trigger of the row `NEW` wrote.
pub fn notes_of_new(capture: &Capture, alias: &str) -> String {
    let pk = capture.primary_key.row_pk("NEW");
    let values = values_of(capture, "NEW");
    match capture.primary_key {
        PrimaryKey::Columns(_) => format!("{alias}.for_row IS {values} AND {alias}.for_pk = {pk}"),
        _ => format!(
            "{alias}.for_row IS {values} AND ({alias}.for_pk IS NULL OR {alias}.for_pk = {pk})"
        ),
    }
}

/// `for_row` of an updated row's notes (`for_pk` NULL): its primary key before the update, and the
/// values of its primary key and unique columns before and after (not generated ones after: see
/// [`named_unique_columns`]), which its BEFORE and AFTER UPDATE triggers see alike. The values make the names of an UPDATE OR REPLACE and of a second update of
/// the same row that a trigger of the user's runs meanwhile differ (the first changed one of
/// them); the `u:` keeps them apart from an inserted row's.
fn update_note_owner(capture: &Capture) -> String {
    let with_unique = |unique: Vec<String>| {
        let mut columns = capture.primary_key.columns();
        for column in unique {
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
        columns
    };
    let mut values = vec![capture.primary_key.row_pk("OLD")];
    values.extend(
        with_unique(unique_columns(capture))
            .iter()
            .map(|c| format!("OLD.{}", ident(c))),
    );
    values.extend(
        with_unique(named_unique_columns(capture))
            .iter()
            .map(|c| format!("NEW.{}", ident(c))),
    );
    let format = vec!["%Q"; values.len()].join(",");
    format!("printf('u:{format}', {})", values.join(", "))
}

/// True, in the AFTER UPDATE triggers, for the notes (`alias`: `r` or `tether_replaced`) that the
/// BEFORE UPDATE trigger of the row wrote.
pub fn notes_of_update(capture: &Capture, alias: &str) -> String {
    format!("{alias}.for_row = {}", update_note_owner(capture))
}

/// `SELECT table_id, sync key, row_pk, for_pk, for_row` of rows holding the unique values of
/// `NEW`; with `exclude_old`, other than the row being updated.
pub fn holders_of_new(capture: &Capture, exclude_old: bool) -> String {
    capture
        .unique_sets
        .iter()
        .map(|set| keyed_rows_where(capture, &same_values(set, "t", "NEW"), exclude_old))
        .collect::<Vec<_>>()
        .join(" UNION ")
}

/// `SELECT table_id, sync key, row_pk, for_pk, for_row` of the keyed row holding `NEW`'s primary
/// key; with `exclude_old`, other than the row being updated.
pub fn pk_holder_of_new(capture: &Capture, exclude_old: bool) -> String {
    keyed_rows_where(
        capture,
        &capture.primary_key.matches("t", "NEW"),
        exclude_old,
    )
}

/// `SELECT table_id, sync key, row_pk, for_pk, for_row` of the keyed rows `t` of the table
/// matching `condition`, as notes of the row `NEW` ([`note_owner_before`]); with `exclude_old`,
/// other than the row being updated, as notes of that row ([`update_note_owner`]).
pub fn keyed_rows_where(capture: &Capture, condition: &str, exclude_old: bool) -> String {
    let (other, owner) = if exclude_old {
        (
            format!(" AND NOT ({})", capture.locator.matches("t", "OLD")),
            format!("NULL, {}", update_note_owner(capture)),
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
