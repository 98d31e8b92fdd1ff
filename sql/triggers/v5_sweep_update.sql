-- Before an UPDATE of the primary key or unique columns, when the table has notes
-- (tether_replaced): the notes a skipped UPDATE (UPDATE OR IGNORE) left go
-- ({{sweep_update_notes}}), before this row's own BEFORE trigger (v5_watch_update.sql) writes its
-- notes. Only an UPDATE's notes: an UPDATE may run while a REPLACE deletes the rows in its way one
-- by one (a foreign key's ON DELETE SET NULL on the same table), and the REPLACE's notes of the
-- rows it has not deleted yet look like a skipped row's. As v5_sweep_insert.sql otherwise; a
-- trigger of its own for the same reason (the statement in the watch cost every such UPDATE about
-- 20,000 instructions, callgrind), created after the watch so that it fires first.
CREATE TRIGGER {{sweep_update_trigger}} BEFORE UPDATE {{of_displacing_columns}} ON {{table}}
WHEN EXISTS (SELECT 1 FROM tether_replaced WHERE table_id = {{table_id}})
BEGIN
    {{sweep_update_notes}}
END
