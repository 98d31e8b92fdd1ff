-- Only for tables with UNIQUE constraints besides the primary key: UPDATE OR REPLACE onto another
-- row's unique values deletes that row. Noted here, consumed by the update trigger of the same
-- row (see v2_watch_insert.sql for why stale notes are harmless).
CREATE TRIGGER {{watch_update_trigger}} BEFORE UPDATE OF {{unique_columns}} ON {{table}}
WHEN {{not_suppressed}}
BEGIN
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
    INSERT INTO tether_replaced (table_id, sync_key, row_pk) {{other_holders_of_new}};
END
