-- The start of both full-path insert triggers (v5_insert.sql, v5_insert_keyed.sql): a key given
-- must be a ULID; then a 'delete' for each entity a REPLACE deleted to make room for the row
-- (noted by the BEFORE trigger of this very row, {{notes_of_new}}; no row holds its key any more)
-- other than the one the row takes over.
    SELECT RAISE(ABORT, {{invalid_key_message}})
     WHERE NEW.{{sync_key}} IS NOT NULL AND NOT ({{valid_new_key}});
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT DISTINCT r.sync_key, {{model}}, 'delete', '{}', {{now_ms}}
      FROM tether_replaced AS r
     WHERE r.table_id = {{table_id}} AND {{notes_of_new}}
       AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = r.sync_key)
       AND r.sync_key IS NOT (SELECT {{taken_over}} WHERE NEW.{{sync_key}} IS NULL);
