#!/usr/bin/env bash
# What a user installs without Rust, installed as a user would, offline, in throwaway places:
#   the release archive (checksums, contents, binaries run, libtether loads in the sqlite3 shell),
#   the wheel in a fresh venv of Debian's /usr/bin/python3 (python_test.py),
#   the npm tarballs in a fresh Node project (node_test.mjs), and the loader's error when the
#   platform package is left out.
# Each test starts the archive's tether-server on 127.0.0.1 and syncs two clients through it.
# Usage: tests/packages/run.sh [DIST]   (without DIST: scripts/package.sh builds dist/)
# better-sqlite3 comes from tests/host/node/node_modules (npm ci there, as scripts/test.sh does).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/packages
if [ $# -ge 1 ]; then
  dist=$(realpath "$1")
else
  "$root/scripts/package.sh"
  dist=$root/dist
fi
better=$root/tests/host/node/node_modules/better-sqlite3
[ -d "$better/build" ] || { echo "$0: no better-sqlite3 in tests/host/node (cd tests/host/node && npm ci)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
one() { ls "$dist"/$1 2>/dev/null | head -1; }
archive=$(one 'tether-*-linux-x86_64.tar.gz')
wheel=$(one 'sqlite_tether-*.whl')
npm_main=$(one 'sqlite-tether-[0-9]*.tgz')
npm_platform=$(one 'sqlite-tether-linux-x64-*.tgz')
for f in archive wheel npm_main npm_platform; do
  [ -n "${!f}" ] || { echo "$0: dist/ has no $f" >&2; exit 1; }
done

# ---------------------------------------------------------------------------- release archive
passed=0
check() { # DESCRIPTION COMMAND…
  local what=$1; shift
  if "$@" >"$work/check.log" 2>&1; then
    passed=$((passed + 1))
  else
    cat "$work/check.log"; echo "release archive: FAILED: $what"; exit 1
  fi
}
check "SHA256SUMS covers every file and matches" bash -c '
  cd "$1" && sha256sum --quiet -c SHA256SUMS &&
  [ "$(ls | grep -vx SHA256SUMS | sort)" = "$(awk "{print \$2}" SHA256SUMS | sort)" ]' _ "$dist"
tar -C "$work" -xzf "$archive"
unpacked=$(echo "$work"/tether-*-linux-x86_64)
version=$(basename "$unpacked" | sed -E 's/^tether-(.*)-linux-x86_64$/\1/')
check "archive holds libtether.so, tether, tether-server, README.md" \
  test -f "$unpacked/libtether.so" -a -x "$unpacked/tether" -a -x "$unpacked/tether-server" -a -f "$unpacked/README.md"
check "tether --version" bash -c '"$1/tether" --version | grep -qF "$2"' _ "$unpacked" "$version"
check "tether-server --version" bash -c '"$1/tether-server" --version | grep -qF "$2"' _ "$unpacked" "$version"
check "libtether.so loads in the sqlite3 shell" bash -c \
  '[ "$(cd "$1" && sqlite3 :memory: ".load ./libtether" "SELECT tether_version()")" = "$2" ]' _ "$unpacked" "$version"
if [ -f "$unpacked/LICENSE" ]; then passed=$((passed + 1)); else echo "release archive: note: no LICENSE (the repository has none)"; fi
echo "release archive: $passed passed, 0 failed"
server=$unpacked/tether-server

# ---------------------------------------------------------------------------- Python wheel
/usr/bin/python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-index --no-deps --disable-pip-version-check "$wheel"
cp "$here/python_test.py" "$work/"
(cd "$work" && timeout 300 "$work/venv/bin/python" python_test.py "$server")

# ---------------------------------------------------------------------------- npm packages
project=$work/node-app
mkdir -p "$project"
echo '{ "name": "tether-npm-test", "private": true, "type": "module" }' >"$project/package.json"
(cd "$project" && npm install --offline --silent --no-audit --no-fund "$npm_main" "$npm_platform")
# better-sqlite3 is the application's own dependency: the repository's install, not a download.
ln -s "$better" "$project/node_modules/better-sqlite3"
cp "$here/node_test.mjs" "$project/"
(cd "$project" && PKG_TEST_SERVER_BIN=$server timeout 300 node --test node_test.mjs)

# Without the platform package (npm install --omit=optional), the loader names what is missing.
bare=$work/node-bare
mkdir -p "$bare"
echo '{ "name": "tether-npm-bare", "private": true }' >"$bare/package.json"
(cd "$bare" && npm install --offline --silent --no-audit --no-fund --omit=optional "$npm_main")
[ ! -e "$bare/node_modules/sqlite-tether-linux-x64" ] || { echo "npm without platform package: installed anyway"; exit 1; }
message=$(cd "$bare" && node -e "require('sqlite-tether').getLoadablePath()" 2>&1) && { echo "npm without platform package: no error"; exit 1; }
grep -q 'the platform package sqlite-tether-linux-x64 is not installed: npm skipped it' <<<"$message" \
  || { echo "$message"; echo "npm without platform package: FAILED: the error does not name it"; exit 1; }
echo "npm without platform package: 1 passed, 0 failed"
