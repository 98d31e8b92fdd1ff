-- Before a row is written, note the key and primary key of rows that hold its sync key or its
-- unique values ({{unique_holders}}). If the statement goes on (REPLACE), those rows are gone when
-- the AFTER trigger of the same row reads this list; if it stops (ABORT) the note is undone with
-- it; if the row is skipped (IGNORE, an upsert's DO UPDATE) the note stays until the next BEFORE
-- trigger clears it, and readers pass over candidates whose key a row still holds. Without other
-- UNIQUE constraints only inserts that give a key can collide, so only they run it.
CREATE TRIGGER {{watch_insert_trigger}} BEFORE INSERT ON {{table}}
WHEN ({{watch_insert_when}}) AND {{not_suppressed}}
BEGIN
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
    INSERT INTO tether_replaced (table_id, sync_key, row_pk)
    SELECT {{table_id}}, t.{{sync_key}}, {{pk_t}} FROM {{table}} AS t
     WHERE t.{{sync_key}} = NEW.{{sync_key}}
    {{unique_holders}};
END
