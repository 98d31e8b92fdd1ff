-- UPDATE (tables tracked with {"keys": "on_sync"}): as v2_update.sql. A row without a key yet
-- logs no update (its create, filled when the next sync starts, carries the row as it is then),
-- but entities it deleted through UPDATE OR REPLACE on a UNIQUE constraint are logged as deletes
-- all the same.
CREATE TRIGGER {{update_trigger}} AFTER UPDATE {{of_watched}} ON {{table}}
WHEN ({{changed}} {{or_unique_changed}}) AND (NEW.{{sync_key}} IS NOT NULL {{or_noted}})
BEGIN
    {{replaced_deletes}}
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT NEW.{{sync_key}}, {{model}}, 'update', {{payload_row}}, {{now_ms}}
      FROM {{table}} AS t
     WHERE {{t_is_new}} AND ({{changed}}) AND NEW.{{sync_key}} IS NOT NULL AND {{not_suppressed}};
    {{clear_replaced}}
END
