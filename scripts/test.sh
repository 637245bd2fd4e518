#!/usr/bin/env bash
# Runs the full test suite from a fresh checkout: formatting, lints, and
# every test (unit, property, HTTP contract, real binary).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked
