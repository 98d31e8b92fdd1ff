-- The end of both full-path insert triggers: records of the rows REPLACE deleted go
-- (drop_replaced_records: v6_drop_records.sql), so does any
-- record at the new row's primary key (a replaced row's, or one a logged delete left), the new
-- row's record is written, and the row's own notes are cleared. Never INSERT OR REPLACE here: an
-- OR clause of the statement that started the trigger (INSERT OR ABORT, OR IGNORE, ...)
-- overrides a trigger's own.
    {{drop_replaced_records}}
    {{record_new_row}}
    DELETE FROM tether_replaced WHERE table_id = {{table_id}} AND {{own_notes_of_new}};
