#!/usr/bin/python3
"""Pages each commit writes, by b-tree: the WAL frames of cr-sqlite's method's INSERT phase.

Usage: /usr/bin/python3 tools/bench/wal_frames.py LIBTETHER_PATH [untracked|on_insert|on_sync] [COMMITS=300]

Four tables (id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c TEXT), tracked or not, 2,000 commits of
one single-row INSERT into each table to warm them up, then COMMITS more after a checkpoint that
empties the WAL (wal_autocheckpoint off, synchronous=NORMAL), written by a connection that never
loaded tether. Reads the WAL's frame headers and names each page's b-tree with the dbstat table:
prints frames per commit, in all and by b-tree. In small transactions each page a commit writes is
a 4 KiB frame: the count is what capture adds to every commit, whatever the machine's load.
"""
import collections
import os
import sqlite3
import struct
import sys
import tempfile

TABLES = ("t1", "t2", "t3", "t4")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    lib = os.path.splitext(sys.argv[1])[0]
    mode = sys.argv[2] if len(sys.argv) > 2 else "on_insert"
    commits = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    db = os.path.join(tempfile.mkdtemp(), "frames.db")
    setup = sqlite3.connect(db, isolation_level=None)
    setup.enable_load_extension(True)
    setup.load_extension(lib)
    setup.execute("PRAGMA journal_mode=WAL")
    for t in TABLES:
        setup.execute(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c TEXT)")
        if mode != "untracked":
            options = '{"keys": "on_sync"}' if mode == "on_sync" else "{}"
            setup.execute(f"SELECT tether_track('{t}', ?)", (options,))
    setup.close()
    w = sqlite3.connect(db, isolation_level=None)
    w.execute("PRAGMA synchronous=NORMAL")
    w.execute("PRAGMA wal_autocheckpoint=0")

    def run(count, start):
        for i in range(start, start + count):
            w.execute("BEGIN")
            for t in TABLES:
                w.execute(f"INSERT INTO {t} (a, b, c) VALUES (?, ?, ?)", (f"row {i}", i, "some text"))
            w.execute("COMMIT")

    run(2000, 0)
    w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    run(commits, 2000)
    data = open(db + "-wal", "rb").read()
    w.close()
    pages = collections.Counter()
    offset = 32
    while offset + 24 <= len(data):
        pages[struct.unpack(">I", data[offset:offset + 4])[0]] += 1
        offset += 24 + 4096
    reader = sqlite3.connect(db)
    names = dict(reader.execute("SELECT pageno, name FROM dbstat"))
    by_btree = collections.Counter()
    for page, count in pages.items():
        by_btree[names.get(page, f"page {page}")] += count
    print(f"{mode}: {sum(pages.values()) / commits:.2f} frames per commit ({commits} commits of 4 single-row INSERTs)")
    for name, count in by_btree.most_common():
        print(f"  {count / commits:6.2f}  {name}")


if __name__ == "__main__":
    main()
