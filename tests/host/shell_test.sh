#!/usr/bin/env bash
# Loads libtether into the plain sqlite3 shell, as `.load ./libtether`. Usage: shell_test.sh PATH/TO/libtether.so
set -u
lib="$1"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cp "$lib" "$work/"
cd "$work"
passed=0; failed=0
check() { # name expected actual
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok - $1"
  else failed=$((failed + 1)); echo "FAIL - $1: expected [$2] got [$3]"; fi
}
contains() { # name needle haystack
  case "$3" in *"$2"*) passed=$((passed + 1)); echo "ok - $1" ;;
  *) failed=$((failed + 1)); echo "FAIL - $1: [$2] not in [$3]" ;; esac
}

out=$(sqlite3 app.db <<'SQL'
.load ./libtether
CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
SELECT json_extract(tether_track('tasks'), '$.model');
INSERT INTO tasks (title) VALUES ('Buy milk');
SELECT json_extract(tether_status(), '$.pending');
SQL
)
check "load, track and capture in the shell" "$(printf 'Task\n1')" "$out"

out=$(sqlite3 app.db "INSERT INTO tasks (title) VALUES ('no extension here'); SELECT count(*) FROM tether_mutation_logs;")
check "a shell that never loaded tether is captured" "2" "$out"

out=$(sqlite3 app.db <<'SQL'
SELECT operation || ':' || length(entity_id) || ':'
       || (abs(timestamp - CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)) < 60000)
  FROM tether_mutation_logs ORDER BY id DESC LIMIT 1;
SQL
)
check "captured create has a 26-char key and a millisecond timestamp" "create:26:1" "$out"

out=$(TETHER_PUSH_BATCH_SIZE=7 TETHER_AUTH_TOKEN=env-secret sqlite3 app.db ".load ./libtether" "SELECT tether_config('push_batch_size'), tether_config('auth_token');")
check "environment fallback" "7|***" "$out"

out=$(TETHER_PUSH_BATCH_SIZE=lots sqlite3 app.db ".load ./libtether" "SELECT tether_config('push_batch_size');" 2>&1)
contains "a malformed environment value names the variable" "TETHER_PUSH_BATCH_SIZE" "$out"

out=$(TETHER_PUSH_BATCH_SIZE=7 sqlite3 app.db ".load ./libtether" "SELECT tether_config('push_batch_size', 50);" "SELECT tether_config('push_batch_size');")
check "a stored setting beats the environment" "$(printf '50\n50')" "$out"

out=$(sqlite3 app.db ".load ./libtether" "SELECT tether_config('timeout_ms', 'soon');" 2>&1)
contains "a bad value is an error naming the key" "timeout_ms must be a whole number" "$out"

out=$(sqlite3 app.db ".load ./libtether" ".load ./libtether" "SELECT tether_version() IS NOT NULL;" 2>&1)
check "loading twice works" "1" "$out"

# The write paths on the shell's own SQLite, from a shell that never loaded tether.
sqlite3 app.db ".load ./libtether" "CREATE TABLE settings (id INTEGER PRIMARY KEY, name TEXT UNIQUE, value BLOB, tags JSON);" "SELECT tether_track('settings') IS NOT NULL;" >/dev/null
out=$(sqlite3 app.db <<'SQL'
INSERT INTO settings (name, value, tags) VALUES ('theme', x'00FF', json_array('a'));
INSERT OR REPLACE INTO settings (name, value, tags) VALUES ('theme', x'01', '[1]');
SELECT group_concat(operation, ',') FROM (SELECT operation FROM tether_mutation_logs WHERE model = 'Setting' ORDER BY id);
SELECT count(DISTINCT entity_id) FROM tether_mutation_logs WHERE model = 'Setting';
SELECT json_extract(payload, '$.value') || ' ' || json_type(payload, '$.tags') FROM tether_mutation_logs WHERE model = 'Setting' ORDER BY id DESC LIMIT 1;
SQL
)
check "REPLACE through a unique column is an update of the same entity; bytes as hex, JSON as JSON" "$(printf 'create,update\n1\n01 array')" "$out"

out=$(sqlite3 app.db "UPDATE settings SET tether_id = NULL;" 2>&1)
contains "the sync key cannot be cleared" "settings.tether_id is the row's identity" "$out"

out=$(sqlite3 app.db "ALTER TABLE settings RENAME TO prefs;" ".load ./libtether" "SELECT json_extract(tether_status(), '$.tables[1].table') || ' ' || json_extract(tether_status(), '$.tables[1].state');")
check "a renamed table is followed" "prefs ok" "$out"

# A refused load names its cause; the shell goes on, closes the database at the end of its input
# and exits with its ordinary error status 1, never a crash (SQLite unloads a library whose init
# failed: anything tether had registered would crash the shell when the database closes).
refused() { # name database needle [VAR=value...]
  local name="$1" db="$2" needle="$3"; shift 3
  local out rc
  out=$(printf '.load ./libtether\nSELECT %s;\n' "'went on'" | env "$@" sqlite3 "$db" 2>&1); rc=$?
  case "$rc:$out" in
    1:*"$needle"*"went on"*|1:*"went on"*"$needle"*) passed=$((passed + 1)); echo "ok - $name" ;;
    *) failed=$((failed + 1)); echo "FAIL - $name: exit $rc (1 expected), [$needle] and [went on] expected in [$out]" ;;
  esac
}
sqlite3 newer.db "CREATE TABLE tether_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT);
                  INSERT INTO tether_migrations (version, name) VALUES (999, '0999_future');"
refused "a database from a newer tether is refused by name, without crashing" newer.db "newer tether"
head -c 8192 /dev/zero | tr '\0' 'x' > garbage.db
refused "a file that is not a database is named as such, without crashing" garbage.db "file is not a database"
out=$(printf '.load ./libtether\n' | sqlite3 garbage.db 2>&1)
case "$out" in *JSON*) failed=$((failed + 1)); echo "FAIL - a file that is not a database is not blamed on JSON: [$out]" ;;
*) passed=$((passed + 1)); echo "ok - a file that is not a database is not blamed on JSON" ;; esac
sqlite3 env.db ".load ./libtether" >/dev/null  # set up: this load generates nothing
refused "a malformed environment value is refused by name, without crashing" env.db "TETHER_PUSH_BATCH_SIZE" TETHER_PUSH_BATCH_SIZE=lots

echo "shell: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
