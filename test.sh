#!/usr/bin/env bash
# Runs every test of cyfr: unit tests, the host's wasm tests and the end-to-end tests
# against the real server on loopback. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
exec cargo test --locked "$@"
