-- Drops the records at the row numbers dropped_rows (a SELECT of `row_pk`). On rowid tables with
-- keys on insert (where the lean insert trigger leaves its record to tether, v6_new_key_insert.sql)
-- it first notes each row number with the log's newest id in tether_records_dropped (note_dropped;
-- empty elsewhere), so that tether does not write a record there later from a create logged before
-- (tether::queue).
    {{note_dropped}}
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk IN ({{dropped_rows}});
