-- DELETE -> one 'delete' with an empty payload. On tables whose rows are found by rowid, the
-- row's tether_row_keys record stays when the delete is logged (dropping it is one more page per
-- commit), and the delete carries the rowid in `locator`: tether drops the record when it indexes
-- the delete (tether::queue::index_new_rows), and until then no trigger reads a record to tell
-- what an insert replaced (the BEFORE triggers note the rows a REPLACE is about to delete while
-- they still exist). A delete that logs nothing (applying server state, a row without a key), and
-- any delete from a table with a declared non-integer key (whose records would not compare equal
-- to a `locator`, an INTEGER column), drop the record here ({{record_goes}}). With
-- recursive_triggers on, REPLACE fires this trigger for the rows it deletes: such a row is
-- deleted here, and its note goes, so the insert that replaces it does not also take it over.
CREATE TRIGGER {{delete_trigger}} AFTER DELETE ON {{table}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp, locator)
    SELECT OLD.{{sync_key}}, {{model}}, 'delete', '{}', {{now_ms}}, {{delete_locator}}
     WHERE OLD.{{sync_key}} IS NOT NULL AND {{not_suppressed}};
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_old}}
       AND {{record_goes}};
    DELETE FROM tether_replaced WHERE table_id = {{table_id}} AND sync_key = OLD.{{sync_key}};
END
