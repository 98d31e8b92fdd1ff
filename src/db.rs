//! Short write transactions that work whether or not the caller already opened one.
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use crate::error::{Error, Result};

/// How long to keep retrying when another connection holds the write lock.
const BUSY_PATIENCE: Duration = Duration::from_secs(10);

/// Runs `body` in a write transaction: `BEGIN IMMEDIATE` (retried while the database is busy)
/// from autocommit, or a savepoint inside the caller's transaction. Rolls back on error.
pub fn write_txn<T>(conn: &Connection, body: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    if !conn.is_autocommit() {
        conn.execute_batch("SAVEPOINT tether_write")?;
        return match body(conn) {
            Ok(value) => {
                conn.execute_batch("RELEASE tether_write")?;
                Ok(value)
            }
            Err(error) => {
                let _ = conn.execute_batch("ROLLBACK TO tether_write; RELEASE tether_write");
                Err(error)
            }
        };
    }
    retry_busy(|| conn.execute_batch("BEGIN IMMEDIATE"))?;
    match body(conn) {
        Ok(value) => match retry_busy(|| conn.execute_batch("COMMIT")) {
            Ok(()) => Ok(value),
            Err(error) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(error)
            }
        },
        Err(error) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(error)
        }
    }
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
