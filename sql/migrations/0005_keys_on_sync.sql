-- tether internal schema, version 5: tables tracked with {"keys": "on_sync"} are captured by a
-- trigger that writes one queue row and nothing else; the row gets its sync key when the next
-- sync starts (tether::keys). Released migrations are never edited: add a new file. Every
-- internal table is described in README.md ("Internal tables").

-- Such a create waits with sync_status 'unkeyed', entity_id '' and an empty payload; locator is
-- the row's INTEGER PRIMARY KEY, by which the key pass finds the row (the last create logged
-- for a locator claims the row). The key pass fills entity_id and payload and makes it
-- 'pending'; nothing after the first 'unkeyed' row is sent before it is.
ALTER TABLE tether_mutation_logs ADD COLUMN locator INTEGER;
