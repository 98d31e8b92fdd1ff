//! Push, sans IO: [`next_batch`] builds the next request body from the queue, [`apply_answer`]
//! records the server's answer. The transport between them is someone else's.
use rusqlite::{Connection, OptionalExtension};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::bail;
use std::collections::{HashMap, HashSet};

use crate::engine::apply::{self, ServerRow, Settled};
use crate::engine::{excerpt, PushOutcome};
use crate::error::{Error, Result};
use crate::queue::UNSYNCED;

/// Start of a push: mutations that failed with the transient reason `error` and were sent fewer
/// than `max_attempts` times go back to the queue. Other failures are permanent.
pub fn requeue_retryable(conn: &Connection, max_attempts: u64) -> Result<usize> {
    if max_attempts == 0 {
        return Ok(0);
    }
    crate::db::write_txn(conn, |conn| {
        Ok(conn.execute(
            &format!(
                "UPDATE tether_mutation_logs
                SET sync_status = 'pending', rejection_reason = NULL, rejection_data = NULL,
                    updated_at = CURRENT_TIMESTAMP
              WHERE {UNSYNCED} AND sync_status = 'failed'
                AND rejection_reason = 'error' AND retry_count < ?1"
            ),
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
    /// Log ids of the mutations in `body`.
    pub ids: Vec<i64>,
    /// Mutations that could not be sent and failed locally (`invalid_value`), as rejections.
    pub local_failures: Vec<Value>,
}

/// How large one push request may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// At most this many mutations (0: no limit).
    pub count: u64,
    /// At most this many body bytes, unless one mutation alone is larger (it goes alone).
    pub bytes: u64,
    /// `max_retry_attempts`: which failed mutations will be sent again.
    pub retry_limit: u64,
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

/// The next batch of pending mutations after log id `after`, oldest first, within `limits`.
/// Identities are given (and committed) before the body exists, so a retry of the same
/// mutation carries the same id and version. Mutations that cannot be sent fail locally and are
/// passed over. A mutation whose row has an earlier mutation awaiting a retry, or sent earlier in
/// this push and left unanswered, is held back (it stays pending, and goes next push): the server
/// must see a row's changes in the order they were made.
pub fn next_batch(
    conn: &Connection,
    client_id: &str,
    after: i64,
    limits: Limits,
) -> Result<Option<Batch>> {
    let limit = if limits.count == 0 {
        i64::MAX
    } else {
        limits.count.min(i64::MAX as u64) as i64
    };
    let prefix = serde_json::to_string(&OutgoingBatch {
        client_id,
        mutations: Vec::new(),
    })?;
    let prefix = prefix.trim_end_matches("]}");
    let mut body = String::from(prefix);
    let (mut ids, mut last_id, mut local_failures) = (Vec::new(), after, Vec::new());
    let mut waiting: HashSet<String> = HashSet::new();
    let blockers = blockers(conn, after, limits.retry_limit)?;
    let never_had = NeverHad::load(conn, limits.retry_limit)?;
    let mut nothing_to_send: Vec<i64> = Vec::new();
    while ids.is_empty() {
        // Nothing from the oldest create still waiting for its key on: the server sees rows in
        // the order they were written.
        let unkeyed = crate::keys::first_unkeyed(conn)?;
        crate::queue::assign_identities(conn, limit.min(10_000) as usize, unkeyed)?;
        crate::debug::kill_point("push-identities-given");
        let mut invalid: Vec<(i64, Option<String>, String)> = Vec::new();
        let mut full = false;
        {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id, mutation_id, entity_id, model, operation, payload, version, timestamp
                   FROM tether_mutation_logs
                  WHERE {} AND id > ?1 AND id < ?3 AND mutation_id IS NOT NULL
                  ORDER BY id LIMIT ?2",
                crate::queue::PENDING,
            ))?;
            let mut rows = stmt.query((last_id, limit - ids.len() as i64, unkeyed))?;
            let mut seen_any = false;
            while let Some(row) = rows.next()? {
                seen_any = true;
                let id: i64 = row.get(0)?;
                // A row's changes reach the server in the order they were made: once one waits,
                // the row's later ones wait too.
                let entity: Option<String> = row.get(2).ok();
                let waits = entity.as_ref().is_some_and(|e| {
                    waiting.contains(e) || blockers.get(e).is_some_and(|first| *first < id)
                });
                if waits {
                    waiting.extend(entity);
                    last_id = id;
                    continue;
                }
                match unsendable(row)? {
                    Ok(mut mutation) => {
                        if never_had.server_lacks(conn, &mutation.entity_id, id)? {
                            // The server never got this row (its create was refused for good):
                            // a change of it is its create, with the full row; a delete of it
                            // has nothing to undo there.
                            if mutation.operation == "delete" {
                                nothing_to_send.push(id);
                                last_id = id;
                                continue;
                            }
                            mutation.operation = "create".to_string();
                        }
                        let text = serde_json::to_string(&mutation)?;
                        let grown = body.len() + text.len() + 3;
                        if !ids.is_empty() && grown as u64 > limits.bytes {
                            full = true;
                            break;
                        }
                        if !ids.is_empty() {
                            body.push(',');
                        }
                        body.push_str(&text);
                        ids.push(id);
                    }
                    Err(reason) => invalid.push((id, row.get(1).ok(), reason)),
                }
                last_id = id;
            }
            if !seen_any && !unidentified_remain(conn, unkeyed)? {
                if local_failures.is_empty() {
                    // Deletes of rows the server never had may be all that was left.
                    settle_unsendable_deletes(conn, &nothing_to_send)?;
                    return Ok(None);
                }
                break;
            }
        }
        local_failures.extend(fail_locally(conn, "invalid_value", &invalid)?);
        if full {
            break;
        }
    }
    settle_unsendable_deletes(conn, &nothing_to_send)?;
    body.push_str("]}");
    // From here the server may have them: a snapshot of their rows that arrives now may be newer
    // or older than what the server applies (see apply::settle_deferred).
    crate::queue::mark_sent(conn, &ids)?;
    let size = ids.len();
    Ok(Some(Batch {
        body: (size > 0).then_some(body),
        last_id,
        size,
        ids,
        local_failures,
    }))
}

/// Rows with a mutation that later ones must wait behind, and its log id: one awaiting a retry, or
/// one sent earlier in this push (at or before `after`) and left unanswered. Read once per batch
/// through the partial index of unsynced mutations: few rows, whatever the log holds.
fn blockers(conn: &Connection, after: i64, retry_limit: u64) -> Result<HashMap<String, i64>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT entity_id, min(id) FROM (
             SELECT entity_id, id FROM tether_mutation_logs WHERE {}
             UNION ALL
             SELECT entity_id, id FROM tether_mutation_logs WHERE {} AND id <= ?1)
          GROUP BY entity_id",
        crate::queue::awaiting_retry(retry_limit),
        crate::queue::PENDING,
    ))?;
    let found = stmt
        .query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(found)
}

/// Rows whose latest create the server refused for good, or whose refused create the user
/// discarded while the row stayed (by log id of that create): the server never had them. Read
/// once per batch from the index of unsynced mutations.
struct NeverHad(HashMap<String, i64>);

impl NeverHad {
    fn load(conn: &Connection, retry_limit: u64) -> Result<NeverHad> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT entity_id, max(id) FROM tether_mutation_logs
              WHERE {UNSYNCED} AND sync_status IN ('failed', 'resolved')
                AND operation = 'create'
                AND ((sync_status = 'failed' AND (rejection_reason <> 'error' OR retry_count >= {}))
                     OR (sync_status = 'resolved' AND resolution = 'discarded'
                         AND rejection_reason IS NOT NULL))
              GROUP BY entity_id",
            retry_limit.min(i64::MAX as u64)
        ))?;
        let found = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(NeverHad(found))
    }

    /// Whether mutation `id` of `entity` changes a row the server never had: its last create
    /// before it was refused for good, and since then no create came and no change reached the
    /// server (an earlier change sent as its create).
    fn server_lacks(&self, conn: &Connection, entity: &str, id: i64) -> Result<bool> {
        let Some(&refused) = self.0.get(entity) else {
            return Ok(false);
        };
        if refused >= id {
            return Ok(false);
        }
        let created_since: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM tether_mutation_logs
                  WHERE id > ?1 AND id < ?2 AND entity_id = ?3
                    AND (operation = 'create' OR (sync_status = 'synced' AND operation <> 'delete')))",
            )?
            .query_row((refused, id, entity), |r| r.get(0))?;
        Ok(!created_since)
    }
}

/// Deletes of rows the server never had: done, with nothing sent.
fn settle_unsendable_deletes(conn: &Connection, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    crate::db::write_txn(conn, |conn| {
        conn.prepare_cached(
            "UPDATE tether_mutation_logs SET sync_status = 'synced', synced_at = CURRENT_TIMESTAMP,
                    rejection_data = json_object('message', 'not sent: the server never had this row (its create was refused)'),
                    updated_at = CURRENT_TIMESTAMP
              WHERE id IN (SELECT value FROM json_each(?1)) AND sync_status = 'pending'",
        )?
        .execute([serde_json::to_string(ids)?])?;
        // The row is gone: its refused create needs no one's attention any more.
        conn.prepare_cached(&format!(
            "UPDATE tether_mutation_logs
                SET sync_status = 'resolved', resolution = 'superseded',
                    resolved_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP
              WHERE {UNSYNCED} AND sync_status IN ('failed', 'conflict')
                AND EXISTS (SELECT 1 FROM json_each(?1) AS j
                              JOIN tether_mutation_logs AS d ON d.id = j.value
                             WHERE d.entity_id = tether_mutation_logs.entity_id
                               AND d.id > tether_mutation_logs.id)"
        ))?
        .execute([serde_json::to_string(ids)?])?;
        Ok(())
    })
}

/// Pending mutations below log id `below` not given identities yet (beyond what one round
/// gives).
fn unidentified_remain(conn: &Connection, below: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM tether_mutation_logs WHERE {} AND mutation_id IS NULL AND id < ?1)",
            crate::queue::PENDING
        ))?
        .query_row([below], |r| r.get(0))?)
}

/// Fails mutations that cannot be sent (`reason`, with each one's message), permanently. Like
/// a rejection, they wait for the user (`tether_attention`), and so does a server snapshot of
/// their row.
pub fn fail_locally(
    conn: &Connection,
    reason: &str,
    invalid: &[(i64, Option<String>, String)],
) -> Result<Vec<Value>> {
    if invalid.is_empty() {
        return Ok(Vec::new());
    }
    apply::in_transaction(conn, |conn, applier| {
        let mut fail = conn.prepare_cached(
            "UPDATE tether_mutation_logs SET sync_status = 'failed', rejection_reason = ?3,
                    rejection_data = ?2, updated_at = CURRENT_TIMESTAMP
              WHERE id = ?1 AND sync_status = 'pending'
              RETURNING entity_id, model",
        )?;
        let mut note_row = note_row(conn)?;
        let (mut failures, mut settled) = (Vec::new(), Vec::new());
        for (id, mutation_id, message) in invalid {
            let data = json!({"message": format!("cannot be sent: {message}")});
            let entity: Option<(String, String)> = fail
                .query_row((id, data.to_string(), reason), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            if let Some((entity, model)) = entity {
                let row = applier.which_row(conn, &model, &entity)?;
                note_row(*id, &row)?;
                failures.push(
                    json!({"mutation_id": mutation_id, "reason": reason, "data": data, "row": row}),
                );
                settled.push((*id, entity, Settled::Rejected));
            }
        }
        apply::settle_deferred(conn, applier, &settled)?;
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
/// local row without being captured, in the same transaction; state the database refuses goes to
/// the quarantine and the rest of the answer is recorded. A rejection of a mutation that came
/// after a mutation of the same entity that failed transiently (and will be retried) is not
/// recorded: the server judged it without its predecessor (an update `not_found` after a create
/// that failed), so it stays pending and goes again after the retry, in order.
pub fn apply_answer(conn: &Connection, body: &str, retry_limit: u64) -> Result<PushOutcome> {
    let answer: Value = serde_json::from_str(body)
        .map_err(|_| Error::new(format!("push answer is not JSON: {}", excerpt(body))))?;
    let Value::Object(answer) = answer else {
        bail!("push answer is not a JSON object: {}", excerpt(body));
    };
    // Check the whole answer before changing anything. Every key is optional (`{}` answers
    // nothing), but an object that has other keys and none of the answer's is someone else's (an
    // auth layer's or a proxy's error in a 200): taking it for "nothing answered" would report
    // success forever while nothing is pushed.
    if !answer.is_empty()
        && !["applied", "rejected", "conflicts"]
            .iter()
            .any(|key| answer.contains_key(*key))
    {
        bail!(
            "push answer has none of \"applied\", \"rejected\", \"conflicts\": {}",
            excerpt(body)
        );
    }
    let applied = list(&answer, "applied")?;
    let rejected = list(&answer, "rejected")?;
    let conflicts = list(&answer, "conflicts")?;
    let warnings = list(&answer, "warnings").unwrap_or(&[]);
    for (key, items) in [
        ("applied", applied),
        ("rejected", rejected),
        ("conflicts", conflicts),
    ] {
        for item in items {
            mutation_id(item, key)?;
        }
    }
    apply::in_transaction(conn, |conn, applier| {
        crate::debug::kill_point("push-recording-answer");
        let mut out = PushOutcome::default();
        // What became of each entity's mutations, for snapshots that waited on them.
        let mut settled: Vec<(i64, String, Settled)> = Vec::new();
        let mut synced = conn.prepare_cached(
            "UPDATE tether_mutation_logs SET sync_status = 'synced', synced_at = CURRENT_TIMESTAMP,
                    updated_at = CURRENT_TIMESTAMP
              WHERE mutation_id = ?1 AND sync_status = 'pending'
              RETURNING id, entity_id",
        )?;
        // A removal of a row the server never had, waiting in the quarantine (a discard), is void
        // once the server takes a change of that row.
        let removals_waiting: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM tether_quarantine WHERE source = ?1)",
            [apply::DISCARD],
            |r| r.get(0),
        )?;
        let mut mark_synced =
            |id: &str, settled: &mut Vec<(i64, String, Settled)>| -> Result<usize> {
                let entity: Option<(i64, String)> = synced
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((log_id, entity)) = entity else {
                    return Ok(0);
                };
                // The server took a change of the row: its state there is ours again.
                applier.forget_diverged(conn, &entity)?;
                if removals_waiting {
                    conn.prepare_cached(
                        "DELETE FROM tether_quarantine WHERE entity_id = ?1 AND source = ?2",
                    )?
                    .execute((&entity, apply::DISCARD))?;
                }
                settled.push((log_id, entity, Settled::Synced));
                Ok(1)
            };
        let mut note_row = note_row(conn)?;
        // The log ids of `out.rejections`, in order.
        let mut rejected_ids: Vec<i64> = Vec::new();
        for item in applied {
            out.pushed += mark_synced(&mutation_id(item, "applied")?, &mut settled)?;
        }
        // The newest change of each row the server took in this answer.
        let mut taken: HashMap<String, i64> = Default::default();
        for (log_id, entity, _) in &settled {
            let newest = taken.entry(entity.clone()).or_default();
            *newest = (*newest).max(*log_id);
        }
        let mut conflicted = conn.prepare_cached(
            "UPDATE tether_mutation_logs SET sync_status = 'conflict', rejection_reason = 'conflict',
                    rejection_data = ?2, updated_at = CURRENT_TIMESTAMP
              WHERE mutation_id = ?1 AND sync_status = 'pending'
              RETURNING id, model, entity_id",
        )?;
        // Every conflict is recorded before any server state is written: the rows still held by
        // unsent changes are read at the first write, and a conflict recorded after it would
        // look held (its state deferred, then dropped as older than the conflict).
        let mut conflicted_rows: Vec<(i64, String, String, Value)> = Vec::new();
        for item in conflicts {
            let id = mutation_id(item, "conflicts")?;
            let state = item
                .pointer("/data/server_state")
                .cloned()
                .unwrap_or(Value::Null);
            let Some((log_id, model, entity)) = conflicted
                .query_row((&id, state.to_string()), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?
            else {
                continue;
            };
            out.conflicts += 1;
            settled.push((log_id, entity.clone(), Settled::Conflict));
            conflicted_rows.push((log_id, model, entity, state));
        }
        for (log_id, model, entity, state) in &conflicted_rows {
            // A later change of the row, the full row, was applied: the server holds it now, not
            // the state this conflict carries.
            let superseded = taken.get(entity).is_some_and(|newest| newest > log_id);
            if let Some(row) =
                apply::payload_object(state).filter(|row| !row.is_empty() && !superseded)
            {
                let server_row = ServerRow {
                    entity,
                    model,
                    operation: "upsert",
                    payload: &row,
                    cursor_before: None,
                };
                // Like a pulled snapshot: a row with changes not sent yet (written while this
                // request was out) keeps them, and the server state waits for their answer.
                applier.apply(conn, &server_row, "conflict")?;
            }
        }
        let mut failed = conn.prepare_cached(
            "UPDATE tether_mutation_logs SET sync_status = 'failed', rejection_reason = ?2, rejection_data = ?3,
                    retry_count = retry_count + 1, updated_at = CURRENT_TIMESTAMP
              WHERE mutation_id = ?1 AND sync_status = 'pending'
              RETURNING id, entity_id, model",
        )?;
        // In queue order, so a row's earlier rejection is recorded before its later ones are
        // judged.
        for (id, item) in in_queue_order(conn, rejected)? {
            let reason = reason_of(item);
            if reason == "duplicate" {
                out.pushed += mark_synced(&id, &mut settled)?;
                continue;
            }
            if judged_without_predecessor(conn, &id, retry_limit)? {
                continue;
            }
            if reason == "not_found" && operation_of(conn, &id)?.as_deref() == Some("delete") {
                // The row is gone on the server, as this delete wanted (deleted elsewhere too).
                out.pushed += mark_synced(&id, &mut settled)?;
                continue;
            }
            let data = item.get("data").cloned().unwrap_or(Value::Null);
            let entity: Option<(i64, String, String)> = failed
                .query_row((&id, reason, data.to_string()), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            if let Some((log_id, entity, model)) = entity {
                let row = applier.which_row(conn, &model, &entity)?;
                note_row(log_id, &row)?;
                settled.push((log_id, entity, Settled::Rejected));
                out.failed += 1;
                out.rejections
                    .push(json!({"mutation_id": id, "reason": reason, "data": data, "row": row}));
                rejected_ids.push(log_id);
            }
        }
        // A refusal or conflict a later change of the same row in this request settled needs
        // nobody's attention: not reported as failed (the title typed wrong, then corrected).
        let superseded = supersede(conn, &settled)?;
        let mut kept = rejected_ids.iter().map(|id| !superseded.contains(id));
        out.rejections.retain(|_| kept.next().unwrap_or(true));
        out.failed -= rejected_ids
            .iter()
            .filter(|id| superseded.contains(id))
            .count();
        out.conflicts -= settled
            .iter()
            .filter(|(id, _, outcome)| *outcome == Settled::Conflict && superseded.contains(id))
            .count();
        apply::settle_deferred(conn, applier, &settled)?;
        // Named once the server's versions are written (they wait above for the answer's other
        // changes to settle): a deleted row is back by then.
        for (log_id, model, entity, _) in &conflicted_rows {
            note_row(*log_id, &applier.which_row(conn, model, entity)?)?;
        }
        out.warnings = record_warnings(conn, applier, warnings)?;
        Ok(out)
    })
}

/// A change the server took settles the row's earlier refusals and conflicts, this answer's too:
/// it carried the full row, so they no longer describe what the server has.
/// Returns the log ids it settled.
fn supersede(
    conn: &Connection,
    settled: &[(i64, String, Settled)],
) -> Result<std::collections::HashSet<i64>> {
    // The latest change the server took, per row of this answer; then one pass over the refused
    // and conflicting mutations (there is no index on the queue's entity to look them up by).
    let mut taken: HashMap<&str, i64> = HashMap::new();
    for (log_id, entity, outcome) in settled {
        if *outcome == Settled::Synced {
            let latest = taken.entry(entity).or_insert(*log_id);
            *latest = (*latest).max(*log_id);
        }
    }
    if taken.is_empty() {
        return Ok(Default::default());
    }
    let superseded: Vec<i64> = {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, entity_id FROM tether_mutation_logs
              WHERE {UNSYNCED} AND sync_status IN ('failed', 'conflict')"
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut ids = Vec::new();
        for row in rows {
            let (id, entity) = row?;
            if taken
                .get(entity.as_str())
                .is_some_and(|latest| id < *latest)
            {
                ids.push(id);
            }
        }
        ids
    };
    let mut stmt = conn.prepare_cached(
        "UPDATE tether_mutation_logs
            SET sync_status = 'resolved', resolution = 'superseded',
                resolved_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP
          WHERE id = ?1",
    )?;
    for id in &superseded {
        stmt.execute([id])?;
    }
    Ok(superseded.into_iter().collect())
}

/// Records the local row's primary key on a mutation that failed or conflicted (`row` as
/// [`apply::which_row`] gives it), for `tether_attention`.
fn note_row(conn: &Connection) -> Result<impl FnMut(i64, &Value) -> Result<()> + '_> {
    let mut stmt =
        conn.prepare_cached("UPDATE tether_mutation_logs SET local_pk = ?2 WHERE id = ?1")?;
    Ok(move |log_id: i64, row: &Value| {
        let key = row.get("primary_key").filter(|k| !k.is_null());
        stmt.execute((log_id, key.map(Value::to_string)))?;
        Ok(())
    })
}

/// Warnings the server added to its answer (tether-server's extension: the fields of a mutation
/// its model does not list, which it ignored). Advisory: each is returned as it came, with the
/// row it is about; ignored fields are remembered per table for `tether_status()`. A malformed
/// warning never fails the answer.
fn record_warnings(
    conn: &Connection,
    applier: &apply::Applier,
    warnings: &[Value],
) -> Result<Vec<Value>> {
    let mut recorded = Vec::new();
    for warning in warnings.iter().take(1000) {
        let mut warning = warning.clone();
        let id = warning.get("mutation_id").and_then(Value::as_str);
        let known: Option<(String, String)> = match id {
            Some(id) => conn
                .prepare_cached(
                    "SELECT model, entity_id FROM tether_mutation_logs WHERE mutation_id = ?1",
                )?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            None => None,
        };
        if let (Some((model, entity)), Value::Object(fields)) = (known, &mut warning) {
            if fields.get("reason").and_then(Value::as_str) == Some("ignored_fields") {
                if let Some(names) = fields.get("fields").filter(|f| f.is_array()) {
                    crate::tracking::learn_server_ignored(conn, &model, &names.to_string())?;
                }
            }
            fields.insert("row".into(), applier.which_row(conn, &model, &entity)?);
        }
        recorded.push(warning);
    }
    Ok(recorded)
}

fn operation_of(conn: &Connection, mutation_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT operation FROM tether_mutation_logs WHERE mutation_id = ?1")?
        .query_row([mutation_id], |r| r.get(0))
        .optional()?)
}

fn reason_of(item: &Value) -> &str {
    item.get("reason")
        .and_then(Value::as_str)
        .unwrap_or("error")
}

/// The rejected entries with their mutation ids, sorted by queue position (unknown ids last).
fn in_queue_order<'a>(
    conn: &Connection,
    rejected: &'a [Value],
) -> Result<Vec<(String, &'a Value)>> {
    let mut position =
        conn.prepare_cached("SELECT id FROM tether_mutation_logs WHERE mutation_id = ?1")?;
    let mut entries = Vec::new();
    for item in rejected {
        let id = mutation_id(item, "rejected")?;
        let at: Option<i64> = position.query_row([&id], |r| r.get(0)).optional()?;
        entries.push((at.unwrap_or(i64::MAX), id, item));
    }
    entries.sort_by_key(|(at, ..)| *at);
    Ok(entries
        .into_iter()
        .map(|(_, id, item)| (id, item))
        .collect())
}

/// A rejection of a mutation whose row has an earlier mutation still unsent (left unanswered) or
/// awaiting a retry: the server judged it without its predecessor (an update `not_found` because
/// its create failed), so it is not recorded and the mutation goes again after it.
fn judged_without_predecessor(
    conn: &Connection,
    mutation_id: &str,
    retry_limit: u64,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM tether_mutation_logs
                             WHERE {} AND id < (
                                   SELECT id FROM tether_mutation_logs WHERE mutation_id = ?1)
                               AND entity_id = (
                                   SELECT entity_id FROM tether_mutation_logs WHERE mutation_id = ?1))",
            crate::queue::unsent(retry_limit)
        ))?
        .query_row([mutation_id], |r| r.get(0))?)
}
