#!/usr/bin/env bash
# Installs the toolchain pieces cordon's build and tests need. Idempotent.
set -euo pipefail
rustup target add wasm32-unknown-unknown wasm32-wasip1 >/dev/null
rustup component add clippy rustfmt >/dev/null 2>&1 || true
