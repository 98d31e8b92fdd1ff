#!/usr/bin/python3
"""An experiment, not a way to run tether: the sync key given by a column DEFAULT instead of by the
insert trigger's UPDATE, measured by cr-sqlite's method (crsql_method.py).

Usage: /usr/bin/python3 tools/bench/default_key.py LIBTETHER_PATH [ITERATIONS=2000] [ROUNDS=5]
       [baseline]

The tracked tables are created with `tether_id TEXT DEFAULT (<plain-SQL ULID>)` before
tether_track, so a row arrives with its key and the trigger's UPDATE that writes the key finds
nothing to do. With `baseline` they are created as crsql_method.py creates them. Compare the two
runs' INSERT rows. (tether cannot give an existing table such a DEFAULT: ALTER TABLE refuses a
non-constant default on a table with rows; only rewriting the table's CREATE statement through
PRAGMA writable_schema could, which SQLITE_DBCONFIG_DEFENSIVE refuses.)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crsql_method as m  # noqa: E402

MS = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
ALPHABET = "'0123456789ABCDEFGHJKMNPQRSTVWXYZ'"
# A DEFAULT may not hold a subquery: the time expression is written once per character.
ULID = " || ".join(
    f"substr({ALPHABET}, ((({MS}) >> {shift}) & 31) + 1, 1)" for shift in range(45, -1, -5)
) + " || hex(randomblob(8))"
BASELINE = "baseline" in sys.argv[4:]


def prepare(dirname, lib, tracked, writer, options, without_index):
    db = os.path.join(dirname, "bench.db")
    setup = m.connect(db, lib if tracked else None)
    for t in m.TABLES:
        if tracked and not BASELINE:
            setup.execute(
                f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c TEXT, tether_id TEXT DEFAULT ({ULID}))"
            )
        else:
            setup.execute(f"CREATE TABLE {t} {m.SCHEMA}")
        if tracked:
            setup.execute(f"SELECT tether_track('{t}', '{options}')")
    setup.close()
    return m.connect(db, lib if writer == "loaded" else None), db


m.prepare = prepare
sys.argv = [a for a in sys.argv if a != "baseline"]
print("EXPERIMENT:", "baseline (keys written by the trigger)" if BASELINE else "keys given by a column DEFAULT")
m.main()
