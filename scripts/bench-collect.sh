#!/usr/bin/env bash
# Throughput of `cordon collect` through the gRPC path (Envoy's ALS) on one core: the
# collector (collect-bench serve: the cordon-collect library on a single-threaded runtime)
# pinned to CPU 0, the client (collect-bench send: synthetic mesh traffic encoded as Envoy's
# HTTP access-log entries, one stream per destination workload) pinned to CPU 1. Prints
# entries per wall second and per CPU-second of the collector (from /proc: the figure that
# holds on a shared, noisy machine).
#
# Run it alone: flock /tmp/cordon-bench.lock scripts/bench-collect.sh 50000 4 100
# With PERF=1 the collector runs under `perf record -g` (perf.data in the repository root).
#
# usage: scripts/bench-collect.sh [records] [rounds] [batch]
#   records  distinct synthetic requests generated (default 100000)
#   rounds   times the stream is sent (default 5)
#   batch    entries per gRPC message (default 100; Envoy flushes at 16 KiB, ~30-60 entries)
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-100000}
rounds=${2:-5}
batch=${3:-100}
# Its own target directory (the workspace's release profile, unstripped and with line
# tables so `perf` can attribute samples to functions), so the shared target's lock never
# holds it up.
# BENCH_BIN=<a built collect-bench> skips the build (A/B runs of two builds).
target=${CARGO_TARGET_DIR:-target/bench-collect}
if [ -z "${BENCH_BIN:-}" ]; then
  CARGO_TARGET_DIR=$target CARGO_PROFILE_RELEASE_STRIP=false \
    CARGO_PROFILE_RELEASE_DEBUG=${CARGO_PROFILE_RELEASE_DEBUG:-line-tables-only} \
    cargo build --release -p cordon-collect --example collect-bench >/dev/null
fi
bench=${BENCH_BIN:-$target/release/examples/collect-bench}
state=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$state"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(port); http=$(port)
taskset -c 0 "$bench" serve "$state" "$grpc" "$http" &
server=$!
if [ "${PERF:-0}" = 1 ]; then
  perf record -g -o perf.data -p "$server" 2>/dev/null &
  perf_pid=$!
fi
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
before=$(cpu)
result=$(taskset -c 1 "$bench" send "$grpc" "$http" "$records" "$rounds" "$batch")
after=$(cpu)
if [ -n "${perf_pid:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
entries=$(echo "$result" | awk '{print $2}')
wall=$(echo "$result" | awk '{print $4}')
cpu_seconds=$(echo "$after $before $ticks" | awk '{printf "%.2f", ($1 - $2) / $3}')
echo "collect bench: $entries entries ($records distinct x $rounds rounds, $batch per message)"
echo "  wall:   ${wall} s, $(echo "$entries $wall" | awk '{printf "%.0f", $1 / $2}') entries/s"
echo "  server: ${cpu_seconds} CPU-s on one core, $(echo "$entries $cpu_seconds" | awk '{printf "%.0f", $1 / $2}') entries per CPU-second"
echo "  state:  $(du -sh "$state" | cut -f1) on disk"
