#!/usr/bin/env python3
"""Resident memory of Envoy with each configuration of the load benchmark, with N workers
(issue 15's memory targets are stated for `--concurrency 2`).

  none    no HTTP filter but the router
  empty   an empty proxy-wasm filter (envoy/empty-filter)
  rbac    Envoy's native RBAC filter with N policies
  cordon  cordon_filter.wasm with N AuthorizationPolicy rules
  native  cordon's native twin (libcordon_native.so), when --native names it

at N = 10, 1,000 and 10,000 rules; the configurations are envoy/load/bench.py's (same
generator, same filters, same bootstrap). Each Envoy is started alone, waited for until
/ready says LIVE, then warmed: requests on fresh connections until every worker has
accepted at least one (the listener's per-worker `downstream_cx_total` counters), so that
each worker's wasm VM or native filter exists; each variant's measured request must be
200 (and, for the policy variants, the same request as `caller-0` 403). After a short
settle the process's VmRSS (and RssAnon) is read and Envoy is stopped. Every repeat runs
all variants in turn, so a busy machine weighs on each alike; the table reports the
median over repeats and the spread (min-max).

    rss.py ENVOY CORDON_WASM EMPTY_WASM OUT_DIR [--native LIBCORDON_NATIVE_SO]
           [--workers 2] [--repeats 3] [--sizes 10,1000,10000] [--only none,cordon-1000,...]
           [--settle 2]

Writes OUT_DIR/rss.json and OUT_DIR/rss.md and prints the table. Wrap it in
`flock /tmp/cordon-bench.lock` on a shared machine.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (Envoy, cordon_config, get, machine, native_filter,  # noqa: E402
                   rbac_filter, wasm_filter)


def memory_kb(pid):
    """VmRSS and RssAnon of a process, in kB (/proc/<pid>/status)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0])
    return values


class WarmEnvoy(Envoy):
    """bench.py's Envoy, with what warming every worker needs."""

    def accepted_per_worker(self):
        """Connections each worker accepted on the listener, from the admin stats."""
        _, text = get(f"http://127.0.0.1:{self.admin}/stats?filter=downstream_cx_total")
        counts = {}
        for worker, count in re.findall(r"^listener\.[^:\s]+\.worker_(\d+)\.downstream_cx_total: (\d+)$",
                                         text, re.M):
            counts[int(worker)] = counts.get(int(worker), 0) + int(count)
        return [counts.get(worker, 0) for worker in range(self.workers)]

    def warm(self, url, headers, expected):
        """Requests on fresh connections until every worker has served one; each must get
        `expected`."""
        for _ in range(400):
            status, _ = get(url, headers)
            if status != expected:
                raise RuntimeError(f"{url}: got {status}, not {expected}")
            accepted = self.accepted_per_worker()
            if all(count > 0 for count in accepted):
                return accepted
        raise RuntimeError(f"not every worker accepted a connection: {self.accepted_per_worker()}")


def variants(args):
    """(name, rules, filters, checks, module_dir) of every configuration measured."""
    found = [("none", 1, [], False, None),
             ("empty", 1, [wasm_filter("empty", args.empty_wasm, "")], False, None)]
    for n in args.sizes:
        config = json.dumps(cordon_config(n))
        found.append((f"rbac-{n}", n, [rbac_filter(n)], True, None))
        found.append((f"cordon-{n}", n, [wasm_filter("cordon", args.cordon_wasm, config)], True, None))
        if args.native is not None:
            found.append((f"native-{n}", n, [native_filter(config)], True, args.native.resolve().parent))
    if args.only:
        wanted = set(args.only.split(","))
        found = [variant for variant in found if variant[0] in wanted]
    return found


def measure(args, name, n, filters, checks, module_dir, work):
    envoy = WarmEnvoy(args.envoy, work / name, filters, module_dir, workers=args.workers)
    try:
        url = f"http://127.0.0.1:{envoy.port}/api/svc-{n - 1}/items"
        accepted = envoy.warm(url, {"x-caller": f"caller-{n - 1}"}, 200)
        if checks:
            status, _ = get(url, {"x-caller": "caller-0"})
            if status != 403:
                raise RuntimeError(f"{name}: the wrong caller got {status}, not 403")
        time.sleep(args.settle)
        memory = memory_kb(envoy.process.pid)
        memory["accepted_per_worker"] = accepted
        return memory
    finally:
        envoy.stop()


def render(results):
    """The table: median VmRSS over the repeats, its spread, and the difference from the
    no-filter and empty-wasm medians."""
    rows = results["variants"]

    def median_mb(name, key="VmRSS"):
        return statistics.median(run[key] for run in rows[name]) / 1024

    none = median_mb("none") if "none" in rows else None
    empty = median_mb("empty") if "empty" in rows else None
    lines = [
        f"VmRSS after start and warm-up, `--concurrency {results['workers']}`, "
        f"{results['repeats']} repeats: median (min-max), MB = VmRSS kB / 1024.",
        "",
        "| variant | rules | RSS MB | spread | RssAnon MB | over no filter | over empty wasm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {"none": "no filter", "empty": "empty proxy-wasm filter", "rbac": "Envoy RBAC",
              "cordon": "cordon (.wasm)", "native": "cordon native"}
    for name, runs in rows.items():
        kind, _, n = name.partition("-")
        values = [run["VmRSS"] / 1024 for run in runs]
        rss = median_mb(name)
        over_none = f"{rss - none:+.1f}" if none is not None else ""
        over_empty = f"{rss - empty:+.1f}" if empty is not None and kind == "cordon" else ""
        lines.append(f"| {labels[kind]} | {int(n):,} | {rss:.1f} | {min(values):.1f}-{max(values):.1f} | "
                     f"{median_mb(name, 'RssAnon'):.1f} | {over_none} | {over_empty} |"
                     if n else
                     f"| {labels[kind]} | - | {rss:.1f} | {min(values):.1f}-{max(values):.1f} | "
                     f"{median_mb(name, 'RssAnon'):.1f} | {over_none} | {over_empty} |")
    lines.append("")
    lines.append("Targets (issue 15, 2 workers): cordon .wasm over the empty wasm filter <= 15 MB at "
                 "1,000 rules, <= 50 MB at 10,000; the native twin <= native RBAC at the same size.")
    for n, limit in ((1000, 15), (10000, 50)):
        if f"cordon-{n}" in rows and empty is not None:
            over = median_mb(f"cordon-{n}") - empty
            lines.append(f"- .wasm {n:,} rules: {over:+.1f} MB over the empty filter: "
                         f"{'met' if over <= limit else 'MISSED'}")
    for name in rows:
        if name.startswith("native-") and f"rbac-{name[7:]}" in rows:
            native, rbac = median_mb(name), median_mb(f"rbac-{name[7:]}")
            lines.append(f"- native {int(name[7:]):,} rules: {native:.1f} MB vs RBAC {rbac:.1f} MB "
                         f"({native - rbac:+.1f}): {'met' if native <= rbac else 'MISSED'}")
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        print(render(json.loads(Path(sys.argv[2]).read_text())))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("envoy")
    parser.add_argument("cordon_wasm")
    parser.add_argument("empty_wasm")
    parser.add_argument("out", type=Path)
    parser.add_argument("--native", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--only", default="")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between the warm-up and reading VmRSS")
    args = parser.parse_args()
    args.sizes = [int(size) for size in args.sizes.split(",")]
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    version = subprocess.run([args.envoy, "--version"], capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()
    print(f"machine: {machine()}\nenvoy: {version}\nload average before: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\nworkers: {args.workers}, repeats: {args.repeats}",
          flush=True)
    todo = variants(args)
    results = {"machine": machine(), "envoy": version, "load_before": load, "workers": args.workers,
               "repeats": args.repeats, "settle_s": args.settle,
               "cordon_wasm": str(args.cordon_wasm), "native": str(args.native) if args.native else None,
               "variants": {name: [] for name, *_ in todo}}
    for repeat in range(1, args.repeats + 1):
        for name, n, filters, checks, module_dir in todo:
            memory = measure(args, name, n, filters, checks, module_dir, args.out / f"r{repeat}")
            results["variants"][name].append(memory)
            print(f"repeat {repeat}: {name:<14} VmRSS {memory['VmRSS'] / 1024:7.1f} MB  "
                  f"RssAnon {memory['RssAnon'] / 1024:7.1f} MB  workers {memory['accepted_per_worker']}",
                  flush=True)
    results["load_after"] = os.getloadavg()
    (args.out / "rss.json").write_text(json.dumps(results, indent=2))
    table = render(results)
    (args.out / "rss.md").write_text(table)
    print("\n" + table)


if __name__ == "__main__":
    main()
