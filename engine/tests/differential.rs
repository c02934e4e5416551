//! The compiled evaluator must agree with the reference interpreter on every request, for
//! random policy sets drawn from a small vocabulary (so that rules actually match), and
//! requests that mix that vocabulary with absent attributes, plaintext peers (no
//! principal, or `"mtls": false` beside one) and arbitrary strings. Every field of the
//! decision is compared: allowed, status, the deciding, audit and dry-run rules, the
//! identity (against `SpiffeId::parse` of the peer the record gives) and the reason
//! (derived from the reference's decision, the applicable ALLOW policies and the path
//! normalization's verdict).
//!
//! `cargo test` runs 400 cases (each up to 5 policies and 7 requests). The longer run, for
//! a change to the evaluator or before a release:
//!
//! ```sh
//! CORDON_DIFFERENTIAL_CASES=50000 cargo test --release -p cordon-engine --test differential
//! ```
//!
//! (50,000 cases: 40 s of testing after the release build, on 2 cores, at 1e15d11.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_engine::model::parse_policies;
use cordon_engine::path::normalize;
use cordon_engine::{
    reference, Action, Identity, Options, PathNormalization, PathRejection, PolicySet, Reason,
    SpiffeId, TrafficRecord, Workload,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/a/sa/x",
    "spiffe://cluster.local/ns/b/sa/y",
    "cluster.local/ns/a/*",
    "*/sa/y",
    "*",
    "old.td/ns/a/sa/x",
];
const NAMESPACES: &[&str] = &["a", "b", "a*", "*b", "*"];
const SERVICE_ACCOUNTS: &[&str] = &["a/x", "b/y", "x", "a/y"];
const TRUST_DOMAINS: &[&str] = &["cluster.local", "other.td", "old.td"];
const REQUEST_PRINCIPALS: &[&str] = &["https://idp/alice", "https://idp/*", "*/bob", "*"];
const IP_BLOCKS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.2.3",
    "192.168.0.0/16",
    "::1",
    "2001:db8::/32",
    "0.0.0.0/0",
];
const HOSTS: &[&str] = &[
    "api.example.com",
    "*.example.com",
    "API.*",
    "*",
    "api.example.com:*",
    "*:8080",
    "API.EXAMPLE.COM:8080",
];
const PORTS: &[&str] = &["80", "8080"];
const METHODS: &[&str] = &["GET", "POST", "P*", "*"];
const PATHS: &[&str] = &[
    "/admin",
    "/api/*",
    "*.json",
    "/api/{*}/items",
    "/api/{**}",
    "/a",
    "*",
    "/api/v1/items",
    "/Admin",
];
const WHEN: &[(&str, &[&str])] = &[
    ("request.headers[x-env]", &["prod", "dev", "p*"]),
    ("request.headers[X-Env]", &["*", "dev,prod", "*od"]),
    ("request.auth.claims[scp]", &["read", "write"]),
    ("request.auth.claims[permission]", &["admin"]),
    ("request.auth.claims[scope]", &["read", "write"]),
    ("request.auth.claims[org][team]", &["blue", "red"]),
    ("request.auth.principal", &["https://idp/alice", "*"]),
    ("request.auth.audiences", &["billing", "orders"]),
    ("request.auth.presenter", &["web", "*"]),
    ("source.ip", &["10.0.0.0/8", "::1"]),
    ("remote.ip", &["203.0.113.0/24"]),
    ("destination.ip", &["10.9.9.9"]),
    ("destination.port", &["8080"]),
    ("connection.sni", &["api.example.com", "*.example.com"]),
    ("source.namespace", &["a", "b"]),
    ("source.serviceAccount", &["a/x"]),
    ("source.trustDomain", &["cluster.local"]),
    ("source.principal", &["cluster.local/ns/a/sa/x"]),
];
const SOURCE_FIELDS: &[(&str, &[&str])] = &[
    ("principals", PRINCIPALS),
    ("notPrincipals", PRINCIPALS),
    ("namespaces", NAMESPACES),
    ("notNamespaces", NAMESPACES),
    ("serviceAccounts", SERVICE_ACCOUNTS),
    ("notServiceAccounts", SERVICE_ACCOUNTS),
    ("trustDomains", TRUST_DOMAINS),
    ("notTrustDomains", TRUST_DOMAINS),
    ("requestPrincipals", REQUEST_PRINCIPALS),
    ("notRequestPrincipals", REQUEST_PRINCIPALS),
    ("ipBlocks", IP_BLOCKS),
    ("notIpBlocks", IP_BLOCKS),
    ("remoteIpBlocks", IP_BLOCKS),
    ("notRemoteIpBlocks", IP_BLOCKS),
];
const OPERATION_FIELDS: &[(&str, &[&str])] = &[
    ("hosts", HOSTS),
    ("notHosts", HOSTS),
    ("ports", PORTS),
    ("notPorts", PORTS),
    ("methods", METHODS),
    ("notMethods", METHODS),
    ("paths", PATHS),
    ("notPaths", PATHS),
];

fn pick<'a>(choices: &'a [&'a str], seeds: &[usize]) -> Vec<&'a str> {
    let mut values: Vec<&str> = seeds
        .iter()
        .map(|seed| choices[seed % choices.len()])
        .collect();
    values.dedup();
    values
}

fn clause(fields: &[(&str, &[&str])], seeds: &[(usize, Vec<usize>)]) -> Value {
    let mut object = serde_json::Map::new();
    for (field, values) in seeds {
        let (name, choices) = fields[field % fields.len()];
        object.insert(name.to_string(), json!(pick(choices, values)));
    }
    Value::Object(object)
}

type ClauseSeed = Vec<(usize, Vec<usize>)>;

#[derive(Debug, Clone)]
struct RuleSeed {
    from: Vec<ClauseSeed>,
    to: Vec<ClauseSeed>,
    when: Vec<(usize, Vec<usize>, bool)>,
}

#[derive(Debug, Clone)]
struct PolicySeed {
    action: usize,
    dry_run: bool,
    namespace: usize,
    selector: Option<usize>,
    rules: Option<Vec<RuleSeed>>,
}

fn clause_seed() -> impl Strategy<Value = ClauseSeed> {
    prop::collection::vec(
        (any::<usize>(), prop::collection::vec(any::<usize>(), 1..3)),
        1..3,
    )
}

fn rule_seed() -> impl Strategy<Value = RuleSeed> {
    (
        prop::collection::vec(clause_seed(), 0..3),
        prop::collection::vec(clause_seed(), 0..3),
        prop::collection::vec(
            (
                any::<usize>(),
                prop::collection::vec(any::<usize>(), 1..3),
                any::<bool>(),
            ),
            0..2,
        ),
    )
        .prop_map(|(from, to, when)| RuleSeed { from, to, when })
}

fn policy_seed() -> impl Strategy<Value = PolicySeed> {
    (
        0usize..3,
        prop::bool::weighted(0.2),
        0usize..3,
        prop::option::weighted(0.3, 0usize..2),
        prop::option::weighted(0.9, prop::collection::vec(rule_seed(), 1..3)),
    )
        .prop_map(|(action, dry_run, namespace, selector, rules)| PolicySeed {
            action,
            dry_run,
            namespace,
            selector,
            rules,
        })
}

fn policy_json(position: usize, seed: &PolicySeed) -> Value {
    let action = ["ALLOW", "DENY", "AUDIT"][seed.action];
    let mut spec = serde_json::Map::new();
    spec.insert("action".into(), json!(action));
    if let Some(label) = seed.selector {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"app": (["web", "db"][label])}}),
        );
    }
    let rules = seed.rules.clone().unwrap_or_default();
    // A DENY policy without rules is invalid; give it one that matches everything.
    let rules = if rules.is_empty() && action == "DENY" {
        vec![RuleSeed {
            from: vec![],
            to: vec![],
            when: vec![],
        }]
    } else {
        rules
    };
    if seed.rules.is_some() || action == "DENY" {
        let rules: Vec<Value> = rules
            .iter()
            .map(|rule| {
                let mut object = serde_json::Map::new();
                if !rule.from.is_empty() {
                    let from: Vec<Value> = rule
                        .from
                        .iter()
                        .map(|c| json!({"source": clause(SOURCE_FIELDS, c)}))
                        .collect();
                    object.insert("from".into(), json!(from));
                }
                if !rule.to.is_empty() {
                    let to: Vec<Value> = rule
                        .to
                        .iter()
                        .map(|c| json!({"operation": clause(OPERATION_FIELDS, c)}))
                        .collect();
                    object.insert("to".into(), json!(to));
                }
                if !rule.when.is_empty() {
                    let when: Vec<Value> = rule
                        .when
                        .iter()
                        .map(|(key, values, negated)| {
                            let (key, choices) = WHEN[key % WHEN.len()];
                            let field = if *negated { "notValues" } else { "values" };
                            {
                                let mut condition = json!({"key": key});
                                condition[field] = json!(pick(choices, values));
                                condition
                            }
                        })
                        .collect();
                    object.insert("when".into(), json!(when));
                }
                Value::Object(object)
            })
            .collect();
        spec.insert("rules".into(), json!(rules));
    }
    let mut metadata = json!({"name": format!("p{position}"), "namespace": (["shop", "other", "istio-system"][seed.namespace])});
    if seed.dry_run {
        metadata["annotations"] = json!({"istio.io/dry-run": "true"});
    }
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": metadata, "spec": Value::Object(spec)})
}

/// Arbitrary text: printable and control characters, percent signs, slashes, dots, NUL,
/// non-ASCII; up to 24 characters.
fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        "[/%.;\\\\*?#a-zA-Z0-9\\x00-\\x1f\\u{80}-\\u{10ffff}]{0,24}",
    ]
}

/// One of `vocabulary` most of the time, arbitrary text otherwise.
fn text_or_vocabulary(vocabulary: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vocabulary).prop_map(str::to_string),
        1 => arbitrary_text(),
    ]
}

/// Absent about one time in six.
fn maybe<T: std::fmt::Debug + Clone>(
    strategy: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.85, strategy)
}

const PEERS: &[&str] = &[
    "spiffe://cluster.local/ns/a/sa/x",
    "spiffe://cluster.local/ns/b/sa/y",
    "spiffe://other.td/ns/a/sa/x",
    "spiffe://old.td/ns/a/sa/x",
    "spiffe://Cluster.local/ns/a/sa/x",
    "spiffe://cluster.local/ns/a/sa/x/k/v",
    "spiffe://cluster.local/ns/a/k/v/sa/x",
    "spiffe://cluster.local/ns/b/ns/a/sa/y/",
    "https://cluster.local/ns/a/sa/x",
    "spiffe://cluster.local:8080/ns/a/sa/x",
    "spiffe://",
    "",
];
const SOURCE_IPS: &[&str] = &["10.1.2.3", "192.168.4.4", "::1", "2001:db8::7", "8.8.8.8"];
const HOST_VALUES: &[&str] = &[
    "api.example.com",
    "API.EXAMPLE.COM:8080",
    "a.example.com",
    "api.example.com:443",
    "other",
    "",
];
const METHOD_VALUES: &[&str] = &["GET", "POST", "PUT", "get", ""];
const PATH_VALUES: &[&str] = &[
    "/admin",
    "//admin",
    "/api/v1/items",
    "/api/x.json?q=1",
    "/a",
    "/api/",
    "/public/%2e%2e/admin",
    "/admin%2F",
    "/api/v1/items/extra",
    "/A",
    "/api/./v1/items",
    "/api//../admin",
    "\\admin",
    "/Admin%2f",
    "/api/%2e%2e;x/admin",
    "/api/v1/items;x",
    "*",
    "",
    "admin",
    "/admin%00",
    "/%zz",
];
const ENV_VALUES: &[&str] = &["prod", "dev", "staging", "dev,prod", "", "staging, prod"];
const SNI_VALUES: &[&str] = &["api.example.com", "x.example.com", ""];

fn request_strategy() -> impl Strategy<Value = Value> {
    // The peer, and whether the record marks the connection mTLS: `Some(false)` beside a
    // principal is a plaintext peer whose principal must be ignored.
    let peer = (
        maybe(text_or_vocabulary(PEERS)),
        prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
    );
    let source_ip = maybe(prop::sample::select(SOURCE_IPS));
    let remote = prop_oneof![
        Just(None),
        Just(Some("203.0.113.5")),
        Just(Some("10.0.0.1"))
    ];
    let destination = (maybe(Just("10.9.9.9")), maybe(prop::bool::ANY));
    let host = maybe(text_or_vocabulary(HOST_VALUES));
    let method = maybe(text_or_vocabulary(METHOD_VALUES));
    let path = maybe(text_or_vocabulary(PATH_VALUES));
    let claims = prop_oneof![
        Just(Value::Null),
        Just(
            json!({"iss": "https://idp", "sub": "alice", "scope": "read write", "aud": ["billing"], "azp": "web", "org": {"team": "blue"}})
        ),
        Just(
            json!({"iss": "https://idp", "sub": "bob", "scope": "write", "aud": "orders", "org": {"team": ["red", "blue"]}})
        ),
        Just(
            json!({"iss": ["https://idp", "https://other"], "sub": "alice", "scp": "read  write", "permission": ["admin", "read"]})
        ),
        Just(json!({})),
        (arbitrary_text(), arbitrary_text(), arbitrary_text()).prop_map(|(iss, sub, scope)| {
            json!({"iss": iss, "sub": sub, "scope": scope, "aud": [scope.clone()], "azp": sub})
        }),
    ];
    let env = prop_oneof![
        Just(Value::Null),
        text_or_vocabulary(ENV_VALUES).prop_map(Value::from),
        Just(json!(["dev", "prod"])),
        prop::collection::vec(arbitrary_text(), 0..3).prop_map(Value::from),
    ];
    let workload = prop_oneof![
        Just(None),
        Just(Some(("shop", "web"))),
        Just(Some(("shop", "db"))),
        Just(Some(("other", "web")))
    ];
    let sni = maybe(text_or_vocabulary(SNI_VALUES));
    (
        (peer, source_ip, remote, destination),
        (host, method, path, claims, env, workload, sni),
    )
        .prop_map(
            |(
                ((principal, mtls), source_ip, remote, (destination_ip, port)),
                (host, method, path, claims, env, workload, sni),
            )| {
                let mut source = serde_json::Map::new();
                if let Some(principal) = principal {
                    source.insert("principal".into(), json!(principal));
                }
                if let Some(ip) = source_ip {
                    source.insert("ip".into(), json!(ip));
                }
                let mut destination = serde_json::Map::new();
                if let Some(ip) = destination_ip {
                    destination.insert("ip".into(), json!(ip));
                }
                if let Some(port) = port {
                    destination.insert("port".into(), json!(if port { 8080 } else { 80 }));
                }
                if let Some((namespace, app)) = workload {
                    destination.insert("namespace".into(), json!(namespace));
                    destination.insert("labels".into(), json!({"app": app}));
                }
                let mut connection = serde_json::Map::new();
                if let Some(mtls) = mtls {
                    connection.insert("mtls".into(), json!(mtls));
                }
                if let Some(sni) = sni {
                    connection.insert("sni".into(), json!(sni));
                }
                let mut headers = serde_json::Map::new();
                if !env.is_null() {
                    headers.insert("x-env".into(), env);
                }
                let mut request = serde_json::Map::new();
                for (key, value) in [("method", method), ("path", path), ("host", host)] {
                    if let Some(value) = value {
                        request.insert(key.into(), json!(value));
                    }
                }
                request.insert("headers".into(), Value::Object(headers));
                if !claims.is_null() {
                    request.insert("auth".into(), json!({ "claims": claims }));
                }
                json!({
                    "source": Value::Object(source),
                    "remote": {"ip": remote},
                    "destination": Value::Object(destination),
                    "connection": Value::Object(connection),
                    "request": Value::Object(request),
                })
            },
        )
}

/// Cases per run: `CORDON_DIFFERENTIAL_CASES`, 400 by default.
fn cases() -> u32 {
    std::env::var("CORDON_DIFFERENTIAL_CASES")
        .ok()
        .map(|cases| {
            cases
                .parse()
                .unwrap_or_else(|_| panic!("CORDON_DIFFERENTIAL_CASES=`{cases}`: not a number"))
        })
        .unwrap_or(400)
}

/// The identity the engine must report for `peer`: none without one, else what
/// `SpiffeId::parse` makes of it.
fn expected_identity(peer: Option<&str>) -> Identity {
    match peer {
        None => Identity::None,
        Some(uri) => match SpiffeId::parse(uri) {
            Ok(_) => Identity::Verified,
            Err(error) => Identity::Invalid(error),
        },
    }
}

/// The reason the engine must give, from the reference's decision: a refused path or
/// oversized headers by their status, a denial naming a rule by that DENY rule, and
/// otherwise whether an enforced ALLOW policy applies to the workload.
fn expected_reason(
    oracle: &reference::ReferenceDecision,
    parsed: &[cordon_engine::Policy],
    options: &Options,
    request: &cordon_engine::Request<'_>,
) -> Reason {
    let path = request.path;
    let reads_peer_ip = reference::applicable(parsed, options)
        .iter()
        .flat_map(|policy| policy.rules.iter())
        .flat_map(|rule| rule.from.iter().chain(&rule.when))
        .flat_map(|clause| clause.fields.iter())
        .any(|field| field.attribute == cordon_engine::model::Attribute::SourceIp);
    let forwarded = request.headers.any_value("x-forwarded-for", &mut |_| true);
    match oracle.status {
        400 => {
            let raw = path.unwrap_or_default();
            let mut buffer = String::new();
            let rejection = if raw.len() > options.limits.max_path_bytes {
                Some(PathRejection::TooLong)
            } else {
                normalize(raw, options.path_normalization, &mut buffer).err()
            };
            rejection.map_or_else(
                || panic!("status 400 for a path normalization accepts: {raw:?}"),
                Reason::PathRejected,
            )
        }
        431 => Reason::HeadersTooLarge,
        _ if !oracle.allowed && oracle.policy.is_some() => Reason::DeniedByPolicy,
        403 if reads_peer_ip && !options.use_remote_address && forwarded => {
            Reason::PeerAddressUnknown
        }
        _ => {
            let allow_applies = reference::applicable(parsed, options)
                .iter()
                .any(|policy| policy.action == Action::Allow && !policy.dry_run);
            match (allow_applies, oracle.allowed) {
                (false, _) => Reason::NoAllowPolicies,
                (true, true) => Reason::AllowedByPolicy,
                (true, false) => Reason::NoAllowMatch,
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn compiled_agrees_with_reference(
        seeds in prop::collection::vec(policy_seed(), 1..6),
        requests in prop::collection::vec(request_strategy(), 1..8),
        aliases in any::<bool>(),
        mode in 0usize..5,
        tight in prop::bool::weighted(0.1),
        gateway in prop::option::weighted(0.1, 0usize..6),
    ) {
        let mut policies: Vec<Value> = seeds.iter().enumerate().map(|(i, seed)| policy_json(i, seed)).collect();
        // A policy bound to a gateway (targetRefs) is skipped by a sidecar.
        if let Some(position) = gateway {
            if let Some(policy) = policies.get_mut(position) {
                if policy["spec"].get("selector").is_none() {
                    policy["spec"]["targetRefs"] = json!([{"kind": "Gateway", "name": "gw"}]);
                }
            }
        }
        let (parsed, _, errors) = parse_policies(&policies);
        prop_assert!(errors.is_empty(), "generated policies must be valid: {errors:?}");
        for request in &requests {
            let record = TrafficRecord::from_json(request).unwrap();
            let mut options = Options { workload: Workload { namespace: None, labels: Default::default() }, ..Options::default() };
            if aliases {
                options.trust_domain = Some("cluster.local".into());
                options.trust_domain_aliases = vec!["old.td".into()];
            }
            options.path_normalization = [
                PathNormalization::Strict,
                PathNormalization::None,
                PathNormalization::Base,
                PathNormalization::MergeSlashes,
                PathNormalization::DecodeAndMergeSlashes,
            ][mode];
            if tight {
                options.limits.max_header_bytes = 8;
            }
            options.workload = record.workload();
            let set = PolicySet::compile(&policies, options.clone()).unwrap();
            let mut scratch = set.new_scratch();
            let view = record.request();
            let decision = set.evaluate(&view, &mut scratch);
            let oracle = reference::evaluate(&parsed, &options, &view);
            let name = |rule: Option<cordon_engine::RuleRef>| rule.map(|rule| set.rule_id(rule).to_string());
            prop_assert_eq!(decision.allowed, oracle.allowed, "allowed; request {}", request);
            prop_assert_eq!(decision.status, oracle.status);
            prop_assert_eq!(name(decision.policy), oracle.policy.clone(), "deciding rule; request {}", request);
            prop_assert_eq!(name(decision.audit), oracle.audit.clone());
            prop_assert_eq!((decision.dry_run.allowed, name(decision.dry_run.rule)), oracle.dry_run.clone());
            prop_assert_eq!(decision.identity, expected_identity(view.peer_identity), "identity; request {}", request);
            prop_assert_eq!(decision.reason, expected_reason(&oracle, &parsed, &options, &view), "reason; request {}", request);
            // The same scratch, reused, gives the same answer.
            prop_assert_eq!(set.evaluate(&view, &mut scratch), decision);
        }
    }
}
