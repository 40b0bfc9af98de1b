#!/usr/bin/env bash
# Runs the official MCP conformance suite with `--preset all` against a running cyfr, for
# both spec versions (2025-11-25 with 0.1.16, 2026-07-28 with 0.2.0-alpha.12), and compares
# each scenario with tests/conformance-expected-failures.txt. Fails on a new failure AND on
# a listed failure that now passes, so the file stays true.
# Usage: scripts/conformance.sh PATH/TO/mcp-check URL KEY
#   (scripts/mcp-check.sh starts cyfr and calls this; the suite's installs stay in
#   $MCP_CHECK_CACHE, default /tmp/mcp-check-cache, so later runs are offline)
set -euo pipefail
tools="$(cd "${1:?usage: scripts/conformance.sh PATH/TO/mcp-check URL KEY}" && pwd)"
url="${2:?URL}"
key="${3:?KEY}"
cd "$(dirname "$0")/.."
expected="$PWD/tests/conformance-expected-failures.txt"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cache="${MCP_CHECK_CACHE:-/tmp/mcp-check-cache}"
bad=0
for pair in 0.1.16:2025-11-25 0.2.0-alpha.12:2026-07-28; do
  ver="${pair%%:*}"; spec="${pair##*:}"
  offline=()
  [ -f "$cache/conformance-$ver/node_modules/@modelcontextprotocol/conformance/package.json" ] && offline=(--offline)
  # The suite's own exit code is ignored: the comparison below decides.
  "$tools/run-conformance.sh" "$url" --bearer "$key" --version "$ver" --spec "$spec" \
      --preset all ${offline[@]+"${offline[@]}"} --out "$out/$spec" > "$out/$spec.txt" 2>&1 || true
  if ! grep -q '^conformance: ' "$out/$spec.txt"; then
    echo "conformance $spec: the suite did not run:"; tail -20 "$out/$spec.txt"; bad=1; continue
  fi
  grep -E '^(PASS|FAIL) ' "$out/$spec.txt" | sed -E 's/^(PASS|FAIL) +([^:]+):.*/\1 \2/' | sort -k2 > "$out/$spec.got"
  # Listed scenarios of this spec: "SPEC SCENARIO reason…", comments and blank lines skipped.
  awk -v s="$spec" '$1 == s { print $2 }' "$expected" | sort -u > "$out/$spec.listed"
  passed=0; failed=0
  while read -r mark scen; do
    listed=0; grep -qxF "$scen" "$out/$spec.listed" && listed=1
    if [ "$mark" = PASS ]; then
      passed=$((passed+1))
      if [ $listed = 1 ]; then echo "conformance $spec: $scen now passes: remove its line from $expected"; bad=1; fi
    else
      failed=$((failed+1))
      if [ $listed = 0 ]; then
        echo "conformance $spec: NEW FAILURE $scen:"
        awk -v s="$scen" '$0 ~ "^FAIL +"s":" {p=1; print; next} /^(PASS|FAIL) / {p=0} p' "$out/$spec.txt" | head -8
        bad=1
      fi
    fi
  done < "$out/$spec.got"
  # A listed scenario the suite no longer has is stale too.
  while read -r scen; do
    grep -q " $scen\$" "$out/$spec.got" || { echo "conformance $spec: $scen is listed but was not run"; bad=1; }
  done < "$out/$spec.listed"
  echo "conformance $spec ($ver): $passed passed, $failed failed ($(wc -l < "$out/$spec.listed") expected)"
done
[ "$bad" -eq 0 ] && echo "conformance: as expected" || echo "conformance: differs from $expected"
[ "$bad" -eq 0 ]
