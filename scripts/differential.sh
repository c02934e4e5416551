#!/usr/bin/env bash
# Long runs of the differential test (envoy/e2e/tests/differential.rs): cordon against
# Envoy's native RBAC filter, configured as istiod translates the same policies, in one
# real Envoy 1.40.
#
#   scripts/differential.sh --cases N [--seed S]     run N cases (seed: random by default)
#   scripts/differential.sh --replay FILE.jsonl      replay disagreement records
#   scripts/differential.sh --minimize FILE.jsonl    shrink them to minimal reproducers
#
# Records land in target/differential/seed-<seed>/ (disagreements.jsonl,
# config-disagreements.jsonl, summary.txt); minimized ones in
# target/differential/minimized.jsonl. Fails (non-zero) when a disagreement was found.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=20000
seed=""
mode=run
file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) cases=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --replay) mode=replay; file=$(realpath "$2"); shift 2 ;;
    --minimize) mode=minimize; file=$(realpath "$2"); shift 2 ;;
    *) echo "usage: $0 --cases N [--seed S] | --replay FILE | --minimize FILE" >&2; exit 2 ;;
  esac
done
if [ -z "$seed" ]; then
  seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fi
./scripts/setup.sh >/dev/null
cargo build -q -p cordon-filter --release --target wasm32-wasip1
export CORDON_WASM="$PWD/target/wasm32-wasip1/release/cordon_filter.wasm"
case "$mode" in
  run) export DIFF_CASES=$cases DIFF_SEED=$seed; echo "differential: $cases cases, seed $seed" ;;
  replay) export DIFF_REPLAY=$file ;;
  minimize) export DIFF_MINIMIZE=$file ;;
esac
exec cargo test -q -p cordon-e2e --test differential -- --nocapture
