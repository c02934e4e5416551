#!/usr/bin/env bash
# `cordon blast-radius` on the generated mesh (lifecycle/src/blast_radius/mesh.rs): wall
# time, CPU time and peak memory for each output format, at 1,000 and 3,000 policies.
#
#   scripts/blast-radius-bench.sh [CORDON_BINARY] [NAMESPACES...]
#
# CORDON_BINARY defaults to target/release/cordon (built here when missing); NAMESPACES
# default to "20 60" (50 policies a namespace: 1,000 and 3,000 policies). Each line:
# policies, format, wall seconds, user CPU seconds, system CPU seconds, max RSS (KiB),
# output bytes. A run that exceeds BENCH_TIMEOUT seconds (default 600), or BENCH_MAX_KIB
# of virtual memory (default 12 GiB: the machine is shared), is reported as failed.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/cordon}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(20 60)
# BENCH_NO_BUILD=1: use the binaries as they are (target/release/examples/mesh_policies too).
if [ -z "${BENCH_NO_BUILD:-}" ]; then
    [ -x "$binary" ] || cargo build --release -p cordon
    cargo build --release -p cordon-lifecycle --example mesh_policies
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-8s %-6s %8s %8s %8s %10s %12s\n' policies format wall_s user_s sys_s max_rss_kib output_bytes
for namespaces in "${sizes[@]}"; do
    policies="$work/mesh-$namespaces.json"
    target/release/examples/mesh_policies "$namespaces" >"$policies"
    count=$((namespaces * 50))
    for format in table json dot; do
        status=0
        (ulimit -v "${BENCH_MAX_KIB:-12582912}"; exec timeout "${BENCH_TIMEOUT:-600}" /usr/bin/time -o "$work/time" -f "%e %U %S %M" \
            "$binary" blast-radius --policy "$policies" --format "$format" >"$work/out") || status=$?
        bytes=$(stat -c %s "$work/out")
        if [ "$status" -ne 0 ]; then
            printf '%-8s %-6s %s\n' "$count" "$format" "failed or timed out (exit $status) after writing $bytes bytes"
        else
            read -r wall user sys rss <"$work/time"
            printf '%-8s %-6s %8s %8s %8s %10s %12s\n' "$count" "$format" "$wall" "$user" "$sys" "$rss" "$bytes"
        fi
        rm -f "$work/out"
    done
done
