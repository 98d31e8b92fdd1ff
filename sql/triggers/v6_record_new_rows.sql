-- The records of the rows inserted without a key since the last time this ran (on rowid tables
-- with keys on insert, v6_new_key_insert.sql writes none: its create names the row in `locator`),
-- up to log id newest. Run by every trigger that writes or drops records itself, before it does,
-- and by tether (tether::queue) before anything of its own reads records, so records come out as
-- if each insert had written its own: for each row number, the newest create's key, replacing the
-- record there (as the insert trigger did). No trigger that touches records ran between these
-- creates (each runs this first), so the newest create at a row number is the last word on it.
-- Deletes logged since keep their own rule (a delete leaves the record, tether::queue drops it).
-- Not INSERT OR REPLACE: the OR clause of the statement that started a trigger overrides its own.
    DELETE FROM tether_row_keys
     WHERE (table_id, row_pk) IN (
           SELECT t.table_id, l.locator
             FROM tether_mutation_logs AS l JOIN tether_tracked_tables AS t ON t.model = l.model
            WHERE l.id > (SELECT upto FROM tether_records_followed) AND l.id <= {{newest}}
              AND l.operation = 'create' AND l.locator IS NOT NULL AND l.entity_id <> '');
    INSERT INTO tether_row_keys (table_id, row_pk, sync_key, log_id)
    SELECT t.table_id, l.locator, l.entity_id, max(l.id)
      FROM tether_mutation_logs AS l JOIN tether_tracked_tables AS t ON t.model = l.model
     WHERE l.id > (SELECT upto FROM tether_records_followed) AND l.id <= {{newest}}
       AND l.operation = 'create' AND l.locator IS NOT NULL AND l.entity_id <> ''
     GROUP BY t.table_id, l.locator;
    UPDATE tether_records_followed SET upto = {{newest}} WHERE upto < {{newest}};
