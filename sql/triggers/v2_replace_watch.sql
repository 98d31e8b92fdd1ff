-- Only for tables with UNIQUE constraints besides the primary key: before a row is written, note
-- the keys of rows that hold its unique values. If the statement goes on (REPLACE), those rows
-- are gone when the AFTER trigger of the same row reads this list; if it stops (ABORT) the note
-- is undone with it; if the row is skipped (IGNORE) the next BEFORE trigger clears it.
CREATE TRIGGER {{watch_insert_trigger}} BEFORE INSERT ON {{table}}
WHEN {{not_suppressed}}
BEGIN
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
    INSERT INTO tether_replaced (table_id, sync_key) {{holders_of_new}};
END;
CREATE TRIGGER {{watch_update_trigger}} BEFORE UPDATE OF {{unique_columns}} ON {{table}}
WHEN {{not_suppressed}}
BEGIN
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
    INSERT INTO tether_replaced (table_id, sync_key) {{other_holders_of_new}};
END
