#!/usr/bin/env bash
# Runs every test of cyfr: unit tests, the host's wasm tests and the end-to-end tests
# against the real server on loopback. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")"
installed="$(rustup target list --installed)"
for t in wasm32-wasip2 wasm32-unknown-unknown; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
# core must stay free of I/O: it compiles for the Workers target too.
cargo check --locked -p cyfr-core --target wasm32-unknown-unknown
exec cargo test --locked "$@"
