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

use rusqlite::Connection;
use serde_json::json;

use super::{locked, Control, Dispatch, Schedule};
use crate::db::SameFile;
use crate::retry::Backoff;
use crate::settings::{ConnectionSettings, Settings};
use crate::sync::{run_background_cycle, Cycle};

/// How often auto_sync looks for commits.
const POLL: Duration = Duration::from_millis(200);
/// How often an idle worker reads its settings again.
const IDLE: Duration = Duration::from_secs(1);
/// How soon auto_sync tries again after a push skipped because another cycle held the lock.
const LOCK_HELD_RETRY: Duration = Duration::from_secs(2);
/// The longest auto_sync waits between retries of pending mutations after failures.
const AUTO_RETRY_CAP: Duration = Duration::from_secs(300);

fn open(target: &SameFile) -> Result<Connection, String> {
    let conn = target.open()?;
    let _ = conn.busy_timeout(Duration::from_secs(5));
    crate::register_background(&conn).map_err(|e| e.to_string())?;
    Ok(conn)
}

/// The thread's body: the worker is marked dead however it ends, so the next order starts a new
/// one.
pub(super) fn run(
    target: &SameFile,
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

/// What capture writes: rows the index may not hold yet (`crate::queue::NOT_INDEXED`) have one of
/// these statuses.
const CAPTURED: &str = "sync_status IN ('pending', 'unkeyed')";

/// Mutations the server has not taken: pending, failed and awaiting a retry, or waiting for
/// their keys (`{"keys": "on_sync"}`).
fn unsent(conn: &Connection, retry_limit: u64) -> i64 {
    conn.query_row(
        &format!(
            "SELECT (SELECT count(*) FROM tether_mutation_logs WHERE {})
                  + (SELECT count(*) FROM tether_mutation_logs WHERE {})
                  + (SELECT count(*) FROM tether_mutation_logs WHERE {} AND {CAPTURED})",
            crate::queue::unsent(retry_limit),
            crate::keys::UNKEYED,
            crate::queue::NOT_INDEXED,
        ),
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

fn sync_log_mark(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT coalesce(max(id), 0) FROM tether_sync_log",
        [],
        |r| r.get(0),
    )
    .unwrap_or(-1)
}

/// How a cycle ended.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Ran {
    Ok,
    /// Another cycle held the sync lock: nothing was done, nothing failed.
    Skipped,
    Failed,
    /// Failed before it could even record itself (the database locked for long): the order is
    /// not done and will be tried again.
    NotStarted,
}

/// Changes when something was captured: the newest log id with the number of pending mutations
/// (an id alone can come back after pruning removed the newest row).
fn queue_mark(conn: &Connection) -> (i64, i64) {
    conn.query_row(
        &format!(
            "SELECT coalesce(max(id), 0),
                    (SELECT count(*) FROM tether_mutation_logs WHERE {})
                  + (SELECT count(*) FROM tether_mutation_logs WHERE {} AND {CAPTURED})
               FROM tether_mutation_logs",
            crate::queue::PENDING_OR_UNKEYED,
            crate::queue::NOT_INDEXED,
        ),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap_or((-1, -1))
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
    keep_if_skipped: bool,
) -> Ran {
    // The loading connection's foreign keys, as they are now.
    let keys = if control.foreign_keys.load(Ordering::SeqCst) {
        "PRAGMA foreign_keys = ON"
    } else {
        "PRAGMA foreign_keys = OFF"
    };
    let _ = conn.execute_batch(keys);
    let logged_before = sync_log_mark(conn);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_background_cycle(conn, session, kind, trigger, keep_if_skipped)
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
            let skipped = result["skipped"] == true;
            health.failures = 0;
            health.last_cycle = Some(json!({"kind": kind.name(), "trigger": trigger, "at": at,
                                            "result": result}));
            if skipped {
                Ran::Skipped
            } else {
                Ran::Ok
            }
        }
        Err(error) => {
            health.failures = health.failures.saturating_add(1);
            health.last_error = Some(error.to_string());
            health.last_cycle = Some(json!({"kind": kind.name(), "trigger": trigger, "at": at,
                                            "error": error.to_string()}));
            drop(health);
            if sync_log_mark(conn) == logged_before {
                Ran::NotStarted
            } else {
                Ran::Failed
            }
        }
    }
}

/// Dispatches stopped before they ran: recorded, not silently dropped.
fn record_cancelled(conn: &Connection, kinds: &[Cycle], reason: &str) {
    for kind in kinds {
        let _ = crate::db::write_txn(conn, |conn| {
            conn.execute(
                "INSERT INTO tether_sync_log (kind, trigger, finished_at, error)
                 VALUES (?1, 'dispatch', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?2)",
                (kind.name(), reason),
            )?;
            Ok(())
        });
    }
}

/// How many times a dispatch that could not start is tried again.
pub(super) const DISPATCH_ATTEMPTS: u32 = 5;

fn work(conn: &Connection, session: &ConnectionSettings, control: &Control) {
    let mut seen_version = -1;
    // None: not looked yet, so mutations queued before the worker started are pushed.
    let mut seen_mark: Option<(i64, i64)> = None;
    // A push owed: the queue grew while throttled or backing off.
    let mut owed = false;
    let mut last_auto: Option<Instant> = None;
    let mut auto_backoff = Backoff::new(AUTO_RETRY_CAP);
    let mut schedule_backoff = Backoff::new(AUTO_RETRY_CAP);
    let mut dispatch_backoff = Backoff::new(Duration::from_secs(60));
    loop {
        let settings = Settings::load(conn, session).ok();
        let auto = settings.as_ref().is_some_and(|s| s.flag("auto_sync"));
        let retry_limit = settings
            .as_ref()
            .map_or(0, |s| s.number("max_retry_attempts"));
        let throttle = Duration::from_secs(
            settings
                .as_ref()
                .map_or(0, |s| s.number("auto_sync_throttle")),
        );
        let next = {
            let mut orders = control.orders();
            if orders.stop {
                let cancelled: Vec<Cycle> = orders.dispatched.drain(..).map(|d| d.kind).collect();
                let reason = orders.stop_reason;
                drop(orders);
                record_cancelled(conn, &cancelled, reason);
                return;
            }
            let now = Instant::now();
            let due = orders.dispatched.iter().position(|d| d.is_due(now));
            if let Some(dispatch) = due.and_then(|at| orders.dispatched.remove(at)) {
                Some((dispatch.kind, "dispatch", Some(dispatch)))
            } else {
                match orders.schedule {
                    Some(schedule) if now >= schedule.due => {
                        Some((schedule.kind, "schedule", None))
                    }
                    _ => None,
                }
            }
        };
        if let Some((kind, trigger, dispatch)) = next {
            let schedule_before = control.orders().schedule.map(|s| (s.kind, s.every));
            // A dispatch skipped again while it waits for the lock keeps no second log row.
            let keep_if_skipped = !dispatch.is_some_and(|d| d.skipped);
            let ran = cycle(conn, session, control, kind, trigger, keep_if_skipped);
            if let Some(dispatch) = dispatch {
                let again = match ran {
                    // Another cycle holds the lock (it may have pushed before this was asked
                    // for, or be a pull): soon, for as long as it holds it.
                    Ran::Skipped => Some(Dispatch {
                        due: Some(Instant::now() + LOCK_HELD_RETRY),
                        skipped: true,
                        ..dispatch
                    }),
                    Ran::NotStarted if dispatch.attempts_left > 1 => Some(Dispatch {
                        due: Some(Instant::now() + dispatch_backoff.failed()),
                        attempts_left: dispatch.attempts_left - 1,
                        ..dispatch
                    }),
                    _ => {
                        dispatch_backoff.succeeded();
                        None
                    }
                };
                if let Some(again) = again {
                    control.orders().dispatched.push_back(again);
                }
            }
            if trigger == "schedule" {
                let mut orders = control.orders();
                // Only the schedule that ran: one replaced meanwhile keeps its own timing.
                if let Some(schedule) = orders
                    .schedule
                    .as_mut()
                    .filter(|s| Some((s.kind, s.every)) == schedule_before)
                {
                    let wait = if matches!(ran, Ran::Ok | Ran::Skipped) {
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
            if version != seen_version {
                seen_version = version;
                let mark = queue_mark(conn);
                if seen_mark != Some(mark) {
                    seen_mark = Some(mark);
                    owed = true;
                }
            }
            let retry_at = locked(&control.health).auto_retry;
            // While backing off, new writes wait for the retry (the server is likely down).
            let backing_off = retry_at.is_some_and(|at| Instant::now() < at);
            let retry_due = retry_at.is_some_and(|at| Instant::now() >= at);
            let throttled = last_auto.is_some_and(|at| at.elapsed() < throttle);
            if (owed || retry_due) && !throttled && !backing_off {
                owed = false;
                if unsent(conn, retry_limit) > 0 {
                    last_auto = Some(Instant::now());
                    let ran = cycle(conn, session, control, Cycle::Push, "auto", false);
                    // Left unsent (the server down, or waiting behind a retry): later. Skipped
                    // for the lock: soon, without backing off (nothing failed; the other cycle
                    // may be a long pull that does not push these).
                    let retry = if ran == Ran::Ok && unsent(conn, retry_limit) == 0 {
                        auto_backoff.succeeded();
                        None
                    } else if ran == Ran::Skipped && auto_backoff.failures() == 0 {
                        Some(Instant::now() + LOCK_HELD_RETRY)
                    } else {
                        // Failing (skipped ones too, while its own pushes fail: workers on one
                        // file taking turns must not skip each other's backoff).
                        Some(Instant::now() + auto_backoff.failed())
                    };
                    locked(&control.health).auto_retry = retry;
                    seen_mark = Some(queue_mark(conn));
                    continue;
                }
                auto_backoff.succeeded();
                locked(&control.health).auto_retry = None;
            }
        } else {
            locked(&control.health).auto_retry = None;
        }
        let orders = control.orders();
        let now = Instant::now();
        if orders.stop || orders.dispatched.iter().any(|d| d.is_due(now)) {
            continue;
        }
        let until_schedule = orders
            .schedule
            .map(|s: Schedule| s.due.saturating_duration_since(now));
        let until_retry = orders
            .dispatched
            .iter()
            .filter_map(|d| d.due)
            .map(|at| at.saturating_duration_since(now))
            .min();
        let wait = match (auto, until_schedule) {
            (true, Some(d)) => d.min(POLL),
            (true, None) => POLL,
            (false, Some(d)) => d.min(IDLE),
            // Idle: auto_sync may be turned on by another connection or process.
            (false, None) => IDLE,
        };
        let wait = until_retry.map_or(wait, |r| wait.min(r));
        let _ = control.wake.wait_timeout(orders, wait);
    }
}
