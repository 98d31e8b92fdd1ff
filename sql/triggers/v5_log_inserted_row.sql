-- The middle of both full-path insert triggers (v5_insert.sql, v5_insert_keyed.sql): the row's
-- 'create' (or 'update' of the entity it takes over), under its own key, else the taken-over one,
-- else {{fallback_key}} (a new ULID with keys on insert; NULL with {"keys": "on_sync"}, where a row
-- left without a key is logged 'unkeyed' afterwards, for the key pass). Then the key is written
-- into the row: read back from this trigger's own log row, or, while server state is applied (no
-- log row), the same expression again.
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT coalesce(t.{{sync_key}}, k.key), {{model}},
           CASE WHEN EXISTS (SELECT 1 FROM tether_replaced AS r
                              WHERE r.table_id = {{table_id}} AND {{notes_of_new}}
                                AND r.sync_key = coalesce(t.{{sync_key}}, k.key))
                THEN 'update' ELSE 'create' END,
           {{payload_row}}, {{now_ms}}
      FROM {{table}} AS t, (SELECT coalesce({{taken_over}}, {{fallback_key}}) AS key) AS k
     WHERE {{t_is_new}} AND coalesce(t.{{sync_key}}, k.key) IS NOT NULL AND {{not_suppressed}};
    UPDATE {{table}}
       SET {{sync_key}} = (SELECT entity_id FROM tether_mutation_logs WHERE id = last_insert_rowid())
     WHERE {{sync_key}} IS NULL AND {{row_match_new}} AND {{not_suppressed}}
       AND coalesce({{taken_over}}, {{fallback_key}}) IS NOT NULL;
    UPDATE {{table}}
       SET {{sync_key}} = coalesce({{taken_over}}, {{fallback_key}})
     WHERE {{sync_key}} IS NULL AND {{row_match_new}} AND NOT {{not_suppressed}};
