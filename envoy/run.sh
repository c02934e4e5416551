#!/usr/bin/env bash
# Smoke run: builds the filter, makes certificates, and starts Envoy in the foreground
# with the shop example policies (as the billing-service workload in `finance`).
#   envoy/run.sh            then, in another shell, see README.md "Try it in Envoy"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${CORDON_WORK:-/tmp/cordon-envoy}
mkdir -p "$work"
"$root/envoy/gen-certs.sh" "$work/certs" >/dev/null
python3 "$root/envoy/jwt.py" keygen "$work/certs"
cargo build --quiet -p cordon-filter --release --target wasm32-wasip1 --manifest-path "$root/Cargo.toml"
envoy=${ENVOY_BIN:-$root/.tools/envoy/envoy/_bin/envoy}
plugin=$(python3 - "$root" <<'PY'
import json, sys
policies = json.load(open(sys.argv[1] + "/policies/examples/shop/policies.json"))
config = {"policies": policies, "workload": {"namespace": "finance", "labels": {"app": "billing-service"}}}
print(json.dumps(json.dumps(config)))
PY
)
sed -e "s|__ADMIN_PORT__|${ADMIN_PORT:-9901}|; s|__MTLS_PORT__|${MTLS_PORT:-10443}|; s|__PLAIN_PORT__|${PLAIN_PORT:-10080}|" \
    -e "s|__CERTS__|$work/certs|g; s|__ACCESS_LOG__|$work/access.log|; s|__WASM__|$root/target/wasm32-wasip1/release/cordon_filter.wasm|" \
    "$root/envoy/envoy.yaml.tmpl" > "$work/envoy.yaml"
python3 - "$work/envoy.yaml" "$plugin" <<'PY'
import sys
path, value = sys.argv[1], sys.argv[2]
text = open(path).read().replace("__PLUGIN_CONFIG__", value)
open(path, "w").write(text)
PY
exec "$envoy" -c "$work/envoy.yaml" --concurrency 1 --log-level "${LOG_LEVEL:-info}"
