-- tether internal schema, version 8: a captured DELETE no longer drops the row's tether_row_keys
-- record; tether drops it when it indexes the delete, which now carries the row's primary key
-- (as the record holds it) in `locator` (sql/triggers/v4_delete.sql,
-- tether::queue::index_new_rows). No table changes. The version is raised so that a build of
-- version 7, whose triggers and repairs take a record at a primary key for that of a row still
-- there, refuses this file instead of regenerating its triggers over it. Released migrations are
-- never edited: add a new file. Every internal table is described in README.md ("Internal
-- tables").
SELECT 1;
