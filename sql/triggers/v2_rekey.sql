-- A changed primary key moves the row's entry in tether_row_keys. UPDATE OR REPLACE onto a
-- primary key another row held deleted that row without a trigger: its entity gets a 'delete'.
CREATE TRIGGER {{rekey_trigger}} AFTER UPDATE OF {{pk_columns}} ON {{table}}
WHEN {{pk_old}} IS NOT {{pk_new}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT s.sync_key, {{model}}, 'delete', '{}', {{now_ms}}
      FROM tether_row_keys AS s
     WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
       AND NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = s.sync_key)
       AND {{not_suppressed}};
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_old}};
    INSERT OR REPLACE INTO tether_row_keys (table_id, row_pk, sync_key)
    SELECT {{table_id}}, {{pk_new}}, NEW.{{sync_key}} WHERE NEW.{{sync_key}} IS NOT NULL;
END
