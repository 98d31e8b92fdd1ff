"""What starting a sync costs with many tracked tables: `tether_pull_request()` (the work a sync
does before any HTTP: the schema check, the key pass and, since the keyless-row sweep, one look per
table for rows a write left without a key), timed against two builds side by side.

    /usr/bin/python3 tools/bench/sync_start.py BEFORE.so AFTER.so [TABLES=20] [CALLS=200] [ROUNDS=3]

Each table is tracked with keys on insert and holds 1,000 rows with their keys; nothing is pending.
Prints the median and the minimum of CALLS calls per build, table count and round."""
import os
import sqlite3
import statistics
import sys
import tempfile
import time


def timed(lib, tables, calls):
    work = tempfile.mkdtemp()
    conn = sqlite3.connect(os.path.join(work, "start.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.enable_load_extension(True)
    conn.load_extension(lib)
    for i in range(tables):
        conn.execute(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, title TEXT)")
        conn.executemany(f"INSERT INTO t{i} (title) VALUES (?)", [("x",)] * 1000)
        conn.execute(f"""SELECT tether_track('t{i}', '{{"backfill": false}}')""")
    conn.execute("SELECT tether_pull_request()")
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        conn.execute("SELECT tether_pull_request()").fetchone()
        times.append(time.perf_counter() - start)
    conn.close()
    return statistics.median(times) * 1e3, min(times) * 1e3


def main():
    before, after = sys.argv[1], sys.argv[2]
    tables = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    calls = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    for round_ in range(rounds):
        for name, lib in (("before", before), ("after", after)):
            for count in (1, tables):
                median, least = timed(lib, count, calls)
                print(f"round {round_ + 1} {name:<6} {count:>3} tables: median {median:.3f} ms, min {least:.3f} ms")


if __name__ == "__main__":
    main()
