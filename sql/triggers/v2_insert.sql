-- INSERT -> one 'create'. A row that takes the place of one INSERT OR REPLACE deleted (same
-- primary key, the same sync key, or another UNIQUE constraint) keeps that row's key and is one
-- 'update' of the same entity; other entities REPLACE deleted get a 'delete' first. Their
-- candidates come from tether_row_keys (by primary key) and tether_replaced (noted by the BEFORE
-- trigger); a candidate whose key a row still holds was not deleted and is passed over.
-- tether_row_keys is kept whoever writes (applying server state too); only the mutation log obeys
-- capture suppression. The row is read back by its locator, never by "the last log row", so the
-- user's triggers on the log cannot swap keys, and the payload is the row as it is now, after
-- any trigger of the user's that wrote it.
CREATE TRIGGER {{insert_trigger}} AFTER INSERT ON {{table}}
BEGIN
    SELECT RAISE(ABORT, {{invalid_key_message}})
     WHERE NEW.{{sync_key}} IS NOT NULL AND NOT ({{valid_new_key}});
    UPDATE {{table}}
       SET {{sync_key}} = coalesce(
             (SELECT s.sync_key FROM tether_row_keys AS s
               WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
                 AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = s.sync_key)),
             (SELECT r.sync_key FROM tether_replaced AS r
               WHERE r.table_id = {{table_id}} AND {{not_suppressed}}
                 AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = r.sync_key)
               ORDER BY r.rowid LIMIT 1),
             {{new_ulid}})
     WHERE NEW.{{sync_key}} IS NULL AND {{row_match_new}};
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT s.sync_key, {{model}}, 'delete', '{}', {{now_ms}}
      FROM tether_row_keys AS s
     WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
       AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = s.sync_key)
       AND {{not_suppressed}};
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT r.sync_key, {{model}}, 'delete', '{}', {{now_ms}}
      FROM tether_replaced AS r
     WHERE r.table_id = {{table_id}}
       AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = r.sync_key)
       AND r.sync_key IS NOT (SELECT s.sync_key FROM tether_row_keys AS s
                               WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}})
       AND {{not_suppressed}};
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT t.{{sync_key}}, {{model}},
           CASE WHEN EXISTS (SELECT 1 FROM tether_row_keys AS s
                              WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
                                AND s.sync_key = t.{{sync_key}})
                  OR EXISTS (SELECT 1 FROM tether_replaced AS r
                              WHERE r.table_id = {{table_id}} AND r.sync_key = t.{{sync_key}})
                THEN 'update' ELSE 'create' END,
           {{payload_row}}, {{now_ms}}
      FROM {{table}} AS t
     WHERE {{t_is_new}} AND {{not_suppressed}};
    DELETE FROM tether_row_keys
     WHERE table_id = {{table_id}} AND row_pk IN (
           SELECT r.row_pk FROM tether_replaced AS r
            WHERE r.table_id = {{table_id}} AND r.row_pk IS NOT {{pk_new}}
              AND (r.sync_key IS (SELECT t.{{sync_key}} FROM {{table}} AS t WHERE {{t_is_new}})
                   OR NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = r.sync_key)));
    INSERT OR REPLACE INTO tether_row_keys (table_id, row_pk, sync_key)
    SELECT {{table_id}}, {{pk_new}}, t.{{sync_key}} FROM {{table}} AS t
     WHERE {{t_is_new}} AND t.{{sync_key}} IS NOT NULL;
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
END
