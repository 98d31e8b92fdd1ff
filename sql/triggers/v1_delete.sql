-- DELETE -> one 'delete' with an empty payload.
CREATE TRIGGER {{delete_trigger}} AFTER DELETE ON {{table}}
WHEN OLD.{{sync_key}} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tether_capture_suppressed)
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    VALUES (OLD.{{sync_key}}, {{model}}, 'delete', '{}', {{now_ms}});
END
