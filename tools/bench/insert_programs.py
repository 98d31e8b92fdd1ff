#!/usr/bin/python3
"""What the trigger programs on a table cost an INSERT that does not run them, in CPU instructions
(valgrind's callgrind), which a busy machine does not change. An experiment, not a way to run tether:
the variants drop or empty generated triggers, which breaks capture.

Usage: /usr/bin/python3 tools/bench/insert_programs.py LIBTETHER_PATH [ROWS=1000] [VARIANT,...]

A table `p (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)` is tracked (keys on insert) by a
connection that loaded the build, then a connection that never loaded it inserts ROWS new rows
without a key (the lean trigger's path) with `executemany` in one transaction. Prints instructions
per INSERT (the run with ROWS rows minus the same run with none) for each variant:
- untracked: the table never tracked;
- tracked: the triggers as tether renders them;
- full_path_emptied: the full insert path (`tether_insert_p`, whose WHEN is false for these rows)
  with its body cut to one `SELECT 1`, its WHEN kept;
- full_path_dropped: that trigger dropped;
- guard_dropped: the key guard dropped (the lean trigger's key write runs it).
The lean trigger is created again after any change so that it still fires first.
"""
import os
import sys

from callgrind import instructions

CHILD = r'''
import os, sqlite3, sys
lib, variant, rows, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
path = os.path.join(work, "x.db")
s = sqlite3.connect(path, isolation_level=None)
s.enable_load_extension(True)
s.load_extension(os.path.splitext(lib)[0])
s.execute("PRAGMA journal_mode = WAL")
s.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)")
if variant != "untracked":
    s.execute("SELECT tether_track('p')")
sql = lambda name: s.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (name,)).fetchone()[0]
if variant == "full_path_emptied":
    full = sql("tether_insert_p")
    s.execute("DROP TRIGGER tether_insert_p")
    s.execute(full[:full.index("BEGIN")] + "BEGIN SELECT 1; END")
elif variant == "full_path_dropped":
    s.execute("DROP TRIGGER tether_insert_p")
elif variant == "guard_dropped":
    s.execute("DROP TRIGGER tether_guard_p")
if variant not in ("untracked", "tracked"):
    lean = sql("tether_keyless_p")
    s.execute("DROP TRIGGER tether_keyless_p")
    s.execute(lean)
s.close()
w = sqlite3.connect(path, isolation_level=None)
w.execute("BEGIN")
w.executemany("INSERT INTO p (name, n) VALUES (?, 1)", [(f"new{i}",) for i in range(rows)])
w.execute("COMMIT")
'''
VARIANTS = ["untracked", "tracked", "full_path_emptied", "full_path_dropped", "guard_dropped"]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    lib = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    variants = sys.argv[3].split(",") if len(sys.argv) > 3 else VARIANTS
    print(f"instructions per INSERT without a key, {rows} rows (callgrind; the run minus one with none)")
    for variant in variants:
        per = (instructions(CHILD, lib, variant, rows) - instructions(CHILD, lib, variant, 0)) / rows
        print(f"{variant:20} {per:10,.0f}", flush=True)


if __name__ == "__main__":
    main()
