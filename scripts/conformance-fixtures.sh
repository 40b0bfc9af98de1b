#!/usr/bin/env bash
# Registers the MCP conformance suite's fixture tools as real cyfr components (reagents
# built from tests/fixtures/conformance-{content,error,input}, the prompts manifest and slow-progress) into a running cyfr.
# Usage: CYFR_URL=… CYFR_API_KEY=… scripts/conformance-fixtures.sh [CYFR_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
cyfr="${1:-./target/debug/cyfr}"
cargo build --locked --release --target wasm32-wasip2 --target-dir target/wasm \
    -p conformance-content -p conformance-error -p conformance-input -p slow-progress 2>&1 | grep -v '^ *\(Compiling\|Finished\)' || true
built=target/wasm/wasm32-wasip2/release
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
# One directory per manifest, as `cyfr register` reads one: the manifest and its wasm.
reg() { mkdir -p "$tmp/$2"; cp "$1" "$tmp/$2/cyfr-manifest.json"; cp "$3" "$tmp/$2/reagent.wasm"
        "$cyfr" register "$tmp/$2" >/dev/null; }
for m in tests/fixtures/conformance-content/manifests/*.json; do
  reg "$m" "$(basename "$m" .json)" "$built/conformance_content.wasm"
done
for m in tests/fixtures/conformance-input/manifests/*.json; do
  reg "$m" "input-$(basename "$m" .json)" "$built/conformance_input.wasm"
done
# The suite's prompts and resources, declared by a manifest (its tool is the content reagent).
reg tests/fixtures/conformance-prompts/cyfr-manifest.json prompts "$built/conformance_content.wasm"
reg tests/fixtures/conformance-error/cyfr-manifest.json error-handling "$built/conformance_error.wasm"
# Progress and logging tools: slow-progress's cyfr:progress and log lines on stderr.
for m in tests/fixtures/slow-progress/manifests/*.json; do
  reg "$m" "slow-$(basename "$m" .json)" "$built/slow_progress.wasm"
done
echo "conformance fixtures: $(ls tests/fixtures/conformance-content/manifests/*.json | wc -l) content tools, $(ls tests/fixtures/conformance-input/manifests/*.json | wc -l) input tools, $(ls tests/fixtures/slow-progress/manifests/*.json | wc -l) progress/logging tools, the prompts and resources + test_error_handling registered"
