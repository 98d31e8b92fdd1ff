#!/usr/bin/env bash
# Builds SQLite hosts tether cannot run on from the amalgamation rusqlite bundles (one without
# JSON functions, one relabelled as an old version) and checks that loading libtether into them
# is a clean error naming the real cause, and that the host then closes the connection and exits
# normally. Usage: limited_host_test.sh LIB
set -eu
lib=$(realpath "$1")
# The amalgamation of the libsqlite3-sys the tools build with, wherever cargo keeps its sources.
tools="$(dirname "$0")/../../tools"
crate=$(cd "$tools" && cargo metadata --offline --format-version 1 \
          --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" |
        python3 -c 'import json, os, sys
print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"] == "libsqlite3-sys"))')
amalgamation="$crate/sqlite3"
[ -f "$amalgamation/sqlite3.c" ] || { echo "FAIL - no SQLite amalgamation in $crate"; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
gcc -O0 -w -DSQLITE_OMIT_JSON -I"$amalgamation" "$(dirname "$0")/limited_host.c" "$amalgamation/sqlite3.c" \
    -o "$work/limited_host" -ldl -lpthread -lm
passed=0; failed=0
host="$work/limited_host"
refused() { # name needle unwanted DB [SQL]
  local name="$1" needle="$2" unwanted="$3"; shift 3
  local out rc
  set +e
  out=$("$host" "$lib" "$@" 2>&1); rc=$?
  set -e
  echo "$out"
  case "$rc:$out" in
    0:*"$needle"*) ;;
    *) failed=$((failed + 1)); echo "FAIL - $name: exit $rc, [$needle] expected"; return ;;
  esac
  if [ -n "$unwanted" ] && case "$out" in *"$unwanted"*) true ;; *) false ;; esac; then
    failed=$((failed + 1)); echo "FAIL - $name: [$unwanted] is not the cause"; return
  fi
  passed=$((passed + 1)); echo "ok - $name"
}
refused "no JSON functions, in memory" "needs SQLite's JSON functions" "" ":memory:"
refused "no JSON functions, a database file" "needs SQLite's JSON functions" "" "$work/app.db" \
  "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"
head -c 8192 /dev/zero | tr '\0' 'x' > "$work/garbage.db"
refused "a file that is not a database is named as such, not blamed on JSON" "file is not a database" "JSON" \
  "$work/garbage.db"
# A SQLite older than tether supports (the same source, its version relabelled 3.33.0): loading is
# refused with tether's own words before anything else runs; the host never aborts.
sed -e 's/^#define SQLITE_VERSION_NUMBER .*/#define SQLITE_VERSION_NUMBER 3033000/' \
    -e 's/^#define SQLITE_VERSION  .*/#define SQLITE_VERSION "3.33.0"/' \
    "$amalgamation/sqlite3.c" > "$work/sqlite3.c"
sed -e 's/^#define SQLITE_VERSION_NUMBER .*/#define SQLITE_VERSION_NUMBER 3033000/' \
    -e 's/^#define SQLITE_VERSION  .*/#define SQLITE_VERSION "3.33.0"/' \
    "$amalgamation/sqlite3.h" > "$work/sqlite3.h"
grep -q '^#define SQLITE_VERSION_NUMBER 3033000' "$work/sqlite3.c" || { echo "FAIL - could not relabel the SQLite version"; exit 1; }
gcc -O0 -w -I"$work" "$(dirname "$0")/limited_host.c" "$work/sqlite3.c" -o "$work/old_host" -ldl -lpthread -lm
host="$work/old_host"
refused "a SQLite older than 3.35 (3.33.0) is refused, the host goes on" \
  "tether needs SQLite 3.35.0 or newer (for RETURNING); this host has 3.33.0" "" ":memory:"
echo "limited host: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
