-- Before every row is written (applying server state too), note the key and primary key of rows
-- that hold its sync key or its unique values. If the statement goes on (REPLACE), those rows
-- are gone when the AFTER trigger of the same row reads this list; if it stops (ABORT) the note
-- is undone with it; if the row is skipped (IGNORE, an upsert's DO UPDATE) the note stays until
-- the next row's BEFORE trigger clears it: every insert clears it first, so an AFTER trigger
-- only ever reads the notes of its own row.
CREATE TRIGGER {{watch_insert_trigger}} BEFORE INSERT ON {{table}}
BEGIN
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
    INSERT INTO tether_replaced (table_id, sync_key, row_pk)
    SELECT {{table_id}}, t.{{sync_key}}, {{pk_t}} FROM {{table}} AS t
     WHERE t.{{sync_key}} = NEW.{{sync_key}}
    {{unique_holders}};
END
