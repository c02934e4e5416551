#!/usr/bin/env bash
# Runs every check: formatting, lints, the no_std build, and all tests (unit, corpus,
# the Wasmtime host, the CLI and lifecycle, and end to end against a real Envoy). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "test: cargo fmt --check"
cargo fmt --all -- --check
echo "test: cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
# The shipped glue (filter/src/proxy.rs) is compiled only for wasm32: lint that build too.
echo "test: cargo clippy -D warnings on the filter as it ships (wasm32-wasip1)"
cargo clippy -p cordon-filter --target wasm32-wasip1 -- -D warnings
echo "test: the engine builds no_std (wasm32-unknown-unknown)"
cargo build -p cordon-engine --no-default-features --target wasm32-unknown-unknown
echo "test: build cordon_filter.wasm (release, wasm32-wasip1) for the host and Envoy tests"
cargo build -p cordon-filter --release --target wasm32-wasip1
# The end-to-end suite (envoy/e2e) runs this module in Envoy rather than building its own.
export CORDON_WASM="$PWD/target/wasm32-wasip1/release/cordon_filter.wasm"
echo "test: build libcordon_native.so (release), the native twin the Envoy tests also run"
cargo build -p cordon-native --release
export CORDON_NATIVE="$PWD/target/release/libcordon_native.so"
echo "test: cargo test --workspace (the end-to-end suite starts Envoy from .tools/envoy)"
cargo test --workspace
./scripts/fuzz-smoke.sh  # ~30 s per fuzz target on nightly; installs cargo-fuzz if missing
