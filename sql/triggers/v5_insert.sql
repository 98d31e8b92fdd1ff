-- INSERT (keys on insert), the full path: the inserts v6_new_key_insert.sql leaves to this trigger
-- (the two WHEN clauses are each other's negation): a key given, server state applied, or a row
-- the BEFORE trigger noted as about to be replaced. INSERT -> one 'create'. A row that takes the
-- place of one REPLACE deleted (same primary key, the same sync key, or another UNIQUE
-- constraint) takes over that row's key and is one 'update' of the same entity; other entities
-- REPLACE deleted get a 'delete' first. Candidates are the rows the BEFORE trigger of this very
-- row noted (tether_replaced) while they still existed; a candidate whose key a row still holds
-- was not deleted and is passed over. The taken-over key is that of the row at the new row's
-- primary key, else the first note's ({{taken_over}}).
-- The new row's record replaces any record at its primary key, which may be that of a row
-- deleted since tether last indexed the queue (v4_delete.sql, v5_record_new_row.sql).
-- Rows displaced by a row that applying server state writes are deleted here too, so they are
-- logged whatever the suppression; only the row itself is not captured then.
-- The key is the row's own (given in the INSERT, or by a trigger of the user's that ran first),
-- else a taken-over one, else new. The mutation is logged before the key is written into the
-- row: a trigger of the user's that the key assignment starts (an "updated_at" toucher) then logs
-- its update after the create. The payload is read from the row, after any trigger of the user's
-- that wrote it, and the key is read back from this trigger's own log row (last_insert_rowid()
-- inside a trigger program is its own), so triggers of the user's on the log cannot swap keys.
CREATE TRIGGER {{insert_trigger}} AFTER INSERT ON {{table}}
WHEN NOT ({{keyless_when}})
BEGIN
    {{replaced_on_insert}}
    {{log_inserted_row}}
    {{recorded_on_insert}}
END
