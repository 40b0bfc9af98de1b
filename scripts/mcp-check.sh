#!/usr/bin/env bash
# Points independent MCP clients at a real cyfr: the official conformance suite (generic
# scenarios), the official Python and TypeScript SDK clients, and a raw HTTP probe.
# Usage: scripts/mcp-check.sh PATH/TO/mcp-check   (the shared tools folder, see its README)
# Starts `cyfr up` on 127.0.0.1 (ephemeral port) with a throw-away data dir and stops it after.
set -euo pipefail
tools="$(cd "${1:?usage: scripts/mcp-check.sh PATH/TO/mcp-check}" && pwd)"
cd "$(dirname "$0")/.."
cargo build --locked --bin cyfr
data="$(mktemp -d)"
cyfr=./target/debug/cyfr
admin="$($cyfr init --json --data-dir "$data/d" | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_key"])')"
fifo="$data/up"; mkfifo "$fifo"
CYFR_CACHE_DIR=target/e2e-cache $cyfr up --json --data-dir "$data/d" --listen 127.0.0.1:0 > "$fifo" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
url="$(head -n1 "$fifo" | python3 -c 'import json,sys; print(json.load(sys.stdin)["listening"])')"
echo "cyfr under test: $url"
CYFR_URL="$url" CYFR_API_KEY="$admin" CARGO_TARGET_DIR=target/wasm $cyfr register components/reagents/cyfr/json-transform/0.1.0/
run='{"action":"run","reference":"r:cyfr.json-transform:0.1.0","input":{"data":[1,2,3]}}'
fails=0
python3 "$tools/http_probe.py" "$url" --bearer "$admin" || fails=$((fails+1))
"$tools/check-py.sh" "$url" --bearer "$admin" --tool execution --args "$run" || fails=$((fails+1))
"$tools/check-ts.sh" "$url" --header "Authorization: Bearer $admin" --tool execution --args "$run" || fails=$((fails+1))
"$tools/run-conformance.sh" "$url" --bearer "$admin" || fails=$((fails+1))
echo "mcp-check: $((4-fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
