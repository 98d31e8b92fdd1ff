-- Tables tracked with {"keys": "on_sync"}: an INSERT of a row without a sync key logs one
-- 'unkeyed' create that names the row by its INTEGER PRIMARY KEY, and writes nothing else but
-- clearing notes (v5_clear_nested_notes.sql). The key pass (tether::keys) gives the key, reads the
-- payload and settles rowid reuse when the next sync starts. Every other insert takes the full
-- path, v5_insert_keyed.sql (the two WHEN clauses are each other's negation): a key given, server state
-- applied, or a row the BEFORE trigger noted as about to be replaced through the primary key, the
-- sync key or a UNIQUE constraint: that one takes over the key at once, as other tables' foreign
-- keys may refer to it. This trigger fires before the full path (tether::triggers::render).
CREATE TRIGGER {{keyless_trigger}} AFTER INSERT ON {{table}}
WHEN {{keyless_when}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, timestamp, sync_status, locator)
    VALUES ('', {{model}}, 'create', {{now_ms}}, 'unkeyed', {{pk_new}});
    {{clear_nested_notes}}
END
