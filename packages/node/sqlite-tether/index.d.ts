// Types of sqlite-tether (ESM and CommonJS entries export the same functions).

/** A better-sqlite3 Database or a node:sqlite DatabaseSync. */
export interface SqliteDatabase {
  prepare(sql: string): { get(...params: unknown[]): unknown; all(...params: unknown[]): unknown[] };
  loadExtension(path: string, ...rest: unknown[]): unknown;
}

/** Which row a rejection or warning is about. */
export interface RowRef {
  model: string;
  table?: string;
  entity_id: string;
  /** The local primary key, e.g. {"id": 7}. */
  primary_key?: Record<string, unknown>;
}

export interface Rejection {
  mutation_id: string;
  /** e.g. "validation_failed", "too_large", "invalid_value". */
  reason: string;
  /** The server's details, e.g. {"messages": {...}}. */
  data: unknown;
  row: RowRef | null;
}

/** What tether_sync(), tether_push() and tether_pull() return (the same keys for all three). */
export interface SyncResult {
  pushed: number;
  pulled: number;
  conflicts: number;
  failed: number;
  rejections: Rejection[];
  warnings: Array<Record<string, unknown> & { row?: RowRef }>;
  pull_errors: number;
  /** Why snapshots were left out: reason → model → count. */
  pull_error_reasons: Record<string, Record<string, number>>;
  /** Another cycle held the sync lock; every count is 0. */
  skipped: boolean;
}

export interface QuarantinedRow {
  model: string;
  entity_id: string;
  operation: string;
  source: string;
  error: string;
  attempts: number;
  since: string;
}

export interface TableStatus {
  table: string;
  model: string;
  sync_key: string;
  /** When new rows get their sync keys. */
  keys: "on_insert" | "on_sync";
  columns: string[];
  json_columns: string[];
  pending: number;
  exists: boolean;
  state: string;
  problem: string | null;
  triggers_installed: boolean;
  triggers: string[];
  columns_changed: boolean;
  added_columns: string[];
  removed_columns: string[];
  warnings: Array<Record<string, unknown>>;
  server_ignored: string[];
  not_echoed: string[] | null;
}

export interface WorkerStatus {
  running: boolean;
  /** Why no worker runs (when not running). */
  unavailable?: string | null;
  schedule?: { kind: 'sync' | 'push' | 'pull'; every: number; next_in: number } | null;
  last_cycle?: { kind: string; trigger: string; at: string | null; result?: SyncResult; error?: string } | null;
  last_error?: string | null;
  failures_in_a_row?: number;
  auto_retry_in?: number | null;
}

/** What tether_status() returns. */
export interface Status {
  pending: number;
  failed: number;
  conflicts: number;
  diverged: number;
  quarantine: { count: number; oldest: QuarantinedRow[] };
  last_pull_errors: Record<string, Record<string, number>>;
  last_sync_cursor: number | null;
  last_sync_at: string | null;
  client_id: string | null;
  server_url: string | null;
  tables: TableStatus[];
  repair_error: string | null;
  version: string;
  worker: WorkerStatus;
}

export interface SyncOptions {
  /** Connection-scoped settings for this cycle only, e.g. { auth_token: '…' }. */
  config?: Record<string, string | number | boolean | null>;
  /** For a path: the driver the worker opens it with (default better-sqlite3). */
  driver?: 'better-sqlite3' | 'node:sqlite';
  /** The worker connection's busy timeout in milliseconds (default 5000). */
  busyTimeout?: number;
}

/** The full path of the bundled library, for db.loadExtension(path). Throws, naming the
 * platform package, when it is not installed. */
export function getLoadablePath(): string;

/** Loads tether on db (better-sqlite3, or node:sqlite opened with { allowExtension: true }). */
export function load<T extends SqliteDatabase>(db: T): T;

/** tether_sync() in a worker thread on a connection of its own to db's file: the event loop
 * keeps running. Rejects with tether's error; at once, without waiting for a lock, when db has
 * an open transaction (commit first), and naming the path when db is a path to no database
 * file (it never creates one). */
export function sync(db: SqliteDatabase | string, options?: SyncOptions): Promise<SyncResult>;
export function push(db: SqliteDatabase | string, options?: SyncOptions): Promise<SyncResult>;
export function pull(db: SqliteDatabase | string, options?: SyncOptions): Promise<SyncResult>;

/** tether_status() of a connection tether is loaded on. */
export function status(db: SqliteDatabase): Status;
