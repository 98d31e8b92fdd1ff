-- Before every row is written (applying server state too), note the key and primary key of the
-- rows that hold its primary key, its sync key or its unique values ({{holders_of_new}}), under
-- the row's own name (tether::triggers::notes: its primary key, key and unique values as this
-- trigger sees them). If the statement goes on (REPLACE), those rows are gone when the AFTER
-- trigger of the same row reads its notes, and only its own: an insert into the table by a
-- trigger of the user's while a REPLACE is under way neither reads nor clears the REPLACE's
-- notes. If it stops (ABORT) the notes are undone with it; if the row is skipped (IGNORE, an
-- upsert's DO UPDATE) they stay, their rows still there, until the next row's BEFORE triggers
-- sweep them (v5_sweep_insert.sql). Tables that have no UNIQUE constraint besides the primary key
-- and the sync key start this trigger only when it has something to note
-- ({{watch_insert_when}}): most inserts then skip its statement.
CREATE TRIGGER {{watch_insert_trigger}} BEFORE INSERT ON {{table}}
{{watch_insert_when}}
BEGIN
    INSERT INTO tether_replaced (table_id, sync_key, row_pk, for_pk, for_row) {{holders_of_new}};
END
