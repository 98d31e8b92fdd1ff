//! The sync lock: a lease row in `tether_locks`, shared by every connection and process. Taken
//! in a short write transaction, renewed before each request, released at the end; a holder that
//! died loses it when the lease expires.
use rusqlite::Connection;

use crate::db::write_txn;
use crate::error::Result;

/// A lease lasts this long past its last renewal.
pub const LEASE_MS: i64 = 60_000;

pub struct Lease {
    holder: String,
    duration_ms: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Lease {
    /// Takes the lock if it is free or expired; `None` when another live cycle holds it.
    /// `request_timeout_ms` stretches the lease so it cannot lapse during one request.
    pub fn acquire(conn: &Connection, request_timeout_ms: i64) -> Result<Option<Lease>> {
        let lease = Lease {
            holder: crate::identity::new_ulid(),
            duration_ms: LEASE_MS.max(request_timeout_ms + 10_000),
        };
        let now = now_ms();
        let taken = write_txn(conn, |conn| {
            Ok(conn.execute(
                "INSERT INTO tether_locks (name, holder, expires_at) VALUES ('sync', ?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE tether_locks.expires_at < ?3",
                (&lease.holder, now + lease.duration_ms, now),
            )?)
        })?;
        Ok((taken == 1).then_some(lease))
    }

    pub fn renew(&self, conn: &Connection) -> Result<()> {
        write_txn(conn, |conn| {
            conn.execute(
                "UPDATE tether_locks SET expires_at = ?2 WHERE name = 'sync' AND holder = ?1",
                (&self.holder, now_ms() + self.duration_ms),
            )?;
            Ok(())
        })
    }

    pub fn release(&self, conn: &Connection) -> Result<()> {
        write_txn(conn, |conn| {
            conn.execute(
                "DELETE FROM tether_locks WHERE name = 'sync' AND holder = ?1",
                [&self.holder],
            )?;
            Ok(())
        })
    }
}
