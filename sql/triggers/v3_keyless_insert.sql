-- Tables tracked with {"keys": "on_sync"}: an INSERT of a row without a sync key logs one
-- 'unkeyed' create that names the row by its INTEGER PRIMARY KEY, and writes nothing else. The
-- key pass (tether::keys) gives the key, reads the payload and settles REPLACE and rowid reuse
-- when the next sync starts. Every other insert takes the full path, v3_insert.sql (the two
-- WHEN clauses are each other's negation): a key given, server state applied, a row noted as
-- replaced through the sync key or a UNIQUE constraint, or a row in the place of a keyed one
-- (REPLACE by primary key): that one takes over the key at once, as other tables' foreign keys
-- may refer to it.
CREATE TRIGGER {{keyless_trigger}} AFTER INSERT ON {{table}}
WHEN NEW.{{sync_key}} IS NULL AND {{not_suppressed}}
 AND NOT EXISTS (SELECT 1 FROM tether_replaced WHERE table_id = {{table_id}})
 AND NOT EXISTS (SELECT 1 FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_new}})
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, timestamp, sync_status, locator)
    VALUES ('', {{model}}, 'create', {{now_ms}}, 'unkeyed', {{pk_new}});
END
