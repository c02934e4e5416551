//! `cordon discover` on poisoned observations, through the binary, with the learned
//! policies then judged by the shipped `.wasm` (`cordon simulate`): values a policy would
//! read as syntax, traversal paths and refused requests never widen a grant; workloads
//! that received nothing are closed by the default deny; `--strict`, `--no-default-deny`
//! and the JSON summary. And `cordon audit --format json`: examples are traffic records
//! that `cordon simulate` reads back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::{cordon, stderr, stdout, tempdir};

fn record(principal: &str, app: &str, method: &str, path: &str, host: &str) -> Value {
    json!({
        "source": {"principal": format!("spiffe://cluster.local/ns/{principal}")},
        "destination": {"port": 8080, "namespace": "shop", "labels": {"app": app}},
        "connection": {"mtls": true},
        "request": {"method": method, "path": path, "host": host},
        "time": "2026-11-27T01:00:00Z",
    })
}

fn frontend(method: &str, path: &str) -> Value {
    record("shop/sa/frontend", "orders", method, path, "orders.shop")
}

fn with_host(mut value: Value, host: &str) -> Value {
    value["request"]["host"] = json!(host);
    value
}

fn refused(mut value: Value, status: u16) -> Value {
    value["decision"] = json!({"allowed": false, "enforced": true, "status": status});
    value
}

fn write_jsonl(dir: &Path, name: &str, records: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = records.iter().map(|value| format!("{value}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `cordon discover` on the records; returns the policy file, and the output.
fn discover(dir: &Path, records: &[Value], extra: &[&str]) -> (PathBuf, std::process::Output) {
    let traffic = write_jsonl(dir, "traffic.jsonl", records);
    let policies = dir.join("learned.yaml");
    let mut args = vec![
        "discover",
        "--traffic",
        traffic.to_str().unwrap(),
        "--output",
        policies.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = cordon(&args);
    (policies, output)
}

/// `cordon simulate` decisions (`allow`/`deny`) of the records under the policies.
fn decisions(dir: &Path, policies: &Path, records: &[Value]) -> Vec<String> {
    let traffic = write_jsonl(dir, "probes.jsonl", records);
    let output = cordon(&[
        "simulate",
        "--policy",
        policies.to_str().unwrap(),
        "--traffic",
        traffic.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            value["decision"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn poisoned_observations_never_widen_what_the_filter_allows() {
    let dir = tempdir();
    let legitimate = frontend("GET", "/orders/1");
    let records = vec![
        legitimate.clone(),
        frontend("*", "/orders/2"),
        frontend("GET", "*"),
        frontend("GET", "/v1/{**}"),
        frontend("GET", "/orders/{*}/items"),
        with_host(frontend("GET", "/orders/3"), "b*"),
        frontend("GET", "/public/%2e%2e/admin"),
        frontend("GET", "/public/..;/admin"),
        refused(frontend("DELETE", "/orders/1"), 403),
        refused(frontend("PUT", "/orders/1"), 400),
        {
            let mut value = frontend("GET", "/orders/4");
            value["request"]["headers"] = json!({"x-role": "*"});
            value
        },
    ];
    let (policies, output) = discover(&dir, &records, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = stderr(&output);
    for expected in [
        "method holding policy syntax (not learned): 1",
        "path holding policy syntax (not learned): 3",
        "host holding policy syntax (not learned): 1",
        "suspicious: path changed meaning under normalization (not learned): 2",
        "e.g. GET /public/%2e%2e/admin (normalized /admin)",
        "refused by the filter (decision log): 2",
        "default deny (allow-nothing policy `default-deny`) in: shop",
    ] {
        assert!(summary.contains(expected), "{expected} in\n{summary}");
    }
    let yaml = std::fs::read_to_string(&policies).unwrap();
    assert!(!yaml.contains("{**}"), "{yaml}");
    assert!(!yaml.contains('*') || yaml.matches('*').count() == yaml.matches("{*}").count());

    // The learned set, as the filter enforces it.
    let check = cordon(&["check", "--strict", policies.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stdout(&check));
    let probes = vec![
        legitimate,
        frontend("GET", "/orders/4"),
        // What each poison would have granted.
        frontend("DELETE", "/orders/2"),
        frontend("GET", "/admin"),
        frontend("GET", "/v1/admin/keys"),
        with_host(frontend("GET", "/orders/3"), "billing.internal"),
        frontend("DELETE", "/orders/1"),
        frontend("PUT", "/orders/1"),
        frontend("GET", "/orders/1/refund"),
    ];
    let decided = decisions(&dir, &policies, &probes);
    assert_eq!(
        decided,
        vec!["allow", "allow", "deny", "deny", "deny", "deny", "deny", "deny", "deny"],
        "{yaml}"
    );
}

#[test]
fn workloads_that_received_nothing_are_closed() {
    let dir = tempdir();
    let records = vec![
        frontend("GET", "/orders/1"),
        refused(
            record("shop/sa/frontend", "db", "GET", "/tables", "db.shop"),
            403,
        ),
    ];
    let probes = vec![
        frontend("GET", "/orders/1"),
        record("shop/sa/frontend", "db", "GET", "/tables", "db.shop"),
        record(
            "shop/sa/orders",
            "payments",
            "POST",
            "/pay",
            "payments.shop",
        ),
    ];
    let (policies, output) = discover(&dir, &records, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("closed (no learned caller; every request denied): shop/db"),
        "{}",
        stderr(&output)
    );
    let yaml = std::fs::read_to_string(&policies).unwrap();
    assert!(yaml.contains("name: \"default-deny\""), "{yaml}");
    assert!(yaml.contains("spec: {}"), "{yaml}");
    assert_eq!(
        decisions(&dir, &policies, &probes),
        vec!["allow", "deny", "deny"]
    );

    // `--no-default-deny` (and `--no-allow-nothing`): they stay open, and the summary says so.
    let (policies, output) = discover(&dir, &records, &["--no-default-deny", "--no-allow-nothing"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output)
            .contains("left open (no policy applies, so Istio allows every request): shop/db"),
        "{}",
        stderr(&output)
    );
    let yaml = std::fs::read_to_string(&policies).unwrap();
    assert!(!yaml.contains("default-deny"), "{yaml}");
    assert_eq!(
        decisions(&dir, &policies, &probes),
        vec!["allow", "allow", "allow"]
    );
}

#[test]
fn nothing_learnable_warns_and_strict_fails() {
    let dir = tempdir();
    let records: Vec<Value> = (1..=4)
        .map(|i| refused(frontend("GET", &format!("/orders/{i}")), 403))
        .chain([frontend("*", "/orders/9")])
        .collect();
    let (_, output) = discover(&dir, &records, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("WARNING: no learnable request in the input"),
        "{}",
        stderr(&output)
    );
    let (policies, output) = discover(&dir, &records, &["--strict", "--quiet"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("WARNING: no learnable request"));
    // What there is is still written: the default deny alone.
    let yaml = std::fs::read_to_string(&policies).unwrap();
    assert!(
        yaml.contains("spec: {}") && !yaml.contains("rules:"),
        "{yaml}"
    );
    // With something learnable, `--strict` passes.
    let (_, output) = discover(&dir, &[frontend("GET", "/orders/1")], &["--strict"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn the_json_summary_lists_what_was_not_learned() {
    let dir = tempdir();
    let records = vec![
        frontend("GET", "/orders/1"),
        frontend("GET", "/a/../admin"),
        with_host(frontend("GET", "/orders/2"), "*.evil"),
        refused(record("shop/sa/frontend", "db", "GET", "/", "db.shop"), 403),
    ];
    let (_, output) = discover(&dir, &records, &["--summary-format", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: Value = serde_json::from_str(stderr(&output).trim()).unwrap();
    assert_eq!(summary["granted"], 1);
    let not_learned = &summary["not_learned"];
    assert_eq!(not_learned["suspicious"]["count"], 1);
    let example = &not_learned["suspicious"]["examples"][0];
    assert_eq!(example["path"], "/a/../admin");
    assert_eq!(example["normalized_path"], "/admin");
    assert_eq!(example["workload"], "shop/orders");
    assert_eq!(not_learned["unexpressible"]["host"]["count"], 1);
    assert_eq!(
        not_learned["unexpressible"]["host"]["examples"][0]["host"],
        "*.evil"
    );
    assert_eq!(not_learned["refused"][0]["workload"], "shop/db");
    assert_eq!(summary["closed"], json!(["shop/db"]));
    assert_eq!(summary["default_deny"], json!(["shop"]));
}

#[test]
fn audit_json_examples_are_traffic_records_simulate_reads_back() {
    let dir = tempdir();
    let (policies, output) = discover(&dir, &[frontend("GET", "/orders/1")], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let traffic = write_jsonl(
        &dir,
        "audit.jsonl",
        &[
            frontend("GET", "/orders/2"),
            record(
                "shop/sa/reviews",
                "orders",
                "GET",
                "/orders/3",
                "orders.shop",
            ),
            record(
                "shop/sa/reviews",
                "orders",
                "DELETE",
                "/orders/3",
                "orders.shop",
            ),
        ],
    );
    let audit = cordon(&[
        "audit",
        "--policy",
        policies.to_str().unwrap(),
        "--traffic",
        traffic.to_str().unwrap(),
        "--format",
        "json",
        "--fail-on",
        "never",
    ]);
    assert!(audit.status.success(), "{}", stderr(&audit));
    // Not a terminal: no progress line.
    assert!(!stderr(&audit).contains("records/s"), "{}", stderr(&audit));
    let report: Value = serde_json::from_str(&stdout(&audit)).unwrap();
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|finding| finding["kind"] == "lateral-movement")
        .unwrap();
    let examples = finding["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(finding["operations"].as_array().unwrap().len(), 2);
    assert_eq!(
        examples[0]["source"]["principal"],
        "spiffe://cluster.local/ns/shop/sa/reviews"
    );
    // Each example is a traffic record: simulate replays it, and the filter denies it.
    assert_eq!(decisions(&dir, &policies, examples), vec!["deny", "deny"]);
    // The text report keeps its display lines.
    let text = cordon(&[
        "audit",
        "--policy",
        policies.to_str().unwrap(),
        "--traffic",
        traffic.to_str().unwrap(),
        "--fail-on",
        "never",
    ]);
    assert!(
        stdout(&text).contains("DELETE /orders/{*} ×1"),
        "{}",
        stdout(&text)
    );
}
