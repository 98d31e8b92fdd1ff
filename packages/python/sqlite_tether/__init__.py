"""sqlite-tether: the tether SQLite extension, prebuilt, with a one-line loader.

    import sqlite3, sqlite_tether
    conn = sqlite3.connect("app.db")
    sqlite_tether.load(conn)                       # tether_* functions on this connection
    conn.execute("SELECT tether_track('tasks')")
    result = sqlite_tether.sync("app.db")          # typed SyncResult; safe in a thread
    result = await asyncio.to_thread(sqlite_tether.sync, "app.db")
    await sqlite_tether.load_async(db)             # an aiosqlite connection

`sync()`, `push()` and `pull()` open a connection of their own to the database file, so they
can run in any thread while the application keeps using its connections: `SELECT
tether_sync()` blocks its caller for as long as the server takes (up to `timeout_ms` per
request).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pathlib
import sqlite3
from typing import Any, Dict, List, Mapping, Optional, TypedDict, Union

__all__ = [
    "TetherError",
    "loadable_path",
    "load",
    "load_async",
    "sync",
    "push",
    "pull",
    "status",
    "SyncResult",
    "Rejection",
    "Status",
    "TableStatus",
    "Quarantine",
    "QuarantinedRow",
    "WorkerStatus",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
# What SQLite derives the entry point sqlite3_tether_init from, per platform: libtether.so,
# libtether.dylib, tether.dll.
_FILES = (("libtether", ".so"), ("libtether", ".dylib"), ("tether", ".dll"))


class TetherError(RuntimeError):
    """The package cannot do what was asked (no library for this platform, a Python whose
    sqlite3 cannot load extensions, a database file that does not exist, a connection inside a
    transaction). Errors of tether itself come
    from SQLite as the driver's own exceptions (sqlite3.OperationalError)."""


# ---------------------------------------------------------------------------- result types
class Rejection(TypedDict):
    mutation_id: str
    reason: str
    data: Any
    row: Optional[Dict[str, Any]]  # {"model", "table", "entity_id", "primary_key"}


class SyncResult(TypedDict):
    """What tether_sync(), tether_push() and tether_pull() return (the same keys for all three)."""

    pushed: int
    pulled: int
    conflicts: int
    failed: int
    rejections: List[Rejection]
    warnings: List[Dict[str, Any]]
    pull_errors: int
    pull_error_reasons: Dict[str, Dict[str, int]]
    skipped: bool


class QuarantinedRow(TypedDict):
    model: str
    entity_id: str
    operation: str
    source: str
    error: str
    attempts: int
    since: str


class Quarantine(TypedDict):
    count: int
    oldest: List[QuarantinedRow]


class TableStatus(TypedDict):
    table: str
    model: str
    sync_key: str
    keys: str  # "on_insert" or "on_sync": when new rows get their sync keys
    columns: List[str]
    json_columns: List[str]
    pending: int
    exists: bool
    state: str
    problem: Optional[str]
    triggers_installed: bool
    triggers: List[str]
    columns_changed: bool
    added_columns: List[str]
    removed_columns: List[str]
    warnings: List[Dict[str, Any]]
    server_ignored: List[str]
    not_echoed: Optional[List[str]]


class WorkerStatus(TypedDict, total=False):
    """`running` is always there; `unavailable` when not running, the rest when it runs."""

    running: bool
    unavailable: Optional[str]
    schedule: Optional[Dict[str, Any]]
    last_cycle: Optional[Dict[str, Any]]
    last_error: Optional[str]
    failures_in_a_row: int
    auto_retry_in: Optional[float]


class Status(TypedDict):
    """What tether_status() returns."""

    pending: int
    failed: int
    conflicts: int
    diverged: int
    quarantine: Quarantine
    last_pull_errors: Dict[str, Dict[str, int]]
    last_sync_cursor: Optional[int]
    last_sync_at: Optional[str]
    client_id: Optional[str]
    server_url: Optional[str]
    tables: List[TableStatus]
    repair_error: Optional[str]
    version: str
    worker: WorkerStatus


# ---------------------------------------------------------------------------- loading
def loadable_path() -> str:
    """The path of the bundled library without its suffix, as `load_extension` wants it."""
    for stem, suffix in _FILES:
        if os.path.isfile(os.path.join(_HERE, stem + suffix)):
            return os.path.join(_HERE, stem)
    raise TetherError(
        f"sqlite-tether: no prebuilt tether library in {_HERE}: this installation has none for "
        "this platform. Install the wheel built for it, or build from source "
        "(cargo build --release) and load target/release/libtether."
    )


_NO_EXTENSIONS = (
    "sqlite-tether: this Python's sqlite3 module cannot load extensions ({what} has no "
    "enable_load_extension; Python was built without --enable-loadable-sqlite-extensions, as "
    "pyenv, some python.org and macOS system builds are). Fixes: use Debian's or Ubuntu's "
    "/usr/bin/python3 (or a venv of it), or `pip install pysqlite3-binary` and {fix}."
)
_NO_EXTENSIONS_LOAD = "pass a connection of `pysqlite3.dbapi2` to load()"
_NO_EXTENSIONS_SYNC = (
    "pass it to sync(), push() and pull(): `import pysqlite3.dbapi2`, then "
    "sqlite_tether.sync(path, driver=pysqlite3.dbapi2) (and load() a `pysqlite3.dbapi2` "
    "connection for your own tether_* calls)"
)
_ASYNC_LOAD = (
    "sqlite-tether: load() got an asynchronous connection ({what}: its methods are coroutines, so "
    "calling them without await does nothing). Use `await sqlite_tether.load_async(db)`, or "
    "`await db.enable_load_extension(True); "
    "await db.load_extension(sqlite_tether.loadable_path()); "
    "await db.enable_load_extension(False)`."
)
_ASYNC_SYNC = (
    "sqlite-tether: {kind}() got an asynchronous connection ({what}); it runs on a connection of "
    "its own, so pass the database path and run it in a thread: "
    "`await asyncio.to_thread(sqlite_tether.{kind}, 'app.db')`."
)


def _describe(obj: Any) -> str:
    return type(obj).__module__ + "." + type(obj).__name__


def _is_async(conn: Any) -> bool:
    """A connection whose methods are coroutine functions (aiosqlite.Connection and the like)."""
    return any(inspect.iscoroutinefunction(getattr(conn, name, None))
               for name in ("enable_load_extension", "load_extension", "commit", "close", "cursor"))


def load(conn: Any) -> None:
    """Loads tether on `conn` (a sqlite3 or pysqlite3 connection). Extension loading is turned
    on for the load and off again after it, so SQL cannot call load_extension() afterwards.
    Load it on every connection that calls tether_* functions. An aiosqlite connection takes
    `await load_async(db)` instead (load() raises TypeError for it)."""
    if _is_async(conn):
        raise TypeError(_ASYNC_LOAD.format(what=_describe(conn)))
    enable = getattr(conn, "enable_load_extension", None)
    if enable is None or not hasattr(conn, "load_extension"):
        raise TetherError(_NO_EXTENSIONS.format(what=_describe(conn), fix=_NO_EXTENSIONS_LOAD))
    path = loadable_path()
    enable(True)
    try:
        conn.load_extension(path)
    finally:
        enable(False)


async def load_async(conn: Any) -> None:
    """load() for an asynchronous connection (aiosqlite): `await sqlite_tether.load_async(db)`."""
    enable = getattr(conn, "enable_load_extension", None)
    if not inspect.iscoroutinefunction(enable) or not hasattr(conn, "load_extension"):
        raise TypeError("sqlite-tether: load_async() needs an aiosqlite connection, got "
                        f"{_describe(conn)} (use load() for a sqlite3 connection)")
    path = loadable_path()
    try:
        await enable(True)
    except AttributeError as error:  # aiosqlite over a sqlite3 without extension loading
        raise TetherError(
            _NO_EXTENSIONS.format(what=_describe(conn), fix=_NO_EXTENSIONS_LOAD)) from error
    try:
        await conn.load_extension(path)
    finally:
        await enable(False)


# ---------------------------------------------------------------------------- sync helpers
Database = Union[str, "os.PathLike[str]", Any]


_IN_MEMORY = (
    "sqlite-tether: {kind}() opens its own connection to the database file, and this "
    "{what} is in memory (or temporary): call SELECT tether_{kind}() on the connection that "
    "holds it instead"
)


def _open_uri(path: str) -> str:
    """`path` as a URI that opens an existing database only (mode=rw never creates a file)."""
    if path.startswith("file:"):  # the caller's own URI: keep it, but never create the file
        query = path.partition("?")[2]
        if any(part.startswith("mode=") for part in query.split("&")):
            return path
        return path + ("&" if "?" in path else "?") + "mode=rw"
    return pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=rw"


def _target(kind: str, database: Database, driver: Any) -> tuple:
    """(what to open, whether it is a URI, the file to name in errors, driver module) for
    `database`: a path, or a connection whose main file is used."""
    if isinstance(database, (str, bytes, os.PathLike)):
        path = os.fsdecode(database)
        if path in ("", ":memory:"):
            raise TetherError(_IN_MEMORY.format(kind=kind, what="database"))
        if not path.startswith("file:") and not os.path.isfile(path):
            shown = path if os.path.isabs(path) else f"{path} (in {os.getcwd()})"
            raise TetherError(
                f"sqlite-tether: no such database: {shown}. {kind}() opens an existing database "
                "file and never creates one: check the path (and the working directory)")
        return _open_uri(path), True, path, driver or sqlite3
    if _is_async(database):
        raise TypeError(_ASYNC_SYNC.format(kind=kind, what=_describe(database)))
    execute = getattr(database, "execute", None)
    if execute is None:
        raise TypeError("sqlite-tether: expected a database path or a sqlite3 connection, got "
                        f"{type(database).__name__}")
    try:
        rows = execute("PRAGMA database_list").fetchall()
    except Exception as error:
        if "thread" in str(error):
            raise TetherError(
                "sqlite-tether: this connection belongs to another thread; pass the database "
                "path instead: asyncio.to_thread(sqlite_tether.sync, 'app.db')"
            ) from error
        raise
    file = next((row[2] for row in rows if row[1] == "main"), "")
    if not file:
        raise TetherError(_IN_MEMORY.format(kind=kind, what="connection's database"))
    if getattr(database, "in_transaction", False):
        # The cycle's own connection would wait busy_timeout for this transaction's lock, then
        # fail with "database is locked", as if another application held it.
        raise TetherError(
            "sqlite-tether: this connection has an open transaction (changes not committed yet): "
            f"commit it first (conn.commit()), then call {kind}(). {kind}() runs on a connection "
            "of its own, which cannot write while this transaction holds the database. Python's "
            "sqlite3 opens a transaction by itself at the first INSERT, UPDATE or DELETE (the "
            "default isolation_level): commit after writing, or connect with "
            "isolation_level=None (autocommit)."
        )
    module = driver or importlib.import_module(type(database).__module__)
    return file, file.startswith("file:"), file, module


def _cycle(kind: str, database: Database, config: Optional[Mapping[str, Any]],
           busy_timeout: float, driver: Any) -> SyncResult:
    file, uri, shown, module = _target(kind, database, driver)
    try:
        conn = module.connect(file, timeout=busy_timeout, isolation_level=None, uri=uri)
    except Exception as error:  # the driver's OperationalError ("unable to open database file")
        if type(error).__name__ != "OperationalError":
            raise
        raise TetherError(f"sqlite-tether: cannot open the database {shown}: {error}") from error
    try:
        if not hasattr(conn, "enable_load_extension") or not hasattr(conn, "load_extension"):
            raise TetherError(_NO_EXTENSIONS.format(what=_describe(conn), fix=_NO_EXTENSIONS_SYNC))
        load(conn)
        for key, value in (config or {}).items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            conn.execute("SELECT tether_config(?, ?, 'connection')", (key, value)).fetchone()
        (text,) = conn.execute(f"SELECT tether_{kind}()").fetchone()
    finally:
        conn.close()
    return json.loads(text)


def sync(database: Database, *, config: Optional[Mapping[str, Any]] = None,
         busy_timeout: float = 5.0, driver: Any = None) -> SyncResult:
    """Pushes then pulls, on a connection of its own to `database` (a path, or a connection
    whose file is used), and returns the result. Blocks only the calling thread: run it in a
    thread or with `await asyncio.to_thread(sync, path)`. `config` gives connection-scoped
    settings for this cycle only (e.g. {"auth_token": ...}); settings stored in the database
    and TETHER_* environment values apply as usual. tether's errors are raised as the driver's
    exceptions (sqlite3.OperationalError)."""
    return _cycle("sync", database, config, busy_timeout, driver)


def push(database: Database, *, config: Optional[Mapping[str, Any]] = None,
         busy_timeout: float = 5.0, driver: Any = None) -> SyncResult:
    """Like sync(), push only."""
    return _cycle("push", database, config, busy_timeout, driver)


def pull(database: Database, *, config: Optional[Mapping[str, Any]] = None,
         busy_timeout: float = 5.0, driver: Any = None) -> SyncResult:
    """Like sync(), pull only."""
    return _cycle("pull", database, config, busy_timeout, driver)


def status(conn: Any) -> Status:
    """tether_status() of a connection tether is loaded on, parsed."""
    (text,) = conn.execute("SELECT tether_status()").fetchone()
    return json.loads(text)
