//! Benchmark support for cordon: a deterministic generator of realistic policy sets, the
//! requests the benchmark decides, and the same policies written in Cedar.
//!
//! [`generate`] builds a set of exactly `rules` rules for one workload:
//! - ALLOW policies, one per destination service `svc<j>`, of ten rules each. Each rule names
//!   one source principal (`cluster.local/ns/ns<k>/sa/svc<i>`), one method (`GET` or
//!   `POST`) and one path under `/api/svc<j>/`: a prefix (`/api/svc<j>/orders/*`), an exact
//!   path, or a template (`/api/svc<j>/orders/{*}/status`); about a third of the rules also
//!   require a tenant header (`when: request.headers[x-tenant]`).
//! - One DENY policy in the root namespace with a few rules: `/admin*` for every principal
//!   but the operators' (`notPrincipals`), whole quarantined namespaces (`namespaces`), and
//!   `DELETE` on some services.
//!
//! Every rule is also written as one Cedar policy (`permit` for ALLOW, `forbid` for DENY),
//! in the same order, so `policy<K>` in Cedar is rule `K` of [`Generated::rule_ids`]. Istio's
//! decision order (DENY first, then ALLOW when ALLOW policies exist) is Cedar's (forbid
//! overrides permit, default deny), because every generated set has ALLOW policies.
//!
//! The Cedar text is equivalent to the Istio rules for requests whose path is already
//! normalized and whose peer has an identity, which is true of every benchmarked request:
//! - a principal is the entity `Service::"<principal>"`, a child of `Namespace::"<ns>"`;
//! - a method is the action `Action::"<method>"`;
//! - the normalized path is `context.path`: a prefix is `like "<prefix>*"`, an exact path
//!   `==`, and a `{*}` segment (one non-empty segment) is `like "a/*/b"` minus
//!   `like "a/*/*/b"` (a segment with a `/`) minus `"a//b"` (an empty one);
//! - headers are the record `context.headers`, and a header condition is
//!   `context.headers has "<name>" && context.headers["<name>"] == "<value>"`.
//!
//! Randomness comes from a seeded xorshift, so a size always yields the same set.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;

use cordon_engine::Request;
use serde_json::{json, Value};

/// The policy set sizes (in rules) that the benchmark measures.
pub const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// The principal of the operators, the only one allowed on `/admin*`.
pub const ADMIN_PRINCIPAL: &str = "cluster.local/ns/ops/sa/admin";

/// Rules per ALLOW policy.
const RULES_PER_POLICY: usize = 10;
/// Namespaces that source services are spread over.
const NAMESPACES: usize = 20;
/// Distinct tenants named by header conditions.
const TENANTS: u64 = 16;
/// Resources under each service's `/api/svc<j>/`.
const RESOURCES: [&str; 5] = ["orders", "items", "users", "reports", "events"];
/// Istio's root namespace, where the DENY policy lives (it applies to every workload).
const ROOT_NAMESPACE: &str = "istio-system";

/// A small deterministic pseudo-random generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a seed (a zero seed is replaced, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..bound` (`bound` > 0; slightly biased, which does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// Which outcome a benchmarked request exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Matches an ALLOW rule in the middle of the set: allowed.
    Matching,
    /// Matches no rule: denied by default, the worst case for a linear scan.
    NonMatching,
    /// Matches a DENY rule: denied.
    Denied,
}

impl RequestKind {
    /// The benchmark id of the kind.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Matching => "matching",
            RequestKind::NonMatching => "non-matching",
            RequestKind::Denied => "denied",
        }
    }
}

/// One benchmarked request, owning its attributes.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    /// What the request exercises.
    pub kind: RequestKind,
    /// The peer principal without scheme (`cluster.local/ns/ns3/sa/svc23`).
    pub principal: String,
    /// The peer's namespace.
    pub namespace: String,
    /// The URI SAN as the proxy sees it (`spiffe://...`).
    pub peer_identity: String,
    /// `:method`.
    pub method: &'static str,
    /// `:path`, already normalized (no query, no dot segments, no repeated slashes).
    pub path: String,
    /// Request headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// The decision every engine must reach.
    pub allowed: bool,
}

impl BenchRequest {
    /// The request as cordon-engine (and its reference interpreter) reads it.
    pub fn as_request(&self) -> Request<'_> {
        Request {
            peer_identity: Some(&self.peer_identity),
            method: Some(self.method),
            path: Some(&self.path),
            headers: &self.headers,
            ..Request::default()
        }
    }

    /// The request as Cedar reads it: principal, action, resource and context.
    pub fn cedar_request(&self) -> Result<cedar_policy::Request, String> {
        let context_headers = cedar_policy::RestrictedExpression::new_record(
            self.headers.iter().map(|(name, value)| {
                (
                    name.clone(),
                    cedar_policy::RestrictedExpression::new_string(value.clone()),
                )
            }),
        )
        .map_err(|error| error.to_string())?;
        let context = cedar_policy::Context::from_pairs([
            (
                "path".to_string(),
                cedar_policy::RestrictedExpression::new_string(self.path.clone()),
            ),
            ("headers".to_string(), context_headers),
        ])
        .map_err(|error| error.to_string())?;
        cedar_policy::Request::new(
            cedar_uid("Service", &self.principal)?,
            cedar_uid("Action", self.method)?,
            cedar_uid("Resource", "workload")?,
            context,
            None,
        )
        .map_err(|error| error.to_string())
    }

    /// The entities Cedar needs: the peer, a member of its namespace.
    pub fn cedar_entities(&self) -> Result<cedar_policy::Entities, String> {
        let namespace = cedar_uid("Namespace", &self.namespace)?;
        let peer = cedar_policy::Entity::new_no_attrs(
            cedar_uid("Service", &self.principal)?,
            HashSet::from([namespace.clone()]),
        );
        let namespace = cedar_policy::Entity::new_no_attrs(namespace, HashSet::new());
        cedar_policy::Entities::from_entities([peer, namespace], None)
            .map_err(|error| error.to_string())
    }
}

fn cedar_uid(kind: &str, id: &str) -> Result<cedar_policy::EntityUid, String> {
    let kind = cedar_policy::EntityTypeName::from_str(kind).map_err(|error| error.to_string())?;
    Ok(cedar_policy::EntityUid::from_type_name_and_id(
        kind,
        cedar_policy::EntityId::new(id),
    ))
}

/// A generated policy set with its Cedar twin and its benchmarked requests.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Number of rules.
    pub rules: usize,
    /// AuthorizationPolicy objects, ready for `PolicySet::compile`.
    pub policies: Vec<Value>,
    /// Istio rule ids in order; Cedar's `policy<K>` is rule `K`.
    pub rule_ids: Vec<String>,
    /// The Cedar policies, one per rule, in the same order.
    pub cedar: String,
    /// The requests the benchmark decides: matching, non-matching, denied.
    pub requests: Vec<BenchRequest>,
}

impl Generated {
    /// The Istio rule id behind a Cedar policy id (`policy<K>`).
    pub fn rule_of_cedar_policy(&self, id: &cedar_policy::PolicyId) -> Option<&str> {
        let index: usize = id.to_string().strip_prefix("policy")?.parse().ok()?;
        self.rule_ids.get(index).map(String::as_str)
    }
}

#[derive(Debug, Clone, Copy)]
enum PathKind {
    Prefix,
    Exact,
    Template,
}

/// One generated ALLOW rule.
#[derive(Debug, Clone)]
struct AllowRule {
    source: usize,
    method: &'static str,
    service: usize,
    resource: &'static str,
    path: PathKind,
    tenant: Option<u64>,
}

fn principal(source: usize) -> String {
    format!(
        "cluster.local/ns/{}/sa/svc{source}",
        source_namespace(source)
    )
}

fn source_namespace(source: usize) -> String {
    format!("ns{}", source % NAMESPACES)
}

fn tenant(index: u64) -> String {
    format!("tenant-{index}")
}

impl AllowRule {
    fn path_pattern(&self) -> String {
        let base = format!("/api/svc{}/{}", self.service, self.resource);
        match self.path {
            PathKind::Prefix => format!("{base}/*"),
            PathKind::Exact => base,
            PathKind::Template => format!("{base}/{{*}}/status"),
        }
    }

    /// A concrete path that the rule's path pattern matches.
    fn sample_path(&self) -> String {
        let base = format!("/api/svc{}/{}", self.service, self.resource);
        match self.path {
            PathKind::Prefix => format!("{base}/1042"),
            PathKind::Exact => base,
            PathKind::Template => format!("{base}/1042/status"),
        }
    }

    fn istio(&self) -> Value {
        let mut rule = json!({
            "from": [{"source": {"principals": [principal(self.source)]}}],
            "to": [{"operation": {"methods": [self.method], "paths": [self.path_pattern()]}}],
        });
        if let (Some(tenant_index), Some(map)) = (self.tenant, rule.as_object_mut()) {
            map.insert(
                "when".to_string(),
                json!([{"key": "request.headers[x-tenant]", "values": [tenant(tenant_index)]}]),
            );
        }
        rule
    }

    fn cedar(&self, out: &mut String) {
        let base = format!("/api/svc{}/{}", self.service, self.resource);
        let path = match self.path {
            PathKind::Prefix => format!("context.path like \"{base}/*\""),
            PathKind::Exact => format!("context.path == \"{base}\""),
            PathKind::Template => format!(
                "context.path like \"{base}/*/status\" && !(context.path like \"{base}/*/*/status\") && context.path != \"{base}//status\""
            ),
        };
        let header = match self.tenant {
            Some(index) => format!(
                " && context.headers has \"x-tenant\" && context.headers[\"x-tenant\"] == \"{}\"",
                tenant(index)
            ),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "permit (principal == Service::\"{}\", action == Action::\"{}\", resource) when {{ {path}{header} }};",
            principal(self.source),
            self.method
        );
    }
}

/// One generated DENY rule.
#[derive(Debug, Clone, Copy)]
enum DenyRule {
    /// `/admin*` for everyone but the operators.
    Admin,
    /// Everything from a quarantined namespace.
    Quarantine(usize),
    /// `DELETE` on one service.
    Delete(usize),
}

impl DenyRule {
    fn istio(self) -> Value {
        match self {
            DenyRule::Admin => json!({
                "from": [{"source": {"notPrincipals": [ADMIN_PRINCIPAL]}}],
                "to": [{"operation": {"paths": ["/admin*"]}}],
            }),
            DenyRule::Quarantine(index) => json!({
                "from": [{"source": {"namespaces": [format!("quarantine{index}")]}}],
            }),
            DenyRule::Delete(service) => json!({
                "to": [{"operation": {"methods": ["DELETE"], "paths": [format!("/api/svc{service}/*")]}}],
            }),
        }
    }

    fn cedar(self, out: &mut String) {
        let _ = match self {
            DenyRule::Admin => writeln!(
                out,
                "forbid (principal, action, resource) when {{ context.path like \"/admin*\" && principal != Service::\"{ADMIN_PRINCIPAL}\" }};"
            ),
            DenyRule::Quarantine(index) => writeln!(
                out,
                "forbid (principal in Namespace::\"quarantine{index}\", action, resource);"
            ),
            DenyRule::Delete(service) => writeln!(
                out,
                "forbid (principal, action == Action::\"DELETE\", resource) when {{ context.path like \"/api/svc{service}/*\" }};"
            ),
        };
    }
}

fn headers(tenant_index: u64) -> Vec<(String, String)> {
    [
        ("user-agent", "orders-client/2.3".to_string()),
        ("accept", "application/json".to_string()),
        (
            "x-request-id",
            "5f0c3a1e-7d2b-4b8e-9a61-0c2f4d8e7b13".to_string(),
        ),
        ("x-tenant", tenant(tenant_index)),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// The generated set after a change: rule 0 of the first ALLOW policy takes every service
/// account of its principal's namespace, and the second ALLOW policy loses its last rule.
/// `None` when the set lacks that shape (a [`generate`]d one has it).
pub fn changed(policies: &[Value]) -> Option<Vec<Value>> {
    let mut new = policies.to_vec();
    let principal = new
        .first_mut()?
        .pointer_mut("/spec/rules/0/from/0/source/principals/0")?;
    let (namespace, _) = principal.as_str()?.split_once("/sa/")?;
    *principal = Value::String(format!("{namespace}/sa/*"));
    new.get_mut(1)?
        .pointer_mut("/spec/rules")?
        .as_array_mut()?
        .pop()?;
    Some(new)
}

/// Generates a policy set of exactly `rules` rules (at least 3), its Cedar twin and its
/// three benchmarked requests. The same `rules` always gives the same set.
pub fn generate(rules: usize) -> Generated {
    let rules = rules.max(3);
    let mut rng = XorShift::new(0x00c0_4d0e_u64 ^ (rules as u64).wrapping_mul(0x9e37_79b9));
    let deny_count = (rules / 100).clamp(2, 10);
    let allow_count = rules - deny_count;
    let services = allow_count.div_ceil(RULES_PER_POLICY);
    // Source services: a few rules each, spread over the namespaces.
    let sources = (allow_count / 4).max(8);

    let allow: Vec<AllowRule> = (0..allow_count)
        .map(|position| {
            let path = match rng.below(10) {
                0..=4 => PathKind::Prefix,
                5..=7 => PathKind::Exact,
                _ => PathKind::Template,
            };
            AllowRule {
                source: rng.below(sources as u64) as usize,
                method: if rng.below(10) < 6 { "GET" } else { "POST" },
                service: position / RULES_PER_POLICY,
                resource: RESOURCES
                    .get(rng.below(RESOURCES.len() as u64) as usize)
                    .copied()
                    .unwrap_or("orders"),
                path,
                tenant: (rng.below(3) == 0).then(|| rng.below(TENANTS)),
            }
        })
        .collect();
    let deny: Vec<DenyRule> = (0..deny_count)
        .map(|position| match position {
            0 => DenyRule::Admin,
            odd if odd % 2 == 1 => DenyRule::Quarantine(odd),
            even => DenyRule::Delete(even % services.max(1)),
        })
        .collect();

    let mut policies = Vec::with_capacity(services + 1);
    let mut rule_ids = Vec::with_capacity(rules);
    let mut cedar = String::with_capacity(rules * 160);
    for (service, chunk) in allow.chunks(RULES_PER_POLICY).enumerate() {
        let name = format!("svc{service}-allow");
        let namespace = format!("ns{}", service % NAMESPACES);
        for (index, rule) in chunk.iter().enumerate() {
            rule_ids.push(format!("ns[{namespace}]-policy[{name}]-rule[{index}]"));
            rule.cedar(&mut cedar);
        }
        policies.push(json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "action": "ALLOW",
                "rules": chunk.iter().map(AllowRule::istio).collect::<Vec<_>>(),
            },
        }));
    }
    for (index, rule) in deny.iter().enumerate() {
        rule_ids.push(format!(
            "ns[{ROOT_NAMESPACE}]-policy[deny-sensitive]-rule[{index}]"
        ));
        rule.cedar(&mut cedar);
    }
    policies.push(json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "deny-sensitive", "namespace": ROOT_NAMESPACE},
        "spec": {
            "action": "DENY",
            "rules": deny.iter().map(|rule| rule.istio()).collect::<Vec<_>>(),
        },
    }));

    let requests = match allow.get(allow_count / 2) {
        Some(middle) => requests(middle, services),
        None => Vec::new(),
    };
    Generated {
        rules,
        policies,
        rule_ids,
        cedar,
        requests,
    }
}

/// The three requests, all from the peer of the middle ALLOW rule.
fn requests(middle: &AllowRule, services: usize) -> Vec<BenchRequest> {
    let peer = principal(middle.source);
    let request = |kind, method, path: String, allowed| BenchRequest {
        kind,
        principal: peer.clone(),
        namespace: source_namespace(middle.source),
        peer_identity: format!("spiffe://{peer}"),
        method,
        path,
        headers: headers(middle.tenant.unwrap_or(0)),
        allowed,
    };
    vec![
        request(
            RequestKind::Matching,
            middle.method,
            middle.sample_path(),
            true,
        ),
        // A service that no policy names, under the same `/api/svc` prefix as all others.
        request(
            RequestKind::NonMatching,
            middle.method,
            format!("/api/svc{services}/orders/1042"),
            false,
        ),
        request(
            RequestKind::Denied,
            "GET",
            "/admin/users".to_string(),
            false,
        ),
    ]
}

/// Maps a Cedar decision to allow/deny.
pub fn cedar_allowed(response: &cedar_policy::Response) -> bool {
    response.decision() == cedar_policy::Decision::Allow
}

/// Every Cedar policy that decided, by Istio rule id.
pub fn cedar_reasons<'g>(
    generated: &'g Generated,
    response: &cedar_policy::Response,
) -> Vec<&'g str> {
    response
        .diagnostics()
        .reason()
        .filter_map(|id| generated.rule_of_cedar_policy(id))
        .collect()
}

/// Counts of generated rules by kind, for the report.
pub fn describe(generated: &Generated) -> HashMap<&'static str, usize> {
    let mut counts = HashMap::new();
    for line in generated.cedar.lines() {
        let kind = if line.starts_with("forbid") {
            "deny"
        } else if line.contains("/*/status") {
            "template"
        } else if line.contains("context.path ==") {
            "exact"
        } else {
            "prefix"
        };
        *counts.entry(kind).or_insert(0) += 1;
        if line.contains("x-tenant") {
            *counts.entry("with-header-condition").or_insert(0) += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use cordon_engine::{model::parse_policies, reference, Options, PolicySet};

    #[test]
    fn sets_have_the_requested_size_and_compile_cleanly() {
        for size in SIZES {
            let generated = generate(size);
            assert_eq!(generated.rule_ids.len(), size);
            assert_eq!(generated.cedar.lines().count(), size);
            let set = PolicySet::compile(&generated.policies, Options::default()).unwrap();
            assert_eq!(set.rules().len(), size);
            assert!(set.warnings().is_empty(), "{:?}", set.warnings());
            let ids: Vec<&str> = set.rules().iter().map(|rule| rule.id.as_str()).collect();
            assert_eq!(ids, generated.rule_ids);
            let cedar = cedar_policy::PolicySet::from_str(&generated.cedar).unwrap();
            assert_eq!(cedar.policies().count(), size);
        }
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(generate(100).policies, generate(100).policies);
        assert_eq!(generate(100).cedar, generate(100).cedar);
    }

    /// cordon compiled, the reference interpreter and Cedar agree on every benchmarked
    /// request at every size, and name the same deciding rule.
    #[test]
    fn cordon_reference_and_cedar_agree() {
        let options = Options::default();
        let authorizer = cedar_policy::Authorizer::new();
        for size in SIZES {
            let generated = generate(size);
            let set = PolicySet::compile(&generated.policies, options.clone()).unwrap();
            let mut scratch = set.new_scratch();
            let (parsed, _, errors) = parse_policies(&generated.policies);
            assert!(errors.is_empty(), "{errors:?}");
            let cedar = cedar_policy::PolicySet::from_str(&generated.cedar).unwrap();
            assert_eq!(generated.requests.len(), 3);
            for request in &generated.requests {
                let context = format!("{size} rules, {} request", request.kind.name());
                let decision = set.evaluate(&request.as_request(), &mut scratch);
                let expected = reference::evaluate(&parsed, &options, &request.as_request());
                let response = authorizer.is_authorized(
                    &request.cedar_request().unwrap(),
                    &cedar,
                    &request.cedar_entities().unwrap(),
                );
                assert!(
                    response.diagnostics().errors().next().is_none(),
                    "{context}: Cedar errors"
                );
                assert_eq!(decision.allowed, request.allowed, "{context}: cordon");
                assert_eq!(expected.allowed, request.allowed, "{context}: reference");
                assert_eq!(
                    cedar_allowed(&response),
                    request.allowed,
                    "{context}: Cedar"
                );

                let cordon_rule = decision.policy.map(|rule| set.rule_id(rule).to_string());
                assert_eq!(cordon_rule, expected.policy, "{context}: deciding rule");
                // Cedar reports every satisfied policy of the deciding effect; the first
                // in order is the rule Istio names.
                let reasons = cedar_reasons(&generated, &response);
                let first = generated
                    .rule_ids
                    .iter()
                    .find(|id| reasons.contains(&id.as_str()));
                match request.kind {
                    RequestKind::Matching | RequestKind::Denied => {
                        assert_eq!(first, cordon_rule.as_ref(), "{context}: Cedar reason");
                    }
                    RequestKind::NonMatching => {
                        assert!(reasons.is_empty(), "{context}: {reasons:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn cedar_template_translation_matches_one_segment_only() {
        let rule = AllowRule {
            source: 1,
            method: "GET",
            service: 7,
            resource: "orders",
            path: PathKind::Template,
            tenant: None,
        };
        let mut text = String::new();
        rule.cedar(&mut text);
        let cedar = cedar_policy::PolicySet::from_str(&text).unwrap();
        let istio = json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "t", "namespace": "ns1"},
            "spec": {"rules": [rule.istio()]},
        });
        let set = PolicySet::compile(&[istio], Options::default()).unwrap();
        let mut scratch = set.new_scratch();
        let authorizer = cedar_policy::Authorizer::new();
        for (path, allowed) in [
            ("/api/svc7/orders/1/status", true),
            ("/api/svc7/orders/abc/status", true),
            ("/api/svc7/orders/1/2/status", false),
            ("/api/svc7/orders/status", false),
            ("/api/svc7/orders/1/status/x", false),
        ] {
            let request = BenchRequest {
                kind: RequestKind::Matching,
                principal: principal(1),
                namespace: source_namespace(1),
                peer_identity: format!("spiffe://{}", principal(1)),
                method: "GET",
                path: path.to_string(),
                headers: headers(0),
                allowed,
            };
            let decision = set.evaluate(&request.as_request(), &mut scratch);
            assert_eq!(decision.allowed, allowed, "cordon {path}");
            let response = authorizer.is_authorized(
                &request.cedar_request().unwrap(),
                &cedar,
                &request.cedar_entities().unwrap(),
            );
            assert_eq!(cedar_allowed(&response), allowed, "Cedar {path}");
        }
    }
}
