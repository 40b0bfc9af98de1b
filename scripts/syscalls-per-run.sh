#!/usr/bin/env bash
# Counts what one authenticated `execution.run` of json-transform costs the server in
# syscalls (`strace -c -f`) or context switches and page faults (`perf stat`): a fresh data
# directory, `cyfr up` on loopback, N runs over one keep-alive connection (curl), the tool
# attached to the server only. Counts, not times: divide by N; they barely move with load.
# Usage: scripts/syscalls-per-run.sh CYFR_BIN [N] [strace|perf]   (default 1000, strace)
# Needs target/wasm/wasm32-wasip2/release/json_transform.wasm (any build of the guests).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1"); N=${2:-1000}; TOOL=${3:-strace}
PORT=$((20000 + RANDOM % 20000))
W=$(mktemp -d /tmp/cyfr-syscalls.XXXX)
mkdir -p "$W/comp"
cp components/reagents/cyfr/json-transform/0.1.0/cyfr-manifest.json "$W/comp/"
cp target/wasm/wasm32-wasip2/release/json_transform.wasm "$W/comp/reagent.wasm"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
ADMIN=$("$BIN" --json init --data-dir "$W/data" | json admin_key)
"$BIN" up --data-dir "$W/data" --listen "127.0.0.1:$PORT" --components "$W" >"$W/up.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.2; done
export CYFR_URL="http://127.0.0.1:$PORT" CYFR_API_KEY="$ADMIN"
REF=$("$BIN" --json register "$W/comp" | json reference)
"$BIN" policy set "$REF" rate_limit 1000000/1s >/dev/null
KEY=$("$BIN" --json key create --name m --type secret --scope execution --rate-limit 1000000/1s | json key)
BODY='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execution","arguments":{"action":"run","reference":{"registry":"'$REF'"},"input":{"data":[1,2,3]},"type":"reagent"}}}'
H=(-H "Content-Type: application/json" -H "MCP-Protocol-Version: 2025-11-25" -H "Authorization: Bearer $KEY")
urls() { for _ in $(seq "$1"); do echo "http://127.0.0.1:$PORT/mcp"; done; }
# shellcheck disable=SC2046
curl -s "${H[@]}" -d "$BODY" $(urls 50) >/dev/null   # warm-up: compiled code, caches
case "$TOOL" in
  strace) strace -c -f -p "$UP" -o "$W/count.txt" & ;;
  perf) perf stat -e context-switches,page-faults,task-clock -p "$UP" -o "$W/count.txt" & ;;
  *) echo "unknown tool $TOOL" >&2; exit 2 ;;
esac
COUNTER=$!
sleep 1
# shellcheck disable=SC2046
curl -s "${H[@]}" -d "$BODY" $(urls "$N") >"$W/runs.out"
kill -INT $COUNTER; wait $COUNTER || true
echo "runs answered: $(grep -o '\\"sum\\"' "$W/runs.out" | wc -l) / $N   (in $W)"
cat "$W/count.txt"
