#!/usr/bin/env bash
# Review guard: "version numbers come from one place (Cargo.toml)". The archive is named after
# the root Cargo.toml's version, but `tether --version` and `tether-server --version` print the
# versions of tools/cli/Cargo.toml and tools/server/Cargo.toml (a separate workspace), written
# by hand. Bumping only the root would ship tether-V2-linux-x86_64.tar.gz with binaries saying V1
# (and tests/packages/run.sh's "tether --version" check would fail late, after a release build).
# This fails as soon as they differ, and checks that scripts/package.sh refuses such a tree too
# (in a throwaway copy: the repository's manifests are not touched).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
field() { awk -F'"' '/^\[/{p = ($0 == "[package]")} p && /^version *=/ {print $2; exit}' "$1"; }
want=$(field "$root/Cargo.toml")
for crate in tools/cli tools/server; do
  got=$(field "$root/$crate/Cargo.toml")
  [ "$got" = "$want" ] || { echo "$crate/Cargo.toml: version \"$got\", root Cargo.toml \"$want\""; echo "versions: 0 passed, 1 failed"; exit 1; }
done

fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
mkdir -p "$fake/scripts" "$fake/tools/cli" "$fake/tools/server"
cp "$root/scripts/package.sh" "$fake/scripts/"
printf '[package]\nname = "tether"\nversion = "9.8.7"\nlicense = "MIT"\n' >"$fake/Cargo.toml"
printf '[package]\nname = "tether-cli"\nversion = "9.8.7"\n' >"$fake/tools/cli/Cargo.toml"
printf '[package]\nname = "tether-server"\nversion = "9.8.6"\n\n[dependencies]\nx = { version = "9.8.7" }\n' \
  >"$fake/tools/server/Cargo.toml"
if out=$("$fake/scripts/package.sh" --no-build 2>&1); then
  echo "$out"; echo "scripts/package.sh packaged a tree whose tools/server/Cargo.toml says another version"
  echo "versions: 1 passed, 1 failed"; exit 1
fi
if ! grep -q 'tools/server/Cargo.toml has version "9.8.6", Cargo.toml has "9.8.7"' <<<"$out" \
  || grep -q 'tools/cli/Cargo.toml has version' <<<"$out" || [ -e "$fake/dist" ]; then
  echo "$out"; echo "scripts/package.sh did not refuse the mismatch, naming the file, before touching dist/"
  echo "versions: 1 passed, 1 failed"; exit 1
fi
echo "versions: 2 passed, 0 failed"
