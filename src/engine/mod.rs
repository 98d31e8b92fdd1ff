//! The sync engine, sans IO: it produces the next request body and consumes an answer; it never
//! touches the network. `sync.rs` drives it over the HTTP transport; hosts with their own HTTP
//! stack drive it through `tether_push_request/response` and `tether_pull_request/response`.
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::db::write_txn;
use crate::error::Result;
use crate::queue::UNSYNCED;

pub mod apply;
pub mod cascade;
pub mod lock;
pub mod pull;
pub mod push;
pub mod quarantine;

/// What applying push answers did.
#[derive(Default, Debug)]
pub struct PushOutcome {
    pub pushed: usize,
    pub failed: usize,
    pub conflicts: usize,
    pub rejections: Vec<Value>,
    /// What the server said it did differently than asked (fields it ignored), per mutation.
    pub warnings: Vec<Value>,
}

impl PushOutcome {
    /// The result of `tether_push_response`.
    pub fn to_json(&self) -> Value {
        json!({"pushed": self.pushed, "failed": self.failed, "conflicts": self.conflicts,
               "rejections": self.rejections, "warnings": self.warnings})
    }

    /// Mutations that failed before they could be sent.
    pub fn local_failures(rejections: &[Value]) -> PushOutcome {
        PushOutcome {
            failed: rejections.len(),
            rejections: rejections.to_vec(),
            ..PushOutcome::default()
        }
    }

    pub fn add(&mut self, other: PushOutcome) {
        self.pushed += other.pushed;
        self.failed += other.failed;
        self.conflicts += other.conflicts;
        self.rejections.extend(other.rejections);
        self.warnings.extend(other.warnings);
    }
}

/// What applying one pull page did.
#[derive(Default, Debug)]
pub struct PullPage {
    pub pulled: usize,
    pub pull_errors: usize,
    /// Snapshots not applied because the row still has unsent local changes.
    pub kept_local: usize,
    /// Snapshots the database refused, kept in the quarantine (also counted in `pull_errors`).
    pub quarantined: usize,
    /// Quarantined rows that applied when tried again after the page.
    pub recovered: usize,
    pub has_more: bool,
    pub cursor: Option<i64>,
    /// Why snapshots were not applied: reason → model → count.
    pub error_reasons: ErrorReasons,
}

/// Pull errors by reason (`unknown model`, `refused by the database`, `not a snapshot`) and
/// model.
pub type ErrorReasons =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>;

impl PullPage {
    /// The result of `tether_pull_response`.
    pub fn to_json(&self) -> Value {
        json!({"pulled": self.pulled + self.recovered, "pull_errors": self.pull_errors,
               "pull_error_reasons": self.error_reasons,
               "quarantined": self.quarantined, "has_more": self.has_more,
               "new_sync_cursor": self.cursor})
    }

    /// Counts a snapshot not applied, with why.
    pub fn error(&mut self, reason: &str, model: &str) {
        self.pull_errors += 1;
        *self
            .error_reasons
            .entry(reason.to_string())
            .or_default()
            .entry(model.to_string())
            .or_default() += 1;
    }
}

/// What the pages of one pull did together.
#[derive(Default, Debug)]
pub struct PullTotals {
    pub pulled: usize,
    pub pull_errors: usize,
    pub error_reasons: ErrorReasons,
}

impl PullTotals {
    pub fn add(&mut self, page: &PullPage) {
        self.pulled += page.pulled + page.recovered;
        self.pull_errors += page.pull_errors;
        add_reasons(&mut self.error_reasons, &page.error_reasons);
    }
}

/// Adds the counts of `more` to `into`.
pub fn add_reasons(into: &mut ErrorReasons, more: &ErrorReasons) {
    for (reason, models) in more {
        let into = into.entry(reason.clone()).or_default();
        for (model, count) in models {
            *into.entry(model.clone()).or_default() += count;
        }
    }
}

/// The result JSON of `tether_sync`, `tether_push` and `tether_pull`.
pub fn result_json(push: &PushOutcome, pull: &PullTotals, skipped: bool) -> Value {
    json!({
        "pushed": push.pushed,
        "pulled": pull.pulled,
        "conflicts": push.conflicts,
        "failed": push.failed,
        "rejections": push.rejections,
        "warnings": push.warnings,
        "pull_errors": pull.pull_errors,
        "pull_error_reasons": pull.error_reasons,
        "skipped": skipped,
    })
}

/// At most 200 characters of a body, for error messages.
pub fn excerpt(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(200) {
        Some((cut, _)) => format!("{:?}…", &trimmed[..cut]),
        None => format!("{trimmed:?}"),
    }
}

/// Now as ISO 8601 with offset, like Laravel's `toIso8601String()`.
pub fn now_iso(conn: &Connection) -> Result<String> {
    Ok(conn.query_row(
        "SELECT strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')",
        [],
        |r| r.get(0),
    )?)
}

/// Deletes synced mutations synced more than `retention_days` ago (0: every synced one), resolved
/// ones resolved as long ago, and
/// finished sync-log rows as old, in short transactions. Versions survive in
/// `tether_entity_versions`; a cycle still running keeps its row. The log's newest row stays
/// whatever its age: the queue's ids (an INTEGER PRIMARY KEY without AUTOINCREMENT) then never
/// go back, which `tether_row_keys.log_id` relies on to tell a record written after a delete
/// from one written before it (`queue::drop_records_of_deletes`).
pub fn prune(conn: &Connection, retention_days: u64) -> Result<usize> {
    let age = format!("-{retention_days} days");
    let mut total = 0;
    for sql in [
        "DELETE FROM tether_mutation_logs WHERE id IN (
             SELECT id FROM tether_mutation_logs
              WHERE sync_status = 'synced' AND synced_at <= datetime('now', ?1)
                AND id < (SELECT max(id) FROM tether_mutation_logs)
              ORDER BY id LIMIT 5000)",
        // Failures and conflicts a person resolved (tether_retry, tether_discard).
        &format!(
            "DELETE FROM tether_mutation_logs WHERE id IN (
             SELECT id FROM tether_mutation_logs
              WHERE {UNSYNCED} AND sync_status = 'resolved'
                AND resolved_at <= datetime('now', ?1)
                AND id < (SELECT max(id) FROM tether_mutation_logs)
                -- A discarded create whose row stayed (its removal waits in the quarantine) is
                -- what tells a later fix to go as a create.
                AND NOT (resolution = 'discarded' AND operation = 'create'
                         AND entity_id IN (SELECT entity_id FROM tether_quarantine))
                -- A discarded create without a key is what leaves its row unsynced
                -- (tether::keys::orphans would queue the row again) until the row is deleted.
                AND NOT (resolution = 'discarded' AND entity_id = '' AND locator IS NOT NULL)
              ORDER BY id LIMIT 5000)"
        ),
        "DELETE FROM tether_sync_log WHERE id IN (
             SELECT id FROM tether_sync_log
              WHERE finished_at IS NOT NULL
                AND finished_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)
              ORDER BY id LIMIT 5000)",
    ] {
        loop {
            let deleted = write_txn(conn, |conn| {
                crate::debug::kill_point("pruning");
                Ok(conn.prepare_cached(sql)?.execute([&age])?)
            })?;
            if sql.contains("tether_mutation_logs") {
                total += deleted;
            }
            if deleted == 0 {
                break;
            }
        }
    }
    Ok(total)
}
