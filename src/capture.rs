//! Capture suppression: server state applied locally must not be queued back to the server.
//!
//! The flag is a row of `tether_capture_suppressed` that exists only inside the applying write
//! transaction. The capture triggers test for it, so they skip the applying connection's own
//! writes; other connections never see the uncommitted row and keep being captured.
use rusqlite::Connection;

use crate::db::{write_txn_after, Setup};
use crate::error::Result;

/// Runs `body` in a write transaction whose writes are not captured; foreign keys are checked at
/// its COMMIT when `defer_foreign_keys`.
pub fn without_capture<T>(
    conn: &Connection,
    defer_foreign_keys: bool,
    body: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let setup = if defer_foreign_keys {
        Setup {
            sql: "PRAGMA defer_foreign_keys = ON",
            undo: "PRAGMA defer_foreign_keys = OFF",
            ..Setup::NONE
        }
    } else {
        Setup::NONE
    };
    write_txn_after(conn, setup, |conn| {
        conn.execute(
            "INSERT INTO tether_capture_suppressed (reason) VALUES ('applying server state')",
            [],
        )?;
        let flag = conn.last_insert_rowid();
        let result = body(conn)?;
        conn.execute(
            "DELETE FROM tether_capture_suppressed WHERE rowid = ?1",
            [flag],
        )?;
        Ok(result)
    })
}
