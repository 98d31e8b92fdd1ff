-- Tables tracked with {"keys": "on_sync"}: the application gives a waiting row its key with an
-- UPDATE (to refer to it at once). The row is then that entity from now on: its create is logged
-- here, with the row as it is, and its record written, so moves and REPLACEs that follow are
-- captured as for any keyed row; the waiting creates find it keyed and recorded, and go.
-- Not when tether gives the key: the key pass writes the record first, the full-path insert
-- trigger has just logged the entity (last_insert_rowid() in a trigger is its caller's until it
-- inserts), and applying server state is not captured. The row is found by its key (a trigger
-- of the user's may have moved it already, its record with it): the last check, by key alone,
-- reads the table's records, and only runs when the others found nothing. A record at the row's
-- primary key (one a logged delete left) is replaced by a DELETE and an INSERT, not INSERT OR
-- REPLACE, which an UPDATE OR ABORT/IGNORE would turn into its own policy.
CREATE TRIGGER {{key_given_trigger}} AFTER UPDATE OF {{sync_key}} ON {{table}}
WHEN OLD.{{sync_key}} IS NULL AND NEW.{{sync_key}} IS NOT NULL AND {{not_suppressed}}
 AND NOT EXISTS (SELECT 1 FROM tether_row_keys
                  WHERE table_id = {{table_id}} AND row_pk = {{pk_new}} AND sync_key = NEW.{{sync_key}})
 AND NOT EXISTS (SELECT 1 FROM tether_mutation_logs
                  WHERE id = last_insert_rowid() AND entity_id = NEW.{{sync_key}})
 AND NOT EXISTS (SELECT 1 FROM tether_row_keys
                  WHERE table_id = {{table_id}} AND sync_key = NEW.{{sync_key}})
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT NEW.{{sync_key}}, {{model}},
           CASE WHEN EXISTS (SELECT 1 FROM tether_entity_versions WHERE entity_id = NEW.{{sync_key}})
                THEN 'update' ELSE 'create' END,
           {{payload_row}}, {{now_ms}}
      FROM {{table}} AS t
     WHERE t.{{sync_key}} = NEW.{{sync_key}};
    DELETE FROM tether_row_keys
     WHERE table_id = {{table_id}}
       AND row_pk = (SELECT {{pk_t}} FROM {{table}} AS t WHERE t.{{sync_key}} = NEW.{{sync_key}});
    INSERT INTO tether_row_keys (table_id, row_pk, sync_key, log_id)
    SELECT {{table_id}}, {{pk_t}}, NEW.{{sync_key}}, {{newest_log_id}} FROM {{table}} AS t
     WHERE t.{{sync_key}} = NEW.{{sync_key}};
END
