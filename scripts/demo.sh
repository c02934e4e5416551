#!/usr/bin/env bash
# The main job on the built-in example: builds the filter, starts Envoy with cordon and the
# shop policies (policies/examples/shop) on loopback, sends requests as several workloads
# (mTLS client certificates with SPIFFE IDs, end-user JWTs), prints who was allowed and
# who was denied and why, then stops Envoy. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: installing what it needs (scripts/setup.sh)"
./scripts/setup.sh
echo "demo: building cordon_filter.wasm (cargo build -p cordon-filter --release --target wasm32-wasip1)"
cargo build --quiet -p cordon-filter --release --target wasm32-wasip1
echo "demo: building the demo driver (envoy/e2e, bin cordon-demo)"
cargo build --quiet -p cordon-e2e --bin cordon-demo
CORDON_WASM="$PWD/target/wasm32-wasip1/release/cordon_filter.wasm" exec cargo run --quiet -p cordon-e2e --bin cordon-demo
