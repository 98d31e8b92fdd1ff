-- INSERT -> one 'create'. A row inserted without a sync key gets one here; that assignment
-- changes no synced column, so the update trigger ignores it.
CREATE TRIGGER {{insert_trigger}} AFTER INSERT ON {{table}}
WHEN NOT EXISTS (SELECT 1 FROM tether_capture_suppressed)
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    VALUES (coalesce(NEW.{{sync_key}}, {{new_ulid}}), {{model}}, 'create', {{payload_new}}, {{now_ms}});
    UPDATE {{table}}
       SET {{sync_key}} = (SELECT entity_id FROM tether_mutation_logs ORDER BY id DESC LIMIT 1)
     WHERE NEW.{{sync_key}} IS NULL AND {{row_match_new}};
END
