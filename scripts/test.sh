#!/usr/bin/env bash
# Runs every check: formatting, lints, the no_std build, and all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build -p cordon-engine --no-default-features --target wasm32-unknown-unknown
cargo test --workspace
