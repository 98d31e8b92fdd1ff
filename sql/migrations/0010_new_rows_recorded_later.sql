-- tether internal schema, version 10: on rowid tables with keys on insert, a row inserted without a
-- key no longer gets its tether_row_keys record from its insert trigger (a page of its own in every
-- transaction that inserts): its create names the row in `locator`, and tether writes the record
-- from it before anything of tether's reads records (tether::queue), as the trigger would have:
-- unless a trigger dropped or wrote the record at that row number since. Triggers that drop
-- records on such tables note here where and when (sql/triggers/v6_drop_records.sql); tether
-- clears the notes once it has followed the creates before them. The version is raised so that a
-- build of version 9, which writes no records from creates, refuses this file. Released
-- migrations are never edited: add a new file. Every internal table is described in README.md
-- ("Internal tables").
-- Several notes may name one row number (its records dropped more than once): no unique key, so
-- a trigger's note never conflicts, whatever conflict clause the statement that started it has.
CREATE TABLE IF NOT EXISTS tether_records_dropped (
    table_id INTEGER NOT NULL,
    row_pk   ANY NOT NULL,
    log_id   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tether_records_dropped_row
    ON tether_records_dropped (table_id, row_pk, log_id);
