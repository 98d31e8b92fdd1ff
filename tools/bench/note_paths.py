#!/usr/bin/python3
"""Two builds of tether side by side on the writes whose triggers read or write REPLACE notes,
counted in CPU instructions (valgrind's callgrind), which a busy machine does not change.

Usage: /usr/bin/python3 tools/bench/note_paths.py LIB_A LIB_B [ROWS=3000] [WORKLOAD,...]

Workloads, each on a fresh WAL database tracked by a connection that loaded the build (which then
builds a push body, indexing the queue) and then written by a connection that never loaded it, ROWS statements with `executemany` in one
transaction:
- insert_plain: INSERT of a new row into `p (id INTEGER PRIMARY KEY, name TEXT, n)`, a table
  with no UNIQUE column (the lean insert trigger; the others' programs are started and stop at
  their WHEN, but SQLite zeroes each program's registers first);
- insert_unique: INSERT of a new row into `u (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n)`
  (the BEFORE INSERT watch runs for every row of a table with a UNIQUE column);
- replace_pk: INSERT OR REPLACE onto an existing keyed row's primary key (the full path);
- replace_unique: INSERT OR REPLACE through the UNIQUE column, a new row number (the full path);
- key_given: INSERT of a new row with its key given (the full path, as a pulled row's insert);
- update_unique: UPDATE of an existing row's UNIQUE column to a new value (the BEFORE UPDATE
  watch runs);
- update_other: UPDATE of a column that is not unique (the update trigger only).
Prints instructions per statement for each build: the run with ROWS statements minus the same
run with none, divided by ROWS.
"""
import os
import sys

from callgrind import instructions

CHILD = r'''
import os, sqlite3, sys
lib, workload, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
path = os.path.join(sys.argv[4], "x.db")
setup = sqlite3.connect(path, isolation_level=None)
setup.enable_load_extension(True)
setup.load_extension(os.path.splitext(lib)[0])
setup.execute("PRAGMA journal_mode = WAL")
setup.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)")
setup.execute("SELECT tether_track('u')")
setup.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)")
setup.execute("SELECT tether_track('p')")
setup.execute("BEGIN")
setup.executemany("INSERT INTO u (id, name, n) VALUES (?, ?, 0)", [(i + 1, f"r{i}") for i in range(rows)])
keys = [setup.execute("SELECT tether_ulid()").fetchone()[0] for _ in range(rows)]
setup.execute("COMMIT")
# A write of tether's (the body of a push, no network) indexes the queue, so the workloads start from
# the same state with every build (since schema 10 it also writes the records the setup's inserts
# left, which the first REPLACE would otherwise write).
setup.execute("SELECT tether_push_request()").fetchone()
setup.close()
w = sqlite3.connect(path, isolation_level=None)
w.execute("BEGIN")
if workload == "insert_plain":
    w.executemany("INSERT INTO p (name, n) VALUES (?, 1)", [(f"new{i}",) for i in range(rows)])
elif workload == "insert_unique":
    w.executemany("INSERT INTO u (name, n) VALUES (?, 1)", [(f"new{i}",) for i in range(rows)])
elif workload == "replace_pk":
    w.executemany("INSERT OR REPLACE INTO u (id, name, n) VALUES (?, ?, 2)", [(i + 1, f"x{i}") for i in range(rows)])
elif workload == "replace_unique":
    w.executemany("INSERT OR REPLACE INTO u (name, n) VALUES (?, 3)", [(f"r{i}",) for i in range(rows)])
elif workload == "update_unique":
    w.executemany("UPDATE u SET name = ? WHERE id = ?", [(f"y{i}", i + 1) for i in range(rows)])
elif workload == "update_other":
    w.executemany("UPDATE u SET n = n + 1 WHERE id = ?", [(i + 1,) for i in range(rows)])
elif workload == "key_given":
    w.executemany("INSERT INTO u (name, n, tether_id) VALUES (?, 4, ?)", [(f"k{i}", k) for i, k in enumerate(keys)])
w.execute("COMMIT")
'''


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    libs = sys.argv[1:3]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    print(f"instructions per statement, {rows} statements (callgrind; the run minus one with none)")
    print("| workload | " + " | ".join(os.path.basename(l) for l in libs) + " | B / A |")
    print("|---|---|---|---|")
    workloads = ["insert_plain", "insert_unique", "replace_pk", "replace_unique", "key_given",
                 "update_unique", "update_other"]
    if len(sys.argv) > 4:
        workloads = sys.argv[4].split(",")
    for workload in workloads:
        per = []
        for lib in libs:
            # Setup writes `rows` rows too: subtract the same run with the workload left out.
            whole = instructions(CHILD, lib, workload, rows)
            setup_only = instructions(CHILD, lib, "none", rows)
            per.append((whole - setup_only) / rows)
        print(f"| {workload} | {per[0]:,.0f} | {per[1]:,.0f} | {per[1] / per[0]:.3f} |")


if __name__ == "__main__":
    main()
