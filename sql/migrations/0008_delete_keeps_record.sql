-- tether internal schema, version 8: a captured DELETE from a rowid table no longer drops the
-- row's tether_row_keys record; tether drops it when it indexes the delete, which now carries the
-- row's rowid in `locator` (sql/triggers/v4_delete.sql, tether::queue::index_new_rows). REPLACE
-- is seen by the BEFORE triggers alone, which now also note the row at a new row's primary key.
-- The version is raised so that a build of version 7, whose triggers and repairs take a record
-- at a primary key for that of a row still there, refuses this file instead of regenerating its
-- triggers over it. Released migrations are never edited: add a new file. Every internal table
-- is described in README.md ("Internal tables").

-- The log's newest id when a trigger wrote the record: a record written after the delete that
-- names it (the row put back with its key: an undo, REPLACE with recursive triggers on) is that
-- row's, and stays. NULL for records tether writes itself (after indexing, so before any delete
-- still to be indexed).
ALTER TABLE tether_row_keys ADD COLUMN log_id INTEGER;

-- tether_replaced holds the notes of one statement's row at a time: reading it whole costs less
-- than writing an index entry with every note (an upsert onto an existing primary key writes one).
DROP INDEX IF EXISTS tether_replaced_table;
