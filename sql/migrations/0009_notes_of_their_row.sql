-- tether internal schema, version 9: each note of tether_replaced names the row whose BEFORE
-- trigger wrote it (`for_pk`: its primary key, NULL for a row number SQLite picks; `for_row`: its
-- sync key and unique values, or for an UPDATE its primary key and values before and after), so
-- that a statement a trigger of the user's runs on the same table while a REPLACE is under way
-- neither reads nor clears the REPLACE's notes (sql/triggers/v5_watch_insert.sql,
-- tether::triggers::notes). Notes written before it are cleared by tether's next write. Released
-- migrations are never edited: add a new file. Every internal table is described in README.md
-- ("Internal tables").
ALTER TABLE tether_replaced ADD COLUMN for_pk ANY;
ALTER TABLE tether_replaced ADD COLUMN for_row TEXT;
