//! Shared pieces of cordon's fuzz targets: a generator of policies and requests drawn
//! from a vocabulary of values that actually match (mixed with arbitrary text), the
//! differential check of the compiled evaluator against the reference interpreter, and
//! the filter's in-memory proxy (`cordon_filter::testing`).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use arbitrary::{Result, Unstructured};
use cordon_engine::model::parse_policies;
use cordon_engine::{
    reference, Action, Options, PathNormalization, PolicySet, Reason, Request, RuleRef,
    TrafficRecord, Workload,
};
use serde_json::{json, Map, Value};

/// Every normalization mode.
pub const MODES: [PathNormalization; 5] = [
    PathNormalization::Strict,
    PathNormalization::None,
    PathNormalization::Base,
    PathNormalization::MergeSlashes,
    PathNormalization::DecodeAndMergeSlashes,
];

const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/a/sa/x",
    "spiffe://cluster.local/ns/b/sa/y",
    "cluster.local/ns/a/*",
    "*/sa/y",
    "*",
    "old.td/ns/a/sa/x",
    "cluster.local/ns/admin/sa/root",
    "Cluster.local/ns/a/sa/x",
];
const NAMESPACES: &[&str] = &["a", "b", "a*", "*b", "*", "admin"];
const SERVICE_ACCOUNTS: &[&str] = &["a/x", "b/y", "a/*", "*/y"];
const TRUST_DOMAINS: &[&str] = &["cluster.local", "other.td", "old.td", "*.td"];
const REQUEST_PRINCIPALS: &[&str] = &["https://idp/alice", "https://idp/*", "*/bob", "*"];
const IP_BLOCKS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.2.3",
    "192.168.0.0/16",
    "::1",
    "2001:db8::/32",
    "0.0.0.0/0",
    "::ffff:10.0.0.0/104",
    "10.0.0.0/33",
];
const HOSTS: &[&str] = &[
    "api.example.com",
    "*.example.com",
    "API.*",
    "*",
    "api.example.com:*",
    "api.example.com:8080",
    "*:8080",
];
const PORTS: &[&str] = &["80", "8080", "0", "65536"];
const METHODS: &[&str] = &["GET", "POST", "P*", "*", "get"];
const PATHS: &[&str] = &[
    "/admin",
    "/admin/*",
    "/api/*",
    "*.json",
    "/api/{*}/items",
    "/api/{**}",
    "/{*}/admin",
    "/a",
    "*",
    "/api/v1/items",
    "/Admin",
    "/admin;x",
    "/a/{**}/b",
];
const HEADER_VALUES: &[&str] = &[
    "prod",
    "dev",
    "p*",
    "*",
    "admin",
    "user",
    "*min",
    "a,b",
    "user,admin",
];
const CLAIM_VALUES: &[&str] = &["read", "write", "blue", "red", "*", "re*"];
const CONDITION_KEYS: &[&str] = &[
    "request.headers[x-env]",
    "request.headers[X-User]",
    "request.headers[x-debug]",
    "request.auth.claims[scope]",
    "request.auth.claims[scp]",
    "request.auth.claims[org][team]",
    "request.auth.claims[groups]",
    "request.auth.claims[a][b][c][d][e][f][g][h][i]",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "source.ip",
    "remote.ip",
    "destination.ip",
    "destination.port",
    "connection.sni",
    "source.namespace",
    "source.serviceAccount",
    "source.trustDomain",
    "source.principal",
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

const PEERS: &[&str] = &[
    "spiffe://cluster.local/ns/a/sa/x",
    "spiffe://cluster.local/ns/b/sa/y",
    "spiffe://other.td/ns/a/sa/x",
    "spiffe://old.td/ns/a/sa/x",
    "spiffe://Cluster.local/ns/a/sa/x",
    "spiffe://cluster.local:443/ns/a/sa/x",
    "spiffe://cluster.local/ns/a/sa/x/",
    "spiffe://cluster.local/ns/a/../admin/sa/root",
    "spiffe://cluster.local/ns/a/sa/x?q",
    "spiffe://cluster.local/ns/%61/sa/x",
    "SPIFFE://cluster.local/ns/a/sa/x",
    "spiffe://cluster.local/ns/admin/sa/root",
    "spiffe://cluster.local/ns/a",
    "spiffe://cluster.local",
];
const REQUEST_PATHS: &[&str] = &[
    "/admin",
    "//admin",
    "/admin/",
    "/ADMIN",
    "/Admin",
    "/./admin",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/%252e%252e/admin",
    "/public/..%2fadmin",
    "/public/..%5cadmin",
    "/public\\..\\admin",
    "\\admin",
    "/admin;x=1",
    "/public/..;/admin",
    "/admin%00",
    "/admin\u{0}",
    "/admin?x=/public",
    "/public?/admin",
    "/public#/../admin",
    "/api/v1/items",
    "/api/x.json?q=1",
    "/api//v1/items",
    "/api/v1/items/extra",
    "/%61dmin",
    "admin",
    "*",
    "",
    "/a",
    "/A",
    "/%C0%AEadmin",
    "/\u{ff0e}\u{ff0e}/admin",
];
const REQUEST_HOSTS: &[&str] = &[
    "api.example.com",
    "API.EXAMPLE.COM:8080",
    "a.example.com",
    "api.example.com:443",
    "api.example.com.",
    "other",
];
const REQUEST_HEADER_NAMES: &[&str] = &["x-env", "x-user", "X-User", "x-debug", "x-other"];
const REQUEST_HEADER_VALUES: &[&str] = &[
    "prod",
    "dev",
    "staging",
    "admin",
    "user",
    "user,admin",
    "admin,user",
    "user, admin",
    "",
    ",",
    "a",
    "b",
    "a,b",
    "ADMIN",
    "xadmin",
];
const IPS: &[&str] = &[
    "10.1.2.3",
    "192.168.4.4",
    "::1",
    "2001:db8::7",
    "8.8.8.8",
    "::ffff:10.1.2.3",
    "203.0.113.5",
    "10.9.9.9",
];

/// A vocabulary value most of the time, arbitrary text otherwise.
pub fn text(u: &mut Unstructured<'_>, vocabulary: &[&str]) -> Result<String> {
    if u.ratio(4, 5)? {
        Ok(u.choose(vocabulary)?.to_string())
    } else {
        let raw: String = u.arbitrary()?;
        Ok(raw.chars().take(48).collect())
    }
}

fn values(u: &mut Unstructured<'_>, vocabulary: &[&str]) -> Result<Vec<String>> {
    let count = u.int_in_range(1..=3)?;
    (0..count).map(|_| text(u, vocabulary)).collect()
}

fn clause(u: &mut Unstructured<'_>, fields: &[(&str, &[&str])]) -> Result<Value> {
    let mut object = Map::new();
    for _ in 0..u.int_in_range(1..=3)? {
        let (name, vocabulary) = *u.choose(fields)?;
        object.insert(name.to_string(), json!(values(u, vocabulary)?));
    }
    Ok(Value::Object(object))
}

fn condition(u: &mut Unstructured<'_>) -> Result<Value> {
    let key = text(u, CONDITION_KEYS)?;
    let vocabulary: &[&str] = if key.starts_with("request.headers") {
        HEADER_VALUES
    } else if key.contains("claims") {
        CLAIM_VALUES
    } else if key.ends_with(".ip") {
        IP_BLOCKS
    } else if key == "destination.port" {
        PORTS
    } else if key == "connection.sni" {
        HOSTS
    } else if key == "source.namespace" {
        NAMESPACES
    } else if key == "source.serviceAccount" {
        SERVICE_ACCOUNTS
    } else if key == "source.trustDomain" {
        TRUST_DOMAINS
    } else {
        PRINCIPALS
    };
    let mut condition = json!({ "key": key });
    match u.int_in_range(0..=2)? {
        0 => condition["values"] = json!(values(u, vocabulary)?),
        1 => condition["notValues"] = json!(values(u, vocabulary)?),
        _ => {
            condition["values"] = json!(values(u, vocabulary)?);
            condition["notValues"] = json!(values(u, vocabulary)?);
        }
    }
    Ok(condition)
}

fn rule(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut object = Map::new();
    let from = u.int_in_range(0..=2)?;
    if from > 0 {
        let clauses: Result<Vec<Value>> = (0..from)
            .map(|_| Ok(json!({ "source": clause(u, SOURCE_FIELDS)? })))
            .collect();
        object.insert("from".into(), Value::Array(clauses?));
    }
    let to = u.int_in_range(0..=2)?;
    if to > 0 {
        let clauses: Result<Vec<Value>> = (0..to)
            .map(|_| Ok(json!({ "operation": clause(u, OPERATION_FIELDS)? })))
            .collect();
        object.insert("to".into(), Value::Array(clauses?));
    }
    let when = u.int_in_range(0..=2)?;
    if when > 0 {
        let conditions: Result<Vec<Value>> = (0..when).map(|_| condition(u)).collect();
        object.insert("when".into(), Value::Array(conditions?));
    }
    Ok(Value::Object(object))
}

/// One AuthorizationPolicy, usually valid.
pub fn policy(u: &mut Unstructured<'_>, position: usize) -> Result<Value> {
    let action = *u.choose(&["ALLOW", "ALLOW", "DENY", "DENY", "AUDIT"])?;
    let namespace = *u.choose(&["shop", "other", "istio-system"])?;
    let mut metadata = json!({"name": format!("p{position}"), "namespace": namespace});
    if u.ratio(1, 5)? {
        metadata["annotations"] = json!({"istio.io/dry-run": "true"});
    }
    let mut spec = Map::new();
    spec.insert("action".into(), json!(action));
    if u.ratio(1, 4)? {
        let app = *u.choose(&["web", "db"])?;
        spec.insert("selector".into(), json!({"matchLabels": {"app": app}}));
    }
    if u.ratio(1, 20)? {
        spec.insert(
            "targetRefs".into(),
            json!([{"kind": "Gateway", "name": "gw"}]),
        );
    }
    let count = u.int_in_range(0..=3)?;
    if count > 0 || action == "DENY" || u.ratio(1, 2)? {
        let rules: Result<Vec<Value>> = (0..count.max(u8::from(action == "DENY")))
            .map(|_| rule(u))
            .collect();
        spec.insert("rules".into(), Value::Array(rules?));
    }
    Ok(json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": metadata,
        "spec": Value::Object(spec),
    }))
}

fn ip(u: &mut Unstructured<'_>) -> Result<IpAddr> {
    if u.ratio(4, 5)? {
        Ok(u.choose(IPS)?.parse().expect("vocabulary addresses parse"))
    } else if u.arbitrary()? {
        Ok(IpAddr::from(u.arbitrary::<[u8; 4]>()?))
    } else {
        Ok(IpAddr::from(u.arbitrary::<[u8; 16]>()?))
    }
}

fn claims(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut object = Map::new();
    object.insert(
        "iss".into(),
        json!(text(u, &["https://idp", "https://other"])?),
    );
    if u.ratio(4, 5)? {
        object.insert("sub".into(), json!(text(u, &["alice", "bob"])?));
    }
    match u.int_in_range(0..=2)? {
        0 => {}
        1 => {
            object.insert("aud".into(), json!(text(u, &["billing", "orders"])?));
        }
        _ => {
            object.insert("aud".into(), json!(["billing", text(u, &["orders"])?]));
        }
    }
    if u.arbitrary()? {
        object.insert("azp".into(), json!(text(u, &["web", "cli"])?));
    }
    if u.arbitrary()? {
        let scope = text(u, &["read write", "write", "read  write ", " read"])?;
        object.insert((*u.choose(&["scope", "scp"])?).into(), json!(scope));
    }
    if u.arbitrary()? {
        let team = if u.arbitrary()? {
            json!(text(u, &["blue", "red"])?)
        } else {
            json!(["red", text(u, &["blue"])?, 7])
        };
        object.insert("org".into(), json!({ "team": team }));
    }
    if u.ratio(1, 4)? {
        object.insert("groups".into(), json!(values(u, CLAIM_VALUES)?));
    }
    if u.ratio(1, 8)? {
        object.insert(
            "a".into(),
            json!({"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": "read"}}}}}}}}),
        );
    }
    Ok(Value::Object(object))
}

/// One request, as a traffic record.
pub fn record(u: &mut Unstructured<'_>) -> Result<TrafficRecord> {
    let mut record = TrafficRecord {
        principal: if u.ratio(4, 5)? {
            Some(text(u, PEERS)?)
        } else {
            None
        },
        source_ip: if u.ratio(9, 10)? { Some(ip(u)?) } else { None },
        remote_ip: if u.ratio(1, 3)? { Some(ip(u)?) } else { None },
        destination_ip: if u.ratio(9, 10)? { Some(ip(u)?) } else { None },
        destination_port: if u.ratio(9, 10)? {
            Some(*u.choose(&[80, 8080, 443, 0, 65535])?)
        } else {
            None
        },
        mtls: *u.choose(&[None, Some(true), Some(false)])?,
        sni: if u.arbitrary()? {
            Some(text(u, REQUEST_HOSTS)?)
        } else {
            None
        },
        method: if u.ratio(9, 10)? {
            Some(text(u, &["GET", "POST", "PUT", "get"])?)
        } else {
            None
        },
        path: if u.ratio(19, 20)? {
            Some(text(u, REQUEST_PATHS)?)
        } else {
            None
        },
        host: if u.ratio(9, 10)? {
            Some(text(u, REQUEST_HOSTS)?)
        } else {
            None
        },
        ..TrafficRecord::default()
    };
    for _ in 0..u.int_in_range(0..=4)? {
        let name = text(u, REQUEST_HEADER_NAMES)?;
        let value = text(u, REQUEST_HEADER_VALUES)?;
        record.headers.push((name, value));
    }
    if u.ratio(1, 2)? {
        record.claims = Some(claims(u)?);
    }
    match u.int_in_range(0..=3)? {
        0 => {}
        1 => {
            record.destination_namespace = Some("shop".into());
            record.destination_labels = BTreeMap::from([("app".into(), "web".into())]);
        }
        2 => {
            record.destination_namespace = Some("shop".into());
            record.destination_labels = BTreeMap::from([("app".into(), "db".into())]);
        }
        _ => {
            record.destination_namespace = Some("other".into());
        }
    }
    Ok(record)
}

/// Compile options: a normalization mode, and maybe trust domain aliases.
pub fn options(u: &mut Unstructured<'_>) -> Result<Options> {
    let mut options = Options {
        path_normalization: *u.choose(&MODES)?,
        ..Options::default()
    };
    if u.arbitrary()? {
        options.trust_domain = Some("cluster.local".into());
        options.trust_domain_aliases = vec!["old.td".into()];
    }
    if u.ratio(1, 8)? {
        options.limits.max_header_bytes = u.int_in_range(0..=24)?;
        options.limits.max_path_bytes = u.int_in_range(0..=24)?;
    }
    Ok(options)
}

/// The request with only the attributes `set.needs()` asks for: what the filter fetches.
pub fn masked<'r>(set: &PolicySet, request: &Request<'r>) -> Request<'r> {
    let needs = set.needs();
    Request {
        peer_identity: request.peer_identity.filter(|_| needs.peer_identity),
        source_ip: request.source_ip.filter(|_| needs.source_ip),
        remote_ip: request.remote_ip.filter(|_| needs.remote_ip),
        destination_ip: request.destination_ip.filter(|_| needs.destination_ip),
        destination_port: request.destination_port.filter(|_| needs.destination_port),
        sni: request.sni.filter(|_| needs.sni),
        method: request.method.filter(|_| needs.method),
        path: request.path.filter(|_| needs.path),
        host: request.host.filter(|_| needs.host),
        headers: if needs.headers.is_empty() {
            &cordon_engine::NoHeaders
        } else {
            request.headers
        },
        claims: request.claims.filter(|_| needs.claims),
    }
}

/// Decides `record` with the compiled evaluator and the reference interpreter and panics
/// on any disagreement, or on a decision that breaks Istio's decision order. The workload
/// is the record's destination.
pub fn check_agreement(policies: &[Value], options: &Options, record: &TrafficRecord) {
    let mut options = options.clone();
    options.workload = Workload {
        namespace: record.destination_namespace.clone(),
        labels: record.destination_labels.clone(),
    };
    if let Some(compiled) = Compiled::new(policies, options) {
        compiled.check(record);
    }
}

/// A policy set compiled for one workload, with what the reference interpreter needs.
pub struct Compiled<'p> {
    policies: &'p [Value],
    parsed: Vec<cordon_engine::Policy>,
    options: Options,
    set: PolicySet,
}

impl<'p> Compiled<'p> {
    /// Compiles; `None` when the policies are refused.
    pub fn new(policies: &'p [Value], options: Options) -> Option<Self> {
        let (parsed, _, errors) = parse_policies(policies);
        let set = PolicySet::compile(policies, options.clone()).ok()?;
        assert!(
            errors.is_empty(),
            "compiled despite parse errors: {errors:?}"
        );
        Some(Compiled {
            policies,
            parsed,
            options,
            set,
        })
    }

    /// Checks one request (its destination is ignored: the set's workload applies).
    pub fn check(&self, record: &TrafficRecord) {
        let Compiled {
            policies,
            parsed,
            options,
            set,
        } = self;
        let request = record.request();
        let mut scratch = set.new_scratch();
        let decision = set.evaluate(&request, &mut scratch);
        let oracle = reference::evaluate(parsed, options, &request);
        let name = |rule: Option<RuleRef>| rule.map(|rule| set.rule_id(rule).to_string());
        let context = || format!("policies {policies:?}\noptions {options:?}\nrequest {record:?}");
        assert_eq!(decision.allowed, oracle.allowed, "allowed\n{}", context());
        assert_eq!(decision.status, oracle.status, "status\n{}", context());
        assert_eq!(
            name(decision.policy),
            oracle.policy,
            "policy\n{}",
            context()
        );
        assert_eq!(name(decision.audit), oracle.audit, "audit\n{}", context());
        assert_eq!(
            (decision.dry_run.allowed, name(decision.dry_run.rule)),
            oracle.dry_run,
            "dry run\n{}",
            context()
        );
        assert_eq!(decision.allowed, decision.status == 200, "{}", context());
        if matches!(decision.reason, Reason::PathRejected(_)) {
            assert_eq!(decision.status, 400);
        }
        if let Some(rule) = decision.policy.and_then(|rule| set.rule(rule)) {
            let expected = if decision.allowed {
                Action::Allow
            } else {
                Action::Deny
            };
            assert_eq!(rule.role.action, expected, "{}", context());
            assert!(!rule.role.dry_run, "{}", context());
        }
        if let Some(rule) = decision.audit.and_then(|rule| set.rule(rule)) {
            assert_eq!(rule.role.action, Action::Audit);
        }
        // Reusing the scratch changes nothing; neither does leaving out what the set does
        // not read (the filter fetches only that).
        assert_eq!(
            set.evaluate(&request, &mut scratch),
            decision,
            "{}",
            context()
        );
        let masked = masked(set, &request);
        let mut from_needs = set.evaluate(&masked, &mut scratch);
        if !set.needs().peer_identity {
            // What the engine made of an identity it was not given is only informational.
            from_needs.identity = decision.identity;
        }
        assert_eq!(
            from_needs,
            decision,
            "needs {:?}\n{}",
            set.needs(),
            context()
        );
    }
}

/// The filter's in-memory proxy, shared with its tests.
pub use cordon_filter::testing::FakeHost;
