//! `cordon config --rbac`: istiod's translation of the policies, from the command line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;
use run::cordon;

use std::process::Output;

use serde_json::{json, Value};

fn json_out(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn policy_names(filter: &Value) -> Vec<String> {
    filter["typed_config"]["rules"]["policies"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn shop_policies_for_billing_service() {
    // The directory holds the same policies as YAML and JSON: read once.
    let out = json_out(&cordon(&[
        "config",
        "--rbac",
        "--policy",
        "policies/examples/shop",
        "--workload-namespace",
        "finance",
        "--workload-label",
        "app=billing-service",
    ]));
    assert_eq!(
        out["http_connection_manager"],
        json!({"normalize_path": true, "merge_slashes": false,
               "path_with_escaped_slashes_action": "KEEP_UNCHANGED"})
    );
    assert_eq!(out["runtime"]["re2.max_program_size.error_level"], 32768);
    let filters = out["http_filters"].as_array().unwrap();
    assert!(!filters.is_empty());
    for filter in filters {
        assert_eq!(filter["name"], "envoy.filters.http.rbac");
    }
    // The last filter is the ALLOW one, with billing-service's own policy.
    let allow = filters.last().unwrap();
    assert!(allow["typed_config"]["rules"].get("action").is_none());
    assert!(policy_names(allow)
        .iter()
        .any(|name| name.starts_with("ns[finance]-policy[billing-service-allow]-rule[")));
}

#[test]
fn plugin_config_settings_and_strict_note() {
    let dir = std::env::temp_dir().join(format!("cordon-config-rbac-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("plugin.json");
    std::fs::write(
        &config,
        json!({
            "trust_domain": "td1",
            "trust_domain_aliases": ["old.td"],
            "workload": {"namespace": "foo", "labels": {"app": "a"}},
            "policies": [{
                "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "p", "namespace": "foo"},
                "spec": {"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/x/sa/y"]}}]}]}
            }]
        })
        .to_string(),
    )
    .unwrap();
    let output = cordon(&["config", "--rbac", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.contains("STRICT is cordon-only"), "{stderr}");
    let out = json_out(&output);
    // STRICT (the filter's default) maps to Istio's MERGE_SLASHES.
    assert_eq!(out["http_connection_manager"]["merge_slashes"], true);
    let ids = &out["http_filters"][0]["typed_config"]["rules"]["policies"]
        ["ns[foo]-policy[p]-rule[0]"]["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"];
    assert_eq!(
        ids,
        &json!([
            {"authenticated": {"principal_name": {"exact": "spiffe://td1/ns/x/sa/y"}}},
            {"authenticated": {"principal_name": {"exact": "spiffe://old.td/ns/x/sa/y"}}}
        ])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refusals() {
    // `--config` needs `--rbac`; `--rbac` excludes `--istio`.
    assert!(!cordon(&[
        "config",
        "--config",
        "x.json",
        "--policy",
        "policies/examples/shop"
    ])
    .status
    .success());
    assert!(!cordon(&[
        "config",
        "--rbac",
        "--istio",
        "--policy",
        "policies/examples/shop"
    ])
    .status
    .success());
}
