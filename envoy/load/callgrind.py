#!/usr/bin/env python3
"""Instructions per request of Envoy itself, counted by valgrind's callgrind: the A/B
measure of the native twin's cost that a busy machine cannot disturb (load moves req/s and
even CPU time per request; it does not move instruction counts).

    callgrind.py ENVOY OUT_DIR [--native LIBCORDON_NATIVE_SO | --wasm CORDON_FILTER_WASM |
                                --empty-wasm EMPTY_WASM] [--rules 10] [--requests 4000]

Without a module: Envoy with no HTTP filter but the router. --native: the native twin (or
whatever build of libcordon_native.so is given, e.g. one with `--features bench-empty`)
with bench.py's configuration of N rules; --wasm: cordon's .wasm on V8, the same
configuration; --empty-wasm: the empty proxy-wasm filter. Envoy runs with one worker under
`valgrind --tool=callgrind --instr-atstart=no`; after 200 warm-up requests the script
switches instrumentation on (`callgrind_control -i on`), sends the measured request (the
one bench.py measures: only the last rule allows it) REQUESTS times, one at a time on one
keep-alive connection, switches it off and stops Envoy. It prints the instructions
counted (user space: Envoy, the module, libc; not the kernel) per request. The profile is
OUT_DIR/callgrind.out.*: `callgrind_annotate --inclusive=yes OUT_DIR/callgrind.out.*`
(build the module with `CARGO_PROFILE_RELEASE_DEBUG=true CARGO_PROFILE_RELEASE_STRIP=false`
for names and lines).
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("envoy")
    parser.add_argument("out", type=Path)
    parser.add_argument("--native", type=Path, default=None)
    parser.add_argument("--wasm", type=Path, default=None,
                        help="cordon_filter.wasm (on V8) instead of the native twin")
    parser.add_argument("--empty-wasm", type=Path, default=None,
                        help="the empty proxy-wasm filter (on V8): no configuration, no check")
    parser.add_argument("--rules", type=int, default=10)
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    n = args.rules
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    if args.native is not None:
        filters = [bench.native_filter(json.dumps(bench.cordon_config(n)))]
    elif args.wasm is not None:
        filters = [bench.wasm_filter("cordon", args.wasm.resolve(), json.dumps(bench.cordon_config(n)))]
    elif args.empty_wasm is not None:
        filters = [bench.wasm_filter("empty", args.empty_wasm.resolve(), "")]
        n = 1
    else:
        filters = []
    admin, port = bench.free_port(), bench.free_port()
    config = args.out / "envoy.json"
    config.write_text(json.dumps(bench.bootstrap(admin, port, filters)))
    env = dict(os.environ)
    if args.native is not None:
        env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(args.native.resolve().parent)
    with open(args.out / "valgrind.log", "w") as log:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             # V8 writes and rewrites its generated code.
             "--smc-check=all-non-file",
             f"--callgrind-out-file={args.out}/callgrind.out.%p",
             args.envoy, "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
             "--log-level", "warn", "--log-path", str(args.out / "envoy.log")],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 1800
        while True:
            if proc.poll() is not None:
                sys.exit(f"Envoy exited: {(args.out / 'valgrind.log').read_text()[-2000:]}")
            try:
                status, _ = bench.get(f"http://127.0.0.1:{admin}/ready", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("Envoy did not become ready")
            time.sleep(1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"x-caller": f"caller-{n - 1}"}
        path = f"/api/svc-{n - 1}/items"

        def request():
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                sys.exit(f"the measured request got {response.status}, not 200")

        for _ in range(200):
            request()
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        for _ in range(args.requests):
            request()
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
        connection.close()
        proc.terminate()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    total = 0
    for dump in args.out.glob("callgrind.out.*"):
        match = re.search(r"^totals:\s+(\d+)", dump.read_text(errors="replace"), re.M)
        if match:
            total += int(match.group(1))
    variant = ("no filter" if not filters else
               f"{args.native or args.wasm or args.empty_wasm} ({n} rules)")
    print(f"{variant}: {total / args.requests:,.0f} instructions per request "
          f"({args.requests} requests)")


if __name__ == "__main__":
    main()
