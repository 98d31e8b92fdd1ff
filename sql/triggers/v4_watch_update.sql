-- UPDATE OR REPLACE onto another row's primary key or unique values deletes that row without a
-- trigger (recursive_triggers off). Noted here while it exists, consumed by the AFTER triggers of
-- the same row: the rekey trigger for the row at the new primary key, the update trigger for the
-- holders of unique values. "OF" the primary key and unique columns, or of every column when a
-- unique one is generated (an UPDATE changes it through columns it does not name).
CREATE TRIGGER {{watch_update_trigger}} BEFORE UPDATE {{of_displacing_columns}} ON {{table}}
BEGIN
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
    INSERT INTO tether_replaced (table_id, sync_key, row_pk) {{other_holders_of_new}};
END
