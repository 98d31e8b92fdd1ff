-- Part of the sweeps (v5_sweep_insert.sql, v5_sweep_update.sql): the notes a skipped row left
-- (INSERT OR IGNORE, an upsert, UPDATE OR IGNORE) go, of those {{swept}} chooses. The row they
-- note is still where it was, with its key, whereas the rows a REPLACE under way noted are
-- deleted by then (a trigger of the user's that writes the table runs after SQLite deleted them)
-- or, their key taken over by the row that replaces them, elsewhere. Not told apart: a REPLACE
-- that gives the row it replaces the same primary key and key, while a trigger of the user's
-- writes the table before tether's AFTER triggers read the REPLACE's notes: they go, and the row
-- is logged as a create. Keeping them would keep the notes of every skipped copy of a row (a
-- re-import with INSERT OR IGNORE), and each insert sweeps them all.
    DELETE FROM tether_replaced
     WHERE table_id = {{table_id}}
       AND {{swept}}
       AND EXISTS (SELECT 1 FROM {{table}} AS t
                    WHERE t.{{sync_key}} = tether_replaced.sync_key AND {{pk_t}} = tether_replaced.row_pk);
