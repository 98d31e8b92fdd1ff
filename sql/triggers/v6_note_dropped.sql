-- Where v6_drop_records.sql drops records on a table whose lean insert leaves them to tether: one
-- note per row number and drop (a row number noted twice is noted twice; one INSERT, no DISTINCT,
-- whose temporary table every INSERT of the table would set up).
    INSERT INTO tether_records_dropped (table_id, row_pk, log_id)
    SELECT {{table_id}}, d.row_pk, coalesce({{newest_log_id}}, 0) FROM ({{dropped_rows}}) AS d;
