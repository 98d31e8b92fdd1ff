"""The sqlite-tether wheel as a user gets it: installed into a fresh venv by tests/packages/run.sh,
which runs this file with the venv's python. Usage: python_test.py SERVER_BIN
Talks only to a tether-server it starts on 127.0.0.1."""

import asyncio
import importlib.metadata
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import typing
import unittest
import urllib.request

import sqlite_tether

SERVER_BIN = sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("PKG_TEST_SERVER_BIN", "")


def connect(path):
    conn = sqlite3.connect(path, isolation_level=None)
    sqlite_tether.load(conn)
    return conn


class Wheel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tether-wheel-")
        cls.server = subprocess.Popen(
            [SERVER_BIN, "--listen", "127.0.0.1:0", "--quiet", "--test-controls"],
            stdout=subprocess.PIPE, text=True)
        first = cls.server.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", first)
        if not found:
            cls.tearDownClass()
            raise RuntimeError(f"tether-server did not print its URL: {first!r}")
        cls.url = found.group(0)

    @classmethod
    def tearDownClass(cls):
        if cls.server.poll() is None:
            cls.server.terminate()
            cls.server.wait(timeout=10)
        cls.server.stdout.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def client(self, name):
        path = os.path.join(self.dir, name)
        conn = connect(path)
        conn.execute("CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, title TEXT, status TEXT)")
        conn.execute("SELECT tether_track('tasks')").fetchone()
        conn.execute("SELECT tether_config('server_url', ?)", (self.url,)).fetchone()
        return path, conn

    def faults(self, faults):
        request = urllib.request.Request(
            self.url + "/_test/faults", data=json.dumps(faults).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=10).read()

    def test_installed_package_and_library(self):
        self.assertNotIn(os.sep + "packages" + os.sep, sqlite_tether.__file__)
        self.assertTrue(sqlite_tether.__file__.startswith(sys.prefix), sqlite_tether.__file__)
        path = sqlite_tether.loadable_path()
        self.assertEqual(os.path.basename(path), "libtether")
        self.assertTrue(os.path.isfile(path + ".so"))
        conn = connect(":memory:")
        self.assertEqual(conn.execute("SELECT tether_version()").fetchone()[0],
                         importlib.metadata.version("sqlite-tether"))
        # load() turns extension loading off again: SQL cannot load libraries afterwards.
        with self.assertRaises(sqlite3.OperationalError):
            conn.execute("SELECT load_extension(?)", (path,)).fetchone()

    def test_python_without_extension_loading_is_told_the_fixes(self):
        class NoExtensions:  # what sqlite3 connections look like on such a build
            def execute(self, sql):
                raise AssertionError("not reached")

        with self.assertRaises(sqlite_tether.TetherError) as caught:
            sqlite_tether.load(NoExtensions())
        self.assertIn("/usr/bin/python3", str(caught.exception))
        self.assertIn("pysqlite3-binary", str(caught.exception))

    def test_rows_arrive_on_a_second_client(self):
        path_a, a = self.client("rows-a.db")
        a.executemany("INSERT INTO tasks (title, status) VALUES (?, ?)",
                      [("Buy milk", "open"), ("Call Anna", "done"), ("Fix bike", None)])
        result = sqlite_tether.sync(path_a)  # a path
        self.assertEqual((result["pushed"], result["failed"], result["conflicts"]), (3, 0, 0))

        _, b = self.client("rows-b.db")
        result = sqlite_tether.sync(b)  # a connection: its file, on a connection of its own
        self.assertGreaterEqual(result["pulled"], 3)
        sent = a.execute("SELECT tether_id, title, status FROM tasks").fetchall()
        received = set(b.execute("SELECT tether_id, title, status FROM tasks").fetchall())
        self.assertEqual(len(sent), 3)
        self.assertLessEqual(set(sent), received)
        self.assertEqual(sqlite_tether.status(a)["pending"], 0)

    def test_typed_results_match_what_tether_returns(self):
        path, conn = self.client("typed.db")
        conn.execute("INSERT INTO tasks (title) VALUES ('typed')")
        result = sqlite_tether.push(path)
        self.assertEqual(set(result), set(typing.get_type_hints(sqlite_tether.SyncResult)))
        self.assertEqual(set(sqlite_tether.pull(path)), set(result))
        status = sqlite_tether.status(conn)
        self.assertEqual(set(status), set(typing.get_type_hints(sqlite_tether.Status)))
        self.assertEqual(set(status["tables"][0]), set(typing.get_type_hints(sqlite_tether.TableStatus)))
        self.assertEqual(set(status["quarantine"]), set(typing.get_type_hints(sqlite_tether.Quarantine)))
        self.assertLessEqual(set(status["worker"]), set(typing.get_type_hints(sqlite_tether.WorkerStatus)))

    def test_sync_from_asyncio_keeps_the_loop_running(self):
        path, conn = self.client("slow.db")
        conn.execute("INSERT INTO tasks (title) VALUES ('slow')")
        delay = 0.8
        self.faults([{"path": "/tether/push", "times": 1, "delay_ms": int(delay * 1000)},
                     {"path": "/tether/pull", "times": 1, "delay_ms": int(delay * 1000)}])

        async def scenario():
            ticks = []

            async def ticker():
                while True:
                    ticks.append(time.monotonic())
                    # The application's own connection stays usable meanwhile.
                    conn.execute("SELECT count(*) FROM tasks").fetchone()
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(ticker())
            started = time.monotonic()
            result = await asyncio.to_thread(sqlite_tether.sync, path)
            elapsed = time.monotonic() - started
            task.cancel()
            return result, elapsed, ticks

        result, elapsed, ticks = asyncio.run(scenario())
        self.assertEqual(result["pushed"], 1)
        self.assertGreaterEqual(elapsed, 2 * delay * 0.95, "the server's delays were not felt")
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        self.assertGreater(len(ticks), 20)
        self.assertLess(max(gaps), 0.4, f"the event loop stood still for {max(gaps):.2f} s")

    def test_errors_are_the_drivers_exceptions(self):
        path, _ = self.client("errors.db")
        with self.assertRaises(sqlite3.OperationalError) as caught:
            # A connection-scoped setting for this cycle: a port nothing listens on.
            sqlite_tether.sync(path, config={"server_url": "http://127.0.0.1:9"})
        self.assertIn("tether_sync", str(caught.exception))
        with self.assertRaises(sqlite_tether.TetherError):
            sqlite_tether.sync(connect(":memory:"))

    def test_a_connection_of_another_thread_is_refused_with_the_fix(self):
        _, conn = self.client("thread.db")
        with self.assertRaises(sqlite_tether.TetherError) as caught:
            asyncio.run(asyncio.to_thread(sqlite_tether.sync, conn))
        self.assertIn("pass the database path", str(caught.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
