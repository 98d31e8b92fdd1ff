-- The middle of both full-path insert triggers (v5_insert.sql, v5_insert_keyed.sql): the row's
-- 'create' (or 'update' of the entity it takes over), under its own key, else the taken-over one,
-- else fallback_key (a new ULID with keys on insert; NULL with {"keys": "on_sync"}, where a row
-- left without a key is logged 'unkeyed' afterwards, for the key pass). Then the key is written
-- into the row by one UPDATE: read back from this trigger's own log row, or, while server state is
-- applied (no log row), the same expression again. With keys on insert a log row is always written
-- when no server state is applied (the fallback is never NULL); with keys on sync only when a key
-- was taken over, which key_logged adds to the UPDATE's condition. Every statement of this trigger
-- costs each INSERT of the table, whichever trigger runs it: SQLite sets up a trigger's whole
-- program before it reads its WHEN (BENCHMARKS.md), hence one UPDATE, not two.
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
       SET {{sync_key}} = CASE WHEN {{not_suppressed}}
                               THEN (SELECT entity_id FROM tether_mutation_logs WHERE id = last_insert_rowid())
                               ELSE coalesce({{taken_over}}, {{fallback_key}}) END
     WHERE {{sync_key}} IS NULL AND {{row_match_new}}{{key_logged}};
