//! The filter's glue through the in-memory proxy [`FakeHost`]: configuration errors, attribute
//! decoding, and the decision → response mapping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_filter::config::{self, ConfigError};
use cordon_filter::decide::{Filter, Verdict, DECISION_PROPERTY};
use cordon_filter::encoding::encode_pairs;
use cordon_filter::host::{Counter, LogLevel};
use cordon_filter::testing::FakeHost;
use serde_json::{json, Value};

/// A request to the billing service, over the shared in-memory proxy.
fn request(method: &str, path: &str) -> FakeHost {
    FakeHost::request(method, path, "billing.finance.svc.cluster.local:8080")
}

/// Protobuf wire bytes, written by hand the way Envoy's protobuf library writes them.
mod pb {
    use serde_json::Value;

    pub fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    pub fn bytes_field(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    /// A `google.protobuf.Value`.
    pub fn value(json: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        match json {
            Value::Null => out.extend_from_slice(&[0x08, 0x00]),
            Value::Number(number) => {
                out.push(0x11);
                out.extend_from_slice(&number.as_f64().unwrap().to_le_bytes());
            }
            Value::String(text) => bytes_field(3, text.as_bytes(), &mut out),
            Value::Bool(flag) => out.extend_from_slice(&[0x20, u8::from(*flag)]),
            Value::Object(_) => bytes_field(5, &structure(json), &mut out),
            Value::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    bytes_field(1, &value(item), &mut list);
                }
                bytes_field(6, &list, &mut out);
            }
        }
        out
    }

    /// A `google.protobuf.Struct`.
    pub fn structure(json: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, item) in json.as_object().unwrap() {
            let mut entry = Vec::new();
            bytes_field(1, key.as_bytes(), &mut entry);
            bytes_field(2, &value(item), &mut entry);
            bytes_field(1, &entry, &mut out);
        }
        out
    }

    /// An `envoy.config.core.v3.Metadata` with one `filter_metadata` entry.
    pub fn metadata(namespace: &str, fields: &Value) -> Vec<u8> {
        let mut entry = Vec::new();
        bytes_field(1, namespace.as_bytes(), &mut entry);
        bytes_field(2, &structure(fields), &mut entry);
        let mut out = Vec::new();
        bytes_field(1, &entry, &mut out);
        out
    }
}

/// What Envoy 1.40 answers for the property `metadata` after `jwt_authn` verified a token
/// with these claims (`payload_in_metadata: payload`).
fn jwt_metadata(claims: &Value) -> Vec<u8> {
    pb::metadata("envoy.filters.http.jwt_authn", &json!({"payload": claims}))
}

fn credits_policy() -> Value {
    json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "credits", "namespace": "finance"},
        "spec": {"rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/order-engine"]}}],
            "to": [{"operation": {"methods": ["POST"], "paths": ["/v1/credits"]}}]
        }]}
    })
}

fn load(config: Value) -> Filter {
    let host = FakeHost::default();
    Filter::new(config::load(config.to_string().as_bytes(), &host).unwrap())
}

fn errors(config: &str) -> Vec<ConfigError> {
    config::load(config.as_bytes(), &FakeHost::default())
        .expect_err("configuration should be rejected")
}

#[test]
fn every_configuration_error_names_its_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("{", "", "not valid json"),
        ("[]", "", "expected an object"),
        ("{}", "policies", "missing"),
        (r#"{"policies": {}}"#, "policies", "expected a list"),
        (
            r#"{"policies": [], "polices": []}"#,
            "polices",
            "unknown field",
        ),
        (
            r#"{"policies": [], "root_namespace": 3}"#,
            "root_namespace",
            "expected a string",
        ),
        (
            r#"{"policies": [], "root_namespace": ""}"#,
            "root_namespace",
            "must not be empty",
        ),
        (
            r#"{"policies": [], "trust_domain_aliases": "x"}"#,
            "trust_domain_aliases",
            "list of strings",
        ),
        (
            r#"{"policies": [], "trust_domain_aliases": [""]}"#,
            "trust_domain_aliases[0]",
            "non-empty",
        ),
        (
            r#"{"policies": [], "path_normalization": "LOOSE"}"#,
            "path_normalization",
            "unknown mode",
        ),
        (
            r#"{"policies": [], "workload": {"ns": "x"}}"#,
            "workload.ns",
            "unknown field",
        ),
        (
            r#"{"policies": [], "workload": {"labels": {"app": 1}}}"#,
            "workload.labels.app",
            "expected a string",
        ),
        (
            r#"{"policies": [], "identity": {"source": "header"}}"#,
            "identity.source",
            "unknown source",
        ),
        (
            r#"{"policies": [], "jwt": {"payload": "x"}}"#,
            "jwt.payload",
            "unknown field",
        ),
        (
            r#"{"policies": [], "deny_response": {"status": 200}}"#,
            "deny_response.status",
            "400 to 599",
        ),
        (
            r#"{"policies": [], "deny_response": {"body": 1}}"#,
            "deny_response.body",
            "expected a string",
        ),
        (
            r#"{"policies": [], "decision_log": {"level": "loud"}}"#,
            "decision_log.level",
            "unknown level",
        ),
        (
            r#"{"policies": [], "decision_log": {"allow_sample_rate": 2}}"#,
            "decision_log.allow_sample_rate",
            "0 to 1",
        ),
        (
            r#"{"policies": [], "decision_log": {"enabled": "yes"}}"#,
            "decision_log.enabled",
            "true or false",
        ),
        (
            r#"{"policies": [], "dry_run": "yes"}"#,
            "dry_run",
            "true or false",
        ),
        (
            r#"{"policies": [], "limits": {"max_rules": 0}}"#,
            "limits.max_rules",
            "positive integer",
        ),
        (
            r#"{"policies": [], "limits": {"max_rulez": 1}}"#,
            "limits.max_rulez",
            "unknown field",
        ),
    ];
    for (config, field, message) in cases {
        let found = errors(config);
        assert!(
            found.iter().any(
                |error| error.field == *field && error.message.to_lowercase().contains(message)
            ),
            "{config}: expected `{field}: …{message}…`, got {found:?}"
        );
    }
}

#[test]
fn policy_errors_name_the_policy_and_field() {
    let mut policy = credits_policy();
    policy["spec"]["rules"][0]["to"][0]["operation"]["pathz"] = json!(["/x"]);
    let found = errors(&json!({"policies": [{"metadata": {"name": "ok"}}, policy]}).to_string());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].field,
        "policies[1].spec.rules[0].to[0].operation.pathz"
    );
    assert!(
        found[0].message.contains("finance/credits"),
        "{}",
        found[0].message
    );
    assert!(
        found[0].message.contains("did you mean `paths`"),
        "{}",
        found[0].message
    );
}

#[test]
fn allows_and_denies_as_the_policy_says() {
    let filter =
        load(json!({"policies": [credits_policy()], "workload": {"namespace": "finance"}}));
    let allowed =
        request("POST", "/v1/credits").peer("spiffe://cluster.local/ns/shop/sa/order-engine");
    assert_eq!(filter.on_request_headers(&allowed), Verdict::Continue);
    assert!(allowed.response.borrow().is_none());
    assert_eq!(allowed.counter(Counter::Allowed), 1);
    let state: Value = serde_json::from_slice(&allowed.set.borrow()[DECISION_PROPERTY]).unwrap();
    assert_eq!(state["policy"], "ns[finance]-policy[credits]-rule[0]");
    assert!(
        allowed.logs.borrow().is_empty(),
        "allowed requests are not logged at sample rate 0"
    );

    let denied = request("POST", "/v1/credits").peer("spiffe://cluster.local/ns/shop/sa/frontend");
    assert_eq!(filter.on_request_headers(&denied), Verdict::Stop);
    assert_eq!(
        *denied.response.borrow(),
        Some((403, b"RBAC: access denied".to_vec()))
    );
    assert_eq!(denied.counter(Counter::Denied), 1);
    let logs = denied.logs.borrow();
    let (level, line) = &logs[0];
    assert_eq!(*level, LogLevel::Info);
    let record: Value =
        serde_json::from_str(line.strip_prefix("cordon.decision ").unwrap()).unwrap();
    assert_eq!(
        record["source"]["principal"],
        "spiffe://cluster.local/ns/shop/sa/frontend"
    );
    assert_eq!(record["decision"]["allowed"], false);
    assert_eq!(record["decision"]["reason"], "no_allow_match");
    assert_eq!(record["time"], "2026-11-30T00:53:20.000Z");
    // The decision record is a traffic record: it replays.
    let replayed = cordon_engine::TrafficRecord::from_json(&record).unwrap();
    assert_eq!(replayed.method.as_deref(), Some("POST"));
}

#[test]
fn plaintext_and_forged_forwarded_certificates_are_not_identities() {
    let filter = load(json!({"policies": [credits_policy()]}));
    let plaintext = request("POST", "/v1/credits");
    assert_eq!(filter.on_request_headers(&plaintext), Verdict::Stop);
    let forged = request("POST", "/v1/credits")
        .peer("spiffe://cluster.local/ns/shop/sa/frontend")
        .with_header(
            "x-forwarded-client-cert",
            "URI=spiffe://cluster.local/ns/shop/sa/order-engine",
        );
    assert_eq!(filter.on_request_headers(&forged), Verdict::Stop);

    let trusting = load(
        json!({"policies": [credits_policy()], "identity": {"source": "x_forwarded_client_cert"}}),
    );
    let forwarded = request("POST", "/v1/credits").with_header(
        "x-forwarded-client-cert",
        "By=spiffe://cluster.local/ns/a/sa/gw;URI=spiffe://cluster.local/ns/shop/sa/frontend,By=x;URI=spiffe://cluster.local/ns/shop/sa/order-engine",
    );
    assert_eq!(trusting.on_request_headers(&forwarded), Verdict::Continue);
}

#[test]
fn fetches_only_what_the_policy_needs() {
    let filter = load(json!({"policies": [credits_policy()]}));
    let host =
        request("POST", "/v1/credits").peer("spiffe://cluster.local/ns/shop/sa/order-engine");
    filter.on_request_headers(&host);
    let calls = host.calls.borrow();
    assert_eq!(
        *calls,
        vec![
            "header :path",
            "header :method",
            "property connection.uri_san_peer_certificate"
        ],
        "no header map, no metadata, no addresses"
    );
}

#[test]
fn reads_claims_ports_and_addresses_as_envoy_encodes_them() {
    let policy = json!({
        "metadata": {"name": "scoped", "namespace": "finance"},
        "spec": {"rules": [{
            "from": [{"source": {"requestPrincipals": ["https://idp.example/alice"], "ipBlocks": ["10.0.0.0/8"]}}],
            "to": [{"operation": {"ports": ["8080"]}}],
            "when": [
                {"key": "request.auth.claims[scope]", "values": ["credits:write"]},
                {"key": "request.auth.audiences", "values": ["billing"]},
                {"key": "request.auth.claims[org][team]", "values": ["blue"]},
                {"key": "request.headers[x-env]", "values": ["prod"]},
                {"key": "destination.ip", "values": ["10.0.1.7"]}
            ]
        }]}
    });
    let filter = load(json!({"policies": [policy]}));
    let payload = jwt_metadata(&json!({
        "iss": "https://idp.example",
        "sub": "alice",
        "scope": "credits:read credits:write",
        "aud": ["orders", "billing"],
        "org": {"team": "blue"},
        "iat": 1.7e9
    }));
    let base = || {
        request("GET", "/x")
            .with_header("x-env", "dev")
            .with_header("x-env", "prod")
            .with_property(&["source", "address"], b"10.0.0.5:49534")
            .with_property(&["destination", "address"], b"10.0.1.7:8080")
            .with_property(&["destination", "port"], &8080u64.to_le_bytes())
    };
    let host = base().with_property(&["metadata"], &payload);
    assert_eq!(
        filter.on_request_headers(&host),
        Verdict::Continue,
        "{:?}",
        host.set.borrow()
    );
    let no_token = base();
    assert_eq!(filter.on_request_headers(&no_token), Verdict::Stop);
    let record: Value = serde_json::from_str(
        no_token.logs.borrow()[0]
            .1
            .strip_prefix("cordon.decision ")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        record["request"]["headers"]["x-env"],
        json!(["dev", "prod"])
    );
    assert_eq!(record["destination"]["port"], 8080);
}

#[test]
fn rejected_paths_get_400_and_dry_run_lets_everything_through() {
    let filter = load(json!({"policies": [credits_policy()]}));
    let host =
        request("POST", "/v1/credits%2F").peer("spiffe://cluster.local/ns/shop/sa/order-engine");
    assert_eq!(filter.on_request_headers(&host), Verdict::Stop);
    assert_eq!(host.response.borrow().as_ref().unwrap().0, 400);
    assert_eq!(host.counter(Counter::PathRejected), 1);

    let shadow = load(
        json!({"policies": [credits_policy()], "dry_run": true, "deny_response": {"status": 418, "body": "no"}}),
    );
    let host = request("GET", "/v1/credits");
    assert_eq!(shadow.on_request_headers(&host), Verdict::Continue);
    assert_eq!(host.counter(Counter::DryRunDenied), 1);
    assert_eq!(host.counter(Counter::Allowed), 1);
    assert!(
        host.logs.borrow()[0].1.contains("\"allowed\":true"),
        "{:?}",
        host.logs.borrow()
    );

    let strict = load(
        json!({"policies": [credits_policy()], "deny_response": {"status": 418, "body": "no"}}),
    );
    let host = request("GET", "/v1/credits");
    strict.on_request_headers(&host);
    assert_eq!(*host.response.borrow(), Some((418, b"no".to_vec())));
}

#[test]
fn dry_run_policies_are_counted_not_enforced() {
    let mut deny = json!({
        "metadata": {"name": "no-get", "namespace": "finance", "annotations": {"istio.io/dry-run": "true"}},
        "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}
    });
    let filter = load(json!({"policies": [deny.clone()]}));
    let host = request("GET", "/");
    assert_eq!(filter.on_request_headers(&host), Verdict::Continue);
    assert_eq!(host.counter(Counter::DryRunDenied), 1);
    let record = &host.logs.borrow()[0].1;
    assert!(
        record.contains("ns[finance]-policy[no-get]-rule[0]"),
        "{record}"
    );
    deny["metadata"]["annotations"]["istio.io/dry-run"] = json!("false");
    let filter = load(json!({"policies": [deny]}));
    assert_eq!(
        filter.on_request_headers(&request("GET", "/")),
        Verdict::Stop
    );
}

#[test]
fn workload_comes_from_istio_node_metadata() {
    let policy = credits_policy();
    let host = FakeHost::default()
        .with_property(&["node", "metadata", "NAMESPACE"], b"shop")
        .with_property(
            &["node", "metadata", "LABELS"],
            &encode_pairs(&[(b"app", b"orders")]),
        );
    let filter = Filter::new(
        config::load(json!({"policies": [policy]}).to_string().as_bytes(), &host).unwrap(),
    );
    // The finance policy does not apply to a shop workload: no ALLOW policy, so allow.
    assert_eq!(filter.config().policies.rules().len(), 0);
    assert_eq!(
        filter.on_request_headers(&request("GET", "/")),
        Verdict::Continue
    );
}

#[test]
fn allowed_requests_are_sampled_at_the_configured_rate() {
    let filter = load(
        json!({"policies": [], "decision_log": {"allow_sample_rate": 0.25, "level": "debug"}}),
    );
    let mut logged = 0;
    for _ in 0..100 {
        let host = request("GET", "/");
        filter.on_request_headers(&host);
        let logs = host.logs.borrow();
        logged += logs.len();
        assert!(logs.iter().all(|(level, _)| *level == LogLevel::Debug));
    }
    assert_eq!(logged, 25);
}

#[test]
fn remote_ip_comes_from_trusted_forwarded_for_hops_only() {
    let policy = json!({
        "metadata": {"name": "office", "namespace": "finance"},
        "spec": {"rules": [{"from": [{"source": {"remoteIpBlocks": ["203.0.113.0/24"]}}]}]}
    });
    let request = || {
        request("GET", "/")
            .with_header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .with_header("x-forwarded-for", "10.0.0.1")
            .with_property(&["source", "address"], b"10.0.0.2:5000")
    };
    let untrusting = load(json!({"policies": [policy.clone()]}));
    assert_eq!(
        untrusting.on_request_headers(&request()),
        Verdict::Stop,
        "no trusted hops: remote.ip is the peer"
    );
    let one_hop = load(json!({"policies": [policy.clone()], "trusted_proxy_hops": 1}));
    assert_eq!(
        one_hop.on_request_headers(&request()),
        Verdict::Stop,
        "one hop: 10.0.0.1"
    );
    let two_hops = load(json!({"policies": [policy], "trusted_proxy_hops": 2}));
    assert_eq!(
        two_hops.on_request_headers(&request()),
        Verdict::Continue,
        "two hops: 203.0.113.9"
    );
}

#[test]
fn the_decision_summary_is_json_even_for_odd_policy_names() {
    let mut policy = credits_policy();
    policy["metadata"]["name"] = json!("we\"ird\\name\u{1}");
    let filter = load(json!({"policies": [policy]}));
    let host =
        request("POST", "/v1/credits").peer("spiffe://cluster.local/ns/shop/sa/order-engine");
    filter.on_request_headers(&host);
    let state: Value = serde_json::from_slice(&host.set.borrow()[DECISION_PROPERTY]).unwrap();
    assert_eq!(
        state["policy"],
        "ns[finance]-policy[we\"ird\\name\u{1}]-rule[0]"
    );
    assert_eq!(state["allowed"], true);
    assert_eq!(state["dry_run"]["allowed"], true);
    assert_eq!(state["status"], 200);
    assert_eq!(state["identity"], "verified");
}

/// An ALLOW policy with one rule: the claim at `key` must have one of `values`.
fn claim_policy(key: &str, values: &[&str]) -> Value {
    json!({
        "metadata": {"name": "claims", "namespace": "finance"},
        "spec": {"rules": [{"when": [{"key": key, "values": values}]}]}
    })
}

/// The filter's decision on claims `claims` (served as Envoy 1.40 serves them), checked
/// against the native engine deciding the same claims as JSON.
fn allowed_with_claims(policy: &Value, claims: &Value) -> bool {
    let filter = load(json!({"policies": [policy]}));
    let host = request("GET", "/").with_property(&["metadata"], &jwt_metadata(claims));
    let allowed = filter.on_request_headers(&host) == Verdict::Continue;
    let native = filter.config().policies.evaluate(
        &cordon_engine::Request {
            method: Some("GET"),
            path: Some("/"),
            claims: Some(claims),
            ..Default::default()
        },
        &mut filter.config().policies.new_scratch(),
    );
    assert_eq!(
        allowed, native.allowed,
        "the filter and the native engine disagree on {claims} under {policy}"
    );
    allowed
}

#[test]
fn claims_keep_their_json_types() {
    let groups = |values: &[&str]| claim_policy("request.auth.claims[groups]", values);
    let cases: &[(Value, &[&str], bool)] = &[
        (json!("admin"), &["admin"], true),
        (json!(true), &["true"], false),
        (json!(false), &["false"], false),
        (json!(7), &["7"], false),
        (json!(7.5), &["7.5"], false),
        (json!(null), &["null"], false),
        (json!({"a": "b"}), &["b"], false),
        (json!({"a": "b"}), &["a"], false),
        // Envoy's pairs encoding made this object look like the list ["admin"].
        (json!({"admin": ""}), &["admin"], false),
        (json!([7, "admin"]), &["admin"], true),
        (json!([7, "admin"]), &["7"], false),
        (json!([true, "a"]), &["true"], false),
        (json!([null, "a"]), &["a"], true),
        (json!(["a", ["b"]]), &["b"], false),
        (json!(["a", ["b"]]), &["a"], true),
        (json!(["a", {"k": "v"}]), &["v"], false),
        (json!([]), &["admin"], false),
    ];
    for (value, values, expected) in cases {
        let claims = json!({"iss": "https://idp.example", "sub": "alice", "groups": value});
        assert_eq!(
            allowed_with_claims(&groups(values), &claims),
            *expected,
            "groups: {value}, values: {values:?}"
        );
    }
}

#[test]
fn nested_claims_are_navigated_by_path_and_null_loses_nothing() {
    let nested = claim_policy("request.auth.claims[org][team]", &["blue"]);
    let claims = |org: Value| json!({"sub": "alice", "org": org});
    assert!(allowed_with_claims(
        &nested,
        &claims(json!({"team": "blue"}))
    ));
    assert!(allowed_with_claims(
        &nested,
        &claims(json!({"team": ["red", "blue"]}))
    ));
    assert!(!allowed_with_claims(&nested, &claims(json!("blue"))));
    assert!(!allowed_with_claims(
        &nested,
        &claims(json!({"team": {"blue": ""}}))
    ));
    assert!(!allowed_with_claims(
        &nested,
        &claims(json!([{"team": "blue"}]))
    ));
    // A null anywhere made Envoy refuse the whole pairs-encoded payload; the protobuf
    // metadata keeps the other claims.
    let principal = json!({
        "metadata": {"name": "alice", "namespace": "finance"},
        "spec": {"rules": [{"from": [{"source": {"requestPrincipals": ["https://idp.example/alice"]}}]}]}
    });
    assert!(allowed_with_claims(
        &principal,
        &json!({"iss": "https://idp.example", "sub": "alice", "nickname": null, "groups": [null]})
    ));
    // A DENY on notValues fires for a claim that carries no string, as Envoy's `not_id`
    // around a metadata matcher that cannot match.
    let deny = json!({
        "metadata": {"name": "only-admins", "namespace": "finance"},
        "spec": {"action": "DENY", "rules": [{"when": [{"key": "request.auth.claims[groups]", "notValues": ["admin"]}]}]}
    });
    assert!(!allowed_with_claims(&deny, &json!({"groups": true})));
    assert!(allowed_with_claims(&deny, &json!({"groups": [7, "admin"]})));
}

#[test]
fn claims_are_read_with_one_host_call_and_only_when_a_rule_reads_them() {
    let filter =
        load(json!({"policies": [claim_policy("request.auth.claims[groups]", &["admin"])]}));
    let host = request("GET", "/")
        .with_property(&["metadata"], &jwt_metadata(&json!({"groups": "admin"})));
    assert_eq!(filter.on_request_headers(&host), Verdict::Continue);
    assert_eq!(
        *host.calls.borrow(),
        vec!["header :path", "property metadata"]
    );

    let other_namespace = load(json!({
        "policies": [claim_policy("request.auth.claims[groups]", &["admin"])],
        "jwt": {"metadata_namespace": "istio_authn", "payload_key": "claims"}
    }));
    let host = request("GET", "/").with_property(
        &["metadata"],
        &pb::metadata("istio_authn", &json!({"claims": {"groups": "admin"}})),
    );
    assert_eq!(other_namespace.on_request_headers(&host), Verdict::Continue);
    let host = request("GET", "/")
        .with_property(&["metadata"], &jwt_metadata(&json!({"groups": "admin"})));
    assert_eq!(
        other_namespace.on_request_headers(&host),
        Verdict::Stop,
        "claims in another namespace are not this configuration's"
    );
}

#[test]
fn decision_records_keep_claim_types() {
    let filter =
        load(json!({"policies": [claim_policy("request.auth.claims[groups]", &["admin"])]}));
    let claims = json!({
        "sub": "alice", "exp": 1_900_000_000, "ratio": 0.5, "admin": false,
        "groups": [7, "ops", null, {"k": "v"}, ["x"]], "org": {"team": "blue"}, "nick": null
    });
    let host = request("GET", "/").with_property(&["metadata"], &jwt_metadata(&claims));
    assert_eq!(filter.on_request_headers(&host), Verdict::Stop);
    let logs = host.logs.borrow();
    let record: Value =
        serde_json::from_str(logs[0].1.strip_prefix("cordon.decision ").unwrap()).unwrap();
    assert_eq!(record["request"]["auth"]["claims"], claims);
    let replayed = cordon_engine::TrafficRecord::from_json(&record).unwrap();
    assert_eq!(replayed.claims, Some(claims));
}

/// The bytes Envoy 1.40 answered for `get_property("metadata")` after `jwt_authn` verified
/// a token with claims of every JSON type (probe in `docs/ENVOY-MEASUREMENTS.md`).
const ENVOY_METADATA_HEX: &str = "0ab8020a1c656e766f792e66696c746572732e687474702e6a77745f617574686e1297020a94020a077061796c6f61641288022a85020a100a03657870120911000000c0ec4fdc410a070a0162120220010a0e0a0373756212071a05616c6963650a0e0a016e1209110000000000001c400a2a0a016f12252a230a080a016112031a01620a170a0163121232100a0911000000000000f03f0a031a017a0a080a02656c120232000a070a016512021a000a0e0a0178120911000000000000f83f0a210a03697373121a1a1868747470733a2f2f6964702e73686f702e6578616d706c650a3a0a016c123532330a09110000000000001c400a071a0561646d696e0a0220010a0208000a0c2a0a0a080a016b12031a01760a0732050a031a01710a070a0166120220000a070a017a120208000a080a02656f12022a00";

#[test]
fn metadata_as_envoy_1_40_serves_it_decodes_with_every_type() {
    let bytes: Vec<u8> = (0..ENVOY_METADATA_HEX.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&ENVOY_METADATA_HEX[at..at + 2], 16).unwrap())
        .collect();
    let claims = cordon_filter::attributes::MetadataClaims::from_metadata(
        bytes.clone(),
        "envoy.filters.http.jwt_authn",
        "payload",
    )
    .unwrap();
    assert_eq!(
        cordon_filter::attributes::claims_to_json(claims.payload()),
        json!({
            "iss": "https://idp.shop.example", "sub": "alice", "exp": 1_900_000_000,
            "b": true, "f": false, "n": 7, "x": 1.5, "z": null, "e": "",
            "o": {"a": "b", "c": [1, "z"]},
            "l": [7, "admin", true, null, {"k": "v"}, ["q"]],
            "el": [], "eo": {}
        })
    );
    let filter = load(json!({"policies": [claim_policy("request.auth.claims[l]", &["admin"])]}));
    let host = request("GET", "/").with_property(&["metadata"], &bytes);
    assert_eq!(filter.on_request_headers(&host), Verdict::Continue);
    let filter = load(json!({"policies": [claim_policy("request.auth.claims[b]", &["true"])]}));
    let host = request("GET", "/").with_property(&["metadata"], &bytes);
    assert_eq!(filter.on_request_headers(&host), Verdict::Stop);
    // Truncated or garbled metadata is no token, never a panic.
    for cut in [1, 3, 40, bytes.len() - 1] {
        let host = request("GET", "/").with_property(&["metadata"], &bytes[..cut]);
        filter.on_request_headers(&host);
    }
    let host = request("GET", "/").with_property(&["metadata"], &[0xff; 12]);
    assert_eq!(filter.on_request_headers(&host), Verdict::Stop);
}

/// A small deterministic generator (no dependency): SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn text(&mut self) -> String {
        const ALPHABET: [&str; 8] = ["a", "b", "admin", "", "é", "\0", "7", "true"];
        (0..self.below(3))
            .map(|_| ALPHABET[self.below(8) as usize])
            .collect()
    }
    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth > 3 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 1),
            2 => match self.below(3) {
                0 => json!(self.below(1 << 40)),
                1 => json!(-(self.below(1000) as i64)),
                _ => json!(self.below(1000) as f64 + 0.25),
            },
            3 => json!(self.text()),
            4 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => Value::Object(
                (0..self.below(4))
                    .map(|_| (self.text(), self.value(depth + 1)))
                    .collect(),
            ),
        }
    }
}

/// Random claims of every type: what the filter reads back (for decision records, and
/// string by string for matching) is exactly what was sent, and mangled bytes never panic.
#[test]
fn random_claims_read_back_exactly_and_garbage_is_harmless() {
    use cordon_engine::Claims as _;
    use cordon_filter::attributes::{claims_to_json, MetadataClaims};
    let mut rng = Rng(0x5eed);
    for _ in 0..2000 {
        let claims = Value::Object(
            (0..rng.below(6))
                .map(|_| (rng.text(), rng.value(1)))
                .collect(),
        );
        let bytes = jwt_metadata(&claims);
        let read =
            MetadataClaims::from_metadata(bytes.clone(), "envoy.filters.http.jwt_authn", "payload")
                .unwrap();
        assert_eq!(claims_to_json(read.payload()), claims);
        for key in claims.as_object().unwrap().keys() {
            let mut from_proto = Vec::new();
            read.any_value(&[key], &mut |value| {
                from_proto.push(value.to_string());
                false
            });
            let mut from_json = Vec::new();
            claims.any_value(&[key], &mut |value| {
                from_json.push(value.to_string());
                false
            });
            assert_eq!(from_proto, from_json, "{key} in {claims}");
        }
        // Flip, drop or cut bytes: whatever is left reads as something or nothing.
        let mut mangled = bytes;
        for _ in 0..3 {
            if mangled.is_empty() {
                break;
            }
            let at = rng.below(mangled.len() as u64) as usize;
            match rng.below(3) {
                0 => mangled[at] ^= 1 << rng.below(8),
                1 => {
                    mangled.remove(at);
                }
                _ => mangled.truncate(at),
            }
        }
        if let Some(read) =
            MetadataClaims::from_metadata(mangled, "envoy.filters.http.jwt_authn", "payload")
        {
            let _ = claims_to_json(read.payload());
            read.any_value(&["a"], &mut |_| false);
            let _ = read.string(&["a", "b"]);
        }
    }
}

/// A host that reads only the policies' headers (the native twin's) decides, answers,
/// counts and records exactly as one that reads the whole map (the `.wasm`'s), repeated
/// headers and oversized values included; a decision record still shows every header.
#[test]
fn reading_only_the_policies_headers_changes_no_decision() {
    let config = json!({
        "policies": [header_policy()],
        "limits": {"max_header_bytes": 64},
        "decision_log": {"allow_sample_rate": 1.0}
    });
    let requests = [
        request("GET", "/api/a").with_header("x-env", "prod"),
        request("GET", "/api/a").with_header("X-Env", "prod"),
        request("GET", "/api/a")
            .with_header("x-env", "dev")
            .with_header("x-other", "1")
            .with_header("x-env", "prod"),
        request("GET", "/api/a").with_header("x-env", "dev"),
        request("POST", "/api/a").with_header("x-env", "prod"),
        request("GET", "/other").with_header("x-env", "prod"),
        request("GET", "/api/a"),
        request("GET", "/api/a").with_header("x-env", &"p".repeat(100)),
        request("GET", "/api/%2e%2e/a").with_header("x-env", "prod"),
    ];
    let whole = load(config.clone());
    let named = load(config);
    for host in requests {
        let host_named = host.clone().answering_named_headers();
        let verdict = whole.on_request_headers(&host);
        assert_eq!(
            named.on_request_headers(&host_named),
            verdict,
            "{:?}",
            host.headers
        );
        assert_eq!(host_named.response, host.response);
        assert_eq!(host_named.set, host.set);
        assert_eq!(host_named.counters, host.counters);
        assert_eq!(host_named.logs, host.logs);
        assert!(host.calls.borrow().iter().any(|call| call == "headers"));
        assert!(
            host_named
                .calls
                .borrow()
                .contains(&"named headers x-env,:path,:method".to_string()),
            "{:?}",
            host_named.calls
        );
    }
    // Without a record to write, an allowed request never reads the whole map.
    let unlogged = load(json!({"policies": [header_policy()]}));
    let host = request("GET", "/api/a")
        .with_header("x-env", "prod")
        .answering_named_headers();
    assert_eq!(unlogged.on_request_headers(&host), Verdict::Continue);
    assert_eq!(
        host.calls.borrow().as_slice(),
        ["named headers x-env,:path,:method"],
        "one read, not the whole map"
    );
}

/// GET /api/* when header x-env is prod.
fn header_policy() -> Value {
    json!({
        "metadata": {"name": "headers", "namespace": "finance"},
        "spec": {"rules": [{
            "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}],
            "when": [{"key": "request.headers[x-env]", "values": ["prod"]}]
        }]}
    })
}
