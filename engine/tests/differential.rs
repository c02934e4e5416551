//! The compiled evaluator must agree with the reference interpreter on every request, for
//! random policy sets drawn from a small vocabulary (so that rules actually match).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_engine::model::parse_policies;
use cordon_engine::{reference, Options, PathNormalization, PolicySet, TrafficRecord, Workload};
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

fn request_strategy() -> impl Strategy<Value = Value> {
    let peers = prop_oneof![
        Just(Value::Null),
        Just(json!("spiffe://cluster.local/ns/a/sa/x")),
        Just(json!("spiffe://cluster.local/ns/b/sa/y")),
        Just(json!("spiffe://other.td/ns/a/sa/x")),
        Just(json!("spiffe://old.td/ns/a/sa/x")),
        Just(json!("spiffe://Cluster.local/ns/a/sa/x")),
        Just(json!("spiffe://cluster.local/ns/a/sa/x/k/v")),
        Just(json!("spiffe://cluster.local/ns/a/k/v/sa/x")),
        Just(json!("spiffe://cluster.local/ns/b/ns/a/sa/y/")),
        Just(json!("https://cluster.local/ns/a/sa/x")),
    ];
    let ips = prop_oneof![
        Just("10.1.2.3"),
        Just("192.168.4.4"),
        Just("::1"),
        Just("2001:db8::7"),
        Just("8.8.8.8")
    ];
    let remote = prop_oneof![
        Just(None),
        Just(Some("203.0.113.5")),
        Just(Some("10.0.0.1"))
    ];
    let hosts = prop_oneof![
        Just("api.example.com"),
        Just("API.EXAMPLE.COM:8080"),
        Just("a.example.com"),
        Just("api.example.com:443"),
        Just("other")
    ];
    let methods = prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("get")];
    let paths = prop_oneof![
        Just("/admin"),
        Just("//admin"),
        Just("/api/v1/items"),
        Just("/api/x.json?q=1"),
        Just("/a"),
        Just("/api/"),
        Just("/public/%2e%2e/admin"),
        Just("/admin%2F"),
        Just("/api/v1/items/extra"),
        Just("/A"),
        Just("/api/./v1/items"),
        Just("/api//../admin"),
        Just("\\admin"),
        Just("/Admin%2f"),
        Just("/api/%2e%2e;x/admin"),
        Just("/api/v1/items;x"),
        Just("*")
    ];
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
    ];
    let env = prop_oneof![
        Just(Value::Null),
        Just(json!("prod")),
        Just(json!(["dev", "prod"])),
        Just(json!("staging")),
        Just(json!("dev,prod")),
        Just(json!("")),
        Just(json!("staging, prod"))
    ];
    let workload = prop_oneof![
        Just(None),
        Just(Some(("shop", "web"))),
        Just(Some(("shop", "db"))),
        Just(Some(("other", "web")))
    ];
    (peers, ips, remote, hosts, methods, paths, claims, env, workload, prop::bool::ANY, prop::bool::ANY)
        .prop_map(|(peer, ip, remote, host, method, path, claims, env, workload, port, sni)| {
            let mut headers = serde_json::Map::new();
            if !env.is_null() {
                headers.insert("x-env".into(), env);
            }
            let mut destination = json!({"ip": "10.9.9.9", "port": if port { 8080 } else { 80 }});
            if let Some((namespace, app)) = workload {
                destination["namespace"] = json!(namespace);
                destination["labels"] = json!({"app": app});
            }
            let mut request = json!({"method": method, "path": path, "host": host, "headers": Value::Object(headers)});
            if !claims.is_null() {
                request["auth"] = json!({"claims": claims});
            }
            json!({
                "source": {"principal": peer, "ip": ip},
                "remote": {"ip": remote},
                "destination": destination,
                "connection": {"sni": if sni { "api.example.com" } else { "x.example.com" }},
                "request": request,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
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
            // The same scratch, reused, gives the same answer.
            prop_assert_eq!(set.evaluate(&view, &mut scratch), decision);
        }
    }
}
