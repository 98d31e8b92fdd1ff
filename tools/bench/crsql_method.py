#!/usr/bin/python3
"""Capture cost measured the way cr-sqlite publishes its write overhead.

Usage: /usr/bin/python3 tools/bench/crsql_method.py LIBTETHER_PATH [ITERATIONS=2000] [ROUNDS=5] [on_sync]
           [without_index=NAME]

cr-sqlite's method: Python's sqlite3 module, a file database in a temporary directory,
PRAGMA journal_mode=WAL and synchronous=NORMAL, four tables of the same shape. Each iteration
writes one row into each of the four tables and commits (so one transaction = 4 single-row
statements); an INSERT phase, then an UPDATE phase (one row of each table per iteration), then a
DELETE phase. The tracked run has the four tables tracked with tether_track; the untracked run
is the same on untracked tables. With `on_sync` the tables are tracked with {"keys": "on_sync"}:
rows get their keys from the pass a sync starts with, run (by a loaded connection) between the
INSERT and UPDATE phases and timed on its own, so the updates change keyed rows as after a sync.
`without_index=NAME` is an experiment, not a way to run tether: it drops that internal index
(e.g. tether_mutation_logs_unsynced) after tracking, to measure what writing it costs capture
(the key pass and the push then scan the whole queue).

Two writer kinds, each against its own baseline:
  loaded  the writer connection loaded libtether (untracked baseline: a loaded connection too)
  plain   the writer never loaded it; the tables were tracked by another connection, closed
          before the writes (untracked baseline: a plain connection on a database tether never
          touched)
Every sample uses a fresh database. Within a round the samples run untracked, tracked,
untracked, tracked (ABAB); rounds repeat that. Needs a Python whose sqlite3 can load extensions
(Debian's /usr/bin/python3 can; pyenv builds usually cannot).
"""
import gc
import os
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

TABLES = ("t1", "t2", "t3", "t4")
SCHEMA = "(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c TEXT)"
PHASES = ("INSERT", "UPDATE", "DELETE")


def load_name(path):
    """The library path without its suffix, as users write it (SQLite adds .so/.dylib/.dll)."""
    stem, ext = os.path.splitext(path)
    if ext in (".so", ".dylib", ".dll"):
        path = stem
    if os.sep not in path:
        path = "." + os.sep + path  # without a directory the loader searches the library path
    return path


def connect(db, lib=None):
    conn = sqlite3.connect(db, isolation_level=None)  # autocommit: explicit BEGIN/COMMIT below
    if lib is not None:
        conn.enable_load_extension(True)
        conn.load_extension(lib)
        conn.enable_load_extension(False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def prepare(dirname, lib, tracked, writer, options, without_index):
    """A fresh database with the four tables; returns the writer connection and the path."""
    db = os.path.join(dirname, "bench.db")
    setup = connect(db, lib if tracked else None)
    for t in TABLES:
        setup.execute(f"CREATE TABLE {t} {SCHEMA}")
        if tracked:
            setup.execute(f"SELECT tether_track('{t}', '{options}')")
    if tracked and without_index:
        setup.execute(f'DROP INDEX "{without_index}"')
    setup.close()
    return connect(db, lib if writer == "loaded" else None), db


def clock():
    return time.perf_counter(), time.process_time()


def since(start):
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def run_phases(conn, iterations, between=lambda: None):
    """Times the INSERT, UPDATE and DELETE phases; returns three (wall, cpu) pairs in seconds.
    `between` runs after the INSERT phase, untimed."""
    ins = [f"INSERT INTO {t} (a, b, c) VALUES (?, ?, ?)" for t in TABLES]
    upd = [f"UPDATE {t} SET a = ?, b = ? WHERE id = ?" for t in TABLES]
    dele = [f"DELETE FROM {t} WHERE id = ?" for t in TABLES]
    ex = conn.execute
    times = []
    gc.disable()
    try:
        start = clock()
        for i in range(1, iterations + 1):
            ex("BEGIN")
            for sql in ins:
                ex(sql, (f"row {i}", i, "some text"))
            ex("COMMIT")
        times.append(since(start))
        between()
        start = clock()
        for i in range(1, iterations + 1):
            ex("BEGIN")
            for sql in upd:
                ex(sql, (f"edited {i}", i + 1, i))
            ex("COMMIT")
        times.append(since(start))
        start = clock()
        for i in range(1, iterations + 1):
            ex("BEGIN")
            for sql in dele:
                ex(sql, (i,))
            ex("COMMIT")
        times.append(since(start))
    finally:
        gc.enable()
    for t in TABLES:
        left = ex(f"SELECT count(*) FROM {t}").fetchone()[0]
        assert left == 0, f"{t}: {left} rows left after the DELETE phase"
    return times


def sample(lib, tracked, writer, iterations, on_sync, without_index):
    """The three phases' times, and the key pass's (wall seconds; 0 unless `on_sync`)."""
    dirname = tempfile.mkdtemp(prefix="crsql-method-")
    options = '{"keys": "on_sync"}' if on_sync else "{}"
    key_pass = [0.0]

    def give_keys():
        if tracked and on_sync:
            keys = connect(db, lib)
            start = time.perf_counter()
            keys.execute("SELECT tether_pull_request()").fetchone()
            key_pass[0] = time.perf_counter() - start
            keys.close()

    try:
        conn, db = prepare(dirname, lib, tracked, writer, options, without_index)
        times = run_phases(conn, iterations, give_keys)
        if tracked:
            captured = conn.execute(
                "SELECT operation, count(*) FROM tether_mutation_logs GROUP BY operation ORDER BY operation"
            ).fetchall()
            want = [(op, 4 * iterations) for op in ("create", "delete", "update")]
            assert captured == want, f"captured {captured}, expected {want}"
        conn.close()
        return times, key_pass[0]
    finally:
        shutil.rmtree(dirname)


def arguments(usage):
    """LIBTETHER_PATH [ITERATIONS=2000] [ROUNDS=5] from the command line (the usage otherwise)."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit(usage)
    lib = load_name(sys.argv[1])
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    return lib, iterations, rounds


def main():
    lib, iterations, rounds = arguments(__doc__)
    on_sync = "on_sync" in sys.argv[4:]
    without_index = next((a.split("=", 1)[1] for a in sys.argv[4:] if a.startswith("without_index=")), None)
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        sys.exit("this Python's sqlite3 cannot load extensions: use Debian's /usr/bin/python3")

    probe = sqlite3.connect(":memory:")
    probe.enable_load_extension(True)
    probe.load_extension(lib)
    version = probe.execute("SELECT tether_version()").fetchone()[0]
    probe.close()

    print("command:", shlex.join([sys.executable] + sys.argv))
    print(f"python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, tether {version}, loaded as {lib!r}")
    print(f"cr-sqlite method: 4 tables {SCHEMA}, {iterations} iterations per phase, each iteration one")
    print("single-row statement per table then COMMIT; WAL, synchronous=NORMAL, file database;")
    print(f"{rounds} rounds, untracked/tracked interleaved (ABAB), fresh database per sample")
    print('tables tracked with {"keys": "on_sync"}' if on_sync else "tables tracked with keys on insert (the default)")
    print(f"EXPERIMENT: index {without_index} dropped after tracking\n" if without_index else "")

    writers = ("loaded", "plain")
    results = {(w, tr): [] for w in writers for tr in (False, True)}
    key_passes = {w: [] for w in writers}
    began = time.perf_counter()
    for r in range(rounds):
        for w in writers:
            for tracked in (False, True):
                times, key_pass = sample(lib, tracked, w, iterations, on_sync, without_index)
                results[(w, tracked)].append(times)
                if tracked:
                    key_passes[w].append(key_pass)
        print(f"round {r + 1}/{rounds} done ({time.perf_counter() - began:.1f} s)", file=sys.stderr)

    writes = 4 * iterations
    for k, clock_name in enumerate(("wall-clock", "CPU (process_time: user + sys of this process)")):
        print(f"{clock_name} time of one phase ({writes} single-row writes in {iterations} transactions), ms")
        print(f"{'writer':<7} {'op':<7} {'untracked min/median/max':>27} {'tracked min/median/max':>27} "
              f"{'ratio':>7} {'+us/write':>9}")
        for w in writers:
            for p, phase in enumerate(PHASES):
                base = [s[p][k] * 1e3 for s in results[(w, False)]]
                trk = [s[p][k] * 1e3 for s in results[(w, True)]]
                mb, mt = statistics.median(base), statistics.median(trk)
                fmt = lambda xs, m: f"{min(xs):7.1f} /{m:7.1f} /{max(xs):7.1f}"
                print(f"{w:<7} {phase:<7} {fmt(base, mb):>27} {fmt(trk, mt):>27} {mt / mb:6.2f}x "
                      f"{(mt - mb) * 1e3 / writes:9.2f}")
                if phase == "INSERT" and on_sync and k == 0:
                    passes = [x * 1e3 for x in key_passes[w]]
                    with_keys = statistics.median(t + x for t, x in zip(trk, passes))
                    print(f"{w:<7} {'+ keys':<7} {'(the key pass, one run)':>27} "
                          f"{fmt(passes, statistics.median(passes)):>27} {with_keys / mb:6.2f}x "
                          f"{(with_keys - mb) * 1e3 / writes:9.2f}")
        print()
    print("ratio = median tracked / median untracked; +us/write = extra microseconds per row write")
    print("(the wall-clock figures are cr-sqlite's; the CPU ones leave out waits: I/O, other processes)")
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
