-- UPDATE (tables tracked with {"keys": "on_sync"}): as v2_update.sql for a row that has its key.
-- A row still waiting for its key logs a new 'unkeyed' create instead: the last create logged
-- for a row claims it, so the row is sent at the place of its last change, after whatever it
-- may now refer to (a parent created in between). Entities the row deleted through UPDATE OR
-- REPLACE on a UNIQUE constraint are logged as deletes, keyed or not. A row given its key by
-- this very UPDATE is logged by v3_key_given.sql.
CREATE TRIGGER {{update_trigger}} AFTER UPDATE {{of_watched}} ON {{table}}
WHEN {{changed}} {{or_unique_changed}}
BEGIN
    {{replaced_deletes}}
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT NEW.{{sync_key}}, {{model}}, 'update', {{payload_row}}, {{now_ms}}
      FROM {{table}} AS t
     WHERE OLD.{{sync_key}} IS NOT NULL AND NEW.{{sync_key}} IS NOT NULL
       AND {{t_is_new}} AND ({{changed}}) AND {{not_suppressed}};
    INSERT INTO tether_mutation_logs (entity_id, model, operation, timestamp, sync_status, locator)
    SELECT '', {{model}}, 'create', {{now_ms}}, 'unkeyed', {{pk_new}}
     WHERE NEW.{{sync_key}} IS NULL AND ({{changed}}) AND {{not_suppressed}};
    {{clear_replaced}}
END
