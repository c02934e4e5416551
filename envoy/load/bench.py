#!/usr/bin/env python3
"""Load benchmark: Envoy with one worker on loopback, wrk as the client, side by side:

  none    no HTTP filter but the router
  empty   an empty proxy-wasm filter (envoy/empty-filter): the floor any wasm filter pays
  rbac    Envoy's native RBAC filter with N policies
  cordon  cordon_filter.wasm with N AuthorizationPolicy rules
  native  cordon's native twin (libcordon_native.so, an Envoy dynamic module) with the same
          N rules, when --native names the module

at N = 10, 1,000 and 10,000 rules. One generator (rules()) writes both policy sets: rule i
allows GET /api/svc-i/* for a caller whose `x-caller` header is `caller-i` (a header
identity, because the load is plain HTTP: no client certificates). The measured request is
GET /api/svc-{N-1}/items with x-caller: caller-{N-1}: only the last rule allows it, so a
linear scan pays in full. Before each measurement the script checks that the variant
really decides: the measured request is 200 and the same request as caller-0 is 403.

    bench.py ENVOY CORDON_WASM EMPTY_WASM OUT_DIR [--sizes 10,1000,10000] [--duration 8]
             [--runs 5] [--connections 16] [--native LIBCORDON_NATIVE_SO]

Each Envoy's resident memory (VmRSS) is read once it is ready and checked, before any load.

CPU cost: around every round the script reads the Envoy process's own CPU time (utime +
stime of /proc/<pid>/stat, every thread) and divides what the round used by the requests
wrk completed: microseconds of Envoy CPU per request. On a shared machine the req/s of a
round moves with whatever else runs (wrk and Envoy wait for a core), while the CPU an
Envoy spends per request barely does; the ratio of two variants' CPU per request
(baseline / variant) is their throughput ratio on one dedicated core, and is the figure to
read when the machine is busy. --native-empty adds an empty dynamic module (the native
twin built with the `bench-empty` feature: every request continues untouched), the floor
any dynamic module pays.

Writes OUT_DIR/results.json and OUT_DIR/table.md, and prints the table.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


# Envoy and wrk run at a higher scheduling priority when we may (root), so that whatever
# else the machine is doing disturbs the measurement less. CORDON_BENCH_NICE=0 turns it off.
PRIORITY = (["nice", "-n", "-10"]
            if os.geteuid() == 0 and os.environ.get("CORDON_BENCH_NICE", "1") != "0" else [])


def rules(n):
    """The one generator: (index, path prefix, caller) of each rule, in order."""
    width = len(str(n - 1))
    return [(f"{i:0{width}d}", f"/api/svc-{i}/", f"caller-{i}") for i in range(n)]


def cordon_config(n):
    """An AuthorizationPolicy with n rules, as cordon's plugin configuration."""
    policy = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "action": "ALLOW",
            "rules": [
                {
                    "to": [{"operation": {"methods": ["GET"], "paths": [prefix + "*"]}}],
                    "when": [{"key": "request.headers[x-caller]", "values": [caller]}],
                }
                for _, prefix, caller in rules(n)
            ],
        },
    }
    return {
        "policies": [policy],
        "workload": {"namespace": "bench", "labels": {"app": "bench"}},
    }


def rbac_filter(n):
    """Envoy's RBAC filter with the same rules, one policy per rule as Istio generates
    them. Policies are matched in name order; names are zero-padded so the last rule is
    the last one tried."""
    policies = {}
    for index, prefix, caller in rules(n):
        policies[f"rule-{index}"] = {
            "permissions": [{"and_rules": {"rules": [
                {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
                {"url_path": {"path": {"prefix": prefix}}},
            ]}}],
            "principals": [{"header": {"name": "x-caller", "string_match": {"exact": caller}}}],
        }
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": policies},
        },
    }


def wasm_filter(name, wasm, configuration):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "vm_id": name,
                    "code": {"local": {"filename": str(wasm)}},
                },
                "failure_policy": "FAIL_CLOSED",
            },
        },
    }


def native_filter(configuration):
    """cordon's native twin: the dynamic module Envoy finds as libcordon_native.so under
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH."""
    return {
        "name": "envoy.filters.http.dynamic_modules",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"name": "cordon_native"},
            "filter_name": "cordon",
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": configuration,
            },
        },
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User plus system CPU time of a process, every thread, in seconds (/proc/<pid>/stat
    fields 14 and 15; the command name in field 2 may hold spaces, so split after it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid):
    """Resident memory of a process, in MB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bootstrap(admin_port, port, filters):
    """Envoy's bootstrap as JSON (which Envoy reads as YAML): one plain HTTP listener on
    loopback, a direct_response route, the filters under test, then the router."""
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [{
            "name": "bench",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "bench",
                    "route_config": {"virtual_hosts": [{
                        "name": "bench",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"},
                                    "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}],
                    }]},
                    "http_filters": filters + [router],
                },
            }]}],
        }]},
    }


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url, headers=None, timeout=5):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Envoy:
    """One Envoy with `workers` worker threads (the throughput runs use one), ready."""

    def __init__(self, envoy_bin, work, filters, module_dir=None, workers=1):
        self.admin = free_port()
        self.port = free_port()
        work.mkdir(parents=True, exist_ok=True)
        config = work / "envoy.json"
        config.write_text(json.dumps(bootstrap(self.admin, self.port, filters)))
        self.log = work / "envoy.log"
        env = dict(os.environ)
        if module_dir is not None:
            env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(module_dir)
        self.workers = workers
        self.process = subprocess.Popen(
            PRIORITY + [envoy_bin, "-c", str(config), "--concurrency", str(workers),
                        "--disable-hot-restart", "--log-level", "warn", "--log-path", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        # 10,000 rules under a loaded machine can take minutes to configure.
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Envoy exited: {self.log.read_text()[-3000:]}")
            try:
                status, body = get(f"http://127.0.0.1:{self.admin}/ready", timeout=2)
                if status == 200 and body.strip() == "LIVE":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("Envoy did not become ready")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def parse_duration_ms(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url, caller, duration, connections):
    output = subprocess.run(
        PRIORITY + ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
         "-H", f"x-caller: {caller}", url],
        check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    latency = {p: parse_duration_ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", output, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*", output)
    return {
        "rps": rps,
        "requests": requests,
        "p50_ms": latency.get("50", float("nan")),
        "p99_ms": latency.get("99", float("nan")),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


class Variant:
    """One Envoy under test, started before any measurement and kept running: the
    variants are measured in interleaved rounds, so that whatever else the machine does
    falls on all of them alike."""

    def __init__(self, name, n, filters, check, module_dir=None):
        self.name, self.n, self.filters, self.check = name, n, filters, check
        self.module_dir = module_dir
        self.rss_mb = float("nan")
        self.caller = f"caller-{n - 1}"
        self.path = f"/api/svc-{n - 1}/items"
        self.envoy = None
        self.runs = []

    def start(self, envoy_bin, work):
        self.envoy = Envoy(envoy_bin, work / self.name, self.filters, self.module_dir)
        url = self.url()
        status, _ = get(url, {"x-caller": self.caller})
        if status != 200:
            raise RuntimeError(f"{self.name}: the measured request got {status}, not 200")
        if self.check:
            status, _ = get(url, {"x-caller": "caller-0"})
            if status != 403:
                raise RuntimeError(f"{self.name}: the wrong caller got {status}, not 403")
        self.rss_mb = rss_mb(self.envoy.process.pid)

    def url(self):
        return f"http://127.0.0.1:{self.envoy.port}{self.path}"

    def run(self, duration, connections):
        pid = self.envoy.process.pid
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        result = wrk(self.url(), self.caller, duration, connections)
        cpu, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
        if result["non_2xx"] or result["socket_errors"]:
            raise RuntimeError(f"{self.name}: errors under load: {result}")
        result["cpu_us"] = cpu * 1e6 / max(result["requests"], 1)
        result["cpu_share"] = cpu / wall
        return result

    def result(self):
        """The median run by requests/s, with every run's requests/s and CPU per request
        (and their median, which need not come from the same run)."""
        best = sorted(self.runs, key=lambda run: run["rps"])[len(self.runs) // 2]
        cpu = [run["cpu_us"] for run in self.runs]
        return dict(best, runs=[run["rps"] for run in self.runs], cpu_runs=cpu,
                    cpu_us_median=statistics.median(cpu), rss_mb=self.rss_mb)


def measure_all(variants, envoy_bin, work, args):
    try:
        for variant in variants:
            print(f"  starting {variant.name}", flush=True)
            variant.start(envoy_bin, work)
        for variant in variants:
            variant.run(2, args.connections)  # warm-up
        for round_number in range(1, args.runs + 1):
            print(f"round {round_number}/{args.runs}:", flush=True)
            for variant in variants:
                run = variant.run(args.duration, args.connections)
                variant.runs.append(run)
                print(f"  {variant.name:<14} {run['rps']:>10,.0f} req/s  p50 {run['p50_ms']:.3f} ms  "
                      f"p99 {run['p99_ms']:.3f} ms  Envoy CPU {run['cpu_us']:.2f} us/req "
                      f"({run['cpu_share']:.0%} of a core)", flush=True)
    finally:
        for variant in variants:
            if variant.envoy is not None:
                variant.envoy.stop()
    return {variant.name: variant.result() for variant in variants}


def machine():
    model, cores = "?", os.cpu_count()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {cores} cores, {platform.system()} {platform.release()}"


def rerender(path):
    """Prints the table again from a results.json."""
    results = json.loads(Path(path).read_text())
    sizes = sorted({int(match.group(1)) for name in results["variants"]
                    if (match := re.search(r"-(\d+)$", name))})
    print(render(results, sizes))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        rerender(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("envoy")
    parser.add_argument("cordon_wasm")
    parser.add_argument("empty_wasm")
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--native", type=Path, default=None,
                        help="libcordon_native.so: adds the native twin at every size")
    parser.add_argument("--native-empty", type=Path, default=None,
                        help="libcordon_native.so built with --features bench-empty: adds an "
                             "empty dynamic module (the ABI's floor)")
    parser.add_argument("--only", default=None,
                        help="comma-separated variant names to run (e.g. none,native-10); "
                             "default: all")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    version = subprocess.run([args.envoy, "--version"], capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()
    print(f"machine: {machine()}\nenvoy: {version}\n"
          f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          f"{' (Envoy and wrk at nice -10)' if PRIORITY else ''}\n"
          f"load: wrk -t1 -c{args.connections} --latency, {args.runs} interleaved rounds of {args.duration}s "
          f"per variant after a 2s warm-up; the median round is reported\n",
          flush=True)

    results = {"machine": machine(), "envoy": version, "load_before": load, "nice": bool(PRIORITY),
               "connections": args.connections, "duration": args.duration, "runs": args.runs}
    variants = [Variant("none", 1, [], check=False),
                Variant("empty", 1, [wasm_filter("empty", args.empty_wasm, "")], check=False)]
    if args.native_empty is not None:
        variants.append(Variant("native-empty", 1, [native_filter(json.dumps(cordon_config(1)))],
                                check=False, module_dir=args.native_empty.resolve().parent))
    for n in sizes:
        variants.append(Variant(f"rbac-{n}", n, [rbac_filter(n)], check=True))
        variants.append(Variant(f"cordon-{n}", n, [wasm_filter(
            "cordon", args.cordon_wasm, json.dumps(cordon_config(n)))], check=True))
        if args.native is not None:
            variants.append(Variant(f"native-{n}", n, [native_filter(json.dumps(cordon_config(n)))],
                                    check=True, module_dir=args.native.resolve().parent))
    if args.only is not None:
        wanted = set(args.only.split(","))
        unknown = wanted - {variant.name for variant in variants}
        if unknown:
            sys.exit(f"--only: no variant named {', '.join(sorted(unknown))}")
        variants = [variant for variant in variants if variant.name in wanted]
    results["variants"] = measure_all(variants, args.envoy, args.out, args)
    results["load_after"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    table = render(results, sorted({variant.n for variant in variants if variant.name[-1].isdigit()}))
    (args.out / "table.md").write_text(table)
    print("\n" + table)


def render(results, sizes):
    variants = results["variants"]
    none, empty = variants.get("none"), variants.get("empty")

    def paired(result, baseline, key="runs"):
        """The median over rounds of result/baseline within the same round: both were
        measured seconds apart, so whatever else the machine did weighs on both."""
        return statistics.median(a / b for a, b in zip(result[key], baseline[key]))

    def speed(result, baseline, percent=False):
        """Throughput ratio result/baseline: req/s of the medians (paired) | the inverse
        ratio of CPU per request (paired): the ratio on one dedicated core."""
        if baseline is None or result is baseline:
            return ""
        rps = result["rps"] / baseline["rps"]
        text = f"{rps:.0%} ({paired(result, baseline):.0%})" if percent \
            else f"{rps:.2f}x ({paired(result, baseline):.2f}x)"
        if "cpu_runs" in result and "cpu_runs" in baseline:
            cpu = baseline["cpu_us_median"] / result["cpu_us_median"]
            cpu_paired = 1 / paired(result, baseline, "cpu_runs")
            text += (f" \\| cpu {cpu:.0%} ({cpu_paired:.0%})" if percent
                     else f" \\| cpu {cpu:.2f}x ({cpu_paired:.2f}x)")
        return text

    def row(variant, n, result, vs_rbac=None):
        spread = f"{min(result['runs']):,.0f}-{max(result['runs']):,.0f}"
        cpu = (f"{result['cpu_us_median']:.2f} ({min(result['cpu_runs']):.2f}-{max(result['cpu_runs']):.2f})"
               if "cpu_runs" in result else "?")
        rss = f"{result['rss_mb']:.0f}" if "rss_mb" in result else "?"
        return (f"| {variant} | {n} | {result['rps']:,.0f} | {spread} | {result['p50_ms']:.3f} | "
                f"{result['p99_ms']:.3f} | {cpu} | {speed(result, none)} | "
                f"{speed(result, empty, percent=True)} | {speed(result, vs_rbac) if vs_rbac else ''} | {rss} |")

    lines = [
        "req/s and latencies: the median round; spread: the slowest and fastest rounds. "
        "Envoy CPU: microseconds of Envoy CPU time (user + system, all threads) per request, "
        "median round (slowest-fastest). Ratios: throughput of the variant over the baseline, "
        "from the median req/s (in brackets: the median of the per-round ratios), then `cpu`: "
        "the baseline's CPU per request over the variant's (in brackets: per round), which is "
        "the throughput ratio on one dedicated core and what to read on a busy machine.",
        "",
        "| variant | rules | req/s | spread | p50 ms | p99 ms | Envoy CPU us/req | vs no filter | vs empty wasm filter | vs RBAC | RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if none:
        lines.append(row("no filter", "-", none))
    if empty:
        lines.append(row("empty proxy-wasm filter", "-", empty))
    if "native-empty" in variants:
        lines.append(row("empty dynamic module", "-", variants["native-empty"]))
    for n in sizes:
        rbac = variants.get(f"rbac-{n}")
        if rbac:
            lines.append(row("Envoy RBAC", f"{n:,}", rbac))
        if f"cordon-{n}" in variants:
            lines.append(row("cordon", f"{n:,}", variants[f"cordon-{n}"], vs_rbac=rbac))
        if f"native-{n}" in variants:
            lines.append(row("cordon native", f"{n:,}", variants[f"native-{n}"], vs_rbac=rbac))
    lines.append("")

    def verdict(ratio, target):
        return "met" if ratio >= target else "MISSED"

    def cpu_ratio(result, baseline):
        return baseline["cpu_us_median"] / result["cpu_us_median"]

    if empty and any(f"cordon-{n}" in variants for n in sizes):
        lines.append("Targets: cordon (.wasm) >= 0.95x the empty wasm filter at every size (issue 15; "
                     "90% before); >= 5x RBAC at 1,000 rules. Judged on CPU per request, with req/s beside.")
        for n in sizes:
            cordon = variants.get(f"cordon-{n}")
            if cordon is None:
                continue
            share = cpu_ratio(cordon, empty)
            line = (f"- {n:,} rules: cordon at {share:.0%} of the empty filter on CPU per request "
                    f"(req/s {cordon['rps'] / empty['rps']:.0%}, paired {paired(cordon, empty):.0%}): "
                    f"{verdict(share, 0.95)}")
            rbac = variants.get(f"rbac-{n}")
            if n == 1000 and rbac:
                speedup = cpu_ratio(cordon, rbac)
                line += (f"; {speedup:.1f}x RBAC on CPU (req/s {cordon['rps'] / rbac['rps']:.1f}x): "
                         f"{verdict(speedup, 5)}")
            lines.append(line)
    if none and any(f"native-{n}" in variants for n in sizes):
        lines.append("Native twin targets: >= 1.0x RBAC at 10 rules; >= 0.95x no filter at every size. "
                     "Judged on CPU per request, with req/s beside.")
        floor = variants.get("native-empty")
        for n in sizes:
            native = variants.get(f"native-{n}")
            if native is None:
                continue
            vs_none = cpu_ratio(native, none)
            line = (f"- {n:,} rules: native at {vs_none:.2f}x no filter on CPU per request "
                    f"(req/s {native['rps'] / none['rps']:.2f}x, paired {paired(native, none):.2f}x): "
                    f"{verdict(vs_none, 0.95)}")
            rbac = variants.get(f"rbac-{n}")
            if rbac:
                vs_rbac = cpu_ratio(native, rbac)
                line += (f"; {vs_rbac:.2f}x RBAC on CPU (req/s {native['rps'] / rbac['rps']:.2f}x, "
                         f"paired {paired(native, rbac):.2f}x)")
                if n == 10:
                    line += f": {verdict(vs_rbac, 1.0)}"
            if floor:
                line += (f"; CPU per request over no filter: +{native['cpu_us_median'] - none['cpu_us_median']:.2f} us "
                         f"(the empty dynamic module: +{floor['cpu_us_median'] - none['cpu_us_median']:.2f} us)")
            lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
