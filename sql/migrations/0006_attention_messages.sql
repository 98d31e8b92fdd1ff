-- tether internal schema, version 6: tether_attention says what became of a conflict's server
-- version (written, waiting for the row's newer local changes, or refused here and quarantined)
-- and gives a message for refusals whose answer carries none (`not_found`). Released
-- migrations are never edited: add a new file. Every internal table is described in README.md
-- ("Internal tables").
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
