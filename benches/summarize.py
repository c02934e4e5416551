#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench -p cordon-benches` run as Markdown tables.

Reads criterion's `target/criterion/*/*/new/{benchmark,estimates}.json` (the directory can
be given as the first argument). Used to write BENCHMARKS.md.
"""

import json
import pathlib
import sys

SIZES = ["10", "100", "1000", "10000"]
KINDS = ["matching", "non-matching", "denied"]


def load(root):
    medians = {}
    for bench in root.glob("*/*/new/benchmark.json"):
        info = json.loads(bench.read_text())
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        medians[info["full_id"]] = estimates["median"]["point_estimate"]
    return medians


def fmt(ns):
    if ns is None:
        return "–"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.2f} µs"
    return f"{ns / 1_000_000:.2f} ms"


def ratio(other, cordon):
    if other is None or cordon is None:
        return "–"
    value = other / cordon
    return f"{value:,.0f}×" if value >= 10 else f"{value:.1f}×"


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    medians = load(root)
    for size in SIZES:
        print(f"\n#### {int(size):,} rules\n")
        print("| request | cordon | reference | cedar | reference ÷ cordon | cedar ÷ cordon |")
        print("|---|---:|---:|---:|---:|---:|")
        for kind in KINDS:
            get = lambda engine: medians.get(f"evaluate/{size}/{engine}/{kind}")
            cordon, reference, cedar = get("cordon"), get("reference"), get("cedar")
            print(
                f"| {kind} | {fmt(cordon)} | {fmt(reference)} | {fmt(cedar)} "
                f"| {ratio(reference, cordon)} | {ratio(cedar, cordon)} |"
            )
    print("\n#### Compile\n")
    print("| rules | cordon `PolicySet::compile` | cedar `PolicySet::from_str` | cedar ÷ cordon |")
    print("|---:|---:|---:|---:|")
    for size in SIZES:
        cordon = medians.get(f"compile/{size}/cordon")
        cedar = medians.get(f"compile/{size}/cedar")
        print(f"| {int(size):,} | {fmt(cordon)} | {fmt(cedar)} | {ratio(cedar, cordon)} |")


if __name__ == "__main__":
    main()
