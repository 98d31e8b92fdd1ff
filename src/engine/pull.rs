//! Pull, sans IO: [`request_body`] says where this client stands, [`apply_page`] applies one
//! page of server snapshots and its cursor in one transaction.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::bail;
use crate::engine::apply::{self, Applier, Outcome, ServerRow};
use crate::engine::{excerpt, quarantine, PullPage};
use crate::error::{Error, Result};
use crate::tracking::{tracked_tables, TrackedTable};

pub fn stored_cursor(conn: &Connection) -> Result<Option<i64>> {
    Ok(state(conn, "last_sync_cursor")?.and_then(|t| t.parse().ok()))
}

fn state(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM tether_sync_state WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// The models and synced columns snapshots are applied for, as stored beside the cursor.
fn coverage(tables: &[TrackedTable]) -> Coverage {
    tables
        .iter()
        .map(|t| {
            let columns = t.synced_columns.iter().cloned().collect();
            (t.model.clone(), columns)
        })
        .collect()
}

/// The cursor to pull from: the stored one, unless a model or a synced column is tracked now
/// that was not when the rows before it were applied. Then from the start (`None`): the server
/// only sends rows changed after the cursor, and rows of a newly tracked model or the values of a
/// newly synced column would never arrive otherwise.
pub fn effective_cursor(conn: &Connection, tables: &[TrackedTable]) -> Result<Option<i64>> {
    let Some(cursor) = stored_cursor(conn)? else {
        return Ok(None);
    };
    let Some(stored) = state(conn, "cursor_covers")? else {
        // Set by a tether that did not record what it covered: assume all it tracks now.
        return Ok(Some(cursor));
    };
    let covered: BTreeMap<String, BTreeSet<String>> =
        serde_json::from_str(&stored).unwrap_or_default();
    let covers_all = coverage(tables).iter().all(|(model, columns)| {
        covered
            .get(model)
            .is_some_and(|known| columns.is_subset(known))
    });
    Ok(covers_all.then_some(cursor))
}

type Coverage = BTreeMap<String, BTreeSet<String>>;

/// What the requests not answered yet covered (see [`request_body`]).
fn requested_covers(conn: &Connection) -> Result<Option<Coverage>> {
    Ok(state(conn, "pull_request_covers")?.and_then(|text| serde_json::from_str(&text).ok()))
}

/// The earliest cursor a request not answered yet asked from (`i64::MIN`: the start).
fn requested_cursor(conn: &Connection) -> Result<Option<i64>> {
    Ok(state(conn, "pull_request_cursor")?.and_then(|text| text.parse().ok()))
}

/// What both coverages hold.
fn intersection(a: &Coverage, b: &Coverage) -> Coverage {
    a.iter()
        .filter_map(|(model, columns)| {
            let shared: BTreeSet<String> = b.get(model)?.intersection(columns).cloned().collect();
            Some((model.clone(), shared))
        })
        .collect()
}

/// `{"client_id", "last_sync_cursor", ["limit"]}`: the cursor always present (null at first).
/// Notes what the request covers (stored only when it changed): a model tracked while the answer
/// is on its way was not asked for from the start, and the answer must not claim it was.
pub fn request_body(conn: &Connection, client_id: &str, page_size: Option<u64>) -> Result<String> {
    let tables = tracked_tables(conn)?;
    let cursor = effective_cursor(conn, &tables)?;
    // A request whose answer has not been applied yet may still be answered: note only what
    // every such request covered.
    let mut covers = coverage(&tables);
    if let Some(pending) = requested_covers(conn)? {
        covers = intersection(&pending, &covers);
    }
    let covers = serde_json::to_string(&covers)?;
    // And the earliest cursor such a request asked from (JSON: null is the start).
    let asked_from = match requested_cursor(conn)? {
        Some(earlier) => earlier.min(cursor.map_or(i64::MIN, |c| c)),
        None => cursor.map_or(i64::MIN, |c| c),
    };
    let asked_from = asked_from.to_string();
    if state(conn, "pull_request_covers")?.as_deref() != Some(covers.as_str())
        || state(conn, "pull_request_cursor")?.as_deref() != Some(asked_from.as_str())
    {
        crate::db::write_txn(conn, |conn| {
            set_state(conn, "pull_request_covers", Some(&covers))?;
            set_state(conn, "pull_request_cursor", Some(&asked_from))
        })?;
    }
    let mut body = json!({"client_id": client_id, "last_sync_cursor": cursor});
    if let Some(limit) = page_size {
        body["limit"] = json!(limit);
    }
    Ok(body.to_string())
}

/// Moves the stored cursor back to `to` (`None`: the start) if it is past it, so the next pull
/// sends those rows again.
pub fn rewind_cursor(conn: &Connection, to: Option<i64>) -> Result<()> {
    let back = match (stored_cursor(conn)?, to) {
        (None, _) => return Ok(()),
        (Some(now), Some(to)) if now <= to => return Ok(()),
        (_, to) => to.map(|c| c.to_string()),
    };
    set_state(conn, "last_sync_cursor", back.as_deref())
}

fn set_state(conn: &Connection, key: &str, value: Option<&str>) -> Result<()> {
    match value {
        Some(value) => conn.execute(
            "INSERT INTO tether_sync_state (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = CURRENT_TIMESTAMP",
            (key, value),
        )?,
        None => conn.execute("DELETE FROM tether_sync_state WHERE key = ?1", [key])?,
    };
    Ok(())
}

/// Snapshots applied per write transaction: keeps the write lock short however large the page.
const ROWS_PER_TRANSACTION: usize = 500;

/// Short transactions are not enough for another connection that waits to write: SQLite's
/// default busy handler (what `sqlite3_busy_timeout` installs, as most hosts and drivers do)
/// sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, … ms between retries, so its retries land in the
/// moment between two transactions only by chance, and it waited 1–2 s for a 100,000-row pull
/// (BENCHMARKS.md, "Lock hold"). Its retries fall at 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, …
/// ms; modulo 80 ms no two are more than 15 ms apart, so leaving the lock free for 30 ms after
/// every 50 ms of holding it catches one whatever the phase: it gets in within about 80 ms. A
/// long pull takes about half as long again.
const HOLD_BEFORE_PAUSE: Duration = Duration::from_millis(50);
const PAUSE: Duration = Duration::from_millis(30);

thread_local! {
    /// This thread's time holding the write lock to apply since the lock was last free for a
    /// [`PAUSE`], and when it last let it go.
    static HELD_SINCE_PAUSE: std::cell::Cell<Option<(Duration, Instant)>> =
        const { std::cell::Cell::new(None) };
}

/// After a chunk's transaction (begun at `chunk_started`; the write lock is free now): pauses
/// once this thread has held the lock for [`HOLD_BEFORE_PAUSE`] without a gap of [`PAUSE`] (a
/// slow network's wait for the next page is such a gap, so is the quiet before a new pull).
fn let_waiting_writers_in(chunk_started: Instant) {
    let now = Instant::now();
    HELD_SINCE_PAUSE.with(|state| {
        let mut held = match state.get() {
            Some((held, released)) if chunk_started.duration_since(released) < PAUSE => held,
            _ => Duration::ZERO,
        };
        held += now.duration_since(chunk_started);
        if held >= HOLD_BEFORE_PAUSE {
            std::thread::sleep(PAUSE);
            held = Duration::ZERO;
        }
        state.set(Some((held, Instant::now())));
    });
}

/// A pull answer as read: the snapshots stay raw JSON text until applied, so memory follows the
/// answer's text plus one snapshot, not a parsed tree of the whole page.
#[derive(serde::Deserialize)]
struct Page<'a> {
    #[serde(borrow, default)]
    snapshots: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    new_sync_cursor: Option<Value>,
    #[serde(default)]
    has_more: Option<Value>,
}

/// Applies one page, in transactions of at most [`ROWS_PER_TRANSACTION`] snapshots; the cursor
/// commits with the page's last rows, so it never passes rows that were not applied (a crash
/// midway re-applies the page, which is idempotent). A snapshot the database refuses (a
/// constraint, a parent not there yet) goes to the quarantine, committed with the rows, and is
/// tried again at the end of the page and of every pull; any other failure (disk full, I/O,
/// read-only, interrupted) stops the page with the cursor unmoved and is returned. Snapshots of
/// models not tracked are counted in `pull_errors` (tracking one later pulls from the start). A
/// row that still has unsent local changes is not overwritten: its snapshot waits until the push
/// settles (`apply::settle_deferred`). Refuses, changing nothing, a page that says `has_more`
/// without moving the cursor forward.
/// A sync cycle's lease is renewed inside each of those transactions (see
/// [`crate::engine::lock::Lease::fence`]): a page outlasting a lease taken over meanwhile stops.
pub fn apply_page(conn: &Connection, body: &str) -> Result<PullPage> {
    let page: Page = serde_json::from_str(body).map_err(|e| {
        let what = if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() {
            format!("pull answer is not a JSON object of the expected shape ({e})")
        } else {
            "pull answer is not JSON".to_string()
        };
        Error::new(format!("{what}: {}", excerpt(body)))
    })?;
    // Every key is optional (`{}` is an empty page), but an object that has other keys and none
    // of a page's is someone else's answer (an auth layer's or a proxy's error in a 200).
    let someone_elses = page.snapshots.is_none()
        && page.new_sync_cursor.is_none()
        && page.has_more.is_none()
        && serde_json::from_str::<BTreeMap<String, serde::de::IgnoredAny>>(body)
            .is_ok_and(|keys| !keys.is_empty());
    if someone_elses {
        bail!(
            "pull answer has neither \"snapshots\" nor \"new_sync_cursor\": {}",
            excerpt(body)
        );
    }
    let snapshots = page.snapshots.unwrap_or_default();
    let new_cursor = match page.new_sync_cursor {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            Error::new(format!(
                "pull answer: \"new_sync_cursor\" must be an integer, got {}",
                excerpt(&v.to_string())
            ))
        })?),
    };
    let has_more = match page.has_more {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(other) => bail!("pull answer: \"has_more\" must be true or false, got {other}"),
    };
    let tables = tracked_tables(conn)?;
    let old_cursor = effective_cursor(conn, &tables)?;
    if has_more
        && !matches!((old_cursor, new_cursor), (_, Some(new)) if old_cursor.is_none_or(|old| new > old))
    {
        bail!(
            "the server says has_more but the cursor did not advance ({} -> {}); stopping instead of asking for the same page forever",
            old_cursor.map_or("null".into(), |c| c.to_string()),
            new_cursor.map_or("null".into(), |c| c.to_string())
        );
    }
    // What the request covered, as `request_body` noted it. Unknown (an answer with no request
    // before it): what the stored cursor covers and is still tracked, claiming nothing new.
    let requested: Coverage = match requested_covers(conn)? {
        Some(requested) => requested,
        None => {
            let current = coverage(&tables);
            match state(conn, "cursor_covers")?.and_then(|t| serde_json::from_str(&t).ok()) {
                Some(stored) if old_cursor.is_none() && stored_cursor(conn)?.is_some() => {
                    intersection(&stored, &current)
                }
                _ => current,
            }
        }
    };
    // The cursor went back below what the request asked from (a push answer rewound it while
    // the request was out): the rows in between must come again, so this page's rows apply but
    // the cursor stays where it was sent back to.
    let asked_from = requested_cursor(conn)?;
    let rewound = asked_from
        .is_some_and(|asked| stored_cursor(conn).ok().flatten().map_or(i64::MIN, |c| c) < asked);
    let cursor_before = match asked_from {
        Some(i64::MIN) => None,
        Some(asked) => Some(asked),
        None => old_cursor,
    };
    let next_cursor = new_cursor.or(old_cursor).map(|c| c.to_string());
    let mut out = PullPage {
        has_more,
        cursor: new_cursor.or(old_cursor),
        ..PullPage::default()
    };
    let chunks: Vec<&[&RawValue]> = if snapshots.is_empty() {
        vec![&[]]
    } else {
        snapshots.chunks(ROWS_PER_TRANSACTION).collect()
    };
    let mut quarantined: Vec<String> = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        if index > 0 {
            crate::debug::kill_point("pull-between-chunks");
        }
        let chunk_started = Instant::now();
        let (counts, entities) = apply::in_transaction(conn, |conn, applier| {
            let mut counts = PullPage::default();
            let mut entities = Vec::new();
            let mut seen = SeenColumns::new();
            for raw in *chunk {
                apply_snapshot(
                    conn,
                    applier,
                    raw,
                    cursor_before,
                    &mut counts,
                    (&mut entities, &mut seen),
                )?;
            }
            for (model, columns) in &seen {
                crate::tracking::learn_server_columns(conn, model, columns)?;
            }
            crate::debug::kill_point("pull-inside-chunk");
            if index + 1 == chunks.len() {
                if !rewound {
                    // Only what was both asked for and applied (a table untracked meanwhile was
                    // not).
                    let covers = intersection(&requested, &coverage(&applier.tables()));
                    set_state(conn, "last_sync_cursor", next_cursor.as_deref())?;
                    set_state(
                        conn,
                        "cursor_covers",
                        Some(&serde_json::to_string(&covers)?),
                    )?;
                }
                set_state(conn, "pull_request_covers", None)?;
                set_state(conn, "pull_request_cursor", None)?;
                set_state(conn, "last_sync_at", Some(&crate::engine::now_iso(conn)?))?;
            }
            Ok((counts, entities))
        })?;
        let_waiting_writers_in(chunk_started);
        out.pulled += counts.pulled;
        out.pull_errors += counts.pull_errors;
        crate::engine::add_reasons(&mut out.error_reasons, &counts.error_reasons);
        out.kept_local += counts.kept_local;
        out.quarantined += counts.quarantined;
        quarantined.extend(entities);
    }
    // A child that came before its parent applies now that the page is in; at the end of a pull
    // everything quarantined is tried again.
    let retried = if has_more {
        quarantine::retry(conn, Some(&quarantined))?
    } else {
        quarantine::retry(conn, None)?
    };
    out.recovered = retried;
    Ok(out)
}

/// The columns snapshots carried, by model: what the server echoes back (`tether_status()` names
/// synced columns it never does).
type SeenColumns = BTreeMap<String, std::collections::BTreeSet<String>>;

fn apply_snapshot(
    conn: &Connection,
    applier: &Applier,
    raw: &RawValue,
    cursor_before: Option<i64>,
    out: &mut PullPage,
    (quarantined, seen): (&mut Vec<String>, &mut SeenColumns),
) -> Result<()> {
    let snapshot: Value = serde_json::from_str(raw.get())?;
    let entity = snapshot.get("entity_id").and_then(Value::as_str);
    let model = snapshot.get("model").and_then(Value::as_str);
    let payload = snapshot.get("payload").and_then(apply::payload_object);
    let (Some(entity), Some(model), Some(payload)) = (entity, model, payload) else {
        out.error(
            "not a snapshot (entity_id, model or payload missing)",
            model.unwrap_or("?"),
        );
        return Ok(());
    };
    let operation = match snapshot.get("operation").and_then(Value::as_str) {
        Some("delete") => "delete",
        _ => "upsert",
    };
    if operation == "upsert" {
        // Per snapshot: allocate only for a model or column not seen yet in this chunk.
        if !seen.contains_key(model) {
            seen.insert(model.to_string(), Default::default());
        }
        let known = seen.get_mut(model).expect("just inserted");
        for column in payload.keys() {
            if !known.contains(column) {
                known.insert(column.clone());
            }
        }
    }
    let row = ServerRow {
        entity,
        model,
        operation,
        payload: &payload,
        cursor_before,
    };
    match applier.apply(conn, &row, "pull")? {
        Outcome::Applied => out.pulled += 1,
        Outcome::Deferred => out.kept_local += 1,
        Outcome::UnknownModel => out.error("unknown model", model),
        Outcome::Quarantined => {
            out.error("refused by the database (quarantined)", model);
            out.quarantined += 1;
            quarantined.push(entity.to_string());
        }
    }
    Ok(())
}
