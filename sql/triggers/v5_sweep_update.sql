-- Before an UPDATE of the primary key or unique columns, when the table has notes
-- (tether_replaced): the notes a skipped row left go ({{sweep_notes}}), before this row's own
-- BEFORE trigger (v5_watch_update.sql) writes its notes. As v5_sweep_insert.sql, of which this is
-- the UPDATE's side; a trigger of its own for the same reason (the statement in the watch cost
-- every such UPDATE about 20,000 instructions, callgrind), created after the watch so that it
-- fires first.
CREATE TRIGGER {{sweep_update_trigger}} BEFORE UPDATE {{of_displacing_columns}} ON {{table}}
WHEN EXISTS (SELECT 1 FROM tether_replaced WHERE table_id = {{table_id}})
BEGIN
    {{sweep_notes}}
END
