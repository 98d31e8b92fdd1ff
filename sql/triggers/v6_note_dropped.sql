-- Where v6_drop_records.sql drops records on a table whose lean insert leaves them to tether.
    DELETE FROM tether_records_dropped WHERE table_id = {{table_id}} AND row_pk IN ({{dropped_rows}});
    INSERT INTO tether_records_dropped (table_id, row_pk, log_id)
    SELECT DISTINCT {{table_id}}, d.row_pk, coalesce({{newest_log_id}}, 0) FROM ({{dropped_rows}}) AS d;
