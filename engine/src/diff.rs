//! `cordon diff`: which requests one policy set allows and another denies, exactly, with a
//! concrete request for each class that the two compiled sets decide differently.
//!
//! For one workload, each set's decision is a Boolean formula over *predicates* ("the path
//! matches `/api/*`", "the peer URI matches `principals: [cluster.local/ns/a/*]`", "some
//! value of header `x-env` matches `prod`"), in Istio's order: a request refused before
//! any rule (`source.ip` read and `x-forwarded-for` present) is denied, then any DENY rule
//! denies, then, when ALLOW policies apply, an ALLOW rule must match. Dry-run and AUDIT
//! policies never change the enforced decision. Rules present in both sets are shared, so
//! the question "new allows, old denies" is a formula in which only the rules that changed
//! can make a difference.
//!
//! The search ([`space`]) splits the space of requests on one predicate at a time, always
//! one the formula still depends on, taken from the rules that changed first: each half is
//! checked for emptiness exactly (string and path values are automata, [`crate::relation`];
//! IP blocks and ports are intervals), and the formula is evaluated three-valued
//! ([`Truth`]) on it. A half where the formula is true for every request is a *class*; one
//! where it is false for all is dropped. The classes found are exactly the requests the
//! formula holds for, up to what the model leaves independent (see [`Class::undecided`]).
//!
//! Every class gets an example request, a [`TrafficRecord`], and the example is run through
//! both compiled [`PolicySet`]s: a class is reported with its example only when the two
//! decide it differently, in the direction claimed. A class for which no such example is
//! found (the model treats some correlated attributes as independent, such as `hosts` and
//! `request.headers[host]`, or an automaton search gave up) is reported as *undecided*
//! rather than dropped, so "no new access" is never said of a pair of sets that grants
//! some.

pub mod lints;
pub mod space;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::{Map, Value};

use crate::compile::{Options, PolicySet, Workload};
use crate::error::CompileError;
use crate::identity;
use crate::model::{parse_policies, Action, Attribute, Clause, Field, Matcher, Policy, Rule};
use crate::partial::Truth;
use crate::pattern::{PathPattern, StringPattern};
use crate::reference::applicable;
use crate::relation::region::ValueSet;
use crate::traffic::TrafficRecord;
use space::{Dimension, Kind, Member, Region, Space, Test};

/// How many regions one search may visit before the rest is reported as undecided.
const MAX_NODES: usize = 200_000;

/// A Boolean formula over the predicates of a [`Space`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Formula {
    Const(bool),
    Pred(u32),
    Not(alloc::boxed::Box<Formula>),
    And(Vec<Formula>),
    Or(Vec<Formula>),
}

fn not(formula: Formula) -> Formula {
    match formula {
        Formula::Const(value) => Formula::Const(!value),
        Formula::Not(inner) => *inner,
        other => Formula::Not(alloc::boxed::Box::new(other)),
    }
}

fn any(items: Vec<Formula>) -> Formula {
    if items.is_empty() {
        Formula::Const(false)
    } else {
        Formula::Or(items)
    }
}

/// One attribute's part of a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// The attribute (`peer`, `path`, `request.headers[x-env]`…).
    pub attribute: String,
    /// Whether the attribute can carry several values (headers, claims): then `all_of`
    /// means "some value matches each", `none_of` "no value matches any".
    pub multi_valued: bool,
    /// Values the request's value matches, every one.
    pub all_of: Vec<String>,
    /// Values it matches none of (absent included, for a single-valued attribute).
    pub none_of: Vec<String>,
    /// A single-valued attribute: values it matches at least one of (several classes
    /// merged into one: `method POST or PUT`); empty when not used.
    pub any_of: Vec<String>,
}

impl Constraint {
    /// For people: `path /api/*, not /api/v1/*`.
    pub fn describe(&self) -> String {
        let mut text = self.attribute.clone();
        if self.multi_valued {
            if !self.all_of.is_empty() {
                text.push_str(" has values matching ");
                text.push_str(&self.all_of.join(" and "));
            }
            if !self.none_of.is_empty() {
                if !self.all_of.is_empty() {
                    text.push(',');
                }
                text.push_str(" none matching ");
                text.push_str(&self.none_of.join(" or "));
            }
        } else {
            if !self.any_of.is_empty() {
                text.push(' ');
                text.push_str(&self.any_of.join(" or "));
            }
            if !self.all_of.is_empty() {
                if !self.any_of.is_empty() {
                    text.push_str(" and");
                }
                text.push(' ');
                text.push_str(&self.all_of.join(" and "));
            }
            if !self.none_of.is_empty() {
                if !self.all_of.is_empty() || !self.any_of.is_empty() {
                    text.push(',');
                }
                text.push_str(" not ");
                text.push_str(&self.none_of.join(", not "));
            }
        }
        text
    }
}

/// One dimension of a class: the predicates that hold, those that do not, and (merged
/// classes) those of which one holds.
#[derive(Debug, Clone)]
struct Member3 {
    dimension: Dimension,
    pos: Vec<space::Pred>,
    neg: Vec<space::Pred>,
    any: Vec<space::Pred>,
}

impl Member3 {
    fn labels(preds: &[space::Pred]) -> Vec<&str> {
        preds.iter().map(|pred| pred.label.as_str()).collect()
    }

    fn same(&self, other: &Member3) -> bool {
        self.dimension == other.dimension
            && Self::labels(&self.pos) == Self::labels(&other.pos)
            && Self::labels(&self.neg) == Self::labels(&other.neg)
            && Self::labels(&self.any) == Self::labels(&other.any)
    }
}

/// A set of requests the two policy sets decide differently.
#[derive(Debug, Clone)]
pub struct Class {
    /// Per attribute the class constrains; an attribute not listed takes any value.
    pub constraints: Vec<Constraint>,
    /// A request of the class that the two compiled sets decide differently.
    pub example: Option<TrafficRecord>,
    /// Why the class is not decided exactly (no example the two sets decide differently
    /// was found: the class may be empty), when it is not.
    pub undecided: Option<String>,
    /// Per constrained dimension, the predicates that hold and those that do not.
    members: Vec<Member3>,
}

impl Class {
    /// Whether a request lies in the class; `path` is its normalized path (see
    /// [`crate::path::normalize`]).
    pub fn contains(&self, request: &crate::request::Request<'_>, path: Option<&str>) -> bool {
        self.members.iter().all(|member| {
            let (dimension, pos, neg, any) =
                (&member.dimension, &member.pos, &member.neg, &member.any);
            let values = space::values_of(dimension, request, path);
            if dimension.kind() == Kind::Multi {
                let values = values.unwrap_or_default();
                let some = |pred: &space::Pred| values.iter().any(|value| pred.holds_value(value));
                pos.iter().all(some) && !neg.iter().any(some)
            } else {
                match values.as_deref() {
                    None | Some([]) => pos.is_empty() && any.is_empty(),
                    Some([value, ..]) => {
                        pos.iter().all(|pred| pred.holds_value(value))
                            && !neg.iter().any(|pred| pred.holds_value(value))
                            && (any.is_empty() || any.iter().any(|pred| pred.holds_value(value)))
                    }
                }
            }
        })
    }

    /// For people: the constraints joined with `; ` (`any request` when there are none).
    pub fn describe(&self) -> String {
        if self.constraints.is_empty() {
            return "any request".to_string();
        }
        self.constraints
            .iter()
            .map(Constraint::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What changes for one workload.
#[derive(Debug, Clone)]
pub struct WorkloadDiff {
    /// The workload (namespace and labels).
    pub workload: Workload,
    /// Requests the new set allows and the old denies.
    pub new_access: Vec<Class>,
    /// Requests the old set allows and the new denies.
    pub removed_access: Vec<Class>,
}

/// The workloads two policy sets can tell apart: in each namespace a policy names, one per
/// selector of a policy of that namespace or of the root namespace, and one no selector
/// matches; in a namespace no policy names (`other` unless taken), one per selector of a
/// root-namespace policy, and one no selector matches. Policies bound to gateways
/// (`targetRef`) are left out: a sidecar ignores them.
pub fn workloads(policies: &[&Policy], root_namespace: &str) -> Vec<Workload> {
    let sidecar: Vec<&&Policy> = policies
        .iter()
        .filter(|policy| !policy.targets_gateway)
        .collect();
    let mut namespaces: Vec<String> = sidecar
        .iter()
        .map(|policy| policy.namespace.clone())
        .filter(|namespace| namespace != root_namespace)
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let mut other = "other".to_string();
    let mut counter = 1;
    while namespaces.contains(&other) || other == root_namespace {
        other = format!("other-{counter}");
        counter += 1;
    }
    let mut out = Vec::new();
    for namespace in namespaces.iter().chain(core::iter::once(&other)) {
        let mut label_sets: Vec<BTreeMap<String, String>> = alloc::vec![BTreeMap::new()];
        for policy in &sidecar {
            if policy.namespace != *namespace && policy.namespace != root_namespace {
                continue;
            }
            if let Some(selector) = &policy.selector {
                if !label_sets.contains(selector) {
                    label_sets.push(selector.clone());
                }
            }
        }
        for labels in label_sets {
            out.push(Workload {
                namespace: Some(namespace.clone()),
                labels,
            });
        }
    }
    out
}

/// A rule's content, for telling the rules two sets share (the field locations differ
/// with the rule's position and do not count).
fn rule_key(action: Action, rule: &Rule) -> String {
    let clauses = |clauses: &[Clause]| -> String {
        clauses
            .iter()
            .map(|clause| {
                clause
                    .fields
                    .iter()
                    .map(|field| {
                        format!("{:?}{}{:?}", field.attribute, field.negated, field.values)
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .collect::<Vec<_>>()
            .join("|")
    };
    format!(
        "{}:{}:{}:{}",
        action.name(),
        clauses(&rule.from),
        clauses(&rule.to),
        clauses(&rule.when)
    )
}

/// One set's enforced decision, by rule.
struct Decider {
    deny: Vec<(String, Formula)>,
    allow: Vec<(String, Formula)>,
    has_allow: bool,
    refuses_forwarded: bool,
}

impl Decider {
    /// Whether the two decide every request alike because they hold the same rules.
    fn same_decisions(&self, other: &Decider) -> bool {
        self.has_allow == other.has_allow
            && self.refuses_forwarded == other.refuses_forwarded
            && sorted_keys(&self.deny) == sorted_keys(&other.deny)
            && sorted_keys(&self.allow) == sorted_keys(&other.allow)
    }
}

fn sorted_keys(rules: &[(String, Formula)]) -> Vec<&str> {
    let mut keys: Vec<&str> = rules.iter().map(|(key, _)| key.as_str()).collect();
    keys.sort_unstable();
    keys
}

/// The predicates and formulas of one comparison.
struct Builder<'o> {
    space: Space,
    options: &'o Options,
}

impl Builder<'_> {
    fn decider(&mut self, policies: &[Policy]) -> Decider {
        let enforced: Vec<&Policy> = policies.iter().filter(|policy| !policy.dry_run).collect();
        let mut decider = Decider {
            deny: Vec::new(),
            allow: Vec::new(),
            has_allow: enforced.iter().any(|policy| policy.action == Action::Allow),
            refuses_forwarded: !self.options.use_remote_address
                && policies
                    .iter()
                    .flat_map(|policy| policy.rules.iter())
                    .flat_map(|rule| rule.from.iter().chain(&rule.when))
                    .flat_map(|clause| clause.fields.iter())
                    .any(|field| field.attribute == Attribute::SourceIp),
        };
        for policy in enforced {
            for rule in &policy.rules {
                let entry = (rule_key(policy.action, rule), self.rule(rule));
                match policy.action {
                    Action::Deny => decider.deny.push(entry),
                    Action::Allow => decider.allow.push(entry),
                    Action::Audit => {}
                }
            }
        }
        decider
    }

    fn rule(&mut self, rule: &Rule) -> Formula {
        let mut parts = Vec::new();
        if !rule.from.is_empty() {
            let from = rule.from.iter().map(|clause| self.clause(clause)).collect();
            parts.push(any(from));
        }
        if !rule.to.is_empty() {
            let to = rule.to.iter().map(|clause| self.clause(clause)).collect();
            parts.push(any(to));
        }
        for clause in &rule.when {
            parts.push(self.clause(clause));
        }
        Formula::And(parts)
    }

    fn clause(&mut self, clause: &Clause) -> Formula {
        Formula::And(
            clause
                .fields
                .iter()
                .map(|field| self.field(field))
                .collect(),
        )
    }

    fn field(&mut self, field: &Field) -> Formula {
        let values = field
            .values
            .iter()
            .map(|matcher| self.value(&field.attribute, matcher))
            .collect();
        let matched = any(values);
        if field.negated {
            not(matched)
        } else {
            matched
        }
    }

    /// One value of a field, as predicates (negation not applied).
    fn value(&mut self, attribute: &Attribute, matcher: &Matcher) -> Formula {
        let dimension = Dimension::of(attribute);
        match (attribute, matcher) {
            (
                Attribute::Principal
                | Attribute::Namespace
                | Attribute::ServiceAccount
                | Attribute::TrustDomain,
                Matcher::Str(pattern),
            ) => self.identity(attribute, pattern),
            (Attribute::RequestPrincipal, Matcher::Str(pattern)) => {
                let (issuer, subject) = identity::request_principal_parts(&pattern.to_istio());
                let issuer = self.string(Dimension::Issuer, &issuer, false);
                let subject = self.string(Dimension::Subject, &subject, false);
                Formula::And(alloc::vec![issuer, subject])
            }
            (Attribute::Header(_), Matcher::Str(StringPattern::Presence)) => {
                self.present(dimension)
            }
            (_, Matcher::Str(pattern)) => {
                let fold = attribute.folds_case();
                self.string(dimension, pattern, fold)
            }
            (_, Matcher::Path(PathPattern::Plain(pattern))) => {
                self.string(dimension, pattern, false)
            }
            (_, Matcher::Path(template)) => {
                let dim = self.space.dim(dimension);
                let label = matcher.to_istio();
                let id = self.space.pred(dim, format!("path:{label}"), || {
                    let set = ValueSet::of_matcher(&Matcher::Path(template.clone()), false)?;
                    Some((Test::Str { set, plain: None }, label.clone()))
                });
                id.map_or(Formula::Const(false), Formula::Pred)
            }
            (
                Attribute::SourceIp | Attribute::RemoteIp | Attribute::DestinationIp,
                Matcher::Ip(block),
            ) => {
                let dim = self.space.dim(dimension);
                let label = matcher.to_istio();
                let id = self.space.pred(dim, format!("ip:{label}"), || {
                    Some((Test::Ip(*block), label.clone()))
                });
                id.map_or(Formula::Const(false), Formula::Pred)
            }
            (Attribute::DestinationPort, Matcher::Port(port)) => {
                let dim = self.space.dim(dimension);
                let id = self.space.pred(dim, format!("port:{port}"), || {
                    Some((Test::Port(*port), port.to_string()))
                });
                id.map_or(Formula::Const(false), Formula::Pred)
            }
            _ => Formula::Const(false),
        }
    }

    /// "Some value is present" on a multi-valued dimension (`*` on a header: any value,
    /// the empty one included).
    fn present(&mut self, dimension: Dimension) -> Formula {
        let dim = self.space.dim(dimension);
        let id = self.space.pred(dim, "present".to_string(), || {
            Some((
                Test::Str {
                    set: ValueSet::any(),
                    plain: Some(StringPattern::Prefix(String::new())),
                },
                "* (present)".to_string(),
            ))
        });
        id.map_or(Formula::Const(false), Formula::Pred)
    }

    fn string(&mut self, dimension: Dimension, pattern: &StringPattern, fold: bool) -> Formula {
        let dim = self.space.dim(dimension);
        let written = pattern.to_istio();
        let folded = if fold {
            StringPattern::parse(&written.to_ascii_lowercase())
        } else {
            pattern.clone()
        };
        // `exact ""` (an empty `sub` of a request principal) is its own value, not `*`.
        let key = format!("str:{folded:?}");
        let id = self.space.pred(dim, key, || {
            let set = ValueSet::of_matcher(&Matcher::Str(folded.clone()), false)?;
            Some((
                Test::Str {
                    set,
                    plain: Some(folded.clone()),
                },
                if written.is_empty() {
                    "\"\"".to_string()
                } else {
                    written.clone()
                },
            ))
        });
        id.map_or(Formula::Const(false), Formula::Pred)
    }

    fn identity(&mut self, attribute: &Attribute, pattern: &StringPattern) -> Formula {
        let bundle = identity::trust_domain_bundle(
            self.options.trust_domain.as_deref(),
            &self.options.trust_domain_aliases,
        );
        let texts = match attribute {
            Attribute::Principal => identity::principal_with_aliases(&pattern.to_istio(), &bundle),
            Attribute::TrustDomain => {
                identity::trust_domain_with_aliases(&pattern.to_istio(), &bundle)
            }
            _ => alloc::vec![pattern.to_istio()],
        };
        let patterns: Vec<StringPattern> = texts
            .iter()
            .map(|text| StringPattern::parse(text))
            .collect();
        let (kind, plain) = match (attribute, patterns.as_slice()) {
            (Attribute::Principal, [only]) => (
                "principal",
                match only {
                    StringPattern::Exact(text) => {
                        Some(StringPattern::Exact(format!("spiffe://{text}")))
                    }
                    StringPattern::Prefix(text) => {
                        Some(StringPattern::Prefix(format!("spiffe://{text}")))
                    }
                    StringPattern::Presence => Some(StringPattern::Presence),
                    StringPattern::Suffix(_) => None,
                },
            ),
            (Attribute::Principal, _) => ("principal", None),
            (Attribute::Namespace, _) => ("namespace", None),
            (Attribute::ServiceAccount, _) => ("service account", None),
            _ => ("trust domain", None),
        };
        let dim = self.space.dim(Dimension::Peer);
        let label = format!("{kind} {}", pattern.to_istio());
        let key = format!("{kind}:{texts:?}");
        let id = self.space.pred(dim, key, || {
            let set = ValueSet::of_identity(attribute, &patterns)?;
            Some((Test::Str { set, plain }, label.clone()))
        });
        id.map_or(Formula::Const(false), Formula::Pred)
    }

    /// "`gains` allows and `loses` denies", written so that the rules the two share come
    /// last: a search that splits on the first open predicate works on the change first.
    fn goal(&mut self, gains: &Decider, loses: &Decider) -> Formula {
        let mut shared: BTreeMap<&str, usize> = BTreeMap::new();
        for (key, _) in loses.deny.iter().chain(&loses.allow) {
            *shared.entry(key.as_str()).or_insert(0) += 1;
        }
        let mut common_keys: BTreeMap<String, usize> = BTreeMap::new();
        let mut split = |rules: &[(String, Formula)]| {
            let (mut only, mut common) = (Vec::new(), Vec::new());
            for (key, formula) in rules {
                match shared.get_mut(key.as_str()) {
                    Some(count) if *count > 0 => {
                        *count -= 1;
                        *common_keys.entry(key.clone()).or_insert(0) += 1;
                        common.push(formula.clone());
                    }
                    _ => only.push(formula.clone()),
                }
            }
            (only, common)
        };
        let (gains_deny_only, common_deny) = split(&gains.deny);
        let (gains_allow_only, common_allow) = split(&gains.allow);
        let mut loses_only = |rules: &[(String, Formula)]| {
            let mut only = Vec::new();
            for (key, formula) in rules {
                match common_keys.get_mut(key) {
                    Some(count) if *count > 0 => *count -= 1,
                    _ => only.push(formula.clone()),
                }
            }
            only
        };
        let loses_deny_only = loses_only(&loses.deny);
        let loses_allow_only = loses_only(&loses.allow);

        let forwarded = self.present(Dimension::Header(crate::compile::FORWARDED_FOR.into()));
        let refuse = |decider: &Decider| {
            if decider.refuses_forwarded {
                forwarded.clone()
            } else {
                Formula::Const(false)
            }
        };
        let mut loses_allows = loses_allow_only;
        loses_allows.extend(common_allow.iter().cloned());
        let loses_no_allow = if loses.has_allow {
            not(any(loses_allows))
        } else {
            Formula::Const(false)
        };
        let mut loses_denies = alloc::vec![refuse(loses)];
        loses_denies.extend(loses_deny_only);
        loses_denies.push(loses_no_allow);
        let mut gains_allows = gains_allow_only;
        gains_allows.extend(common_allow);
        let gains_allow = if gains.has_allow {
            any(gains_allows)
        } else {
            Formula::Const(true)
        };
        Formula::And(alloc::vec![
            Formula::Or(loses_denies),
            gains_allow,
            not(any(gains_deny_only)),
            not(refuse(gains)),
            not(any(common_deny)),
        ])
    }
}

/// Per predicate: 0 not computed, else the truth (1 yes, 2 maybe, 3 no).
type Cache = Vec<u8>;

struct Search<'s> {
    space: &'s mut Space,
    by_dim: Vec<Vec<u32>>,
    nodes: usize,
    /// Stop at the first class found (a satisfiability question).
    first_only: bool,
}

impl Search<'_> {
    fn pred_truth(&mut self, pred: u32, region: &Region, cache: &mut Cache) -> Truth {
        let slot = cache.get(pred as usize).copied().unwrap_or(0);
        let truth = match slot {
            1 => return Truth::Yes,
            2 => return Truth::Maybe,
            3 => return Truth::No,
            _ => self.space.truth(region, pred),
        };
        if let Some(slot) = cache.get_mut(pred as usize) {
            *slot = match truth {
                Truth::Yes => 1,
                Truth::Maybe => 2,
                Truth::No => 3,
            };
        }
        truth
    }

    fn eval(&mut self, formula: &Formula, region: &Region, cache: &mut Cache) -> Truth {
        match formula {
            Formula::Const(true) => Truth::Yes,
            Formula::Const(false) => Truth::No,
            Formula::Pred(pred) => self.pred_truth(*pred, region, cache),
            Formula::Not(inner) => !self.eval(inner, region, cache),
            Formula::And(items) => {
                let mut truth = Truth::Yes;
                for item in items {
                    match self.eval(item, region, cache) {
                        Truth::No => return Truth::No,
                        Truth::Maybe => truth = Truth::Maybe,
                        Truth::Yes => {}
                    }
                }
                truth
            }
            Formula::Or(items) => {
                let mut truth = Truth::No;
                for item in items {
                    match self.eval(item, region, cache) {
                        Truth::Yes => return Truth::Yes,
                        Truth::Maybe => truth = Truth::Maybe,
                        Truth::No => {}
                    }
                }
                truth
            }
        }
    }

    /// The first open predicate of an open formula.
    fn pick(&mut self, formula: &Formula, region: &Region, cache: &mut Cache) -> Option<u32> {
        match formula {
            Formula::Const(_) => None,
            Formula::Pred(pred) => {
                (self.pred_truth(*pred, region, cache) == Truth::Maybe).then_some(*pred)
            }
            Formula::Not(inner) => self.pick(inner, region, cache),
            Formula::And(items) | Formula::Or(items) => {
                for item in items {
                    if self.eval(item, region, cache) == Truth::Maybe {
                        if let Some(pred) = self.pick(item, region, cache) {
                            return Some(pred);
                        }
                    }
                }
                None
            }
        }
    }

    /// The regions inside `region` where `goal` holds for every request, and whether they
    /// are exactly `region` (then the caller may merge halves back).
    fn explore(
        &mut self,
        goal: &Formula,
        region: Region,
        mut cache: Cache,
        out: &mut Vec<(Region, bool)>,
    ) -> bool {
        if self.first_only && !out.is_empty() {
            return false;
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            out.push((region, false));
            return false;
        }
        match self.eval(goal, &region, &mut cache) {
            Truth::No => return false,
            Truth::Yes => {
                out.push((region, true));
                return true;
            }
            Truth::Maybe => {}
        }
        let Some(pred) = self.pick(goal, &region, &mut cache) else {
            // Open with no open predicate cannot happen; kept as undecided if it does.
            out.push((region, false));
            return false;
        };
        let dim = self.space.preds.get(pred as usize).map_or(0, |p| p.dim);
        let (with, without) = self.space.split(&region, pred);
        let child_cache = |cache: &Cache| {
            let mut next = cache.clone();
            for id in self.by_dim.get(dim).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(slot) = next.get_mut(*id as usize) {
                    if *slot == 2 {
                        *slot = 0;
                    }
                }
            }
            next
        };
        let (cache_with, cache_without) = (child_cache(&cache), child_cache(&cache));
        let start = out.len();
        let whole_with = match with {
            Some(half) => self.explore(goal, half, cache_with, out),
            None => true,
        };
        let whole_without = match without {
            Some(half) => self.explore(goal, half, cache_without, out),
            None => true,
        };
        if whole_with && whole_without && out.len() > start {
            // Both halves hold entirely: so does the region, one class instead of two.
            out.truncate(start);
            out.push((region, true));
            return true;
        }
        false
    }
}

/// The sets tried first for an example's value, per dimension: requests as a proxy sees
/// them (normalized paths, Istio-shaped identities, scopes without spaces).
fn preferred(dimension: &Dimension) -> Option<(Vec<ValueSet>, Vec<ValueSet>)> {
    match dimension {
        Dimension::Peer => Some((alloc::vec![ValueSet::istio_identity()], Vec::new())),
        Dimension::Path => Some((
            alloc::vec![ValueSet::starting_with("/")],
            ["//", "/./", "/../", "?", "#", "%", "\\"]
                .iter()
                .map(|text| ValueSet::containing(text))
                .chain([ValueSet::ending_with("/."), ValueSet::ending_with("/..")])
                .collect(),
        )),
        Dimension::RawPath => Some((
            alloc::vec![ValueSet::starting_with("/")],
            alloc::vec![ValueSet::containing("#")],
        )),
        Dimension::Claim(path) if matches!(path.as_slice(), [one] if one == "scope" || one == "permission") => {
            Some((
                alloc::vec![ValueSet::non_empty()],
                alloc::vec![ValueSet::containing(" ")],
            ))
        }
        _ => None,
    }
}

/// Values tried for an attribute a class leaves open, before leaving it absent.
fn ordinary(dimension: &Dimension) -> &'static [&'static str] {
    match dimension {
        Dimension::Method => &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"],
        Dimension::Path => &["/", "/x"],
        _ => &[],
    }
}

/// The traffic record for one member of a class.
fn record(space: &Space, members: &[Member], workload: &Workload) -> TrafficRecord {
    let mut record = TrafficRecord {
        destination_namespace: workload.namespace.clone(),
        destination_labels: workload.labels.clone(),
        ..TrafficRecord::default()
    };
    let mut claims = Map::new();
    let first = |values: &[String]| values.first().cloned();
    for (dimension, member) in space.dims.iter().zip(members) {
        let ip = |ipv4: bool, address: u128| -> core::net::IpAddr {
            if ipv4 {
                core::net::IpAddr::V4(core::net::Ipv4Addr::from((address & 0xffff_ffff) as u32))
            } else {
                core::net::IpAddr::V6(core::net::Ipv6Addr::from(address))
            }
        };
        match (dimension, member) {
            (_, Member::Absent) => {}
            (Dimension::SourceIp, Member::Ip(v4, address)) => {
                record.source_ip = Some(ip(*v4, *address))
            }
            (Dimension::RemoteIp, Member::Ip(v4, address)) => {
                record.remote_ip = Some(ip(*v4, *address))
            }
            (Dimension::DestinationIp, Member::Ip(v4, address)) => {
                record.destination_ip = Some(ip(*v4, *address));
            }
            (Dimension::Port, Member::Port(port)) => record.destination_port = Some(*port),
            (Dimension::Peer, Member::Values(values)) => record.principal = first(values),
            (Dimension::Host | Dimension::Authority, Member::Values(values))
                if record.host.is_none() =>
            {
                record.host = first(values);
            }
            (Dimension::Method, Member::Values(values)) => record.method = first(values),
            (Dimension::RawPath, Member::Values(values)) => record.path = first(values),
            (Dimension::Path, Member::Values(values)) if record.path.is_none() => {
                record.path = first(values);
            }
            (Dimension::Sni, Member::Values(values)) => record.sni = first(values),
            (Dimension::Issuer, Member::Values(values)) => {
                if let Some(value) = first(values) {
                    claims.insert("iss".into(), Value::String(value));
                }
            }
            (Dimension::Subject, Member::Values(values)) => {
                if let Some(value) = first(values) {
                    claims.insert("sub".into(), Value::String(value));
                }
            }
            (Dimension::Header(name), Member::Values(values)) => {
                for value in values {
                    record.headers.push((name.clone(), value.clone()));
                }
            }
            (Dimension::Claim(path), Member::Values(values)) if !values.is_empty() => {
                let value = match values.as_slice() {
                    [one] => Value::String(one.clone()),
                    many => Value::Array(many.iter().cloned().map(Value::String).collect()),
                };
                insert_claim(&mut claims, path, value);
            }
            _ => {}
        }
    }
    if !claims.is_empty() {
        record.claims = Some(Value::Object(claims));
    }
    record
}

fn insert_claim(claims: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = claims;
    for key in parents {
        let entry = node
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else {
            return;
        };
        node = next;
    }
    node.insert(last.clone(), value);
}

/// Compares two policy sets (JSON values of AuthorizationPolicy objects) for each of
/// `workloads`, under `base` (its workload replaced by each one in turn).
pub fn diff(
    old: &[Value],
    new: &[Value],
    base: &Options,
    workloads: &[Workload],
) -> Result<Vec<WorkloadDiff>, CompileError> {
    let (old_policies, _, old_errors) = parse_policies(old);
    let (new_policies, _, new_errors) = parse_policies(new);
    let mut errors = old_errors;
    errors.extend(new_errors);
    if !errors.is_empty() {
        return Err(CompileError { errors });
    }
    let mut out = Vec::new();
    for workload in workloads {
        let mut options = base.clone();
        options.workload = workload.clone();
        let old_applied = applicable(&old_policies, &options);
        let new_applied = applicable(&new_policies, &options);
        let mut builder = Builder {
            space: Space::default(),
            options: &options,
        };
        let old_decider = builder.decider(&old_applied);
        let new_decider = builder.decider(&new_applied);
        if old_decider.same_decisions(&new_decider) {
            // The same rules, in whatever order: the same decision for every request.
            out.push(WorkloadDiff {
                workload: workload.clone(),
                new_access: Vec::new(),
                removed_access: Vec::new(),
            });
            continue;
        }
        let gained = builder.goal(&new_decider, &old_decider);
        let lost = builder.goal(&old_decider, &new_decider);
        let mut space = builder.space;
        let gained = regions(&mut space, &gained, false);
        let lost = regions(&mut space, &lost, false);
        if gained.is_empty() && lost.is_empty() {
            // Different rules, the same decisions: nothing to give examples for, so the
            // sets are not compiled (at 10,000 rules that was a fifth of the analysis).
            out.push(WorkloadDiff {
                workload: workload.clone(),
                new_access: Vec::new(),
                removed_access: Vec::new(),
            });
            continue;
        }
        let old_set = PolicySet::from_policies(old_applied, Vec::new(), options.clone())?;
        let new_set = PolicySet::from_policies(new_applied, Vec::new(), options.clone())?;
        let new_access = classes(&space, gained, &options, (&new_set, &old_set));
        let removed_access = classes(&space, lost, &options, (&old_set, &new_set));
        out.push(WorkloadDiff {
            workload: workload.clone(),
            new_access,
            removed_access,
        });
    }
    Ok(out)
}

/// The regions where `goal` holds for every request (`true`), or that the search gave up
/// on (`false`); with `first_only`, the search stops at the first one (a satisfiability
/// question).
fn regions(space: &mut Space, goal: &Formula, first_only: bool) -> Vec<(Region, bool)> {
    let mut by_dim = alloc::vec![Vec::new(); space.dims.len()];
    for (id, pred) in space.preds.iter().enumerate() {
        if let (Some(list), Ok(id)) = (by_dim.get_mut(pred.dim), u32::try_from(id)) {
            list.push(id);
        }
    }
    let cache = alloc::vec![0u8; space.preds.len()];
    let start = space.everything();
    let mut found = Vec::new();
    let mut search = Search {
        space,
        by_dim,
        nodes: 0,
        first_only,
    };
    search.explore(goal, start, cache, &mut found);
    found
}

/// The classes of `found`, each with an example that `sets.0` allows and `sets.1` denies,
/// or marked undecided.
fn classes(
    space: &Space,
    found: Vec<(Region, bool)>,
    options: &Options,
    sets: (&PolicySet, &PolicySet),
) -> Vec<Class> {
    let workload = &options.workload;
    let (allows, denies) = sets;
    let mut scratch = (allows.new_scratch(), denies.new_scratch());
    let mut out = Vec::new();
    let remote = space
        .dims
        .iter()
        .position(|dimension| *dimension == Dimension::RemoteIp);
    for (region, decided) in found {
        let members: Vec<Member3> = space
            .dims
            .iter()
            .zip(&region.dims)
            .filter(|(_, here)| !here.pos.is_empty() || !here.neg.is_empty())
            .map(|(dimension, here)| {
                let preds = |ids: &[u32]| -> Vec<space::Pred> {
                    ids.iter()
                        .filter_map(|id| space.preds.get(*id as usize).map(|pred| (**pred).clone()))
                        .collect()
                };
                Member3 {
                    dimension: dimension.clone(),
                    pos: preds(&here.pos),
                    neg: preds(&here.neg),
                    any: Vec::new(),
                }
            })
            .collect();
        let mut class = Class {
            constraints: constraints(space, &region),
            example: None,
            undecided: None,
            members,
        };
        if decided {
            let tries: [&space::Preference<'_>; 2] = [&preferred, &|_| None];
            'tries: for prefer in tries {
                let Ok(mut values) = space.members(&region, prefer) else {
                    continue;
                };
                fill_open(space, &region, &mut values);
                let first = record(space, &values, workload);
                let mut candidates = alloc::vec![first.clone()];
                // A record without `remote.ip` has its `source.ip` there: when that
                // leaves the class, name another (the record then carries
                // `x-forwarded-for`, as a proxy would).
                if first.remote_ip.is_none() && first.source_ip.is_some() {
                    if let Some(address) = remote.and_then(|dim| space.free_address(&region, dim)) {
                        let mut other = first;
                        other.remote_ip = Some(address);
                        candidates.push(other);
                    }
                }
                for candidate in candidates {
                    let request = candidate.request();
                    let mut buffer = String::new();
                    let path = match candidate.path.as_deref() {
                        None => None,
                        Some(raw) => {
                            match crate::path::normalize(
                                raw,
                                options.path_normalization,
                                &mut buffer,
                            ) {
                                Ok(path) => Some(path.to_string()),
                                Err(_) => continue,
                            }
                        }
                    };
                    if allows.evaluate(&request, &mut scratch.0).allowed
                        && !denies.evaluate(&request, &mut scratch.1).allowed
                        && class.contains(&request, path.as_deref())
                    {
                        class.example = Some(candidate);
                        break 'tries;
                    }
                }
            }
        }
        class.undecided = match (&class.example, decided) {
            (Some(_), _) => None,
            (None, true) => Some(
                "no request of this class was found that the two sets decide differently: the class may be empty (attributes the analysis treats as independent, or an automaton search that gave up)"
                    .to_string(),
            ),
            (None, false) => Some(format!(
                "the search stopped after {MAX_NODES} regions; this part of the request space was not analysed"
            )),
        };
        if let Some(last) = out.last_mut() {
            if merge(last, &class) {
                continue;
            }
        }
        out.push(class);
    }
    out
}

/// Merges `next` into `into` when together they are one class with a choice on one
/// single-valued attribute: `into` has `p` there (or a choice `S`), `next` has `q` and not
/// `p` (not `S`), all else equal: then `p or q` (`S or q`). Both must have examples (the
/// merged class keeps the first: it lies in the union and was decided differently).
fn merge(into: &mut Class, next: &Class) -> bool {
    if into.example.is_none() || next.example.is_none() {
        return false;
    }
    let dims = |class: &Class| -> Vec<Dimension> {
        class
            .members
            .iter()
            .map(|member| member.dimension.clone())
            .collect()
    };
    if dims(into) != dims(next) {
        return false;
    }
    let differing: Vec<usize> = into
        .members
        .iter()
        .zip(&next.members)
        .enumerate()
        .filter(|(_, (a, b))| !a.same(b))
        .map(|(position, _)| position)
        .collect();
    let [position] = differing.as_slice() else {
        return false;
    };
    let (Some(a), Some(b)) = (into.members.get(*position), next.members.get(*position)) else {
        return false;
    };
    if a.dimension.kind() == Kind::Multi || !b.any.is_empty() {
        return false;
    }
    let (choice, base_neg): (Vec<space::Pred>, &[space::Pred]) =
        match (a.pos.as_slice(), a.any.is_empty()) {
            ([p], true) => (alloc::vec![p.clone()], &a.neg),
            ([], false) => (a.any.clone(), &a.neg),
            _ => return false,
        };
    let [q] = b.pos.as_slice() else {
        return false;
    };
    let mut expected: Vec<&str> = Member3::labels(base_neg);
    expected.extend(Member3::labels(&choice));
    let mut found = Member3::labels(&b.neg);
    expected.sort_unstable();
    found.sort_unstable();
    if expected != found {
        return false;
    }
    let mut any = choice;
    any.push(q.clone());
    let merged = Member3 {
        dimension: a.dimension.clone(),
        pos: Vec::new(),
        neg: a.neg.clone(),
        any,
    };
    if let Some(constraint) = into
        .constraints
        .iter_mut()
        .find(|constraint| constraint.attribute == merged.dimension.name())
    {
        constraint.all_of.clear();
        constraint.any_of = merged.any.iter().map(|pred| pred.label.clone()).collect();
        constraint.none_of = merged.neg.iter().map(|pred| pred.label.clone()).collect();
    }
    if let Some(slot) = into.members.get_mut(*position) {
        *slot = merged;
    }
    true
}

/// Ordinary values for the attributes a class leaves open (a method, a path), when they
/// fit: examples read like requests.
fn fill_open(space: &Space, region: &Region, members: &mut [Member]) {
    for ((dimension, here), member) in space.dims.iter().zip(&region.dims).zip(members.iter_mut()) {
        if *member != Member::Absent || !here.pos.is_empty() || dimension.kind() != Kind::Str {
            continue;
        }
        for candidate in ordinary(dimension) {
            let fits = here.neg.iter().all(|id| {
                space
                    .preds
                    .get(*id as usize)
                    .is_some_and(|pred| match &pred.test {
                        Test::Str {
                            plain: Some(pattern),
                            ..
                        } => !pattern.matches(candidate, false),
                        Test::Str { set, .. } => !set.contains(candidate),
                        _ => false,
                    })
            });
            if fits {
                *member = Member::Values(alloc::vec![(*candidate).to_string()]);
                break;
            }
        }
    }
}

fn constraints(space: &Space, region: &Region) -> Vec<Constraint> {
    let label = |id: &u32| {
        space
            .preds
            .get(*id as usize)
            .map_or_else(String::new, |pred| pred.label.clone())
    };
    space
        .dims
        .iter()
        .zip(&region.dims)
        .filter(|(_, here)| !here.pos.is_empty() || !here.neg.is_empty())
        .map(|(dimension, here)| Constraint {
            attribute: dimension.name(),
            multi_valued: dimension.kind() == Kind::Multi,
            all_of: here.pos.iter().map(label).collect(),
            none_of: here.neg.iter().map(label).collect(),
            any_of: Vec::new(),
        })
        .collect()
}
