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
scripts/core-dag.sh  # core's modules form layers without cycles (ARCHITECTURE.md)
scripts/core-dag.sh --self-test  # ...and the check refuses planted breaks
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The fuzz smoke run (cyfr-fuzz is not a default member): seconds, a fresh sample each time.
if [ "$#" -eq 0 ]; then
  cargo test --locked -p cyfr-fuzz 2>&1 | tee -a "$log"
  fuzz_status=${PIPESTATUS[0]}
  [ "$status" -ne 0 ] || status=$fuzz_status
fi
set -e
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
