-- tether internal schema, version 1. Released migrations are never edited: add a new file.
-- Every internal table is described in README.md ("Internal tables").

-- The queue: one row per captured mutation, written by the plain-SQL capture triggers.
-- Triggers store only what the write knows; identifiers are given when a mutation is first
-- sent (tether::queue), which keeps capture cheap.
CREATE TABLE IF NOT EXISTS tether_mutation_logs (
    id               INTEGER PRIMARY KEY,
    mutation_id      TEXT,           -- ULID given when first sent, kept for every retry
    entity_id        TEXT NOT NULL,
    model            TEXT NOT NULL,
    operation        TEXT NOT NULL,
    payload          TEXT NOT NULL DEFAULT '{}',
    version          INTEGER,        -- per-entity counter, given in queue order when first sent
    timestamp        INTEGER NOT NULL,
    sync_status      TEXT NOT NULL DEFAULT 'pending',
    synced_at        TEXT,
    rejection_reason TEXT,
    rejection_data   TEXT,
    retry_count      INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
-- Server answers name mutations by id. Partial: capture writes no entry, sending does.
CREATE UNIQUE INDEX IF NOT EXISTS tether_mutation_logs_mutation_id
    ON tether_mutation_logs (mutation_id) WHERE mutation_id IS NOT NULL;
-- Small: only what still needs attention, so status counts and queue scans stay cheap
-- however many synced mutations are retained.
CREATE INDEX IF NOT EXISTS tether_mutation_logs_unsynced
    ON tether_mutation_logs (sync_status, id) WHERE sync_status <> 'synced';

-- Highest version given to each entity, so versions keep increasing after pruning.
CREATE TABLE IF NOT EXISTS tether_entity_versions (
    entity_id TEXT PRIMARY KEY,
    version   INTEGER NOT NULL
) WITHOUT ROWID;

-- Sync bookkeeping: last_sync_cursor, last_sync_at, client_id.
CREATE TABLE IF NOT EXISTS tether_sync_state (
    key        TEXT PRIMARY KEY,
    value      TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Persisted tether_config() settings.
CREATE TABLE IF NOT EXISTS tether_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Registry of tracked tables and what their triggers were generated from.
CREATE TABLE IF NOT EXISTS tether_tracked_tables (
    table_name      TEXT PRIMARY KEY,
    model           TEXT NOT NULL UNIQUE,
    sync_key        TEXT NOT NULL,
    synced_columns  TEXT NOT NULL,  -- JSON array, payload order
    table_columns   TEXT NOT NULL,  -- JSON array of every column when triggers were generated
    trigger_version INTEGER NOT NULL,
    options         TEXT NOT NULL DEFAULT '{}',
    created_at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Capture suppression: a row exists only inside a transaction that applies server state,
-- so it is invisible to (and never suppresses) writers on other connections.
CREATE TABLE IF NOT EXISTS tether_capture_suppressed (
    reason TEXT NOT NULL
);

-- The sync lock: a lease shared by every connection and process. A cycle holds it while it
-- runs, renews it between requests, and a holder that died loses it when it expires.
CREATE TABLE IF NOT EXISTS tether_locks (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL     -- Unix milliseconds
);

-- Server snapshots that arrived while the row still had unsent local changes. They wait for the
-- push: if the local change is rejected for good, the snapshot is applied then (otherwise the
-- pull cursor would already be past it and the row would never converge).
CREATE TABLE IF NOT EXISTS tether_deferred_snapshots (
    entity_id   TEXT PRIMARY KEY,
    model       TEXT NOT NULL,
    operation   TEXT NOT NULL,
    payload     TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- One row per sync cycle, foreground or background: users query it or attach triggers to it.
CREATE TABLE IF NOT EXISTS tether_sync_log (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,                       -- 'sync' | 'push' | 'pull'
    trigger     TEXT NOT NULL DEFAULT 'foreground',  -- 'foreground' | 'dispatch' | 'schedule' | 'auto'
    started_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at TEXT,
    result      TEXT,                                -- the result JSON, when the cycle completed
    error       TEXT                                 -- the error message, when it failed
);
