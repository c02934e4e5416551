//! `cordon blast-radius`: from the policies alone, what an identity can reach.
//!
//! For an identity and a workload, every policy that applies to the workload is evaluated
//! symbolically. A rule's `from` (and its `when` conditions) is matched against the
//! identity with three outcomes: yes, no, or *conditional*, when it depends on something
//! other than the peer identity (request principals, JWT claims, IP blocks, headers…), which
//! the result then names. The `to` operations of the ALLOW rules that match (or everything,
//! when no ALLOW policy applies) are what the identity may do, minus what matching DENY
//! rules take away: a path a DENY rule covers for all the grant's methods disappears, a
//! partial overlap shows as an exception, a conditional DENY as a "may be denied".
//!
//! Identities: every principal, service account and namespace named in the policies, plus
//! *any authenticated identity* (one the policies do not name) and *plaintext* (no
//! identity). Workloads: every selector of a non-root policy, `<namespace>/*` for the
//! other workloads of each namespace a policy names, and every selector of a root-namespace
//! policy, shown as `<root>/<labels>`: Istio applies those to the workloads with the labels
//! in every namespace (the ingress gateway policies of Istio's documentation select
//! `istio: ingressgateway` in `istio-system`). The same labels in another namespace are
//! subject to that namespace's policies too; the selector policies of the root namespace
//! are assumed not to select a namespace's *other* workloads. Dry-run and AUDIT policies
//! change nothing.
//!
//! # At mesh scale
//!
//! [`Analysis`] does the work without holding identities × workloads in memory, and its
//! writers stream the result (one identity's row at a time). Workloads to which the same
//! policies apply form one class, computed once per identity; each identity's judgement of
//! every rule is computed once, from the truth of each distinct identity value the policies
//! write (the engine's partial evaluation, [`cordon_engine::partial::value_truth`]); a
//! workload whose ALLOW rules all say "no" to the identity costs one look-up per rule; the
//! engine's relations between grant and DENY paths are asked once per pair. [`reach_of`]
//! is the direct computation, one identity and one workload from scratch; the tests hold
//! the two equal on a generated mesh ([`mesh`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};

use cordon_engine::model::{Attribute, Clause, Field, Matcher, Policy, Rule};
use cordon_engine::partial::{is_identity, value_truth, PeerClass, Truth};
use cordon_engine::pattern::StringPattern;
use cordon_engine::reference::Judge;
use cordon_engine::{Action, Options, Request, SpiffeId};

use super::discover::workload_label;

mod grants;
pub mod mesh;
mod write;

use grants::{regroup, Atom, Operation, Relations};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// One SPIFFE principal (no scheme): `cluster.local/ns/shop/sa/frontend`.
    Principal(String),
    /// Any workload running as a service account (`namespace/name`), in any trust domain.
    ServiceAccount(String, String),
    /// Any workload of a namespace.
    Namespace(String),
    /// Any mesh identity the policies do not name.
    Authenticated,
    /// No identity.
    Plaintext,
}

impl Subject {
    /// How the subject is shown.
    pub fn label(&self) -> String {
        match self {
            Subject::Principal(principal) => principal.clone(),
            Subject::ServiceAccount(namespace, name) => {
                format!("service account {namespace}/{name}")
            }
            Subject::Namespace(namespace) => format!("namespace {namespace}"),
            Subject::Authenticated => "any authenticated identity".to_string(),
            Subject::Plaintext => "plaintext".to_string(),
        }
    }

    /// Reads `--principal`: a SPIFFE ID (`spiffe://cluster.local/ns/shop/sa/frontend`),
    /// an Istio principal without the scheme (`cluster.local/ns/shop/sa/frontend`: trust
    /// domain, `ns`, namespace, `sa`, service account), `authenticated` or `plaintext`.
    /// Anything else (`shop/orders`) is an error that says what is wrong: without the
    /// scheme, a trust domain and a path of any shape would read too much as an identity.
    pub fn parse(text: &str) -> Result<Subject, String> {
        match text {
            "plaintext" | "none" => return Ok(Subject::Plaintext),
            "authenticated" | "any" => return Ok(Subject::Authenticated),
            _ => {}
        }
        const SHAPE: &str = "expected a SPIFFE ID (`spiffe://<trust domain>/<path>`), an Istio \
                             principal (`cluster.local/ns/<namespace>/sa/<service account>`), \
                             `authenticated` or `plaintext`";
        if text.starts_with("spiffe://") {
            let id = SpiffeId::parse(text)
                .map_err(|error| format!("`{text}` is not a valid SPIFFE ID: {error}"))?;
            return Ok(Subject::Principal(id.principal().to_string()));
        }
        let uri = format!("spiffe://{text}");
        let id = SpiffeId::parse(&uri)
            .map_err(|error| format!("`{text}` is not a valid SPIFFE ID: {error}; {SHAPE}"))?;
        if id.service_account().is_none() {
            let hint = match text.split_once('/') {
                Some((namespace, account)) if !account.contains('/') => format!(
                    " (for service account `{account}` of namespace `{namespace}`: \
                     `cluster.local/ns/{namespace}/sa/{account}`)"
                ),
                _ => String::new(),
            };
            return Err(format!(
                "`{text}` is not an identity: it has no `spiffe://` scheme and is not of \
                 Istio's shape <trust domain>/ns/<namespace>/sa/<service account>; \
                 {SHAPE}{hint}"
            ));
        }
        Ok(Subject::Principal(id.principal().to_string()))
    }

    /// The peers the subject stands for, as the engine's partial evaluation reads them.
    fn peer_class(&self) -> PeerClass {
        match self {
            Subject::Principal(principal) => PeerClass::Uri(format!("spiffe://{principal}")),
            Subject::ServiceAccount(namespace, name) => PeerClass::ServiceAccount {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            Subject::Namespace(namespace) => PeerClass::Namespace(namespace.clone()),
            Subject::Authenticated => PeerClass::Authenticated,
            Subject::Plaintext => PeerClass::Plaintext,
        }
    }
}

/// A workload the policies name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Namespace.
    pub namespace: String,
    /// Selector labels; `None`: the namespace's other workloads.
    pub labels: Option<BTreeMap<String, String>>,
}

impl Target {
    /// `namespace/app`, `namespace/k=v`, or `namespace/*`.
    pub fn label(&self) -> String {
        match &self.labels {
            Some(labels) => workload_label(&self.namespace, labels),
            None => format!("{}/*", self.namespace),
        }
    }

    /// Reads `--workload`, as [`Target::label`] writes it: `<namespace>/<app>` (label
    /// `app`), `<namespace>/<key>=<value>,<key>=<value>…`, or `<namespace>/*` (the
    /// namespace's workloads no policy selects).
    pub fn parse(text: &str) -> Result<Target, String> {
        const SHAPE: &str = "expected `<namespace>/<app>`, `<namespace>/<key>=<value>,…` or \
                             `<namespace>/*`";
        let Some((namespace, rest)) = text.split_once('/') else {
            return Err(format!("`{text}` has no namespace; {SHAPE}"));
        };
        if namespace.is_empty() || rest.is_empty() {
            return Err(format!("`{text}`: empty namespace or workload; {SHAPE}"));
        }
        let namespace = namespace.to_string();
        if rest == "*" {
            return Ok(Target {
                namespace,
                labels: None,
            });
        }
        let mut labels = BTreeMap::new();
        if !rest.contains('=') {
            labels.insert("app".to_string(), rest.to_string());
        } else {
            for pair in rest.split(',') {
                match pair.split_once('=') {
                    Some((key, value)) if !key.is_empty() && !value.is_empty() => {
                        if labels.insert(key.to_string(), value.to_string()).is_some() {
                            return Err(format!("`{text}`: label `{key}` given twice"));
                        }
                    }
                    _ => {
                        return Err(format!(
                            "`{text}`: `{pair}` is not `<key>=<value>`; {SHAPE}"
                        ))
                    }
                }
            }
        }
        Ok(Target {
            namespace,
            labels: Some(labels),
        })
    }

    fn applies(&self, policy: &Policy, root_namespace: &str) -> bool {
        if policy.targets_gateway {
            return false;
        }
        match &self.labels {
            Some(labels) => policy.applies_to(Some(&self.namespace), labels, root_namespace),
            None => {
                (policy.namespace == self.namespace || policy.namespace == root_namespace)
                    && policy.selector.as_ref().is_none_or(BTreeMap::is_empty)
            }
        }
    }
}

/// A match with the conditions it depends on.
#[derive(Debug, Clone)]
struct Judgement {
    tri: Truth,
    conditions: Vec<String>,
}

impl Judgement {
    const YES: Judgement = Judgement {
        tri: Truth::Yes,
        conditions: Vec::new(),
    };
    const NO: Judgement = Judgement {
        tri: Truth::No,
        conditions: Vec::new(),
    };
}

/// No match, as a place to point at.
static NO: Judgement = Judgement::NO;

/// What one grant lets the identity do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// The ALLOW rule granting it; `None` when no ALLOW policy applies (all is allowed).
    pub rule: Option<String>,
    /// Methods; `None`: any.
    pub methods: Option<Vec<String>>,
    /// Paths; `None`: any.
    pub paths: Option<Vec<String>>,
    /// Hosts, when restricted.
    pub hosts: Vec<String>,
    /// Ports, when restricted.
    pub ports: Vec<String>,
    /// Excluded methods, paths, hosts, ports (`notMethods`…), as `field: value`.
    pub excluded: Vec<String>,
    /// What the grant depends on besides the identity.
    pub conditions: Vec<String>,
    /// What DENY rules take away, or may take away.
    pub except: Vec<String>,
}

impl Grant {
    fn unrestricted(&self) -> bool {
        self.methods.is_none()
            && self.paths.is_none()
            && self.hosts.is_empty()
            && self.ports.is_empty()
            && self.excluded.is_empty()
            && self.conditions.is_empty()
            && self.except.is_empty()
    }

    /// One line for people: `GET, POST /a, /b/{*} on hosts … except … if …`.
    pub fn describe(&self) -> String {
        let mut text = match (&self.methods, &self.paths) {
            (None, None) => "everything".to_string(),
            (None, Some(paths)) => format!("any method on {}", paths.join(", ")),
            (Some(methods), None) => format!("{} on any path", methods.join(",")),
            (Some(methods), Some(paths)) => format!("{} {}", methods.join(","), paths.join(", ")),
        };
        if !self.hosts.is_empty() {
            text.push_str(&format!(" on hosts {}", self.hosts.join(", ")));
        }
        if !self.ports.is_empty() {
            text.push_str(&format!(" on ports {}", self.ports.join(", ")));
        }
        for excluded in &self.excluded {
            text.push_str(&format!(" not {excluded}"));
        }
        for except in &self.except {
            text.push_str(&format!(" except {except}"));
        }
        if !self.conditions.is_empty() {
            text.push_str(&format!(" if {}", self.conditions.join(" and ")));
        }
        text
    }
}

/// How much of a workload an identity reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Nothing.
    None,
    /// Only under conditions besides the identity.
    Conditional,
    /// Some operations.
    Partial,
    /// Everything.
    All,
}

impl Access {
    /// `none`, `conditional`, `partial`, `all`.
    pub fn name(self) -> &'static str {
        match self {
            Access::None => "none",
            Access::Conditional => "conditional",
            Access::Partial => "partial",
            Access::All => "all",
        }
    }

    fn cell(self) -> &'static str {
        match self {
            Access::None => "-",
            Access::Conditional => "cond",
            Access::Partial => "partial",
            Access::All => "ALL",
        }
    }

    fn of(grants: &[Grant]) -> Access {
        if grants.is_empty() {
            Access::None
        } else if grants.iter().any(Grant::unrestricted) {
            Access::All
        } else if grants.iter().all(|g| !g.conditions.is_empty()) {
            Access::Conditional
        } else {
            Access::Partial
        }
    }
}

/// One identity against one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The identity.
    pub subject: Subject,
    /// The workload.
    pub target: Target,
    /// How much.
    pub access: Access,
    /// What, exactly.
    pub grants: Vec<Grant>,
}

/// The whole analysis, in memory (identities × workloads of it): for small policy sets and
/// views that need everything at once (the HTML page). At mesh scale, [`Analysis`] streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlastRadius {
    /// Identities, in order.
    pub subjects: Vec<Subject>,
    /// Workloads, in order.
    pub targets: Vec<Target>,
    /// Subject-major: `reach[s * targets.len() + t]`.
    pub reach: Vec<Reach>,
}

/// The identities the policies name, then any authenticated identity and plaintext.
pub fn subjects(policies: &[Policy]) -> Vec<Subject> {
    let mut found: BTreeSet<Subject> = BTreeSet::new();
    for policy in policies.iter().filter(|p| !p.targets_gateway) {
        for rule in &policy.rules {
            for field in rule
                .from
                .iter()
                .chain(&rule.when)
                .flat_map(|clause| clause.fields.iter())
            {
                for matcher in &field.values {
                    let Matcher::Str(StringPattern::Exact(text)) = matcher else {
                        continue;
                    };
                    match field.attribute {
                        Attribute::Principal => {
                            found.insert(Subject::Principal(text.clone()));
                        }
                        Attribute::Namespace => {
                            found.insert(Subject::Namespace(text.clone()));
                        }
                        Attribute::ServiceAccount => {
                            if let Some((namespace, name)) = text.split_once('/') {
                                found.insert(Subject::ServiceAccount(
                                    namespace.to_string(),
                                    name.to_string(),
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let mut all: Vec<Subject> = found.into_iter().collect();
    all.push(Subject::Authenticated);
    all.push(Subject::Plaintext);
    all
}

/// The workloads the policies name (see the module documentation).
pub fn targets(policies: &[Policy], root_namespace: &str) -> Vec<Target> {
    let mut found: BTreeSet<(String, bool, BTreeMap<String, String>)> = BTreeSet::new();
    for policy in policies.iter().filter(|p| !p.targets_gateway) {
        let selector = policy.selector.as_ref().filter(|s| !s.is_empty());
        if policy.namespace == root_namespace {
            // Mesh-wide: only its selector names workloads (those with the labels, anywhere).
            if let Some(selector) = selector {
                found.insert((policy.namespace.clone(), false, selector.clone()));
            }
            continue;
        }
        found.insert((policy.namespace.clone(), true, BTreeMap::new()));
        if let Some(selector) = selector {
            found.insert((policy.namespace.clone(), false, selector.clone()));
        }
    }
    found
        .into_iter()
        .map(|(namespace, other, labels)| Target {
            namespace,
            labels: (!other).then_some(labels),
        })
        .collect()
}

/// Which workloads to show: all those the policies name (the default), or only those of
/// some namespaces, and workloads given by their labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The workloads the policies name in these namespaces, and `<namespace>/*`.
    pub namespaces: Vec<String>,
    /// These workloads (named by the policies or not).
    pub workloads: Vec<Target>,
}

impl Scope {
    /// Everything the policies name.
    pub fn all() -> Scope {
        Scope::default()
    }

    fn is_all(&self) -> bool {
        self.namespaces.is_empty() && self.workloads.is_empty()
    }

    /// The targets in scope, without repeats: the named ones of the namespaces in their
    /// order, then each namespace's other workloads (when not named), then the workloads
    /// given.
    fn select(&self, named: Vec<Target>) -> Vec<Target> {
        if self.is_all() {
            return named;
        }
        let mut chosen: Vec<Target> = named
            .into_iter()
            .filter(|t| self.namespaces.contains(&t.namespace))
            .collect();
        let mut seen: BTreeSet<Target> = chosen.iter().cloned().collect();
        let others = self.namespaces.iter().map(|namespace| Target {
            namespace: namespace.clone(),
            labels: None,
        });
        for target in others.chain(self.workloads.iter().cloned()) {
            if seen.insert(target.clone()) {
                chosen.push(target);
            }
        }
        chosen
    }
}

/// The analysis for the given identities (all named ones when `None`), held in memory.
pub fn analyze(policies: &[Policy], only: Option<Subject>, root_namespace: &str) -> BlastRadius {
    Analysis::new(policies, only, root_namespace, &Scope::all()).collect()
}

/// What `subject` can do on `target`, computed directly (every policy, every rule, from
/// scratch): the definition the class-based [`Analysis`] is held to.
pub fn reach_of(policies: &[Policy], subject: &Subject, target: &Target, root: &str) -> Reach {
    let applicable: Vec<(usize, &Policy)> = policies
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.dry_run && target.applies(p, root))
        .collect();
    let grants = grants_of(
        &applicable,
        |_, rule| judge_rule(rule, &mut |_, field| judge_field(field, subject)),
        &Relations::default(),
    );
    Reach {
        subject: subject.clone(),
        target: target.clone(),
        access: Access::of(&grants),
        grants,
    }
}

/// What the applicable policies grant, given how each rule judges the identity (`judge`
/// gets the policy's position in `applicable` and the rule's index).
fn grants_of<'p>(
    applicable: &[(usize, &'p Policy)],
    mut judge: impl FnMut((usize, usize), &'p Rule) -> Judgement,
    relations: &Relations,
) -> Vec<Grant> {
    let mut atoms: Vec<Atom> = Vec::new();
    let has_allow = applicable.iter().any(|(_, p)| p.action == Action::Allow);
    if has_allow {
        for (position, policy) in applicable.iter() {
            if policy.action != Action::Allow {
                continue;
            }
            for (index, rule) in policy.rules.iter().enumerate() {
                let judgement = judge((*position, index), rule);
                if judgement.tri == Truth::No {
                    continue;
                }
                let id = policy.rule_id(index);
                if rule.to.is_empty() {
                    atoms.push(Atom::any(Some(id.clone()), judgement.conditions.clone()));
                }
                for clause in &rule.to {
                    atoms.extend(Atom::from_clause(clause, Some(&id), &judgement.conditions));
                }
            }
        }
    } else {
        atoms.push(Atom::any(None, Vec::new()));
    }
    for (position, policy) in applicable.iter() {
        if policy.action != Action::Deny {
            continue;
        }
        for (index, rule) in policy.rules.iter().enumerate() {
            if atoms.is_empty() {
                break;
            }
            let judgement = judge((*position, index), rule);
            if judgement.tri == Truth::No {
                continue;
            }
            let id = policy.rule_id(index);
            let denials: Vec<Operation> = if rule.to.is_empty() {
                vec![Operation::default()]
            } else {
                rule.to.iter().map(Operation::from_clause).collect()
            };
            for denial in &denials {
                atoms = atoms
                    .into_iter()
                    .filter_map(|atom| atom.minus(denial, &id, &judgement, relations))
                    .collect();
            }
        }
    }
    regroup(atoms)
}

/// A rule's `from` and `when` against the identity, each field judged by `field_truth`
/// (given the field's position in the rule: `from` clauses' fields, then `when`'s).
fn judge_rule(rule: &Rule, field_truth: &mut dyn FnMut(usize, &Field) -> Truth) -> Judgement {
    let mut base = 0;
    let from_fields: usize = rule.from.iter().map(|clause| clause.fields.len()).sum();
    let from = if rule.from.is_empty() {
        Judgement::YES
    } else {
        let mut yes = false;
        let mut maybes: Vec<String> = Vec::new();
        for clause in &rule.from {
            let judged = judge_clause(clause, base, field_truth);
            base += clause.fields.len();
            match judged.tri {
                Truth::Yes => {
                    yes = true;
                    break;
                }
                Truth::Maybe => maybes.push(judged.conditions.join(" and ")),
                Truth::No => {}
            }
        }
        if yes {
            Judgement::YES
        } else {
            match maybes.len() {
                0 => Judgement::NO,
                1 => Judgement {
                    tri: Truth::Maybe,
                    conditions: maybes,
                },
                _ => Judgement {
                    tri: Truth::Maybe,
                    conditions: vec![format!("({})", maybes.join(") or ("))],
                },
            }
        }
    };
    base = from_fields;
    if from.tri == Truth::No {
        return from;
    }
    let mut result = from;
    for clause in &rule.when {
        let judged = judge_clause(clause, base, field_truth);
        base += clause.fields.len();
        match judged.tri {
            Truth::No => return Judgement::NO,
            Truth::Maybe => {
                result.tri = Truth::Maybe;
                result.conditions.extend(judged.conditions);
            }
            Truth::Yes => {}
        }
    }
    result
}

fn judge_clause(
    clause: &Clause,
    base: usize,
    field_truth: &mut dyn FnMut(usize, &Field) -> Truth,
) -> Judgement {
    let mut tri = Truth::Yes;
    let mut conditions = Vec::new();
    for (offset, field) in clause.fields.iter().enumerate() {
        match field_truth(base + offset, field) {
            Truth::No => return Judgement::NO,
            Truth::Maybe => {
                tri = Truth::Maybe;
                conditions.push(describe_field(field));
            }
            Truth::Yes => {}
        }
    }
    Judgement { tri, conditions }
}

/// A field (any of its values; negated: none) against the identity.
fn judge_field(field: &Field, subject: &Subject) -> Truth {
    let peer = subject.peer_class();
    let options = Options::default();
    let any = field.values.iter().fold(Truth::No, |truth, matcher| {
        truth.or(judge_value(
            &field.attribute,
            matcher,
            subject,
            &peer,
            &options,
        ))
    });
    if field.negated {
        !any
    } else {
        any
    }
}

/// One value of a field against the identity (negation not applied): the engine's partial
/// evaluation over the identity's class of peers.
fn judge_value(
    attribute: &Attribute,
    matcher: &Matcher,
    subject: &Subject,
    peer: &PeerClass,
    options: &Options,
) -> Truth {
    // "Any authenticated identity" is one the policies do not name: an exact identity
    // value names someone else.
    let named = matches!(matcher, Matcher::Str(StringPattern::Exact(_)));
    if *subject == Subject::Authenticated && is_identity(attribute) && named {
        return Truth::No;
    }
    value_truth(attribute, matcher, peer, options)
}

/// `requestPrincipals in [a, b]`, `request.auth.claims[scope] in [x]`, `not ipBlocks …`.
fn describe_field(field: &Field) -> String {
    let name = if field.location.contains(".when[") {
        attribute_key(&field.attribute)
    } else {
        field
            .location
            .rsplit('.')
            .next()
            .unwrap_or(&field.location)
            .to_string()
    };
    let values: Vec<String> = field.values.iter().map(Matcher::to_istio).collect();
    let operator = if field.negated && field.location.contains(".when[") {
        "not in"
    } else {
        "in"
    };
    format!("{name} {operator} [{}]", values.join(", "))
}

fn attribute_key(attribute: &Attribute) -> String {
    match attribute {
        Attribute::Principal => "source.principal".to_string(),
        Attribute::Namespace => "source.namespace".to_string(),
        Attribute::ServiceAccount => "source.serviceAccount".to_string(),
        Attribute::TrustDomain => "source.trustDomain".to_string(),
        Attribute::RequestPrincipal => "request.auth.principal".to_string(),
        Attribute::Audience => "request.auth.audiences".to_string(),
        Attribute::Presenter => "request.auth.presenter".to_string(),
        Attribute::Claim(path) => format!("request.auth.claims[{}]", path.join("][")),
        Attribute::SourceIp => "source.ip".to_string(),
        Attribute::RemoteIp => "remote.ip".to_string(),
        Attribute::DestinationIp => "destination.ip".to_string(),
        Attribute::DestinationPort => "destination.port".to_string(),
        Attribute::Host => "hosts".to_string(),
        Attribute::Method => "methods".to_string(),
        Attribute::Path => "paths".to_string(),
        Attribute::Header(name) => format!("request.headers[{name}]"),
        Attribute::Sni => "connection.sni".to_string(),
    }
}

/// Workloads to which the same policies apply: what an identity reaches on one, it reaches
/// on all of them.
#[derive(Debug)]
struct Class<'p> {
    /// The applicable policies (position in the input, policy), in input order.
    applicable: Vec<(usize, &'p Policy)>,
    /// The flat indices of the ALLOW rules among them, when some ALLOW policy applies.
    allow_rules: Option<Vec<usize>>,
}

/// The analysis of one policy set, prepared so that identities × workloads is never held in
/// memory: [`Analysis::row`] gives one identity's reach of every workload, computed per
/// class of workloads, and the writers ([`Analysis::write_table`], [`Analysis::write_json`],
/// [`Analysis::write_dot`]) stream row by row. Memory holds the policies' rules, their
/// distinct identity values, the workloads and their classes, and one row.
#[derive(Debug)]
pub struct Analysis<'p> {
    subjects: Vec<Subject>,
    targets: Vec<Target>,
    /// Each target's class.
    class_of: Vec<usize>,
    classes: Vec<Class<'p>>,
    /// The flat index of each policy's first rule.
    rule_base: Vec<usize>,
    /// Each flat rule: per field (its `from` clauses' fields, then its `when`'s), the ids
    /// of its values in `values`.
    fields: Vec<Vec<Vec<usize>>>,
    /// The distinct values of `from` and `when` fields.
    values: Vec<(&'p Attribute, &'p Matcher)>,
    /// For each value, the rules (flat) an identity can use only if the value is not "no"
    /// for it.
    value_rules: Vec<Vec<usize>>,
    /// The rules (flat) judged for every identity.
    ungated: Vec<usize>,
    /// For each policy, the classes where it applies as an ALLOW policy.
    allow_classes: Vec<Vec<usize>>,
    policies: &'p [Policy],
    relations: Relations,
    /// Each class-of-peers identity's truth of every value, once computed (identities ×
    /// values: a few dozen classes, a few hundred values).
    class_truths: RefCell<HashMap<usize, Vec<Option<Truth>>>>,
}

impl<'p> Analysis<'p> {
    /// Prepares the analysis of `policies` for the given identities (all named ones, and
    /// any authenticated identity and plaintext, when `None`) and workloads.
    pub fn new(
        policies: &'p [Policy],
        only: Option<Subject>,
        root_namespace: &str,
        scope: &Scope,
    ) -> Analysis<'p> {
        let subjects = match only {
            Some(subject) => vec![subject],
            None => subjects(policies),
        };
        let targets = scope.select(targets(policies, root_namespace));
        // Which policies may apply where: a workload's namespace's and the root's.
        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut root: Vec<usize> = Vec::new();
        for (index, policy) in policies.iter().enumerate() {
            if policy.dry_run || policy.targets_gateway {
                continue;
            }
            if policy.namespace == root_namespace {
                root.push(index);
            } else {
                by_namespace
                    .entry(policy.namespace.as_str())
                    .or_default()
                    .push(index);
            }
        }
        let mut rule_base = Vec::with_capacity(policies.len());
        let mut total = 0;
        for policy in policies {
            rule_base.push(total);
            total += policy.rules.len();
        }
        let mut class_ids: HashMap<Vec<usize>, usize> = HashMap::new();
        let mut classes: Vec<Class<'p>> = Vec::new();
        let mut class_of = Vec::with_capacity(targets.len());
        for target in &targets {
            let own = by_namespace
                .get(target.namespace.as_str())
                .map_or(&[][..], Vec::as_slice);
            let mut candidates: Vec<usize> = own.iter().chain(&root).copied().collect();
            candidates.sort_unstable();
            candidates.dedup();
            candidates.retain(|index| {
                policies
                    .get(*index)
                    .is_some_and(|policy| target.applies(policy, root_namespace))
            });
            let next = classes.len();
            let id = *class_ids.entry(candidates.clone()).or_insert(next);
            if id == next {
                let applicable: Vec<(usize, &'p Policy)> = candidates
                    .iter()
                    .filter_map(|index| policies.get(*index).map(|policy| (*index, policy)))
                    .collect();
                let has_allow = applicable.iter().any(|(_, p)| p.action == Action::Allow);
                let allow_rules = has_allow.then(|| {
                    applicable
                        .iter()
                        .filter(|(_, p)| p.action == Action::Allow)
                        .flat_map(|(index, p)| {
                            let base = rule_base.get(*index).copied().unwrap_or(0);
                            (0..p.rules.len()).map(move |rule| base + rule)
                        })
                        .collect()
                });
                classes.push(Class {
                    applicable,
                    allow_rules,
                });
            }
            class_of.push(id);
        }
        let mut value_ids: HashMap<(&'p Attribute, &'p Matcher), usize> = HashMap::new();
        let mut values = Vec::new();
        let mut fields = Vec::with_capacity(total);
        for policy in policies {
            for rule in &policy.rules {
                let ids: Vec<Vec<usize>> = rule
                    .from
                    .iter()
                    .chain(&rule.when)
                    .flat_map(|clause| clause.fields.iter())
                    .map(|field| {
                        field
                            .values
                            .iter()
                            .map(|matcher| {
                                let key = (&field.attribute, matcher);
                                *value_ids.entry(key).or_insert_with(|| {
                                    values.push(key);
                                    values.len() - 1
                                })
                            })
                            .collect()
                    })
                    .collect();
                fields.push(ids);
            }
        }
        // Which rules an identity can use at all: a rule each of whose `from` clauses has a
        // field of identity values (not negated) is of no use to an identity for which
        // every one of those values is "no" (the field is "no", so is the clause). Such a
        // rule is listed under those values; every other rule is judged for every identity.
        let mut value_rules: Vec<Vec<usize>> = vec![Vec::new(); values.len()];
        let mut ungated = Vec::new();
        let mut flat = 0;
        for policy in policies {
            for rule in &policy.rules {
                let ids = fields.get(flat).map_or(&[][..], Vec::as_slice);
                let mut position = 0;
                let mut gates: Vec<usize> = Vec::new();
                let mut gated = !rule.from.is_empty();
                for clause in &rule.from {
                    let mut clause_gated = false;
                    for field in &clause.fields {
                        let positive = !field.negated
                            && is_identity(&field.attribute)
                            && !field.values.is_empty()
                            && field.values.iter().all(|m| matches!(m, Matcher::Str(_)));
                        if positive {
                            clause_gated = true;
                            gates.extend(ids.get(position).map_or(&[][..], Vec::as_slice));
                        }
                        position += 1;
                    }
                    gated &= clause_gated;
                }
                if gated {
                    gates.sort_unstable();
                    gates.dedup();
                    for id in gates {
                        if let Some(list) = value_rules.get_mut(id) {
                            list.push(flat);
                        }
                    }
                } else {
                    ungated.push(flat);
                }
                flat += 1;
            }
        }
        // The classes each ALLOW policy applies in.
        let mut allow_classes: Vec<Vec<usize>> = vec![Vec::new(); policies.len()];
        for (id, class) in classes.iter().enumerate() {
            if class.allow_rules.is_none() {
                continue;
            }
            for (index, policy) in &class.applicable {
                if policy.action == Action::Allow {
                    if let Some(list) = allow_classes.get_mut(*index) {
                        list.push(id);
                    }
                }
            }
        }
        Analysis {
            subjects,
            targets,
            class_of,
            classes,
            rule_base,
            fields,
            values,
            value_rules,
            ungated,
            allow_classes,
            policies,
            relations: Relations::default(),
            class_truths: RefCell::new(HashMap::new()),
        }
    }

    /// The policy a rule (flat index) belongs to.
    fn policy_of(&self, flat: usize) -> Option<usize> {
        self.rule_base
            .partition_point(|base| *base <= flat)
            .checked_sub(1)
    }

    /// The identities, in order.
    pub fn subjects(&self) -> &[Subject] {
        &self.subjects
    }

    /// The workloads, in order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// How many classes of workloads (workloads to which the same policies apply) there
    /// are.
    pub fn classes(&self) -> usize {
        self.classes.len()
    }

    /// What one identity (by its position in [`Analysis::subjects`]) reaches.
    pub fn row(&self, subject: usize) -> Row<'_, 'p> {
        let identity = self
            .subjects
            .get(subject)
            .cloned()
            .unwrap_or(Subject::Plaintext);
        let mut row = Row {
            peer: identity.peer_class(),
            subject: identity,
            options: Options::default(),
            analysis: self,
            truths: Vec::new(),
            rules: vec![None; self.fields.len()],
            cells: vec![None; self.classes.len()],
            live: vec![false; self.classes.len()],
        };
        // A class of peers is judged by automata searches: remembered for the next pass
        // (the table writes every row twice). One peer is judged directly, cheaply.
        let remember = !matches!(row.peer, PeerClass::Uri(_));
        row.truths = remember
            .then(|| self.class_truths.borrow_mut().remove(&subject))
            .flatten()
            .unwrap_or_else(|| vec![None; self.values.len()]);
        // The rules the identity may use, and so the classes where some ALLOW rule may
        // grant it something; the other classes with an ALLOW policy grant it nothing.
        let mut candidates: Vec<usize> = self.ungated.clone();
        for (id, rules) in self.value_rules.iter().enumerate() {
            if row.truth(id) != Truth::No {
                candidates.extend(rules);
            }
        }
        if remember {
            self.class_truths
                .borrow_mut()
                .insert(subject, row.truths.clone());
        }
        candidates.sort_unstable();
        candidates.dedup();
        for flat in candidates {
            if row.judgement(flat).tri == Truth::No {
                continue;
            }
            let policy = self.policy_of(flat);
            for class in policy
                .and_then(|policy| self.allow_classes.get(policy))
                .map_or(&[][..], Vec::as_slice)
            {
                if let Some(live) = row.live.get_mut(*class) {
                    *live = true;
                }
            }
        }
        row
    }

    /// Every identity against every workload, in memory.
    pub fn collect(&self) -> BlastRadius {
        let mut reach = Vec::with_capacity(self.subjects.len() * self.targets.len());
        for (s, subject) in self.subjects.iter().enumerate() {
            let mut row = self.row(s);
            for (t, target) in self.targets.iter().enumerate() {
                let (access, grants) = row.cell(t);
                reach.push(Reach {
                    subject: subject.clone(),
                    target: target.clone(),
                    access,
                    grants: grants.to_vec(),
                });
            }
        }
        BlastRadius {
            subjects: self.subjects.clone(),
            targets: self.targets.clone(),
            reach,
        }
    }
}

/// One identity's reach, computed per class of workloads as it is asked for. Holds the
/// identity's truth of each distinct value, its judgement of each rule, and its reach of
/// each class: memory that grows with the policies, not with the workloads × identities.
#[derive(Debug)]
pub struct Row<'a, 'p> {
    analysis: &'a Analysis<'p>,
    subject: Subject,
    peer: PeerClass,
    options: Options,
    truths: Vec<Option<Truth>>,
    rules: Vec<Option<Judgement>>,
    cells: Vec<Option<(Access, Vec<Grant>)>>,
    /// Whether some ALLOW rule of the class may grant the identity something.
    live: Vec<bool>,
}

impl Row<'_, '_> {
    /// The identity.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// What the identity reaches on the workload at position `target` of
    /// [`Analysis::targets`].
    pub fn cell(&mut self, target: usize) -> (Access, &[Grant]) {
        let analysis = self.analysis;
        let class = analysis.class_of.get(target).copied().unwrap_or(usize::MAX);
        let granting = analysis
            .classes
            .get(class)
            .is_some_and(|c| c.allow_rules.is_none());
        if !granting && !self.live.get(class).copied().unwrap_or(false) {
            return (Access::None, &[]);
        }
        if self.cells.get(class).is_some_and(Option::is_none) {
            let computed = self.compute(class);
            if let Some(slot) = self.cells.get_mut(class) {
                *slot = Some(computed);
            }
        }
        match self.cells.get(class) {
            Some(Some((access, grants))) => (*access, grants.as_slice()),
            _ => (Access::None, &[]),
        }
    }

    fn compute(&mut self, class: usize) -> (Access, Vec<Grant>) {
        let analysis = self.analysis;
        let Some(class) = analysis.classes.get(class) else {
            return (Access::None, Vec::new());
        };
        // Most workloads: an ALLOW policy applies and none of its rules names the identity.
        if let Some(allow_rules) = &class.allow_rules {
            if allow_rules
                .iter()
                .all(|flat| self.judgement(*flat).tri == Truth::No)
            {
                return (Access::None, Vec::new());
            }
        }
        let grants = grants_of(
            &class.applicable,
            |(policy, rule), _| {
                let base = analysis.rule_base.get(policy).copied().unwrap_or(0);
                self.judgement(base + rule).clone()
            },
            &analysis.relations,
        );
        (Access::of(&grants), grants)
    }

    /// The identity's judgement of one rule (flat index), computed once.
    fn judgement(&mut self, flat: usize) -> &Judgement {
        if self.rules.get(flat).is_some_and(Option::is_none) {
            let judgement = self.judge(flat);
            if let Some(slot) = self.rules.get_mut(flat) {
                *slot = Some(judgement);
            }
        }
        match self.rules.get(flat) {
            Some(Some(judgement)) => judgement,
            _ => &NO,
        }
    }

    fn judge(&mut self, flat: usize) -> Judgement {
        let analysis = self.analysis;
        let Some(rule) = analysis.policy_of(flat).and_then(|policy| {
            let base = analysis.rule_base.get(policy)?;
            analysis.policies.get(policy)?.rules.get(flat - base)
        }) else {
            return Judgement::NO;
        };
        let ids = analysis.fields.get(flat).map_or(&[][..], Vec::as_slice);
        judge_rule(rule, &mut |position, field| {
            let any = ids
                .get(position)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .fold(Truth::No, |truth, id| truth.or(self.truth(*id)));
            if field.negated {
                !any
            } else {
                any
            }
        })
    }

    /// The identity's truth of one distinct value, computed once.
    fn truth(&mut self, id: usize) -> Truth {
        if let Some(Some(known)) = self.truths.get(id) {
            return *known;
        }
        let Some((attribute, matcher)) = self.analysis.values.get(id) else {
            return Truth::No;
        };
        let options = &self.options;
        let truth = match (&self.peer, matcher) {
            // One peer URI: an identity value matches it or not, as the engine judges a
            // request from it (the same answer partial evaluation gives over a class of
            // one, without building automata; `classes_give_the_direct_answer` holds them
            // equal).
            (PeerClass::Uri(uri), Matcher::Str(_)) if is_identity(attribute) => {
                let request = Request {
                    peer_identity: Some(uri),
                    ..Request::default()
                };
                let judge = Judge {
                    request: &request,
                    path: None,
                    options,
                };
                if judge.value_matches(attribute, matcher) {
                    Truth::Yes
                } else {
                    Truth::No
                }
            }
            // An exact principal names one peer URI (no trust domain aliases here). A class
            // of Istio identities of one namespace or service account holds it only if the
            // engine, judging a request from that URI, finds it in the namespace (service
            // account): when it does not, the value matches no peer of the class, and the
            // automata search of partial evaluation is skipped; when it does, partial
            // evaluation answers. Most values a mesh writes are exact principals of other
            // namespaces, so this saves most searches.
            (
                PeerClass::Namespace(_) | PeerClass::ServiceAccount { .. },
                Matcher::Str(StringPattern::Exact(text)),
            ) if **attribute == Attribute::Principal
                && options.trust_domain.is_none()
                && options.trust_domain_aliases.is_empty() =>
            {
                let uri = format!("spiffe://{text}");
                let request = Request {
                    peer_identity: Some(&uri),
                    ..Request::default()
                };
                let judge = Judge {
                    request: &request,
                    path: None,
                    options,
                };
                let member = match &self.peer {
                    PeerClass::Namespace(namespace) => judge.value_matches(
                        &Attribute::Namespace,
                        &Matcher::Str(StringPattern::Exact(namespace.clone())),
                    ),
                    PeerClass::ServiceAccount { namespace, name } => judge.value_matches(
                        &Attribute::ServiceAccount,
                        &Matcher::Str(StringPattern::Exact(format!("{namespace}/{name}"))),
                    ),
                    _ => true,
                };
                if member {
                    judge_value(attribute, matcher, &self.subject, &self.peer, options)
                } else {
                    Truth::No
                }
            }
            _ => judge_value(attribute, matcher, &self.subject, &self.peer, options),
        };
        if let Some(slot) = self.truths.get_mut(id) {
            *slot = Some(truth);
        }
        truth
    }
}

impl Analysis<'_> {
    /// Writes the matrix, then what each identity may do on each workload, row by row.
    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        write::table(self, out)
    }

    /// Writes the JSON document (see [`BlastRadius::to_json`]), one `reach` item a line.
    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        write::json(self, out)
    }

    /// Writes the Graphviz graph (see [`BlastRadius::to_dot`]).
    pub fn write_dot(&self, out: &mut dyn Write) -> io::Result<()> {
        write::dot(self, out)
    }
}

impl BlastRadius {
    #[cfg(test)]
    fn get(&self, subject: usize, target: usize) -> Option<&Reach> {
        self.reach.get(subject * self.targets.len() + target)
    }

    /// The matrix and the details, for people.
    pub fn to_table(&self) -> String {
        let mut out = Vec::new();
        // Writing to a `Vec` does not fail.
        let _ = write::table(self, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The analysis as JSON: `identities`, `workloads`, and `reach`, one item per identity
    /// and workload (`identity`, `workload`, `access`, `grants`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = Vec::new();
        let _ = write::json(self, &mut out);
        serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)
    }

    /// A Graphviz graph: identities → workloads, edges labelled with what is allowed
    /// (solid: unconditional, dashed: conditional, bold red: everything).
    pub fn to_dot(&self) -> String {
        let mut out = Vec::new();
        let _ = write::dot(self, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::grants::{covers, overlaps};
    use super::*;
    use cordon_engine::pattern::PathPattern;

    fn pattern(text: &str) -> PathPattern {
        PathPattern::parse(text).unwrap()
    }

    #[test]
    fn path_containment() {
        assert!(covers(&pattern("/admin/{**}"), &pattern("/admin/x/{*}")));
        assert!(!covers(&pattern("/admin/{**}"), &pattern("/admin")));
        assert!(covers(&pattern("/v1/{*}"), &pattern("/v1/x")));
        assert!(!covers(&pattern("/v1/{*}"), &pattern("/v1/x/y")));
        assert!(covers(&pattern("/v1*"), &pattern("/v1/{*}/x")));
        assert!(covers(&pattern("*"), &pattern("/anything")));
        // `{**}` takes only uri_template characters: `/a/b=` is under `/a/b*`, not `{**}`.
        assert!(!covers(&pattern("/a/{**}"), &pattern("/a/b*")));
        assert!(covers(&pattern("/a/*"), &pattern("/a/{**}")));
        assert!(!overlaps(
            &pattern("/v1/credits/{*}"),
            &pattern("/admin/{**}")
        ));
        assert!(!overlaps(&pattern("/v1/credits"), &pattern("/admin")));
        assert!(overlaps(&pattern("/v1/{*}/x"), &pattern("/v1/y/{*}")));
        assert!(overlaps(&pattern("/v1*"), &pattern("/v1/orders")));
    }

    #[test]
    fn subjects_parse() {
        assert_eq!(
            Subject::parse("spiffe://cluster.local/ns/a/sa/b").unwrap(),
            Subject::Principal("cluster.local/ns/a/sa/b".into())
        );
        assert_eq!(
            Subject::parse("cluster.local/ns/a/sa/b").unwrap(),
            Subject::Principal("cluster.local/ns/a/sa/b".into())
        );
        assert_eq!(Subject::parse("plaintext").unwrap(), Subject::Plaintext);
        assert!(Subject::parse("spiffe://Bad/x").is_err());
    }
}

#[cfg(test)]
mod shop {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use cordon_engine::model::parse_policies;

    /// A DENY on method `*` takes away every method an ALLOW grants: method values are
    /// patterns, compared by the engine, not strings.
    #[test]
    fn a_deny_on_any_method_leaves_nothing() {
        let (policies, _, errors) = parse_policies(&[
            serde_json::json!({"metadata": {"name": "allow-get", "namespace": "shop"},
                "spec": {"rules": [{"to": [{"operation": {"methods": ["GET", "P*"], "paths": ["/a"]}}]}]}}),
            serde_json::json!({"metadata": {"name": "deny-all-methods", "namespace": "shop"},
                "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["*"]}}]}]}}),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let radius = analyze(&policies, Some(Subject::Plaintext), "istio-system");
        assert!(
            radius
                .reach
                .iter()
                .all(|reach| reach.access == Access::None),
            "{radius:?}"
        );
    }

    fn shop() -> Vec<Policy> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies/examples/shop/policies.json");
        let values: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (policies, _, errors) = parse_policies(&values);
        assert!(errors.is_empty());
        policies
    }

    /// The expectation, computed by hand from `policies/examples/shop/README.md`.
    #[test]
    fn shop_matches_the_hand_computed_expectation() {
        let radius = analyze(&shop(), None, "istio-system");
        let subjects: Vec<String> = radius.subjects.iter().map(Subject::label).collect();
        assert_eq!(
            subjects,
            vec![
                "cluster.local/ns/shop/sa/frontend",
                "cluster.local/ns/shop/sa/order-engine",
                "namespace finance-ops",
                "any authenticated identity",
                "plaintext",
            ]
        );
        let targets: Vec<String> = radius.targets.iter().map(Target::label).collect();
        assert_eq!(
            targets,
            vec![
                "finance/billing-service",
                "finance/*",
                "shop/orders",
                "shop/*"
            ]
        );
        use Access::{All, None as Nothing, Partial};
        // Rows: identities; columns: billing-service, other finance workloads, orders,
        // other shop workloads (the frontend, which no ALLOW policy selects).
        let expected = [
            [Nothing, Partial, Partial, All],
            [Partial, Partial, Nothing, All],
            [Partial, All, Nothing, All],
            [Nothing, Partial, Nothing, All],
            [Nothing, Partial, Nothing, All],
        ];
        for (s, row) in expected.iter().enumerate() {
            for (t, access) in row.iter().enumerate() {
                let reach = radius.get(s, t).unwrap();
                assert_eq!(reach.access, *access, "{} -> {}", subjects[s], targets[t]);
            }
        }
        let describe = |s: usize, t: usize| -> Vec<String> {
            radius
                .get(s, t)
                .unwrap()
                .grants
                .iter()
                .map(|g| format!("{} [{}]", g.describe(), g.rule.as_deref().unwrap_or("-")))
                .collect()
        };
        // The order engine: create a credit only with the user's token, read one credit.
        assert_eq!(
            describe(1, 0),
            vec![
                "POST /v1/credits if requestPrincipals in [https://idp.shop.example/*] and request.auth.claims[scope] in [credits:write] [ns[finance]-policy[billing-service-allow]-rule[0]]",
                "GET /v1/credits/{*} [ns[finance]-policy[billing-service-allow]-rule[1]]",
            ]
        );
        // The frontend: read orders, place one.
        assert_eq!(
            describe(0, 2),
            vec![
                "GET /v1/orders* [ns[shop]-policy[orders-allow]-rule[0]]",
                "POST /v1/orders [ns[shop]-policy[orders-allow]-rule[0]]",
            ]
        );
        // Finance operators: the admin API of billing, and all of the rest of finance.
        assert_eq!(
            describe(2, 0),
            vec!["any method on /admin, /admin/{**} [ns[finance]-policy[billing-service-allow]-rule[2]]"]
        );
        assert_eq!(describe(2, 1), vec!["everything [-]"]);
        // Everyone else in finance: anything but the admin API (admin-deny), plaintext too.
        for s in [0, 1, 3, 4] {
            assert_eq!(
                describe(s, 1),
                vec!["everything except /admin, /admin/{**} (denied by ns[finance]-policy[admin-deny]-rule[0]) [-]"]
            );
        }
        // One principal: one row.
        let one = analyze(
            &shop(),
            Some(Subject::parse("spiffe://cluster.local/ns/shop/sa/order-engine").unwrap()),
            "istio-system",
        );
        assert_eq!(one.subjects.len(), 1);
        assert_eq!(one.reach.len(), 4);
        assert_eq!(one.reach[0].grants, radius.get(1, 0).unwrap().grants);
        // A principal the policies never name is "any authenticated identity".
        let stranger = analyze(
            &shop(),
            Some(Subject::parse("cluster.local/ns/web/sa/intruder").unwrap()),
            "istio-system",
        );
        for t in 0..4 {
            assert_eq!(stranger.reach[t].access, radius.get(3, t).unwrap().access);
        }
        let dot = radius.to_dot();
        assert!(dot.starts_with("digraph blast_radius {"));
        assert_eq!(dot.matches(" -> ").count(), 13);
        let json = radius.to_json();
        assert_eq!(json["reach"].as_array().unwrap().len(), 20);
    }
}

#[cfg(test)]
mod scale {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use cordon_engine::model::parse_policies;
    use serde_json::json;

    fn parse(values: &[serde_json::Value]) -> Vec<Policy> {
        let (policies, _, errors) = parse_policies(values);
        assert!(errors.is_empty(), "{errors:?}");
        policies
    }

    /// A small generated mesh, with what the generator does not write: a root-namespace
    /// gateway policy and a root-namespace DENY for `app: w01` in every namespace, a namespace-wide ALLOW, a conditional DENY, a
    /// service-account source, namespaces whose other workloads share a class, a dry-run
    /// policy.
    fn mesh() -> Vec<Policy> {
        let mut values = mesh::policies(2, 7);
        values.extend([
            json!({"metadata": {"name": "ingress", "namespace": "istio-system"},
                "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/ns01/sa/sa3"],
                                                    "ipBlocks": ["10.0.0.0/8"]}}],
                               "to": [{"operation": {"methods": ["GET"], "paths": ["/public/{**}"]}}]}]}}),
            json!({"metadata": {"name": "no-debug", "namespace": "istio-system"},
                "spec": {"selector": {"matchLabels": {"app": "w01"}}, "action": "DENY",
                    "rules": [{"to": [{"operation": {"paths": ["/debug*"]}}]}]}}),
            json!({"metadata": {"name": "everyone-reads", "namespace": "ns02"},
                "spec": {"rules": [{"from": [{"source": {"serviceAccounts": ["ns00/sa1"]}}, {"source": {"namespaces": ["ns01"]}}],
                                    "to": [{"operation": {"methods": ["GET"]}}]}]}}),
            json!({"metadata": {"name": "token-for-writes", "namespace": "ns01"},
                "spec": {"action": "DENY", "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}],
                    "to": [{"operation": {"methods": ["POST", "PUT"]}}]}]}}),
            // Two namespaces whose other workloads share a class (only the root's apply).
            json!({"metadata": {"name": "a", "namespace": "extra1"},
                "spec": {"selector": {"matchLabels": {"app": "a"}},
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/extra2/sa/b"]}}]}]}}),
            json!({"metadata": {"name": "b", "namespace": "extra2"},
                "spec": {"selector": {"matchLabels": {"app": "b"}},
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/extra1/sa/a"]}}]}]}}),
            json!({"metadata": {"name": "trial", "namespace": "ns00",
                    "annotations": {"istio.io/dry-run": "true"}},
                "spec": {"action": "DENY", "rules": [{}]}}),
        ]);
        parse(&values)
    }

    /// The class-based analysis gives, for every identity and workload, what the direct
    /// computation gives (every policy and rule judged from scratch).
    #[test]
    fn classes_give_the_direct_answer() {
        let policies = mesh();
        let analysis = Analysis::new(&policies, None, "istio-system", &Scope::all());
        assert!(analysis.classes() < analysis.targets().len());
        let radius = analysis.collect();
        assert!(radius.subjects.len() > 20, "{}", radius.subjects.len());
        let mut reached = 0;
        for (s, subject) in radius.subjects.iter().enumerate() {
            for (t, target) in radius.targets.iter().enumerate() {
                let direct = reach_of(&policies, subject, target, "istio-system");
                assert_eq!(radius.get(s, t).unwrap(), &direct);
                if direct.access != Access::None {
                    reached += 1;
                }
            }
        }
        // Not a vacuous comparison: every kind of access occurs.
        for access in [
            Access::None,
            Access::Partial,
            Access::All,
            Access::Conditional,
        ] {
            assert!(
                radius.reach.iter().any(|r| r.access == access),
                "{access:?}"
            );
        }
        assert!(reached > 50, "{reached}");
        // An identity the policies never name, asked for alone.
        for text in [
            "cluster.local/ns/ns09/sa/x",
            "spiffe://other.domain/ns/ns01/sa/sa3",
        ] {
            let stranger = Subject::parse(text).unwrap();
            let one = Analysis::new(
                &policies,
                Some(stranger.clone()),
                "istio-system",
                &Scope::all(),
            );
            let radius = one.collect();
            for (t, target) in radius.targets.iter().enumerate() {
                assert_eq!(
                    radius.reach[t],
                    reach_of(&policies, &stranger, target, "istio-system")
                );
            }
        }
    }

    /// The writers stream what the in-memory result says.
    #[test]
    fn streamed_output_is_the_collected_output() {
        let policies = mesh();
        let analysis = Analysis::new(&policies, None, "istio-system", &Scope::all());
        let radius = analysis.collect();
        let mut table = Vec::new();
        analysis.write_table(&mut table).unwrap();
        assert_eq!(String::from_utf8(table).unwrap(), radius.to_table());
        let mut json = Vec::new();
        analysis.write_json(&mut json).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json, radius.to_json());
        let reach = json["reach"].as_array().unwrap();
        assert_eq!(reach.len(), radius.subjects.len() * radius.targets.len());
        assert_eq!(reach[0]["identity"], radius.subjects[0].label());
        assert_eq!(reach[0]["access"], radius.reach[0].access.name());
        let mut dot = Vec::new();
        analysis.write_dot(&mut dot).unwrap();
        let dot = String::from_utf8(dot).unwrap();
        assert_eq!(dot, radius.to_dot());
        let edges = radius
            .reach
            .iter()
            .filter(|r| r.access != Access::None)
            .count();
        assert_eq!(dot.matches(" -> ").count(), edges);
    }

    /// Istio applies a root-namespace policy with a selector to the workloads with those
    /// labels in every namespace: the ingress gateway's policy shows with the gateway, and
    /// a workload of another namespace with the labels is subject to it too.
    #[test]
    fn root_namespace_selector_policies_show_with_the_workloads_they_select() {
        let policies = parse(&[
            json!({"metadata": {"name": "ingress-allow", "namespace": "istio-system"},
                "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                    "rules": [{"from": [{"source": {"ipBlocks": ["1.2.3.0/24"]}}]}]}}),
            json!({"metadata": {"name": "web-deny", "namespace": "istio-system"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "action": "DENY",
                    "rules": [{"to": [{"operation": {"paths": ["/internal/{**}"]}}]}]}}),
            json!({"metadata": {"name": "web-allow", "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}),
        ]);
        let radius = analyze(&policies, Some(Subject::Plaintext), "istio-system");
        let labels: Vec<String> = radius.targets.iter().map(Target::label).collect();
        assert_eq!(
            labels,
            [
                "istio-system/web",
                "istio-system/istio=ingressgateway",
                "shop/web",
                "shop/*"
            ]
        );
        let describe = |t: usize| -> Vec<String> {
            radius.reach[t].grants.iter().map(Grant::describe).collect()
        };
        assert_eq!(radius.reach[1].access, Access::Conditional);
        assert_eq!(describe(1), ["everything if ipBlocks in [1.2.3.0/24]"]);
        // Where only the mesh-wide DENY applies, everything else is allowed.
        assert_eq!(
            describe(0),
            ["everything except /internal/{**} (denied by ns[istio-system]-policy[web-deny]-rule[0])"]
        );
        // The mesh-wide DENY follows `app: web` into `shop`.
        assert_eq!(
            describe(2),
            ["GET on any path except /internal/{**} (denied by ns[istio-system]-policy[web-deny]-rule[0])"]
        );
        assert_eq!(radius.reach[3].access, Access::All);
        // And the direct computation agrees.
        for (t, target) in radius.targets.iter().enumerate() {
            assert_eq!(
                radius.reach[t],
                reach_of(&policies, &Subject::Plaintext, target, "istio-system")
            );
        }
    }

    #[test]
    fn a_principal_must_be_an_identity() {
        for text in ["shop/orders", "orders", "cluster.local/shop/orders"] {
            let error = Subject::parse(text).unwrap_err();
            assert!(error.contains(&format!("`{text}`")), "{error}");
            assert!(error.contains("spiffe://"), "{error}");
        }
        assert!(Subject::parse("shop/orders")
            .unwrap_err()
            .contains("cluster.local/ns/shop/sa/orders"));
        assert!(Subject::parse("spiffe://cluster.local/ns/a b/sa/c")
            .unwrap_err()
            .contains("not a valid SPIFFE ID"));
        // With the scheme, any valid SPIFFE ID; without, Istio's shape.
        assert_eq!(
            Subject::parse("spiffe://example.org/workers/batch").unwrap(),
            Subject::Principal("example.org/workers/batch".into())
        );
        assert_eq!(
            Subject::parse("td.example/ns/shop/sa/orders").unwrap(),
            Subject::Principal("td.example/ns/shop/sa/orders".into())
        );
        assert_eq!(
            Subject::parse("authenticated").unwrap(),
            Subject::Authenticated
        );
    }

    #[test]
    fn workloads_are_read_as_they_are_shown() {
        for text in ["shop/orders", "shop/*", "shop/app=orders,version=v2"] {
            let target = Target::parse(text).unwrap();
            assert_eq!(target.label(), text);
        }
        assert_eq!(
            Target::parse("shop/orders").unwrap(),
            Target::parse("shop/app=orders").unwrap()
        );
        for bad in [
            "shop",
            "/orders",
            "shop/",
            "shop/app=",
            "shop/app=a,app=b",
            "shop/=x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    /// `--namespace` and `--workload` choose the workloads; what each shows is unchanged.
    #[test]
    fn filters_choose_the_workloads() {
        let policies = mesh();
        let all = analyze(&policies, None, "istio-system");
        let scope = Scope {
            namespaces: vec!["ns01".to_string()],
            workloads: vec![
                Target::parse("ns02/w03").unwrap(),
                Target::parse("ns00/app=w05,version=v2").unwrap(),
            ],
        };
        let some = Analysis::new(&policies, None, "istio-system", &scope).collect();
        let labels: Vec<String> = some.targets.iter().map(Target::label).collect();
        assert_eq!(labels.len(), mesh::WORKLOADS + 2, "{labels:?}");
        assert!(labels.contains(&"ns01/*".to_string()));
        assert!(labels.contains(&"ns02/w03".to_string()));
        assert!(labels.contains(&"ns00/app=w05,version=v2".to_string()));
        assert!(labels
            .iter()
            .all(|l| l.starts_with("ns01/") || l == "ns02/w03" || l.starts_with("ns00/app=w05")));
        assert_eq!(some.subjects, all.subjects);
        for (s, subject) in some.subjects.iter().enumerate() {
            for (t, target) in some.targets.iter().enumerate() {
                let reach = some.get(s, t).unwrap();
                assert_eq!(reach, &reach_of(&policies, subject, target, "istio-system"));
                if let Some(u) = all.targets.iter().position(|x| x == target) {
                    assert_eq!(reach, all.get(s, u).unwrap());
                }
            }
        }
        // A labelled workload the policies do not name is judged by its labels: `w05`'s
        // policy selects it.
        let w05 = some
            .targets
            .iter()
            .position(|t| t.label().starts_with("ns00/app=w05"))
            .unwrap();
        assert!(some
            .reach
            .iter()
            .skip(w05)
            .step_by(some.targets.len())
            .any(|r| r
                .grants
                .iter()
                .any(|g| g.rule.as_deref().is_some_and(|id| id.contains("w05-allow")))));
    }
}
