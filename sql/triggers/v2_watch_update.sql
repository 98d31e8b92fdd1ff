-- Only for tables with UNIQUE constraints besides the primary key: UPDATE OR REPLACE onto another
-- row's unique values deletes that row. Noted here, consumed by the update trigger of the same
-- row. "OF" the unique columns, or of every column when one of them is generated (an UPDATE
-- changes it through columns it does not name).
CREATE TRIGGER {{watch_update_trigger}} BEFORE UPDATE {{of_unique_columns}} ON {{table}}
BEGIN
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
    INSERT INTO tether_replaced (table_id, sync_key, row_pk) {{other_holders_of_new}};
END
