//! `cordon explain`, run as a user runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;
use run::cordon;

use serde_json::Value;

const SHOP_POLICIES: &str = "policies/examples/shop/policies.yaml";
const SHOP_TRAFFIC: &str = "policies/examples/shop/traffic.jsonl";

#[test]
fn a_denial_names_the_nearest_allow_rule_and_what_failed() {
    // Line 4: frontend DELETEs an order; orders-allow grants only GET and POST /v1/orders.
    let output = cordon(&[
        "explain",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--line",
        "4",
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("decision: deny (403, no_allow_match)"),
        "{text}"
    );
    assert!(
        text.contains("nearest ALLOW rules:\n  ns[shop]-policy[orders-allow]-rule[0]"),
        "{text}"
    );
    assert!(
        text.contains(
            "spec.rules[0].to[0].operation.methods: request has [\"DELETE\"], rule wants [\"GET\"]"
        ),
        "{text}"
    );
}

#[test]
fn json_lists_every_rule_and_agrees_with_the_decision() {
    let request = r#"{"source": {"principal": "spiffe://cluster.local/ns/shop/sa/frontend"},
        "destination": {"namespace": "shop", "labels": {"app": "orders"}},
        "request": {"method": "GET", "path": "/v1/orders/../orders?x=1"}}"#;
    let output = cordon(&[
        "explain",
        "--policy",
        SHOP_POLICIES,
        "--request",
        request,
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["decision"], "allow");
    assert_eq!(value["policy"], "ns[shop]-policy[orders-allow]-rule[0]");
    assert_eq!(value["seen"]["path"], "/v1/orders");
    let rules = value["rules"].as_array().unwrap();
    let deciding = rules
        .iter()
        .find(|rule| rule["id"] == value["policy"])
        .unwrap();
    assert_eq!(deciding["matched"], true);
    assert!(deciding["failures"].as_array().unwrap().is_empty());
}

#[test]
fn bad_input_is_an_error_with_exit_2() {
    let output = cordon(&[
        "explain",
        "--policy",
        SHOP_POLICIES,
        "--request",
        "{not json",
    ]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--request: not JSON"));
    let output = cordon(&[
        "explain",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--line",
        "100000",
    ]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains(":100000: no traffic record"));
}
