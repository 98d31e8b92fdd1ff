-- INSERT (tables tracked with {"keys": "on_sync"}): the inserts v3_keyless_insert.sql leaves to
-- this trigger (a key given, server state applied, a row noted as replaced through the sync key
-- or a UNIQUE constraint, a row in the place of a keyed one) are captured as v2_insert.sql
-- captures them, with one difference: no new key is made here. A row without a key that takes
-- over no replaced row's key logs an 'unkeyed' create instead, for the key pass, even while
-- server state is applied (a trigger of the user's reacting to it wrote the row; without the
-- create it would never sync). A plain-SQL ULID takes many of the trigger's registers, which
-- SQLite allocates and clears on every INSERT whether this trigger's WHEN holds or not.
CREATE TRIGGER {{insert_trigger}} AFTER INSERT ON {{table}}
WHEN NEW.{{sync_key}} IS NOT NULL OR NOT {{not_suppressed}}
  OR EXISTS (SELECT 1 FROM tether_replaced WHERE table_id = {{table_id}})
  OR EXISTS (SELECT 1 FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_new}})
BEGIN
    SELECT RAISE(ABORT, {{invalid_key_message}})
     WHERE NEW.{{sync_key}} IS NOT NULL AND NOT ({{valid_new_key}});
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT gone.sync_key, {{model}}, 'delete', '{}', {{now_ms}}
      FROM (SELECT s.sync_key FROM tether_row_keys AS s
             WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
            UNION ALL
            SELECT r.sync_key FROM tether_replaced AS r
             WHERE r.table_id = {{table_id}}
               AND r.sync_key IS NOT (SELECT s.sync_key FROM tether_row_keys AS s
                                       WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}})) AS gone
     WHERE NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = gone.sync_key)
       AND gone.sync_key IS NOT (SELECT {{taken_over}} WHERE NEW.{{sync_key}} IS NULL);
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT coalesce(t.{{sync_key}}, k.key), {{model}},
           CASE WHEN EXISTS (SELECT 1 FROM tether_row_keys AS s
                              WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
                                AND s.sync_key = coalesce(t.{{sync_key}}, k.key))
                  OR EXISTS (SELECT 1 FROM tether_replaced AS r
                              WHERE r.table_id = {{table_id}}
                                AND r.sync_key = coalesce(t.{{sync_key}}, k.key))
                THEN 'update' ELSE 'create' END,
           {{payload_row}}, {{now_ms}}
      FROM {{table}} AS t, (SELECT {{taken_over}} AS key) AS k
     WHERE {{t_is_new}} AND coalesce(t.{{sync_key}}, k.key) IS NOT NULL AND {{not_suppressed}};
    UPDATE {{table}}
       SET {{sync_key}} = (SELECT entity_id FROM tether_mutation_logs WHERE id = last_insert_rowid())
     WHERE {{sync_key}} IS NULL AND {{row_match_new}} AND {{not_suppressed}}
       AND {{taken_over}} IS NOT NULL;
    UPDATE {{table}}
       SET {{sync_key}} = {{taken_over}}
     WHERE {{sync_key}} IS NULL AND {{row_match_new}} AND NOT {{not_suppressed}};
    INSERT INTO tether_mutation_logs (entity_id, model, operation, timestamp, sync_status, locator)
    SELECT '', {{model}}, 'create', {{now_ms}}, 'unkeyed', {{pk_new}} FROM {{table}} AS t
     WHERE {{t_is_new}} AND t.{{sync_key}} IS NULL;
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
