//! tether: a SQLite extension that makes any database an offline-first client of a Tether
//! sync server. Each module registers the SQL functions it implements.
//!
//! - [`schema`] — internal tables, migrated forward on load (`sql/migrations`).
//! - [`settings`] — `tether_config`.
//! - [`identity`] — ULIDs (`tether_ulid`) and the client id.
//! - [`tracking`] — `tether_track`, `tether_untrack` ([`naming`] gives Laravel model names).
//! - [`shape`] — warnings about table shapes that sync badly, found at tracking time.
//! - [`table_info`] — what a user table looks like: columns, row locator, primary key.
//! - [`triggers`] — plain-SQL capture triggers (`sql/triggers`).
//! - [`row_keys`] — each row's sync key by primary key, so keys survive REPLACE and rebuilds.
//! - [`reconcile`] — tracking follows renames and rebuilds made by other tools.
//! - [`keys`] — sync keys given when a sync starts, for tables tracked with `{"keys": "on_sync"}`.
//! - [`queue`] — the mutation queue; identities given when first sent.
//! - [`capture`] — applying server state without capturing it.
//! - [`engine`] — the sync engine, sans IO: next request, apply answer.
//! - [`sync`] — `tether_sync/push/pull` over the HTTP transport, and the sans-IO functions.
//! - [`background`] — `tether_dispatch`, `tether_schedule`, `tether_stop`, auto_sync.
//! - [`retry`] — the one backoff policy of background work and `tether watch`.
//! - [`resolve`] — `tether_retry`, `tether_discard`: settling what the server refused.
//! - [`status`] — `tether_status`.
//! - [`sql`] — the one place identifiers and literals are quoted.
use std::sync::Arc;

use rusqlite::Connection;

pub mod background;
pub mod capture;
pub mod db;
mod debug;
pub mod engine;
pub mod error;
mod functions;
pub mod identity;
pub mod keys;
pub mod naming;
pub mod queue;
pub mod reconcile;
pub mod resolve;
pub mod retry;
pub mod row_keys;
pub mod schema;
pub mod settings;
pub mod shape;
pub mod sql;
pub mod status;
pub mod sync;
pub mod table_info;
pub mod tracking;
mod transport;
pub mod triggers;

#[cfg(feature = "loadable")]
mod entry;

pub use error::{Error, Result};

/// Every SQL function tether registers, with its argument counts: the promised surface.
pub const SQL_FUNCTIONS: &[(&str, &[i32])] = &[
    ("tether_config", &[0, 1, 2, 3]),
    ("tether_dispatch", &[1]),
    ("tether_pull", &[0]),
    ("tether_pull_request", &[0]),
    ("tether_discard", &[1, 2]),
    ("tether_pull_response", &[1]),
    ("tether_push", &[0]),
    ("tether_push_request", &[0]),
    ("tether_push_response", &[1]),
    ("tether_retry", &[0, 1, 2]),
    ("tether_schedule", &[2]),
    ("tether_status", &[0]),
    ("tether_stop", &[0]),
    ("tether_sync", &[0]),
    ("tether_track", &[1, 2]),
    ("tether_ulid", &[0]),
    ("tether_untrack", &[1]),
    ("tether_version", &[0]),
];

/// Sets tether up on a connection: checks the host, migrates the internal tables, registers
/// the SQL functions. The loadable entry point calls this; hosts linking tether statically
/// call it on each connection they open.
pub fn register(conn: &Connection) -> Result<()> {
    register_as(conn, true)
}

/// [`register`] for tools that run their own cycles (the `tether` command line): no background
/// worker is started on the connection, whatever auto_sync says.
pub fn register_without_workers(conn: &Connection) -> Result<()> {
    register_as(conn, false)
}

/// The same for a background worker's own connection, which never starts workers itself.
pub(crate) fn register_background(conn: &Connection) -> Result<()> {
    register_as(conn, false)
}

/// While loading reads and maybe migrates the internal tables: wait for other connections'
/// brief locks (a worker's commit, a checkpoint) instead of failing at once on a connection
/// without a busy timeout. The host's own setting is put back.
struct PatientWhileLoading<'a> {
    conn: &'a Connection,
    before: Option<i64>,
}

impl<'a> PatientWhileLoading<'a> {
    fn new(conn: &'a Connection) -> Self {
        let before: Option<i64> = conn
            .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .ok()
            .filter(|ms| *ms == 0);
        if before.is_some() {
            let _ = conn.execute_batch("PRAGMA busy_timeout = 5000");
        }
        PatientWhileLoading { conn, before }
    }
}

impl Drop for PatientWhileLoading<'_> {
    fn drop(&mut self) {
        if let Some(ms) = self.before {
            let _ = self
                .conn
                .execute_batch(&format!("PRAGMA busy_timeout = {ms}"));
        }
    }
}

fn register_as(conn: &Connection, may_start_workers: bool) -> Result<()> {
    let _patient = PatientWhileLoading::new(conn);
    // Everything that can refuse loading comes first, while nothing of ours is registered on the
    // connection: SQLite unloads the library when loading fails, and a function registered
    // before that would point into unmapped code and crash the host when the connection closes.
    schema::check_host(conn)?;
    schema::migrate(conn)?;
    identity::ensure_generated_client_id(conn)?;
    schema::clear_stray_capture_suppression(conn)?;
    let session = Arc::new(settings::ConnectionSettings::default());
    let settings = settings::Settings::load(conn, &session)?;
    let worker = Arc::new(background::Worker::new(
        conn,
        session.clone(),
        may_start_workers,
    )?);
    // Loaded again on the same connection (hosts that load with `SELECT load_extension(...)` on
    // every checkout): the functions are there, and replacing them is refused while the loading
    // statement runs. The checks above ran again; registering again is not needed.
    if already_registered(conn) {
        return Ok(());
    }

    // Registering can still fail half-way (SQLite refuses to replace a function while a
    // statement runs) or panic: then the library must stay mapped.
    let failure = KeepLoadedOnFailure::armed();
    identity::register(conn)?;
    let starter = worker.clone();
    settings::register(
        conn,
        session.clone(),
        Arc::new(move |conn, settings| starter.start_if_auto(conn, settings)),
    )?;
    tracking::register(conn, session.clone())?;
    resolve::register(conn, session.clone())?;
    status::register(conn, session.clone(), worker.clone())?;
    sync::register(
        conn,
        session.clone(),
        Arc::new(sync::EngineState::default()),
    )?;
    background::register(conn, worker.clone())?;
    // A repair that cannot run now (a read-only connection, a long-held lock) must not make the
    // extension unloadable: every sync and status tries again and reports what stops it. (After
    // registering: repairs give rows keys with `tether_ulid()`.)
    if let Err(error) = session.schema_watch().reconcile(conn, &settings) {
        debug::log(&settings, 1, || format!("repair on load failed: {error}"));
    }
    worker.start_if_auto(conn, &settings)?;
    failure.disarm();
    Ok(())
}

/// Whether this build of tether is registered on `conn` already: `tether_version()` exists and
/// gives this build's version. Looked up in `pragma_function_list` first, so nothing is run that
/// fails on a connection without it (and a SQLite without that pragma registers as before).
fn already_registered(conn: &Connection) -> bool {
    let listed = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_function_list WHERE name = 'tether_version')",
            [],
            |r| r.get::<_, bool>(0),
        )
        .unwrap_or(false);
    listed
        && conn
            .query_row("SELECT tether_version()", [], |r| r.get::<_, String>(0))
            .is_ok_and(|version| version == env!("CARGO_PKG_VERSION"))
}

/// Dropped armed (an error returned or a panic unwinding after something was registered), keeps
/// the loadable library mapped for the rest of the process, so nothing registered dangles.
struct KeepLoadedOnFailure {
    armed: bool,
}

impl KeepLoadedOnFailure {
    fn armed() -> Self {
        KeepLoadedOnFailure { armed: true }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for KeepLoadedOnFailure {
    fn drop(&mut self) {
        if self.armed {
            // Linked statically, tether is part of the host and never unloaded.
            #[cfg(feature = "loadable")]
            entry::keep_library_loaded();
        }
    }
}
