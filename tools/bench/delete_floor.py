#!/usr/bin/python3
"""What each part of a tracked DELETE costs, in cr-sqlite's small transactions.

Usage: /usr/bin/python3 tools/bench/delete_floor.py LIBTETHER_PATH [ITERATIONS=2000] [ROUNDS=5] [long]

Four tables as in crsql_method.py, tracked with {"keys": "on_sync"} and synced keys given (the
key pass), then the generated AFTER DELETE trigger is replaced by a part of itself, and a plain
connection (tether not loaded) deletes every row: each iteration one single-row DELETE per
table, then COMMIT (WAL, synchronous=NORMAL). Variants, in the order printed:
  untracked      the same tables, never tracked (no sync key column, no triggers)
  keyed, no trigger    tracked, the delete trigger dropped: the sync key's index entry alone
  queue row      the trigger logs the delete and nothing else
  queue + record       ... and drops the row's tether_row_keys record
  generated      the trigger tether generates (queue row, record, REPLACE notes)
With `long`, every DELETE runs in one transaction instead (`executemany` per table, as in
tether-bench's long transaction). Microseconds per DELETE, min / median of ROUNDS (wall clock and CPU), and the median's ratio
to untracked. Every sample uses a fresh database.
"""
import gc
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

from crsql_method import TABLES, arguments, connect  # the same tables and connections

NOW = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
VARIANTS = ("untracked", "keyed, no trigger", "queue row", "queue + record", "generated")


def replace_delete_trigger(conn, variant):
    for t in TABLES:
        if variant == "generated":
            continue
        table_id = conn.execute(
            "SELECT table_id FROM tether_tracked_tables WHERE table_name = ?", (t,)).fetchone()[0]
        conn.execute(f'DROP TRIGGER "tether_delete_{t}"')
        queue = f"""INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
            SELECT OLD."tether_id", 'M', 'delete', '{{}}', {NOW}
             WHERE OLD."tether_id" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tether_capture_suppressed);"""
        record = f'DELETE FROM tether_row_keys WHERE table_id = {table_id} AND row_pk = OLD."id";'
        body = {"keyed, no trigger": None, "queue row": queue, "queue + record": queue + record}[variant]
        if body:
            conn.execute(f'CREATE TRIGGER "tether_delete_{t}" AFTER DELETE ON "{t}" BEGIN {body} END')


def sample(lib, variant, iterations, long):
    dirname = tempfile.mkdtemp(prefix="delete-floor-")
    try:
        db = os.path.join(dirname, "bench.db")
        setup = connect(db, lib)
        for t in TABLES:
            setup.execute(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c TEXT)")
            if variant != "untracked":
                setup.execute(f"""SELECT tether_track('{t}', '{{"keys": "on_sync"}}')""")
        for i in range(1, iterations + 1):
            setup.execute("BEGIN")
            for t in TABLES:
                setup.execute(f"INSERT INTO {t} (a, b, c) VALUES (?, ?, ?)", (f"row {i}", i, "some text"))
            setup.execute("COMMIT")
        if variant != "untracked":
            setup.execute("SELECT tether_pull_request()").fetchone()  # the key pass
            replace_delete_trigger(setup, variant)
        setup.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        setup.close()
        conn = connect(db)
        gc.disable()
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            if long:
                conn.execute("BEGIN")
                for t in TABLES:
                    conn.executemany(f"DELETE FROM {t} WHERE id = ?", ((i,) for i in range(1, iterations + 1)))
                conn.execute("COMMIT")
            for i in range(1, iterations + 1) if not long else ():
                conn.execute("BEGIN")
                for t in TABLES:
                    conn.execute(f"DELETE FROM {t} WHERE id = ?", (i,))
                conn.execute("COMMIT")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            gc.enable()
        left = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES)
        assert left == 0, f"{left} rows left"
        conn.close()
        return wall * 1e6 / (4 * iterations), cpu * 1e6 / (4 * iterations)
    finally:
        shutil.rmtree(dirname)


def main():
    lib, iterations, rounds = arguments(__doc__)
    long = "long" in sys.argv[4:]
    print("command:", " ".join([sys.executable] + sys.argv))
    shape = "one transaction of 4 x {iterations} single-row DELETEs" if long else "{iterations} iterations of 4 single-row DELETEs + COMMIT"
    print(f"SQLite {sqlite3.sqlite_version}; {shape.format(iterations=iterations)}; {rounds} rounds")
    results = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for v in VARIANTS:
            results[v].append(sample(lib, v, iterations, long))
    base = statistics.median(w for w, _ in results["untracked"])
    print(f"{'variant':<20} {'wall min / median us':>22} {'ratio':>6} {'cpu min / median us':>21}")
    for v in VARIANTS:
        walls = [w for w, _ in results[v]]
        cpus = [c for _, c in results[v]]
        median = statistics.median(walls)
        print(f"{v:<20} {min(walls):9.2f} / {median:7.2f} {median / base:5.2f}x "
              f"{min(cpus):9.2f} / {statistics.median(cpus):7.2f}")


if __name__ == "__main__":
    main()
