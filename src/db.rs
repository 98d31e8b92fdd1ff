//! Short write transactions that work whether or not the caller already opened one.
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use crate::error::{Error, Result};

/// How long to keep retrying when another connection holds the write lock.
const BUSY_PATIENCE: Duration = Duration::from_secs(10);

/// Ends the transaction or savepoint it was made for unless [`Rollback::disarm`]ed: an error, an
/// early return or a panic inside a body never leaves a transaction open.
struct Rollback<'a> {
    conn: &'a Connection,
    savepoint: bool,
    armed: bool,
}

impl Rollback<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // SQLite may already have rolled the whole transaction back (disk full, I/O error,
        // RAISE(ROLLBACK)): then there is nothing left to end.
        if self.conn.is_autocommit() {
            return;
        }
        let sql = if self.savepoint {
            "ROLLBACK TO tether_write; RELEASE tether_write"
        } else {
            "ROLLBACK"
        };
        let _ = self.conn.execute_batch(sql);
    }
}

/// Runs `body` in a write transaction: `BEGIN IMMEDIATE` (retried while the database is busy)
/// from autocommit, or a savepoint inside the caller's transaction. Rolls back on error or panic.
/// A body that finds SQLite rolled the transaction back by itself must return an error (see
/// [`still_in_transaction`]): going on would write in autocommit.
pub fn write_txn<T>(conn: &Connection, body: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let savepoint = !conn.is_autocommit();
    if savepoint {
        conn.execute_batch("SAVEPOINT tether_write")?;
    } else {
        retry_busy(|| conn.execute_batch("BEGIN IMMEDIATE"))?;
    }
    let guard = Rollback {
        conn,
        savepoint,
        armed: true,
    };
    let value = body(conn)?;
    if savepoint {
        conn.execute_batch("RELEASE tether_write")?;
    } else {
        retry_busy(|| conn.execute_batch("COMMIT"))?;
    }
    guard.disarm();
    Ok(value)
}

/// After a statement failed inside [`write_txn`]: the error back if the transaction is still
/// open, or an error saying SQLite ended the transaction itself (it does on disk full, some I/O
/// errors, out of memory, RAISE(ROLLBACK)), so the caller stops instead of writing on in
/// autocommit, where nothing it writes is undone or kept out of capture.
pub fn still_in_transaction(conn: &Connection, error: Error) -> Result<Error> {
    if conn.is_autocommit() {
        return Err(error.context("SQLite rolled the transaction back; nothing of it was kept"));
    }
    Ok(error)
}

fn retry_busy(mut attempt: impl FnMut() -> rusqlite::Result<()>) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match attempt() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    && start.elapsed() < BUSY_PATIENCE =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
            {
                return Err(Error::new(format!(
                    "the database stayed locked by another connection for {}s",
                    BUSY_PATIENCE.as_secs()
                )))
            }
            other => return other.map_err(Error::from),
        }
    }
}
