-- The sync key is the row's identity on the server: it may be given once (NULL -> a ULID), never
-- changed or cleared, and never anything but a ULID. Applying server state never writes it on an
-- existing row, so no exception is needed for tether itself.
-- The insert triggers give a new row its key with an UPDATE that reads the key back from the log
-- row they just wrote (last_insert_rowid(), which a trigger started by that UPDATE sees too): a
-- key that is that log row's entity is one tether made or one the insert trigger checked, so the
-- checks are skipped for it. Every INSERT without a key runs this trigger; its checks cost that
-- INSERT a twentieth of its capture (BENCHMARKS.md). Any other value given to a row without a
-- key is checked, and so is every change of a key. Compared byte for byte: the key column may have
-- been declared with a collation (NOCASE would let a lower-case copy of a logged key through).
CREATE TRIGGER {{guard_trigger}} BEFORE UPDATE OF {{sync_key}} ON {{table}}
WHEN NEW.{{sync_key}} IS NOT OLD.{{sync_key}}
 AND NOT (OLD.{{sync_key}} IS NULL AND NEW.{{sync_key}} <> ''
          AND NEW.{{sync_key}} = (SELECT entity_id FROM tether_mutation_logs WHERE id = last_insert_rowid())
              COLLATE BINARY)
BEGIN
    SELECT RAISE(ABORT, {{key_change_message}})
     WHERE OLD.{{sync_key}} IS NOT NULL AND ({{valid_old_key}});
    SELECT RAISE(ABORT, {{invalid_key_message}})
     WHERE NOT ({{valid_new_key}});
END
