//! Writing server state into a tracked table: only its synced columns, matched by sync key, the
//! local primary key never touched. Callers run this inside `capture::without_capture`.
use rusqlite::types::Value as Sql;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::{Map, Value};

use crate::capture::without_capture;
use crate::engine::cascade::{Actions, References};
use crate::error::{Cause, Error, Result};
use crate::sql::ident;
use crate::tracking::TrackedTable;

/// JSON → SQLite: booleans become 0/1, objects and arrays their JSON text.
pub fn to_sql(value: &Value) -> Sql {
    match value {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

/// Bytes travel as upper-case hex text (what SQLite's `hex()` gives; JSON has no bytes); `None`
/// when `text` is anything else, which stays text.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    let upper_hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
    if text.is_empty() || !text.len().is_multiple_of(2) || !text.bytes().all(upper_hex) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// One synced column's value as it is written locally: hex text back into bytes for columns
/// that hold bytes (declared BLOB, or untyped and holding bytes now); for a JSON column the JSON
/// text of the value (a string `"a"` is the text `"a"`, true is `true`), as capture read it.
/// Ambiguities of the wire form, documented in README: an empty or non-hex string in a BLOB
/// column stays text; JSON null is SQL NULL where the column allows it.
fn column_value(
    conn: &Connection,
    table: &TrackedTable,
    entity: &str,
    column: &str,
    value: &Value,
) -> Result<Sql> {
    if table.json_columns.iter().any(|c| c == column) {
        let not_null = table.not_null_columns.iter().any(|c| c == column);
        return Ok(match value {
            Value::String(_) | Value::Bool(_) => Sql::Text(value.to_string()),
            // Beyond 64-bit integers a REAL would change the number: keep its JSON text.
            Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_some() => {
                Sql::Text(n.to_string())
            }
            // JSON null is SQL NULL, unless the column cannot hold that: then the text `null`.
            Value::Null if not_null => Sql::Text("null".into()),
            other => to_sql(other),
        });
    }
    if let Value::String(text) = value {
        let bytes_here = table.blob_columns.iter().any(|c| c == column)
            || (table.untyped_columns.iter().any(|c| c == column)
                && conn
                    .prepare_cached(&format!(
                        "SELECT typeof({}) = 'blob' FROM main.{} WHERE {} = ?1",
                        ident(column),
                        ident(&table.table),
                        ident(&table.sync_key)
                    ))?
                    .query_row([entity], |r| r.get::<_, bool>(0))
                    .optional()?
                    .unwrap_or(false));
        if bytes_here {
            if let Some(bytes) = from_hex(text) {
                return Ok(Sql::Blob(bytes));
            }
        }
    }
    Ok(to_sql(value))
}

/// Updates the row whose sync key is `entity`, or inserts it. Payload keys that are not synced
/// columns of the table (server ids, timestamps, hidden fields) are ignored. A synced column the
/// server sends an array or object for holds JSON from now on (see
/// [`crate::tracking::learn_json_columns`]). The entity is recorded as one the server has.
pub fn upsert(
    conn: &Connection,
    table: &TrackedTable,
    entity: &str,
    payload: &Map<String, Value>,
) -> Result<bool> {
    let columns: Vec<&String> = table
        .synced_columns
        .iter()
        .filter(|c| payload.contains_key(*c))
        .collect();
    let learned: Vec<String> = columns
        .iter()
        .filter(|c| payload[**c].is_array() || payload[**c].is_object())
        .filter(|c| !table.json_columns.contains(c))
        .map(|c| c.to_string())
        .collect();
    if !learned.is_empty() {
        crate::tracking::learn_json_columns(conn, &table.table, &learned)?;
        // Values go as JSON text from now on, this one too.
        let mut table = table.clone();
        table.json_columns.extend(learned.iter().cloned());
        return write_row(conn, &table, entity, payload, &columns).map(|()| true);
    }
    write_row(conn, table, entity, payload, &columns).map(|()| false)
}

fn write_row(
    conn: &Connection,
    table: &TrackedTable,
    entity: &str,
    payload: &Map<String, Value>,
    columns: &[&String],
) -> Result<()> {
    let values: Vec<Sql> = columns
        .iter()
        .map(|c| column_value(conn, table, entity, c, &payload[*c]))
        .collect::<Result<_>>()?;
    let name = format!("main.{}", ident(&table.table));
    let key = ident(&table.sync_key);
    let updated = if columns.is_empty() {
        conn.prepare_cached(&format!("SELECT count(*) FROM {name} WHERE {key} = ?1"))?
            .query_row([entity], |r| r.get::<_, i64>(0))? as usize
    } else {
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", ident(c), i + 2))
            .collect();
        let mut params = vec![Sql::Text(entity.to_string())];
        params.extend(values.iter().cloned());
        execute(
            conn,
            &format!("UPDATE {name} SET {} WHERE {key} = ?1", sets.join(", ")),
            params_from_iter(params),
        )?
    };
    if updated == 0 {
        let mut names = vec![key];
        names.extend(columns.iter().map(|c| ident(c)));
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let mut params = vec![Sql::Text(entity.to_string())];
        params.extend(values);
        execute(
            conn,
            &format!(
                "INSERT INTO {name} ({}) VALUES ({})",
                names.join(", "),
                marks.join(", ")
            ),
            params_from_iter(params),
        )?;
    }
    remember_known(conn, entity)
}

/// The server has this entity: tracking the table again never queues a `create` for it.
fn remember_known(conn: &Connection, entity: &str) -> Result<()> {
    execute(
        conn,
        "INSERT INTO tether_entity_versions (entity_id, version) VALUES (?1, 0) ON CONFLICT DO NOTHING",
        [entity],
    )?;
    Ok(())
}

/// `Connection::execute` through the statement cache: these run once per snapshot, and
/// preparing a statement on a tracked table compiles its trigger programs every time.
fn execute(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// Removes the row whose sync key is `entity`; nothing to do when it is absent.
pub fn delete(conn: &Connection, table: &TrackedTable, entity: &str) -> Result<()> {
    execute(
        conn,
        &format!(
            "DELETE FROM main.{} WHERE {} = ?1",
            ident(&table.table),
            ident(&table.sync_key)
        ),
        [entity],
    )?;
    remember_known(conn, entity)
}

/// A JSON payload as an object: PHP sends an empty one as `[]`.
pub fn payload_object(value: &Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map.clone()),
        Value::Array(items) if items.is_empty() => Some(Map::new()),
        Value::Null => Some(Map::new()),
        _ => None,
    }
}

/// A payload as tether stored it (a deferred or quarantined snapshot, a mutation's): an object,
/// empty if the text is not one.
pub fn stored_payload(text: &str) -> Map<String, Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| payload_object(&v))
        .unwrap_or_default()
}

/// Applies a snapshot: `delete` removes the row, anything else upserts it. True when the table
/// learned JSON columns from it.
pub fn snapshot(
    conn: &Connection,
    table: &TrackedTable,
    entity: &str,
    operation: &str,
    payload: &Map<String, Value>,
) -> Result<bool> {
    if operation == "delete" {
        delete(conn, table, entity).map(|()| false)
    } else {
        upsert(conn, table, entity, payload)
    }
}

/// One row of server state to write: a pulled snapshot, a conflict's server state, or a row
/// coming back from the quarantine.
pub struct ServerRow<'a> {
    pub entity: &'a str,
    pub model: &'a str,
    pub operation: &'a str,
    pub payload: &'a Map<String, Value>,
    /// Where the pull stood when the row arrived (`None`: at the start, or not from a pull).
    pub cursor_before: Option<i64>,
}

/// The source of a [`ServerRow`] that removes a row the server never had (`tether_discard`).
pub const DISCARD: &str = "discard";

/// What became of a [`ServerRow`].
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Outcome {
    Applied,
    /// The row has unsent local changes: the state waits for their push.
    Deferred,
    /// It cannot be written now (a constraint, a missing parent): kept in the quarantine.
    Quarantined,
    /// No tracked table has this model.
    UnknownModel,
}

/// A row whose writing made SQLite end the whole transaction (an application trigger's
/// `RAISE(ROLLBACK)`): the transaction is run again and this row goes to the quarantine unwritten.
pub struct Refusal {
    entity: String,
    payload: Map<String, Value>,
    error: String,
}

/// Writes server rows inside one applying transaction, knowing which rows have unsent local
/// changes (read once per transaction, so a local write between transactions is seen).
pub struct Applier<'r> {
    tables: RefCell<Vec<TrackedTable>>,
    /// Read at the first row that could be deferred (answers to a push never need it), then kept
    /// up to date with what writing rows logs (see [`Applier::note_logged`]).
    unsent: RefCell<Option<HashMap<String, bool>>>,
    /// The queue's last id when `unsent` was last brought up to date.
    logged_up_to: Cell<i64>,
    deferred_waiting: Cell<bool>,
    quarantine_waiting: Cell<bool>,
    /// Rows a discard left diverged exist: a row written now is no longer diverged.
    diverged_waiting: Cell<bool>,
    /// Each row in its own savepoint, foreign keys checked after it (see [`in_transaction`]).
    careful: bool,
    refusals: &'r RefCell<Vec<Refusal>>,
    /// Set when a row was refused outside the careful mode: the transaction runs again carefully.
    wants_careful: &'r Cell<bool>,
    /// Foreign keys that act on delete, read at the first delete.
    references: RefCell<Option<References>>,
}

impl Applier<'_> {
    /// The rows with changes the server has not taken (read once per transaction, when needed).
    fn unsent(&self, conn: &Connection) -> Result<std::cell::Ref<'_, HashMap<String, bool>>> {
        if self.unsent.borrow().is_none() {
            let last = last_logged(conn)?;
            let loaded = crate::queue::held_entities(conn)?;
            self.logged_up_to.set(last);
            *self.unsent.borrow_mut() = Some(loaded);
        }
        Ok(std::cell::Ref::map(self.unsent.borrow(), |u| {
            u.as_ref().expect("just loaded")
        }))
    }

    /// Writing a row can log changes of other rows in the same transaction: a row it pushed out
    /// through an `ON CONFLICT REPLACE` constraint is logged as a delete. Such a row now has an
    /// unsent change, so a snapshot of it later in this transaction (the echo of its own push)
    /// must wait like any other, not bring it back and push out the row just written.
    fn note_logged(&self, conn: &Connection) -> Result<()> {
        let mut unsent = self.unsent.borrow_mut();
        let Some(unsent) = unsent.as_mut() else {
            return Ok(()); // read later, with these rows
        };
        let mut stmt = conn.prepare_cached(
            "SELECT id, entity_id FROM tether_mutation_logs WHERE id > ?1 ORDER BY id",
        )?;
        let mut rows = stmt.query([self.logged_up_to.get()])?;
        while let Some(row) = rows.next()? {
            self.logged_up_to.set(row.get(0)?);
            let entity: String = row.get(1)?;
            if !entity.is_empty() {
                unsent.entry(entity).or_insert(false);
            }
        }
        Ok(())
    }

    /// Row by row, each in its own savepoint (the second run of [`in_transaction`]).
    pub fn is_careful(&self) -> bool {
        self.careful
    }

    pub fn tables(&self) -> std::cell::Ref<'_, Vec<TrackedTable>> {
        self.tables.borrow()
    }

    /// Applies `row` unless its entity has unsent local changes (then it is deferred).
    pub fn apply(&self, conn: &Connection, row: &ServerRow, source: &str) -> Result<Outcome> {
        if self.table_index(row.model).is_none() {
            return Ok(Outcome::UnknownModel);
        }
        let sent = self.unsent(conn)?.get(row.entity).copied();
        if let Some(sent) = sent {
            defer(conn, row, sent)?;
            self.deferred_waiting.set(true);
            self.forget_quarantined(conn, row.entity)?;
            return Ok(Outcome::Deferred);
        }
        if self.deferred_waiting.get() {
            forget_deferred(conn, row.entity)?;
        }
        self.write(conn, row, source)
    }

    /// Writes `row` now, whatever is queued for it (a conflict's server state). A row the
    /// database refuses goes to the quarantine; any other failure (disk full, I/O, read-only,
    /// interrupted) is returned, and the caller's whole transaction rolls back.
    pub fn write(&self, conn: &Connection, row: &ServerRow, source: &str) -> Result<Outcome> {
        let Some(index) = self.table_index(row.model) else {
            return Ok(Outcome::UnknownModel);
        };
        let refused = self
            .refusals
            .borrow()
            .iter()
            .find(|r| r.entity == row.entity && &r.payload == row.payload)
            .map(|r| r.error.clone());
        if let Some(error) = refused {
            return self.quarantine(conn, row, source, &Error::new(error));
        }
        // Foreign key actions of a delete are queued with it, in its savepoint.
        let cascades = if row.operation == "delete" {
            let tables = self.tables.borrow();
            let mut references = self.references.borrow_mut();
            if references.is_none() {
                *references = Some(References::load(conn, &tables)?);
            }
            let references = references.as_ref().expect("just loaded");
            // A row discarded here that the server never had: its children the cascade deletes
            // are deleted on the server too, whatever they hold.
            let changed = if source == DISCARD {
                None
            } else {
                Some(self.unsent(conn)?)
            };
            references.before_delete(
                conn,
                &tables,
                &tables[index],
                row.entity,
                changed.as_deref(),
            )?
        } else {
            Actions::default()
        };
        let savepoint = self.careful || !cascades.is_empty();
        if savepoint {
            conn.execute_batch("SAVEPOINT tether_row")?;
        }
        let written = {
            let tables = self.tables.borrow();
            cascades.queue_deletes(conn, &tables).and_then(|()| {
                let learned =
                    snapshot(conn, &tables[index], row.entity, row.operation, row.payload)?;
                cascades.queue_updates(conn, &tables)?;
                Ok(learned)
            })
        };
        let written = if !savepoint || conn.is_autocommit() {
            written
        } else if self.careful && written.is_ok() && missing_parent(conn) {
            conn.execute_batch("ROLLBACK TO tether_row; RELEASE tether_row")?;
            Err(Error::with_cause(
                "FOREIGN KEY constraint failed: the row's parent is not here (yet), or it is a parent its children still need",
                Cause::Sqlite {
                    code: rusqlite::ErrorCode::ConstraintViolation,
                    extended: rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
                },
            ))
        } else {
            let end = if written.is_ok() {
                "RELEASE tether_row"
            } else {
                "ROLLBACK TO tether_row; RELEASE tether_row"
            };
            conn.execute_batch(end)?;
            written
        };
        match written {
            Ok(learned) => {
                self.note_logged(conn)?;
                if learned {
                    // The table's JSON columns changed: the rest of the transaction must see it.
                    *self.tables.borrow_mut() = crate::tracking::tracked_tables(conn)?;
                }
                self.forget_quarantined(conn, row.entity)?;
                self.forget_diverged(conn, row.entity)?;
                Ok(Outcome::Applied)
            }
            Err(error) => {
                let learns = row.payload.values().any(|v| v.is_array() || v.is_object());
                if learns && !conn.is_autocommit() {
                    // The column may have been learned as JSON before the row was refused.
                    *self.tables.borrow_mut() = crate::tracking::tracked_tables(conn)?;
                }
                if conn.is_autocommit() && error.is_row_problem() {
                    // SQLite ended the transaction over this row: run it again without it.
                    self.refusals.borrow_mut().push(Refusal {
                        entity: row.entity.to_string(),
                        payload: row.payload.clone(),
                        error: error.message().to_string(),
                    });
                }
                let error = crate::db::still_in_transaction(conn, error)?;
                if !error.is_row_problem() {
                    return Err(error);
                }
                if !self.careful {
                    // Without a savepoint a refused statement may have kept part of its work
                    // (RAISE(FAIL)): run the transaction again row by row.
                    self.wants_careful.set(true);
                    return Err(error.context("a row was refused; writing again row by row"));
                }
                self.quarantine(conn, row, source, &error)
            }
        }
    }

    fn quarantine(
        &self,
        conn: &Connection,
        row: &ServerRow,
        source: &str,
        error: &Error,
    ) -> Result<Outcome> {
        crate::engine::quarantine::keep(conn, row, source, error)?;
        self.quarantine_waiting.set(true);
        Ok(Outcome::Quarantined)
    }

    /// Which local row a mutation or snapshot is about (see [`which_row`]).
    pub fn which_row(&self, conn: &Connection, model: &str, entity: &str) -> Result<Value> {
        which_row(conn, &self.tables.borrow(), model, entity)
    }

    fn table_index(&self, model: &str) -> Option<usize> {
        self.tables.borrow().iter().position(|t| t.model == model)
    }

    /// The server's state of `entity` is known again (written, or a change of it applied there).
    pub fn forget_diverged(&self, conn: &Connection, entity: &str) -> Result<()> {
        if self.diverged_waiting.get() {
            execute(
                conn,
                "DELETE FROM tether_diverged WHERE entity_id = ?1",
                [entity],
            )?;
        }
        Ok(())
    }

    fn forget_quarantined(&self, conn: &Connection, entity: &str) -> Result<()> {
        if self.quarantine_waiting.get() {
            crate::engine::quarantine::forget(conn, entity)?;
        }
        Ok(())
    }
}

/// Which local row a mutation or snapshot is about, for rejections and errors: model,
/// table, sync key and the row's primary key (`null` once the row is gone).
pub fn which_row(
    conn: &Connection,
    tables: &[TrackedTable],
    model: &str,
    entity: &str,
) -> Result<Value> {
    let Some(table) = tables.iter().find(|t| t.model == model) else {
        return Ok(serde_json::json!({"model": model, "entity_id": entity}));
    };
    if !crate::table_info::table_exists(conn, &table.table)? {
        // Dropped since it was tracked: the row is named without its primary key.
        return Ok(
            serde_json::json!({"model": model, "table": table.table, "entity_id": entity,
                                     "primary_key": null}),
        );
    }
    let columns = crate::table_info::primary_key_columns(conn, &table.table)?;
    let pairs: Vec<String> = if columns.is_empty() {
        vec!["'rowid', rowid".to_string()]
    } else {
        columns
            .iter()
            .map(|c| format!("{}, {}", crate::sql::literal(c), ident(c)))
            .collect()
    };
    let key: Option<String> = conn
        .prepare_cached(&format!(
            "SELECT json_object({}) FROM main.{} WHERE {} = ?1",
            pairs.join(", "),
            ident(&table.table),
            ident(&table.sync_key)
        ))?
        .query_row([entity], |r| r.get(0))
        .optional()?;
    let primary_key = key
        .and_then(|k| serde_json::from_str::<Value>(&k).ok())
        .unwrap_or(Value::Null);
    Ok(
        serde_json::json!({"model": model, "table": table.table, "entity_id": entity,
                          "primary_key": primary_key}),
    )
}

/// The queue's last id (0 when empty).
fn last_logged(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(max(id), 0) FROM tether_mutation_logs",
        [],
        |r| r.get(0),
    )?)
}

/// Whether the transaction now holds a foreign key violation, checked or deferred: SQLite's own
/// counter, so no table is scanned.
fn missing_parent(conn: &Connection) -> bool {
    let (mut current, mut highest) = (0, 0);
    // SAFETY: the handle is valid for the call; SQLite only writes the two integers.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_DEFERRED_FKS,
            &mut current,
            &mut highest,
            0,
        )
    };
    rc == rusqlite::ffi::SQLITE_OK && current > 0
}

/// Runs `body` in an applying transaction (not captured) with an [`Applier`]. Foreign keys are
/// checked at COMMIT first, so a child that comes before its parent in the same transaction
/// applies. If the commit fails a foreign key (a parent that is not there, a key declared
/// DEFERRABLE) or a row is refused, the transaction runs again carefully: each row in its own
/// savepoint, undone and quarantined if it is refused or leaves a foreign key unresolved (so a
/// refused row never keeps half its work, as `RAISE(FAIL)` would). If writing a row makes SQLite end the whole
/// transaction (`RAISE(ROLLBACK)` in an application trigger), it runs again with that row
/// quarantined unwritten. Any other failure is returned.
pub fn in_transaction<T>(
    conn: &Connection,
    mut body: impl FnMut(&Connection, &Applier) -> Result<T>,
) -> Result<T> {
    let refusals = RefCell::new(Vec::new());
    let wants_careful = Cell::new(false);
    let mut careful = false;
    loop {
        let refused_before = refusals.borrow().len();
        let attempt = without_capture(conn, !careful, |conn| {
            let exists = |table: &str| -> Result<bool> {
                Ok(
                    conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                        r.get(0)
                    })?,
                )
            };
            let applier = Applier {
                tables: RefCell::new(crate::tracking::tracked_tables(conn)?),
                unsent: RefCell::new(None),
                logged_up_to: Cell::new(0),
                deferred_waiting: Cell::new(exists("tether_deferred_snapshots")?),
                quarantine_waiting: Cell::new(exists("tether_quarantine")?),
                diverged_waiting: Cell::new(exists("tether_diverged")?),
                careful,
                refusals: &refusals,
                wants_careful: &wants_careful,
                references: RefCell::new(None),
            };
            body(conn, &applier)
        });
        match attempt {
            Err(_) if refusals.borrow().len() > refused_before || wants_careful.take() => {
                careful = true
            }
            // A failed COMMIT of deferred foreign keys: SQLite reports it as a foreign key only
            // to hosts that turned extended result codes on (rusqlite does; Python's sqlite3 and
            // the sqlite3 shell do not), so any constraint failure leads to the careful run.
            Err(error)
                if !careful
                    && (error.is_foreign_key()
                        || error.sqlite_code()
                            == Some(rusqlite::ErrorCode::ConstraintViolation)) =>
            {
                careful = true
            }
            other => return other,
        }
    }
}

/// Keeps a snapshot for a row with unsent local changes (the newest one per row wins), with where
/// the pull stood when it arrived and whether one of those changes had already been sent.
fn defer(conn: &Connection, row: &ServerRow, after_send: bool) -> Result<()> {
    execute(
        conn,
        "INSERT OR REPLACE INTO tether_deferred_snapshots (entity_id, model, operation, payload, cursor_before, after_send)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        (
            row.entity,
            row.model,
            row.operation,
            Value::Object(row.payload.clone()).to_string(),
            row.cursor_before,
            after_send,
        ),
    )?;
    Ok(())
}

pub fn forget_deferred(conn: &Connection, entity: &str) -> Result<()> {
    execute(
        conn,
        "DELETE FROM tether_deferred_snapshots WHERE entity_id = ?1",
        [entity],
    )?;
    Ok(())
}

/// How the server answered a mutation, for snapshots that waited on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Settled {
    /// Applied, or answered `duplicate` (applied before).
    Synced,
    /// Rejected for good: the server never took the change.
    Rejected,
    /// A conflict: the server's current state was written then.
    Conflict,
}

/// Settles deferred snapshots of the rows whose mutations an answer (or the user) just settled,
/// once none of a row's mutations is unsent or failed ([`crate::queue::HELD`]: a change refused
/// for good keeps the row's local value until the user retries or discards it). The row's latest
/// mutation decides. Rejected (and discarded): the server never took the local change, so the
/// deferred server state applies (or goes to the quarantine if it cannot). Conflict: the server state was written then, and is newer. Applied: if no change of
/// the row had been sent when the snapshot arrived, the server applied it after, holds the newer
/// state and the snapshot is dropped. If one had been sent, the server may have applied it
/// before the snapshot was taken (the answer was lost and the mutation resent, answered as
/// applied again or `duplicate`), so the snapshot may be a later change from elsewhere: neither is
/// applied blindly, the pull goes back to where it stood when the snapshot arrived, and the row
/// comes again as the server has it now. Runs
/// inside the caller's applying transaction; returns how many snapshots were applied.
pub fn settle_deferred(
    conn: &Connection,
    applier: &Applier<'_>,
    settled: &[(i64, String, Settled)],
) -> Result<usize> {
    if !applier.deferred_waiting.get() || settled.is_empty() {
        return Ok(0);
    }
    let mut latest: HashMap<&str, (i64, Settled)> = HashMap::new();
    for (log_id, entity, outcome) in settled {
        let entry = latest.entry(entity).or_insert((*log_id, *outcome));
        if *log_id >= entry.0 {
            *entry = (*log_id, *outcome);
        }
    }
    crate::queue::index_new_rows(conn)?;
    let still_held = |entity: &str| -> Result<bool> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM tether_mutation_logs WHERE {} AND entity_id = ?1)",
                crate::queue::HELD
            ))?
            .query_row([entity], |r| r.get(0))?)
    };
    let mut applied = 0;
    for (entity, (_, outcome)) in latest {
        type Deferred = (String, String, String, Option<i64>, bool);
        let deferred: Option<Deferred> = conn
            .prepare_cached(
                "SELECT model, operation, payload, cursor_before, after_send FROM tether_deferred_snapshots WHERE entity_id = ?1",
            )?
            .query_row([entity], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((model, operation, payload, cursor_before, after_send)) = deferred else {
            continue;
        };
        // Only for a row with a waiting snapshot: without an index on the queue's entity, this
        // reads every unsent and failed mutation.
        if still_held(entity)? {
            continue;
        }
        forget_deferred(conn, entity)?;
        match outcome {
            Settled::Conflict => continue,
            Settled::Synced => {
                // Sent only after the snapshot arrived: the server applied it after, so it holds
                // the newer state, which the next pull echoes.
                if after_send {
                    crate::engine::pull::rewind_cursor(conn, cursor_before)?;
                }
                continue;
            }
            Settled::Rejected => {}
        }
        let payload = stored_payload(&payload);
        let row = ServerRow {
            entity,
            model: &model,
            operation: &operation,
            payload: &payload,
            cursor_before,
        };
        if applier.write(conn, &row, "pull")? == Outcome::Applied {
            applied += 1;
        }
    }
    Ok(applied)
}
