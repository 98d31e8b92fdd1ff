-- Before a row is written, when the table has notes (tether_replaced): the notes a skipped row
-- left go ({{sweep_notes}}), before this row's own BEFORE trigger (v5_watch_insert.sql) writes
-- its notes, so the notes stay few and the lean insert trigger's WHEN, which wants none, holds
-- again. The notes of a REPLACE under way stay. This trigger must fire before the watch: SQLite
-- fires a table's triggers newest first, and tether creates it after the watch
-- (tether::triggers). A trigger of its own, not a statement of the watch: one statement that
-- looks into the table in the watch cost every insert about 20,000 instructions (callgrind),
-- notes or none; a WHEN that finds none costs little.
CREATE TRIGGER {{sweep_insert_trigger}} BEFORE INSERT ON {{table}}
WHEN EXISTS (SELECT 1 FROM tether_replaced WHERE table_id = {{table_id}})
BEGIN
    {{sweep_notes}}
END
