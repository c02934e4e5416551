//! The generators of random policy sets and requests that the engine's differential test
//! (compiled against reference) and the diff property tests share: a small vocabulary, so
//! that rules actually match, mixed with absent attributes and arbitrary strings.
#![allow(dead_code, clippy::indexing_slicing)]

use proptest::prelude::*;
use serde_json::{json, Value};

pub const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/a/sa/x",
    "spiffe://cluster.local/ns/b/sa/y",
    "cluster.local/ns/a/*",
    "*/sa/y",
    "*",
    "old.td/ns/a/sa/x",
];
pub const NAMESPACES: &[&str] = &["a", "b", "a*", "*b", "*"];
pub const SERVICE_ACCOUNTS: &[&str] = &["a/x", "b/y", "x", "a/y"];
pub const TRUST_DOMAINS: &[&str] = &["cluster.local", "other.td", "old.td"];
pub const REQUEST_PRINCIPALS: &[&str] = &["https://idp/alice", "https://idp/*", "*/bob", "*"];
pub const IP_BLOCKS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.2.3",
    "192.168.0.0/16",
    "::1",
    "2001:db8::/32",
    "0.0.0.0/0",
];
pub const HOSTS: &[&str] = &[
    "api.example.com",
    "*.example.com",
    "API.*",
    "*",
    "api.example.com:*",
    "*:8080",
    "API.EXAMPLE.COM:8080",
];
pub const PORTS: &[&str] = &["80", "8080"];
pub const METHODS: &[&str] = &["GET", "POST", "P*", "*"];
pub const PATHS: &[&str] = &[
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
pub const WHEN: &[(&str, &[&str])] = &[
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
pub const SOURCE_FIELDS: &[(&str, &[&str])] = &[
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
pub const OPERATION_FIELDS: &[(&str, &[&str])] = &[
    ("hosts", HOSTS),
    ("notHosts", HOSTS),
    ("ports", PORTS),
    ("notPorts", PORTS),
    ("methods", METHODS),
    ("notMethods", METHODS),
    ("paths", PATHS),
    ("notPaths", PATHS),
];

pub fn pick<'a>(choices: &'a [&'a str], seeds: &[usize]) -> Vec<&'a str> {
    let mut values: Vec<&str> = seeds
        .iter()
        .map(|seed| choices[seed % choices.len()])
        .collect();
    values.dedup();
    values
}

pub fn clause(fields: &[(&str, &[&str])], seeds: &[(usize, Vec<usize>)]) -> Value {
    let mut object = serde_json::Map::new();
    for (field, values) in seeds {
        let (name, choices) = fields[field % fields.len()];
        object.insert(name.to_string(), json!(pick(choices, values)));
    }
    Value::Object(object)
}

pub type ClauseSeed = Vec<(usize, Vec<usize>)>;

#[derive(Debug, Clone)]
pub struct RuleSeed {
    pub from: Vec<ClauseSeed>,
    pub to: Vec<ClauseSeed>,
    pub when: Vec<(usize, Vec<usize>, bool)>,
}

#[derive(Debug, Clone)]
pub struct PolicySeed {
    pub action: usize,
    pub dry_run: bool,
    pub namespace: usize,
    pub selector: Option<usize>,
    pub rules: Option<Vec<RuleSeed>>,
}

pub fn clause_seed() -> impl Strategy<Value = ClauseSeed> {
    prop::collection::vec(
        (any::<usize>(), prop::collection::vec(any::<usize>(), 1..3)),
        1..3,
    )
}

pub fn rule_seed() -> impl Strategy<Value = RuleSeed> {
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

pub fn policy_seed() -> impl Strategy<Value = PolicySeed> {
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

pub fn policy_json(position: usize, seed: &PolicySeed) -> Value {
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
pub fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        "[/%.;\\\\*?#a-zA-Z0-9\\x00-\\x1f\\u{80}-\\u{10ffff}]{0,24}",
    ]
}

/// One of `vocabulary` most of the time, arbitrary text otherwise.
pub fn text_or_vocabulary(vocabulary: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vocabulary).prop_map(str::to_string),
        1 => arbitrary_text(),
    ]
}

/// Absent about one time in six.
pub fn maybe<T: std::fmt::Debug + Clone>(
    strategy: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.85, strategy)
}

pub const PEERS: &[&str] = &[
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
pub const SOURCE_IPS: &[&str] = &["10.1.2.3", "192.168.4.4", "::1", "2001:db8::7", "8.8.8.8"];
pub const HOST_VALUES: &[&str] = &[
    "api.example.com",
    "API.EXAMPLE.COM:8080",
    "a.example.com",
    "api.example.com:443",
    "other",
    "",
];
pub const METHOD_VALUES: &[&str] = &["GET", "POST", "PUT", "get", ""];
pub const PATH_VALUES: &[&str] = &[
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
pub const ENV_VALUES: &[&str] = &["prod", "dev", "staging", "dev,prod", "", "staging, prod"];
pub const SNI_VALUES: &[&str] = &["api.example.com", "x.example.com", ""];

pub fn request_strategy() -> impl Strategy<Value = Value> {
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
