//! Policy parsing and compilation from arbitrary JSON: every input is either compiled or
//! refused with at least one error naming a policy; nothing panics. Compiled sets are
//! then checked against the reference interpreter on a few fixed requests, once with the
//! default options and once with tight limits and trust domain aliases.
#![no_main]

use std::sync::OnceLock;

use cordon_engine::{Limits, Options, PathNormalization, PolicySet, TrafficRecord};
use cordon_fuzz::check_agreement;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn requests() -> &'static [TrafficRecord] {
    static REQUESTS: OnceLock<Vec<TrafficRecord>> = OnceLock::new();
    REQUESTS.get_or_init(|| {
        [
            json!({"source": {"principal": "spiffe://cluster.local/ns/shop/sa/order-engine", "ip": "10.0.0.5"},
                   "destination": {"ip": "10.0.1.7", "port": 8080},
                   "connection": {"sni": "billing.finance.svc.cluster.local"},
                   "request": {"method": "POST", "path": "/v1/credits?x=1", "host": "billing.finance.svc.cluster.local:8080",
                               "headers": {"x-env": "prod", "x-user": ["user", "admin"]},
                               "auth": {"claims": {"iss": "https://idp.shop.example", "sub": "alice", "aud": ["billing"], "scope": "credits:write"}}}}),
            json!({"source": {"principal": "spiffe://old.td/ns/a/sa/x", "ip": "192.168.1.1"},
                   "destination": {"namespace": "finance", "labels": {"app": "billing-service"}},
                   "request": {"method": "GET", "path": "/admin/../public/%2e%2e/admin", "host": "API.EXAMPLE.COM"}}),
            json!({"request": {"method": "DELETE", "path": "//admin;x=1", "headers": {"x-debug": ""}}}),
        ]
        .iter()
        .map(|value| TrafficRecord::from_json(value).expect("fixed requests are valid"))
        .collect()
    })
}

fn run(policies: &[Value], options: &Options) {
    match PolicySet::compile(policies, options.clone()) {
        Ok(set) => {
            let _ = set.needs();
            for warning in set.warnings() {
                let _ = warning.to_string();
            }
            for record in requests() {
                check_agreement(policies, options, record);
            }
        }
        Err(error) => {
            assert!(!error.errors.is_empty(), "a refusal must say why");
            let _ = error.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let policies = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    run(&policies, &Options::default());
    let tight = Options {
        trust_domain: Some("cluster.local".into()),
        trust_domain_aliases: vec!["old.td".into()],
        path_normalization: PathNormalization::Base,
        limits: Limits {
            max_policies: 4,
            max_rules: 6,
            max_terms_per_rule: 4,
            max_terms: 8,
            max_values_per_attribute: 6,
            max_automaton_bytes: 4096,
            max_path_bytes: 16,
            max_header_bytes: 8,
        },
        ..Options::default()
    };
    run(&policies, &tight);
});
