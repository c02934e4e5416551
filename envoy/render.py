#!/usr/bin/env python3
"""Fills in envoy.yaml.tmpl and listeners.yaml.tmpl (the end-to-end suite does the same in Rust).

    render.py WORK ADMIN_PORT MTLS_PORT PLAIN_PORT CERTS MODULE PLUGIN_CONFIG_JSON_FILE

MODULE is cordon_filter.wasm (the wasm twin) or libcordon_native.so (the native twin: run
Envoy with ENVOY_DYNAMIC_MODULES_SEARCH_PATH set to its directory). Writes WORK/envoy.yaml (the bootstrap) and WORK/lds/listeners.yaml (the listeners, replaced
atomically: written outside the watched directory, then renamed into it, so a running Envoy picks up the change).
"""
import json
import os
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    work, admin, mtls, plain, certs, wasm, plugin = sys.argv[1:]
    here = Path(__file__).resolve().parent
    work_dir = Path(work).resolve()
    lds = work_dir / "lds"
    lds.mkdir(parents=True, exist_ok=True)
    # The plugin configuration travels as a YAML double-quoted string; JSON's string
    # escapes are valid there.
    config = json.dumps(json.dumps(json.loads(Path(plugin).read_text())))
    native = wasm.endswith(".so")
    twin = "native" if native else "wasm"
    values = {
        # First: the filter snippet has placeholders of its own.
        "__CORDON_FILTER__": (here / f"filter-{twin}.yaml.tmpl").read_text().rstrip("\n"),
        "__DECISION_STATE__": "cordon.decision" if native else "wasm.cordon.decision",
        "__ADMIN_PORT__": admin,
        "__MTLS_PORT__": mtls,
        "__PLAIN_PORT__": plain,
        "__CERTS__": str(Path(certs).resolve()),
        "__WASM__": str(Path(wasm).resolve()),
        "__ACCESS_LOG__": str(work_dir / "access.log"),
        "__LDS_DIR__": str(lds),
        "__PLUGIN_CONFIG__": config,
    }

    def fill(template: str) -> str:
        text = (here / template).read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    (work_dir / "envoy.yaml").write_text(fill("envoy.yaml.tmpl"))
    staged = work_dir / "listeners.yaml.new"  # outside the watched directory
    staged.write_text(fill("listeners.yaml.tmpl"))
    os.replace(staged, lds / "listeners.yaml")


if __name__ == "__main__":
    main()
