"""Where a captured INSERT's time goes: the insert trigger's statements, one left out at a time.

Usage: /usr/bin/python3 tools/bench/insert_trigger_parts.py LIBTETHER_PATH [ROWS=30000] [ROUNDS=3]

Tracks a table (id INTEGER PRIMARY KEY, title, status, priority, due_date), takes the trigger
tether generated for an INSERT without a key (`tether_keyless_t` since triggers v5; the whole
`tether_insert_t` before), and times ROWS single-row INSERTs (executemany, one transaction,
Debian's Python sqlite3) with: no tracking; the full trigger; the trigger without each of its
statements in turn; and with only the statements named by KEEP sets below (indices in the
keyless trigger: 0 the queue row, 1 the key written into the row, 2 and 3 the row-key record, 4
the clearing of notes). Prints the median microseconds per row. Leaving a statement out breaks
capture: these are measurements, not candidates.
"""
import os
import sqlite3
import sys
import tempfile

from bench_timing import TASK_INSERT, per_row_in_transaction, task_rows

LIB = os.path.splitext(os.path.abspath(sys.argv[1]))[0]
ROWS = int(sys.argv[2]) if len(sys.argv) > 2 else 30000
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
SCHEMA = "CREATE TABLE t (id INTEGER PRIMARY KEY, title TEXT NOT NULL, status TEXT, priority INTEGER, due_date TEXT)"
KEEP = [{0}, {0, 1}, {0, 1, 3}, {0, 1, 2, 3}]


def connect(track):
    path = os.path.join(tempfile.mkdtemp(), "x.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(LIB)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(SCHEMA)
    if track:
        conn.execute("SELECT tether_track('t')")
    return conn


def trigger_name(conn):
    """The trigger an INSERT without a key runs: tether_keyless_t, or tether_insert_t before v5."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger'")]
    return "tether_keyless_t" if "tether_keyless_t" in names else "tether_insert_t"


def generated_trigger():
    conn = connect(True)
    return conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (trigger_name(conn),)).fetchone()[0]


def statements(sql):
    start = sql.index("BEGIN") + len("BEGIN")
    body = sql[start:sql.rindex("END")]
    return sql[:start], [part.strip() for part in body.split(";\n") if part.strip()]


def per_row(trigger):
    conn = connect(trigger is not None)
    if trigger is not None:
        conn.execute(f"DROP TRIGGER {trigger_name(conn)}")
        conn.execute(trigger)
    return per_row_in_transaction(conn, TASK_INSERT, task_rows(ROWS))


def median(trigger):
    return sorted(per_row(trigger) for _ in range(ROUNDS))[ROUNDS // 2]


def main():
    full = generated_trigger()
    head, parts = statements(full)
    variant = lambda kept: head + "\n" + ";\n".join(p for i, p in enumerate(parts) if i in kept) + ";\nEND"
    print(f"{ROWS} single-row INSERTs, median of {ROUNDS}, µs per row")
    print(f"{'untracked':60} {median(None):7.2f}")
    print(f"{'full trigger':60} {median(full):7.2f}")
    for index, part in enumerate(parts):
        kept = set(range(len(parts))) - {index}
        print(f"{'without ' + str(index) + ': ' + part[:45].replace(chr(10), ' '):60} {median(variant(kept)):7.2f}")
    for kept in KEEP:
        print(f"{'only ' + str(sorted(kept)):60} {median(variant(kept)):7.2f}")


main()
