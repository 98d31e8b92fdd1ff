-- DELETE -> one 'delete' with an empty payload.
CREATE TRIGGER {{delete_trigger}} AFTER DELETE ON {{table}}
WHEN OLD.{{sync_key}} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tether_capture_suppressed)
BEGIN
    INSERT INTO tether_mutation_logs (mutation_id, entity_id, model, operation, payload, version, timestamp)
    SELECT clock.prefix || hex(randomblob(8)), OLD.{{sync_key}}, {{model}}, 'delete',
           '{}', {{next_version_old}}, clock.ms
      FROM {{clock}};
END
