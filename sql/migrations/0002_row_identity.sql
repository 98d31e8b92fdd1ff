-- tether internal schema, version 2: row identity that survives REPLACE, rebuilds and renames.
-- Released migrations are never edited: add a new file. Every internal table is described in
-- README.md ("Internal tables").

-- A stable number per tracked table, written into its triggers: renaming the table changes
-- nothing that refers to it by number.
ALTER TABLE tether_tracked_tables ADD COLUMN table_id INTEGER;
UPDATE tether_tracked_tables SET table_id = rowid WHERE table_id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS tether_tracked_tables_table_id ON tether_tracked_tables (table_id);
-- Columns whose values travel as JSON (declared, checked with json_valid, named in the options,
-- or learned from a server that sent an array or object for them): JSON array of names.
ALTER TABLE tether_tracked_tables ADD COLUMN json_columns TEXT NOT NULL DEFAULT '[]';

-- Each tracked row's sync key by its local primary key, kept by the capture triggers whoever
-- writes. It lets capture recognise a row that INSERT OR REPLACE deleted without a trigger (its
-- key carries over to the row that replaced it), and lets a repair give every row back its own
-- key after a tool rebuilt the table without the sync key column.
-- row_pk: the INTEGER PRIMARY KEY, else quote() of the primary key columns joined by ',',
-- else the rowid. Declared ANY (numeric affinity) so that comparing it with an integer key
-- uses the primary key; no index on sync_key: each index written on every insert costs more
-- than the whole row write (BENCHMARKS.md).
CREATE TABLE IF NOT EXISTS tether_row_keys (
    table_id INTEGER NOT NULL,
    row_pk   ANY NOT NULL,
    sync_key TEXT NOT NULL,
    PRIMARY KEY (table_id, row_pk)
) WITHOUT ROWID;

-- Rows about to be deleted by REPLACE through the sync key or a UNIQUE constraint other than the
-- primary key (their key and primary key): written by a BEFORE trigger, consumed by the AFTER
-- trigger of the same row, which logs their deletes and drops their tether_row_keys records. A row that was not
-- written after all (OR IGNORE, an upsert's DO UPDATE) leaves its entry until the next BEFORE
-- trigger of the table clears it; only AFTER triggers that follow such a BEFORE trigger read it.
CREATE TABLE IF NOT EXISTS tether_replaced (
    table_id INTEGER NOT NULL,
    sync_key TEXT NOT NULL,
    row_pk   ANY NOT NULL
);
CREATE INDEX IF NOT EXISTS tether_replaced_table ON tether_replaced (table_id);

-- A hash of the trigger SQL last installed for each table: a repair compares it with what the
-- table's current shape and options would generate.
ALTER TABLE tether_tracked_tables ADD COLUMN triggers_hash TEXT;
