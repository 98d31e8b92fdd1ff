-- Part of the BEFORE triggers (v5_sweep_insert.sql, v5_watch_update.sql): the notes a skipped row
-- left (INSERT OR IGNORE, an upsert, UPDATE OR IGNORE) go. They name rows that still exist, held
-- by another row than the note's own ({{notes_of_t}}), whereas the rows a REPLACE under way noted
-- are deleted by then (a trigger of the user's inserting into the table runs after the REPLACE
-- deleted them), or taken over by the row that replaces them (its key given in the INSERT).
    DELETE FROM tether_replaced
     WHERE table_id = {{table_id}}
       AND EXISTS (SELECT 1 FROM {{table}} AS t
                    WHERE t.{{sync_key}} = tether_replaced.sync_key AND NOT ({{notes_of_t}}));
