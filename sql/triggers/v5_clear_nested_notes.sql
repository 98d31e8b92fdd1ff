-- The end of both keyless insert triggers (v6_new_key_insert.sql, v5_keyless_insert.sql). Their
-- WHEN saw no notes, so any note now is one a statement this trigger started left behind: an
-- insert into this table by a trigger of the user's that was skipped (OR IGNORE, an upsert) keeps
-- the notes its BEFORE trigger wrote. The full path, which fires next and reads the notes in its
-- WHEN, would take them for this row's and capture it a second time.
    DELETE FROM tether_replaced WHERE table_id = {{table_id}};
