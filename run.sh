#!/usr/bin/env bash
# Builds cyfr, initializes ./data on first run (printing the first admin key once), and
# serves /mcp on 127.0.0.1:4000 (CYFR_HOST/CYFR_PORT to change).
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --locked --release --bin cyfr
DATA="${CYFR_DATA_DIR:-data}"
[ -e "$DATA/cyfr.db" ] || ./target/release/cyfr init --data-dir "$DATA"
exec ./target/release/cyfr up --data-dir "$DATA" "$@"
