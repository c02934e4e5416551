//! `envoy/istio/wasmplugin.yaml`: a WasmPlugin in the AUTHZ phase whose `pluginConfig` is
//! the shop's policies, and which works, verbatim, in Envoy: the bootstrap carries the node
//! metadata an Istio sidecar of billing-service in `finance` has, so the filter finds its
//! workload the way it does under Istio.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_e2e::client::{Request, Via};
use cordon_e2e::envoy::Envoy;
use cordon_e2e::tools::{self, shop_claims};
use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::String(text) => Value::String(text.clone()),
        Yaml::Integer(number) => Value::Number(Number::from(*number)),
        Yaml::Real(text) => Value::Number(Number::from_f64(text.parse().unwrap()).unwrap()),
        Yaml::Boolean(flag) => Value::Bool(*flag),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.as_str().unwrap().to_string(), to_json(value)))
                .collect::<Map<_, _>>(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML node {other:?}"),
    }
}

fn manifest() -> Value {
    let path = tools::repo_root().join("envoy/istio/wasmplugin.yaml");
    let docs = YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(docs.len(), 1, "one object in wasmplugin.yaml");
    to_json(&docs[0])
}

#[test]
fn wasmplugin_runs_in_the_authz_phase_with_the_shop_policies() {
    let manifest = manifest();
    assert_eq!(manifest["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(manifest["kind"], "WasmPlugin");
    let spec = &manifest["spec"];
    assert_eq!(
        spec["phase"], "AUTHZ",
        "after jwt_authn, before Istio's RBAC"
    );
    assert_eq!(spec["pluginName"], "cordon");
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
    assert_eq!(
        spec["pluginConfig"]["policies"],
        tools::shop_policies().unwrap(),
        "pluginConfig.policies is policies/examples/shop/policies.json"
    );
}

/// The manifest's pluginConfig names no workload: each sidecar finds its own in Istio's node
/// metadata, which Envoy 1.40 serves at `xds.node.metadata.NAMESPACE` / `LABELS`. Here the
/// proxy is billing-service in `finance`, so frontend's `GET /v1/orders` (allowed only at
/// `app: orders`) must be denied.
#[test]
fn wasmplugin_config_works_verbatim_in_envoy() {
    let plugin = manifest()["spec"]["pluginConfig"].clone();
    assert!(
        plugin.get("workload").is_none(),
        "the workload comes from the node"
    );
    check_shop_as_billing_service(plugin);
}

/// The same configuration naming its workload itself: a `workload` in the configuration
/// takes the place of the node metadata.
#[test]
fn wasmplugin_config_with_its_workload_works_in_envoy() {
    let mut plugin = manifest()["spec"]["pluginConfig"].clone();
    plugin["workload"] =
        serde_json::json!({"namespace": "finance", "labels": {"app": "billing-service"}});
    check_shop_as_billing_service(plugin);
}

fn check_shop_as_billing_service(plugin: Value) {
    let mut envoy = Envoy::start(plugin).unwrap_or_else(|error| panic!("{error}"));
    let write = envoy.pki().token(&shop_claims("credits:write")).unwrap();
    let post = |via| {
        Request::new(via, "POST", "/v1/credits")
            .bearer(&write)
            .send(&envoy)
            .unwrap()
    };
    assert_eq!(post(Via::Mtls("order-engine")).status, 200);
    assert_eq!(post(Via::Mtls("frontend")).status, 403);
    // orders-allow selects app: orders, not this workload: frontend gets nothing from it.
    let orders = Request::new(Via::Mtls("frontend"), "GET", "/v1/orders")
        .send(&envoy)
        .unwrap();
    assert_eq!(orders.status, 403);

    let records = envoy.decision_records_at_least(2).unwrap();
    assert_eq!(records[0]["destination"]["namespace"], "finance");
    assert_eq!(
        records[0]["destination"]["labels"]["app"],
        "billing-service"
    );
}
