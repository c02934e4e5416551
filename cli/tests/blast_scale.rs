//! `cordon blast-radius` through the binary, beyond the shop: `--principal` must be an
//! identity (exit 2 naming the problem), `--namespace` and `--workload` choose the
//! workloads, the ingress gateway's root-namespace policy shows with the gateway, and the
//! streamed JSON of a generated mesh is one document with a reach item per identity and
//! workload.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod support;

use serde_json::{json, Value};
use support::{cordon, stderr, stdout, tempdir};

const SHOP: &str = "policies/examples/shop/policies.yaml";

#[test]
fn a_principal_that_is_not_an_identity_is_exit_2_naming_the_problem() {
    let output = cordon(&[
        "blast-radius",
        "--policy",
        SHOP,
        "--principal",
        "shop/orders",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let error = stderr(&output);
    assert!(
        error.contains("--principal `shop/orders` is not an identity"),
        "{error}"
    );
    assert!(error.contains("cluster.local/ns/shop/sa/orders"), "{error}");
    assert!(stdout(&output).is_empty());
    let output = cordon(&["blast-radius", "--policy", SHOP, "--workload", "orders"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--workload `orders` has no namespace"));
    // What it accepts.
    for principal in [
        "spiffe://cluster.local/ns/shop/sa/frontend",
        "cluster.local/ns/shop/sa/frontend",
        "authenticated",
        "plaintext",
    ] {
        let output = cordon(&["blast-radius", "--policy", SHOP, "--principal", principal]);
        assert!(output.status.success(), "{principal}: {}", stderr(&output));
    }
}

#[test]
fn namespace_and_workload_choose_the_workloads() {
    let json = |extra: &[&str]| -> Value {
        let mut args = vec!["blast-radius", "--policy", SHOP, "--format", "json"];
        args.extend(extra);
        let output = cordon(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let all = json(&[]);
    let finance = json(&["--namespace", "finance"]);
    assert_eq!(
        finance["workloads"],
        json!(["finance/billing-service", "finance/*"])
    );
    let orders = json(&["--workload", "shop/orders", "--principal", "plaintext"]);
    assert_eq!(orders["workloads"], json!(["shop/orders"]));
    assert_eq!(orders["reach"].as_array().unwrap().len(), 1);
    // The same answer as without the filter.
    let from_all = all["reach"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["identity"] == "plaintext" && r["workload"] == "shop/orders")
        .unwrap();
    assert_eq!(&orders["reach"][0], from_all);
    let identities = all["identities"].as_array().unwrap().len();
    assert_eq!(finance["reach"].as_array().unwrap().len(), identities * 2);
    // A namespace no policy names: its workloads are open, and it says so.
    let output = cordon(&["blast-radius", "--policy", SHOP, "--namespace", "web"]);
    assert!(output.status.success());
    assert!(
        stderr(&output).contains("warning: --namespace web"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("web/*"));
}

/// Istio's ingress gateway example: a policy in the root namespace whose selector picks
/// the gateway.
#[test]
fn the_ingress_gateway_policy_shows_with_the_gateway() {
    let dir = tempdir();
    let file = dir.join("gateway.yaml");
    std::fs::write(
        &file,
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ingress-policy
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: istio-ingressgateway
  action: ALLOW
  rules:
  - from:
    - source:
        ipBlocks: [\"1.2.3.4\", \"5.6.7.0/24\"]
",
    )
    .unwrap();
    let output = cordon(&[
        "blast-radius",
        "--policy",
        file.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        value["workloads"],
        json!(["istio-system/istio-ingressgateway"])
    );
    let reach = value["reach"].as_array().unwrap();
    assert!(!reach.is_empty());
    for item in reach {
        assert_eq!(item["access"], "conditional", "{item}");
        let condition = item["grants"][0]["conditions"][0].as_str().unwrap();
        assert!(condition.starts_with("ipBlocks in [1.2.3.4"), "{condition}");
    }
}

/// The generated mesh (`mesh_policies`), 5 namespaces: the JSON is one document, with one
/// reach item per identity and workload, in every format the same reach.
#[test]
fn a_generated_mesh_streams_one_document() {
    let dir = tempdir();
    let file = dir.join("mesh.json");
    let policies = cordon_lifecycle::blast_radius::mesh::policies(5, 1);
    std::fs::write(&file, serde_json::to_string(&policies).unwrap()).unwrap();
    let run = |format: &str| {
        let output = cordon(&[
            "blast-radius",
            "--policy",
            file.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    let value: Value = serde_json::from_str(&run("json")).unwrap();
    let identities = value["identities"].as_array().unwrap().len();
    let workloads = value["workloads"].as_array().unwrap().len();
    assert_eq!(workloads, 5 * 50);
    assert!(identities > 50, "{identities}");
    let reach = value["reach"].as_array().unwrap();
    assert_eq!(reach.len(), identities * workloads);
    let reached = reach.iter().filter(|r| r["access"] != "none").count();
    let dot = run("dot");
    assert_eq!(dot.matches(" -> ").count(), reached);
    let table = run("table");
    assert_eq!(
        table.lines().next().unwrap().matches("  ns0").count(),
        workloads
    );
}
