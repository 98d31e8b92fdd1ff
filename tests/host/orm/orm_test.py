"""A real ORM's write patterns through tether: SQLAlchemy 2 and Alembic on client A, a plain sqlite3
client B, a local tether-server between them. Usage: orm_test.py LIB SERVER_BIN (run.sh sets up
the venv).

Client A (SQLAlchemy, the extension loaded on every pool connection) creates `notes` from a
declarative model with a JSON column and a unique slug, tracks it, then writes the way an app
does: unit-of-work inserts and updates, INSERT .. ON CONFLICT DO UPDATE upserts (both branches),
an executemany bulk insert, deletes, an Alembic migration whose batch_alter_table rebuilds the
table (copy into a new table, drop, rename), and more ORM writes after the rebuild; then syncs.
Client B (a fresh install: the table created from the current models, plain sqlite3 with the
extension) tracks, syncs and must hold exactly client A's rows; so must the server.
"""
import collections
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import unittest
import urllib.request

import alembic
import alembic.command
import alembic.config
import sqlalchemy
from sqlalchemy import JSON, Integer, String, Text, create_engine, delete, event, insert, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

if len(sys.argv) < 3:
    sys.exit("usage: orm_test.py LIB SERVER_BIN")
LIB = os.path.splitext(os.path.abspath(sys.argv.pop(1)))[0]  # no suffix, as users write it
SERVER_BIN = os.path.abspath(sys.argv.pop(1))

FIELDS = ("title", "body", "tags", "priority", "slug")  # what is compared, tags as parsed JSON
SERVER_MODEL = {
    "name": "Note",
    "fields": {
        "title": "required|max:255",
        "body": "nullable",
        "tags": "nullable|array",
        "priority": "nullable|integer",
        "slug": "required|max:255",
        "summary": "nullable|max:200",
    },
}


def log(message=""):
    print(message, file=sys.stderr, flush=True)


# App version 1: the model the table is created from.
class BaseV1(DeclarativeBase):
    pass


class Note(BaseV1):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(String(500), nullable=True)
    tags: Mapped[object] = mapped_column(JSON, nullable=True)
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)


# App version 2, after the Alembic migration below: body is TEXT NOT NULL, summary is new.
class BaseV2(DeclarativeBase):
    pass


class NoteV2(BaseV2):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, nullable=False)
    tags: Mapped[object] = mapped_column(JSON, nullable=True)
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)
    summary: Mapped[str | None] = mapped_column(String(200), nullable=True)


MIGRATION = '''
"""notes v2: body TEXT NOT NULL, new column summary"""
import sqlalchemy as sa
from alembic import op

revision = "0001_notes_v2"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.execute("UPDATE notes SET body = '' WHERE body IS NULL")
    with op.batch_alter_table("notes", recreate="always") as batch:
        batch.add_column(sa.Column("summary", sa.String(200), nullable=True))
        batch.alter_column("body", existing_type=sa.String(500), type_=sa.Text(),
                           existing_nullable=True, nullable=False)


def downgrade():
    raise NotImplementedError
'''

# env.py of the cookbook recipe "sharing a connection with a series of migration commands".
ENV_PY = '''
from alembic import context

context.configure(connection=context.config.attributes["connection"], target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
'''


def load_tether(conn):
    conn.enable_load_extension(True)
    conn.load_extension(LIB)
    conn.enable_load_extension(False)


def tags_value(stored):
    """A JSON column's stored text as SQLAlchemy's JSON type reads it (SQL NULL reads as None)."""
    return None if stored is None else json.loads(stored)


class SqlAlchemyAlembic(unittest.TestCase):
    """One scenario in setUpClass; each test checks one property of its outcome."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tether-orm-")
        cls.server = subprocess.Popen(
            [SERVER_BIN, "--listen", "127.0.0.1:0", "--quiet", "--model", json.dumps(SERVER_MODEL)],
            stdout=subprocess.PIPE, text=True)
        first = cls.server.stdout.readline()
        found = re.search(r"http://\S+", first)
        if not found:
            cls.server.kill()
            cls.server.wait()
            shutil.rmtree(cls.dir, ignore_errors=True)
            raise RuntimeError(f"tether-server did not print its URL: {first!r}")
        cls.url = found.group(0)
        try:
            cls.run_scenario()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for engine in getattr(cls, "engines", []):
            engine.dispose()
        if cls.server.poll() is None:
            cls.server.terminate()
            cls.server.wait(timeout=10)
        cls.server.stdout.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    # ---------------------------------------------------------------- the scenario
    @classmethod
    def run_scenario(cls):
        cls.engines = []
        cls.path_a = os.path.join(cls.dir, "a.db")
        cls.path_b = os.path.join(cls.dir, "b.db")
        # What the app means the table to hold, by slug: the ORM steps are checked against it.
        cls.intended = {}

        engine = create_engine(f"sqlite:///{cls.path_a}")
        cls.engines.append(engine)

        @event.listens_for(engine, "connect")
        def _load(dbapi_connection, _record):
            load_tether(dbapi_connection)

        BaseV1.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(text("SELECT tether_config('server_url', :url)"), {"url": cls.url})
            conn.execute(text("SELECT tether_track('notes')"))

        def intend(slug, **values):
            cls.intended[slug] = {**cls.intended.get(slug, {}), **values, "slug": slug}

        # 1. The unit of work: inserts, then updates (the JSON column reassigned, as SQLAlchemy
        #    needs to see the change), each commit a flush.
        with Session(engine) as session:
            session.add_all([
                Note(slug="groceries", title="Groceries", body="milk, eggs", tags=["home", "errands"], priority=2),
                Note(slug="standup", title="Standup notes", body="yesterday: tests", tags=["work"], priority=1),
                Note(slug="ideas", title="Ideas", body=None, tags=[], priority=None),
                Note(slug="trash", title="To be deleted", body="x", tags=["tmp"], priority=5),
                Note(slug="pinned", title="Pinned", body="first version", tags=["pin"], priority=9),
            ])
            session.commit()
            groceries = session.scalars(select(Note).where(Note.slug == "groceries")).one()
            groceries.title = "Groceries (Saturday)"
            groceries.tags = ["home", "errands", "weekend"]
            ideas = session.scalars(select(Note).where(Note.slug == "ideas")).one()
            ideas.tags = {"nested": {"list": [1, 2.5, None, True]}, "text": "caf\u00e9 \u2615 \"quoted\""}
            standup = session.scalars(select(Note).where(Note.slug == "standup")).one()
            standup.priority = 3
            session.commit()
        intend("groceries", title="Groceries (Saturday)", body="milk, eggs", tags=["home", "errands", "weekend"], priority=2)
        intend("standup", title="Standup notes", body="yesterday: tests", tags=["work"], priority=3)
        intend("ideas", title="Ideas", body=None,
               tags={"nested": {"list": [1, 2.5, None, True]}, "text": "caf\u00e9 \u2615 \"quoted\""}, priority=None)
        intend("trash", title="To be deleted", body="x", tags=["tmp"], priority=5)
        intend("pinned", title="Pinned", body="first version", tags=["pin"], priority=9)

        # 2. Upserts on the unique slug: INSERT .. ON CONFLICT (slug) DO UPDATE, update branch
        #    (standup exists) and insert branch (reading-list does not); and INSERT OR REPLACE
        #    (SQLite deletes the conflicting row and inserts a new one, with a new primary key).
        def upsert(values):
            stmt = sqlite_insert(Note).values(**values)
            return stmt.on_conflict_do_update(
                index_elements=[Note.slug],
                set_={c: getattr(stmt.excluded, c) for c in ("title", "body", "tags", "priority")})

        with Session(engine) as session:
            session.execute(upsert(dict(slug="standup", title="Standup (upserted)", body="today: ORM test",
                                        tags=["work", "daily"], priority=4)))
            session.execute(upsert(dict(slug="reading-list", title="Reading list", body="SQLite internals",
                                        tags=["books"], priority=1)))
            session.execute(insert(Note).prefix_with("OR REPLACE").values(
                slug="pinned", title="Pinned (replaced)", body="second version", tags=["pin", "replaced"], priority=8))
            session.commit()
        intend("standup", title="Standup (upserted)", body="today: ORM test", tags=["work", "daily"], priority=4)
        intend("reading-list", title="Reading list", body="SQLite internals", tags=["books"], priority=1)
        intend("pinned", title="Pinned (replaced)", body="second version", tags=["pin", "replaced"], priority=8)

        # 3. A bulk insert: session.execute(insert(Note), [dicts]) (executemany). tags=None is
        #    stored by SQLAlchemy's JSON type as the JSON text 'null'.
        bulk = [dict(slug=f"bulk-{i}", title=f"Bulk note {i}", body=f"body {i}",
                     tags=None if i == 0 else [f"t{i}", "bulk"], priority=i) for i in range(5)]
        with Session(engine) as session:
            session.execute(insert(Note), bulk)
            session.commit()
        for row in bulk:
            intend(**row)

        # 4. Deletes: an ORM delete and a Core DELETE .. WHERE.
        with Session(engine) as session:
            session.delete(session.scalars(select(Note).where(Note.slug == "trash")).one())
            session.execute(delete(Note).where(Note.slug == "bulk-4"))
            session.commit()
        del cls.intended["trash"], cls.intended["bulk-4"]
        with engine.connect() as conn:
            cls.keys_before_migration = dict(conn.execute(text("SELECT slug, tether_id FROM notes")).all())

        # 5. The Alembic migration, run programmatically from a script directory, on a pool
        #    connection: a data fix-up, then batch_alter_table(recreate="always"), which on
        #    SQLite creates _alembic_tmp_notes, copies the rows, drops notes and renames.
        scripts = os.path.join(cls.dir, "migrations")
        os.makedirs(os.path.join(scripts, "versions"))
        with open(os.path.join(scripts, "env.py"), "w") as f:
            f.write(ENV_PY)
        with open(os.path.join(scripts, "versions", "0001_notes_v2.py"), "w") as f:
            f.write(textwrap.dedent(MIGRATION))
        config = alembic.config.Config()
        config.set_main_option("script_location", scripts)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            alembic.command.upgrade(config, "head")
        intend("ideas", body="")
        with engine.connect() as conn:
            cls.schema_after_migration = conn.execute(
                text("SELECT sql FROM sqlite_schema WHERE tbl_name = 'notes' AND sql IS NOT NULL")).scalars().all()
            # README ("Schema changes"): after migrations, any tether call repairs tracking;
            # status is the documented one. Step 6 checks capture works again after it.
            cls.status_after_migration = json.loads(conn.execute(text("SELECT tether_status()")).scalar())
            cls.logs_before_after_writes = conn.execute(text("SELECT max(id) FROM tether_mutation_logs")).scalar()

        # 6. App version 2 writes after the rebuild: insert, update, upsert (update branch), delete.
        with Session(engine) as session:
            session.add(NoteV2(slug="after-migration", title="Written after the rebuild", body="v2 body",
                               tags=["v2"], priority=7, summary="new"))
            groceries = session.scalars(select(NoteV2).where(NoteV2.slug == "groceries")).one()
            groceries.body = "milk, eggs, bread"
            groceries.summary = "weekly shop"
            session.commit()
            stmt = sqlite_insert(NoteV2).values(slug="reading-list", title="Reading list (v2)",
                                                body="SQLite internals, ch. 2", tags=["books", "v2"], priority=2)
            session.execute(stmt.on_conflict_do_update(
                index_elements=[NoteV2.slug],
                set_={c: getattr(stmt.excluded, c) for c in ("title", "body", "tags", "priority")}))
            session.delete(session.scalars(select(NoteV2).where(NoteV2.slug == "bulk-3")).one())
            session.commit()
        intend("after-migration", title="Written after the rebuild", body="v2 body", tags=["v2"], priority=7)
        intend("groceries", body="milk, eggs, bread")
        intend("reading-list", title="Reading list (v2)", body="SQLite internals, ch. 2", tags=["books", "v2"], priority=2)
        del cls.intended["bulk-3"]
        cls.post_rebuild_deleted_key = cls.keys_before_migration.get("bulk-3")

        # 7. Client A syncs.
        cls.rows_a_before_sync, cls.rows_a_keys_before_sync = cls.read_rows(cls.path_a)
        with engine.connect() as conn:
            cls.logs_after_writes = conn.execute(
                text("SELECT id, entity_id, operation, payload FROM tether_mutation_logs ORDER BY id")).all()
            cls.sync_a = json.loads(conn.execute(text("SELECT tether_sync()")).scalar())
            conn.commit()
            cls.status_a = json.loads(conn.execute(text("SELECT tether_status()")).scalar())
            cls.unsynced_a = conn.execute(text(
                "SELECT operation, entity_id, sync_status, rejection_reason, rejection_data, payload"
                " FROM tether_mutation_logs WHERE sync_status <> 'synced' ORDER BY id")).all()
        cls.rows_a_by_slug, cls.rows_a = cls.read_rows(cls.path_a)

        # Client B: a fresh install of app version 2, the table created from its models.
        engine_b = create_engine(f"sqlite:///{cls.path_b}")
        BaseV2.metadata.create_all(engine_b)
        engine_b.dispose()
        conn_b = sqlite3.connect(cls.path_b, isolation_level=None)
        try:
            load_tether(conn_b)
            conn_b.execute("SELECT tether_track('notes')").fetchone()
            conn_b.execute("SELECT tether_config('server_url', ?)", (cls.url,)).fetchone()
            cls.sync_b = json.loads(conn_b.execute("SELECT tether_sync()").fetchone()[0])
        finally:
            conn_b.close()
        _, cls.rows_b = cls.read_rows(cls.path_b)
        cls.rows_server = cls.read_server()
        cls.report()

    @classmethod
    def read_rows(cls, path):
        """(by slug, by tether_id) of FIELDS; a row without a sync key gets a key naming its slug."""
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT tether_id, title, body, tags, priority, slug FROM notes").fetchall()
        finally:
            conn.close()
        by_slug, by_key = {}, {}
        for key, title, body, tags, priority, slug in rows:
            values = dict(title=title, body=body, tags=tags_value(tags), priority=priority, slug=slug)
            by_slug[slug] = values
            by_key[key if key is not None else f"<no tether_id> slug={slug}"] = values
        return by_slug, by_key

    @classmethod
    def read_server(cls):
        """The server's live Note rows by tether_id: a full pull from the start as a new client."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        rows, cursor = {}, None
        while True:
            request = urllib.request.Request(
                cls.url + "/tether/pull", headers={"Content-Type": "application/json"},
                data=json.dumps({"client_id": "orm-test-observer", "last_sync_cursor": cursor}).encode())
            with opener.open(request, timeout=30) as answer:
                page = json.load(answer)
            for snapshot in page["snapshots"]:
                if snapshot["model"] != "Note":
                    continue
                if snapshot["operation"] == "delete":
                    rows.pop(snapshot["entity_id"], None)
                else:
                    rows[snapshot["entity_id"]] = {f: snapshot["payload"].get(f) for f in FIELDS}
            cursor = page["new_sync_cursor"]
            if not page["has_more"]:
                return rows

    @classmethod
    def report(cls):
        table = next((t for t in cls.status_after_migration["tables"] if t["table"] == "notes"), {})
        log(f"\nSQLAlchemy {sqlalchemy.__version__}, Alembic {alembic.__version__}, SQLite {sqlite3.sqlite_version}")
        log(f"after the Alembic rebuild: tether_status() notes: triggers_installed={table.get('triggers_installed')}"
            f" columns_changed={table.get('columns_changed')} added_columns={table.get('added_columns')}")
        log(f"client A queued {len(cls.logs_after_writes)} mutations: "
            f"{dict(collections.Counter(op for _, _, op, _ in cls.logs_after_writes))}")
        log(f"client A tether_sync(): pushed={cls.sync_a.get('pushed')} failed={cls.sync_a.get('failed')}"
            f" conflicts={cls.sync_a.get('conflicts')} pulled={cls.sync_a.get('pulled')}"
            f" pull_errors={cls.sync_a.get('pull_errors')}")
        log(f"client A tether_status(): pending={cls.status_a['pending']} failed={cls.status_a['failed']}"
            f" conflicts={cls.status_a['conflicts']}")
        reasons = collections.Counter((op, status, reason) for op, _, status, reason, _, _ in cls.unsynced_a)
        for (op, status, reason), count in sorted(reasons.items(), key=str):
            log(f"  unsynced on A: {count} x {op} {status} ({reason})")
        for op, key, status, reason, data, payload in cls.unsynced_a[:3]:
            log(f"    e.g. {op} {key}: {reason} {data} payload={payload}")
        log(f"client B tether_sync(): pulled={cls.sync_b.get('pulled')} pull_errors={cls.sync_b.get('pull_errors')}")
        log(f"rows: client A {len(cls.rows_a)}, server {len(cls.rows_server)}, client B {len(cls.rows_b)};"
            f" compared by tether_id on {', '.join(FIELDS)} (tags as parsed JSON)\n")

    # ---------------------------------------------------------------- the checks
    def compare(self, name, expected, actual, what):
        missing = sorted(set(expected) - set(actual), key=str)
        extra = sorted(set(actual) - set(expected), key=str)
        differing = {k: (expected[k], actual[k]) for k in set(expected) & set(actual) if expected[k] != actual[k]}
        lines = []
        for key in missing:
            lines.append(f"  missing on {name}: {key} {expected[key]}")
        for key in extra:
            lines.append(f"  only on {name}: {key} {actual[key]}")
        for key, (want, got) in sorted(differing.items(), key=str):
            fields = [f for f in FIELDS if want.get(f) != got.get(f)]
            lines.append(f"  differs on {name}: {key} ({want['slug']}): "
                         + "; ".join(f"{f}: {want.get(f)!r} != {got.get(f)!r}" for f in fields))
        log(f"compared {what}: {len(expected)} vs {len(actual)} rows, {len(missing)} missing,"
            f" {len(extra)} extra, {len(differing)} differing")
        if lines:
            self.fail(f"{what}:\n" + "\n".join(lines))

    def test_1_orm_wrote_what_the_app_meant(self):
        """Sanity of the ORM steps themselves: before any sync, client A's table is what the app meant."""
        self.compare("client A before sync", self.intended, self.rows_a_before_sync,
                     "intended rows vs client A before sync, by slug")

    def test_2_every_row_has_a_sync_key(self):
        """Every row inserted on a tracked table gets a tether_id in the same statement."""
        keyless = sorted(slug for slug in self.rows_a_before_sync
                         if f"<no tether_id> slug={slug}" in self.rows_a_keys_before_sync)
        self.assertEqual(keyless, [], "rows of client A without a tether_id (inserted without capture)")

    def test_3_writes_after_the_rebuild_are_captured(self):
        """The rebuild (copy, drop, rename) must not end capture: each write of step 6 is queued."""
        slug_of = {key: values["slug"] for key, values in self.rows_a_keys_before_sync.items()}
        slug_of[self.post_rebuild_deleted_key] = "bulk-3"
        queued = {(op, slug_of.get(key, key)) for i, key, op, _ in self.logs_after_writes
                  if i > (self.logs_before_after_writes or 0)}
        expected = {("create", "after-migration"), ("update", "groceries"), ("update", "reading-list"),
                    ("delete", "bulk-3")}
        self.assertEqual(queued, expected, "mutations queued by the writes after the migration (operation, slug)")

    def test_4_json_column_travels_as_json(self):
        """A JSON column's value is sent as JSON (array, object, null), not as a string of JSON text."""
        as_strings = [(op, key, json.loads(payload)["tags"]) for _, key, op, payload in self.logs_after_writes
                      if op != "delete" and isinstance(json.loads(payload).get("tags"), str)]
        self.assertEqual(as_strings, [], "queued payloads whose tags are a string")

    def test_5_client_a_sync_is_clean(self):
        """The server accepts every mutation: nothing failed, conflicted or was rejected."""
        self.assertEqual((self.sync_a.get("failed"), self.sync_a.get("conflicts"), self.sync_a.get("rejections")),
                         (0, 0, []), f"tether_sync() on A: {self.sync_a}")
        self.assertEqual((self.status_a["pending"], self.status_a["failed"], self.status_a["conflicts"]), (0, 0, 0),
                         f"unsynced on A: {[row[:4] for row in self.unsynced_a]}")

    def test_6_sync_keeps_client_a_writes(self):
        """Syncing does not undo client A's own writes: its table is unchanged by its sync."""
        self.compare("client A after sync", self.intended, self.rows_a_by_slug,
                     "intended rows vs client A after its sync, by slug")

    def test_7_server_holds_client_a_rows(self):
        self.compare("the server", self.rows_a, self.rows_server, "client A vs server (full pull), by tether_id")

    def test_8_client_b_holds_client_a_rows(self):
        self.compare("client B", self.rows_a, self.rows_b, "client A vs client B, by tether_id")
        self.assertEqual(self.sync_b.get("pull_errors"), 0, f"tether_sync() on B: {self.sync_b}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
