"""Timing shared by the Python bench scripts next to this file (they import it by name: Python
puts a script's own directory first on its module path)."""
import statistics
import time

TASK_INSERT = "INSERT INTO t (title, status, priority, due_date) VALUES (?, ?, ?, ?)"


def task_rows(count):
    """`count` rows for TASK_INSERT."""
    return [(f"title {i}", "open", i % 5, "2026-01-01") for i in range(count)]


def per_row_in_transaction(conn, sql, rows, before=None):
    """µs per row of `executemany(sql, rows)` inside one transaction (COMMIT not timed); `before`
    is run first inside the transaction, untimed."""
    conn.execute("BEGIN")
    if before:
        conn.execute(before)
    started = time.perf_counter()
    conn.executemany(sql, rows)
    elapsed = time.perf_counter() - started
    conn.execute("COMMIT")
    return elapsed / len(rows) * 1e6


def spread(samples):
    """'min / median / max' of the samples, two decimals."""
    return f"{min(samples):.2f} / {statistics.median(samples):.2f} / {max(samples):.2f}"


def tracked_database(lib, schema, table="t"):
    """A fresh WAL database file holding `schema`, with `table` tracked (keys on insert) by a
    connection that loaded `lib`: returns its path and that connection."""
    import os
    import sqlite3
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "x.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(os.path.splitext(lib)[0])
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(schema)
    conn.execute(f"SELECT tether_track('{table}')")
    return path, conn
