-- The sync key is the row's identity on the server: it may be given once (NULL -> a ULID), never
-- changed or cleared, and never anything but a ULID. Applying server state never writes it on an
-- existing row, so no exception is needed for tether itself.
CREATE TRIGGER {{guard_trigger}} BEFORE UPDATE OF {{sync_key}} ON {{table}}
WHEN NEW.{{sync_key}} IS NOT OLD.{{sync_key}}
BEGIN
    SELECT RAISE(ABORT, {{key_change_message}})
     WHERE OLD.{{sync_key}} IS NOT NULL AND ({{valid_old_key}});
    SELECT RAISE(ABORT, {{invalid_key_message}})
     WHERE NOT ({{valid_new_key}});
END
