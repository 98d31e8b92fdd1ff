-- tether internal schema, version 4: what the server refused can be resolved from SQL, and what
-- needs attention is one view away. Released migrations are never edited: add a new file. Every
-- internal table is described in README.md ("Internal tables").

-- A failed or conflicting mutation that tether_retry or tether_discard settled gets sync_status
-- 'resolved' (out of the failed/conflicts counts, pruned with retention_days from resolved_at);
-- its rejection_reason and rejection_data stay as the record of what happened.
ALTER TABLE tether_mutation_logs ADD COLUMN resolved_at TEXT;
ALTER TABLE tether_mutation_logs ADD COLUMN resolution TEXT;   -- 'retried' | 'discarded'
-- The local row's primary key (a JSON object) when the mutation failed or conflicted: written
-- then, not at capture, so capture costs nothing more.
ALTER TABLE tether_mutation_logs ADD COLUMN local_pk TEXT;

-- Rows whose local changes were discarded where tether knew no server state to put back: they
-- stay as they are until the server sends the row again (the discard pulls from the start) or a
-- change of them is applied by the server.
CREATE TABLE IF NOT EXISTS tether_diverged (
    entity_id TEXT PRIMARY KEY,
    model     TEXT NOT NULL,
    operation TEXT,          -- the discarded change's operation
    local_pk  TEXT,          -- JSON object, NULL when the row is gone locally
    message   TEXT NOT NULL,
    since     TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
) WITHOUT ROWID;

-- What the server showed of each tracked table: the columns its pulled snapshots carried (JSON
-- array, NULL until one arrives), and the columns it said it ignored in a push (JSON array).
ALTER TABLE tether_tracked_tables ADD COLUMN server_columns TEXT;
ALTER TABLE tether_tracked_tables ADD COLUMN server_ignored TEXT NOT NULL DEFAULT '[]';

-- Everything that needs a person: mutations the server refused or answered with a conflict,
-- rows left diverged by a discard, and server rows this database refused (the quarantine).
-- `since` is UTC, 'YYYY-MM-DD HH:MM:SS'.
CREATE VIEW IF NOT EXISTS tether_attention AS
SELECT m.sync_status AS kind,
       t.table_name AS table_name,
       m.model AS model,
       m.entity_id AS sync_key,
       m.local_pk AS local_pk,
       m.operation AS operation,
       m.rejection_reason AS reason,
       CASE
         WHEN m.sync_status = 'conflict'
           THEN 'the server changed this row after the local change was made; the row now holds the server''s version'
         WHEN json_valid(m.rejection_data) AND json_type(m.rejection_data, '$.messages') = 'object'
           THEN (SELECT group_concat(msg.value, ' ')
                   FROM json_each(m.rejection_data, '$.messages') AS field, json_each(field.value) AS msg)
         WHEN json_valid(m.rejection_data) AND json_type(m.rejection_data) = 'object'
           THEN json_extract(m.rejection_data, '$.message')
       END AS message,
       m.rejection_data AS details,
       m.mutation_id AS mutation_id,
       m.retry_count AS retry_count,
       m.updated_at AS since
  FROM tether_mutation_logs AS m
  LEFT JOIN tether_tracked_tables AS t ON t.model = m.model
 WHERE m.sync_status <> 'synced' AND m.sync_status IN ('failed', 'conflict')
UNION ALL
SELECT 'diverged', t.table_name, d.model, d.entity_id, d.local_pk, d.operation, 'diverged',
       d.message, NULL, NULL, NULL, d.since
  FROM tether_diverged AS d
  LEFT JOIN tether_tracked_tables AS t ON t.model = d.model
UNION ALL
SELECT 'quarantined', t.table_name, q.model, q.entity_id, NULL, q.operation, 'refused locally',
       q.error, q.payload, NULL, q.attempts, strftime('%Y-%m-%d %H:%M:%S', q.first_failed_at)
  FROM tether_quarantine AS q
  LEFT JOIN tether_tracked_tables AS t ON t.model = q.model;
