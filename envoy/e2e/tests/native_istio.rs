//! `envoy/istio/native-envoyfilter.yaml` (written by `cordon config --native --istio`, see
//! cli/tests/config_native.rs): an EnvoyFilter inserting the native twin on billing-service's
//! inbound sidecar traffic. Its two filters are the ones the end-to-end suite runs
//! (`envoy/filter-native.yaml.tmpl`), and its configuration works in Envoy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_e2e::client::{Request, Via};
use cordon_e2e::envoy::{Envoy, Twin};
use cordon_e2e::tools::{self, shop_claims};
use serde_json::Value;

/// The one YAML document of `text`, read by the reader `cordon` reads manifests with.
fn yaml(text: &str) -> Value {
    let mut docs = cordon_lifecycle::sources::parse_documents(text)
        .unwrap_or_else(|error| panic!("{error:?}\n{text}"));
    assert_eq!(docs.len(), 1, "one YAML document");
    docs.remove(0).value
}

/// The manifest's two patch values, in order.
fn patched_filters() -> Vec<Value> {
    let path = tools::repo_root().join("envoy/istio/native-envoyfilter.yaml");
    let manifest = yaml(&std::fs::read_to_string(path).unwrap());
    assert_eq!(manifest["kind"], "EnvoyFilter");
    manifest["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|patch| patch["patch"]["value"].clone())
        .collect()
}

fn without_config(mut filter: Value) -> Value {
    if let Some(config) = filter["typed_config"].get_mut("filter_config") {
        config["value"] = Value::Null;
    }
    filter
}

#[test]
fn the_envoyfilter_inserts_the_filters_the_suite_runs() {
    let template =
        std::fs::read_to_string(tools::repo_root().join("envoy/filter-native.yaml.tmpl"))
            .unwrap()
            .replace("__PLUGIN_CONFIG__", "\"{}\"");
    let suite = yaml(&template);
    let suite: Vec<Value> = suite
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .map(without_config)
        .collect();
    let patched: Vec<Value> = patched_filters().into_iter().map(without_config).collect();
    assert_eq!(patched, suite);
}

/// The EnvoyFilter's configuration, run by the native twin: billing-service in `finance`,
/// with a verified token's scope read through filter state.
#[test]
fn the_envoyfilter_configuration_works_in_envoy() {
    let filters = patched_filters();
    let plugin: Value = serde_json::from_str(
        filters[1]["typed_config"]["filter_config"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut envoy =
        Envoy::start_twin(Twin::Native, plugin).unwrap_or_else(|error| panic!("{error}"));
    let write = envoy.pki().token(&shop_claims("credits:write")).unwrap();
    let read = envoy.pki().token(&shop_claims("credits:read")).unwrap();
    let post = |via, token: &str| {
        Request::new(via, "POST", "/v1/credits")
            .bearer(token)
            .send(&envoy)
            .unwrap()
            .status
    };
    assert_eq!(post(Via::Mtls("order-engine"), &write), 200);
    assert_eq!(
        post(Via::Mtls("order-engine"), &read),
        403,
        "the scope matters"
    );
    assert_eq!(post(Via::Mtls("frontend"), &write), 403);
    let orders = Request::new(Via::Mtls("frontend"), "GET", "/v1/orders")
        .send(&envoy)
        .unwrap();
    assert_eq!(orders.status, 403);
    let records = envoy.decision_records_at_least(3).unwrap();
    assert_eq!(records[0]["destination"]["namespace"], "finance");
    // Records are written for denials: the first is the read-scoped token's.
    assert_eq!(
        records[0]["request"]["auth"]["claims"]["scope"],
        "credits:read"
    );
}
