//! `cordon check` warnings that come from the engine: values that can never match (the
//! model's warnings) and ALLOW rules a DENY rule always overrides (the engine's value
//! relations), run as a user runs the binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-check-lints-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(path: &Path) -> (Output, Vec<(String, String)>) {
    let output = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["check", path.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let findings = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| {
            (
                format!(
                    "{} {}",
                    finding["severity"].as_str().unwrap(),
                    finding["field"].as_str().unwrap()
                ),
                finding["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (output, findings)
}

fn has(findings: &[(String, String)], field: &str, message: &str) -> bool {
    findings
        .iter()
        .any(|(at, said)| at == field && said.contains(message))
}

#[test]
fn values_that_can_never_match_are_warned_about() {
    let path = file(
        "never.yaml",
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: shop}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]
    to:
    - operation:
        methods: ["get", "FETCH", "Post*", "GET", "PROPFIND", "*"]
        paths: ["api/orders", "v1*", "/v1/*", "*.css", "*"]
        hosts: ["Shop.Example.COM", "*.EXAMPLE.com"]
        ports: ["8080"]
"#,
    );
    let (output, findings) = check(&path);
    assert_eq!(output.status.code(), Some(0), "{findings:?}");
    let methods = "warning spec.rules[0].to[0].operation.methods";
    let paths = "warning spec.rules[0].to[0].operation.paths";
    assert!(
        has(
            &findings,
            &format!("{methods}[0]"),
            "`get` can never match: methods are matched case-sensitively"
        ) && has(&findings, &format!("{methods}[0]"), "write `GET`"),
        "{findings:?}"
    );
    assert!(
        has(
            &findings,
            &format!("{methods}[1]"),
            "`FETCH` is not an HTTP method Envoy accepts"
        ),
        "{findings:?}"
    );
    assert!(
        has(
            &findings,
            &format!("{methods}[2]"),
            "`Post*` can never match"
        ),
        "{findings:?}"
    );
    assert!(
        has(
            &findings,
            &format!("{paths}[0]"),
            "`api/orders` can never match: request paths start with `/`; write `/api/orders`"
        ),
        "{findings:?}"
    );
    assert!(
        has(&findings, &format!("{paths}[1]"), "`v1*` can never match"),
        "{findings:?}"
    );
    // Nothing else: standard methods, `/` paths, suffixes, `*`, and hosts in any case.
    assert_eq!(findings.len(), 5, "{findings:?}");

    // A port that is no port is an error, not a warning.
    let path = file(
        "port.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  rules: [{from: [{source: {namespaces: [shop]}}], to: [{operation: {ports: [\"0\"]}}]}]\n",
    );
    let (output, findings) = check(&path);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        has(
            &findings,
            "error spec.rules[0].to[0].operation.ports[0]",
            "invalid port `0`"
        ),
        "{findings:?}"
    );
    // `--strict` turns the warnings into exit 1.
    let output = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["check", "--strict", file("never2.yaml", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  rules: [{from: [{source: {namespaces: [shop]}}], to: [{operation: {methods: [delete]}}]}]\n").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("`delete` can never match"),
        "{output:?}"
    );
}

const SHADOWING: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]
    to: [{operation: {paths: ["/admin/*"]}}]
  - to: [{operation: {methods: ["DELETE"], notPaths: ["/public/*"]}}]
    when: [{key: "request.headers[x-env]", values: ["prod*"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: shop}
spec:
  rules:
  # 0: web on /admin/{**}: always denied by no-admin rule 0
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/admin/users", "/admin/{**}"]}}]
  # 1: another caller: not denied
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/api"]}}]
    to: [{operation: {paths: ["/admin/users"]}}]
  # 2: web, but /administrator is outside /admin/*
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]
    to: [{operation: {paths: ["/administrator"]}}]
  # 3: DELETE on /private when x-env is prod-eu: always denied by no-admin rule 1
  - from: [{source: {namespaces: ["shop"]}}]
    to: [{operation: {methods: ["DELETE"], paths: ["/private/*"]}}]
    when: [{key: "request.headers[x-env]", values: ["prod-eu"]}]
  # 4: the same without the header condition: not always denied
  - from: [{source: {namespaces: ["shop"]}}]
    to: [{operation: {methods: ["DELETE"], paths: ["/private/*"]}}]
  # 5: DELETE on /public/*: the DENY rule excludes it
  - from: [{source: {namespaces: ["shop"]}}]
    to: [{operation: {methods: ["DELETE"], paths: ["/public/a"]}}]
    when: [{key: "request.headers[x-env]", values: ["prod"]}]
"#;

#[test]
fn allow_rules_a_deny_rule_always_overrides_are_found_by_value_containment() {
    let (output, findings) = check(&file("shadow.yaml", SHADOWING));
    assert_eq!(output.status.code(), Some(0), "{findings:?}");
    let shadowed: Vec<String> = findings
        .iter()
        .filter(|(_, message)| message.starts_with("never allows anything"))
        .map(|(at, message)| format!("{at}: {}", &message[message.find("ns[").unwrap()..]))
        .collect();
    assert_eq!(
        shadowed,
        [
            "warning spec.rules[0]: ns[shop]-policy[no-admin]-rule[0] denies every request this rule could allow",
            "warning spec.rules[3]: ns[shop]-policy[no-admin]-rule[1] denies every request this rule could allow",
        ],
        "{findings:?}"
    );
}
