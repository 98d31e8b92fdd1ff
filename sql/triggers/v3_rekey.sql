-- A changed primary key (tables tracked with {"keys": "on_sync"}). As v2_rekey.sql: UPDATE OR
-- REPLACE onto a primary key another keyed row held deleted that row without a trigger: its
-- entity gets a 'delete'. The row's record moves with it (a row without a key has none: an
-- insert in the place of a recorded row takes over its key at once; moving any record there is
-- still what keeps it right). A row without a key is found by its new primary key from now on:
-- it logs a new 'unkeyed' create, which, being the last for that locator, claims it; the one at
-- the old primary key finds no row and is dropped.
CREATE TRIGGER {{rekey_trigger}} AFTER UPDATE OF {{pk_columns}} ON {{table}}
WHEN {{pk_old}} IS NOT {{pk_new}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT s.sync_key, {{model}}, 'delete', '{}', {{now_ms}}
      FROM tether_row_keys AS s
     WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
       AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = s.sync_key)
       AND {{not_suppressed}};
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_new}};
    UPDATE tether_row_keys SET row_pk = {{pk_new}}
     WHERE table_id = {{table_id}} AND row_pk = {{pk_old}};
    INSERT OR REPLACE INTO tether_row_keys (table_id, row_pk, sync_key)
    SELECT {{table_id}}, {{pk_new}}, NEW.{{sync_key}} WHERE NEW.{{sync_key}} IS NOT NULL;
    INSERT INTO tether_mutation_logs (entity_id, model, operation, timestamp, sync_status, locator)
    SELECT '', {{model}}, 'create', {{now_ms}}, 'unkeyed', {{pk_new}}
     WHERE NEW.{{sync_key}} IS NULL AND {{not_suppressed}};
END
