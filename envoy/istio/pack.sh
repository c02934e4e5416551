#!/usr/bin/env bash
# Packs the cordon_filter.wasm that `cordon` carries into an OCI image layout in Istio's
# Wasm image format (`cordon pack`: the *oci* variant, a runtime-config layer and the
# module as an uncompressed application/vnd.module.wasm.content.layer.v1+wasm layer).
#   envoy/istio/pack.sh [OUT_DIR] [TAG]     (default: target/istio-image, the crate version)
# It prints how to push the layout (oras, skopeo, crane) and the manifest digest to pin.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
args=(pack --out "${1:-target/istio-image}")
if [ -n "${2:-}" ]; then args+=(--tag "$2"); fi
cargo run --quiet -p cordon -- "${args[@]}"
