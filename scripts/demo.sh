#!/usr/bin/env bash
# The main job end to end on an embedded default: builds the `tether` command line and
# tether-server (release), then runs `tether demo`: a local server on a free loopback port with a
# temporary database, two client databases syncing through it, a conflict, a validation
# rejection, status. Leaves nothing running and nothing behind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
echo "building tether and tether-server (release)…" >&2
cargo build --quiet --release --manifest-path "$root/tools/Cargo.toml" -p tether-cli -p tether-server
exec "$root/tools/target/release/tether" demo
