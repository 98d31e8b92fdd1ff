//! The worker thread: waits for orders, runs cycles, never returns an error to anyone (each
//! cycle records its own in `tether_sync_log`; its health is kept for `tether_status()`).
//!
//! auto_sync polls `PRAGMA data_version` (it changes for commits of every other connection: the
//! loading one and other processes alike; a commit hook would replace one the host may have
//! installed) and pushes only when the queue gained a mutation: tether's own bookkeeping (the
//! sync log, the sync state, the lock) changes the data version but never the queue, so workers
//! on one file never wake each other up. Pending mutations left after a failed or partial push
//! are retried with the backoff.
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use super::{locked, Control, Schedule, Target};
use crate::retry::Backoff;
use crate::settings::{ConnectionSettings, Settings};
use crate::sync::{run_cycle, Cycle};

/// How often auto_sync looks for commits.
const POLL: Duration = Duration::from_millis(200);
/// How often an idle worker reads its settings again.
const IDLE: Duration = Duration::from_secs(1);
/// The longest auto_sync waits between retries of pending mutations after failures.
const AUTO_RETRY_CAP: Duration = Duration::from_secs(300);

fn open(target: &Target) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match &target.vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(&target.path, flags, vfs.as_str()),
        None => Connection::open_with_flags(&target.path, flags),
    }
    .map_err(|e| format!("cannot open {:?}: {e}", target.path))?;
    let _ = conn.busy_timeout(Duration::from_secs(5));
    if target.foreign_keys {
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .map_err(|e| e.to_string())?;
    }
    crate::register_background(&conn).map_err(|e| e.to_string())?;
    Ok(conn)
}

/// The thread's body: the worker is marked dead however it ends, so the next order starts a new
/// one.
pub(super) fn run(
    target: &Target,
    session: &ConnectionSettings,
    control: &Control,
    ready: Sender<Result<(), String>>,
) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match open(target) {
        Ok(conn) => {
            let _ = ready.send(Ok(()));
            work(&conn, session, control);
        }
        Err(reason) => {
            let _ = ready.send(Err(reason));
        }
    }));
    if let Err(panic) = outcome {
        locked(&control.health).last_error = Some(format!(
            "the worker stopped: internal error: {}",
            crate::functions::panic_message(&panic)
        ));
    }
    control.alive.store(false, Ordering::SeqCst);
    let (exited, done) = &control.exited;
    *locked(exited) = true;
    done.notify_all();
}

fn pending(conn: &Connection) -> i64 {
    conn.query_row(
        &format!(
            "SELECT count(*) FROM tether_mutation_logs WHERE {}",
            crate::queue::PENDING
        ),
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// The newest mutation's log id: it grows only when something was captured.
fn queue_mark(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT coalesce(max(id), 0) FROM tether_mutation_logs",
        [],
        |r| r.get(0),
    )
    .unwrap_or(-1)
}

fn data_version(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .unwrap_or(-1)
}

/// Runs one cycle (a panic in it is an error like any other) and keeps what happened.
fn cycle(
    conn: &Connection,
    session: &ConnectionSettings,
    control: &Control,
    kind: Cycle,
    trigger: &str,
) -> bool {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_cycle(conn, session, kind, trigger)
    }))
    .unwrap_or_else(|panic| {
        Err(crate::Error::new(format!(
            "internal error: {}",
            crate::functions::panic_message(&panic)
        )))
    });
    let at = crate::engine::now_iso(conn).ok();
    let mut health = locked(&control.health);
    match outcome {
        Ok(result) => {
            health.failures = 0;
            health.last_cycle = Some(json!({"kind": kind.name(), "trigger": trigger, "at": at,
                                            "result": result}));
            true
        }
        Err(error) => {
            health.failures = health.failures.saturating_add(1);
            health.last_error = Some(error.to_string());
            health.last_cycle = Some(json!({"kind": kind.name(), "trigger": trigger, "at": at,
                                            "error": error.to_string()}));
            false
        }
    }
}

/// Dispatches the loading connection closed before they ran: recorded, not silently dropped.
fn record_cancelled(conn: &Connection, kinds: &[Cycle]) {
    for kind in kinds {
        let _ = crate::db::write_txn(conn, |conn| {
            conn.execute(
                "INSERT INTO tether_sync_log (kind, trigger, finished_at, error)
                 VALUES (?1, 'dispatch', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                         'cancelled: the connection that dispatched it closed before it ran')",
                [kind.name()],
            )?;
            Ok(())
        });
    }
}

fn work(conn: &Connection, session: &ConnectionSettings, control: &Control) {
    let mut seen_version = -1;
    // None: not looked yet, so mutations queued before the worker started are pushed.
    let mut seen_mark: Option<i64> = None;
    let mut last_auto: Option<Instant> = None;
    let mut auto_backoff = Backoff::new(AUTO_RETRY_CAP);
    let mut schedule_backoff = Backoff::new(AUTO_RETRY_CAP);
    loop {
        let settings = Settings::load(conn, session).ok();
        let auto = settings.as_ref().is_some_and(|s| s.flag("auto_sync"));
        let throttle = Duration::from_secs(
            settings
                .as_ref()
                .map_or(0, |s| s.number("auto_sync_throttle")),
        );
        let next = {
            let mut orders = control.orders();
            if orders.stop {
                let cancelled: Vec<Cycle> = orders.dispatched.drain(..).collect();
                drop(orders);
                record_cancelled(conn, &cancelled);
                return;
            }
            if let Some(kind) = orders.dispatched.pop_front() {
                Some((kind, "dispatch"))
            } else {
                match orders.schedule {
                    Some(schedule) if Instant::now() >= schedule.due => {
                        Some((schedule.kind, "schedule"))
                    }
                    _ => None,
                }
            }
        };
        if let Some((kind, trigger)) = next {
            let ok = cycle(conn, session, control, kind, trigger);
            if trigger == "schedule" {
                let mut orders = control.orders();
                if let Some(schedule) = orders.schedule.as_mut() {
                    let wait = if ok {
                        schedule_backoff.succeeded();
                        schedule.every
                    } else {
                        schedule_backoff.failed().min(schedule.every)
                    };
                    schedule.due = Instant::now() + wait;
                }
            }
            continue;
        }
        if auto {
            let version = data_version(conn);
            let mut want = false;
            if version != seen_version {
                seen_version = version;
                let mark = queue_mark(conn);
                if seen_mark != Some(mark) {
                    seen_mark = Some(mark);
                    want = true;
                }
            }
            let retry_due = locked(&control.health)
                .auto_retry
                .is_some_and(|at| Instant::now() >= at);
            want |= retry_due;
            let throttled = last_auto.is_some_and(|at| at.elapsed() < throttle);
            if want && !throttled && pending(conn) > 0 {
                last_auto = Some(Instant::now());
                let ok = cycle(conn, session, control, Cycle::Push, "auto");
                // Left pending (the server down, or mutations waiting behind a retry): later.
                let retry = if ok && pending(conn) == 0 {
                    auto_backoff.succeeded();
                    None
                } else {
                    Some(Instant::now() + auto_backoff.failed())
                };
                locked(&control.health).auto_retry = retry;
                seen_mark = Some(queue_mark(conn));
                continue;
            } else if want && !throttled {
                locked(&control.health).auto_retry = None;
            }
        }
        let orders = control.orders();
        if orders.stop || !orders.dispatched.is_empty() {
            continue;
        }
        let until_schedule = orders
            .schedule
            .map(|s: Schedule| s.due.saturating_duration_since(Instant::now()));
        let wait = match (auto, until_schedule) {
            (true, Some(d)) => d.min(POLL),
            (true, None) => POLL,
            (false, Some(d)) => d.min(IDLE),
            // Idle: auto_sync may be turned on by another connection or process.
            (false, None) => IDLE,
        };
        let _ = control.wake.wait_timeout(orders, wait);
    }
}
