//! The mutation queue (`tether_mutation_logs`). Capture triggers store only what a write knows;
//! a mutation gets its `mutation_id` and per-entity `version` here, when first prepared for
//! sending. Both are written before any request leaves, so every retry reuses them, which the
//! server's idempotency depends on.
use rusqlite::{Connection, OptionalExtension};

use crate::db::write_txn;
use crate::error::Result;
use crate::identity::ulid_at;

/// The condition for pending mutations, written so SQLite uses the partial index of unsynced
/// rows (it cannot infer `<> 'synced'` from `= 'pending'` by itself): without it every scan of
/// the queue reads every synced mutation kept for the retention period.
pub const PENDING: &str = "sync_status <> 'synced' AND sync_status = 'pending'";

/// Gives identities to at most `limit` pending mutations that lack them, oldest first.
/// Returns how many were given. Versions follow queue order, so they equal what assigning at
/// capture time would have produced.
pub fn assign_identities(conn: &Connection, limit: usize) -> Result<usize> {
    write_txn(conn, |conn| {
        let mut pending = conn.prepare(&format!(
            "SELECT id, entity_id, timestamp FROM tether_mutation_logs
              WHERE {PENDING} AND mutation_id IS NULL ORDER BY id LIMIT ?1"
        ))?;
        let rows: Vec<(i64, String, i64)> = pending
            .query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut last_version =
            conn.prepare("SELECT version FROM tether_entity_versions WHERE entity_id = ?1")?;
        let mut remember = conn.prepare(
            "INSERT INTO tether_entity_versions (entity_id, version) VALUES (?1, ?2)
             ON CONFLICT (entity_id) DO UPDATE SET version = excluded.version",
        )?;
        let mut give = conn.prepare(
            "UPDATE tether_mutation_logs SET mutation_id = ?2, version = ?3, updated_at = CURRENT_TIMESTAMP WHERE id = ?1",
        )?;
        for (id, entity, timestamp) in &rows {
            let previous: Option<i64> =
                last_version.query_row([entity], |r| r.get(0)).optional()?;
            let version = previous.unwrap_or(0) + 1;
            remember.execute((entity, version))?;
            give.execute((id, ulid_at((*timestamp).max(0) as u64), version))?;
        }
        Ok(rows.len())
    })
}
