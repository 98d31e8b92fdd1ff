"""Loads libtether with Python's sqlite3 module (Debian's /usr/bin/python3). Usage: python_test.py LIB"""
import json, os, shutil, sqlite3, subprocess, sys, tempfile, unittest

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

    def test_foreign_keys_on_a_missing_parent_waits_in_the_quarantine(self):
        """Python's sqlite3 never turns extended result codes on: a failed COMMIT of deferred
        foreign keys reads as a plain constraint failure, and must still quarantine the row."""
        conn = self.connect()
        conn.executescript("""
            PRAGMA foreign_keys = ON;
            CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
            SELECT tether_track('projects');
            CREATE UNIQUE INDEX projects_key ON projects (tether_id);
            CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, project TEXT REFERENCES projects (tether_id));
            SELECT tether_track('tasks');
        """)
        parent, child = (conn.execute("SELECT tether_ulid()").fetchone()[0] for _ in range(2))
        page = {"snapshots": [{"entity_id": child, "model": "Task", "operation": "upsert",
                               "payload": {"title": "t", "project": parent}}],
                "new_sync_cursor": 10, "has_more": True}
        result = json.loads(conn.execute("SELECT tether_pull_response(?)", (json.dumps(page),)).fetchone()[0])
        self.assertEqual(result["quarantined"], 1, result)
        page = {"snapshots": [{"entity_id": parent, "model": "Project", "operation": "upsert",
                               "payload": {"name": "p"}}], "new_sync_cursor": 20, "has_more": False}
        conn.execute("SELECT tether_pull_response(?)", (json.dumps(page),)).fetchone()
        self.assertEqual(conn.execute("SELECT count(*) FROM tasks WHERE project = ?", (parent,)).fetchone()[0], 1)
        self.assertEqual(conn.execute("SELECT count(*) FROM tether_quarantine").fetchone()[0], 0)

    def test_a_deserialized_database_has_no_background_worker(self):
        """Connection.deserialize puts the database in memory (VFS "memdb(…)"): no worker can
        open it, and dispatch says so instead of failing later."""
        source = sqlite3.connect(":memory:")
        source.execute("CREATE TABLE t (x)")
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.deserialize(source.serialize())
        conn.enable_load_extension(True)
        conn.load_extension(os.path.splitext(LIB)[0])
        with self.assertRaises(sqlite3.OperationalError) as caught:
            conn.execute("SELECT tether_dispatch('push')").fetchone()
        self.assertIn("needs a database file", str(caught.exception))

    def ops(self, conn, after=0):
        return conn.execute(
            "SELECT operation, entity_id FROM tether_mutation_logs WHERE id > ? ORDER BY id", (after,)).fetchall()

    def test_write_paths_on_debians_sqlite(self):
        """REPLACE, the key guard, JSON and bytes, on the host's own SQLite (3.40 on Debian 12)."""
        conn = self.connect()
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, slug TEXT UNIQUE, tags JSON, img BLOB)")
        conn.execute("SELECT tether_track('tasks')")
        plain = self.connect(load=False)
        plain.execute("INSERT INTO tasks (id, title, slug, tags, img) VALUES (1, json_array('a'), 's', '[1]', x'0102')")
        key = plain.execute("SELECT tether_id FROM tasks").fetchone()[0]
        plain.execute("INSERT OR REPLACE INTO tasks (id, title, slug) VALUES (1, 'replaced', 's')")
        plain.execute("REPLACE INTO tasks (title, slug) VALUES ('by slug', 's')")
        self.assertEqual(plain.execute("SELECT tether_id FROM tasks").fetchall(), [(key,)])
        self.assertEqual(self.ops(conn), [("create", key), ("update", key), ("update", key)])
        first = json.loads(conn.execute("SELECT payload FROM tether_mutation_logs ORDER BY id LIMIT 1").fetchone()[0])
        self.assertEqual(first, {"title": '["a"]', "slug": "s", "tags": [1], "img": "0102"})
        with self.assertRaises(sqlite3.IntegrityError) as caught:
            plain.execute("UPDATE tasks SET tether_id = NULL")
        self.assertIn("tasks.tether_id", str(caught.exception))

    def test_rename_and_rebuild_by_another_tool_are_repaired(self):
        conn = self.connect()
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)")
        conn.execute("SELECT tether_track('tasks')")
        plain = self.connect(load=False)
        plain.execute("INSERT INTO tasks (title) VALUES ('a'), ('b')")
        keys = plain.execute("SELECT tether_id FROM tasks ORDER BY id").fetchall()
        # Renamed, then rebuilt (as Alembic's batch mode does: the key column is copied).
        plain.executescript("""
            ALTER TABLE tasks RENAME TO todos;
            BEGIN;
            CREATE TABLE _new (id INTEGER PRIMARY KEY, title TEXT NOT NULL, tether_id TEXT);
            INSERT INTO _new SELECT id, title, tether_id FROM todos;
            DROP TABLE todos;
            ALTER TABLE _new RENAME TO todos;
            COMMIT;""")
        status = json.loads(conn.execute("SELECT tether_status()").fetchone()[0])
        self.assertEqual([(t["table"], t["state"]) for t in status["tables"]], [("todos", "ok")])
        # Rebuilt again without the key column (as Django's AlterField does).
        plain.executescript("""
            BEGIN;
            CREATE TABLE _new (id INTEGER PRIMARY KEY, title TEXT NOT NULL, due TEXT);
            INSERT INTO _new (id, title) SELECT id, title FROM todos;
            DROP TABLE todos;
            ALTER TABLE _new RENAME TO todos;
            COMMIT;""")
        status = json.loads(conn.execute("SELECT tether_status()").fetchone()[0])
        table = status["tables"][0]
        self.assertEqual((table["table"], table["model"], table["state"]), ("todos", "Task", "ok"))
        self.assertEqual(plain.execute("SELECT tether_id FROM todos ORDER BY id").fetchall(), keys)
        self.assertEqual(len(self.ops(conn)), 2, "no row is sent again as a new entity")
        plain.execute("UPDATE todos SET due = 'monday' WHERE id = 1")
        self.assertEqual(self.ops(conn)[-1], ("update", keys[0][0]))


# A host process of its own for each refused load: when an extension's init fails, SQLite unloads
# the library, and anything tether had registered would crash the process when the connection
# closes. Usage: python3 -c HOST DB LIB SETUP
HOST = r"""
import sqlite3, sys
path, lib, setup = sys.argv[1:4]
conn = sqlite3.connect(path, isolation_level=None)
running = None
if setup == "busy_function":
    # The host's own tether_status and a statement still running: SQLite refuses to replace a
    # function while statements run, so loading fails half-way through registering.
    conn.create_function("tether_status", 0, lambda: "the host's own")
    running = conn.execute("SELECT 1 UNION ALL SELECT 2")
    running.fetchone()
conn.enable_load_extension(True)
try:
    conn.load_extension(lib)
    print("host: loaded")
except sqlite3.Error as e:
    print("host: load failed:", e)
if running is not None:
    running.close()
    if setup == "busy_function":
        print("still callable:", len(conn.execute("SELECT tether_ulid()").fetchone()[0]) == 26)
conn.close()
print("host: closed")
"""


class RefusedLoads(unittest.TestCase):
    """Loading that fails names the cause, then the host closes the connection and exits 0."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "app.db")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def host(self, setup="", env=None):
        run = subprocess.run([sys.executable, "-c", HOST, self.path, os.path.splitext(LIB)[0], setup],
                             capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
        out = run.stdout + run.stderr
        self.assertEqual(run.returncode, 0, f"the host must close and exit 0:\n{out}")
        self.assertIn("host: closed", out)
        return out

    def set_up_by_tether(self):
        self.assertIn("host: loaded", self.host())

    def test_database_from_a_newer_tether(self):
        with sqlite3.connect(self.path) as conn:
            conn.executescript("""
                CREATE TABLE tether_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT);
                INSERT INTO tether_migrations (version, name) VALUES (999, '0999_future');""")
        conn.close()
        out = self.host()
        self.assertIn("load failed", out)
        self.assertIn("newer tether", out)

    def test_file_that_is_not_a_database(self):
        with open(self.path, "wb") as f:
            f.write(bytes((i * 2654435761 >> 13) & 0xFF for i in range(8192)))
        out = self.host()
        self.assertIn("file is not a database", out)
        self.assertNotIn("JSON", out)

    def test_malformed_environment_value(self):
        self.set_up_by_tether()
        out = self.host(env={"TETHER_PUSH_BATCH_SIZE": "lots"})
        self.assertIn("load failed", out)
        self.assertIn("TETHER_PUSH_BATCH_SIZE", out)

    def test_failing_after_registering_keeps_the_library_mapped(self):
        self.set_up_by_tether()
        out = self.host("busy_function")
        self.assertIn("load failed", out)
        self.assertIn("active statements", out)
        self.assertIn("still callable: True", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
