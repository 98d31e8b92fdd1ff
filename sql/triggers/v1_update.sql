-- UPDATE -> one 'update' carrying the full synced row, only when a synced column changed.
CREATE TRIGGER {{update_trigger}} AFTER UPDATE ON {{table}}
WHEN ({{changed}}) AND NEW.{{sync_key}} IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM tether_capture_suppressed)
BEGIN
    INSERT INTO tether_mutation_logs (mutation_id, entity_id, model, operation, payload, version, timestamp)
    SELECT clock.prefix || hex(randomblob(8)), NEW.{{sync_key}}, {{model}}, 'update',
           {{payload_new}}, {{next_version_new}}, clock.ms
      FROM {{clock}};
END
