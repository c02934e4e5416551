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
use serde_json::Value;

/// The one YAML document of `text`, read by the reader `cordon` reads manifests with.
fn yaml(text: &str) -> Value {
    let mut docs = cordon_lifecycle::sources::parse_documents(text)
        .unwrap_or_else(|error| panic!("{error:?}\n{text}"));
    assert_eq!(docs.len(), 1, "one YAML document");
    docs.remove(0).value
}

fn manifest() -> Value {
    let path = tools::repo_root().join("envoy/istio/wasmplugin.yaml");
    yaml(&std::fs::read_to_string(path).unwrap())
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
