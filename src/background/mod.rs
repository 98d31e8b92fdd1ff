//! Background work for any host: `tether_dispatch` (one cycle, now), `tether_schedule` (every N
//! seconds), `tether_stop`, and `auto_sync` (push soon after writes that queued mutations).
//!
//! A worker thread per loading connection owns its own connection to the same file (same VFS),
//! so it never blocks the host's, and uses the loading connection's settings, connection-scoped
//! ones included. It shares the sync lock with foreground cycles, records every cycle in
//! `tether_sync_log`, retries failures with [`crate::retry::Backoff`], and shows its health in
//! `tether_status()`. It stops when the loading connection closes (its handle lives in that
//! connection's function closures, which SQLite destroys on close): queued dispatches are then
//! recorded as cancelled, and a running cycle gets a few seconds to finish.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::functions::Context;
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::bail;
use crate::db::SameFile;
use crate::error::{Error, Result};
use crate::functions::{self, connection, text_arg, Kind};
use crate::settings::ConnectionSettings;
use crate::sync::Cycle;

mod worker;

/// How long a new worker may take to open its connection and load tether.
const START_PATIENCE: Duration = Duration::from_secs(20);
/// How long closing the loading connection waits for a running cycle.
const STOP_PATIENCE: Duration = Duration::from_secs(5);

/// What the worker was told to do.
#[derive(Default)]
struct Orders {
    stop: bool,
    /// Why queued dispatches are cancelled, for the sync log.
    stop_reason: &'static str,
    /// Dispatched cycles not run yet, oldest first; one waiting to be tried again has a time.
    dispatched: std::collections::VecDeque<Dispatch>,
    schedule: Option<Schedule>,
}

/// A dispatched cycle waiting to run.
#[derive(Clone, Copy)]
struct Dispatch {
    kind: Cycle,
    /// Not before this (a retry).
    due: Option<Instant>,
    /// Tries left when the database stays locked (a cycle skipped for the sync lock waits for it
    /// however long it takes).
    attempts_left: u32,
    /// Skipped for the sync lock before: a further skip keeps no log row.
    skipped: bool,
}

impl Dispatch {
    fn is_due(&self, now: Instant) -> bool {
        self.due.is_none_or(|at| now >= at)
    }
}

#[derive(Clone, Copy)]
struct Schedule {
    kind: Cycle,
    every: Duration,
    due: Instant,
}

/// What the worker did, for `tether_status()`.
#[derive(Default, Clone)]
struct Health {
    last_cycle: Option<Value>,
    last_error: Option<String>,
    failures: u32,
    /// When auto_sync will try pending mutations again after a failure.
    auto_retry: Option<Instant>,
}

#[derive(Default)]
struct Control {
    /// `PRAGMA foreign_keys` of the loading connection at its latest order: the worker's cycles
    /// follow it.
    foreign_keys: AtomicBool,
    orders: Mutex<Orders>,
    wake: Condvar,
    health: Mutex<Health>,
    alive: AtomicBool,
    exited: (Mutex<bool>, Condvar),
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Control {
    fn orders(&self) -> std::sync::MutexGuard<'_, Orders> {
        locked(&self.orders)
    }
}

/// The loading connection's handle on its worker. Dropped when that connection closes.
pub struct Worker {
    /// `Err`: why this connection can have no worker (in memory).
    target: std::result::Result<SameFile, String>,
    /// Starting workers is for the loading connection only, never for a worker's own connection.
    may_start: bool,
    session: Arc<ConnectionSettings>,
    running: Mutex<Option<Arc<Control>>>,
    /// Why auto_sync could not start a worker, for `tether_status()`.
    start_error: Mutex<Option<String>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop(true);
    }
}

impl Worker {
    pub fn new(
        conn: &Connection,
        session: Arc<ConnectionSettings>,
        may_start: bool,
    ) -> Result<Worker> {
        let target = SameFile::of(conn)?
            .map_err(|why| format!("background work needs a database file ({why})"));
        Ok(Worker {
            target,
            may_start,
            session,
            running: Mutex::new(None),
            start_error: Mutex::new(None),
        })
    }

    /// The running worker's control, starting the worker if needed (or again, if it died). An
    /// error says why no worker can run for this connection.
    fn control(&self, conn: &Connection) -> Result<Arc<Control>> {
        if !self.may_start {
            bail!("background work cannot be started from a background worker's own connection");
        }
        let target = self.target.clone().map_err(Error::new)?;
        let mode: String = conn.query_row("PRAGMA main.locking_mode", [], |r| r.get(0))?;
        if mode.eq_ignore_ascii_case("exclusive") {
            bail!("background work needs another connection to the database, and this one holds it in exclusive locking mode (PRAGMA locking_mode = EXCLUSIVE)");
        }
        if !crate::schema::can_write(conn)? {
            bail!("background work writes (the queue, the sync log), and this connection is read-only (opened read-only or PRAGMA query_only)");
        }
        let foreign_keys: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
        let mut running = locked(&self.running);
        if let Some(control) = running.as_ref().filter(|c| c.alive.load(Ordering::SeqCst)) {
            control.foreign_keys.store(foreign_keys, Ordering::SeqCst);
            return Ok(control.clone());
        }
        let control = Arc::new(Control::default());
        control.alive.store(true, Ordering::SeqCst);
        control.foreign_keys.store(foreign_keys, Ordering::SeqCst);
        let (ready, started) = std::sync::mpsc::channel();
        let (worker_control, session) = (control.clone(), self.session.clone());
        std::thread::Builder::new()
            .name("tether-worker".into())
            .spawn(move || worker::run(&target, &session, &worker_control, ready))
            .map_err(|e| Error::new(format!("cannot start the background worker: {e}")))?;
        match started.recv_timeout(START_PATIENCE) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => bail!("the background worker could not start: {reason}"),
            Err(_) => {
                control.orders().stop = true;
                control.wake.notify_all();
                bail!(
                    "the background worker could not open the database within {}s",
                    START_PATIENCE.as_secs()
                );
            }
        }
        *running = Some(control.clone());
        *locked(&self.start_error) = None;
        Ok(control)
    }

    /// Stops the worker: what it was doing, for `tether_stop()`. `closing`: the loading
    /// connection closes, and a running cycle gets a few seconds to finish (from SQL the caller
    /// may hold a lock the cycle waits for: no wait then).
    pub fn stop(&self, closing: bool) -> Value {
        let Some(control) = locked(&self.running).take() else {
            return json!({"stopped": false});
        };
        let (schedule, cancelled) = {
            let mut orders = control.orders();
            orders.stop = true;
            orders.stop_reason = if closing {
                "cancelled: the connection that dispatched it closed before it ran"
            } else {
                "cancelled: tether_stop() was called before it ran"
            };
            let schedule = orders
                .schedule
                .take()
                .map(|s| json!({"kind": s.kind.name(), "every": s.every.as_secs_f64()}));
            (schedule, orders.dispatched.len())
        };
        control.wake.notify_all();
        if closing {
            // Let a running cycle finish (a bounded wait: the host is closing its connection).
            let (exited, done) = &control.exited;
            let guard = locked(exited);
            let _ = done.wait_timeout_while(guard, STOP_PATIENCE, |exited| !*exited);
        }
        json!({"stopped": true, "schedule": schedule, "cancelled_dispatches": cancelled})
    }

    /// Starts the worker when the effective settings ask for auto_sync. Where no worker can run
    /// (read-only, exclusive locking, a database that cannot be opened now) loading and
    /// `tether_config` still succeed: `tether_status()` says why nothing runs.
    pub fn start_if_auto(
        &self,
        conn: &Connection,
        settings: &crate::settings::Settings,
    ) -> Result<()> {
        if settings.flag("auto_sync") && self.may_start && self.target.is_ok() {
            match self.control(conn) {
                // A worker already waiting (for a schedule, say) looks at auto_sync now.
                Ok(control) => control.wake.notify_all(),
                Err(error) => *locked(&self.start_error) = Some(error.to_string()),
            }
        }
        Ok(())
    }

    /// The worker as `tether_status()` shows it.
    pub fn health(&self) -> Value {
        let running = locked(&self.running)
            .as_ref()
            .filter(|c| c.alive.load(Ordering::SeqCst))
            .cloned();
        let Some(control) = running else {
            let why =
                (self.target.as_ref().err().cloned()).or_else(|| locked(&self.start_error).clone());
            return json!({"running": false, "unavailable": why});
        };
        let schedule = control.orders().schedule.map(|s| {
            json!({"kind": s.kind.name(), "every": s.every.as_secs_f64(),
                   "next_in": s.due.saturating_duration_since(Instant::now()).as_secs_f64()})
        });
        let health = locked(&control.health).clone();
        json!({
            "running": true,
            "schedule": schedule,
            "last_cycle": health.last_cycle,
            "last_error": health.last_error,
            "failures_in_a_row": health.failures,
            "auto_retry_in": health.auto_retry.map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64()),
        })
    }
}

pub fn register(conn: &Connection, worker: Arc<Worker>) -> Result<()> {
    let dispatcher = worker.clone();
    functions::register(
        conn,
        "tether_dispatch",
        &[1],
        Kind::Writes,
        move |ctx: &Context<'_>| {
            let kind = Cycle::parse(&text_arg(ctx, 0, "the kind")?.unwrap_or_default())?;
            let conn = connection(ctx)?;
            let control = dispatcher.control(&conn)?;
            // A cycle already waiting to start does what this one would: one is enough (a
            // loop dispatching after each write would otherwise queue a cycle per write).
            let merged = {
                let mut orders = control.orders();
                let covered = orders
                    .dispatched
                    .iter()
                    .any(|queued| queued.kind == kind || queued.kind == Cycle::Sync);
                if !covered {
                    orders.dispatched.push_back(Dispatch {
                        kind,
                        due: None,
                        attempts_left: worker::DISPATCH_ATTEMPTS,
                        skipped: false,
                    });
                }
                covered
            };
            control.wake.notify_all();
            Ok(json!({"dispatched": kind.name(), "merged": merged}).to_string())
        },
    )?;
    let scheduler = worker.clone();
    functions::register(
        conn,
        "tether_schedule",
        &[2],
        Kind::Writes,
        move |ctx: &Context<'_>| {
            let kind = Cycle::parse(&text_arg(ctx, 0, "the kind")?.unwrap_or_default())?;
            let seconds: f64 = ctx
                .get(1)
                .map_err(|_| Error::new("seconds must be a number"))?;
            if seconds == 0.0 {
                if let Some(control) = locked(&scheduler.running).as_ref() {
                    control.orders().schedule = None;
                    control.wake.notify_all();
                }
                return Ok(json!({"scheduled": null}).to_string());
            }
            let every =
                crate::retry::interval(seconds).map_err(|e| e.context("seconds (0 cancels)"))?;
            let conn = connection(ctx)?;
            let control = scheduler.control(&conn)?;
            control.orders().schedule = Some(Schedule {
                kind,
                every,
                due: Instant::now() + every,
            });
            control.wake.notify_all();
            Ok(json!({"scheduled": kind.name(), "every": seconds}).to_string())
        },
    )?;
    functions::register(
        conn,
        "tether_stop",
        &[0],
        Kind::Writes,
        move |_: &Context<'_>| Ok(worker.stop(false).to_string()),
    )
}
