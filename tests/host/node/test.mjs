// Loads libtether with better-sqlite3, as a Node application would. Usage: node --test test.mjs (LIB in TETHER_EXTENSION)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const lib = process.env.TETHER_EXTENSION;

function fresh() {
  const dir = mkdtempSync(join(tmpdir(), 'tether-node-'));
  return { dir, path: join(dir, 'app.db') };
}

test('loads, tracks and captures', () => {
  const { dir, path } = fresh();
  const db = new Database(path);
  db.loadExtension(lib);
  db.exec('CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)');
  assert.equal(JSON.parse(db.prepare("SELECT tether_track('tasks') AS r").get().r).model, 'Task');
  const insert = db.prepare('INSERT INTO tasks (title) VALUES (?)');
  db.transaction(() => { for (let i = 0; i < 10; i++) insert.run(`task ${i}`); })();
  const status = JSON.parse(db.prepare('SELECT tether_status() AS s').get().s);
  assert.equal(status.pending, 10);
  const ids = db.prepare('SELECT count(DISTINCT entity_id) AS n FROM tether_mutation_logs').get().n;
  assert.equal(ids, 10);
  db.close();
  rmSync(dir, { recursive: true });
});

test('errors surface as exceptions', () => {
  const { dir, path } = fresh();
  const db = new Database(path);
  db.loadExtension(lib);
  assert.throws(() => db.prepare("SELECT tether_config('nope', 1)").get(), /unknown setting/);
  db.close();
  rmSync(dir, { recursive: true });
});

test('REPLACE keeps the entity and the sync key is guarded', () => {
  const { dir, path } = fresh();
  const db = new Database(path);
  db.loadExtension(lib);
  db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, slug TEXT UNIQUE, body TEXT)');
  db.prepare("SELECT tether_track('notes')").get();
  db.prepare('INSERT INTO notes (slug, body) VALUES (?, ?)').run('a', 'first');
  const key = db.prepare('SELECT tether_id AS k FROM notes').get().k;
  db.prepare('INSERT OR REPLACE INTO notes (slug, body) VALUES (?, ?)').run('a', 'second');
  assert.deepEqual(db.prepare('SELECT tether_id AS k FROM notes').all().map(r => r.k), [key]);
  const ops = db.prepare('SELECT operation AS o, entity_id AS e FROM tether_mutation_logs ORDER BY id').all();
  assert.deepEqual(ops, [{ o: 'create', e: key }, { o: 'update', e: key }]);
  assert.throws(() => db.prepare("UPDATE notes SET tether_id = 'X'").run(), /identity on the server/);
  db.close();
  rmSync(dir, { recursive: true });
});

// A host process of its own for each refused load: when an extension's init fails, SQLite unloads
// the library, and anything tether had registered would crash the process when the connection
// closes. Usage: node -e HOST DB LIB (better-sqlite3's path in BETTER_SQLITE3)
const HOST = `
const Database = require(process.env.BETTER_SQLITE3);
const [path, lib] = process.argv.slice(1);
const db = new Database(path);
try {
  db.loadExtension(lib);
  console.log('host: loaded');
} catch (e) {
  console.log('host: load failed: ' + e.message);
}
db.close();
console.log('host: closed');
`;

function host(path, env = {}) {
  const run = spawnSync(process.execPath, ['-e', HOST, path, lib], {
    encoding: 'utf8',
    timeout: 60000,
    env: { ...process.env, BETTER_SQLITE3: createRequire(import.meta.url).resolve('better-sqlite3'), ...env },
  });
  const out = run.stdout + run.stderr;
  assert.equal(run.signal, null, `the host must not crash:\n${out}`);
  assert.equal(run.status, 0, `the host must close and exit 0:\n${out}`);
  assert.match(out, /host: closed/);
  return out;
}

test('a database from a newer tether is refused by name, without crashing', () => {
  const { dir, path } = fresh();
  const db = new Database(path);
  db.exec(`CREATE TABLE tether_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT);
           INSERT INTO tether_migrations (version, name) VALUES (999, '0999_future');`);
  db.close();
  const out = host(path);
  assert.match(out, /load failed: .*newer tether/);
  rmSync(dir, { recursive: true });
});

test('a file that is not a database is named as such, without crashing', () => {
  const { dir, path } = fresh();
  writeFileSync(path, Buffer.from(Array.from({ length: 8192 }, (_, i) => (Math.imul(i, 2654435761) >>> 13) & 0xff)));
  const out = host(path);
  assert.match(out, /file is not a database/);
  assert.doesNotMatch(out, /JSON/);
  rmSync(dir, { recursive: true });
});

test('a malformed environment value is refused by name, without crashing', () => {
  const { dir, path } = fresh();
  assert.match(host(path), /host: loaded/);
  const out = host(path, { TETHER_PUSH_BATCH_SIZE: 'lots' });
  assert.match(out, /load failed: .*TETHER_PUSH_BATCH_SIZE/);
  rmSync(dir, { recursive: true });
});
