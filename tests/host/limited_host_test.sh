#!/usr/bin/env bash
# Builds a SQLite host without JSON functions from the amalgamation rusqlite bundles and checks
# that loading libtether into it is a clean error. Usage: limited_host_test.sh LIB
set -eu
lib=$(realpath "$1")
amalgamation=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/libsqlite3-sys-0.38.2/sqlite3 | head -1)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
gcc -O0 -w -DSQLITE_OMIT_JSON -I"$amalgamation" "$(dirname "$0")/limited_host.c" "$amalgamation/sqlite3.c" \
    -o "$work/limited_host" -ldl -lpthread -lm
set +e
"$work/limited_host" "$lib"; rc=$?
set -e
if [ "$rc" -eq 0 ]; then echo "limited host: 1 passed, 0 failed"; else echo "limited host: 0 passed, 1 failed (exit $rc)"; exit 1; fi
