-- tether internal schema, version 7: a captured write no longer writes an entry into the queue's
-- index of unsynced rows. Capture leaves the new column `indexed` NULL; tether sets it (which puts
-- the row into the index) for the whole tail of rows captured since, at the start and the end of
-- each of its write transactions (tether::queue::index_new_rows). So every row without it comes
-- after every row with it, and the rows the index does not hold yet are found from the end of
-- the log. Released migrations are never edited: add a new file. Every internal table is
-- described in README.md ("Internal tables").
ALTER TABLE tether_mutation_logs ADD COLUMN indexed INTEGER;

-- Every unsynced row is in the index now, and the newest row marks where the tail starts.
UPDATE tether_mutation_logs SET indexed = 1 WHERE sync_status <> 'synced';
UPDATE tether_mutation_logs SET indexed = 1
 WHERE id = (SELECT max(id) FROM tether_mutation_logs) AND indexed IS NULL;

DROP INDEX IF EXISTS tether_mutation_logs_unsynced;
CREATE INDEX tether_mutation_logs_unsynced
    ON tether_mutation_logs (sync_status, id) WHERE sync_status <> 'synced' AND indexed IS NOT NULL;

-- tether_attention as in version 6, reading the index's rows: refused and conflicting rows are
-- only ever made by tether's own write transactions, which index them.
DROP VIEW IF EXISTS tether_attention;
-- Everything that needs a person: mutations the server refused or answered with a conflict,
-- rows left diverged by a discard, and server rows this database refused (the quarantine).
-- `since` is UTC, 'YYYY-MM-DD HH:MM:SS'.
CREATE VIEW tether_attention AS
SELECT m.sync_status AS kind,
       t.table_name AS table_name,
       m.model AS model,
       m.entity_id AS sync_key,
       m.local_pk AS local_pk,
       m.operation AS operation,
       m.rejection_reason AS reason,
       CASE
         WHEN m.sync_status = 'conflict' AND EXISTS (
                SELECT 1 FROM tether_quarantine AS q WHERE q.entity_id = m.entity_id)
           THEN 'the server changed this row after the local change was made; the server''s version could not be written here (see its quarantined entry)'
         WHEN m.sync_status = 'conflict' AND EXISTS (
                SELECT 1 FROM tether_deferred_snapshots AS d WHERE d.entity_id = m.entity_id)
           THEN 'the server changed this row after the local change was made; the server''s version waits until the row''s newer local changes are settled (answered by the server, or retried or discarded)'
         WHEN m.sync_status = 'conflict'
           THEN 'the server changed this row after the local change was made; the row now holds the server''s version'
         WHEN json_valid(m.rejection_data) AND json_type(m.rejection_data, '$.messages') = 'object'
           THEN (SELECT group_concat(msg.value, ' ')
                   FROM json_each(m.rejection_data, '$.messages') AS field, json_each(field.value) AS msg)
         WHEN json_valid(m.rejection_data) AND json_type(m.rejection_data, '$.message') = 'text'
           THEN json_extract(m.rejection_data, '$.message')
         WHEN m.rejection_reason = 'not_found'
           THEN 'the server does not have this row (deleted there, or never created)'
       END AS message,
       m.rejection_data AS details,
       m.mutation_id AS mutation_id,
       m.retry_count AS retry_count,
       m.updated_at AS since
  FROM tether_mutation_logs AS m
  LEFT JOIN tether_tracked_tables AS t ON t.model = m.model
 WHERE m.sync_status <> 'synced' AND m.indexed IS NOT NULL AND m.sync_status IN ('failed', 'conflict')
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
