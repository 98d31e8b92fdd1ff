//! The internal schema: versioned migrations from `sql/migrations`, applied forward on load.
use rusqlite::{Connection, ErrorCode, OptionalExtension, MAIN_DB};

use crate::bail;
use crate::db::{schema_txn, write_txn};
use crate::error::{Error, Result};

pub(crate) struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The schema version this build writes.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The oldest SQLite tether runs on: RETURNING (used by tracking and the sync engine) arrived in
/// 3.35.0; DIRECTONLY and INNOCUOUS function flags in 3.31.0.
pub const MIN_SQLITE_VERSION: i32 = 3_035_000;

/// Refuses, with the real cause, what tether cannot work with: a SQLite too old, a file that
/// is not a database (or cannot be read), a SQLite without JSON functions. Reads only.
pub fn check_host(conn: &Connection) -> Result<()> {
    if rusqlite::version_number() < MIN_SQLITE_VERSION {
        bail!(
            "needs SQLite 3.35.0 or newer (for RETURNING); this host has {}",
            rusqlite::version()
        );
    }
    // The file first: when it is not a database (or is encrypted, locked, unreadable) every
    // statement fails, and SQLite's own words must be what is reported, not a missing feature.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| Error::from(e).context("cannot read this database"))?;
    match conn.query_row("SELECT json_object('ok', 1)", [], |r| r.get::<_, String>(0)) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("no such function: json_object") => bail!(
            "needs SQLite's JSON functions (built in since 3.38.0), and this SQLite {} was built without them",
            rusqlite::version()
        ),
        Err(e) => Err(Error::from(e).context("cannot check for SQLite's JSON functions")),
    }
}

/// Every internal table the migrations up to [`latest_version`] create (README, "Internal
/// tables"); a unit test keeps it equal to what `sql/migrations` creates.
pub const INTERNAL_TABLES: &[&str] = &[
    "tether_mutation_logs",
    "tether_sync_state",
    "tether_settings",
    "tether_tracked_tables",
    "tether_row_keys",
    "tether_records_dropped",
    "tether_replaced",
    "tether_entity_versions",
    "tether_capture_suppressed",
    "tether_deferred_snapshots",
    "tether_locks",
    "tether_quarantine",
    "tether_diverged",
    "tether_migrations",
    "tether_sync_log",
];

/// Brings the internal tables up to [`latest_version`]. Cheap when already current: it only
/// reads, and refuses a database set up by a newer tether, or one whose recorded schema lacks an
/// internal table, before writing anything. Migrating writes, so it is refused with the cause on
/// a connection that cannot write and inside the host's transaction (whose rollback would take
/// the tables away again, leaving tether's functions registered without them).
pub fn migrate(conn: &Connection) -> Result<()> {
    let applied = applied_version(conn)?;
    refuse_newer(applied)?;
    if applied == latest_version() {
        return refuse_missing_tables(conn, applied);
    }
    if let Some(cause) = cannot_write(conn)? {
        return Err(cannot_write_error(cause));
    }
    if !conn.is_autocommit() {
        bail!(
            "must create or upgrade its internal tables (schema {}) outside a transaction, and this connection is inside one: load tether before BEGIN or after COMMIT (once per database is enough; later loads only read)",
            latest_version()
        );
    }
    schema_txn(conn, |conn| {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS tether_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        )?;
        // Read again under the write lock: another process may have migrated meanwhile.
        let current = applied_version(conn)?;
        refuse_newer(current)?;
        for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
            conn.execute_batch(migration.sql)
                .map_err(|e| Error::new(format!("migration {} failed: {e}", migration.name)))?;
            conn.execute(
                "INSERT INTO tether_migrations (version, name) VALUES (?1, ?2)",
                (migration.version, migration.name),
            )?;
        }
        // A table an earlier migration created and someone dropped is not created again.
        refuse_missing_tables(conn, latest_version())
    })
    .map_err(|error| match error.sqlite_code() {
        Some(ErrorCode::ReadOnly) => cannot_write_error(error.message()),
        _ => error,
    })
}

/// Why this connection cannot write its main database, if it cannot: opened read-only (or the
/// file is), or `PRAGMA query_only` is on.
pub(crate) fn cannot_write(conn: &Connection) -> Result<Option<&'static str>> {
    if conn.is_readonly(MAIN_DB)? {
        return Ok(Some("it is open read-only"));
    }
    let query_only: bool = conn.query_row("PRAGMA query_only", [], |r| r.get(0))?;
    Ok(query_only.then_some("PRAGMA query_only is on"))
}

fn cannot_write_error(cause: &str) -> Error {
    Error::with_cause(
        format!(
            "needs to create or upgrade its internal tables (schema {}), and this connection cannot write ({cause}): load tether once on a connection that can write (read-write, without PRAGMA query_only); read-only loads work after that",
            latest_version()
        ),
        crate::error::Cause::Sqlite {
            code: ErrorCode::ReadOnly,
            extended: rusqlite::ffi::SQLITE_READONLY,
        },
    )
}

/// Refuses a database whose recorded schema `version` lacks internal tables (a partial restore,
/// a cleanup): loading would succeed, and then every write to a tracked table would fail in
/// every connection, through the capture triggers. One read of `main.sqlite_schema`.
fn refuse_missing_tables(conn: &Connection, version: u32) -> Result<()> {
    let listed = INTERNAL_TABLES
        .iter()
        .map(|name| crate::sql::literal(name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut statement = conn.prepare(&format!(
        "SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name IN ({listed})"
    ))?;
    let present = statement
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let missing: Vec<&str> = INTERNAL_TABLES
        .iter()
        .copied()
        .filter(|name| !present.iter().any(|p| p == name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "internal tables missing: {}, although this database records tether's internal schema {version} (a partial restore, or a cleanup?): restore them from a backup of this database, then load tether (tether does not create them again: that would silently drop the queue and sync state they held)",
        missing.join(", ")
    )
}

fn refuse_newer(applied: u32) -> Result<()> {
    if applied > latest_version() {
        bail!(
            "this database was set up by a newer tether (internal schema {applied}, this build knows {}); load a newer libtether",
            latest_version()
        );
    }
    Ok(())
}

/// Removes a leftover capture-suppression flag. The flag lives only inside an applying write
/// transaction, so a committed row is stray, and it would stop the capture of every
/// connection's writes. Only from autocommit (inside the host's transaction the row may be its
/// own), and only when a read finds one: loading takes no write lock otherwise. A connection that
/// cannot write (read-only, or `PRAGMA query_only`) leaves it (it captures nothing anyway) to a
/// connection that can.
pub fn clear_stray_capture_suppression(conn: &Connection) -> Result<()> {
    if !conn.is_autocommit() || cannot_write(conn)?.is_some() {
        return Ok(());
    }
    let stray: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM tether_capture_suppressed)",
        [],
        |r| r.get(0),
    )?;
    if stray {
        // Under the write lock, an applying connection's own flag is invisible until it commits,
        // and gone by then: only committed leftovers are deleted.
        write_txn(conn, |conn| {
            conn.execute("DELETE FROM tether_capture_suppressed", [])?;
            Ok(())
        })?;
    }
    Ok(())
}

fn applied_version(conn: &Connection) -> Result<u32> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'tether_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    let version: Option<u32> = conn
        .query_row("SELECT max(version) FROM tether_migrations", [], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    Ok(version.unwrap_or(0))
}

/// Whether this connection can write its database (not opened read-only, no `query_only`).
pub(crate) fn can_write(conn: &Connection) -> Result<bool> {
    Ok(cannot_write(conn)?.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_tables_are_the_tables_the_migrations_create() {
        let mut created: Vec<&str> = MIGRATIONS
            .iter()
            .flat_map(|m| m.sql.split("CREATE TABLE IF NOT EXISTS ").skip(1))
            .map(|rest| {
                rest.split(|c: char| c.is_whitespace() || c == '(')
                    .next()
                    .unwrap()
            })
            .chain(["tether_migrations"])
            .collect();
        created.sort_unstable();
        let mut listed = INTERNAL_TABLES.to_vec();
        listed.sort_unstable();
        assert_eq!(created, listed);
    }
}
