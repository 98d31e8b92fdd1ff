-- UPDATE -> one 'update' carrying the full synced row, only when a synced column changed.
-- "OF {{synced_columns}}": statements that set only other columns (such as the sync key
-- assignment in the insert trigger) do not even start this trigger.
CREATE TRIGGER {{update_trigger}} AFTER UPDATE OF {{synced_columns}} ON {{table}}
WHEN ({{changed}}) AND NEW.{{sync_key}} IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM tether_capture_suppressed)
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    VALUES (NEW.{{sync_key}}, {{model}}, 'update', {{payload_new}}, {{now_ms}});
END
