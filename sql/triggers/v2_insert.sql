-- INSERT -> one 'create'. A row that takes the place of one REPLACE deleted (same primary key,
-- the same sync key, or another UNIQUE constraint) takes over that row's key and is one 'update'
-- of the same entity; other entities REPLACE deleted get a 'delete' first. Candidates come from
-- tether_row_keys (by primary key) and tether_replaced (noted by the BEFORE trigger of this very
-- row); a candidate whose key a row still holds was not deleted and is passed over. The taken-over
-- key is the record's at the primary key, else the first note's ({{taken_over}}).
-- Rows displaced by a row that applying server state writes are deleted here too, so they are
-- logged whatever the suppression; only the row itself is not captured then.
-- The key is the row's own (given in the INSERT, or by a trigger of the user's that ran first),
-- else a taken-over one, else new. The mutation is logged before the key is written into the row: a trigger of the user's that
-- the key assignment starts (an "updated_at" toucher) then logs its update after the create. The
-- payload is read from the row, after any trigger of the user's that wrote it, and the key is
-- read back from this trigger's own log row (last_insert_rowid() inside a trigger program is its
-- own), so triggers of the user's on the log cannot swap keys.
CREATE TRIGGER {{insert_trigger}} AFTER INSERT ON {{table}}
BEGIN
    SELECT RAISE(ABORT, {{invalid_key_message}})
     WHERE NEW.{{sync_key}} IS NOT NULL AND NOT ({{valid_new_key}});
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT gone.sync_key, {{model}}, 'delete', '{}', {{now_ms}}
      FROM (SELECT s.sync_key FROM tether_row_keys AS s
             WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
            UNION ALL
            SELECT r.sync_key FROM tether_replaced AS r
             WHERE r.table_id = {{table_id}}
               AND r.sync_key IS NOT (SELECT s.sync_key FROM tether_row_keys AS s
                                       WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}})) AS gone
     WHERE NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = gone.sync_key)
       AND gone.sync_key IS NOT (SELECT {{taken_over}} WHERE NEW.{{sync_key}} IS NULL);
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT coalesce(t.{{sync_key}}, k.key), {{model}},
           CASE WHEN EXISTS (SELECT 1 FROM tether_row_keys AS s
                              WHERE s.table_id = {{table_id}} AND s.row_pk = {{pk_new}}
                                AND s.sync_key = coalesce(t.{{sync_key}}, k.key))
                  OR EXISTS (SELECT 1 FROM tether_replaced AS r
                              WHERE r.table_id = {{table_id}}
                                AND r.sync_key = coalesce(t.{{sync_key}}, k.key))
                THEN 'update' ELSE 'create' END,
           {{payload_row}}, {{now_ms}}
      FROM {{table}} AS t, (SELECT coalesce({{taken_over}}, {{new_ulid}}) AS key) AS k
     WHERE {{t_is_new}} AND {{not_suppressed}};
    UPDATE {{table}}
       SET {{sync_key}} = (SELECT entity_id FROM tether_mutation_logs WHERE id = last_insert_rowid())
     WHERE {{sync_key}} IS NULL AND {{row_match_new}} AND {{not_suppressed}};
    UPDATE {{table}}
       SET {{sync_key}} = coalesce({{taken_over}}, {{new_ulid}})
     WHERE {{sync_key}} IS NULL AND {{row_match_new}} AND NOT {{not_suppressed}};
    DELETE FROM tether_row_keys
     WHERE table_id = {{table_id}} AND row_pk IN (
           SELECT r.row_pk FROM tether_replaced AS r
            WHERE r.table_id = {{table_id}} AND r.row_pk IS NOT {{pk_new}}
              AND (r.sync_key IS (SELECT t.{{sync_key}} FROM {{table}} AS t WHERE {{t_is_new}})
                   OR NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = r.sync_key)));
    INSERT OR REPLACE INTO tether_row_keys (table_id, row_pk, sync_key)
    SELECT {{table_id}}, {{pk_new}}, t.{{sync_key}} FROM {{table}} AS t
     WHERE {{t_is_new}} AND t.{{sync_key}} IS NOT NULL;
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
END
