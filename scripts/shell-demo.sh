#!/usr/bin/env bash
# The same story as `tether demo`, told in the plain sqlite3 shell with the loadable extension:
# a local tether-server (temporary database,
# free loopback port) and two client databases driven from the plain sqlite3 shell. One client
# writes, both sync, the second receives the rows; then a conflict and a validation rejection and
# how each is reported; then status. Leaves nothing running and nothing behind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v sqlite3 >/dev/null || { echo "the demo needs the sqlite3 shell (apt-get install sqlite3)"; exit 1; }
echo "building libtether and tether-server (release)…"
(cd "$root" && cargo build --quiet --release)
(cd "$root/tools" && cargo build --quiet --release -p tether-server)
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cp "$root/target/release/libtether.so" "$work/"
cd "$work"

"$root/tools/target/release/tether-server" --listen 127.0.0.1:0 --quiet \
  --model '{"name": "Task", "fields": {"title": "required|max:40", "done": "nullable|boolean"}, "soft_deletes": true}' \
  > server.out &
server_pid=$!
for _ in $(seq 50); do grep -q listening server.out 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' server.out)

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
sql() { # DB SQL: echo and run in the shell with the extension loaded
  printf '%s> %s\n' "$1" "$2"
  sqlite3 -box "$1.db" ".load ./libtether" "$2"
}
sql_json() { printf '%s> %s\n' "$1" "$2"; sqlite3 "$1.db" ".load ./libtether" "$2" | python3 -m json.tool; }

say "A reference server is running at $url (model Task: title required, at most 40 characters)"
for db in alice bob; do
  sqlite3 "$db.db" ".load ./libtether" \
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER DEFAULT 0);" \
    "SELECT tether_track('tasks');" "SELECT tether_config('server_url', '$url');" >/dev/null
done
echo "alice.db and bob.db each have a tracked tasks table and point at the server."

say "Alice writes offline, then syncs"
sql alice "INSERT INTO tasks (title) VALUES ('Buy milk'), ('Water the plants'), ('Call the bank');"
sql_json alice "SELECT tether_sync();"

say "Bob syncs and receives Alice's rows"
sql_json bob "SELECT tether_sync();"
sql bob "SELECT id, title, done, tether_id FROM tasks;"

say "A conflict: Alice edits a row offline; Bob edits the same row later and syncs first"
sql alice "UPDATE tasks SET title = 'Buy oat milk' WHERE title = 'Buy milk';"
sleep 0.05
sql bob "UPDATE tasks SET title = 'Buy almond milk', done = 1 WHERE title = 'Buy milk';"
sql_json bob "SELECT tether_sync();"
echo "Alice's change is older than the server's row: the server reports a conflict, Alice takes its state."
sql_json alice "SELECT tether_sync();"
sql alice "SELECT title, done FROM tasks WHERE title LIKE 'Buy%';"
sql alice "SELECT operation, sync_status, rejection_reason FROM tether_mutation_logs WHERE sync_status = 'conflict';"

say "A validation rejection: a title longer than the server allows"
sql bob "INSERT INTO tasks (title) VALUES ('A title that is far too long for the server to accept');"
sql_json bob "SELECT tether_sync();"

say "Status on both sides"
sql_json alice "SELECT tether_status();"
sql_json bob "SELECT tether_status();"
say "Done: the server is stopped and the temporary databases are gone."
