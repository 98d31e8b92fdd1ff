-- INSERT (keys on insert) of a row without a sync key, nothing about to be replaced and no server
-- state being applied: the common insert. A new key, one 'create', the key written into the row,
-- and nothing else. Every other insert takes the full path, v5_insert.sql (the two WHEN clauses
-- are each other's negation), so the common one does not run the REPLACE statements: SQLite runs
-- every statement of a trigger whose WHEN holds, whatever they find.
-- The key is the row's own if a trigger of the user's that ran first gave it one. The mutation is
-- logged before the key is written, and the key read back from this trigger's own log row, as in
-- v5_insert.sql.
-- On rowid tables the create names the row by its rowid in `locator`, and tether writes the row's
-- tether_row_keys record from it before anything of tether's reads records (tether::queue), unless
-- a trigger wrote or dropped the record there since (v6_drop_records.sql): the record was a page
-- of its own in every transaction that inserts. Other tables record the row here
-- (record_in_trigger: v5_record_new_row.sql; empty on rowid tables).
-- This trigger must fire before the full path, which clears the notes its WHEN reads: SQLite fires
-- a table's triggers newest first, and tether creates this one after it (tether::triggers).
CREATE TRIGGER {{keyless_trigger}} AFTER INSERT ON {{table}}
WHEN {{keyless_when}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp, locator)
    SELECT coalesce(t.{{sync_key}}, {{new_ulid}}), {{model}}, 'create', {{payload_row}}, {{now_ms}}, {{create_locator}}
      FROM {{table}} AS t
     WHERE {{t_is_new}};
    UPDATE {{table}}
       SET {{sync_key}} = (SELECT entity_id FROM tether_mutation_logs WHERE id = last_insert_rowid())
     WHERE {{sync_key}} IS NULL AND {{row_match_new}};
    {{record_in_trigger}}
    {{clear_nested_notes}}
END
