// Loads libtether with better-sqlite3, as a Node application would. Usage: node --test test.mjs (LIB in TETHER_EXTENSION)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
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
