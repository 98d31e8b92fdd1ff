-- DELETE -> one 'delete' with an empty payload; the row's key leaves tether_row_keys whoever
-- deletes, also where a REPLACE that moved the row left it recorded under an older primary key. With recursive_triggers on, REPLACE fires this trigger for the rows it
-- deletes: such a row is then deleted here, and must not also be carried over by the insert
-- ({{forget_replaced}}).
CREATE TRIGGER {{delete_trigger}} AFTER DELETE ON {{table}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT OLD.{{sync_key}}, {{model}}, 'delete', '{}', {{now_ms}}
     WHERE OLD.{{sync_key}} IS NOT NULL AND {{not_suppressed}};
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_old}};
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND sync_key = OLD.{{sync_key}};
    {{forget_replaced}}
END
