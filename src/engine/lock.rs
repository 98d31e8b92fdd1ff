//! The sync lock: a lease row in `tether_locks`, shared by every connection and process. Taken
//! in a short write transaction, renewed before each request, released at the end.
//!
//! The row names its holder's host and process id. A holder on this machine whose process no
//! longer exists (killed, crashed) loses the lock at once to the next cycle; a holder elsewhere,
//! or one whose host is unknown (a row written by an older tether), loses it when its lease
//! expires. A cycle whose lease was taken over finds out at its next renewal and stops.
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use crate::db::write_txn;
use crate::error::{Error, Result};

/// A lease lasts this long past its last renewal.
pub const LEASE_MS: i64 = 60_000;

/// The error of a cycle whose lease another cycle took.
pub const LOST: &str =
    "lost the sync lock to another cycle (its lease expired); stopping before its next request or write";

pub struct Lease {
    holder: String,
    duration_ms: i64,
    /// Where to give it up if the host interrupts the connection.
    cleanup: Option<crate::db::SameFile>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// This machine's host name, as recorded in the lock row; `None` when it cannot be told (then
/// no holder is ever taken over before its lease expires). `localhost` names no machine in
/// particular, so it counts as unknown.
pub fn host_name() -> Option<String> {
    let name = system_host_name()?;
    let name = name.trim();
    let generic = ["", "localhost", "localhost.localdomain"];
    if generic.iter().any(|g| name.eq_ignore_ascii_case(g)) {
        return None;
    }
    // Containers can share a host name (and a database file) but not process ids: a pid is
    // judged only by a holder in the same pid namespace.
    Some(match pid_namespace() {
        Some(namespace) => format!("{name} {namespace}"),
        None => name.to_string(),
    })
}

/// The process's pid namespace (`pid:[4026531836]`) where the system says (Linux).
fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    link.to_str().map(str::to_string)
}

#[cfg(unix)]
fn system_host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for the length passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // Without a terminating NUL the name may have been cut short: not a name to trust.
    let end = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..end].to_vec()).ok()
}

#[cfg(not(unix))]
fn system_host_name() -> Option<String> {
    None
}

/// True only when the process `pid` of this machine certainly does not exist.
#[cfg(unix)]
pub(crate) fn process_is_gone(pid: i64) -> bool {
    // 0 and negative ids address process groups: never a holder.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists. EPERM means it
    // exists under another user.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(not(unix))]
pub(crate) fn process_is_gone(_pid: i64) -> bool {
    false
}

/// The lock row as read at acquisition.
struct Held {
    holder: Value,
    expires_at: Value,
    expired: bool,
    host: Value,
    pid: Value,
}

impl Held {
    /// A holder on this machine (same known host) whose process is gone.
    fn is_dead(&self, our_host: Option<&str>) -> bool {
        match (our_host, &self.host, &self.pid) {
            (Some(ours), Value::Text(host), Value::Integer(pid)) => {
                host == ours && process_is_gone(*pid)
            }
            _ => false,
        }
    }
}

impl Lease {
    /// Takes the lock if it is free, expired, or held by a dead process of this machine; `None`
    /// when another live cycle holds it. `request_timeout_ms` stretches the lease so it cannot
    /// lapse during one request.
    /// `cleanup`: where to give it up if the host interrupts the connection
    /// ([`crate::db::SameFile::for_cleanup`], read by the caller before anything else).
    pub fn acquire(
        conn: &Connection,
        request_timeout_ms: i64,
        cleanup: Option<crate::db::SameFile>,
    ) -> Result<Option<Lease>> {
        let lease = Lease {
            holder: crate::identity::new_ulid(),
            duration_ms: LEASE_MS.max(request_timeout_ms.saturating_add(10_000)),
            cleanup,
        };
        let host = host_name();
        let pid = i64::from(std::process::id());
        let taken = write_txn(conn, |conn| {
            let now = now_ms();
            let expires_at = now.saturating_add(lease.duration_ms);
            let held = conn
                .query_row(
                    "SELECT holder, expires_at, expires_at < ?1, host, pid
                       FROM tether_locks WHERE name = 'sync'",
                    [now],
                    |r| {
                        Ok(Held {
                            holder: r.get(0)?,
                            expires_at: r.get(1)?,
                            expired: r.get::<_, Option<bool>>(2)?.unwrap_or(false),
                            host: r.get(3)?,
                            pid: r.get(4)?,
                        })
                    },
                )
                .optional()?;
            let changed = match held {
                None => conn.execute(
                    "INSERT INTO tether_locks (name, holder, expires_at, host, pid)
                     VALUES ('sync', ?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
                    (&lease.holder, expires_at, &host, pid),
                )?,
                // Only the row just read is replaced: of two cycles taking over the same dead or
                // expired holder, one wins.
                Some(held)
                    if held.expired
                        || held.is_dead(host.as_deref())
                        || is_abandoned(&held.holder) =>
                {
                    conn.execute(
                        "UPDATE tether_locks SET holder = ?1, expires_at = ?2, host = ?3, pid = ?4
                      WHERE name = 'sync' AND holder IS ?5 AND expires_at IS ?6",
                        (
                            &lease.holder,
                            expires_at,
                            &host,
                            pid,
                            &held.holder,
                            &held.expires_at,
                        ),
                    )?
                }
                Some(_) => 0,
            };
            Ok(changed == 1)
        })?;
        Ok(taken.then_some(lease))
    }

    /// Extends the lease; an error when it is no longer ours (it expired and another cycle took
    /// it), so the cycle stops before its next request.
    pub fn renew(&self, conn: &Connection) -> Result<()> {
        write_txn(conn, |conn| extend(conn, &self.holder, self.duration_ms))
    }

    /// Until the returned guard is dropped, every write transaction this thread begins on
    /// `conn` first renews the lease inside that transaction, and fails if it is no longer ours.
    /// Renewing between transactions is not enough: a process suspended (or a machine asleep)
    /// past the lease right after renewing would write one stale transaction after another
    /// cycle took over; inside the transaction the check holds the write lock until COMMIT.
    pub fn fence(&self, conn: &Connection) -> Fence {
        let fence = Some((handle_of(conn), self.holder.clone(), self.duration_ms));
        Fence {
            previous: FENCE.with(|current| current.replace(fence)),
        }
    }

    /// Gives the lock up, if it is still ours (through another connection if the host
    /// interrupted this one). A lease that cannot be given up (an interrupted in-memory
    /// database, the disk full) is free for the next cycle of this process at once, and for
    /// others when it expires.
    pub fn release(&self, conn: &Connection) -> Result<()> {
        let released = crate::db::write_even_if_interrupted(conn, self.cleanup.as_ref(), |conn| {
            conn.execute(
                "DELETE FROM tether_locks WHERE name = 'sync' AND holder = ?1",
                [&self.holder],
            )?;
            Ok(())
        });
        if released.is_err() {
            abandoned().insert(self.holder.clone());
        }
        released
    }
}

/// `(connection handle, holder, duration)` of the lease a cycle on this thread holds.
type Fenced = Option<(usize, String, i64)>;

thread_local! {
    static FENCE: std::cell::RefCell<Fenced> = const { std::cell::RefCell::new(None) };
}

/// See [`Lease::fence`].
pub struct Fence {
    previous: Fenced,
}

impl Drop for Fence {
    fn drop(&mut self) {
        let previous = self.previous.take();
        FENCE.with(|current| current.replace(previous));
    }
}

/// Called by [`crate::db::write_txn`] right after `BEGIN IMMEDIATE`.
pub(crate) fn check_fence(conn: &Connection) -> Result<()> {
    let fenced = FENCE.with(|current| current.borrow().clone());
    match fenced {
        Some((handle, holder, duration_ms)) if handle == handle_of(conn) => {
            extend(conn, &holder, duration_ms)
        }
        _ => Ok(()),
    }
}

/// Which connection this is (its address, compared only, never used to reach it).
fn handle_of(conn: &Connection) -> usize {
    // SAFETY: the pointer is only read as a number.
    unsafe { conn.handle() as usize }
}

fn extend(conn: &Connection, holder: &str, duration_ms: i64) -> Result<()> {
    let renewed = conn.execute(
        "UPDATE tether_locks SET expires_at = ?2 WHERE name = 'sync' AND holder = ?1",
        (holder, now_ms().saturating_add(duration_ms)),
    )?;
    if renewed == 0 {
        return Err(Error::new(LOST));
    }
    Ok(())
}

/// Leases this process could not give up: no cycle of it holds them.
fn abandoned() -> parking_lot::MutexGuard<'static, std::collections::HashSet<String>> {
    static ABANDONED: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    ABANDONED.get_or_init(Default::default).lock()
}

fn is_abandoned(holder: &Value) -> bool {
    matches!(holder, Value::Text(holder) if abandoned().contains(holder))
}
