// Review findings for the sqlite-tether npm package, as failing tests until fixed. Run like
// node_test.mjs: copied into the fresh project by tests/packages/run.sh, `node --test
// review_test.mjs` with PKG_TEST_SERVER_BIN. Talks only to a tether-server on 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import * as tether from 'sqlite-tether';

const dir = mkdtempSync(join(tmpdir(), 'tether review '));
let server;
let url;
before(async () => {
  server = spawn(process.env.PKG_TEST_SERVER_BIN, ['--listen', '127.0.0.1:0', '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await new Promise((resolve) => createInterface({ input: server.stdout }).once('line', resolve));
  url = first.match(/http:\/\/127\.0\.0\.1:\d+/)[0];
});
after(() => {
  server.kill();
  rmSync(dir, { recursive: true, force: true });
});

test('sync(db) while db is inside a transaction fails at once, saying to commit', async () => {
  const db = tether.load(new Database(join(dir, 'tx.db')));
  db.exec('CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)');
  db.prepare("SELECT tether_track('tasks')").get();
  db.prepare("SELECT tether_config('server_url', ?)").get(url);
  db.exec('BEGIN');
  db.prepare("INSERT INTO tasks (title) VALUES ('not committed yet')").run();
  const started = Date.now();
  const error = await tether.sync(db).then(() => null, (e) => e);
  const elapsed = Date.now() - started;
  db.exec('ROLLBACK');
  db.close();
  assert.ok(error, 'sync resolved');
  assert.ok(elapsed < 2000, `waited ${elapsed} ms for the caller's own lock: ${error.message}`);
  assert.match(error.message, /commit/i);
});

test('sync(db) inside a better-sqlite3 transaction function is refused; after it, sync works', async () => {
  const db = tether.load(new Database(join(dir, 'txfn.db')));
  db.exec('CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)');
  db.prepare("SELECT tether_track('tasks')").get();
  db.prepare("SELECT tether_config('server_url', ?)").get(url);
  let pending;
  db.transaction(() => {
    db.prepare("INSERT INTO tasks (title) VALUES ('in a transaction')").run();
    pending = tether.push(db);
  })();
  await assert.rejects(pending, /open transaction/);
  assert.equal((await tether.sync(db)).pushed, 1);
  db.close();
});

test('sync(path) of a missing file names the file', async () => {
  const missing = join(dir, 'typo.db');
  const error = await tether.sync(missing).then(() => null, (e) => e);
  assert.ok(error);
  assert.ok(error.message.includes(missing), error.message);
  assert.ok(!existsSync(missing));
  // A relative path also names where it was looked for.
  await assert.rejects(tether.pull('typo.db'), (e) => e.message.includes(join(process.cwd(), 'typo.db')));
  await assert.rejects(tether.sync(':memory:'), /in memory/);
});
