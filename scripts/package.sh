#!/usr/bin/env bash
# Builds what users install without a Rust toolchain, into dist/ (emptied first):
#   sqlite_tether-V-py3-none-<platform>.whl     Python wheel (packages/python)
#   sqlite-tether-V.tgz                         npm package with the loader (packages/node/sqlite-tether)
#   sqlite-tether-<os>-<cpu>-V.tgz              npm package with the library, per platform
#   tether-V-<archive>.tar.gz                   libtether, tether, tether-server, README.md, LICENSE
#   SHA256SUMS                                  over every other file in dist/
# V is the version in Cargo.toml; tools/cli/Cargo.toml and tools/server/Cargo.toml (whose versions
# tether --version and tether-server --version print) must say the same, or this fails.
# Everything is built offline: cargo (release), Debian's /usr/bin/python3 (the wheel is written
# with the standard library), npm pack, tar, objdump.
#
# Usage: scripts/package.sh [--no-build]
#   --no-build  package target/release/ and tools/target/release/ as they are (fails if missing)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# ---------------------------------------------------------------------------- platforms
# One row per platform; adding a platform is one row (and a runner that can build it).
#   rust_target  the Rust target triple; rows are built only on that host (no cross-compiling)
#   library      the file cargo makes; SQLite derives the entry point from it (sqlite3_tether_init)
#   wheel        the wheel's platform tag; {glibc} becomes the newest GLIBC_ symbol version the
#                library needs (what `auditwheel show` reports as its manylinux tag)
#   npm          <os>-<cpu>: the platform package sqlite-tether-<os>-<cpu> with those os/cpu
#                fields (Node's process.platform and process.arch, which the loader looks up)
#   libc         the npm libc field (glibc, musl) or - for none
#   archive      the release archive's suffix: tether-V-<archive>.tar.gz
PLATFORMS=(
  # rust_target              library          wheel                      npm           libc   archive
  "x86_64-unknown-linux-gnu  libtether.so     manylinux_{glibc}_x86_64   linux-x64     glibc  linux-x86_64"
  # Not built or tested yet (README, "Other platforms", says what each still needs):
  # "aarch64-unknown-linux-gnu libtether.so    manylinux_{glibc}_aarch64  linux-arm64   glibc  linux-aarch64"
  # "x86_64-apple-darwin       libtether.dylib macosx_10_12_x86_64        darwin-x64    -      macos-x86_64"
  # "aarch64-apple-darwin      libtether.dylib macosx_11_0_arm64          darwin-arm64  -      macos-arm64"
  # "x86_64-pc-windows-msvc    tether.dll      win_amd64                  win32-x64     -      windows-x86_64"
)

build=1
case "${1:-}" in
  --no-build) build=0 ;;
  "") ;;
  *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
esac

# The [package] table's version and license, from Cargo.toml only.
cargo_field() { # KEY [MANIFEST]
  awk -F'"' -v key="$1" '/^\[/{p = ($0 == "[package]")} p && $0 ~ "^"key" *=" {print $2; exit}' "${2:-Cargo.toml}"
}
version=$(cargo_field version)
license=$(cargo_field license)
[ -n "$version" ] || { echo "$0: no version in Cargo.toml [package]" >&2; exit 1; }
# tether and tether-server print their own crates' versions (tools/ is a separate workspace, its
# versions written by hand): the archive named after Cargo.toml's must not hold binaries saying another.
mismatched=0
for manifest in tools/cli/Cargo.toml tools/server/Cargo.toml; do
  tool_version=$(cargo_field version "$manifest")
  if [ "$tool_version" != "$version" ]; then
    echo "$0: $manifest has version \"$tool_version\", Cargo.toml has \"$version\": set the same version in Cargo.toml, tools/cli/Cargo.toml and tools/server/Cargo.toml" >&2
    mismatched=1
  fi
done
[ "$mismatched" = 0 ] || exit 1
host=$(rustc -vV | sed -n 's/^host: //p')
python=/usr/bin/python3
[ -x "$python" ] || python=python3
for tool in npm tar sha256sum objdump "$python"; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool" >&2; exit 1; }
done
license_file=
[ -f LICENSE ] && license_file=$root/LICENSE
[ -n "$license_file" ] || echo "package.sh: warning: no LICENSE file in the repository; the packages and the archive ship without one (Cargo.toml declares license \"$license\")" >&2

if [ "$build" = 1 ]; then
  echo "package.sh: cargo build --release (libtether, tether, tether-server)…" >&2
  cargo build --quiet --release
  cargo build --quiet --release --manifest-path tools/Cargo.toml -p tether-cli -p tether-server
fi

dist=$root/dist
rm -rf "$dist"
mkdir -p "$dist"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

# package.json fields, written with node so the JSON stays valid.
write_json() { # FILE JS-EXPRESSION-OF-p: edits the object p read from FILE
  node -e '
    const fs = require("fs"); const [file, code] = process.argv.slice(1);
    const p = JSON.parse(fs.readFileSync(file, "utf8")); new Function("p", code)(p);
    fs.writeFileSync(file, JSON.stringify(p, null, 2) + "\n");' "$1" "$2"
}

optional=()
built=0
for row in "${PLATFORMS[@]}"; do
  read -r rust_target library wheel npm libc archive <<<"$row"
  optional+=("sqlite-tether-$npm")
  if [ "$rust_target" != "$host" ]; then
    echo "package.sh: skipping $rust_target (this host is $host; build that row on its own runner)" >&2
    continue
  fi
  lib=$root/target/release/$library
  [ -f "$lib" ] || { echo "$0: no $lib (cargo build --release)" >&2; exit 1; }
  for bin in tether tether-server; do
    [ -x "tools/target/release/$bin" ] || { echo "$0: no tools/target/release/$bin (cd tools && cargo build --release -p tether-cli -p tether-server)" >&2; exit 1; }
  done

  # Wheel: the manylinux tag from the newest glibc symbol version the library needs.
  if [[ "$wheel" == *"{glibc}"* ]]; then
    glibc=$(objdump -T "$lib" | grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sed 's/GLIBC_//' | sort -uV | tail -1)
    [ -n "$glibc" ] || { echo "$0: no GLIBC_ symbol versions in $lib" >&2; exit 1; }
    wheel=${wheel//\{glibc\}/${glibc//./_}}
  fi
  whl=$("$python" packages/python/build_wheel.py --version "$version" --license "$license" \
    --library "$lib" --platform "$wheel" --out "$dist" --epoch "$epoch" ${license_file:+--license-file "$license_file"})
  if command -v auditwheel >/dev/null; then
    # Cross-check with auditwheel when it is installed (it is not in Debian; pip install auditwheel).
    shown=$(auditwheel show "$whl" 2>&1) || { echo "$shown" >&2; exit 1; }
    grep -q "\"$wheel\"" <<<"$shown" || { echo "$shown" >&2; echo "$0: auditwheel disagrees with $wheel" >&2; exit 1; }
  fi

  # npm platform package: the library, with os/cpu/libc so npm installs it only where it runs.
  pkg=$stage/sqlite-tether-$npm
  mkdir -p "$pkg"
  cp "$lib" "$pkg/$library"
  cp packages/node/platform/README.md "$pkg/"
  [ -z "$license_file" ] || cp "$license_file" "$pkg/LICENSE"
  echo '{}' >"$pkg/package.json"
  write_json "$pkg/package.json" "
    Object.assign(p, {
      name: 'sqlite-tether-$npm', version: '$version', license: '$license',
      description: 'The prebuilt tether SQLite extension for $npm; install sqlite-tether instead',
      os: ['${npm%-*}'], cpu: ['${npm#*-}'], files: ['$library', 'README.md'],
      tether: { library: '$library' } });
    if ('$libc' !== '-') p.libc = ['$libc'];"
  (cd "$dist" && npm pack --silent "$pkg" >/dev/null)

  # Release archive.
  name=tether-$version-$archive
  mkdir -p "$stage/$name"
  cp "$lib" tools/target/release/tether tools/target/release/tether-server README.md "$stage/$name/"
  [ -z "$license_file" ] || cp "$license_file" "$stage/$name/LICENSE"
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
    -czf "$dist/$name.tar.gz" "$name"
  built=$((built + 1))
done
[ "$built" -gt 0 ] || { echo "$0: no platform row for this host ($host)" >&2; exit 1; }

# npm main package: the loader, with every platform package as an optional dependency.
main=$stage/sqlite-tether
cp -r packages/node/sqlite-tether "$main"
[ -z "$license_file" ] || cp "$license_file" "$main/LICENSE"
write_json "$main/package.json" "
  p.version = '$version'; p.license = '$license';
  p.optionalDependencies = Object.fromEntries('${optional[*]}'.split(' ').map((n) => [n, '$version']));"
(cd "$dist" && npm pack --silent "$main" >/dev/null)

(cd "$dist" && sha256sum -- * >SHA256SUMS)
echo "package.sh: dist/ (version $version, wheel tag $wheel):" >&2
(cd "$dist" && ls -l --time-style=+ -- * | awk '{print "  " $NF " (" $5 " bytes)"}') >&2
