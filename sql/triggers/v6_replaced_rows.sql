-- The row numbers of the rows a REPLACE deleted, from the notes of the new row (a SELECT of
-- `row_pk`, for v6_drop_records.sql): not the new row's own, and not a noted row whose key a row
-- still holds, unless that is the new row (it took the key over).
SELECT r.row_pk FROM tether_replaced AS r
 WHERE r.table_id = {{table_id}} AND {{notes_of_new}} AND r.row_pk IS NOT {{pk_new}}
   AND (r.sync_key IS (SELECT t.{{sync_key}} FROM {{table}} AS t WHERE {{t_is_new}})
        OR NOT EXISTS (SELECT 1 FROM {{table}} AS t WHERE t.{{sync_key}} = r.sync_key))
