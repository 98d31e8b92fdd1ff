#!/usr/bin/env bash
# SQLAlchemy 2 + Alembic write patterns against libtether and tether-server, in a venv of Debian's
# /usr/bin/python3 (whose sqlite3 module can load extensions; a venv of it can too).
# Usage: tests/host/orm/run.sh LIB SERVER_BIN
#   LIB         target/debug/libtether.so (cargo build)
#   SERVER_BIN  tools/target/debug/tether-server (cd tools && cargo build -p tether-server)
# The venv lives in tests/host/orm/.venv (gitignored) and is reused while requirements.txt is
# unchanged. Needs python3-venv (.ci/run installs it) and PyPI on first run.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 LIB SERVER_BIN" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
lib=$(realpath "$1")
server=$(realpath "$2")
[ -f "$lib" ] || { echo "$0: no extension at $lib (cargo build)" >&2; exit 2; }
[ -x "$server" ] || { echo "$0: no tether-server at $server (cd tools && cargo build -p tether-server)" >&2; exit 2; }

venv="$here/.venv"
stamp="$venv/requirements.installed"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  pip_log=$(mktemp)
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$here/requirements.txt" >"$pip_log" 2>&1 || { cat "$pip_log"; rm -f "$pip_log"; rm -rf "$venv"; exit 1; }
  rm -f "$pip_log"
  cp "$here/requirements.txt" "$stamp"
fi
exec "$venv/bin/python" "$here/orm_test.py" "$lib" "$server"
