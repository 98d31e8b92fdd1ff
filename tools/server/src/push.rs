//! `POST /tether/push`: each mutation in order; one bad mutation never fails the batch.
use serde_json::{json, Map, Value};

use crate::models::validate;
use crate::store::{iso_time, Store};

/// Outcome of one push request.
#[derive(Default)]
pub struct PushOutcome {
    pub applied: Vec<Value>,
    pub rejected: Vec<Value>,
    pub conflicts: Vec<Value>,
}

impl PushOutcome {
    pub fn to_json(&self) -> Value {
        json!({"applied": self.applied, "rejected": self.rejected, "conflicts": self.conflicts})
    }
}

fn reject(out: &mut PushOutcome, id: &str, reason: &str, data: Value) {
    out.rejected
        .push(json!({"mutation_id": id, "reason": reason, "data": data}));
}

/// Applies `mutations` (already checked to be objects with a string `mutation_id`).
pub fn push(
    store: &mut Store,
    client: &str,
    mutations: &[Value],
    strict_duplicates: bool,
) -> rusqlite::Result<PushOutcome> {
    let mut out = PushOutcome::default();
    store.conn.execute_batch("BEGIN IMMEDIATE")?;
    for mutation in mutations {
        let id = mutation["mutation_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        store.conn.execute_batch("SAVEPOINT mutation")?;
        match apply_one(store, client, &id, mutation, strict_duplicates, &mut out) {
            Ok(()) => store.conn.execute_batch("RELEASE mutation")?,
            Err(error) => {
                store
                    .conn
                    .execute_batch("ROLLBACK TO mutation; RELEASE mutation")?;
                reject(
                    &mut out,
                    &id,
                    "error",
                    json!({"message": format!("could not apply: {error}")}),
                );
            }
        }
    }
    store.conn.execute_batch("COMMIT")?;
    Ok(out)
}

fn apply_one(
    store: &mut Store,
    client: &str,
    id: &str,
    m: &Value,
    strict_duplicates: bool,
    out: &mut PushOutcome,
) -> rusqlite::Result<()> {
    if store.is_applied(id)? {
        if strict_duplicates {
            reject(out, id, "duplicate", json!([]));
        } else {
            out.applied.push(json!(id));
        }
        return Ok(());
    }
    let model_name = m["model"].as_str().unwrap_or_default();
    let Some(index) = store.model_index(model_name) else {
        reject(
            out,
            id,
            "error",
            json!({"message": format!("Unknown model [{model_name}].")}),
        );
        return Ok(());
    };
    let model = store.models[index].clone();
    let Some(entity) = m["entity_id"].as_str().filter(|e| !e.is_empty()) else {
        reject(
            out,
            id,
            "error",
            json!({"message": "entity_id must be a non-empty string."}),
        );
        return Ok(());
    };
    let operation = m["operation"].as_str().unwrap_or_default();
    let Some(timestamp_ms) = m["timestamp"].as_i64() else {
        reject(
            out,
            id,
            "error",
            json!({"message": "timestamp must be an integer of milliseconds."}),
        );
        return Ok(());
    };
    // PHP encodes an empty payload as []; anything else that is not an object is empty too.
    let payload: Map<String, Value> = m["payload"].as_object().cloned().unwrap_or_default();
    let existing = store.find(&model, entity)?;
    let visible =
        existing.filter(|row| model.scope.is_none() || row.owner.as_deref() == Some(client));
    match operation {
        "create" => {
            if let (Some(row), Some(_)) = (store.find(&model, entity)?, &model.scope) {
                if row.owner.as_deref() != Some(client) {
                    let messages = json!({"entity_id": ["The entity id has already been taken."]});
                    reject(out, id, "validation_failed", json!({"messages": messages}));
                    return Ok(());
                }
            }
            if let Err(messages) = validate(&model, &payload) {
                reject(out, id, "validation_failed", json!({"messages": messages}));
                return Ok(());
            }
            store.upsert(&model, entity, &payload, Some(client))?;
        }
        "update" | "delete" => {
            let Some(row) = visible.filter(|row| row.deleted_us.is_none()) else {
                reject(
                    out,
                    id,
                    "not_found",
                    json!({"model": model.name, "entity_id": entity}),
                );
                return Ok(());
            };
            if timestamp_ms.saturating_mul(1000) < row.updated_us {
                out.conflicts.push(json!({
                    "mutation_id": id,
                    "reason": "conflict",
                    "data": {"server_state": Store::payload(&model, &row), "server_updated_at": iso_time(row.updated_us)},
                }));
                return Ok(());
            }
            if operation == "update" {
                if let Err(messages) = validate(&model, &payload) {
                    reject(out, id, "validation_failed", json!({"messages": messages}));
                    return Ok(());
                }
                store.upsert(&model, entity, &payload, Some(client))?;
            } else {
                store.delete(&model, &row)?;
            }
        }
        other => {
            reject(
                out,
                id,
                "error",
                json!({"message": format!("Unknown operation [{other}].")}),
            );
            return Ok(());
        }
    }
    store.record_applied(id, client, &model.name, entity)?;
    out.applied.push(json!(id));
    Ok(())
}
