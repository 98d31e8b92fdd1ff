#!/usr/bin/env bash
# A guided run of what tether does today, in the plain sqlite3 shell: load, configure, track a
# table with existing rows, capture writes from a connection that loaded tether and from one that
# never did, and read the queue and status. Leaves nothing behind.
# (Syncing against the reference server joins this demo when the sync engine lands.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v sqlite3 >/dev/null || { echo "demo needs the sqlite3 shell (apt-get install sqlite3)"; exit 1; }
(cd "$root" && cargo build --quiet --release)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cp "$root/target/release/libtether.so" "$work/"
cd "$work"

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() { printf '%s\n' "$1" | sed 's/^/sqlite> /'; sqlite3 -box app.db ".load ./libtether" "$1"; }
run_json() { printf '%s\n' "$1" | sed 's/^/sqlite> /'; sqlite3 app.db ".load ./libtether" "$1" | python3 -m json.tool; }

say "An app database with a table that already has rows"
sqlite3 app.db "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, status TEXT DEFAULT 'open', local_note TEXT);
                INSERT INTO tasks (title) VALUES ('Water the plants'), ('Call the bank');"
run "SELECT tether_config('server_url', 'https://api.example.com');"
run "SELECT tether_config('auth_token', 'not-shown-anywhere');"

say "Track it: sync key column, keys for existing rows, their creates queued, triggers installed"
run_json "SELECT tether_track('tasks', '{\"except\": [\"local_note\"]}');"
run "SELECT id, title, tether_id FROM tasks;"

say "Write through a connection that loaded tether"
run "INSERT INTO tasks (title) VALUES ('Buy milk'); UPDATE tasks SET title = 'Buy oat milk' WHERE title = 'Buy milk';"

say "Write through a plain sqlite3 connection that never loaded tether: captured all the same"
printf '%s\n' "sqlite3 app.db \"UPDATE tasks SET status = 'done' WHERE id = 1; DELETE FROM tasks WHERE id = 2; UPDATE tasks SET local_note = 'only on this device';\""
sqlite3 app.db "UPDATE tasks SET status = 'done' WHERE id = 1; DELETE FROM tasks WHERE id = 2; UPDATE tasks SET local_note = 'only on this device';"

say "The queue (mutation ids and versions are given when first sent; the local_note change queued nothing)"
run "SELECT id, operation, substr(entity_id, 1, 10) || '…' AS entity, payload, timestamp, sync_status FROM tether_mutation_logs;"

say "Status and effective configuration (the token stays hidden)"
run_json "SELECT tether_status();"
run_json "SELECT tether_config();"
say "Done: the demo database was temporary and is gone."
