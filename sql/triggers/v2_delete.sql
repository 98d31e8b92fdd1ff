-- DELETE -> one 'delete' with an empty payload; the row's entry in tether_row_keys goes
-- whoever deletes. With recursive_triggers on, REPLACE fires this trigger for the rows it
-- deletes: such a row is then deleted here, and must not also be carried over by the insert
-- ({{forget_replaced}}).
CREATE TRIGGER {{delete_trigger}} AFTER DELETE ON {{table}}
BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT OLD.{{sync_key}}, {{model}}, 'delete', '{}', {{now_ms}}
     WHERE OLD.{{sync_key}} IS NOT NULL AND {{not_suppressed}};
    DELETE FROM tether_row_keys WHERE table_id = {{table_id}} AND row_pk = {{pk_old}};
    {{forget_replaced}}
END
