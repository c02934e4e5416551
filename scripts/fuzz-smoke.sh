#!/usr/bin/env bash
# CI smoke run of the fuzz targets (fuzz/, cargo-fuzz + libFuzzer): builds every target with
# nightly Rust and runs each for FUZZ_SECONDS (default 30) from its checked-in seed corpus,
# so the targets keep building and the seeds keep passing. New inputs go to a temporary
# directory; the checked-in corpus is never modified. A crash fails the run and leaves its
# input in fuzz/artifacts/<target>/.
#
# It cannot pass by running less: the targets fuzz/ defines are the files
# fuzz/fuzz_targets/*.rs, `cargo fuzz list` (the [[bin]] entries of fuzz/Cargo.toml) must
# name exactly those, every one of them must run and execute inputs, and the run fails
# when fewer targets ran than are defined. Naming targets runs only those, and is refused
# unless FUZZ_PARTIAL=1 says a partial run is meant.
#
#   ./scripts/fuzz-smoke.sh                 # every target, 30 s each
#   FUZZ_PARTIAL=1 FUZZ_SECONDS=600 ./scripts/fuzz-smoke.sh path_normalize   # one, 10 minutes
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
fail() {
    echo "fuzz-smoke: $*" >&2
    exit 1
}

# What fuzz/ defines: one source file per target.
defined=()
for source in fuzz_targets/*.rs; do
    [ -e "$source" ] || continue
    name="${source#fuzz_targets/}"
    defined+=("${name%.rs}")
done
[ ${#defined[@]} -gt 0 ] || fail "no target in fuzz/fuzz_targets/"
# What cargo-fuzz builds and runs; a failing `cargo fuzz list` stops the script here.
listed_text="$(cargo "+$toolchain" fuzz list)"
mapfile -t listed <<<"$listed_text"
defined_sorted="$(printf '%s\n' "${defined[@]}" | sort)"
listed_sorted="$(printf '%s\n' "${listed[@]}" | sed '/^$/d' | sort)"
if [ "$defined_sorted" != "$listed_sorted" ]; then
    fail "fuzz/fuzz_targets/*.rs and \`cargo fuzz list\` (fuzz/Cargo.toml's [[bin]] entries) differ:
$(diff <(echo "$defined_sorted") <(echo "$listed_sorted") || true)"
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${defined[@]}")
elif [ "${FUZZ_PARTIAL:-0}" != 1 ]; then
    fail "${#targets[@]} of ${#defined[@]} targets named: set FUZZ_PARTIAL=1 for a partial run"
fi
for target in "${targets[@]}"; do
    grep -qxF "$target" <<<"$defined_sorted" || fail "no target \`$target\` in fuzz/fuzz_targets/"
done

cargo "+$toolchain" fuzz build
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ran=0
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
    grep -E '^stat::number_of_executed_units|^Done' "$work/$target.log" | tr '\n' ' ' || true
    echo
    # A target that exits 0 without fuzzing (a stub main, a corpus it never reads) ran no
    # input: that is a failure, not a pass.
    units="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$work/$target.log" | tail -n 1)"
    if [ -z "$units" ] || [ "$units" -eq 0 ]; then
        tail -n 20 "$work/$target.log"
        fail "$target executed no input (no stat::number_of_executed_units in its log)"
    fi
    ran=$((ran + 1))
done
if [ "$ran" -lt "${#defined[@]}" ]; then
    if [ "${FUZZ_PARTIAL:-0}" = 1 ]; then
        echo "fuzz-smoke: $ran of ${#defined[@]} targets passed (partial run, FUZZ_PARTIAL=1)"
        exit 0
    fi
    fail "only $ran of ${#defined[@]} targets ran"
fi
echo "fuzz-smoke: all $ran of ${#defined[@]} targets passed"
