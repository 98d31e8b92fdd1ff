#!/usr/bin/env bash
# The extension loaded by Go's database/sql with mattn/go-sqlite3, built offline from Debian's
# packages: golang and golang-github-mattn-go-sqlite3-dev (GO111MODULE=off, GOPATH from the
# package; that driver links the system libsqlite3). Two clients sync through a tether-server on
# 127.0.0.1. The Go build cache lives in a temporary directory removed afterwards.
# Usage: tests/host/go_test.sh LIB SERVER_BIN
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 LIB SERVER_BIN" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
lib=$(realpath "$1")
server=$(realpath "$2")
gopath=/usr/share/gocode
command -v go >/dev/null || { echo "$0: needs go (apt-get install golang)" >&2; exit 2; }
[ -d "$gopath/src/github.com/mattn/go-sqlite3" ] \
  || { echo "$0: needs $gopath/src/github.com/mattn/go-sqlite3 (apt-get install golang-github-mattn-go-sqlite3-dev)" >&2; exit 2; }

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  [ -z "$server_pid" ] || wait "$server_pid" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$here/go" && GO111MODULE=off GOPATH=$gopath GOCACHE=$work/cache GOFLAGS= \
  go build -o "$work/host" main.go)

"$server" --listen 127.0.0.1:0 --quiet >"$work/server.out" &
server_pid=$!
for _ in $(seq 100); do
  url=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$work/server.out" || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "$0: tether-server printed no URL" >&2; exit 1; }
mkdir "$work/db"
"$work/host" "$lib" "$url" "$work/db"
