#!/usr/bin/env python3
"""Writes the checked-in seed corpora of the text-input fuzz targets from the policy corpus
(policies/corpus/*.json), the shop example and a list of known attack inputs.

    python3 fuzz/make-seeds.py

The `evaluate` target reads structured (arbitrary) input; its seeds are a minimized corpus
from earlier runs (`cargo fuzz cmin evaluate`), not generated here.
"""
import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, items, limit=None):
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    seen = set()
    for item in items:
        data = item if isinstance(item, bytes) else item.encode()
        if data in seen:
            continue
        seen.add(data)
        if limit is not None and len(seen) > limit:
            break
        (out / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def corpus_documents():
    for path in sorted((ROOT / "policies" / "corpus").glob("*.json")):
        yield json.loads(path.read_text())


def compact(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


documents = list(corpus_documents())
cases = [case for document in documents for case in document["cases"]]

# Policies: every distinct policy list of the corpus (valid and invalid), and the shop.
policy_lists = [compact(document["policies"]) for document in documents if "policies" in document]
policy_lists += [compact(case["policies"]) for case in cases if "policies" in case]
policy_lists.append((ROOT / "policies" / "examples" / "shop" / "policies.json").read_text())
write("policy_compile", sorted(set(policy_lists), key=len)[:150])

# Requests: every distinct traffic record of the corpus and the shop's traffic.
records = [compact(case["request"]) for case in cases if "request" in case]
shop_traffic = (ROOT / "policies" / "examples" / "shop" / "traffic.jsonl").read_text()
records += [line for line in shop_traffic.splitlines() if line.strip()]
write("traffic_record", sorted(set(records), key=len)[:150])

ATTACK_PATHS = [
    "/admin", "//admin", "/admin/", "/ADMIN", "/./admin", "/public/../admin",
    "/public/%2e%2e/admin", "/public/%2E%2E/admin", "/public/%252e%252e/admin",
    "/public/..%2fadmin", "/public/..%2Fadmin", "/public/..%5cadmin", "/public\\..\\admin",
    "\\admin", "/admin;x=1", "/public/..;/admin", "/public/..;x=1/admin", "/a/%2e%2e;x/b",
    "/admin%00", "/admin\u0000", "/admin?x=/public", "/public?/../admin", "/public#/../admin",
    "/%61dmin", "admin", "*", "", "/%C0%AE%C0%AE/admin", "/%c0%ae/admin", "/\uff0e\uff0e/admin",
    "/%%341", "/%%32e%%32e/admin", "/a//..//b", "/a/b/../../../../c", "/.;/admin",
    "/%2e/admin", "/.%2e/admin", "/%2e%2e%2e/admin", "/a\\..;x\\b", "/a/..%2F..%2Fadmin",
    "%2Fadmin", "%5Cadmin", "/" + "a/" * 100 + "../" * 101 + "admin",
]
paths = ATTACK_PATHS + [
    case["request"]["request"]["path"]
    for case in cases
    if isinstance(case.get("request", {}).get("request", {}).get("path"), str)
]
write("path_normalize", paths)

SPIFFE = [
    "spiffe://cluster.local/ns/shop/sa/frontend", "spiffe://cluster.local",
    "spiffe://Cluster.local/ns/a/sa/x", "SPIFFE://cluster.local/ns/a/sa/x",
    "spiffe://cluster.local:443/ns/a/sa/x", "spiffe://user@cluster.local/ns/a/sa/x",
    "spiffe://cluster.local/ns/a/sa/x?q=1", "spiffe://cluster.local/ns/a/sa/x#f",
    "spiffe://cluster.local/ns/%61/sa/x", "spiffe://cluster.local/ns/a/../b/sa/x",
    "spiffe://cluster.local/ns/a/sa/x/", "spiffe://cluster.local//ns/a", "spiffe:///ns/a",
    "spiffe://cluster.local/ns/a/sa/" + "x" * 2020, "spiffe://" + "a" * 256 + "/x",
    "spiffe://cluster.local/ns/a", "spiffe://td/ns/a/ns/b/sa/c", "spiffe://td/ns/ns/sa/sa",
    "spiffe://cluster.local/ns/caf\u00e9/sa/x", "",
]
principals = [
    case["request"]["source"]["principal"]
    for case in cases
    if isinstance(case.get("request", {}).get("source", {}).get("principal"), str)
]
write("spiffe_parse", SPIFFE + principals)

XFCC = [
    "By=spiffe://cluster.local/ns/a/sa/gw;URI=spiffe://cluster.local/ns/a/sa/client,"
    "By=spiffe://cluster.local/ns/b/sa/svc;Hash=abc;Subject=\"CN=x,OU=y\";"
    "URI=spiffe://cluster.local/ns/shop/sa/frontend",
    "Subject=\"a,b;c\";URI=\"spiffe://td/x\"", "URI=\"spiffe://td/x", "Hash=abc",
    "URI=spiffe://td/forged,URI=spiffe://td/real", "URI=\"spiffe://td/a\\\",URI=spiffe://td/b\"",
    "uri = spiffe://td/spaced ; by=x", ",,,", "URI=a;URI=b", "\"\"\"",
]
write("xfcc", [b"\x01" + text.encode() for text in XFCC])

configs = [
    {"policies": []},
    {"policies": json.loads((ROOT / "policies" / "examples" / "shop" / "policies.json").read_text()),
     "workload": {"namespace": "finance", "labels": {"app": "billing-service"}}},
    {"policies": [], "identity": {"source": "x_forwarded_client_cert"}, "trusted_proxy_hops": 1},
    {"policies": [], "limits": {"max_policies": 1, "max_rules": 1, "max_terms_per_rule": 1,
                                "max_values_per_attribute": 1, "max_automaton_bytes": 1,
                                "max_path_bytes": 1}},
    {"policies": [], "path_normalization": "DECODE_AND_MERGE_SLASHES", "dry_run": True,
     "decision_log": {"enabled": True, "level": "debug", "allow_sample_rate": 0.5},
     "deny_response": {"status": 451, "body": "no"}, "root_namespace": "mesh",
     "trust_domain": "cluster.local", "trust_domain_aliases": ["old.td"],
     "jwt": {"metadata_namespace": "jwt", "payload_key": "claims"}},
    {"policies": [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                   "metadata": {"name": "deny-admin", "namespace": "finance"},
                   "spec": {"action": "DENY", "rules": [
                       {"to": [{"operation": {"paths": ["/admin", "/admin/{**}"]}}]},
                       {"when": [{"key": "request.headers[x-user]", "values": ["admin"]}]}]}}]},
    {"policies": [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                   "metadata": {"name": "xfcc", "namespace": "finance"},
                   "spec": {"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/order-engine"],
                                                             "remoteIpBlocks": ["1.2.3.0/24"]}}]}]}}],
     "identity": {"source": "x_forwarded_client_cert"}, "trusted_proxy_hops": 1},
]
write("filter_config", [compact(config) for config in configs] + ["{", "[]", "{\"policies\": {}}", "null"])
