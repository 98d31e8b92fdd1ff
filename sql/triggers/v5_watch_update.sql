-- UPDATE OR REPLACE onto another row's primary key or unique values deletes that row without a
-- trigger (recursive_triggers off). Noted here while it exists, under the updated row's name
-- (tether::triggers::notes: its primary key, and the values of its primary key and unique columns
-- before and after), consumed by the AFTER triggers of the same row: the rekey trigger for the
-- row at the new primary key, the update trigger for the holders of unique values. The notes a
-- skipped row left are swept first (v5_sweep_update.sql). "OF" the primary key and unique
-- columns, or of every column when a unique one is generated (an UPDATE changes it through
-- columns it does not name).
CREATE TRIGGER {{watch_update_trigger}} BEFORE UPDATE {{of_displacing_columns}} ON {{table}}
BEGIN
    INSERT INTO tether_replaced (table_id, sync_key, row_pk, for_pk, for_row) {{other_holders_of_new}};
END
