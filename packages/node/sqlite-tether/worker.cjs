'use strict';
// One sync cycle on a connection of its own, off the main thread. workerData (from index.cjs):
// { file, driver: 'better-sqlite3' | 'node:sqlite', module, library, kind, config, timeout }.
const { parentPort, workerData } = require('node:worker_threads');

const { file, driver, module: modulePath, library, kind, config, timeout } = workerData;
let db;
try {
  try {
    if (driver === 'node:sqlite') {
      const { DatabaseSync } = require('node:sqlite');
      db = new DatabaseSync(file, { allowExtension: true, timeout });
    } else {
      const Database = require(modulePath);
      db = new Database(file, { fileMustExist: true, timeout });
    }
  } catch (error) {
    // SQLite's "unable to open database file" does not say which.
    throw Object.assign(new Error(`sqlite-tether: cannot open the database ${file}: ${error && error.message}`), {
      code: error && error.code,
    });
  }
  db.loadExtension(library);
  if (driver === 'node:sqlite') db.enableLoadExtension(false);
  const setting = db.prepare("SELECT tether_config(?, ?, 'connection') AS v");
  for (const [key, value] of Object.entries(config)) {
    setting.get(key, typeof value === 'boolean' ? String(value) : value);
  }
  const row = db.prepare(`SELECT tether_${kind}() AS r`).get();
  parentPort.postMessage({ ok: true, result: row.r });
} catch (error) {
  parentPort.postMessage({ ok: false, message: String(error && error.message), code: error && error.code });
} finally {
  if (db) db.close();
}
