//! `cordon diff`, run as a user runs it, on the shop example: a widening change is caught
//! with example requests that `cordon simulate` (the shipped `.wasm`) decides differently
//! under the two sets; a narrowing change passes `--fail-on-new-access`; bad input exits 2.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;
use run::{cordon, stderr, stdout, tempdir};

use serde_json::Value;

const SHOP_POLICIES: &str = "policies/examples/shop/policies.yaml";

/// The shop policies with one text replaced, written to a fresh directory.
fn changed(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(run::repo().join(SHOP_POLICIES)).unwrap();
    assert!(
        text.contains(from),
        "the shop example no longer has `{from}`"
    );
    let path = tempdir().join("policies.yaml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path.display().to_string()
}

/// Rule 1 of billing-service-allow reads one credit: the order engine only. The change
/// grants it to every identity of namespace shop.
fn widened() -> String {
    changed(
        "principals: [\"cluster.local/ns/shop/sa/order-engine\"]\n    to:\n    - operation:\n        methods: [\"GET\"]",
        "principals: [\"cluster.local/ns/shop/*\"]\n    to:\n    - operation:\n        methods: [\"GET\"]",
    )
}

/// orders-allow: reading `/v1/orders*` becomes reading `/v1/orders/*` only.
fn narrowed() -> String {
    changed("paths: [\"/v1/orders*\"]", "paths: [\"/v1/orders/*\"]")
}

fn json_diff(old: &str, new: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["diff", "--old", old, "--new", new, "--format", "json"];
    args.extend(extra);
    let output = cordon(&args);
    let document = serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|error| panic!("{error}: {}{}", stdout(&output), stderr(&output)));
    (output.status.code(), document)
}

/// Runs `cordon simulate` on the examples, under `policy` against `baseline`, and returns
/// each line's (decision, baseline decision).
fn simulate(examples: &[Value], policy: &str, baseline: &str) -> Vec<(String, String)> {
    let traffic = tempdir().join("examples.jsonl");
    let lines: Vec<String> = examples.iter().map(Value::to_string).collect();
    std::fs::write(&traffic, lines.join("\n") + "\n").unwrap();
    let traffic = traffic.display().to_string();
    let output = cordon(&[
        "simulate",
        "--policy",
        policy,
        "--traffic",
        &traffic,
        "--baseline",
        baseline,
        "--format",
        "jsonl",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            (
                line["decision"].as_str().unwrap().to_string(),
                line["baseline"]["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_widening_is_caught_and_simulate_confirms_every_example() {
    let wide = widened();
    let (code, document) = json_diff(SHOP_POLICIES, &wide, &["--fail-on-new-access"]);
    assert_eq!(code, Some(1), "{document:#}");
    let gained = document["new_access"].as_array().unwrap();
    assert!(!gained.is_empty());
    let examples: Vec<Value> = gained
        .iter()
        .map(|entry| entry["example"].clone())
        .collect();
    for (entry, example) in gained.iter().zip(&examples) {
        assert_eq!(entry["workload"]["namespace"], "finance");
        assert_eq!(entry["workload"]["labels"]["app"], "billing-service");
        assert!(entry["class"]["undecided"].is_null(), "{entry:#}");
        assert!(entry["class"]["text"]
            .as_str()
            .unwrap()
            .contains("principal cluster.local/ns/shop/*"));
        assert_eq!(example["request"]["method"], "GET");
        assert!(example["request"]["path"]
            .as_str()
            .unwrap()
            .starts_with("/v1/credits/"));
    }
    // The shipped filter agrees: each example is allowed under the new set and denied
    // under the old one.
    for (now, before) in simulate(&examples, &wide, SHOP_POLICIES) {
        assert_eq!((now.as_str(), before.as_str()), ("allow", "deny"));
    }
    assert!(document["removed_access"].as_array().unwrap().is_empty());
    // Without the flag: a report, exit 0.
    let output = cordon(&["diff", "--old", SHOP_POLICIES, "--new", &wide]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("the new set grants new access"));
}

#[test]
fn a_narrowing_passes_and_its_removed_access_is_shown() {
    let narrow = narrowed();
    let (code, document) = json_diff(SHOP_POLICIES, &narrow, &["--fail-on-new-access"]);
    assert_eq!(code, Some(0), "{document:#}");
    assert!(document["new_access"].as_array().unwrap().is_empty());
    let lost = document["removed_access"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{document:#}");
    assert_eq!(lost[0]["workload"]["labels"]["app"], "orders");
    let examples = vec![lost[0]["example"].clone()];
    for (now, before) in simulate(&examples, &narrow, SHOP_POLICIES) {
        assert_eq!((now.as_str(), before.as_str()), ("deny", "allow"));
    }
    // One workload only.
    let (code, document) = json_diff(
        SHOP_POLICIES,
        &narrow,
        &[
            "--workload-namespace",
            "finance",
            "--workload-label",
            "app=billing-service",
        ],
    );
    assert_eq!(code, Some(0));
    assert_eq!(document["workloads"], 1);
    assert!(document["removed_access"].as_array().unwrap().is_empty());
}

#[test]
fn bad_input_exits_2() {
    let missing = cordon(&["diff", "--old", SHOP_POLICIES, "--new", "no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no/such/file.yaml"),
        "{}",
        stderr(&missing)
    );
    let invalid = changed("action: DENY", "action: PERMIT");
    let output = cordon(&["diff", "--old", SHOP_POLICIES, "--new", &invalid]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("PERMIT"), "{}", stderr(&output));
    let output = cordon(&[
        "diff",
        "--old",
        SHOP_POLICIES,
        "--new",
        SHOP_POLICIES,
        "--workload-label",
        "app=x",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--workload-namespace"));
}

/// `cordon check`'s exact lints, on the same analysis.
#[test]
fn check_finds_dead_redundant_and_unselected_policies() {
    let path = tempdir().join("lints.yaml");
    std::fs::write(
        &path,
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: billing, namespace: finance}
spec:
  selector: {matchLabels: {app: billing}}
  rules:
  # 0: no peer URI is in namespace finance-ops and is the order engine of shop
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/order-engine"], namespaces: ["finance-ops"]}}]
  # 1: inside rule 2
  - to: [{operation: {methods: ["GET"], paths: ["/v1/credits/{*}"]}}]
  # 2
  - to: [{operation: {paths: ["/v1/credits/*"]}}]
"#,
    )
    .unwrap();
    let path = path.display().to_string();
    let output = cordon(&[
        "check",
        &path,
        "--format",
        "json",
        "--workload",
        "finance/app=web",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let findings: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| {
            (
                finding["field"].as_str().unwrap().to_string(),
                finding["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |field: &str, text: &str| {
        findings
            .iter()
            .any(|(at, message)| at == field && message.contains(text))
    };
    assert!(has("spec.rules[0]", "can never match"), "{findings:?}");
    assert!(
        has("spec.rules[1]", "redundant")
            && has("spec.rules[1]", "ns[finance]-policy[billing]-rule[2]"),
        "{findings:?}"
    );
    assert!(!has("spec.rules[2]", "redundant"), "{findings:?}");
    assert!(has("spec.selector", "selects no workload"), "{findings:?}");
    let output = cordon(&["check", &path, "--workload", "finance/app=billing"]);
    assert!(!stdout(&output).contains("selects no workload"));
    let output = cordon(&["check", &path, "--workload", "/app=billing"]);
    assert_eq!(output.status.code(), Some(2));
}
