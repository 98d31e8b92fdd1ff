"""Loads libtether with Python's sqlite3 module (Debian's /usr/bin/python3). Usage: python_test.py LIB"""
import json, os, shutil, sqlite3, sys, tempfile, unittest

LIB = os.path.abspath(sys.argv.pop(1))


class PythonHost(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "app.db")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def connect(self, load=True):
        conn = sqlite3.connect(self.path, isolation_level=None)
        if load:
            conn.enable_load_extension(True)
            conn.load_extension(os.path.splitext(LIB)[0])  # no suffix, no entry point: as users write it
            conn.enable_load_extension(False)
        return conn

    def test_track_capture_status(self):
        conn = self.connect()
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, done INTEGER)")
        self.assertEqual(json.loads(conn.execute("SELECT tether_track('tasks')").fetchone()[0])["model"], "Task")
        conn.execute("INSERT INTO tasks (title, done) VALUES (?, ?)", ("Buy milk", 0))
        conn.execute("UPDATE tasks SET done = 1")
        rows = conn.execute("SELECT operation, entity_id, payload FROM tether_mutation_logs ORDER BY id").fetchall()
        self.assertEqual([r[0] for r in rows], ["create", "update"])
        self.assertEqual(len({r[1] for r in rows}), 1, "both name the same entity")
        self.assertEqual(json.loads(rows[1][2]), {"title": "Buy milk", "done": 1})
        self.assertEqual(json.loads(conn.execute("SELECT tether_status()").fetchone()[0])["pending"], 2)

    def test_plain_connection_is_captured_and_rollback_is_not(self):
        conn = self.connect()
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("SELECT tether_track('notes')")
        plain = self.connect(load=False)
        plain.execute("INSERT INTO notes (body) VALUES ('from a plain connection')")
        plain.execute("BEGIN")
        plain.execute("INSERT INTO notes (body) VALUES ('rolled back')")
        plain.execute("ROLLBACK")
        self.assertEqual(conn.execute("SELECT count(*) FROM tether_mutation_logs").fetchone()[0], 1)

    def test_errors_are_exceptions_not_crashes(self):
        conn = self.connect()
        with self.assertRaises(sqlite3.OperationalError) as caught:
            conn.execute("SELECT tether_track('missing')").fetchone()
        self.assertIn("no such table", str(caught.exception))
        with self.assertRaises(sqlite3.OperationalError) as caught:
            conn.execute("SELECT tether_config('push_batch_size', -5)").fetchone()
        self.assertIn("push_batch_size", str(caught.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
