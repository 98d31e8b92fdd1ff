-- DELETE (tables tracked with {"keys": "on_sync"}): as v2_delete.sql. A row deleted before it got
-- its key logs nothing of its own (the key pass drops its create: no row is there), but a row
-- that took the place of a keyed one through REPLACE by primary key is that entity (its record
-- names a key no row holds): the entity gets its 'delete', and the record goes.
CREATE TRIGGER {{delete_trigger}} AFTER DELETE ON {{table}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT OLD.{{sync_key}}, {{model}}, 'delete', '{}', {{now_ms}}
     WHERE OLD.{{sync_key}} IS NOT NULL AND {{not_suppressed}};
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT s.sync_key, {{model}}, 'delete', '{}', {{now_ms}} FROM tether_row_keys AS s
     WHERE OLD.{{sync_key}} IS NULL AND s.table_id = {{table_id}} AND s.row_pk = {{pk_old}}
       AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = s.sync_key)
       AND {{not_suppressed}};
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_old}};
    DELETE FROM tether_replaced WHERE table_id = {{table_id}} AND sync_key = OLD.{{sync_key}};
END
