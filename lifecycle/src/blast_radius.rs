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
//! identity). Workloads: every selector of a non-root policy, and `<namespace>/*` for the
//! other workloads of each namespace a policy names (selector policies of the root
//! namespace are assumed not to select those). Dry-run and AUDIT policies change nothing.

use std::collections::{BTreeMap, BTreeSet};

use cordon_engine::model::{Attribute, Clause, Field, Matcher, Policy, Rule};
use cordon_engine::partial::{is_identity, value_truth, PeerClass, Truth};
use cordon_engine::pattern::{PathPattern, StringPattern};
use cordon_engine::relation;
use cordon_engine::{Action, Options, SpiffeId};
use serde_json::{json, Value};

use super::discover::workload_label;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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

    /// Reads `--principal`: a SPIFFE ID (with or without `spiffe://`), `authenticated`,
    /// or `plaintext`.
    pub fn parse(text: &str) -> Result<Subject, String> {
        match text {
            "plaintext" | "none" => return Ok(Subject::Plaintext),
            "authenticated" | "any" => return Ok(Subject::Authenticated),
            _ => {}
        }
        let uri = if text.starts_with("spiffe://") {
            text.to_string()
        } else {
            format!("spiffe://{text}")
        };
        let id = SpiffeId::parse(&uri).map_err(|error| format!("`{text}`: {error}"))?;
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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

    fn to_json(&self) -> Value {
        json!({
            "rule": self.rule,
            "methods": self.methods,
            "paths": self.paths,
            "hosts": self.hosts,
            "ports": self.ports,
            "excluded": self.excluded,
            "conditions": self.conditions,
            "except": self.except,
        })
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

/// The whole analysis.
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
        if policy.namespace == root_namespace {
            continue;
        }
        found.insert((policy.namespace.clone(), true, BTreeMap::new()));
        if let Some(selector) = policy.selector.as_ref().filter(|s| !s.is_empty()) {
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

/// The analysis for the given identities (all named ones when `None`).
pub fn analyze(policies: &[Policy], only: Option<Subject>, root_namespace: &str) -> BlastRadius {
    let subjects = match only {
        Some(subject) => vec![subject],
        None => subjects(policies),
    };
    let targets = targets(policies, root_namespace);
    let mut reach = Vec::with_capacity(subjects.len() * targets.len());
    for subject in &subjects {
        for target in &targets {
            reach.push(reach_of(policies, subject, target, root_namespace));
        }
    }
    BlastRadius {
        subjects,
        targets,
        reach,
    }
}

/// What `subject` can do on `target`.
pub fn reach_of(policies: &[Policy], subject: &Subject, target: &Target, root: &str) -> Reach {
    let applicable: Vec<&Policy> = policies
        .iter()
        .filter(|p| !p.dry_run && target.applies(p, root))
        .collect();
    let mut atoms: Vec<Atom> = Vec::new();
    let has_allow = applicable.iter().any(|p| p.action == Action::Allow);
    if has_allow {
        for policy in applicable.iter().filter(|p| p.action == Action::Allow) {
            for (index, rule) in policy.rules.iter().enumerate() {
                let judgement = judge_rule(rule, subject);
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
    for policy in applicable.iter().filter(|p| p.action == Action::Deny) {
        for (index, rule) in policy.rules.iter().enumerate() {
            let judgement = judge_rule(rule, subject);
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
                    .filter_map(|atom| atom.minus(denial, &id, &judgement))
                    .collect();
            }
        }
    }
    let grants = regroup(atoms);
    let access = if grants.is_empty() {
        Access::None
    } else if grants.iter().any(Grant::unrestricted) {
        Access::All
    } else if grants.iter().all(|g| !g.conditions.is_empty()) {
        Access::Conditional
    } else {
        Access::Partial
    };
    Reach {
        subject: subject.clone(),
        target: target.clone(),
        access,
        grants,
    }
}

/// A rule's `from` and `when` against the identity.
fn judge_rule(rule: &Rule, subject: &Subject) -> Judgement {
    let from = if rule.from.is_empty() {
        Judgement {
            tri: Truth::Yes,
            conditions: Vec::new(),
        }
    } else {
        let judged: Vec<Judgement> = rule.from.iter().map(|c| judge_clause(c, subject)).collect();
        if judged.iter().any(|j| j.tri == Truth::Yes) {
            Judgement {
                tri: Truth::Yes,
                conditions: Vec::new(),
            }
        } else {
            let maybes: Vec<String> = judged
                .iter()
                .filter(|j| j.tri == Truth::Maybe)
                .map(|j| j.conditions.join(" and "))
                .collect();
            match maybes.len() {
                0 => Judgement {
                    tri: Truth::No,
                    conditions: Vec::new(),
                },
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
    if from.tri == Truth::No {
        return from;
    }
    let mut result = from;
    for clause in &rule.when {
        let judged = judge_clause(clause, subject);
        match judged.tri {
            Truth::No => {
                return Judgement {
                    tri: Truth::No,
                    conditions: Vec::new(),
                }
            }
            Truth::Maybe => {
                result.tri = Truth::Maybe;
                result.conditions.extend(judged.conditions);
            }
            Truth::Yes => {}
        }
    }
    result
}

fn judge_clause(clause: &Clause, subject: &Subject) -> Judgement {
    let mut tri = Truth::Yes;
    let mut conditions = Vec::new();
    for field in &clause.fields {
        match judge_field(field, subject) {
            Truth::No => {
                return Judgement {
                    tri: Truth::No,
                    conditions: Vec::new(),
                }
            }
            Truth::Maybe => {
                tri = Truth::Maybe;
                conditions.push(describe_field(field));
            }
            Truth::Yes => {}
        }
    }
    Judgement { tri, conditions }
}

fn judge_field(field: &Field, subject: &Subject) -> Truth {
    let peer = subject.peer_class();
    let options = Options::default();
    let any = field.values.iter().fold(Truth::No, |truth, matcher| {
        // "Any authenticated identity" is one the policies do not name: an exact identity
        // value names someone else.
        let named = matches!(matcher, Matcher::Str(StringPattern::Exact(_)));
        let one = if *subject == Subject::Authenticated && is_identity(&field.attribute) && named {
            Truth::No
        } else {
            value_truth(&field.attribute, matcher, &peer, &options)
        };
        truth.or(one)
    });
    if field.negated {
        !any
    } else {
        any
    }
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

/// One `to` operation, read for matching and subtraction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Operation {
    methods: Option<BTreeSet<String>>,
    paths: Option<Vec<PathPattern>>,
    hosts: Vec<String>,
    ports: Vec<String>,
    excluded: Vec<String>,
}

impl Operation {
    fn from_clause(clause: &Clause) -> Operation {
        let mut operation = Operation::default();
        for field in &clause.fields {
            let texts: Vec<String> = field.values.iter().map(Matcher::to_istio).collect();
            let name = field.location.rsplit('.').next().unwrap_or("");
            if field.negated {
                operation
                    .excluded
                    .push(format!("{name} [{}]", texts.join(", ")));
                continue;
            }
            match field.attribute {
                Attribute::Method => {
                    let any = field
                        .values
                        .iter()
                        .any(|m| matches!(m, Matcher::Str(StringPattern::Presence)));
                    if !any {
                        operation.methods = Some(texts.into_iter().collect());
                    }
                }
                Attribute::Path => {
                    operation.paths = Some(
                        field
                            .values
                            .iter()
                            .filter_map(|m| match m {
                                Matcher::Path(pattern) => Some(pattern.clone()),
                                _ => None,
                            })
                            .collect(),
                    );
                }
                Attribute::Host => operation.hosts = texts,
                Attribute::DestinationPort => operation.ports = texts,
                _ => operation
                    .excluded
                    .push(format!("{name} [{}]", texts.join(", "))),
            }
        }
        operation
    }

    /// Whether it restricts more than methods and paths.
    fn has_other_constraints(&self) -> bool {
        !self.hosts.is_empty() || !self.ports.is_empty() || !self.excluded.is_empty()
    }

    fn describe(&self) -> String {
        let methods = self
            .methods
            .as_ref()
            .map(|m| m.iter().cloned().collect::<Vec<_>>().join(","));
        let paths = self.paths.as_ref().map(|paths| {
            paths
                .iter()
                .map(|p| Matcher::Path(p.clone()).to_istio())
                .collect::<Vec<_>>()
                .join(", ")
        });
        let mut text = match (methods, paths) {
            (Some(m), Some(p)) => format!("{m} {p}"),
            (Some(m), None) => format!("{m} on any path"),
            (None, Some(p)) => p,
            (None, None) => "everything".to_string(),
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
        text
    }
}

/// One grant for one path (or any path), before regrouping.
#[derive(Debug, Clone)]
struct Atom {
    rule: Option<String>,
    methods: Option<BTreeSet<String>>,
    path: Option<PathPattern>,
    hosts: Vec<String>,
    ports: Vec<String>,
    excluded: Vec<String>,
    conditions: Vec<String>,
    except: Vec<String>,
}

impl Atom {
    fn any(rule: Option<String>, conditions: Vec<String>) -> Atom {
        Atom {
            rule,
            methods: None,
            path: None,
            hosts: Vec::new(),
            ports: Vec::new(),
            excluded: Vec::new(),
            conditions,
            except: Vec::new(),
        }
    }

    fn from_clause(clause: &Clause, rule: Option<&str>, conditions: &[String]) -> Vec<Atom> {
        let operation = Operation::from_clause(clause);
        let base = Atom {
            rule: rule.map(str::to_string),
            methods: operation.methods.clone(),
            path: None,
            hosts: operation.hosts.clone(),
            ports: operation.ports.clone(),
            excluded: operation.excluded.clone(),
            conditions: conditions.to_vec(),
            except: Vec::new(),
        };
        match &operation.paths {
            None => vec![base],
            Some(paths) => paths
                .iter()
                .map(|path| Atom {
                    path: Some(path.clone()),
                    ..base.clone()
                })
                .collect(),
        }
    }

    /// What is left of the atom after a DENY operation; `None` when nothing is.
    fn minus(mut self, denial: &Operation, rule: &str, judgement: &Judgement) -> Option<Atom> {
        let path_covered = match (&denial.paths, &self.path) {
            (None, _) => true,
            (Some(denied), Some(path)) => denied.iter().any(|d| covers(d, path)),
            (Some(_), None) => false,
        };
        let path_overlaps = match (&denial.paths, &self.path) {
            (None, _) | (Some(_), None) => true,
            (Some(denied), Some(path)) => denied.iter().any(|d| overlaps(d, path)),
        };
        // Method values may be patterns (`P*`, `*`): the engine's relations judge them.
        let method = |text: &String| Matcher::Str(StringPattern::parse(text));
        let methods_overlap = match (&denial.methods, &self.methods) {
            (Some(denied), Some(mine)) => denied.iter().any(|d| {
                mine.iter()
                    .any(|m| relation::overlaps(&method(d), &method(m), false))
            }),
            _ => true,
        };
        if !path_overlaps || !methods_overlap {
            return Some(self);
        }
        let unconditional = judgement.tri == Truth::Yes && !denial.has_other_constraints();
        if !unconditional {
            let mut note = format!("{} (may be denied by {rule}", denial.describe());
            if !judgement.conditions.is_empty() {
                note.push_str(&format!(" if {}", judgement.conditions.join(" and ")));
            }
            note.push(')');
            self.except.push(note);
            return Some(self);
        }
        let covered_method = |mine: &String, denied: &BTreeSet<String>| {
            denied
                .iter()
                .any(|d| relation::covers(&method(d), &method(mine), false))
        };
        let methods_covered = match (&denial.methods, &self.methods) {
            (None, _) => true,
            (Some(denied), Some(mine)) => mine.iter().all(|m| covered_method(m, denied)),
            (Some(_), None) => false,
        };
        if path_covered && methods_covered {
            return None;
        }
        if path_covered {
            if let (Some(denied), Some(mine)) = (&denial.methods, &self.methods) {
                self.methods = Some(
                    mine.iter()
                        .filter(|m| !covered_method(m, denied))
                        .cloned()
                        .collect(),
                );
                return Some(self);
            }
        }
        self.except
            .push(format!("{} (denied by {rule})", denial.describe()));
        Some(self)
    }
}

fn regroup(atoms: Vec<Atom>) -> Vec<Grant> {
    type Key = (
        Option<String>,
        Option<Vec<String>>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
    );
    let mut groups: BTreeMap<Key, (Vec<String>, bool)> = BTreeMap::new();
    for atom in atoms {
        let key = (
            atom.rule,
            atom.methods.map(|m| m.into_iter().collect()),
            atom.hosts,
            atom.ports,
            atom.excluded,
            atom.conditions,
            atom.except,
        );
        let entry = groups.entry(key).or_default();
        match atom.path {
            Some(path) => {
                let text = Matcher::Path(path).to_istio();
                if !entry.0.contains(&text) {
                    entry.0.push(text);
                }
            }
            None => entry.1 = true,
        }
    }
    groups
        .into_iter()
        .map(
            |((rule, methods, hosts, ports, excluded, conditions, except), (paths, any))| Grant {
                rule,
                methods,
                paths: (!any).then_some(paths),
                hosts,
                ports,
                excluded,
                conditions,
                except,
            },
        )
        .collect()
}

/// Whether every path `inner` matches, `outer` matches too (the engine's exact relation).
fn covers(outer: &PathPattern, inner: &PathPattern) -> bool {
    relation::covers(
        &Matcher::Path(outer.clone()),
        &Matcher::Path(inner.clone()),
        false,
    )
}

/// Whether some path matches both (the engine's exact relation).
fn overlaps(a: &PathPattern, b: &PathPattern) -> bool {
    relation::overlaps(&Matcher::Path(a.clone()), &Matcher::Path(b.clone()), false)
}

impl BlastRadius {
    fn get(&self, subject: usize, target: usize) -> Option<&Reach> {
        self.reach.get(subject * self.targets.len() + target)
    }

    /// The matrix and the details, for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let labels: Vec<String> = self.subjects.iter().map(Subject::label).collect();
        let width = labels.iter().map(String::len).max().unwrap_or(8).max(8);
        let columns: Vec<String> = self.targets.iter().map(Target::label).collect();
        out.push_str(&format!("{:width$}", "identity \\ workload"));
        for column in &columns {
            out.push_str(&format!("  {column}"));
        }
        out.push('\n');
        for (s, label) in labels.iter().enumerate() {
            out.push_str(&format!("{label:width$}"));
            for (t, column) in columns.iter().enumerate() {
                let cell = self.get(s, t).map_or("?", |r| r.access.cell());
                out.push_str(&format!("  {cell:<w$}", w = column.len()));
            }
            out.push('\n');
        }
        out.push_str("\n(ALL: anything; partial: some operations; cond: only under conditions besides the identity; -: nothing)\n");
        let target_width = columns.iter().map(String::len).max().unwrap_or(8);
        for (s, label) in labels.iter().enumerate() {
            out.push_str(&format!("\n{label}\n"));
            for (t, column) in columns.iter().enumerate() {
                let Some(reach) = self.get(s, t) else {
                    continue;
                };
                if reach.grants.is_empty() {
                    out.push_str(&format!("  {column:target_width$}  nothing\n"));
                    continue;
                }
                for (position, grant) in reach.grants.iter().enumerate() {
                    let name = if position == 0 { column.as_str() } else { "" };
                    let by = grant.rule.as_deref().map_or_else(
                        || " (no ALLOW policy applies)".to_string(),
                        |r| format!(" [{r}]"),
                    );
                    out.push_str(&format!(
                        "  {name:target_width$}  {}{by}\n",
                        grant.describe()
                    ));
                }
            }
        }
        out
    }

    /// The analysis as JSON.
    pub fn to_json(&self) -> Value {
        let reach: Vec<Value> = self
            .reach
            .iter()
            .map(|reach| {
                json!({
                    "identity": reach.subject.label(),
                    "workload": reach.target.label(),
                    "access": reach.access.name(),
                    "grants": reach.grants.iter().map(Grant::to_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "identities": self.subjects.iter().map(Subject::label).collect::<Vec<_>>(),
            "workloads": self.targets.iter().map(Target::label).collect::<Vec<_>>(),
            "reach": reach,
        })
    }

    /// A Graphviz graph: identities → workloads, edges labelled with what is allowed
    /// (solid: unconditional, dashed: conditional, bold red: everything).
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph blast_radius {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n");
        out.push_str(
            "  subgraph cluster_identities {\n    label=\"identities\";\n    style=dashed;\n",
        );
        for (s, subject) in self.subjects.iter().enumerate() {
            let shape = match subject {
                Subject::Plaintext | Subject::Authenticated => {
                    "box, style=\"rounded,filled\", fillcolor=\"#fde2e2\""
                }
                Subject::Namespace(_) | Subject::ServiceAccount(..) => {
                    "box, style=\"rounded,filled\", fillcolor=\"#fff4d6\""
                }
                Subject::Principal(_) => "box, style=rounded",
            };
            out.push_str(&format!(
                "    i{s} [label={}, shape={shape}];\n",
                dot_quote(&subject.label())
            ));
        }
        out.push_str(
            "  }\n  subgraph cluster_workloads {\n    label=\"workloads\";\n    style=dashed;\n",
        );
        for (t, target) in self.targets.iter().enumerate() {
            out.push_str(&format!(
                "    w{t} [label={}, shape=component];\n",
                dot_quote(&target.label())
            ));
        }
        out.push_str("  }\n");
        for s in 0..self.subjects.len() {
            for t in 0..self.targets.len() {
                let Some(reach) = self.get(s, t) else {
                    continue;
                };
                let style = match reach.access {
                    Access::None => continue,
                    Access::All => "color=\"#c0392b\", penwidth=2.5",
                    Access::Conditional => "style=dashed",
                    Access::Partial => "color=\"#2c3e50\"",
                };
                let mut lines: Vec<String> = reach.grants.iter().map(Grant::describe).collect();
                if reach.access == Access::All {
                    lines = vec!["everything".to_string()];
                }
                if lines.len() > 6 {
                    let more = lines.len() - 5;
                    lines.truncate(5);
                    lines.push(format!("… {more} more"));
                }
                out.push_str(&format!(
                    "  i{s} -> w{t} [label={}, {style}];\n",
                    dot_quote(&lines.join("\n"))
                ));
            }
        }
        out.push_str("}\n");
        out
    }
}

/// A DOT string literal (`\n` makes a line break in labels).
fn dot_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

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
        let values: Vec<Value> =
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
