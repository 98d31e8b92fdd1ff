-- INSERT (tables tracked with {"keys": "on_sync"}): the inserts v5_keyless_insert.sql leaves to
-- this trigger (a key given, server state applied, a row noted by the BEFORE trigger as about to
-- be replaced through the primary key, the sync key or a UNIQUE constraint) are captured as
-- v5_insert.sql captures them, with one difference: no new key is made here. A row without a key
-- that takes over no replaced row's key logs an 'unkeyed' create instead, for the key pass, even
-- while server state is applied (a trigger of the user's reacting to it wrote the row; without
-- the create it would never sync). A plain-SQL ULID takes many of the trigger's registers, which
-- SQLite allocates and clears on every INSERT whether this trigger's WHEN holds or not.
CREATE TRIGGER {{insert_trigger}} AFTER INSERT ON {{table}}
WHEN NEW.{{sync_key}} IS NOT NULL OR NOT {{not_suppressed}}
  OR EXISTS (SELECT 1 FROM tether_replaced WHERE table_id = {{table_id}})
BEGIN
    {{replaced_on_insert}}
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT coalesce(t.{{sync_key}}, k.key), {{model}},
           CASE WHEN EXISTS (SELECT 1 FROM tether_replaced AS r
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
    {{recorded_on_insert}}
END
