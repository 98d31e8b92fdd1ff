#!/usr/bin/python3
"""What tether's first write after a long capture costs: ROWS rows inserted without a key (one
transaction, a connection that never loaded tether), then `SELECT tether_push_request()` timed, which
indexes the captured tail (in transactions of 10,000 rows) and, since schema 10, writes the rows'
row-key records the lean insert trigger left to it; then the push body is built. Builds side by side.

Usage: /usr/bin/python3 tools/bench/first_write_after_capture.py LIB_A LIB_B [ROWS=100000] [ROUNDS=5]

Prints, for each build, the insert time and the first write's time (min / median / max, ms).
"""
import os
import sqlite3
import sys
import time

from bench_timing import spread, tracked_database


def sample(lib, rows):
    path, tether = tracked_database(lib, "CREATE TABLE t (id INTEGER PRIMARY KEY, title TEXT, n INTEGER)")
    plain = sqlite3.connect(path, isolation_level=None)
    started = time.perf_counter()
    plain.execute("BEGIN")
    plain.executemany("INSERT INTO t (title, n) VALUES (?, ?)", ((f"row {i}", i) for i in range(rows)))
    plain.execute("COMMIT")
    inserted = time.perf_counter() - started
    started = time.perf_counter()
    tether.execute("SELECT tether_push_request()").fetchone()
    first_write = time.perf_counter() - started
    records = plain.execute("SELECT count(*) FROM tether_row_keys").fetchone()[0]
    assert records == rows, f"{records} records for {rows} rows"
    return inserted * 1e3, first_write * 1e3


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    libs = sys.argv[1:3]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    results = {lib: [] for lib in libs}
    for _ in range(rounds):
        for lib in libs:
            results[lib].append(sample(lib, rows))
    print(f"{rows} rows inserted in one transaction, then tether's first write; ms, min / median / max of {rounds}")
    for lib in libs:
        print(f"{os.path.basename(lib):24} insert {spread([s[0] for s in results[lib]])}"
              f"   first write {spread([s[1] for s in results[lib]])}")


if __name__ == "__main__":
    main()
