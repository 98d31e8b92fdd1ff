//! The internal schema: versioned migrations from `sql/migrations`, applied forward on load.
use rusqlite::{Connection, OptionalExtension};

use crate::bail;
use crate::db::write_txn;
use crate::error::Result;

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

/// Refuses hosts that lack what the capture triggers need, with an error instead of a crash.
pub fn check_host(conn: &Connection) -> Result<()> {
    let json: rusqlite::Result<String> =
        conn.query_row("SELECT json_object('ok', 1)", [], |r| r.get(0));
    if json.is_err() {
        bail!(
            "needs SQLite's JSON functions (built in since 3.38.0), and this SQLite {} was built without them",
            rusqlite::version()
        );
    }
    // RETURNING (used by tracking and the sync engine) arrived in 3.35.0; DIRECTONLY and
    // INNOCUOUS function flags in 3.31.0.
    if rusqlite::version_number() < 3_035_000 {
        bail!(
            "needs SQLite 3.35.0 or newer (for RETURNING); this host has {}",
            rusqlite::version()
        );
    }
    Ok(())
}

/// Brings the internal tables up to [`latest_version`]. Cheap when already current.
pub fn migrate(conn: &Connection) -> Result<()> {
    if applied_version(conn)? == latest_version() {
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
        if current > latest_version() {
            bail!(
                "this database was set up by a newer tether (internal schema {current}, this build knows {}); load a newer libtether",
                latest_version()
            );
        }
        for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
            conn.execute_batch(migration.sql).map_err(|e| {
                crate::error::Error::new(format!("migration {} failed: {e}", migration.name))
            })?;
            conn.execute(
                "INSERT INTO tether_migrations (version, name) VALUES (?1, ?2)",
                (migration.version, migration.name),
            )?;
        }
        Ok(())
    })
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
