//! Syncing: `tether_push`, `tether_pull`, `tether_sync` drive the sans-IO engine over HTTP;
//! `tether_push_request/response` and `tether_pull_request/response` hand the same engine to hosts
//! with their own HTTP stack. No write transaction is open while a request is in flight.
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::functions::Context;
use rusqlite::Connection;
use serde_json::Value;

use crate::bail;
use crate::debug;
use crate::engine::lock::Lease;
use crate::engine::{prune, pull, push, result_json, PullTotals, PushOutcome};
use crate::error::{Error, Result};
use crate::functions::{self, connection, required_text, Kind};
use crate::settings::{ConnectionSettings, Settings};
use crate::transport::Http;

/// Per-connection engine state for hosts driving the HTTP themselves.
#[derive(Default)]
pub struct EngineState {
    /// Log id reached by the push in progress; `None` between pushes. Within one push a mutation
    /// the server left unanswered is not sent again.
    push_position: Mutex<Option<i64>>,
}

/// What a cycle does.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Cycle {
    Push,
    Pull,
    Sync,
}

fn url<'a>(settings: &'a Settings, key: &str) -> Result<&'a str> {
    settings.get(key).ok_or_else(|| {
        Error::new(format!(
            "no server configured (server_url, or {key}): SELECT tether_config('server_url', 'https://your-server.example')"
        ))
    })
}

fn client_id(settings: &Settings) -> Result<&str> {
    settings
        .get("client_id")
        .ok_or_else(|| Error::new("no client id: the internal tables are missing"))
}

/// How far a cycle has come, for hosts that show progress (the `tether` command line).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// `Push` or `Pull`.
    pub stage: Cycle,
    /// Mutations answered, or snapshots received, so far.
    pub done: usize,
    /// Mutations to push, when known (pulls do not know their size in advance).
    pub total: Option<usize>,
}

/// A callback receiving [`Progress`].
pub type OnProgress<'a> = &'a dyn Fn(Progress);

struct Run<'a> {
    conn: &'a Connection,
    settings: &'a Settings,
    http: Http,
    /// Dropped before the lease is released (the release is no write of the cycle's).
    fence: Option<crate::engine::lock::Fence>,
    lease: Option<Lease>,
    progress: OnProgress<'a>,
}

/// The push limits the settings give.
fn limits(settings: &Settings) -> push::Limits {
    push::Limits {
        count: settings.number("push_batch_size"),
        bytes: settings.number("push_batch_bytes").max(1),
        retry_limit: settings.number("max_retry_attempts"),
    }
}

impl Run<'_> {
    /// Before each request and before writing its answer: a cycle that lost the lease to another
    /// (it expired) stops here.
    fn renew(&self) -> Result<()> {
        match &self.lease {
            Some(lease) => lease.renew(self.conn),
            None => Ok(()),
        }
    }

    fn push_all(&self) -> Result<PushOutcome> {
        let (conn, settings) = (self.conn, self.settings);
        push::requeue_retryable(conn, settings.number("max_retry_attempts"))?;
        let (url, client) = (url(settings, "push_url")?, client_id(settings)?);
        let total: i64 = conn.query_row(
            &format!(
                "SELECT count(*) FROM ({})",
                crate::queue::unsynced_rows("1", "sync_status = 'pending'")
            ),
            [],
            |r| r.get(0),
        )?;
        let mut outcome = PushOutcome::default();
        let mut limits = limits(settings);
        let (mut position, mut done) = (0, 0);
        loop {
            self.renew()?;
            let Some(batch) = push::next_batch(conn, client, position, limits)? else {
                return Ok(outcome);
            };
            outcome.add(PushOutcome::local_failures(&batch.local_failures));
            let Some(body) = &batch.body else {
                return Ok(outcome);
            };
            if position > 0 {
                crate::debug::kill_point("push-between-batches");
            }
            let answer = match self.http.post(url, body) {
                Err(error) if error.http_status() == Some(413) => {
                    if batch.size > 1 {
                        // Too large for the server or a proxy in front of it: half as much.
                        limits.count = (batch.size / 2) as u64;
                        limits.bytes = (body.len() / 2) as u64;
                        continue;
                    }
                    let alone = format!(
                        "the server refused it as too large (HTTP 413) even alone in a request of {} bytes",
                        body.len()
                    );
                    let failed = push::fail_locally(
                        conn,
                        "too_large",
                        &[(batch.ids[0], mutation_id_of(conn, batch.ids[0])?, alone)],
                    )?;
                    outcome.add(PushOutcome::local_failures(&failed));
                    position = batch.last_id;
                    continue;
                }
                other => other?,
            };
            self.renew()?;
            // Errors quoting the answer must not quote a token the server echoed.
            let recorded = push::apply_answer(conn, &answer, limits.retry_limit);
            outcome.add(recorded.map_err(|e| self.http.scrub_error(e))?);
            position = batch.last_id;
            done += batch.size;
            (self.progress)(Progress {
                stage: Cycle::Push,
                done,
                total: Some(total as usize),
            });
        }
    }

    fn pull_all(&self) -> Result<PullTotals> {
        let (url, client) = (url(self.settings, "pull_url")?, client_id(self.settings)?);
        let page_size = self
            .settings
            .get("pull_page_size")
            .and_then(|v| v.parse().ok());
        let (mut totals, mut received) = (PullTotals::default(), 0);
        loop {
            self.renew()?;
            let body = pull::request_body(self.conn, client, page_size)?;
            let answer = self.http.post(url, &body)?;
            self.renew()?;
            let page =
                pull::apply_page(self.conn, &answer).map_err(|e| self.http.scrub_error(e))?;
            totals.add(&page);
            received += page.pulled + page.pull_errors + page.kept_local;
            (self.progress)(Progress {
                stage: Cycle::Pull,
                done: received,
                total: None,
            });
            if !page.has_more {
                return Ok(totals);
            }
        }
    }
}

fn mutation_id_of(conn: &Connection, id: i64) -> Result<Option<String>> {
    Ok(conn.query_row(
        "SELECT mutation_id FROM tether_mutation_logs WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?)
}

impl Cycle {
    pub fn name(self) -> &'static str {
        match self {
            Cycle::Push => "push",
            Cycle::Pull => "pull",
            Cycle::Sync => "sync",
        }
    }

    pub fn parse(kind: &str) -> Result<Cycle> {
        match kind {
            "push" => Ok(Cycle::Push),
            "pull" => Ok(Cycle::Pull),
            "sync" => Ok(Cycle::Sync),
            other => bail!("kind must be 'push', 'pull' or 'sync', got {other:?}"),
        }
    }
}

/// One cycle, recorded in `tether_sync_log` with what started it (`foreground`, `dispatch`,
/// `schedule`, `auto`). Returns the result JSON; a failed cycle records its error and returns it.
pub fn run_cycle(
    conn: &Connection,
    session: &ConnectionSettings,
    kind: Cycle,
    trigger: &str,
) -> Result<Value> {
    run_cycle_with_progress(conn, session, kind, trigger, &|_| {})
}

/// [`run_cycle`], reporting progress after each batch and page.
pub fn run_cycle_with_progress(
    conn: &Connection,
    session: &ConnectionSettings,
    kind: Cycle,
    trigger: &str,
    progress: OnProgress<'_>,
) -> Result<Value> {
    logged_cycle(conn, session, kind, trigger, progress, trigger != "auto")
}

/// A background worker's cycle: `keep_if_skipped` false drops the log row of a cycle skipped
/// because another held the sync lock (an auto push: with several workers on one file each
/// change would otherwise add one per worker; a dispatch skipped again while it waits).
pub fn run_background_cycle(
    conn: &Connection,
    session: &ConnectionSettings,
    kind: Cycle,
    trigger: &str,
    keep_if_skipped: bool,
) -> Result<Value> {
    logged_cycle(conn, session, kind, trigger, &|_| {}, keep_if_skipped)
}

fn logged_cycle(
    conn: &Connection,
    session: &ConnectionSettings,
    kind: Cycle,
    trigger: &str,
    progress: OnProgress<'_>,
    keep_if_skipped: bool,
) -> Result<Value> {
    if !conn.is_autocommit() {
        bail!("cannot sync inside an open transaction: the network requests would hold the database lock; COMMIT first");
    }
    let settings = Settings::load(conn, session)?;
    let cleanup = crate::db::SameFile::for_cleanup(conn);
    // Capture and apply must match the tables as they are now (renamed, rebuilt by a migration
    // tool) before anything is sent or written.
    session.schema_watch().reconcile(conn, &settings)?;
    let entry = crate::db::write_txn(conn, |conn| {
        conn.execute(
            "INSERT INTO tether_sync_log (kind, trigger, host, pid) VALUES (?1, ?2, ?3, ?4)",
            (
                kind.name(),
                trigger,
                crate::engine::lock::host_name(),
                std::process::id(),
            ),
        )?;
        Ok(conn.last_insert_rowid())
    })?;
    // A panic inside the cycle still finishes its log row (and the lease goes with `Run`).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        locked_cycle(conn, &settings, kind, entry, cleanup.clone(), progress)
    }))
    .unwrap_or_else(|panic| {
        Err(Error::new(format!(
            "internal error: {}",
            functions::panic_message(&panic)
        )))
    });
    let (result, error) = match &outcome {
        Ok(value) => (Some(value.to_string()), None),
        Err(e) => (None, Some(e.message().to_string())),
    };
    let dropped = !keep_if_skipped
        && outcome
            .as_ref()
            .is_ok_and(|value| value["skipped"] == Value::Bool(true));
    let finished = crate::db::write_even_if_interrupted(conn, cleanup.as_ref(), |conn| {
        if dropped {
            conn.execute("DELETE FROM tether_sync_log WHERE id = ?1", [entry])?;
        } else {
            conn.execute(
                "UPDATE tether_sync_log SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), result = ?2, error = ?3
                  WHERE id = ?1",
                (entry, &result, &error),
            )?;
        }
        Ok(())
    });
    // The cycle's own error is what the caller must see (an interrupt stays an interrupt).
    match (&outcome, finished) {
        (Err(_), Err(unfinished)) => {
            debug::log(&settings, 1, || {
                format!("the sync log row was left unfinished: {unfinished}")
            });
        }
        (Ok(_), Err(unfinished)) => return Err(unfinished),
        (_, Ok(())) => {}
    }
    debug::log(&settings, 1, || match &outcome {
        Ok(value) => format!("{} ({trigger}): {value}", kind.name()),
        Err(e) => format!("{} ({trigger}) failed: {e}", kind.name()),
    });
    outcome
}

fn locked_cycle(
    conn: &Connection,
    settings: &Settings,
    kind: Cycle,
    entry: i64,
    cleanup: Option<crate::db::SameFile>,
    progress: OnProgress<'_>,
) -> Result<Value> {
    let http = Http::new(settings)?;
    let lease = if settings.flag("sync_lock") {
        match Lease::acquire(conn, settings.number("timeout_ms") as i64, cleanup)? {
            Some(lease) => Some(lease),
            None => {
                return Ok(result_json(
                    &PushOutcome::default(),
                    &PullTotals::default(),
                    true,
                ))
            }
        }
    } else {
        None
    };
    // From here on the lease goes with `run`, however the cycle ends.
    let run = Run {
        conn,
        settings,
        http,
        fence: lease.as_ref().map(|lease| lease.fence(conn)),
        lease,
        progress,
    };
    if run.lease.is_some() {
        mark_interrupted(conn, entry)?;
    }
    let work = || -> Result<Value> {
        // Rows of {"keys": "on_sync"} tables get their keys before anything is sent, and before
        // a pull, which must know which rows hold unsent changes.
        let given = crate::keys::give(conn, None, &mut || Ok(()))?;
        let mut pushed = PushOutcome::local_failures(&given.failed);
        if kind != Cycle::Pull {
            pushed.add(run.push_all()?);
        }
        let pulled = if kind == Cycle::Push {
            PullTotals::default()
        } else {
            run.pull_all()?
        };
        prune(conn, settings.number("retention_days"))?;
        Ok(result_json(&pushed, &pulled, false))
    };
    work()
}

/// Rows left unfinished by a process of this machine that is gone: marked interrupted. (A row
/// of another machine, or of a live process, may be a cycle still running without the lock.)
fn mark_interrupted(conn: &Connection, entry: i64) -> Result<()> {
    let Some(host) = crate::engine::lock::host_name() else {
        return Ok(());
    };
    let unfinished: Vec<(i64, i64)> = conn
        .prepare(
            "SELECT id, pid FROM tether_sync_log
              WHERE finished_at IS NULL AND id < ?1 AND host = ?2 AND pid IS NOT NULL",
        )?
        .query_map((entry, &host), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let dead: Vec<i64> = unfinished
        .into_iter()
        .filter(|(_, pid)| crate::engine::lock::process_is_gone(*pid))
        .map(|(id, _)| id)
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    crate::db::write_txn(conn, |conn| {
        conn.execute(
            "UPDATE tether_sync_log SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                    error = 'interrupted: the process ended before the cycle finished'
              WHERE id IN (SELECT value FROM json_each(?1)) AND finished_at IS NULL",
            [serde_json::to_string(&dead)?],
        )?;
        Ok(())
    })
}

/// The lease goes when the cycle ends, however it ends (an error, a panic caught at the FFI).
impl Drop for Run<'_> {
    fn drop(&mut self) {
        drop(self.fence.take());
        if let Some(lease) = self.lease.take() {
            let _ = lease.release(self.conn);
        }
    }
}

pub fn register(
    conn: &Connection,
    session: Arc<ConnectionSettings>,
    state: Arc<EngineState>,
) -> Result<()> {
    for (name, kind) in [
        ("tether_push", Cycle::Push),
        ("tether_pull", Cycle::Pull),
        ("tether_sync", Cycle::Sync),
    ] {
        let session = session.clone();
        functions::register(conn, name, &[0], Kind::Writes, move |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            Ok(run_cycle(&conn, &session, kind, "foreground")?.to_string())
        })?;
    }
    let (push_session, push_state) = (session.clone(), state.clone());
    functions::register(
        conn,
        "tether_push_request",
        &[0],
        Kind::Writes,
        move |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            refuse_inside_transaction(&conn, "tether_push_request")?;
            let settings = Settings::load(&conn, &push_session)?;
            push_session.schema_watch().reconcile(&conn, &settings)?;
            let mut position = push_state.push_position.lock();
            let after = match *position {
                Some(after) => after,
                None => {
                    crate::keys::give(&conn, None, &mut || Ok(()))?;
                    push::requeue_retryable(&conn, settings.number("max_retry_attempts"))?;
                    0
                }
            };
            let batch = push::next_batch(&conn, client_id(&settings)?, after, limits(&settings))?;
            // A push ends when there is nothing (more) to send, local failures or not.
            let batch = batch.filter(|b| b.body.is_some());
            *position = batch.as_ref().map(|b| b.last_id);
            Ok(batch.and_then(|b| b.body))
        },
    )?;
    register_answer(
        conn,
        session.clone(),
        "tether_push_response",
        |conn, body, settings| {
            let retry_limit = settings.number("max_retry_attempts");
            Ok(push::apply_answer(conn, body, retry_limit)?.to_json())
        },
    )?;
    let pull_session = session.clone();
    functions::register(
        conn,
        "tether_pull_request",
        &[0],
        // Repairs tracking before saying where this client stands: it may write.
        Kind::Writes,
        move |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            refuse_inside_transaction(&conn, "tether_pull_request")?;
            let settings = Settings::load(&conn, &pull_session)?;
            pull_session.schema_watch().reconcile(&conn, &settings)?;
            crate::keys::give(&conn, None, &mut || Ok(()))?;
            let page_size = settings.get("pull_page_size").and_then(|v| v.parse().ok());
            pull::request_body(&conn, client_id(&settings)?, page_size)
        },
    )?;
    register_answer(
        conn,
        session,
        "tether_pull_response",
        |conn, body, _settings| Ok(pull::apply_page(conn, body)?.to_json()),
    )
}

/// The sans-IO functions commit as they go (identities before a body leaves, a page with its
/// cursor): inside a host's transaction a rollback after the body was sent would resend the same
/// change under new mutation ids, or forget an answer already recorded by the server.
fn refuse_inside_transaction(conn: &Connection, name: &str) -> Result<()> {
    if !conn.is_autocommit() {
        bail!("{name} cannot run inside an open transaction: what it records must be committed before the request leaves or the answer is forgotten; COMMIT first");
    }
    Ok(())
}

/// Registers a sans-IO function that applies a server answer given as its one argument.
fn register_answer(
    conn: &Connection,
    session: Arc<ConnectionSettings>,
    name: &'static str,
    apply: fn(&Connection, &str, &Settings) -> Result<Value>,
) -> Result<()> {
    functions::register(conn, name, &[1], Kind::Writes, move |ctx: &Context<'_>| {
        let body = required_text(ctx, 0, "the answer body")?;
        let conn = connection(ctx)?;
        refuse_inside_transaction(&conn, name)?;
        let settings = Settings::load(&conn, &session)?;
        Ok(apply(&conn, &body, &settings)?.to_string())
    })
}
