#!/usr/bin/env bash
# Smoke run: builds the filter, makes certificates, and starts Envoy in the foreground
# with the shop example policies (as the billing-service workload in `finance`).
#   envoy/run.sh            then, in another shell, see README.md "The filter in Envoy"
# To change the policies while it runs: edit $CORDON_WORK/plugin.json, then run
#   envoy/render.py with the same arguments (it replaces the listeners atomically).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${CORDON_WORK:-/tmp/cordon-envoy}
mkdir -p "$work"
"$root/envoy/gen-certs.sh" "$work/certs" >/dev/null
python3 "$root/envoy/jwt.py" keygen "$work/certs"
cargo build --quiet -p cordon-filter --release --target wasm32-wasip1 --manifest-path "$root/Cargo.toml"
envoy=${ENVOY_BIN:-$root/.tools/envoy/envoy/_bin/envoy}
python3 - "$root" "$work/plugin.json" <<'PY'
import json, sys
policies = json.load(open(sys.argv[1] + "/policies/examples/shop/policies.json"))
config = {"policies": policies, "workload": {"namespace": "finance", "labels": {"app": "billing-service"}}}
json.dump(config, open(sys.argv[2], "w"))
PY
python3 "$root/envoy/render.py" "$work" "${ADMIN_PORT:-9901}" "${MTLS_PORT:-10443}" "${PLAIN_PORT:-10080}" \
  "$work/certs" "$root/target/wasm32-wasip1/release/cordon_filter.wasm" "$work/plugin.json"
exec "$envoy" -c "$work/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level "${LOG_LEVEL:-info}"
