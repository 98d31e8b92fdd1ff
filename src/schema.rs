//! The internal schema: versioned migrations from `sql/migrations`, applied forward on load.
use rusqlite::{Connection, OptionalExtension, MAIN_DB};

use crate::bail;
use crate::db::write_txn;
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

/// Refuses, with the real cause, what tether cannot work with: a SQLite too old, a file that
/// is not a database (or cannot be read), a SQLite without JSON functions. Reads only.
pub fn check_host(conn: &Connection) -> Result<()> {
    // RETURNING (used by tracking and the sync engine) arrived in 3.35.0; DIRECTONLY and
    // INNOCUOUS function flags in 3.31.0.
    if rusqlite::version_number() < 3_035_000 {
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

/// Brings the internal tables up to [`latest_version`]. Cheap when already current: it only
/// reads, and refuses a database set up by a newer tether before writing anything.
pub fn migrate(conn: &Connection) -> Result<()> {
    let applied = applied_version(conn)?;
    refuse_newer(applied)?;
    if applied == latest_version() {
        return Ok(());
    }
    write_txn(conn, |conn| {
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
        Ok(())
    })
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
/// own), and only when a read finds one: loading takes no write lock otherwise. A read-only
/// connection leaves it (it captures nothing anyway) to a connection that can write.
pub fn clear_stray_capture_suppression(conn: &Connection) -> Result<()> {
    if !conn.is_autocommit() || conn.is_readonly(MAIN_DB)? {
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
