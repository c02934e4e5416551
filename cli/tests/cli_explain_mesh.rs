//! `cordon explain --config` (the mesh's settings and policies) and `cordon simulate
//! --explain` (the same explanation on every replayed record), run as a user runs them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;
use run::{cordon, stderr, stdout, tempdir};

use std::path::Path;

use serde_json::{json, Value};

const SHOP_POLICIES: &str = "policies/examples/shop/policies.yaml";
const SHOP_TRAFFIC: &str = "policies/examples/shop/traffic.jsonl";

fn write(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn explain_decides_under_the_mesh_settings_of_config() {
    let dir = tempdir();
    let deny_admin = write(
        &dir,
        "deny-admin.json",
        &json!([{"metadata": {"name": "no-admin", "namespace": "finance"},
                 "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}}]),
    );
    let base = write(&dir, "base.json", &json!({"path_normalization": "BASE"}));
    let request = json!({
        "source": {"principal": "spiffe://cluster.local/ns/shop/sa/a"},
        "destination": {"namespace": "finance", "labels": {"app": "billing"}},
        "request": {"method": "GET", "path": "//admin"}
    })
    .to_string();
    let explain = |config: Option<&str>| {
        let mut args = vec![
            "explain",
            "--policy",
            &deny_admin,
            "--request",
            &request,
            "--format",
            "json",
        ];
        if let Some(config) = config {
            args.extend(["--config", config]);
        }
        let output = cordon(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_str::<Value>(&stdout(&output)).unwrap()
    };
    // The filter's default, STRICT, merges the slashes: the DENY rule matches.
    let strict = explain(None);
    assert_eq!(strict["decision"], "deny", "{strict}");
    assert_eq!(strict["policy"], "ns[finance]-policy[no-admin]-rule[0]");
    assert_eq!(strict["seen"]["path"], "/admin");
    // Istio's default mesh, BASE, leaves them: `//admin` is not `/admin`.
    let loose = explain(Some(&base));
    assert_eq!(loose["decision"], "allow", "{loose}");
    assert_eq!(loose["seen"]["path"], "//admin");
    assert_eq!(loose["rules"][0]["matched"], false);
    assert_eq!(
        loose["rules"][0]["failures"][0]["field"],
        "spec.rules[0].to[0].operation.paths"
    );

    // The configuration's policies join `--policy`, and alone are enough; its trust
    // domain aliases are the trust domains the explanation shows.
    let config = write(
        &dir,
        "with-policies.json",
        &json!({"trust_domain": "prod.example", "trust_domain_aliases": ["cluster.local"],
                "policies": [{"metadata": {"name": "get-only", "namespace": "finance"},
                              "spec": {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}]}),
    );
    let post = json!({
        "source": {"principal": "spiffe://cluster.local/ns/shop/sa/a"},
        "destination": {"namespace": "finance"},
        "request": {"method": "POST", "path": "/x"}
    })
    .to_string();
    let output = cordon(&[
        "explain",
        "--config",
        &config,
        "--request",
        &post,
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let answer: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(
        answer["nearest_allow"],
        json!(["ns[finance]-policy[get-only]-rule[0]"])
    );
    assert_eq!(
        answer["seen"]["trust_domains"],
        json!(["prod.example", "cluster.local"])
    );
    let output = cordon(&[
        "explain",
        "--policy",
        &deny_admin,
        "--config",
        &config,
        "--request",
        &post,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("ns[finance]-policy[no-admin]-rule[0] DENY: no match"),
        "{}",
        stdout(&output)
    );

    // A bad configuration names its file and field.
    let bad = write(&dir, "bad.json", &json!({"path_normalisation": "BASE"}));
    let output = cordon(&["explain", "--config", &bad, "--request", &post]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(&bad) && stderr(&output).contains("path_normalisation"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn simulate_explain_adds_what_explain_says_to_every_line() {
    let output = cordon(&[
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--format",
        "jsonl",
        "--explain",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(lines.len() >= 20, "{}", lines.len());
    let mut denied = 0;
    for line in &lines {
        let number = line["line"].as_u64().unwrap().to_string();
        let output = cordon(&[
            "explain",
            "--policy",
            SHOP_POLICIES,
            "--traffic",
            SHOP_TRAFFIC,
            "--line",
            &number,
            "--format",
            "json",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let explained: Value = serde_json::from_str(&stdout(&output)).unwrap();
        let explanation = &line["explanation"];
        for key in ["seen", "nearest_allow", "rules"] {
            assert_eq!(explanation[key], explained[key], "line {number}: {key}");
        }
        // The native explanation agrees with the `.wasm`'s decision.
        assert_eq!(line["decision"], explained["decision"], "line {number}");
        assert_eq!(line["policy"], explained["policy"], "line {number}");
        if line["decision"] == "deny" {
            denied += 1;
        }
    }
    assert!(denied > 0, "the shop traffic has denials");

    // Without `--explain` the lines carry no explanation; with the table there is no line
    // to carry it.
    let output = cordon(&[
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--format",
        "jsonl",
    ]);
    assert!(!stdout(&output).contains("\"explanation\""));
    let output = cordon(&[
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--explain",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--explain adds the explanation to each line of `--format jsonl`"),
        "{}",
        stderr(&output)
    );
}
