//! Foreign key actions that SQLite runs while server state is written (`ON DELETE CASCADE`,
//! `SET NULL`, `SET DEFAULT`) change tracked rows the server did not send, and capture is
//! suppressed in that transaction. A row with changes not sent yet would then be gone (or changed)
//! here while its changes still reach the server: those rows' deletes (or updates) are queued
//! after their changes, so the server ends as this device does. Rows without unsent changes are
//! left to the server: its own snapshots of them follow (a child moved to another parent comes
//! back), and a stale copy here never overrides a newer change made elsewhere.
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::error::Result;
use crate::sql::{ident, literal};
use crate::tracking::TrackedTable;

/// A foreign key of a tracked table to a tracked table, with an action on delete.
struct Reference {
    /// Index of the child table in the tables given to [`References::load`].
    child: usize,
    parent: String,
    /// Child columns and the parent columns they refer to.
    columns: Vec<(String, String)>,
    deletes_child: bool,
    /// The child is tracked with {"keys": "on_sync"}: some of its rows may wait for their keys.
    child_waits: bool,
}

/// The tracked tables' foreign keys that act on delete; empty when foreign keys are off.
pub struct References {
    references: Vec<Reference>,
}

/// Rows a delete will change through foreign key actions, found before it runs.
#[derive(Default)]
pub struct Actions {
    /// (child table index, sync keys) deleted with the parent.
    deleted: Vec<(usize, Vec<String>)>,
    /// (child table index, sync keys) whose reference is set to NULL or its default.
    updated: Vec<(usize, Vec<String>)>,
}

impl Actions {
    pub fn is_empty(&self) -> bool {
        self.deleted.is_empty() && self.updated.is_empty()
    }
}

impl References {
    pub fn load(conn: &Connection, tables: &[TrackedTable]) -> Result<References> {
        let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
        let mut references = Vec::new();
        if !enforced {
            return Ok(References { references });
        }
        let mut list = conn.prepare_cached(
            "SELECT id, \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?1, 'main')
              ORDER BY id, seq",
        )?;
        for (child, table) in tables.iter().enumerate() {
            let rows: Vec<(i64, String, String, Option<String>, String)> = list
                .query_map([&table.table], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
            ids.dedup();
            for id in ids {
                let key: Vec<&(i64, String, String, Option<String>, String)> =
                    rows.iter().filter(|r| r.0 == id).collect();
                let action = key[0].4.to_ascii_uppercase();
                let Some(parent) = tables
                    .iter()
                    .find(|t| t.table.eq_ignore_ascii_case(&key[0].1))
                else {
                    continue;
                };
                if !matches!(action.as_str(), "CASCADE" | "SET NULL" | "SET DEFAULT") {
                    continue;
                }
                let parent_key = crate::table_info::primary_key_columns(conn, &parent.table)?;
                let columns = key
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let to = r.3.clone().or_else(|| parent_key.get(i).cloned());
                        to.map(|to| (r.2.clone(), to))
                    })
                    .collect::<Option<Vec<_>>>();
                let Some(columns) = columns else { continue };
                references.push(Reference {
                    child,
                    parent: parent.table.clone(),
                    columns,
                    deletes_child: action == "CASCADE",
                    child_waits: table.keys_on_sync(),
                });
            }
        }
        Ok(References { references })
    }

    /// The tracked rows with unsent changes (`changed`; `None`: every row) that deleting `entity`
    /// from `parent` will delete or change, through every level of cascades. Read before the
    /// delete runs.
    pub fn before_delete(
        &self,
        conn: &Connection,
        tables: &[TrackedTable],
        parent: &TrackedTable,
        entity: &str,
        changed: Option<&std::collections::HashMap<String, bool>>,
    ) -> Result<Actions> {
        let mut actions = Actions::default();
        if self.references.is_empty() {
            return Ok(actions);
        }
        let mut seen: std::collections::HashSet<(usize, String)> = Default::default();
        // A cycle that comes back round to the deleted row queues nothing for it.
        if let Some(root) = tables.iter().position(|t| t.table == parent.table) {
            seen.insert((root, entity.to_string()));
        }
        // Rows are followed by their sync key, or by rowid where a table tracked with
        // {"keys": "on_sync"} holds rows still waiting for theirs: the cascade goes on through
        // them to the keyed rows below (their own creates are dropped with them).
        let mut seen_waiting: std::collections::HashSet<(usize, i64)> = Default::default();
        let mut frontier: Vec<(String, String, Value)> = vec![(
            parent.table.clone(),
            ident(&parent.sync_key),
            json!([entity]),
        )];
        while let Some((table, column, ids)) = frontier.pop() {
            for reference in self
                .references
                .iter()
                .filter(|r| r.parent.eq_ignore_ascii_case(&table))
            {
                let child = &tables[reference.child];
                let waiting = reference.child_waits;
                let matches: Vec<String> = reference
                    .columns
                    .iter()
                    .map(|(from, to)| format!("c.{} = p.{}", ident(from), ident(to)))
                    .collect();
                // A join, not `EXISTS` per child: SQLite can then start from the parents by
                // their sync key and reach the children through the foreign key's index instead
                // of reading the whole child table for every pulled delete.
                let sql = format!(
                    "SELECT DISTINCT c.{child_key}, {rowid} FROM main.{parent} AS p JOIN main.{child} AS c ON {matches}
                      WHERE p.{column} IN (SELECT value FROM json_each(?1)){keyed_only}",
                    child_key = ident(&child.sync_key),
                    rowid = if waiting { "c.rowid" } else { "NULL" },
                    keyed_only = if waiting {
                        String::new()
                    } else {
                        format!(" AND c.{} IS NOT NULL", ident(&child.sync_key))
                    },
                    child = ident(&child.table),
                    parent = ident(&table),
                    matches = matches.join(" AND "),
                );
                let rows: Vec<(Option<String>, Option<i64>)> = conn
                    .prepare_cached(&sql)?
                    .query_map([ids.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut found = Vec::new();
                let mut found_waiting = Vec::new();
                for (key, rowid) in rows {
                    match (key, rowid) {
                        (Some(key), _) => {
                            if seen.insert((reference.child, key.clone())) {
                                found.push(key);
                            }
                        }
                        (None, Some(rowid)) => {
                            if seen_waiting.insert((reference.child, rowid)) {
                                found_waiting.push(rowid);
                            }
                        }
                        (None, None) => {}
                    }
                }
                let changed: Vec<String> = found
                    .iter()
                    .filter(|k| changed.is_none_or(|held| held.contains_key(*k)))
                    .cloned()
                    .collect();
                if reference.deletes_child {
                    if !found_waiting.is_empty() {
                        frontier.push((child.table.clone(), "rowid".into(), json!(found_waiting)));
                    }
                    if !found.is_empty() {
                        frontier.push((child.table.clone(), ident(&child.sync_key), json!(found)));
                    }
                    if !changed.is_empty() {
                        actions.deleted.push((reference.child, changed));
                    }
                } else if !changed.is_empty() {
                    actions.updated.push((reference.child, changed));
                }
            }
        }
        Ok(actions)
    }
}

impl Actions {
    /// Queues the deletes (before the parent's delete runs, while the rows can still be named).
    pub fn queue_deletes(&self, conn: &Connection, tables: &[TrackedTable]) -> Result<()> {
        for (child, keys) in &self.deleted {
            conn.prepare_cached(
                "INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
                 SELECT value, ?2, 'delete', '{}', ?3 FROM json_each(?1)",
            )?
            .execute((
                serde_json::to_string(keys)?,
                &tables[*child].model,
                crate::engine::lock::now_ms(),
            ))?;
        }
        crate::queue::index_new_rows(conn)
    }

    /// Queues the rows whose reference changed as updates (after the parent's delete ran).
    pub fn queue_updates(&self, conn: &Connection, tables: &[TrackedTable]) -> Result<()> {
        for (child, keys) in &self.updated {
            let table = &tables[*child];
            let sql = format!(
                "INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
                 SELECT t.{key}, {model}, 'update', {payload}, ?2 FROM main.{name} AS t
                  WHERE t.{key} IN (SELECT value FROM json_each(?1))",
                key = ident(&table.sync_key),
                model = literal(&table.model),
                payload =
                    crate::triggers::payload_expr(&table.synced_columns, &table.json_columns, "t")?,
                name = ident(&table.table),
            );
            conn.prepare_cached(&sql)?
                .execute((serde_json::to_string(keys)?, crate::engine::lock::now_ms()))?;
        }
        crate::queue::index_new_rows(conn)
    }
}
