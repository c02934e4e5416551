//! Hostile configurations and requests through the filter's glue, over the in-memory
//! proxy [`FakeHost`]: truncated and mistyped configuration, limits, headers over the
//! examined-bytes limit, and forged forwarded headers. Every configuration problem is a
//! clear error naming its field; no input panics. Oversized documents and the memory they
//! take are in `memory.rs`, alone in their test binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use cordon_filter::config::{self, ConfigError, FilterConfig};
use cordon_filter::decide::{Filter, Verdict};
use cordon_filter::testing::FakeHost;
use serde_json::{json, Value};

/// A GET to the billing service, over the shared in-memory proxy.
fn request(path: &str) -> FakeHost {
    FakeHost::request("GET", path, "billing")
}

fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "finance"},
        "spec": spec,
    })
}

fn load(config: &[u8]) -> Result<FilterConfig, Vec<ConfigError>> {
    config::load(config, &FakeHost::default())
}

fn shop_config() -> Value {
    let policies: Value =
        serde_json::from_str(include_str!("../../policies/examples/shop/policies.json")).unwrap();
    json!({
        "policies": policies,
        "workload": {"namespace": "finance", "labels": {"app": "billing-service"}},
        "identity": {"source": "peer_certificate"},
        "decision_log": {"enabled": true, "level": "info", "allow_sample_rate": 0.5},
        "limits": {"max_rules": 1000},
    })
}

/// Every proper prefix of a valid configuration is refused with an error, never a panic
/// or a half-loaded configuration.
#[test]
fn truncated_configurations_are_refused() {
    let text = serde_json::to_vec_pretty(&shop_config()).unwrap();
    assert!(load(&text).is_ok());
    for end in 0..text.len() {
        let errors = match load(&text[..end]) {
            Ok(_) => panic!("a configuration cut at byte {end} was accepted"),
            Err(errors) => errors,
        };
        assert!(!errors.is_empty());
        assert!(
            errors[0].message.contains("not valid JSON"),
            "cut at {end}: {}",
            errors[0]
        );
    }
    // Bytes that are not UTF-8, and JSON that is not an object.
    for bad in [
        &b"\xff\xfe{}"[..],
        b"null",
        b"[]",
        b"\"policies\"",
        b"1e999",
    ] {
        assert!(load(bad).is_err(), "{bad:?}");
    }
}

/// Each configuration key given each wrong JSON type is refused with an error naming the
/// key.
#[test]
fn wrong_types_in_every_configuration_field_are_refused() {
    let wrong: [Value; 6] = [
        json!(null),
        json!(true),
        json!(-1),
        json!("text"),
        json!([1]),
        json!({"x": 1}),
    ];
    let accepted: BTreeMap<&str, Vec<Value>> = BTreeMap::from([
        ("policies", vec![json!([1])]), // a list, of invalid policies: refused below
        ("root_namespace", vec![json!("text")]),
        ("trust_domain", vec![json!("text")]),
        ("dry_run", vec![json!(true)]),
    ]);
    let keys = [
        "policies",
        "workload",
        "root_namespace",
        "trust_domain",
        "trust_domain_aliases",
        "path_normalization",
        "identity",
        "jwt",
        "deny_response",
        "decision_log",
        "dry_run",
        "limits",
        "trusted_proxy_hops",
    ];
    for key in keys {
        for value in &wrong {
            let mut config = json!({"policies": []});
            config[key] = value.clone();
            let result = load(config.to_string().as_bytes());
            let ok_here =
                accepted.get(key).is_some_and(|ok| ok.contains(value)) && key != "policies";
            match result {
                Ok(_) if ok_here => {}
                Ok(_) => panic!("{key}: {value} was accepted"),
                Err(errors) => {
                    assert!(
                        errors.iter().any(|error| error.field.starts_with(key)),
                        "{key}: {value}: {errors:?}"
                    );
                }
            }
        }
    }
    // Nested fields.
    let nested = [
        (json!({"workload": {"namespace": 1}}), "workload.namespace"),
        (json!({"workload": {"labels": []}}), "workload.labels"),
        (json!({"identity": {"source": 1}}), "identity.source"),
        (json!({"jwt": {"payload_key": []}}), "jwt.payload_key"),
        (
            json!({"deny_response": {"status": "403"}}),
            "deny_response.status",
        ),
        (
            json!({"deny_response": {"status": 200}}),
            "deny_response.status",
        ),
        (
            json!({"decision_log": {"enabled": "yes"}}),
            "decision_log.enabled",
        ),
        (json!({"decision_log": {"level": 3}}), "decision_log.level"),
        (
            json!({"decision_log": {"allow_sample_rate": "1"}}),
            "decision_log.allow_sample_rate",
        ),
        (
            json!({"trust_domain_aliases": [1]}),
            "trust_domain_aliases[0]",
        ),
        (json!({"trusted_proxy_hops": 17}), "trusted_proxy_hops"),
        (
            json!({"path_normalization": "strict"}),
            "path_normalization",
        ),
    ];
    for (fields, field) in nested {
        let mut config = json!({"policies": []});
        for (key, value) in fields.as_object().unwrap() {
            config[key] = value.clone();
        }
        let errors = load(config.to_string().as_bytes()).unwrap_err();
        assert_eq!(errors[0].field, field, "{config}");
    }
}

/// Every limit is configurable, must be a positive integer, and names itself when a
/// configuration exceeds it.
#[test]
fn limits_are_configurable_and_checked() {
    let limits = [
        "max_policies",
        "max_rules",
        "max_terms_per_rule",
        "max_terms",
        "max_values_per_attribute",
        "max_automaton_bytes",
        "max_path_bytes",
        "max_header_bytes",
    ];
    for key in limits {
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("10"),
            json!(true),
            json!(null),
        ] {
            let config = json!({"policies": [], "limits": {key: bad}});
            let errors = load(config.to_string().as_bytes()).unwrap_err();
            assert_eq!(errors[0].field, format!("limits.{key}"));
            assert!(errors[0].message.contains("positive integer"));
        }
        let config = json!({"policies": [], "limits": {key: 1}});
        assert!(load(config.to_string().as_bytes()).is_ok(), "{key}");
    }
    let config = json!({"policies": [], "limits": {"max_rule": 1}});
    assert_eq!(
        load(config.to_string().as_bytes()).unwrap_err()[0].field,
        "limits.max_rule"
    );

    // The shop's policies against limits of 1: each refusal names its limit.
    let policies = shop_config()["policies"].clone();
    for (key, expected) in [
        ("max_policies", "limits.max_policies"),
        ("max_rules", "limits.max_rules"),
        (
            "max_values_per_attribute",
            "limits.max_values_per_attribute",
        ),
    ] {
        let config = json!({"policies": policies, "limits": {key: 1}});
        let errors = load(config.to_string().as_bytes()).unwrap_err();
        assert!(
            errors.iter().any(|error| error.message.contains(expected)),
            "{key}: {errors:?}"
        );
    }
}

/// A request whose examined headers exceed limits.max_header_bytes is refused with 431,
/// even when the policies would allow it; headers no rule reads are not counted.
#[test]
fn headers_over_the_examined_limit_get_431() {
    let config = json!({
        "policies": [
            policy("deny-admin", json!({"action": "DENY", "rules": [{"when": [{"key": "request.headers[x-user]", "values": ["admin"]}]}]})),
            policy("allow-all", json!({"rules": [{}]})),
        ],
        "limits": {"max_header_bytes": 100},
    });
    let filter = Filter::new(load(config.to_string().as_bytes()).unwrap());
    let host = request("/").with_header("x-user", &"u,".repeat(60));
    assert_eq!(filter.on_request_headers(&host), Verdict::Stop);
    assert_eq!(host.status(), Some(431));
    let host = request("/")
        .with_header("x-user", "user")
        .with_header("x-other", &"z".repeat(10_000));
    assert_eq!(filter.on_request_headers(&host), Verdict::Continue);
    // One line is one value, never split at commas (Envoy 1.40's header matcher): the
    // DENY fires on a line of its own.
    let host = request("/").with_header("x-user", "user,admin");
    assert_eq!(filter.on_request_headers(&host), Verdict::Continue);
    let host = request("/")
        .with_header("x-user", "user")
        .with_header("x-user", "admin");
    assert_eq!(filter.on_request_headers(&host), Verdict::Stop);
    assert_eq!(host.status(), Some(403));
}

fn order_engine_only(identity: &str) -> Filter {
    let config = json!({
        "policies": [policy("credits", json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/order-engine"]}}]}]}))],
        "identity": {"source": identity},
    });
    Filter::new(load(config.to_string().as_bytes()).unwrap())
}

const ORDER_ENGINE: &str = "spiffe://cluster.local/ns/shop/sa/order-engine";
const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

/// With the default identity source, an x-forwarded-client-cert header is only a header:
/// the verified certificate decides.
#[test]
fn a_forged_forwarded_certificate_is_ignored_by_default() {
    let filter = order_engine_only("peer_certificate");
    for (peer, expected) in [(None, 403), (Some(FRONTEND), 403)] {
        let mut host = request("/v1/credits").with_header(
            "x-forwarded-client-cert",
            &format!("By=spiffe://cluster.local/ns/finance/sa/billing;URI={ORDER_ENGINE}"),
        );
        if let Some(peer) = peer {
            host = host.peer(peer);
        }
        assert_eq!(filter.on_request_headers(&host), Verdict::Stop);
        assert_eq!(host.status(), Some(expected));
    }
    let host = request("/v1/credits").peer(ORDER_ENGINE);
    assert_eq!(filter.on_request_headers(&host), Verdict::Continue);
}

/// Behind a trusted hop (identity source x_forwarded_client_cert), only the element the
/// nearest hop appended counts: elements a client sent before it, extra header lines
/// before the last, and quoted separators inside values cannot smuggle an identity; a
/// malformed header is no identity at all.
#[test]
fn behind_a_trusted_hop_only_the_nearest_element_counts() {
    let filter = order_engine_only("x_forwarded_client_cert");
    let cases: [(&[&str], u16); 7] = [
        // The hop appended the client's real identity after the client's forgery.
        (
            &[&format!(
                "URI={ORDER_ENGINE},By=spiffe://td/hop;URI={FRONTEND}"
            )],
            403,
        ),
        // The forgery on an earlier header line.
        (
            &[&format!("URI={ORDER_ENGINE}"), &format!("URI={FRONTEND}")],
            403,
        ),
        // A quoted value holding a separator and a fake URI.
        (
            &[&format!(
                "Subject=\"CN=x,URI={ORDER_ENGINE}\";URI={FRONTEND}"
            )],
            403,
        ),
        // Unterminated quote: not half-read.
        (&[&format!("URI=\"{ORDER_ENGINE}")], 403),
        // The genuine nearest element.
        (&[&format!("URI={FRONTEND},URI={ORDER_ENGINE}")], 200),
        (&[&format!("Hash=\"a;b,c\";URI=\"{ORDER_ENGINE}\"")], 200),
        // Two URIs in the nearest element: the first one, as Envoy writes one per SAN.
        (&[&format!("URI={ORDER_ENGINE};URI={FRONTEND}")], 200),
    ];
    for (lines, expected) in cases {
        let mut host = request("/v1/credits");
        for line in lines {
            host = host.with_header("x-forwarded-client-cert", line);
        }
        let verdict = filter.on_request_headers(&host);
        let status = if verdict == Verdict::Continue {
            200
        } else {
            host.status().unwrap()
        };
        assert_eq!(status, expected, "{lines:?}");
    }
}

/// With trusted proxy hops, remote.ip is the entry that many places from the right: a
/// client cannot choose it by prepending entries.
#[test]
fn forged_forwarded_for_entries_do_not_choose_remote_ip() {
    let config = json!({
        "policies": [policy("office", json!({"rules": [{"from": [{"source": {"remoteIpBlocks": ["203.0.113.0/24"]}}]}]}))],
        "trusted_proxy_hops": 1,
    });
    let filter = Filter::new(load(config.to_string().as_bytes()).unwrap());
    for (lines, expected) in [
        (vec!["203.0.113.7, 198.51.100.1"], 403),
        (vec!["203.0.113.7", "198.51.100.1"], 403),
        (vec!["198.51.100.1, 203.0.113.7"], 200),
        (vec!["not-an-ip"], 403),
        (vec![""], 403),
    ] {
        let mut host = request("/").with_property(&["source", "address"], b"10.0.0.1:4000");
        for line in &lines {
            host = host.with_header("x-forwarded-for", line);
        }
        let verdict = filter.on_request_headers(&host);
        let status = if verdict == Verdict::Continue {
            200
        } else {
            host.status().unwrap()
        };
        assert_eq!(status, expected, "{lines:?}");
    }
}
