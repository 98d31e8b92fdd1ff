-- INSERT -> one 'create'. A row that takes the place of one INSERT OR REPLACE deleted (same
-- primary key, or another UNIQUE constraint) keeps that row's key and is one 'update' of the same
-- entity; other entities REPLACE deleted get a 'delete' first. tether_row_keys is kept whoever
-- writes (applying server state too); only the mutation log obeys capture suppression. The row is
-- read back by its locator, never by "the last log row", so triggers of the user's on the log
-- cannot swap keys, and the payload is the row as it is now, after any trigger of the user's
-- that wrote it.
CREATE TRIGGER {{insert_trigger}} AFTER INSERT ON {{table}}
BEGIN
    SELECT RAISE(ABORT, {{invalid_key_message}})
     WHERE NEW.{{sync_key}} IS NOT NULL AND NOT ({{valid_new_key}});
    UPDATE {{table}}
       SET {{sync_key}} = coalesce(
             (SELECT s.sync_key FROM tether_row_keys AS s
               WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
                 AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = s.sync_key)),
             {{carry_replaced}}
             {{new_ulid}})
     WHERE NEW.{{sync_key}} IS NULL AND {{row_match_new}};
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT gone.sync_key, {{model}}, 'delete', '{}', {{now_ms}}
      FROM (SELECT s.sync_key FROM tether_row_keys AS s
             WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
            {{union_replaced}}) AS gone
     WHERE NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = gone.sync_key)
       AND {{not_suppressed}};
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT t.{{sync_key}}, {{model}},
           CASE WHEN EXISTS (SELECT 1 FROM tether_row_keys AS s
                              WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
                                AND s.sync_key = t.{{sync_key}})
                     {{or_replaced}}
                THEN 'update' ELSE 'create' END,
           {{payload_row}}, {{now_ms}}
      FROM {{table}} AS t
     WHERE {{t_is_new}} AND {{not_suppressed}};
    INSERT OR REPLACE INTO tether_row_keys (table_id, row_pk, sync_key)
    SELECT {{table_id}}, {{pk_new}}, t.{{sync_key}} FROM {{table}} AS t
     WHERE {{t_is_new}} AND t.{{sync_key}} IS NOT NULL;
    {{clear_replaced}}
END
