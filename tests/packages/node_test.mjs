// The sqlite-tether npm packages as a user gets them: tests/packages/run.sh installs the tarballs
// into a fresh project, copies this file there and runs `node --test` in it (SERVER_BIN in
// PKG_TEST_SERVER_BIN). Talks only to a tether-server it starts on 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import * as tether from 'sqlite-tether';

const require = createRequire(import.meta.url);
const dir = mkdtempSync(join(tmpdir(), 'tether-npm-'));
let server;
let url;

before(async () => {
  server = spawn(process.env.PKG_TEST_SERVER_BIN, ['--listen', '127.0.0.1:0', '--quiet', '--test-controls'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const first = await new Promise((resolve, reject) => {
    createInterface({ input: server.stdout }).once('line', resolve);
    server.once('exit', (code) => reject(new Error(`tether-server exited (${code})`)));
  });
  url = first.match(/http:\/\/127\.0\.0\.1:\d+/)[0];
});

after(() => {
  server.kill();
  rmSync(dir, { recursive: true, force: true });
});

function client(name) {
  const path = join(dir, name);
  const db = tether.load(new Database(path));
  db.exec('CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, title TEXT, status TEXT)');
  db.prepare("SELECT tether_track('tasks')").get();
  db.prepare("SELECT tether_config('server_url', ?)").get(url);
  return { path, db };
}

async function faults(list) {
  const answer = await fetch(`${url}/_test/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(list),
  });
  assert.equal(answer.status, 200);
}

// The field names of an interface in the installed index.d.ts.
function declaredKeys(name) {
  const types = readFileSync(require.resolve('sqlite-tether').replace(/index\.cjs$/, 'index.d.ts'), 'utf8');
  const body = types.match(new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n\\}`))[1];
  return [...body.matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1]).sort();
}

test('ESM and CommonJS entries, library from the platform package', () => {
  const cjs = require('sqlite-tether');
  assert.equal(cjs.load, tether.load);
  assert.equal(cjs.sync, tether.sync);
  const path = tether.getLoadablePath();
  assert.match(path, /node_modules\/sqlite-tether-linux-x64\/libtether\.so$/);
  assert.ok(existsSync(path));
  const db = tether.load(new Database(':memory:'));
  const version = db.prepare('SELECT tether_version() AS v').get().v;
  assert.equal(version, require('sqlite-tether/package.json').version);
  db.close();
});

test('load(db) refuses what is not a database, naming what it needs', () => {
  assert.throws(() => tether.load({}), /better-sqlite3 Database or a node:sqlite DatabaseSync/);
});

test('rows written on one client arrive on a second one', async () => {
  const a = client('rows-a.db');
  const insert = a.db.prepare('INSERT INTO tasks (title, status) VALUES (?, ?)');
  a.db.transaction(() => {
    insert.run('Buy milk', 'open');
    insert.run('Call Anna', 'done');
    insert.run('Fix bike', null);
  })();
  const pushed = await tether.sync(a.db);
  assert.deepEqual([pushed.pushed, pushed.failed, pushed.conflicts], [3, 0, 0]);

  const b = client('rows-b.db');
  const pulled = await tether.sync(b.path); // a path works too
  assert.ok(pulled.pulled >= 3);
  const rows = (db) => db.prepare('SELECT tether_id, title, status FROM tasks ORDER BY tether_id').all();
  const received = new Map(rows(b.db).map((r) => [r.tether_id, r]));
  for (const row of rows(a.db)) assert.deepEqual(received.get(row.tether_id), row);
  assert.equal(tether.status(a.db).pending, 0);
  a.db.close();
  b.db.close();
});

test('sync(db) returns a Promise and the event loop keeps running against a slow server', async () => {
  const { db } = client('slow.db');
  db.prepare("INSERT INTO tasks (title) VALUES ('slow')").run();
  const delay = 800;
  await faults([
    { path: '/tether/push', times: 1, delay_ms: delay },
    { path: '/tether/pull', times: 1, delay_ms: delay },
  ]);
  const ticks = [];
  const timer = setInterval(() => {
    ticks.push(performance.now());
    db.prepare('SELECT count(*) AS n FROM tasks').get(); // the application's connection stays usable
  }, 20);
  const started = performance.now();
  let result;
  try {
    const pending = tether.sync(db);
    assert.ok(pending instanceof Promise);
    result = await pending;
  } finally {
    clearInterval(timer);
  }
  const elapsed = performance.now() - started;
  assert.equal(result.pushed, 1);
  assert.ok(elapsed >= 2 * delay * 0.95, `the server's delays were not felt (${elapsed} ms)`);
  const gaps = ticks.slice(1).map((t, i) => t - ticks[i]);
  assert.ok(ticks.length > 20, `only ${ticks.length} ticks in ${elapsed} ms`);
  assert.ok(Math.max(...gaps) < 400, `the event loop stood still for ${Math.max(...gaps)} ms`);
  db.close();
});

test('typed results: the declared keys are the keys tether returns', async () => {
  const { db, path } = client('typed.db');
  db.prepare("INSERT INTO tasks (title) VALUES ('typed')").run();
  const result = await tether.push(db);
  assert.deepEqual(Object.keys(result).sort(), declaredKeys('SyncResult'));
  assert.deepEqual(Object.keys(await tether.pull(path)).sort(), declaredKeys('SyncResult'));
  const status = tether.status(db);
  assert.deepEqual(Object.keys(status).sort(), declaredKeys('Status'));
  assert.deepEqual(Object.keys(status.tables[0]).sort(), declaredKeys('TableStatus'));
  for (const key of Object.keys(status.worker)) assert.ok(declaredKeys('WorkerStatus').includes(key), key);
  db.close();
});

test("sync rejects with tether's error, and explains an in-memory database", async () => {
  const { db } = client('errors.db');
  // A connection-scoped setting for this cycle only: a port nothing listens on.
  await assert.rejects(tether.sync(db, { config: { server_url: 'http://127.0.0.1:9' } }), /tether_sync/);
  await assert.rejects(tether.sync(tether.load(new Database(':memory:'))), /in memory/);
  db.close();
});
