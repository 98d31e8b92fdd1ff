-- tether internal schema, version 9: each note of tether_replaced names the row whose BEFORE
-- trigger wrote it (`for_row`), so that an insert into the same table by a trigger of the user's,
-- while a REPLACE is under way, neither clears nor reads the REPLACE's notes
-- (sql/triggers/v5_watch_insert.sql, tether::triggers::note_owner). Notes written before it (NULL)
-- are cleared by the next BEFORE trigger of their table. Released migrations are never edited: add
-- a new file. Every internal table is described in README.md ("Internal tables").
ALTER TABLE tether_replaced ADD COLUMN for_row TEXT;
