-- tether internal schema, version 10: on rowid tables with keys on insert, a row inserted without a
-- key no longer gets its tether_row_keys record from its insert trigger (a page of its own in every
-- transaction that inserts): its create names the row in `locator`, and the record is written
-- later, from the create, by sql/triggers/v6_record_new_rows.sql. That runs in every trigger that
-- writes records itself, before it does (so records come out as if written at insert), and in
-- tether's write transactions before anything of tether's reads records (tether::queue).
-- `upto`: the log id up to which every such create has its record. The version is raised so that
-- a build of version 9, which writes no records from creates, refuses this file. Released
-- migrations are never edited: add a new file. Every internal table is described in README.md
-- ("Internal tables").
CREATE TABLE IF NOT EXISTS tether_records_followed (
    upto INTEGER NOT NULL
);
INSERT INTO tether_records_followed (upto)
SELECT coalesce(max(id), 0) FROM tether_mutation_logs
 WHERE NOT EXISTS (SELECT 1 FROM tether_records_followed);
