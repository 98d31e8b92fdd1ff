-- The end of both full-path insert triggers: records of the rows REPLACE deleted go, so does any
-- record at the new row's primary key (a replaced row's, or one a logged delete left), the new
-- row's record is written, and the row's own notes are cleared. Never INSERT OR REPLACE here: an
-- OR clause of the statement that started the trigger (INSERT OR ABORT, OR IGNORE, ...)
-- overrides a trigger's own.
    DELETE FROM tether_row_keys
     WHERE table_id = {{table_id}} AND row_pk IN (
           SELECT r.row_pk FROM tether_replaced AS r
            WHERE r.table_id = {{table_id}} AND {{notes_of_new}} AND r.row_pk IS NOT {{pk_new}}
              AND (r.sync_key IS (SELECT t.{{sync_key}} FROM {{table}} AS t WHERE {{t_is_new}})
                   OR NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = r.sync_key)));
    {{record_new_row}}
    DELETE FROM tether_replaced WHERE table_id = {{table_id}} AND {{own_notes_of_new}};
