"""Review findings for the sqlite-tether wheel, as failing tests until fixed. Run like
python_test.py, with the venv's python: review_test.py SERVER_BIN (tests/packages/run.sh could call
it right after python_test.py). Talks only to a tether-server it starts on 127.0.0.1."""

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import types
import unittest

import sqlite_tether

SERVER_BIN = sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("PKG_TEST_SERVER_BIN", "")


class Review(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tether review ")  # a space in the path
        cls.server = subprocess.Popen([SERVER_BIN, "--listen", "127.0.0.1:0", "--quiet"],
                                      stdout=subprocess.PIPE, text=True)
        cls.url = re.search(r"http://127\.0\.0\.1:\d+", cls.server.stdout.readline()).group(0)

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(timeout=10)
        cls.server.stdout.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_sync_of_a_missing_file_does_not_create_a_database(self):
        # A typo or another working directory: the Node loader opens with fileMustExist; the
        # Python one creates an empty database with tether's internal tables in it.
        missing = os.path.join(self.dir, "typo.db")
        # Today, with the server configured for the cycle, it even succeeds: it syncs the new,
        # empty file and returns a normal result.
        try:
            outcome = sqlite_tether.sync(missing, config={"server_url": self.url})
        except Exception as error:  # what a user expects: the file is not there
            outcome = error
        self.assertFalse(os.path.exists(missing), f"sync() created {missing}: {outcome!r}")
        self.assertIsInstance(outcome, sqlite_tether.TetherError)
        self.assertIn("no such database: " + missing, str(outcome))
        # A relative path is named with the directory it was looked for in.
        with self.assertRaises(sqlite_tether.TetherError) as caught:
            sqlite_tether.push("typo.db")
        self.assertIn(os.getcwd(), str(caught.exception))
        self.assertFalse(os.path.exists("typo.db"))
        # A URI without mode= does not create its file either.
        with self.assertRaises(sqlite_tether.TetherError) as caught:
            sqlite_tether.pull("file:" + missing.replace(" ", "%20"))
        self.assertFalse(os.path.exists(missing))

    def test_sync_of_an_existing_path_with_uri_characters(self):
        # The path is opened as a file: URI (mode=rw): spaces, '#', '%' and '?' must survive it.
        path = os.path.join(self.dir, "a #1 100%?.db")
        conn = sqlite3.connect(path, isolation_level=None)
        sqlite_tether.load(conn)
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)")
        conn.execute("SELECT tether_track('tasks')").fetchone()
        conn.execute("SELECT tether_config('server_url', ?)", (self.url,)).fetchone()
        conn.execute("INSERT INTO tasks (title) VALUES ('odd name')")
        self.assertEqual(sqlite_tether.sync(path)["pushed"], 1)
        self.assertEqual(sqlite_tether.status(conn)["pending"], 0)
        conn.close()
        self.assertEqual(sorted(n for n in os.listdir(self.dir) if n.startswith("a ")),
                         ["a #1 100%?.db"])

    def test_sync_refuses_an_in_memory_path(self):
        with self.assertRaisesRegex(sqlite_tether.TetherError, "in memory"):
            sqlite_tether.sync(":memory:")

    def test_load_refuses_an_async_connection_instead_of_doing_nothing(self):
        class AsyncConnection:  # what aiosqlite.Connection looks like
            async def enable_load_extension(self, on):
                pass

            async def load_extension(self, path):
                pass

        with self.assertRaises((TypeError, sqlite_tether.TetherError)) as caught:
            sqlite_tether.load(AsyncConnection())
        self.assertIn("load_async", str(caught.exception))
        self.assertIn("await db.load_extension(sqlite_tether.loadable_path())", str(caught.exception))
        with self.assertRaisesRegex(TypeError, "asyncio.to_thread"):
            sqlite_tether.sync(AsyncConnection())

    def test_load_async_loads_tether_on_an_async_connection(self):
        class AsyncConnection:  # aiosqlite's shape, over a sqlite3 connection
            def __init__(self):
                self.conn = sqlite3.connect(":memory:")

            async def enable_load_extension(self, on):
                self.conn.enable_load_extension(on)

            async def load_extension(self, path):
                self.conn.load_extension(path)

        db = AsyncConnection()
        asyncio.run(sqlite_tether.load_async(db))
        self.assertTrue(db.conn.execute("SELECT tether_version()").fetchone()[0])
        with self.assertRaises(sqlite3.OperationalError):  # loading is off again
            db.conn.execute("SELECT load_extension('x')").fetchone()
        with self.assertRaises(TypeError):
            asyncio.run(sqlite_tether.load_async(sqlite3.connect(":memory:")))

    def test_sync_on_a_python_without_extension_loading_names_the_driver_argument(self):
        class NoExtensions:  # a pyenv-built sqlite3 connection
            def close(self):
                pass

        path = os.path.join(self.dir, "noext.db")
        sqlite3.connect(path).close()
        driver = types.SimpleNamespace(connect=lambda *args, **kwargs: NoExtensions())
        with self.assertRaises(sqlite_tether.TetherError) as caught:
            sqlite_tether.sync(path, driver=driver)
        self.assertIn("driver=pysqlite3.dbapi2", str(caught.exception))

    def test_sync_of_a_connection_inside_a_transaction_fails_fast(self):
        # README's `sqlite3.connect("app.db")` opens a transaction at the first INSERT; sync()
        # then waits for that same application's lock (10 s) and fails.
        path = os.path.join(self.dir, "tx.db")
        conn = sqlite3.connect(path)
        sqlite_tether.load(conn)
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)")
        conn.execute("SELECT tether_track('tasks')").fetchone()
        conn.execute("SELECT tether_config('server_url', ?)", (self.url,)).fetchone()
        conn.commit()
        conn.execute("INSERT INTO tasks (title) VALUES ('not committed yet')")
        self.assertTrue(conn.in_transaction)
        started = time.monotonic()
        with self.assertRaises(Exception) as caught:
            sqlite_tether.sync(conn)
        elapsed = time.monotonic() - started
        conn.rollback()
        self.assertLess(elapsed, 2, f"waited {elapsed:.1f} s: {caught.exception}")
        self.assertIn("commit", str(caught.exception).lower())
        self.assertIn("isolation_level", str(caught.exception))
        # Committed, the same connection syncs.
        conn.execute("INSERT INTO tasks (title) VALUES ('committed')")
        conn.commit()
        self.assertEqual(sqlite_tether.sync(conn)["pushed"], 1)
        conn.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
