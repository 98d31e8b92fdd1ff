//! `POST /tether/push`: each mutation in order; one bad mutation never fails the batch.
use serde_json::{json, Map, Value};

use crate::http::shown;
use crate::models::{messages_json, validate};
use crate::store::{iso_time, Store};

/// Outcome of one push request.
#[derive(Default)]
pub struct PushOutcome {
    pub applied: Vec<Value>,
    pub rejected: Vec<Value>,
    pub conflicts: Vec<Value>,
    /// An extension of the protocol: the Laravel server sends no such key, and clients may
    /// ignore it. One entry per create or update whose payload carried fields the model does not
    /// list (which the server drops, as Laravel's does), whatever became of the mutation:
    /// `{"mutation_id", "reason": "ignored_fields", "model", "fields": [sorted names],
    /// "message"}`. The answer has a `warnings` key only when there is at least one.
    pub warnings: Vec<Value>,
}

impl PushOutcome {
    pub fn to_json(&self) -> Value {
        let mut answer = json!({"applied": self.applied, "rejected": self.rejected, "conflicts": self.conflicts});
        if !self.warnings.is_empty() {
            answer["warnings"] = json!(self.warnings);
        }
        answer
    }

    fn add(&mut self, id: &str, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied.push(json!(id)),
            Outcome::Rejected(reason, data) => self
                .rejected
                .push(json!({"mutation_id": id, "reason": reason, "data": data})),
            Outcome::Conflict(data) => self
                .conflicts
                .push(json!({"mutation_id": id, "reason": "conflict", "data": data})),
        }
    }
}

/// What happened to one mutation.
enum Outcome {
    Applied,
    Rejected(&'static str, Value),
    Conflict(Value),
}

fn error(message: String) -> Outcome {
    Outcome::Rejected("error", json!({ "message": message }))
}

/// A failure injected by the test controls inside the push transaction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InjectedFailure {
    /// Apply every mutation, then fail as a database error would, before COMMIT.
    BeforeCommit,
    /// Apply every mutation, then panic before COMMIT.
    Panic,
}

/// Applies `mutations` (each with a string `mutation_id`), in one transaction with a savepoint
/// per mutation. The transaction ends on every path: committed at the end, rolled back by its
/// guard on any early return or panic.
pub fn push(
    store: &mut Store,
    client: &str,
    mutations: &[&Value],
    strict_duplicates: bool,
    inject: Option<InjectedFailure>,
) -> rusqlite::Result<PushOutcome> {
    let mut out = PushOutcome::default();
    let mut tx = store.begin()?;
    for mutation in mutations {
        let id = mutation["mutation_id"].as_str().unwrap_or_default();
        let outcome = match tx
            .savepoint(|store| apply_one(store, client, id, mutation, strict_duplicates))?
        {
            Ok(outcome) => outcome,
            Err(e) => {
                // The reason goes to the log, not to the client.
                eprintln!("tether-server: mutation {id:?} could not be applied: {e}");
                error("The mutation could not be applied.".into())
            }
        };
        out.add(id, outcome);
        if let Some(warning) = ignored_fields(&tx, id, mutation) {
            out.warnings.push(warning);
        }
    }
    match inject {
        Some(InjectedFailure::BeforeCommit) => {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("injected failure before COMMIT (test controls)".into()),
            ))
        }
        Some(InjectedFailure::Panic) => panic!("injected panic before COMMIT (test controls)"),
        None => {}
    }
    tx.commit()?;
    for warning in &out.warnings {
        log_ignored(warning);
    }
    Ok(out)
}

/// The `ignored_fields` warning of a create or update whose payload has keys the model does not
/// list (see [`crate::models::Model::ignored_fields`]); `None` for other mutations, and for
/// those of an unknown model.
fn ignored_fields(store: &Store, id: &str, m: &Value) -> Option<Value> {
    if !matches!(m["operation"].as_str(), Some("create" | "update")) {
        return None;
    }
    let model = &store.models[store.model_index(m["model"].as_str()?)?];
    let fields = model.ignored_fields(m["payload"].as_object()?);
    if fields.is_empty() {
        return None;
    }
    let message = format!(
        "{} does not list {}: the server ignored {}",
        model.name,
        fields.join(", "),
        if fields.len() == 1 { "it" } else { "them" }
    );
    Some(json!({
        "mutation_id": id,
        "reason": "ignored_fields",
        "model": model.name,
        "fields": fields,
        "message": message,
    }))
}

/// The most field names one log line shows.
const LOGGED_FIELDS: usize = 10;

/// One log line per warning, like the other per-mutation lines (and, like them, also with
/// `--quiet`); every name is escaped as the request log escapes client text.
fn log_ignored(warning: &Value) {
    let text = |v: &Value| shown(v.as_str().unwrap_or_default());
    let fields = warning["fields"].as_array().map_or(&[][..], Vec::as_slice);
    let mut names: Vec<String> = fields.iter().take(LOGGED_FIELDS).map(text).collect();
    if fields.len() > LOGGED_FIELDS {
        names.push(format!("and {} more", fields.len() - LOGGED_FIELDS));
    }
    eprintln!(
        "tether-server: mutation {} of model {}: ignored fields the model does not list: {}",
        text(&warning["mutation_id"]),
        text(&warning["model"]),
        names.join(", ")
    );
}

fn apply_one(
    store: &mut Store,
    client: &str,
    id: &str,
    m: &Value,
    strict_duplicates: bool,
) -> rusqlite::Result<Outcome> {
    if store.is_applied(id)? {
        return Ok(if strict_duplicates {
            Outcome::Rejected("duplicate", json!([]))
        } else {
            Outcome::Applied
        });
    }
    let model_name = m["model"].as_str().unwrap_or_default();
    let Some(index) = store.model_index(model_name) else {
        return Ok(error(format!("Unknown model [{model_name}].")));
    };
    let model = store.models[index].clone();
    let Some(entity) = m["entity_id"].as_str().filter(|e| !e.is_empty()) else {
        return Ok(error("entity_id must be a non-empty string.".into()));
    };
    let Some(timestamp_ms) = m["timestamp"].as_i64() else {
        return Ok(error(
            "timestamp must be an integer of milliseconds.".into(),
        ));
    };
    // A date Laravel can store (years 1970 to 9999): a timestamp in microseconds by mistake
    // would otherwise make the row newer than any correct change, for ever.
    const LATEST_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if !(0..=LATEST_MS).contains(&timestamp_ms) {
        return Ok(error(format!(
            "timestamp {timestamp_ms} is not a date in milliseconds since 1970 (up to year 9999)."
        )));
    }
    // PHP encodes an empty payload as []; anything else that is not an object is empty too.
    let payload: Map<String, Value> = m["payload"].as_object().cloned().unwrap_or_default();
    let invalid =
        |messages| Outcome::Rejected("validation_failed", json!({ "messages": messages }));
    let existing = store.find(&model, entity)?;
    let owned = |owner: Option<&str>| model.scope.is_none() || owner == Some(client);
    // When the client made the change: the row's updated_at (or deleted_at) becomes this.
    let at_us = timestamp_ms.saturating_mul(1000);
    match m["operation"].as_str().unwrap_or_default() {
        "create" => {
            if existing
                .as_ref()
                .is_some_and(|row| !owned(row.owner.as_deref()))
            {
                return Ok(invalid(
                    json!({"entity_id": ["The entity id has already been taken."]}),
                ));
            }
        }
        operation @ ("update" | "delete") => {
            let live =
                existing.filter(|row| owned(row.owner.as_deref()) && row.deleted_us.is_none());
            let Some(row) = live else {
                return Ok(Outcome::Rejected(
                    "not_found",
                    json!({"model": model.name, "entity_id": entity}),
                ));
            };
            if at_us < row.updated_us {
                return Ok(Outcome::Conflict(json!({
                    "server_state": Store::payload(&model, &row),
                    "server_updated_at": iso_time(row.updated_us),
                })));
            }
            if operation == "delete" {
                store.delete(&model, &row, at_us)?;
                store.record_applied(id, client, &model.name, entity)?;
                return Ok(Outcome::Applied);
            }
        }
        other => return Ok(error(format!("Unknown operation [{other}]."))),
    }
    if let Err(messages) = validate(&model, &payload) {
        return Ok(invalid(messages_json(&messages)));
    }
    store.upsert(&model, entity, &payload, Some(client), at_us)?;
    store.record_applied(id, client, &model.name, entity)?;
    Ok(Outcome::Applied)
}
