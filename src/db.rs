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
    /// A write statement prepared just before BEGIN (see [`INTERRUPTED_ROLLBACK`]).
    probe: Option<rusqlite::Statement<'a>>,
}

/// Ends a transaction whose ROLLBACK the host's interrupt failed: once the host interrupted the
/// connection (`sqlite3_interrupt`) every statement fails until its call returns, ROLLBACK too,
/// and a read that was interrupted leaves the transaction open (the host would go on inside
/// tether's transaction, holding the write lock, its writes uncaptured). A write statement that
/// is interrupted makes SQLite roll the whole transaction back; it must be prepared before the
/// interrupt (preparing checks for it too), and no flag PRAGMA or schema change may follow
/// (either expires every prepared statement, and an expired one is prepared again when it runs):
/// see [`write_txn_after`]. A transaction that creates an index (the first tracking of a table, a
/// repair) stays exposed after it.
/// It writes nothing when it runs.
const INTERRUPTED_ROLLBACK: &str = "UPDATE tether_locks SET name = name WHERE 0";

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
        if !self.conn.is_autocommit() {
            if let Some(probe) = self.probe.as_mut() {
                let _ = probe.execute([]);
            }
        }
    }
}

/// Runs `body` in a write transaction: `BEGIN IMMEDIATE` (retried while the database is busy)
/// from autocommit, or a savepoint inside the caller's transaction. Rolls back on error or panic.
/// A body that finds SQLite rolled the transaction back by itself must return an error (see
/// [`still_in_transaction`]): going on would write in autocommit.
///
/// The rows captured since enter the queue's index of unsynced rows as it begins and before it
/// ends ([`crate::queue::index_new_rows`]).
pub fn write_txn<T>(conn: &Connection, body: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    write_txn_waiting(conn, BUSY_PATIENCE, Setup::NONE, body)
}

/// [`write_txn`] for the migrations, which run before the queue has what
/// [`crate::queue::index_new_rows`] reads.
pub fn schema_txn<T>(conn: &Connection, body: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let setup = Setup {
        index_queue: false,
        ..Setup::NONE
    };
    write_txn_waiting(conn, BUSY_PATIENCE, setup, body)
}

/// What runs just before a transaction begins (see [`write_txn_after`]).
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    pub sql: &'a str,
    /// Undoes `sql` when the transaction could not begin (a PRAGMA meant for it must not last
    /// into the host's next one); empty when nothing needs undoing.
    pub undo: &'a str,
    /// Whether the transaction indexes the rows captured since as it begins and ends (all but
    /// the migrations' do).
    pub index_queue: bool,
}

impl Setup<'_> {
    pub const NONE: Setup<'static> = Setup {
        sql: "",
        undo: "",
        index_queue: true,
    };
}

/// [`write_txn`] that runs `setup` (a PRAGMA for the transaction, such as `defer_foreign_keys`,
/// which lasts until it ends; a temp table) just before it begins, or first inside the caller's
/// transaction.
pub fn write_txn_after<T>(
    conn: &Connection,
    setup: Setup<'_>,
    body: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    write_txn_waiting(conn, BUSY_PATIENCE, setup, body)
}

/// [`write_txn`], waiting at most `patience` (besides the connection's busy timeout) for another
/// connection's write lock.
pub(crate) fn write_txn_waiting<T>(
    conn: &Connection,
    patience: Duration,
    setup: Setup<'_>,
    body: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let savepoint = !conn.is_autocommit();
    let guard = if savepoint {
        conn.execute_batch("SAVEPOINT tether_write")?;
        let guard = Rollback {
            conn,
            savepoint,
            armed: true,
            // The transaction is the caller's.
            probe: None,
        };
        if !setup.sql.is_empty() {
            conn.execute_batch(setup.sql)?;
        }
        guard
    } else {
        // A long tail of captured rows is indexed in short transactions of its own first.
        if setup.index_queue {
            crate::queue::index_long_tail(conn, patience)?;
        }
        // Before the transaction: what would expire the probe (a PRAGMA, a temp table), then the
        // probe, prepared anew (a cached one may have been expired since; absent before the
        // internal tables exist).
        if !setup.sql.is_empty() {
            conn.execute_batch(setup.sql)?;
        }
        let guard = Rollback {
            conn,
            savepoint,
            armed: true,
            probe: conn.prepare(INTERRUPTED_ROLLBACK).ok(),
        };
        // The guard exists first: a BEGIN reported failed after it took effect (a progress
        // handler that stops the statement as it ends) is still ended.
        if let Err(error) = retry_busy(patience, || conn.execute_batch("BEGIN IMMEDIATE")) {
            if !setup.undo.is_empty() && conn.is_autocommit() {
                let _ = conn.execute_batch(setup.undo);
            }
            return Err(error);
        }
        crate::engine::lock::check_fence(conn)?;
        guard
    };
    if setup.index_queue {
        crate::queue::index_new_rows(conn)?;
    }
    let value = body(conn)?;
    if setup.index_queue {
        crate::queue::index_new_rows(conn)?;
    }
    if savepoint {
        conn.execute_batch("RELEASE tether_write")?;
    } else {
        match retry_busy(patience, || conn.execute_batch("COMMIT")) {
            // Stopped as it ended, after it committed (an interrupted COMMIT that did not commit
            // leaves the transaction open).
            Err(error)
                if error.sqlite_code() == Some(ErrorCode::OperationInterrupted)
                    && conn.is_autocommit() => {}
            other => other?,
        }
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

fn retry_busy(patience: Duration, mut attempt: impl FnMut() -> rusqlite::Result<()>) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match attempt() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    && start.elapsed() < patience =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
            {
                return Err(Error::new(format!(
                    "the database stayed locked by another connection for {}s",
                    patience.as_secs()
                )))
            }
            other => return other.map_err(Error::from),
        }
    }
}

/// Runs a short write transaction on `conn`, or, when the host interrupted `conn`
/// (`sqlite3_interrupt`: a Go context cancelled, Python's `interrupt()`, a progress handler),
/// through `side` (see [`SameFile::for_cleanup`]): every statement of an interrupted connection
/// fails until the host's call returns, and what must not wait for that (giving up the sync lock,
/// finishing the sync log's row) would otherwise be left for the lease to expire.
pub fn write_even_if_interrupted(
    conn: &Connection,
    side: Option<&SameFile>,
    body: impl Fn(&Connection) -> Result<()>,
) -> Result<()> {
    let error = match write_txn(conn, &body) {
        Err(error) if error.sqlite_code() == Some(ErrorCode::OperationInterrupted) => error,
        other => return other,
    };
    let Some(side) = side.filter(|file| !blocks_another_writer(conn, file.wal)) else {
        return Err(error);
    };
    let Ok(side) = side.open() else {
        return Err(error);
    };
    let _ = side.busy_timeout(Duration::from_secs(1));
    // What must not wait (the lease, the log row) reads nothing of the queue: its index can
    // wait for the next write.
    let setup = Setup {
        index_queue: false,
        ..Setup::NONE
    };
    write_txn_waiting(&side, Duration::ZERO, setup, &body).map_err(|_| error)
}

/// Whether the connection holds a lock another connection's write would wait for: a write
/// transaction, or (outside WAL, where readers block writers) a read of a statement still running.
fn blocks_another_writer(conn: &Connection, wal: bool) -> bool {
    // SAFETY: a valid handle; a NULL schema asks for the highest state of all its databases.
    let state = unsafe { rusqlite::ffi::sqlite3_txn_state(conn.handle(), std::ptr::null()) };
    !conn.is_autocommit()
        || state == rusqlite::ffi::SQLITE_TXN_WRITE
        || (state == rusqlite::ffi::SQLITE_TXN_READ && !wal)
}

/// Where a connection's main database lives, so another connection can open the same file with
/// the same VFS (the background worker; a cycle's cleanup when its own connection was
/// interrupted).
#[derive(Clone)]
pub struct SameFile {
    path: String,
    vfs: Option<String>,
    /// In WAL mode (as read by [`SameFile::for_cleanup`]).
    wal: bool,
}

impl SameFile {
    /// `Err`: why no other connection can reach this database (it is in memory).
    pub fn of(conn: &Connection) -> Result<std::result::Result<SameFile, String>> {
        // Read without a statement: it must work on an interrupted connection.
        let path = match conn.path() {
            Some(path) => path.to_string(),
            None => conn.query_row(
                "SELECT file FROM pragma_database_list WHERE name = 'main'",
                [],
                |r| r.get(0),
            )?,
        };
        let vfs = vfs_name(conn);
        // SQLite names it "memdb", or "memdb(…)" with the buffer's address and size.
        let memdb = vfs.as_deref().is_some_and(|v| {
            v.split('/')
                .any(|part| part == "memdb" || part.starts_with("memdb("))
        });
        Ok(if path.is_empty() {
            Err("this is an in-memory or temporary database".to_string())
        } else if memdb {
            Err("this is an in-memory database: memdb".to_string())
        } else {
            Ok(SameFile {
                path,
                vfs,
                wal: false,
            })
        })
    }

    /// Where the cleanup of an interrupted cycle can go ([`write_even_if_interrupted`]): `None`
    /// in memory, or when this connection keeps its lock between transactions (`PRAGMA
    /// locking_mode = EXCLUSIVE`), which another connection would wait for. Read before the
    /// cycle: nothing can be read from an interrupted connection.
    pub fn for_cleanup(conn: &Connection) -> Option<SameFile> {
        let mode: String = conn
            .query_row("PRAGMA main.locking_mode", [], |r| r.get(0))
            .ok()?;
        if mode.eq_ignore_ascii_case("exclusive") {
            return None;
        }
        let journal: String = conn
            .query_row("PRAGMA main.journal_mode", [], |r| r.get(0))
            .ok()?;
        let file = SameFile::of(conn).ok()?.ok()?;
        Some(SameFile {
            wal: journal.eq_ignore_ascii_case("wal"),
            ..file
        })
    }

    /// A new read-write connection to the file; the caller sets its busy timeout.
    pub fn open(&self) -> std::result::Result<Connection, String> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        match &self.vfs {
            Some(vfs) => Connection::open_with_flags_and_vfs(&self.path, flags, vfs.as_str()),
            None => Connection::open_with_flags(&self.path, flags),
        }
        .map_err(|e| format!("cannot open {:?}: {e}", self.path))
    }
}

/// The VFS the connection's main database was opened with (`None` if SQLite does not say).
fn vfs_name(conn: &Connection) -> Option<String> {
    use rusqlite::ffi;
    let mut name: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_VFSNAME writes a string from sqlite3_mprintf into `name`, freed below.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_VFSNAME,
            (&mut name as *mut *mut std::ffi::c_char).cast(),
        );
        if rc != ffi::SQLITE_OK || name.is_null() {
            return None;
        }
        let text = std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned();
        ffi::sqlite3_free(name.cast());
        Some(text)
    }
}
