#!/usr/bin/env bash
# The habits CI holds the tree to: rustfmt's style, no clippy warning on any target, and
# docs that build with no broken link. Run by .ci/run; run it yourself before a push.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "lint: cargo fmt --check"
cargo fmt --all -- --check
echo "lint: cargo clippy (workspace, all targets)"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "lint: cargo doc (workspace, private items too, no deps)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --workspace --document-private-items
echo "lint: ok"
