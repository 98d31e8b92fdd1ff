-- The new row's record, in every insert trigger that gives or takes over a key at once: any record
-- at its primary key goes first (a replaced row's, or one a logged delete left, v4_delete.sql).
-- DELETE then INSERT, never INSERT OR REPLACE: an OR clause of the statement that started the
-- trigger (INSERT OR ABORT, OR IGNORE, ...) overrides a trigger's own.
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_new}};
    INSERT INTO tether_row_keys (table_id, row_pk, sync_key, log_id)
    SELECT {{table_id}}, {{pk_new}}, t.{{sync_key}}, {{newest_log_id}} FROM {{table}} AS t
     WHERE {{t_is_new}} AND t.{{sync_key}} IS NOT NULL;
