#!/usr/bin/python3
"""Why a captured write costs what it does: SQLite's statement journal, without tether.

Usage: /usr/bin/python3 tools/bench/statement_journal.py [ROWS=50000] [ROUNDS=5]

A table t gets an AFTER DELETE trigger that inserts one row into a log table; ROWS single-row
DELETEs then run (executemany, one transaction). The trigger body varies only in what it writes:
a constant, or the same through a function call (upper(), julianday('now')). SQLite gives a
statement a statement journal when it may write several rows (any trigger does) and may abort
(a NOT NULL or UNIQUE check, RAISE(ABORT), or any call of a function, which can fail): then every
page the statement changes is first copied into that journal. The journal lives in memory until
one statement of the transaction puts more than 64 KiB in it; from then on, until COMMIT, it is
a temporary file and every write pays file writes. "spilled" forces that with one large UPDATE
at the start of the transaction, as a long transaction (bulk load, migration) does on its own;
"temp_store=MEMORY" is the same with the journal kept in memory whatever its size.

Prints µs per DELETE: min / median / max of ROUNDS fresh databases.
"""
import os
import sqlite3
import sys
import tempfile

from bench_timing import per_row_in_transaction, spread

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5

BODIES = [
    ("no trigger", None),
    ("constant", "INSERT INTO log (e) VALUES ('x')"),
    ("constant, NOT NULL column", "INSERT INTO log_nn (e) VALUES ('x')"),
    ("constant, NOT NULL, INSERT OR FAIL", "INSERT OR FAIL INTO log_nn (e) VALUES ('x')"),
    ("upper(OLD.title)", "INSERT INTO log (e) VALUES (upper(OLD.title))"),
    ("julianday('now')", "INSERT INTO log (e) VALUES (julianday('now'))"),
    ("CASE / || / coalesce (no function call)",
     "INSERT INTO log (e) VALUES (CASE WHEN OLD.title IS NULL THEN 'a' ELSE coalesce(OLD.title, '') || 'b' END)"),
]
MODES = ("in memory", "spilled", "spilled, temp_store=MEMORY")


def per_row(body, mode):
    path = os.path.join(tempfile.mkdtemp(), "x.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    if mode.endswith("temp_store=MEMORY"):
        conn.execute("PRAGMA temp_store = MEMORY")
    conn.executescript(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, title TEXT);"
        "CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
        "CREATE TABLE log (id INTEGER PRIMARY KEY, e TEXT);"
        "CREATE TABLE log_nn (id INTEGER PRIMARY KEY, e TEXT NOT NULL);"
    )
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t (title) VALUES (?)", [("x" * 30,)] * ROWS)
    conn.executemany("INSERT INTO big (v) VALUES (?)", [("y" * 100,)] * 5000)
    conn.execute("COMMIT")
    if body:
        conn.execute(f"CREATE TRIGGER tr AFTER DELETE ON t BEGIN {body}; END")
    # Many rows, NOT NULL may abort: journals every page of `big` (far over 64 KiB).
    spill = "UPDATE big SET v = v || 'z'" if mode.startswith("spilled") else None
    result = per_row_in_transaction(conn, "DELETE FROM t WHERE id = ?",
                                    [(i,) for i in range(1, ROWS + 1)], before=spill)
    conn.close()
    return result


def main():
    print(f"SQLite {sqlite3.sqlite_version}, {ROWS} single-row DELETEs in one transaction, "
          f"{ROUNDS} rounds, µs per row (min / median / max)\n")
    print(f"{'trigger body':42}" + "".join(f"{m:>30}" for m in MODES))
    for name, body in BODIES:
        cells = []
        for mode in MODES:
            samples = [per_row(body, mode) for _ in range(ROUNDS)]
            cells.append(spread(samples))
        print(f"{name:42}" + "".join(f"{c:>30}" for c in cells), flush=True)


main()
