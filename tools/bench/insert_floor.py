#!/usr/bin/python3
"""The floor of capturing an INSERT with a trigger: what each piece a capture trigger could write
costs on its own, without tether.

Usage: /usr/bin/python3 tools/bench/insert_floor.py [ROWS=100000] [ROUNDS=5]

A table shaped like a tracked one (a `tether_id` column with a unique index, NULL here) and a
copy of tether's queue table (0001 schema plus local_pk, its two indexes). Each variant is an
AFTER INSERT trigger; ROWS single-row INSERTs run with Python's executemany in one transaction
(Debian's SQLite). Prints µs per row, min / median / max of ROUNDS fresh databases. These are
measurements of pieces, not capture designs: none of them captures correctly on its own.
"""
import os
import sqlite3
import sys
import tempfile

from bench_timing import TASK_INSERT, per_row_in_transaction, spread, task_rows

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5

QUEUE = """CREATE TABLE log (
    id INTEGER PRIMARY KEY, mutation_id TEXT, entity_id TEXT NOT NULL, model TEXT NOT NULL,
    operation TEXT NOT NULL, payload TEXT NOT NULL DEFAULT '{}', version INTEGER,
    timestamp INTEGER NOT NULL, sync_status TEXT NOT NULL DEFAULT 'pending', synced_at TEXT,
    rejection_reason TEXT, rejection_data TEXT, retry_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, local_pk TEXT);
CREATE UNIQUE INDEX log_mutation_id ON log (mutation_id) WHERE mutation_id IS NOT NULL;
CREATE INDEX log_unsynced ON log (sync_status, id) WHERE sync_status <> 'synced';
CREATE TABLE row_keys (table_id INTEGER NOT NULL, row_pk ANY NOT NULL, sync_key TEXT NOT NULL,
    PRIMARY KEY (table_id, row_pk)) WITHOUT ROWID;"""
NOW = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
ALPHABET = "'0123456789ABCDEFGHJKMNPQRSTVWXYZ'"
ULID = ("(SELECT " + " || ".join(
    f"substr({ALPHABET}, ((ms >> {shift}) & 31) + 1, 1)" for shift in range(45, -1, -5))
    + f" || hex(randomblob(8)) FROM (SELECT {NOW} AS ms))")
PAYLOAD = ("json_object('title', NEW.title, 'status', NEW.status, 'priority', NEW.priority, "
           "'due_date', NEW.due_date)")
ROW = f"INSERT INTO log (entity_id, model, operation, payload, timestamp, local_pk) VALUES"
VARIANTS = [
    ("untracked (no trigger)", ""),
    ("queue row, constant payload", f"{ROW} ('', 'Task', 'create', '{{}}', {NOW}, NEW.id)"),
    ("+ plain-SQL ULID as the key", f"{ROW} ({ULID}, 'Task', 'create', '{{}}', {NOW}, NEW.id)"),
    ("+ json_object payload", f"{ROW} ('', 'Task', 'create', {PAYLOAD}, {NOW}, NEW.id)"),
    ("+ a partial index on local_pk",
     f"{ROW} ('', 'Task', 'create', '{{}}', {NOW}, NEW.id)", "CREATE INDEX log_locator ON log (local_pk) WHERE entity_id = ''"),
    ("+ a tether_row_keys record",
     f"{ROW} ('', 'Task', 'create', '{{}}', {NOW}, NEW.id); "
     "INSERT OR REPLACE INTO row_keys VALUES (1, NEW.id, '')"),
]


def per_row(body, extra):
    conn = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "x.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(QUEUE + extra + ";"
                       "CREATE TABLE t (id INTEGER PRIMARY KEY, title TEXT NOT NULL, status TEXT,"
                       " priority INTEGER, due_date TEXT, tether_id TEXT);"
                       "CREATE UNIQUE INDEX t_key ON t (tether_id);")
    if body:
        conn.execute(f"CREATE TRIGGER capture AFTER INSERT ON t BEGIN {body}; END")
    result = per_row_in_transaction(conn, TASK_INSERT, task_rows(ROWS))
    conn.close()
    return result


def main():
    print(f"SQLite {sqlite3.sqlite_version}, {ROWS} single-row INSERTs in one transaction, "
          f"{ROUNDS} rounds, µs per row (min / median / max)\n")
    for name, body, *extra in VARIANTS:
        samples = [per_row(body, extra[0] if extra else "") for _ in range(ROUNDS)]
        print(f"{name:36} {spread(samples)}", flush=True)


main()
