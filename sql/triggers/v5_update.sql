-- UPDATE -> one 'update' carrying the full synced row as it is now (after any trigger of the
-- user's that wrote it), only when a synced column changed, the row has its key and capture is not
-- suppressed. "OF" the synced and unique columns: statements that set only other columns (such as
-- the key assignment in the insert trigger) do not even start this trigger. Entities that UPDATE OR
-- REPLACE deleted through a UNIQUE constraint are logged as deletes first, whoever updates, also a
-- row still waiting for its key: a trigger of the user's that fires on the INSERT before tether's
-- (created after tracking) and updates the new row inherits the INSERT's OR REPLACE.
CREATE TRIGGER {{update_trigger}} AFTER UPDATE {{of_watched}} ON {{table}}
WHEN ({{changed}} {{or_unique_changed}}) AND (NEW.{{sync_key}} IS NOT NULL {{or_unique_changed}})
BEGIN
    {{replaced_deletes}}
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT NEW.{{sync_key}}, {{model}}, 'update', {{payload_row}}, {{now_ms}}
      FROM {{table}} AS t
     WHERE {{t_is_new}} AND NEW.{{sync_key}} IS NOT NULL AND ({{changed}}) AND {{not_suppressed}};
    {{clear_replaced}}
END
