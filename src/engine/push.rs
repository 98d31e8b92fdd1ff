//! Push, sans IO: [`next_batch`] builds the next request body from the queue, [`apply_answer`]
//! records the server's answer. The transport between them is someone else's.
use rusqlite::{Connection, OptionalExtension};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::bail;
use crate::capture::without_capture;
use crate::engine::{apply, excerpt, PushOutcome};
use crate::error::{Error, Result};
use crate::tracking::tracked_tables;

/// Start of a push: mutations that failed with the transient reason `error` and were sent fewer
/// than `max_attempts` times go back to the queue. Other failures are permanent.
pub fn requeue_retryable(conn: &Connection, max_attempts: u64) -> Result<usize> {
    if max_attempts == 0 {
        return Ok(0);
    }
    crate::db::write_txn(conn, |conn| {
        Ok(conn.execute(
            "UPDATE tether_mutation_logs
                SET sync_status = 'pending', rejection_reason = NULL, rejection_data = NULL,
                    updated_at = CURRENT_TIMESTAMP
              WHERE sync_status <> 'synced' AND sync_status = 'failed'
                AND rejection_reason = 'error' AND retry_count < ?1",
            [max_attempts as i64],
        )?)
    })
}

/// One mutation as the push request carries it.
#[derive(serde::Serialize)]
struct OutgoingMutation {
    mutation_id: String,
    entity_id: String,
    model: String,
    operation: String,
    payload: Box<RawValue>,
    version: i64,
    timestamp: i64,
}

#[derive(serde::Serialize)]
struct OutgoingBatch<'a> {
    client_id: &'a str,
    mutations: Vec<OutgoingMutation>,
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).expect("valid JSON")
}

/// A request body and the queue position it reaches.
pub struct Batch {
    pub body: String,
    /// Highest log id in the batch: the next batch of the same push starts after it.
    pub last_id: i64,
    pub size: usize,
}

/// The next batch of pending mutations after log id `after`, oldest first, at most `size`
/// (0 = all). Identities are given (and committed) before the body exists, so a retry of the same
/// mutation carries the same id and version.
pub fn next_batch(
    conn: &Connection,
    client_id: &str,
    after: i64,
    size: u64,
) -> Result<Option<Batch>> {
    let limit = if size == 0 { i64::MAX } else { size as i64 };
    crate::queue::assign_identities(conn, limit as usize)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, mutation_id, entity_id, model, operation, payload, version, timestamp
           FROM tether_mutation_logs
          WHERE {} AND id > ?1 ORDER BY id LIMIT ?2",
        crate::queue::PENDING
    ))?;
    let mut rows = stmt.query((after, limit))?;
    let (mut mutations, mut last_id) = (Vec::new(), after);
    while let Some(row) = rows.next()? {
        last_id = row.get(0)?;
        // The payload was written by json_object(): valid JSON, sent as it is stored.
        let payload =
            RawValue::from_string(row.get::<_, String>(5)?).unwrap_or_else(|_| empty_object());
        mutations.push(OutgoingMutation {
            mutation_id: row.get(1)?,
            entity_id: row.get(2)?,
            model: row.get(3)?,
            operation: row.get(4)?,
            payload,
            version: row.get(6)?,
            timestamp: row.get(7)?,
        });
    }
    if mutations.is_empty() {
        return Ok(None);
    }
    let size = mutations.len();
    let body = serde_json::to_string(&OutgoingBatch {
        client_id,
        mutations,
    })?;
    Ok(Some(Batch {
        body,
        last_id,
        size,
    }))
}

fn list<'a>(answer: &'a Map<String, Value>, key: &str) -> Result<&'a [Value]> {
    match answer.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => bail!(
            "push answer: \"{key}\" must be a list, got {}",
            excerpt(&other.to_string())
        ),
    }
}

fn mutation_id(item: &Value, key: &str) -> Result<String> {
    let id = if key == "applied" {
        item.as_str()
    } else {
        item.get("mutation_id").and_then(Value::as_str)
    };
    id.map(str::to_string).ok_or_else(|| {
        Error::new(format!(
            "push answer: an entry of \"{key}\" has no mutation_id: {}",
            excerpt(&item.to_string())
        ))
    })
}

/// Applies a push answer. Only mutations still pending change, so an answer applied twice, or
/// for a batch never requested, changes nothing. Conflicting server state is written to the
/// local row without being captured, in the same transaction.
pub fn apply_answer(conn: &Connection, body: &str) -> Result<PushOutcome> {
    let answer: Value = serde_json::from_str(body)
        .map_err(|_| Error::new(format!("push answer is not JSON: {}", excerpt(body))))?;
    let Value::Object(answer) = answer else {
        bail!("push answer is not a JSON object: {}", excerpt(body));
    };
    // Check the whole answer before changing anything.
    let applied = list(&answer, "applied")?;
    let rejected = list(&answer, "rejected")?;
    let conflicts = list(&answer, "conflicts")?;
    for (key, items) in [
        ("applied", applied),
        ("rejected", rejected),
        ("conflicts", conflicts),
    ] {
        for item in items {
            mutation_id(item, key)?;
        }
    }
    let tables = tracked_tables(conn)?;
    without_capture(conn, |conn| {
        let mut out = PushOutcome::default();
        // What became of each entity's mutations, for snapshots that waited on them.
        let mut settled: Vec<(String, bool)> = Vec::new();
        let mut synced = conn.prepare(
            "UPDATE tether_mutation_logs SET sync_status = 'synced', synced_at = CURRENT_TIMESTAMP,
                    updated_at = CURRENT_TIMESTAMP
              WHERE mutation_id = ?1 AND sync_status = 'pending'
              RETURNING entity_id",
        )?;
        let mut mark_synced = |id: &str, settled: &mut Vec<(String, bool)>| -> Result<usize> {
            let entity: Option<String> = synced.query_row([id], |r| r.get(0)).optional()?;
            Ok(entity.map_or(0, |e| {
                settled.push((e, false));
                1
            }))
        };
        for item in applied {
            out.pushed += mark_synced(&mutation_id(item, "applied")?, &mut settled)?;
        }
        let mut failed = conn.prepare(
            "UPDATE tether_mutation_logs SET sync_status = 'failed', rejection_reason = ?2, rejection_data = ?3,
                    retry_count = retry_count + 1, updated_at = CURRENT_TIMESTAMP
              WHERE mutation_id = ?1 AND sync_status = 'pending'
              RETURNING entity_id",
        )?;
        for item in rejected {
            let id = mutation_id(item, "rejected")?;
            let reason = item
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_string();
            if reason == "duplicate" {
                out.pushed += mark_synced(&id, &mut settled)?;
                continue;
            }
            let data = item.get("data").cloned().unwrap_or(Value::Null);
            let entity: Option<String> = failed
                .query_row((&id, &reason, data.to_string()), |r| r.get(0))
                .optional()?;
            if let Some(entity) = entity {
                settled.push((entity, true));
                out.failed += 1;
                out.rejections
                    .push(json!({"mutation_id": id, "reason": reason, "data": data}));
            }
        }
        let mut conflicted = conn.prepare(
            "UPDATE tether_mutation_logs SET sync_status = 'conflict', rejection_reason = 'conflict',
                    rejection_data = ?2, updated_at = CURRENT_TIMESTAMP
              WHERE mutation_id = ?1 AND sync_status = 'pending'
              RETURNING model, entity_id",
        )?;
        for item in conflicts {
            let id = mutation_id(item, "conflicts")?;
            let state = item
                .pointer("/data/server_state")
                .cloned()
                .unwrap_or(Value::Null);
            let Some((model, entity)) = conflicted
                .query_row((&id, state.to_string()), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?
            else {
                continue;
            };
            out.conflicts += 1;
            settled.push((entity.clone(), false));
            let table = tables.iter().find(|t| t.model == model);
            if let (Some(table), Some(row)) = (table, apply::payload_object(&state)) {
                if !row.is_empty() {
                    apply::upsert(conn, table, &entity, &row)?;
                }
            }
        }
        apply::settle_deferred(conn, &tables, &settled)?;
        Ok(out)
    })
}
