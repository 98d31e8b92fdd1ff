-- tether internal schema, version 3: nothing lost, nothing wedged. Released migrations are never
-- edited: add a new file. Every internal table is described in README.md ("Internal tables").

-- Server state that could not be written locally (a constraint, a foreign key whose parent has
-- not arrived yet, a column the table no longer accepts): a pulled snapshot, or the server state
-- of a conflict. The newest per row waits here, is retried at the end of every pull, and leaves
-- when it applies or a newer snapshot of the row does. Shown by tether_status().
CREATE TABLE IF NOT EXISTS tether_quarantine (
    entity_id       TEXT PRIMARY KEY,
    model           TEXT NOT NULL,
    operation       TEXT NOT NULL,   -- 'upsert' | 'delete'
    payload         TEXT NOT NULL,   -- JSON object, as the server sent it
    source          TEXT NOT NULL,   -- 'pull' | 'conflict'
    cursor_before   INTEGER,         -- where the pull stood when it arrived (NULL: the start)
    error           TEXT NOT NULL,   -- why it could not be applied, last time tried
    attempts        INTEGER NOT NULL DEFAULT 1,
    first_failed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_failed_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

-- Who holds the sync lock, so a holder on the same machine whose process died is seen at once
-- instead of when its lease expires. Holders on other machines keep the lease rule.
ALTER TABLE tether_locks ADD COLUMN host TEXT;
ALTER TABLE tether_locks ADD COLUMN pid INTEGER;

-- When a mutation first went into a request body (it may have reached the server from then on).
ALTER TABLE tether_mutation_logs ADD COLUMN first_sent_at TEXT;

-- Where the pull stood when a deferred snapshot arrived (NULL: at the start), and whether a change
-- it waited for had already been sent. If that change is then answered as applied, the server may
-- have applied it before the snapshot was taken (an answer lost, the mutation resent): the pull
-- goes back to here, so the row comes again as the server has it now, whichever change is newer.
ALTER TABLE tether_deferred_snapshots ADD COLUMN cursor_before INTEGER;
ALTER TABLE tether_deferred_snapshots ADD COLUMN after_send INTEGER NOT NULL DEFAULT 1;

-- Which process runs a cycle: a row left unfinished is marked interrupted only once that process
-- is gone (a cycle without the sync lock may still be running elsewhere).
ALTER TABLE tether_sync_log ADD COLUMN host TEXT;
ALTER TABLE tether_sync_log ADD COLUMN pid INTEGER;
