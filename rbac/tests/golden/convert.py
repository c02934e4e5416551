#!/usr/bin/env python3
"""Re-expresses istiod's HTTP authz builder golden cases as cordon-rbac test cases.

Run once, from the repository root, with the istio/istio checkout at the pinned commit:

    python3 rbac/tests/golden/convert.py /work/.mirror/istio+istio/repo

For each case of TestGenerator_GenerateHTTP (pilot/pkg/security/authz/builder/builder_test.go)
that does not use CUSTOM, it reads the input policies and the expected HttpFilter(s) with
`git show <commit>:<path>` and writes rbac/tests/golden/<case>.json: the policies as JSON
objects, the trust domain bundle and workload the Go test uses, and the expected filters in
proto3 JSON with snake_case field names (as cordon-rbac prints them).
"""
import json
import re
import subprocess
import sys

import yaml

COMMIT = "86c9f01fd735fb01d8192f5bcaf0d424afb7f14c"
BASE = "pilot/pkg/security/authz/builder/testdata/http/"

# (case name as in builder_test.go, input file, expected files, trust domain, aliases).
# The Go test leaves the bundle empty unless it names one; none of those cases has a
# principal whose rewriting would differ from the default bundle `cluster.local`.
CASES = [
    ("allow-empty-rule", "allow-empty-rule-in.yaml", ["allow-empty-rule-out.yaml"], None, []),
    ("allow-full-rule", "allow-full-rule-in.yaml", ["allow-full-rule-out.yaml"], None, []),
    ("allow-nil-rule", "allow-nil-rule-in.yaml", ["allow-nil-rule-out.yaml"], None, []),
    ("allow-path", "allow-path-in.yaml", ["allow-path-out.yaml"], None, []),
    ("audit-full-rule", "audit-full-rule-in.yaml", ["audit-full-rule-out.yaml"], None, []),
    ("deny-and-allow", "deny-and-allow-in.yaml", ["deny-and-allow-out1.yaml", "deny-and-allow-out2.yaml"], None, []),
    ("deny-empty-rule", "deny-empty-rule-in.yaml", ["deny-empty-rule-out.yaml"], None, []),
    ("dry-run-allow-and-deny", "dry-run-allow-and-deny-in.yaml",
     ["dry-run-allow-and-deny-out1.yaml", "dry-run-allow-and-deny-out2.yaml"], None, []),
    ("dry-run-allow", "dry-run-allow-in.yaml", ["dry-run-allow-out.yaml"], None, []),
    ("dry-run-mix", "dry-run-mix-in.yaml", ["dry-run-mix-out.yaml"], None, []),
    ("multiple-policies", "multiple-policies-in.yaml", ["multiple-policies-out.yaml"], None, []),
    ("single-policy", "single-policy-in.yaml", ["single-policy-out.yaml"], None, []),
    ("trust-domain-one-alias", "simple-policy-td-aliases-in.yaml", ["simple-policy-td-aliases-out.yaml"],
     "td1", ["cluster.local"]),
    ("trust-domain-multiple-aliases", "simple-policy-multiple-td-aliases-in.yaml",
     ["simple-policy-multiple-td-aliases-out.yaml"], "td1", ["cluster.local", "some-td"]),
    ("trust-domain-wildcard-in-principal", "simple-policy-principal-with-wildcard-in.yaml",
     ["simple-policy-principal-with-wildcard-out.yaml"], "td1", ["foobar"]),
    ("trust-domain-aliases-in-source-principal", "td-aliases-source-principal-in.yaml",
     ["td-aliases-source-principal-out.yaml"], "new-td", ["old-td", "some-trustdomain"]),
    ("trust-domains-field", "trust-domains-in.yaml", ["trust-domains-out.yaml"], None, []),
]


def show(repo, name):
    return subprocess.run(["git", "-C", repo, "show", f"{COMMIT}:{BASE}{name}"],
                          capture_output=True, text=True, check=True).stdout


def snake(key):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def to_snake(value):
    """camelCase proto field names to snake_case; RBAC policy names (the keys of
    `policies`) and `@type` are kept."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new_key = key if key.startswith("@") else snake(key)
            if new_key == "policies" and isinstance(item, dict):
                out[new_key] = {name: to_snake(policy) for name, policy in item.items()}
            else:
                out[new_key] = to_snake(item)
        return out
    if isinstance(value, list):
        return [to_snake(item) for item in value]
    return value


def main():
    repo = sys.argv[1]
    for name, input_file, outputs, trust_domain, aliases in CASES:
        policies = [doc for doc in yaml.safe_load_all(show(repo, input_file)) if doc]
        filters = [to_snake(yaml.safe_load(show(repo, out))) for out in outputs]
        case = {
            "case": name,
            "istio": {"commit": COMMIT, "input": BASE + input_file, "expected": [BASE + o for o in outputs]},
            "mesh": {"trust_domain": trust_domain or "cluster.local", "trust_domain_aliases": aliases},
            "workload": {"namespace": "foo", "labels": {"app": "httpbin", "version": "v1"}},
            "policies": policies,
            "expected_http_filters": filters,
        }
        with open(f"rbac/tests/golden/{name}.json", "w") as f:
            json.dump(case, f, indent=1, sort_keys=False)
            f.write("\n")


if __name__ == "__main__":
    main()
