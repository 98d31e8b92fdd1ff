//! Background work for any host: `tether_dispatch` (one cycle, now), `tether_schedule` (every N
//! seconds), `tether_stop`, and `auto_sync` (push soon after commits that queued mutations).
//!
//! A worker thread per loading connection owns its own connection to the same file, so it never
//! blocks the host's. It shares the sync lock with foreground cycles, records every cycle in
//! `tether_sync_log`, survives errors (the next tick retries), and stops when the loading
//! connection closes: its control object lives in that connection's function closures, which
//! SQLite destroys on close.
//!
//! auto_sync notices commits by polling `PRAGMA data_version` on the worker's connection, which
//! changes for commits of every other connection: the loading one and other processes alike. (A
//! commit hook would replace one the host may have installed.) Pulled snapshots create no pending
//! mutation, so they never trigger a push.
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::functions::Context;
use rusqlite::Connection;
use serde_json::json;

use crate::bail;
use crate::error::{Error, Result};
use crate::functions::{self, text_arg, Kind};
use crate::settings::{ConnectionSettings, Settings};
use crate::sync::{run_cycle, Cycle};

/// How often auto_sync looks for commits.
const POLL: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Orders {
    stop: bool,
    dispatched: VecDeque<Cycle>,
    schedule: Option<(Cycle, Duration, Instant)>,
}

#[derive(Default)]
struct Control {
    orders: Mutex<Orders>,
    wake: Condvar,
}

impl Control {
    fn orders(&self) -> std::sync::MutexGuard<'_, Orders> {
        self.orders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The loading connection's handle on its worker. Dropped when that connection closes.
pub struct Worker {
    path: String,
    /// Starting workers is for the loading connection only, never for a worker's own connection.
    may_start: bool,
    running: Mutex<Option<Arc<Control>>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Worker {
    pub fn new(conn: &Connection, may_start: bool) -> Result<Worker> {
        let path: String = conn.query_row(
            "SELECT file FROM pragma_database_list WHERE name = 'main'",
            [],
            |r| r.get(0),
        )?;
        Ok(Worker {
            path,
            may_start,
            running: Mutex::new(None),
        })
    }

    /// The running worker's control, starting the worker if needed.
    fn control(&self) -> Result<Arc<Control>> {
        if !self.may_start {
            bail!("background work cannot be started from a background worker's own connection");
        }
        if self.path.is_empty() {
            bail!("background work needs a database file (this is an in-memory or temporary database)");
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(control) = running.as_ref() {
            return Ok(control.clone());
        }
        let control = Arc::new(Control::default());
        let (worker_control, path) = (control.clone(), self.path.clone());
        std::thread::Builder::new()
            .name("tether-worker".into())
            .spawn(move || {
                // A panic here must not reach the host; the worker just ends.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    work(&path, &worker_control)
                }));
            })
            .map_err(|e| Error::new(format!("cannot start the background worker: {e}")))?;
        *running = Some(control.clone());
        Ok(control)
    }

    pub fn stop(&self) -> bool {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(control) = &running {
            control.orders().stop = true;
            control.wake.notify_all();
        }
        running.is_some()
    }

    /// Starts the worker when the effective settings ask for auto_sync.
    pub fn start_if_auto(&self, settings: &Settings) -> Result<()> {
        if settings.flag("auto_sync") && self.may_start && !self.path.is_empty() {
            self.control()?;
        }
        Ok(())
    }
}

fn pending(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        &format!(
            "SELECT count(*) FROM tether_mutation_logs WHERE {}",
            crate::queue::PENDING
        ),
        [],
        |r| r.get(0),
    )
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

/// The worker thread: waits for orders, runs cycles, never returns an error to anyone.
fn work(path: &str, control: &Control) {
    let Ok(conn) = Connection::open(path) else {
        return;
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    if crate::register_background(&conn).is_err() {
        return;
    }
    let session = ConnectionSettings::default();
    // No version seen yet: the first pass checks for pending mutations, including those queued
    // before the worker started.
    let mut seen_version = -1;
    let mut last_auto: Option<Instant> = None;
    loop {
        let settings = Settings::load(&conn, &session).ok();
        let auto = settings.as_ref().is_some_and(|s| s.flag("auto_sync"));
        let throttle = Duration::from_secs(
            settings
                .as_ref()
                .map_or(0, |s| s.number("auto_sync_throttle")),
        );
        let next = {
            let mut orders = control.orders();
            if orders.stop {
                return;
            }
            if let Some(kind) = orders.dispatched.pop_front() {
                Some((kind, "dispatch"))
            } else if let Some((kind, every, due)) = orders.schedule {
                if Instant::now() >= due {
                    orders.schedule = Some((kind, every, Instant::now() + every));
                    Some((kind, "schedule"))
                } else {
                    None
                }
            } else {
                None
            }
        };
        if let Some((kind, trigger)) = next {
            // Errors are recorded in tether_sync_log; the next tick tries again.
            let _ = run_cycle(&conn, &session, kind, trigger);
            seen_version = data_version(&conn).unwrap_or(seen_version);
            continue;
        }
        if auto {
            let version = data_version(&conn).unwrap_or(seen_version);
            let throttled = last_auto.is_some_and(|at| at.elapsed() < throttle);
            if version != seen_version && !throttled {
                seen_version = version;
                if pending(&conn).unwrap_or(0) > 0 {
                    last_auto = Some(Instant::now());
                    let _ = run_cycle(&conn, &session, Cycle::Push, "auto");
                    seen_version = data_version(&conn).unwrap_or(seen_version);
                    continue;
                }
            }
        }
        let orders = control.orders();
        if orders.stop || !orders.dispatched.is_empty() {
            continue;
        }
        let until_schedule = orders
            .schedule
            .map(|(_, _, due)| due.saturating_duration_since(Instant::now()));
        let wait = match (auto, until_schedule) {
            (true, Some(d)) => d.min(POLL),
            (true, None) => POLL,
            (false, Some(d)) => d,
            (false, None) => Duration::from_secs(3600),
        };
        let _ = control.wake.wait_timeout(orders, wait);
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
            let control = dispatcher.control()?;
            control.orders().dispatched.push_back(kind);
            control.wake.notify_all();
            Ok(json!({"dispatched": kind.name()}).to_string())
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
            if !seconds.is_finite() || seconds < 0.0 {
                bail!("seconds must be 0 (cancel) or more, got {seconds}");
            }
            let control = scheduler.control()?;
            control.orders().schedule = (seconds > 0.0).then(|| {
                let every = Duration::from_secs_f64(seconds);
                (kind, every, Instant::now() + every)
            });
            control.wake.notify_all();
            Ok(if seconds > 0.0 {
                json!({"scheduled": kind.name(), "every": seconds})
            } else {
                json!({"scheduled": null})
            }
            .to_string())
        },
    )?;
    functions::register(
        conn,
        "tether_stop",
        &[0],
        Kind::Writes,
        move |_: &Context<'_>| Ok(json!({"stopped": worker.stop()}).to_string()),
    )
}
