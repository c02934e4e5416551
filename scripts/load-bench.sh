#!/usr/bin/env bash
# Load benchmark: Envoy with one worker on loopback under wrk, side by side: no filter, an
# empty proxy-wasm filter, Envoy's native RBAC, cordon (.wasm) and cordon's native twin (a
# dynamic module) and an empty dynamic module, at 10, 1,000 and 10,000 rules, with each
# Envoy's CPU time per request and RSS
# (envoy/load/bench.py; the results go to envoy/LOAD-BENCHMARK.md by hand). About 6
# minutes on a 2-core machine. Installs what it needs (Envoy, wrk). Not part of CI.
#   scripts/load-bench.sh [bench.py options, e.g. --sizes 10,1000 --duration 5 --runs 1]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "load-bench: installing what it needs (scripts/setup.sh, wrk)"
./scripts/setup.sh
if ! command -v wrk >/dev/null; then
  echo "load-bench: apt-get install wrk"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
echo "load-bench: building cordon_filter.wasm and the empty filter (release, wasm32-wasip1)"
cargo build --quiet -p cordon-filter --release --target wasm32-wasip1
cargo build --quiet --release --target wasm32-wasip1 \
  --manifest-path envoy/empty-filter/Cargo.toml --target-dir target/empty-filter
echo "load-bench: building libcordon_native.so (release), the native twin, and an empty dynamic module"
cargo build --quiet -p cordon-native --release
cargo build --quiet -p cordon-native --release --features bench-empty --target-dir target/native-empty
envoy=${ENVOY_BIN:-$PWD/.tools/envoy/envoy/_bin/envoy}
# One benchmark at a time on a shared machine: Envoy load runs and criterion runs spoil
# each other (the same lock file as every other benchmark here).
lock=()
if command -v flock >/dev/null; then
  lock=(flock /tmp/cordon-bench.lock)
fi
echo "load-bench: running (results in target/load-bench/)"
exec "${lock[@]}" python3 envoy/load/bench.py "$envoy" \
  "$PWD/target/wasm32-wasip1/release/cordon_filter.wasm" \
  "$PWD/target/empty-filter/wasm32-wasip1/release/cordon_empty_filter.wasm" \
  "$PWD/target/load-bench" --native "$PWD/target/release/libcordon_native.so" \
  --native-empty "$PWD/target/native-empty/release/libcordon_native.so" "$@"
