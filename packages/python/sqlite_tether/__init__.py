"""sqlite-tether: the tether SQLite extension, prebuilt, with a one-line loader.

    import sqlite3, sqlite_tether
    conn = sqlite3.connect("app.db")
    sqlite_tether.load(conn)                       # tether_* functions on this connection
    conn.execute("SELECT tether_track('tasks')")
    result = sqlite_tether.sync("app.db")          # typed SyncResult; safe in a thread
    result = await asyncio.to_thread(sqlite_tether.sync, "app.db")

`sync()`, `push()` and `pull()` open a connection of their own to the database file, so they
can run in any thread while the application keeps using its connections: `SELECT
tether_sync()` blocks its caller for as long as the server takes (up to `timeout_ms` per
request).
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
from typing import Any, Dict, List, Mapping, Optional, TypedDict, Union

__all__ = [
    "TetherError",
    "loadable_path",
    "load",
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
    sqlite3 cannot load extensions, a database without a file). Errors of tether itself come
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
    "/usr/bin/python3 (or a venv of it), or `pip install pysqlite3-binary` and pass a "
    "connection of `pysqlite3.dbapi2` to load()."
)


def load(conn: Any) -> None:
    """Loads tether on `conn` (a sqlite3 or pysqlite3 connection). Extension loading is turned
    on for the load and off again after it, so SQL cannot call load_extension() afterwards.
    Load it on every connection that calls tether_* functions."""
    enable = getattr(conn, "enable_load_extension", None)
    if enable is None or not hasattr(conn, "load_extension"):
        raise TetherError(_NO_EXTENSIONS.format(what=type(conn).__module__ + "." + type(conn).__name__))
    path = loadable_path()
    enable(True)
    try:
        conn.load_extension(path)
    finally:
        enable(False)


# ---------------------------------------------------------------------------- sync helpers
Database = Union[str, "os.PathLike[str]", Any]


def _target(database: Database, driver: Any) -> tuple:
    """(file, driver module) for `database`: a path, or a connection whose main file is used."""
    if isinstance(database, (str, bytes, os.PathLike)):
        return os.fsdecode(database), driver or sqlite3
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
        raise TetherError(
            "sqlite-tether: sync() opens its own connection to the database file, and this "
            "connection's database is in memory (or temporary): call SELECT tether_sync() on it "
            "instead"
        )
    return file, driver or importlib.import_module(type(database).__module__)


def _cycle(kind: str, database: Database, config: Optional[Mapping[str, Any]],
           busy_timeout: float, driver: Any) -> SyncResult:
    file, module = _target(database, driver)
    conn = module.connect(file, timeout=busy_timeout, isolation_level=None,
                          uri=file.startswith("file:"))
    try:
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
