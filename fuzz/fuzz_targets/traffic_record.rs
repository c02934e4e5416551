//! Traffic-record parsing from arbitrary JSON: never panics, and every record it accepts
//! is decided identically by the compiled evaluator and the reference interpreter under
//! the shop example's policies and a set of adversarial ones.
#![no_main]

use std::sync::OnceLock;

use cordon_engine::{Options, TrafficRecord};
use cordon_fuzz::check_agreement;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn policies() -> &'static [Value] {
    static POLICIES: OnceLock<Vec<Value>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let shop = include_str!("../../policies/examples/shop/policies.json");
        let mut policies: Vec<Value> = match serde_json::from_str(shop) {
            Ok(Value::Array(items)) => items,
            Ok(other) => vec![other],
            Err(_) => Vec::new(),
        };
        policies.push(json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-admin", "namespace": "istio-system"},
            "spec": {"action": "DENY", "rules": [
                {"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]},
                {"when": [{"key": "request.headers[x-user]", "values": ["admin"]}]},
                {"from": [{"source": {"notPrincipals": ["*"]}}], "to": [{"operation": {"methods": ["DELETE"]}}]}
            ]}
        }));
        policies
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(record) = TrafficRecord::from_json(&value) else {
        return;
    };
    let _ = record.workload();
    check_agreement(policies(), &Options::default(), &record);
});
