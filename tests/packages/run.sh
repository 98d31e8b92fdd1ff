#!/usr/bin/env bash
# First, that Cargo.toml, tools/cli/Cargo.toml and tools/server/Cargo.toml say one version
# (review_versions.sh). Then what a user installs without Rust, installed as a user would,
# offline, in throwaway places:
#   the release archive (checksums, contents, binaries run, libtether loads in the sqlite3 shell),
#   the wheel's entries (no duplicates, even with a stray library in packages/python),
#   the wheel in a fresh venv of Debian's /usr/bin/python3 (python_test.py, review_test.py),
#   the npm tarballs in a fresh Node project (node_test.mjs, review_test.mjs), and the loader's
#   error when the platform package is left out.
# Each test starts the archive's tether-server on 127.0.0.1 and syncs two clients through it.
# Usage: tests/packages/run.sh [DIST]   (without DIST: scripts/package.sh builds dist/)
# better-sqlite3 comes from tests/host/node/node_modules (npm ci there, as scripts/test.sh does).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/packages
"$here/review_versions.sh"
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
section="release archive"
check() { # DESCRIPTION COMMAND…
  local what=$1; shift
  if "$@" >"$work/check.log" 2>&1; then
    passed=$((passed + 1))
  else
    cat "$work/check.log"; echo "$section: FAILED: $what"; exit 1
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

# ---------------------------------------------------------------------------- wheel build
passed=0
section="wheel build"
wheel_ok() { # WHEEL [LIBRARY]: no entry twice, one sqlite_tether/libtether.so (LIBRARY's bytes)
  /usr/bin/python3 - "$@" <<'PY'
import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
names = wheel.namelist()
twice = sorted({name for name in names if names.count(name) > 1})
assert not twice, f"{sys.argv[1]}: entries twice: {twice}"
assert "sqlite_tether/libtether.so" in names, names
if len(sys.argv) > 2:
    assert wheel.read("sqlite_tether/libtether.so") == open(sys.argv[2], "rb").read(), "not --library's"
PY
}
# A libtether.so left in packages/python/sqlite_tether (say, copied there to try the package
# without installing it) is not packaged next to --library's: build from a copy that has one.
stray_wheel() { # LIBRARY
  local whl
  cp -r "$root/packages/python" "$work/pywheel" &&
    echo stray >"$work/pywheel/sqlite_tether/libtether.so" &&
    whl=$(/usr/bin/python3 "$work/pywheel/build_wheel.py" --version 0.0.0 --license MIT --library "$1" \
      --platform manylinux_2_34_x86_64 --out "$work/pywheel/out") &&
    wheel_ok "$whl" "$1"
}
check "dist's wheel has no entry twice" wheel_ok "$wheel"
check "build_wheel.py leaves out a stray libtether.so of the package dir" stray_wheel "$unpacked/libtether.so"
echo "wheel build: $passed passed, 0 failed"

# ---------------------------------------------------------------------------- Python wheel
pip_install=(install --quiet --no-index --no-deps --disable-pip-version-check "$wheel")
# Debian's own pip (python3-pip, pip >= 22.3) installs into a venv without a pip of its own, 2 s
# sooner than venv's ensurepip; without python3-pip (or when that fails), the venv's own pip.
/usr/bin/python3 -m venv --without-pip "$work/venv"
if ! /usr/bin/python3 -m pip --python "$work/venv/bin/python" "${pip_install[@]}" >/dev/null 2>&1; then
  /usr/bin/python3 -m venv --clear "$work/venv"
  "$work/venv/bin/python" -m pip "${pip_install[@]}"
fi
cp "$here/python_test.py" "$here/review_test.py" "$work/"
(cd "$work" && timeout 300 "$work/venv/bin/python" python_test.py "$server")
(cd "$work" && timeout 300 "$work/venv/bin/python" review_test.py "$server")

# ---------------------------------------------------------------------------- npm packages
project=$work/node-app
mkdir -p "$project"
echo '{ "name": "tether-npm-test", "private": true, "type": "module" }' >"$project/package.json"
(cd "$project" && npm install --offline --silent --no-audit --no-fund "$npm_main" "$npm_platform")
# better-sqlite3 is the application's own dependency: the repository's install, not a download.
ln -s "$better" "$project/node_modules/better-sqlite3"
cp "$here/node_test.mjs" "$here/review_test.mjs" "$project/"
(cd "$project" && PKG_TEST_SERVER_BIN=$server timeout 300 node --test node_test.mjs review_test.mjs)

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
