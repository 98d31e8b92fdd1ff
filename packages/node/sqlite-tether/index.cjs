'use strict';
// sqlite-tether: the tether SQLite extension, prebuilt, with a one-line loader and a sync that
// does not block the event loop. The library itself comes in a platform package
// (sqlite-tether-<platform>-<arch>), installed through optionalDependencies.

const { statSync } = require('node:fs');
const { dirname, isAbsolute, join, resolve } = require('node:path');
const { Worker } = require('node:worker_threads');
const manifest = require('./package.json');

const PREFIX = 'sqlite-tether-';

function platformPackage() {
  return `${PREFIX}${process.platform}-${process.arch}`;
}

function glibcMissing() {
  if (process.platform !== 'linux') return false;
  try {
    return !process.report.getReport().header.glibcVersionRuntime;
  } catch {
    return false;
  }
}

/** The full path of the bundled library (libtether.so), for db.loadExtension(path). */
function getLoadablePath() {
  const name = platformPackage();
  let found;
  try {
    found = require.resolve(`${name}/package.json`);
  } catch {
    const built = Object.keys(manifest.optionalDependencies || {}).map((n) => n.slice(PREFIX.length));
    const here = `${process.platform}-${process.arch}`;
    const why = built.includes(here)
      ? `npm skipped it (installed with --omit=optional or --no-optional, or from a lockfile made ` +
        `on another platform): install again with optional dependencies, or add ` +
        `${name}@${manifest.version} to your dependencies`
      : `there is no prebuilt tether for ${here} (prebuilt: ${built.join(', ') || 'none'}); build it ` +
        `from source (cargo build --release) and load target/release/libtether with db.loadExtension()`;
    const libc = glibcMissing() ? ' This system has no glibc (musl?): the Linux builds need glibc 2.34 or newer.' : '';
    throw new Error(`sqlite-tether: the platform package ${name} is not installed: ${why}.${libc}`);
  }
  const library = require(found).tether && require(found).tether.library;
  if (!library) throw new Error(`sqlite-tether: ${name} does not name its library (package.json "tether.library")`);
  return join(dirname(found), library);
}

function isNodeSqlite(db) {
  return typeof db.enableLoadExtension === 'function' && typeof db.pragma !== 'function';
}

function describeDb(db) {
  const kind = db && db.constructor ? db.constructor.name : typeof db;
  return `${kind}`;
}

/**
 * Loads tether on a better-sqlite3 Database, or on a node:sqlite DatabaseSync opened with
 * { allowExtension: true } (extension loading is switched off again afterwards). Returns db.
 */
function load(db) {
  if (!db || typeof db.prepare !== 'function') {
    throw new TypeError(`sqlite-tether: load(db) needs a better-sqlite3 Database or a node:sqlite DatabaseSync, got ${describeDb(db)}`);
  }
  if (typeof db.loadExtension !== 'function') {
    throw new TypeError(
      `sqlite-tether: this ${describeDb(db)} cannot load extensions: node:sqlite can from Node 22.13 and 23.5 ` +
        `(new DatabaseSync(path, { allowExtension: true })); better-sqlite3 always can`);
  }
  const path = getLoadablePath();
  if (isNodeSqlite(db)) {
    try {
      db.enableLoadExtension(true);
    } catch (error) {
      throw new Error(`sqlite-tether: open the database with new DatabaseSync(path, { allowExtension: true }) to load tether (${error.message})`);
    }
    try {
      db.loadExtension(path);
    } finally {
      db.enableLoadExtension(false);
    }
  } else {
    db.loadExtension(path);
  }
  return db;
}

// The module better-sqlite3 was loaded from, so the worker uses the same one.
function betterSqlite3Module(db) {
  for (const entry of Object.values(require.cache)) {
    if (entry && entry.exports === db.constructor && entry.filename) return entry.filename;
  }
  return require.resolve('better-sqlite3');
}

function mainFile(db) {
  const rows = db.prepare('PRAGMA database_list').all();
  const main = rows.find((row) => row.name === 'main');
  return main ? main.file : '';
}

function inMemory(kind, what) {
  return new Error(
    `sqlite-tether: ${kind}(db) runs on a connection of its own to the database file, and this ${what} is ` +
      `in memory (or temporary): use db.prepare('SELECT tether_${kind}()').get() on it instead (it blocks)`);
}

function isFile(path) {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function target(kind, db, options) {
  if (typeof db === 'string') {
    if (db === '' || db === ':memory:') throw inMemory(kind, 'database');
    // Never create a database: a typo or another working directory would sync a new, empty file.
    if (!db.startsWith('file:') && !isFile(db)) {
      const shown = isAbsolute(db) ? db : `${db} (${resolve(db)})`;
      throw new Error(
        `sqlite-tether: no such database: ${shown}. ${kind}() opens an existing database file and never ` +
          'creates one: check the path (and the working directory)');
    }
    const driver = options.driver || 'better-sqlite3';
    return {
      file: db,
      driver,
      module: driver === 'node:sqlite' ? null : require.resolve('better-sqlite3'),
    };
  }
  if (!db || typeof db.prepare !== 'function') {
    throw new TypeError(`sqlite-tether: expected a database path, a better-sqlite3 Database or a node:sqlite DatabaseSync, got ${describeDb(db)}`);
  }
  const file = mainFile(db);
  if (!file) throw inMemory(kind, 'database');
  // better-sqlite3: inTransaction; node:sqlite: isTransaction (Node 22.16, 24). The cycle's own
  // connection would wait busyTimeout for this transaction's lock and fail with "database is locked".
  if (db.inTransaction === true || db.isTransaction === true) {
    throw new Error(
      `sqlite-tether: ${kind}(db): this database has an open transaction (BEGIN without COMMIT yet): ` +
        `commit it (or roll it back) first, then call ${kind}(). ${kind}() runs on a connection of its own, ` +
        'which cannot write while this transaction holds the database.');
  }
  return isNodeSqlite(db)
    ? { file, driver: 'node:sqlite', module: null }
    : { file, driver: 'better-sqlite3', module: betterSqlite3Module(db) };
}

function cycle(kind, db, options = {}) {
  return new Promise((resolve, reject) => {
    let job;
    try {
      job = { ...target(kind, db, options), library: getLoadablePath(), kind, config: options.config || {}, timeout: options.busyTimeout ?? 5000 };
    } catch (error) {
      reject(error);
      return;
    }
    const worker = new Worker(join(__dirname, 'worker.cjs'), { workerData: job });
    let settled = false;
    worker.once('message', (answer) => {
      settled = true;
      if (answer.ok) {
        resolve(JSON.parse(answer.result));
      } else {
        const error = new Error(answer.message);
        if (answer.code) error.code = answer.code;
        reject(error);
      }
    });
    worker.once('error', (error) => {
      if (!settled) {
        settled = true;
        reject(error);
      }
    });
    worker.once('exit', (code) => {
      if (!settled) {
        settled = true;
        reject(new Error(`sqlite-tether: the sync worker ended (exit code ${code}) without an answer`));
      }
    });
  });
}

/**
 * Push then pull, on a connection of its own (in a worker thread) to db's file: the event loop
 * keeps running. db is a better-sqlite3 Database, a node:sqlite DatabaseSync, or a path.
 * Resolves with the result of tether_sync(); rejects with tether's error.
 */
const sync = (db, options) => cycle('sync', db, options);
const push = (db, options) => cycle('push', db, options);
const pull = (db, options) => cycle('pull', db, options);

/** tether_status() of a connection tether is loaded on, parsed. */
function status(db) {
  const row = db.prepare('SELECT tether_status() AS s').get();
  return JSON.parse(row.s);
}

module.exports = { getLoadablePath, load, sync, push, pull, status };
