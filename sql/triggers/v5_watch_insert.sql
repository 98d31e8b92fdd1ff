-- Before every row is written (applying server state too), note the key and primary key of the
-- rows that hold its primary key, its sync key or its unique values ({{holders_of_new}}). If the
-- statement goes on (REPLACE), those rows are gone when the AFTER trigger of the same row reads
-- this list; if it stops (ABORT) the note is undone with it; if the row is skipped (IGNORE, an
-- upsert's DO UPDATE) the note stays until the next row's BEFORE trigger clears it: every insert
-- clears it first, so an AFTER trigger only ever reads the notes of its own row. Tables that have
-- no UNIQUE constraint besides the primary key and the sync key start it only when it has
-- something to note or to clear ({{watch_insert_when}}): most inserts then skip its statements.
CREATE TRIGGER {{watch_insert_trigger}} BEFORE INSERT ON {{table}}
{{watch_insert_when}}
BEGIN
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
    INSERT INTO tether_replaced (table_id, sync_key, row_pk) {{holders_of_new}};
END
