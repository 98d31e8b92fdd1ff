-- DELETE -> one 'delete' with an empty payload; the row's record leaves tether_row_keys whoever
-- deletes. With recursive_triggers on, REPLACE fires this trigger for the rows it deletes: such
-- a row is deleted here, and must not also be taken over by the insert that replaces it.
CREATE TRIGGER {{delete_trigger}} AFTER DELETE ON {{table}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT OLD.{{sync_key}}, {{model}}, 'delete', '{}', {{now_ms}}
     WHERE OLD.{{sync_key}} IS NOT NULL AND {{not_suppressed}};
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_old}};
    DELETE FROM tether_replaced WHERE table_id = {{table_id}} AND sync_key = OLD.{{sync_key}};
END
