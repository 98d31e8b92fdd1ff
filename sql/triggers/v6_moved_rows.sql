-- The row numbers a primary key change leaves and takes (a SELECT of `row_pk`, for
-- v6_drop_records.sql).
SELECT {{pk_old}} AS row_pk UNION SELECT {{pk_new}}
