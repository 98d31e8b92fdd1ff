-- A changed primary key moves the row's tether_row_keys record (drop_moved_records:
-- v6_drop_records.sql, at the old and the new primary key). UPDATE OR REPLACE onto a primary
-- key another keyed row held deleted that row without a trigger: the BEFORE trigger noted it, and
-- its entity gets a 'delete' here (whichever of this trigger and the update trigger reads the
-- note first logs it and takes it away). A record at the new primary key is that row's, or one a
-- logged delete left (v4_delete.sql): either way it goes. A row without a key has no record of
-- its own: {{rekey_unkeyed}} (tables tracked with {"keys": "on_sync"}) logs a new 'unkeyed'
-- create, which, being the last for that locator, claims the row; the one at the old primary key
-- finds no row and is dropped.
CREATE TRIGGER {{rekey_trigger}} AFTER UPDATE OF {{pk_columns}} ON {{table}}
WHEN {{pk_old}} IS NOT {{pk_new}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT DISTINCT r.sync_key, {{model}}, 'delete', '{}', {{now_ms}}
      FROM tether_replaced AS r
     WHERE r.table_id = {{table_id}} AND r.row_pk = {{pk_new}} AND {{notes_of_update}}
       AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = r.sync_key)
       AND {{not_suppressed}};
    DELETE FROM tether_replaced
     WHERE table_id = {{table_id}} AND row_pk = {{pk_new}} AND {{own_notes_of_update}};
    {{drop_moved_records}}
    INSERT INTO tether_row_keys (table_id, row_pk, sync_key, log_id)
    SELECT {{table_id}}, {{pk_new}}, NEW.{{sync_key}}, {{newest_log_id}} WHERE NEW.{{sync_key}} IS NOT NULL;
    {{rekey_unkeyed}}
END
