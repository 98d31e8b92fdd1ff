-- Tables tracked with {"keys": "on_sync"} that have no UNIQUE constraint besides the primary key
-- and the sync key: v2_watch_insert.sql, started only when it has something to do. Without a key
-- in the INSERT there is no row holding it to note, and with no notes of the table there are
-- none to clear: the WHEN check skips both statements.
CREATE TRIGGER {{watch_insert_trigger}} BEFORE INSERT ON {{table}}
WHEN NEW.{{sync_key}} IS NOT NULL
  OR EXISTS (SELECT 1 FROM tether_replaced WHERE table_id = {{table_id}})
BEGIN
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
    INSERT INTO tether_replaced (table_id, sync_key, row_pk)
    SELECT {{table_id}}, t.{{sync_key}}, {{pk_t}} FROM {{table}} AS t
     WHERE t.{{sync_key}} = NEW.{{sync_key}}
    {{unique_holders}};
END
