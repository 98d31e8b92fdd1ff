#!/usr/bin/env bash
# The whole test suite: lint, Rust unit and integration tests, and the extension loaded by each
# host (sqlite3 shell, Python, SQLAlchemy + Alembic, Node, a SQLite without JSON). Needs: cargo,
# sqlite3, /usr/bin/python3 with venv (python3-venv; PyPI on the first run), node + npm, gcc,
# go with golang-github-mattn-go-sqlite3-dev (Debian). The packages of scripts/package.sh are
# built (release) and installed offline into throwaway places (tests/packages/run.sh).
# `.ci/run` installs what a fresh machine lacks, then runs this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log=$(mktemp); trap 'rm -f "$log"' EXIT
exec > >(tee "$log") 2>&1
step() { printf '\n=== %s\n' "$*"; }

step "format and lints"
cargo fmt --check
(cd tools && cargo fmt --check)
cargo clippy --quiet --all-targets -- -D warnings
(cd tools && cargo clippy --quiet --all-targets -- -D warnings)

step "build libtether"
cargo build --quiet
lib="$root/target/debug/libtether.so"
export TETHER_EXTENSION="$lib"

step "extension unit tests"
cargo test --quiet

step "integration tests (tools workspace)"
(cd tools && cargo test --quiet)

step "sqlite3 shell"
tests/host/shell_test.sh "$lib"

step "Python sqlite3 (Debian /usr/bin/python3)"
/usr/bin/python3 tests/host/python_test.py "$lib"

step "SQLAlchemy + Alembic (venv)"
(cd tools && cargo build --quiet -p tether-server)
tests/host/orm/run.sh "$lib" "$root/tools/target/debug/tether-server"

step "Node better-sqlite3"
if [ ! -d tests/host/node/node_modules/better-sqlite3/build ]; then
  npm_log=$(mktemp)
  (cd tests/host/node && npm ci --no-audit --no-fund --foreground-scripts >"$npm_log" 2>&1) \
    || { cat "$npm_log"; exit 1; }
fi
(cd tests/host/node && node --test test.mjs)

step "Go database/sql (mattn/go-sqlite3, Debian packages)"
tests/host/go_test.sh "$lib" "$root/tools/target/debug/tether-server"

step "SQLite built without JSON"
tests/host/limited_host_test.sh "$lib"

# Both demos must tell the whole story: rows received, a conflict, a rejection.
for demo in demo shell-demo; do
  step "demo (scripts/$demo.sh)"
  demo_log=$(mktemp)
  "./scripts/$demo.sh" >"$demo_log" 2>&1 || { cat "$demo_log"; exit 1; }
  for expected in 'Buy almond milk' '"conflicts": 1' 'validation_failed'; do
    grep -q "$expected" "$demo_log" || { cat "$demo_log"; echo "$demo output lacks $expected"; exit 1; }
  done
  echo "$demo: 1 passed, 0 failed"
done

# After the demos, which built tether and tether-server (release): only libtether's release build is new.
step "packages: wheel, npm tarballs, release archive (scripts/package.sh, installed offline)"
tests/packages/run.sh

# One closing line over every runner above (cargo, shell, unittest, node --test, C host).
passed=$(grep -oE '(test result: ok\. [0-9]+ passed|^[a-z ]+: [0-9]+ passed|^Ran [0-9]+ test|^# pass [0-9]+)' "$log" \
  | grep -oE '[0-9]+' | awk '{ s += $1 } END { print s + 0 }')
printf '\nsummary: %s passed, 0 failed\n' "$passed"
