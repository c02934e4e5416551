//! The filter's glue through an in-memory [`Host`]: configuration errors, attribute
//! decoding, and the decision → response mapping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use cordon_filter::config::{self, ConfigError};
use cordon_filter::decide::{Filter, Verdict, DECISION_PROPERTY};
use cordon_filter::encoding::encode_pairs;
use cordon_filter::host::{Counter, Host, LogLevel};
use serde_json::{json, Value};

#[derive(Default)]
struct FakeHost {
    properties: BTreeMap<Vec<String>, Vec<u8>>,
    headers: Vec<(String, String)>,
    calls: RefCell<Vec<String>>,
    response: RefCell<Option<(u16, Vec<u8>)>>,
    set: RefCell<BTreeMap<String, Vec<u8>>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    counters: RefCell<BTreeMap<&'static str, i64>>,
}

impl FakeHost {
    fn with_property(mut self, path: &[&str], value: &[u8]) -> Self {
        self.properties
            .insert(path.iter().map(|s| s.to_string()).collect(), value.to_vec());
        self
    }
    fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    fn request(method: &str, path: &str) -> Self {
        FakeHost::default()
            .with_header(":method", method)
            .with_header(":path", path)
            .with_header(":authority", "billing.finance.svc.cluster.local:8080")
    }
    fn peer(self, uri: &str) -> Self {
        self.with_property(&["connection", "uri_san_peer_certificate"], uri.as_bytes())
            .with_property(&["connection", "mtls"], &[1])
    }
    fn counter(&self, counter: Counter) -> i64 {
        self.counters
            .borrow()
            .get(counter.name())
            .copied()
            .unwrap_or(0)
    }
}

impl Host for FakeHost {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.calls
            .borrow_mut()
            .push(format!("property {}", path.join(".")));
        self.properties
            .get(&path.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .cloned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.calls.borrow_mut().push(format!("header {name}"));
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }
    fn headers(&self) -> Vec<(String, String)> {
        self.calls.borrow_mut().push("headers".to_string());
        self.headers.clone()
    }
    fn send_response(&self, status: u16, _headers: &[(&str, &str)], body: &[u8]) {
        *self.response.borrow_mut() = Some((status, body.to_vec()));
    }
    fn set_property(&self, path: &[&str], value: &[u8]) {
        self.set.borrow_mut().insert(path.join("."), value.to_vec());
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn increment(&self, counter: Counter, delta: i64) {
        *self
            .counters
            .borrow_mut()
            .entry(counter.name())
            .or_default() += delta;
    }
    fn now_nanos(&self) -> u64 {
        1_796_000_000_000_000_000
    }
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
    let allowed = FakeHost::request("POST", "/v1/credits")
        .peer("spiffe://cluster.local/ns/shop/sa/order-engine");
    assert_eq!(filter.on_request_headers(&allowed), Verdict::Continue);
    assert!(allowed.response.borrow().is_none());
    assert_eq!(allowed.counter(Counter::Allowed), 1);
    let state: Value = serde_json::from_slice(&allowed.set.borrow()[DECISION_PROPERTY]).unwrap();
    assert_eq!(state["policy"], "ns[finance]-policy[credits]-rule[0]");
    assert!(
        allowed.logs.borrow().is_empty(),
        "allowed requests are not logged at sample rate 0"
    );

    let denied =
        FakeHost::request("POST", "/v1/credits").peer("spiffe://cluster.local/ns/shop/sa/frontend");
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
    let plaintext = FakeHost::request("POST", "/v1/credits");
    assert_eq!(filter.on_request_headers(&plaintext), Verdict::Stop);
    let forged = FakeHost::request("POST", "/v1/credits")
        .peer("spiffe://cluster.local/ns/shop/sa/frontend")
        .with_header(
            "x-forwarded-client-cert",
            "URI=spiffe://cluster.local/ns/shop/sa/order-engine",
        );
    assert_eq!(filter.on_request_headers(&forged), Verdict::Stop);

    let trusting = load(
        json!({"policies": [credits_policy()], "identity": {"source": "x_forwarded_client_cert"}}),
    );
    let forwarded = FakeHost::request("POST", "/v1/credits").with_header(
        "x-forwarded-client-cert",
        "By=spiffe://cluster.local/ns/a/sa/gw;URI=spiffe://cluster.local/ns/shop/sa/frontend,By=x;URI=spiffe://cluster.local/ns/shop/sa/order-engine",
    );
    assert_eq!(trusting.on_request_headers(&forwarded), Verdict::Continue);
}

#[test]
fn fetches_only_what_the_policy_needs() {
    let filter = load(json!({"policies": [credits_policy()]}));
    let host = FakeHost::request("POST", "/v1/credits")
        .peer("spiffe://cluster.local/ns/shop/sa/order-engine");
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
    let payload = encode_pairs(&[
        (b"iss", b"https://idp.example"),
        (b"sub", b"alice"),
        (b"scope", b"credits:read credits:write"),
        (
            b"aud",
            &encode_pairs(&[(b"orders", b""), (b"billing", b"")]),
        ),
        (b"org", &encode_pairs(&[(b"team", b"blue")])),
        (b"iat", &1.7e9f64.to_le_bytes()),
    ]);
    let base = || {
        FakeHost::request("GET", "/x")
            .with_header("x-env", "dev")
            .with_header("x-env", "prod")
            .with_property(&["source", "address"], b"10.0.0.5:49534")
            .with_property(&["destination", "address"], b"10.0.1.7:8080")
            .with_property(&["destination", "port"], &8080u64.to_le_bytes())
    };
    let host = base().with_property(
        &[
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
            "payload",
        ],
        &payload,
    );
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
    let host = FakeHost::request("POST", "/v1/credits%2F")
        .peer("spiffe://cluster.local/ns/shop/sa/order-engine");
    assert_eq!(filter.on_request_headers(&host), Verdict::Stop);
    assert_eq!(host.response.borrow().as_ref().unwrap().0, 400);
    assert_eq!(host.counter(Counter::PathRejected), 1);

    let shadow = load(
        json!({"policies": [credits_policy()], "dry_run": true, "deny_response": {"status": 418, "body": "no"}}),
    );
    let host = FakeHost::request("GET", "/v1/credits");
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
    let host = FakeHost::request("GET", "/v1/credits");
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
    let host = FakeHost::request("GET", "/");
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
        filter.on_request_headers(&FakeHost::request("GET", "/")),
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
        filter.on_request_headers(&FakeHost::request("GET", "/")),
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
        let host = FakeHost::request("GET", "/");
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
        FakeHost::request("GET", "/")
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
    let host = FakeHost::request("POST", "/v1/credits")
        .peer("spiffe://cluster.local/ns/shop/sa/order-engine");
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
