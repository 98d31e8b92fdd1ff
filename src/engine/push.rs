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

/// A request body and the queue position it reaches.
pub struct Batch {
    /// `None` when every mutation reached failed locally: nothing to send.
    pub body: Option<String>,
    /// Highest log id in the batch: the next batch of the same push starts after it.
    pub last_id: i64,
    pub size: usize,
    /// Mutations that could not be sent and failed locally (`invalid_value`), as rejections.
    pub local_failures: Vec<Value>,
}

/// A queued mutation that cannot go on the wire: text that is not UTF-8 (JSON cannot carry it),
/// a sync key that is not text. It fails locally with reason `invalid_value`; the rest of the
/// queue goes on.
fn unsendable(row: &rusqlite::Row) -> rusqlite::Result<Result<OutgoingMutation, String>> {
    use rusqlite::types::ValueRef;
    let text = |index: usize, what: &str| -> rusqlite::Result<Result<String, String>> {
        Ok(match row.get_ref(index)? {
            ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec())
                .map_err(|_| format!("{what} holds text that is not valid UTF-8")),
            ValueRef::Null => Err(format!("{what} is NULL")),
            other => Err(format!("{what} is {:?}, not text", other.data_type())),
        })
    };
    let parts = (
        text(1, "the mutation id")?,
        text(2, "the sync key (entity_id)")?,
        text(3, "the model")?,
        text(4, "the operation")?,
        text(5, "the payload")?,
    );
    let (Ok(mutation_id), Ok(entity_id), Ok(model), Ok(operation), Ok(payload)) = parts else {
        let (a, b, c, d, e) = parts;
        let reasons: Vec<String> = [a.err(), b.err(), c.err(), d.err(), e.err()]
            .into_iter()
            .flatten()
            .collect();
        return Ok(Err(reasons.join("; ")));
    };
    if !crate::identity::is_ulid(&entity_id) {
        return Ok(Err(format!(
            "the sync key {entity_id:?} is not a ULID (26 upper-case Crockford base32 characters)"
        )));
    }
    // Parsed in full, not only checked for syntax: SQLite writes an infinite REAL as 9.0e+999,
    // which no JSON reader takes, and one such body would be refused whole on every push.
    if let Err(error) = serde_json::from_str::<Value>(&payload) {
        return Ok(Err(format!(
            "the payload is not JSON a server can read ({error}); an infinite or NaN REAL cannot be sent"
        )));
    }
    let Ok(payload) = RawValue::from_string(payload) else {
        return Ok(Err("the payload is not valid JSON".into()));
    };
    Ok(Ok(OutgoingMutation {
        mutation_id,
        entity_id,
        model,
        operation,
        payload,
        version: row.get(6)?,
        timestamp: row.get(7)?,
    }))
}

/// The next batch of pending mutations after log id `after`, oldest first, at most `size`
/// (0 = all). Identities are given (and committed) before the body exists, so a retry of the same
/// mutation carries the same id and version. Mutations that cannot be sent fail locally and are
/// passed over.
pub fn next_batch(
    conn: &Connection,
    client_id: &str,
    after: i64,
    size: u64,
) -> Result<Option<Batch>> {
    let limit = if size == 0 { i64::MAX } else { size as i64 };
    let (mut mutations, mut last_id, mut local_failures) = (Vec::new(), after, Vec::new());
    while mutations.is_empty() {
        crate::queue::assign_identities(conn, limit as usize)?;
        let mut invalid: Vec<(i64, Option<String>, String)> = Vec::new();
        {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id, mutation_id, entity_id, model, operation, payload, version, timestamp
                   FROM tether_mutation_logs
                  WHERE {} AND id > ?1 ORDER BY id LIMIT ?2",
                crate::queue::PENDING
            ))?;
            let mut rows = stmt.query((last_id, limit))?;
            while let Some(row) = rows.next()? {
                last_id = row.get(0)?;
                match unsendable(row)? {
                    Ok(mutation) => mutations.push(mutation),
                    Err(reason) => invalid.push((last_id, row.get(1).ok(), reason)),
                }
            }
        }
        if invalid.is_empty() && mutations.is_empty() {
            if local_failures.is_empty() {
                return Ok(None);
            }
            break;
        }
        local_failures.extend(fail_locally(conn, &invalid)?);
    }
    let size = mutations.len();
    let body = if mutations.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&OutgoingBatch {
            client_id,
            mutations,
        })?)
    };
    Ok(Some(Batch {
        body,
        last_id,
        size,
        local_failures,
    }))
}

fn fail_locally(
    conn: &Connection,
    invalid: &[(i64, Option<String>, String)],
) -> Result<Vec<Value>> {
    if invalid.is_empty() {
        return Ok(Vec::new());
    }
    crate::db::write_txn(conn, |conn| {
        let mut fail = conn.prepare_cached(
            "UPDATE tether_mutation_logs SET sync_status = 'failed', rejection_reason = 'invalid_value',
                    rejection_data = ?2, updated_at = CURRENT_TIMESTAMP
              WHERE id = ?1 AND sync_status = 'pending'",
        )?;
        let mut failures = Vec::new();
        for (id, mutation_id, reason) in invalid {
            let data = json!({"message": format!("cannot be sent: {reason}")});
            if fail.execute((id, data.to_string()))? > 0 {
                failures.push(
                    json!({"mutation_id": mutation_id, "reason": "invalid_value", "data": data}),
                );
            }
        }
        Ok(failures)
    })
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
