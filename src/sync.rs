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
use crate::engine::{prune, pull, push, result_json, PushOutcome};
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
    lease: Option<Lease>,
    progress: OnProgress<'a>,
}

impl Run<'_> {
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
                "SELECT count(*) FROM tether_mutation_logs WHERE {}",
                crate::queue::PENDING
            ),
            [],
            |r| r.get(0),
        )?;
        let mut outcome = PushOutcome::default();
        let (mut position, mut done) = (0, 0);
        loop {
            self.renew()?;
            let Some(batch) =
                push::next_batch(conn, client, position, settings.number("push_batch_size"))?
            else {
                return Ok(outcome);
            };
            outcome.add(PushOutcome::local_failures(&batch.local_failures));
            let Some(body) = &batch.body else {
                return Ok(outcome);
            };
            let answer = self.http.post(url, body)?;
            outcome.add(push::apply_answer(conn, &answer)?);
            position = batch.last_id;
            done += batch.size;
            (self.progress)(Progress {
                stage: Cycle::Push,
                done,
                total: Some(total as usize),
            });
        }
    }

    fn pull_all(&self) -> Result<(usize, usize)> {
        let (url, client) = (url(self.settings, "pull_url")?, client_id(self.settings)?);
        let page_size = self
            .settings
            .get("pull_page_size")
            .and_then(|v| v.parse().ok());
        let (mut pulled, mut errors, mut received) = (0, 0, 0);
        loop {
            self.renew()?;
            let body = pull::request_body(self.conn, client, page_size)?;
            let answer = self.http.post(url, &body)?;
            let page = pull::apply_page(self.conn, &answer)?;
            pulled += page.pulled;
            errors += page.pull_errors;
            received += page.pulled + page.pull_errors + page.kept_local;
            (self.progress)(Progress {
                stage: Cycle::Pull,
                done: received,
                total: None,
            });
            if !page.has_more {
                return Ok((pulled, errors));
            }
        }
    }
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
    if !conn.is_autocommit() {
        bail!("cannot sync inside an open transaction: the network requests would hold the database lock; COMMIT first");
    }
    let settings = Settings::load(conn, session)?;
    // Capture and apply must match the tables as they are now (renamed, rebuilt by a migration
    // tool) before anything is sent or written.
    session.schema_watch().reconcile(conn, &settings)?;
    let entry = crate::db::write_txn(conn, |conn| {
        conn.execute(
            "INSERT INTO tether_sync_log (kind, trigger) VALUES (?1, ?2)",
            (kind.name(), trigger),
        )?;
        Ok(conn.last_insert_rowid())
    })?;
    let outcome = locked_cycle(conn, &settings, kind, progress);
    let (result, error) = match &outcome {
        Ok(value) => (Some(value.to_string()), None),
        Err(e) => (None, Some(e.message().to_string())),
    };
    crate::db::write_txn(conn, |conn| {
        conn.execute(
            "UPDATE tether_sync_log SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), result = ?2, error = ?3
              WHERE id = ?1",
            (entry, &result, &error),
        )?;
        Ok(())
    })?;
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
    progress: OnProgress<'_>,
) -> Result<Value> {
    let http = Http::new(settings)?;
    let lease = if settings.flag("sync_lock") {
        match Lease::acquire(conn, settings.number("timeout_ms") as i64)? {
            Some(lease) => Some(lease),
            None => return Ok(result_json(&PushOutcome::default(), 0, 0, true)),
        }
    } else {
        None
    };
    let run = Run {
        conn,
        settings,
        http,
        lease,
        progress,
    };
    let work = || -> Result<Value> {
        let pushed = if kind == Cycle::Pull {
            PushOutcome::default()
        } else {
            run.push_all()?
        };
        let (pulled, errors) = if kind == Cycle::Push {
            (0, 0)
        } else {
            run.pull_all()?
        };
        prune(conn, settings.number("retention_days"))?;
        Ok(result_json(&pushed, pulled, errors, false))
    };
    let result = work();
    if let Some(lease) = &run.lease {
        lease.release(conn)?;
    }
    result
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
            let settings = Settings::load(&conn, &push_session)?;
            push_session.schema_watch().reconcile(&conn, &settings)?;
            let mut position = push_state.push_position.lock();
            let after = match *position {
                Some(after) => after,
                None => {
                    push::requeue_retryable(&conn, settings.number("max_retry_attempts"))?;
                    0
                }
            };
            let batch = push::next_batch(
                &conn,
                client_id(&settings)?,
                after,
                settings.number("push_batch_size"),
            )?;
            *position = batch.as_ref().map(|b| b.last_id);
            Ok(batch.and_then(|b| b.body))
        },
    )?;
    register_answer(conn, "tether_push_response", |conn, body| {
        Ok(push::apply_answer(conn, body)?.to_json())
    })?;
    functions::register(
        conn,
        "tether_pull_request",
        &[0],
        // Repairs tracking before saying where this client stands: it may write.
        Kind::Writes,
        move |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            let settings = Settings::load(&conn, &session)?;
            session.schema_watch().reconcile(&conn, &settings)?;
            let page_size = settings.get("pull_page_size").and_then(|v| v.parse().ok());
            pull::request_body(&conn, client_id(&settings)?, page_size)
        },
    )?;
    register_answer(conn, "tether_pull_response", |conn, body| {
        Ok(pull::apply_page(conn, body)?.to_json())
    })
}

/// Registers a sans-IO function that applies a server answer given as its one argument.
fn register_answer(
    conn: &Connection,
    name: &'static str,
    apply: fn(&Connection, &str) -> Result<Value>,
) -> Result<()> {
    functions::register(conn, name, &[1], Kind::Writes, move |ctx: &Context<'_>| {
        let body = required_text(ctx, 0, "the answer body")?;
        let conn = connection(ctx)?;
        Ok(apply(&conn, &body)?.to_string())
    })
}
