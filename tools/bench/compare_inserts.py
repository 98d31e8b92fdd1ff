#!/usr/bin/python3
"""Two builds of tether side by side on the cost of a captured INSERT (keys on insert).

Usage: /usr/bin/python3 tools/bench/compare_inserts.py LIB_A LIB_B [ROWS=30000] [ROUNDS=7]

For each round and each build (alternating): a fresh WAL database with
`t (id INTEGER PRIMARY KEY, title, status, priority)` tracked by a connection that loaded the
build, then ROWS single-row INSERTs by a connection that never loaded it, with Python's
`executemany` in one transaction. Prints the process CPU time per INSERT in µs, min / median / max
of the rounds, for each build.
"""
import os
import sqlite3
import sys
import time

from bench_timing import tracked_database


def per_insert(lib, rows):
    path, setup = tracked_database(
        lib, "CREATE TABLE t (id INTEGER PRIMARY KEY, title TEXT, status TEXT, priority INTEGER)")
    setup.close()
    writer = sqlite3.connect(path, isolation_level=None)
    values = [(f"t{i}", "open", i) for i in range(rows)]
    writer.execute("BEGIN")
    start = time.process_time()
    writer.executemany("INSERT INTO t (title, status, priority) VALUES (?, ?, ?)", values)
    spent = time.process_time() - start
    writer.execute("COMMIT")
    writer.close()
    return spent / rows * 1e6


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    libs = [os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 30000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 7
    times = {lib: [] for lib in libs}
    for _ in range(rounds):
        for lib in libs:
            times[lib].append(per_insert(lib, rows))
    print(f"{rows} INSERTs per sample, {rounds} rounds alternating, CPU µs per INSERT (min / median / max)")
    for lib in libs:
        t = sorted(times[lib])
        print(f"{lib}: {t[0]:.2f} / {t[len(t) // 2]:.2f} / {t[-1]:.2f}")


main()
