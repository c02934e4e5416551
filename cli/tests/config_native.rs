//! `cordon config --native` and `--native --istio`: cordon's native twin as the two Envoy
//! HTTP filters it takes, and as an Istio EnvoyFilter; `envoy/istio/native-envoyfilter.yaml`
//! is exactly what the command writes for the shop's billing-service (the end-to-end suite,
//! envoy/e2e/tests/native_istio.rs, runs that file's configuration in Envoy).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;

use run::{cordon, repo, stderr, stdout};
use serde_json::Value;

const SHOP: [&str; 8] = [
    "config",
    "--native",
    "--policy",
    "policies/examples/shop/policies.yaml",
    "--workload-namespace",
    "finance",
    "--workload-label",
    "app=billing-service",
];

fn documents(text: &str) -> Vec<Value> {
    cordon_lifecycle::sources::parse_documents(text)
        .unwrap_or_else(|error| panic!("{error:?}\n{text}"))
        .into_iter()
        .map(|document| document.value)
        .collect()
}

/// The plugin configuration in a dynamic-module filter entry.
fn filter_config(filter: &Value) -> Value {
    assert_eq!(filter["name"], "envoy.filters.http.dynamic_modules");
    let typed = &filter["typed_config"];
    assert_eq!(typed["dynamic_module_config"]["name"], "cordon_native");
    assert_eq!(typed["filter_name"], "cordon");
    assert_eq!(
        typed["filter_config"]["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    serde_json::from_str(typed["filter_config"]["value"].as_str().unwrap()).unwrap()
}

#[test]
fn the_checked_in_envoyfilter_is_what_the_command_writes() {
    let mut args = SHOP.to_vec();
    args.push("--istio");
    let output = cordon(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let written = stdout(&output);
    let checked_in =
        std::fs::read_to_string(repo().join("envoy/istio/native-envoyfilter.yaml")).unwrap();
    // The manifest text must match up to the plugin configuration; that JSON is compared as
    // a value, because its key order follows serde_json's `preserve_order`, which depends on
    // which crates a build unifies (a workspace build turns it on).
    let split = |text: &str| -> (String, serde_json::Value) {
        let (head, json) = text
            .split_once("value: |-")
            .expect("the filter_config value");
        (
            head.to_string(),
            serde_json::from_str(json).expect("the plugin configuration JSON"),
        )
    };
    assert_eq!(
        split(&written),
        split(&checked_in),
        "regenerate envoy/istio/native-envoyfilter.yaml with cordon {}",
        args.join(" ")
    );

    let manifest = &documents(&written)[0];
    assert_eq!(manifest["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(manifest["kind"], "EnvoyFilter");
    assert_eq!(manifest["metadata"]["namespace"], "finance");
    let spec = &manifest["spec"];
    assert_eq!(spec["workloadSelector"]["labels"]["app"], "billing-service");
    let patches = spec["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 2);
    for patch in patches {
        assert_eq!(patch["applyTo"], "HTTP_FILTER");
        assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND", "inbound only");
        assert_eq!(
            patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.router"
        );
        assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    }
    // In this order: the payload copied into filter state, then cordon.
    assert_eq!(
        patches[0]["patch"]["value"]["name"],
        "envoy.filters.http.set_filter_state"
    );
    let config = filter_config(&patches[1]["patch"]["value"]);
    assert_eq!(config["workload"]["namespace"], "finance");
    assert_eq!(config["workload"]["labels"]["app"], "billing-service");
    // Only the policies that can apply to billing-service (orders-allow is in `shop`).
    let names: Vec<&str> = config["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|policy| policy["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"orders-allow"), "{names:?}");
    assert!(names.contains(&"billing-service-allow"), "{names:?}");
}

#[test]
fn the_filters_alone_carry_the_same_configuration() {
    let output = cordon(&SHOP);
    assert!(output.status.success(), "{}", stderr(&output));
    let filters = documents(&stdout(&output)).remove(0);
    let filters = filters.as_array().unwrap();
    assert_eq!(filters[0]["name"], "envoy.filters.http.set_filter_state");
    let state = &filters[0]["typed_config"]["on_request_headers"][0];
    assert_eq!(state["object_key"], "cordon.jwt_payload");
    assert_eq!(
        state["format_string"]["text_format_source"]["inline_string"],
        "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:payload)%"
    );
    let config = filter_config(&filters[1]);
    assert_eq!(config["workload"]["namespace"], "finance");
}

#[test]
fn native_needs_the_workload_and_takes_no_wasmplugin_options() {
    let output = cordon(&[
        "config",
        "--native",
        "--policy",
        "policies/examples/shop/policies.yaml",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--native needs --workload-namespace"),
        "{}",
        stderr(&output)
    );
    let mut args = SHOP.to_vec();
    args.extend(["--istio", "--image", "oci://example.com/cordon:1"]);
    let output = cordon(&args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--image is a WasmPlugin option"),
        "{}",
        stderr(&output)
    );
}
