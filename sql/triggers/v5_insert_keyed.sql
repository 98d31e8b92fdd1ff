-- INSERT (tables tracked with {"keys": "on_sync"}): the inserts v5_keyless_insert.sql leaves to
-- this trigger (a key given, server state applied, a row noted by the BEFORE trigger as about to
-- be replaced through the primary key, the sync key or a UNIQUE constraint) are captured as
-- v5_insert.sql captures them (v6_log_inserted_row.sql), with one difference: no new key is made
-- here. A row without a key that takes over no replaced row's key logs an 'unkeyed' create
-- instead, for the key pass, even while server state is applied (a trigger of the user's
-- reacting to it wrote the row; without the create it would never sync). A plain-SQL ULID takes many of the trigger's registers, which
-- SQLite allocates and clears on every INSERT whether this trigger's WHEN holds or not.
CREATE TRIGGER {{insert_trigger}} AFTER INSERT ON {{table}}
WHEN NOT ({{keyless_when}})
BEGIN
    {{replaced_on_insert}}
    {{log_inserted_row}}
    INSERT INTO tether_mutation_logs (entity_id, model, operation, timestamp, sync_status, locator)
    SELECT '', {{model}}, 'create', {{now_ms}}, 'unkeyed', {{pk_new}} FROM {{table}} AS t
     WHERE {{t_is_new}} AND t.{{sync_key}} IS NULL;
    {{recorded_on_insert}}
END
