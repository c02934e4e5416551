#!/usr/bin/env bash
# Packs cordon_filter.wasm into an OCI image layout in Istio's Wasm image format (the *oci*
# variant: a runtime-config layer and the module as an uncompressed
# application/vnd.module.wasm.content.layer.v1+wasm layer), ready for any OCI registry.
#   envoy/istio/pack.sh [OUT_DIR] [TAG]     (default: target/istio-image, the crate version)
# Then push it, e.g.: oras cp --from-oci-layout OUT_DIR:TAG REGISTRY/cordon:TAG
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
echo "building cordon_filter.wasm (release, wasm32-wasip1)..." >&2
cargo build --quiet -p cordon-filter --release --target wasm32-wasip1
args=(--wasm target/wasm32-wasip1/release/cordon_filter.wasm --out "${1:-target/istio-image}")
if [ -n "${2:-}" ]; then args+=(--tag "$2"); fi
cargo run --quiet -p cordon-e2e --bin cordon-oci -- "${args[@]}"
