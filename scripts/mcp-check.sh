#!/usr/bin/env bash
# Points independent MCP clients at a real cyfr: the official Python SDK 1.x (2025-11-25)
# and 2.x (auto mode, which must negotiate 2026-07-28) clients, the TypeScript SDK client,
# a raw HTTP probe, and the official conformance suite with `--preset all` for both spec
# versions against tests/conformance-expected-failures.txt (scripts/conformance.sh).
# Usage: scripts/mcp-check.sh PATH/TO/mcp-check   (the shared tools folder, see its README)
# Starts `cyfr up` on 127.0.0.1 (ephemeral port) with a throw-away data dir and stops it after.
# CYFR_CHECK_TOOL / CYFR_CHECK_ARGS name one more tool every client calls (e.g. a component
# shown as a tool); by default `execution` runs json-transform.
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
# The conformance suite's fixture tools, as components (shown as MCP tools by name).
CYFR_URL="$url" CYFR_API_KEY="$admin" scripts/conformance-fixtures.sh "$cyfr"
run='{"action":"run","reference":"r:cyfr.json-transform:0.1.0","input":{"data":[1,2,3]}}'
tool="${CYFR_CHECK_TOOL:-execution}"
args="${CYFR_CHECK_ARGS:-$run}"
fails=0
python3 "$tools/http_probe.py" "$url" --bearer "$admin" || fails=$((fails+1))
"$tools/check-py.sh" "$url" --bearer "$admin" --tool "$tool" --args "$args" || fails=$((fails+1))
# The 2.x client in its default auto mode probes server/discover: it must adopt 2026-07-28,
# and, with an app's key that holds only `execution`, list the component tools and call one
# by its tool name (json-transform's derived name).
app_key="$(CYFR_URL="$url" CYFR_API_KEY="$admin" $cyfr --json key create --name mcp-check \
    --type secret --scope execution | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
"$tools/check-py.sh" "$url" --mcp 'mcp==2.3.0' --auto --protocol 2026-07-28 --bearer "$app_key" \
    --tool cyfr.json-transform --args '{"data":[1,2,3]}' || fails=$((fails+1))
"$tools/check-ts.sh" "$url" --header "Authorization: Bearer $admin" --tool "$tool" --args "$args" || fails=$((fails+1))
scripts/conformance.sh "$tools" "$url" "$admin" || fails=$((fails+1))
echo "mcp-check: $((5-fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
