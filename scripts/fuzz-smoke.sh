#!/usr/bin/env bash
# CI smoke run of the fuzz targets (fuzz/, cargo-fuzz + libFuzzer): builds every target with
# nightly Rust and runs each for FUZZ_SECONDS (default 30) from its checked-in seed corpus,
# so the targets keep building and the seeds keep passing. New inputs go to a temporary
# directory; the checked-in corpus is never modified. A crash fails the run and leaves its
# input in fuzz/artifacts/<target>/.
#
#   ./scripts/fuzz-smoke.sh                 # every target, 30 s each
#   FUZZ_SECONDS=600 ./scripts/fuzz-smoke.sh path_normalize   # one target, 10 minutes
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    cargo "+$toolchain" install cargo-fuzz --locked
fi

cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

cargo "+$toolchain" fuzz build
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$work/$target" "corpus/$target"
    args=(-max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10)
    if [ -f "dict/$target.dict" ]; then
        args+=(-dict="dict/$target.dict")
    fi
    echo "fuzz-smoke: $target for ${seconds}s"
    cargo "+$toolchain" fuzz run "$target" "$work/$target" "corpus/$target" -- "${args[@]}" \
        >"$work/$target.log" 2>&1 || {
        tail -n 60 "$work/$target.log"
        echo "fuzz-smoke: $target FAILED (input in fuzz/artifacts/$target/)" >&2
        exit 1
    }
    grep -E '^stat::number_of_executed_units|^Done' "$work/$target.log" | tr '\n' ' '
    echo
done
echo "fuzz-smoke: ${#targets[@]} targets passed"
