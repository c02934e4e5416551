//! Compiling validated policies into an immutable [`PolicySet`].
//!
//! Every rule is expanded into *terms*: one conjunction of value sets per combination of
//! its `from` and `to` clauses, plus all of its `when` conditions. Identical value sets
//! (same attribute and values) are shared across the whole set, so a value like
//! `methods: ["GET"]` used by ten thousand rules is matched once. Each term is triggered by
//! its rarest positive value set; only triggered terms are checked, so the cost of a
//! request depends on what it matches, not on how many rules exist.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Range;

use crate::error::{CompileError, PolicyError, PolicyWarning};
use crate::index::{
    AutomatonLimits, IpIndex, PortIndex, StringIndex, StringIndexBuilder, TemplateScratch,
    ValueSetId,
};
use crate::model::{parse_policies, Action, Attribute, Clause, Field, Matcher, Policy, Rule};
use crate::path::PathNormalization;
use crate::pattern::{IpBlock, PathPattern, StringPattern};

/// The workload a proxy protects: it selects which policies apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// Kubernetes namespace; `None` outside a mesh, where every policy applies.
    pub namespace: Option<String>,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
}

/// Resource limits, checked at compile time so that no request is ever slowed by a large
/// configuration; the two request limits (`max_path_bytes`, `max_header_bytes`) bound the
/// work one request can cause and refuse, never truncate, what exceeds them.
///
/// `SECURITY.md` explains each default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of policies.
    pub max_policies: usize,
    /// Maximum number of rules over all policies.
    pub max_rules: usize,
    /// Maximum terms one rule expands into (`from` entries × `to` entries).
    pub max_terms_per_rule: usize,
    /// Maximum terms over all rules: what the compiled set's size grows with.
    pub max_terms: usize,
    /// Maximum distinct values (patterns) per attribute.
    pub max_values_per_attribute: usize,
    /// Maximum size of one attribute's path-template trie, in bytes.
    pub max_automaton_bytes: usize,
    /// Maximum path length examined; longer paths are rejected.
    pub max_path_bytes: usize,
    /// Maximum bytes of header values examined per request: the values of every header a
    /// rule reads, summed. A request over it is refused (HTTP 431) whatever the policies
    /// say, because matching only part of a header could skip the part a DENY rule matches.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_policies: 10_000,
            max_rules: 50_000,
            max_terms_per_rule: 256,
            // Ten per rule at the maximum number of rules; 2 million terms (8,000 rules of
            // 16 × 16) took 700 MB to compile.
            max_terms: 500_000,
            max_values_per_attribute: 100_000,
            max_automaton_bytes: 16 << 20,
            max_path_bytes: 8192,
            // Envoy refuses requests whose headers exceed 60 KiB unless configured
            // otherwise, so by default this never refuses what Envoy lets through; it bounds
            // the work when Envoy's limit is raised (up to 8 MiB).
            max_header_bytes: 64 << 10,
        }
    }
}

/// How policies are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The protected workload.
    pub workload: Workload,
    /// Policies in this namespace apply to every workload (Istio's root namespace).
    pub root_namespace: String,
    /// The mesh's trust domain; with `trust_domain_aliases`, principals written with any of
    /// these names match all of them.
    pub trust_domain: Option<String>,
    /// Other names of the trust domain (Istio's `trustDomainAliases`).
    pub trust_domain_aliases: Vec<String>,
    /// Request path normalization.
    pub path_normalization: PathNormalization,
    /// Whether Envoy's connection manager sets `use_remote_address: true`. Otherwise (what
    /// istiod sets on a sidecar's inbound listener) Envoy moves `source.address` to the
    /// rightmost `x-forwarded-for` entry, so a proxy filter cannot see the connection's
    /// peer when that header is present: a request carrying it is refused when the
    /// policies read `source.ip` (Istio's `direct_remote_ip`).
    pub use_remote_address: bool,
    /// Resource limits.
    pub limits: Limits,
    /// Keep what [`PolicySet::explain`] and [`PolicySet::policies`] read (true by
    /// default): the validated policies and each rule's per-field value sets, which the
    /// decisions never read. A proxy that only evaluates turns it off, and the compiled set
    /// then holds only what decides (at 10,000 rules the validated policies are about
    /// three times the rest); each rule is dropped as soon as it is compiled, so they are
    /// never all held next to the indexes either. Without it, `policies()` is empty and
    /// an explanation lists no rule outcomes; decisions are the same.
    pub explain: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workload: Workload::default(),
            root_namespace: "istio-system".to_string(),
            trust_domain: None,
            trust_domain_aliases: Vec::new(),
            path_normalization: PathNormalization::default(),
            use_remote_address: false,
            limits: Limits::default(),
            explain: true,
        }
    }
}

/// Which request attributes a compiled set reads, so a proxy fetches nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// The peer identity (principals, namespaces, service accounts, trust domains).
    pub peer_identity: bool,
    /// `source.address`.
    pub source_ip: bool,
    /// Rules read the connection's peer address (`source.ip`, `ipBlocks`), which
    /// `source.address` stops being once `x-forwarded-for` moved it (see
    /// [`Options::use_remote_address`]).
    pub peer_ip: bool,
    /// `remote.ip`.
    pub remote_ip: bool,
    /// `destination.ip`.
    pub destination_ip: bool,
    /// `destination.port`.
    pub destination_port: bool,
    /// SNI.
    pub sni: bool,
    /// `:method`.
    pub method: bool,
    /// `:path` (always read when normalization can reject it).
    pub path: bool,
    /// `:authority`.
    pub host: bool,
    /// Lowercase names of the headers read.
    pub headers: Vec<String>,
    /// JWT claims.
    pub claims: bool,
}

/// How a rule takes part in decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRole {
    /// The policy's action.
    pub action: Action,
    /// Whether the policy is dry-run (evaluated in shadow).
    pub dry_run: bool,
}

/// A compiled rule's identity.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    /// `ns[<ns>]-policy[<name>]-rule[<index>]`.
    pub id: String,
    /// Position of the policy in the input list.
    pub policy_index: usize,
    /// `namespace/name` of the policy.
    pub policy: String,
    /// Index of the rule within the policy.
    pub rule_index: usize,
    /// Action and dry-run flag.
    pub role: RuleRole,
}

/// One conjunction: every positive value set matched and no negative one.
#[derive(Debug, Clone)]
pub(crate) struct Term {
    pub(crate) rule: u32,
    pub(crate) positive: Range<u32>,
    pub(crate) negative: Range<u32>,
}

/// The index behind one attribute.
#[derive(Debug)]
pub(crate) enum AttributeIndex {
    Str(alloc::boxed::Box<StringIndex>),
    Ip(IpIndex),
    Port(PortIndex),
    /// `requestPrincipals`: each distinct value as istiod splits it into matchers for the
    /// token's `iss` and `sub`, scanned in turn (the values are few).
    IssuerSubject(Vec<(StringPattern, StringPattern, Vec<ValueSetId>)>),
}

/// An attribute the set reads, with its index.
#[derive(Debug)]
pub(crate) struct CompiledAttribute {
    pub(crate) attribute: Attribute,
    pub(crate) index: AttributeIndex,
}

/// An immutable, compiled set of policies for one workload. Build once with
/// [`PolicySet::compile`], evaluate many times with [`PolicySet::evaluate`].
#[derive(Debug)]
pub struct PolicySet {
    pub(crate) id: u32,
    pub(crate) options: Options,
    pub(crate) rules: Vec<RuleInfo>,
    /// Number of distinct value sets (one field's values on one attribute).
    pub(crate) value_set_count: usize,
    pub(crate) attributes: Vec<CompiledAttribute>,
    pub(crate) terms: Vec<Term>,
    /// Flattened value set ids referenced by terms.
    pub(crate) term_value_sets: Vec<ValueSetId>,
    /// Per value set: the range of `trigger_terms` it triggers.
    pub(crate) triggers: Vec<Range<u32>>,
    pub(crate) trigger_terms: Vec<u32>,
    /// Terms with no positive value set: checked on every request.
    pub(crate) always_terms: Vec<u32>,
    pub(crate) has_allow: bool,
    pub(crate) has_dry_allow: bool,
    pub(crate) has_dry_run: bool,
    pub(crate) needs: Needs,
    /// `x-forwarded-for` is in `needs.headers` only for the peer-address check.
    pub(crate) forwarded_for_presence_only: bool,
    pub(crate) warnings: Vec<PolicyWarning>,
    pub(crate) policies: Vec<Policy>,
    /// Per rule: its policy's position in `policies`, and each field's value set (see
    /// [`crate::explain`]).
    pub(crate) rule_fields: Vec<(u32, Vec<ValueSetId>)>,
}

fn next_set_id() -> u32 {
    use core::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[derive(Default)]
struct AttributeValues {
    /// Distinct matcher → its position in `ids`.
    matchers: BTreeMap<Matcher, u32>,
    /// Per matcher, by position: the value sets containing it.
    ids: Vec<Vec<ValueSetId>>,
    /// Deduplication of this attribute's value sets: the sorted positions of their
    /// matchers → id (positions, not matcher clones: at 10,000 rules a map keyed by the
    /// matchers themselves was half of the compile's peak).
    sets: BTreeMap<Box<[u32]>, ValueSetId>,
}

impl AttributeValues {
    /// The distinct matchers in order, each with the value sets containing it.
    fn into_pairs(self) -> impl Iterator<Item = (Matcher, Vec<ValueSetId>)> {
        let mut ids = self.ids;
        self.matchers.into_iter().map(move |(matcher, position)| {
            let sets = ids
                .get_mut(position as usize)
                .map(core::mem::take)
                .unwrap_or_default();
            (matcher, sets)
        })
    }
}

impl PolicySet {
    /// Parses, validates and compiles policies (JSON values of AuthorizationPolicy
    /// objects). Only the policies that apply to `options.workload` are kept. Every error
    /// is reported.
    pub fn compile(
        policies: &[serde_json::Value],
        options: Options,
    ) -> Result<PolicySet, CompileError> {
        // Counted on the JSON first, so that an oversized configuration is refused before
        // its policies are validated into memory.
        let rule_count = policies
            .iter()
            .filter_map(|policy| policy.get("spec")?.get("rules")?.as_array())
            .map(Vec::len)
            .sum();
        if let Some(error) = size_error(policies.len(), rule_count, &options.limits) {
            return Err(error);
        }
        let (parsed, warnings, errors) = parse_policies(policies);
        if !errors.is_empty() {
            return Err(CompileError { errors });
        }
        Self::from_policies(parsed, warnings, options)
    }

    /// Compiles what [`crate::model::stream::PolicyList`] read: refused with the same
    /// errors as [`PolicySet::compile`] on the same list (too many policies or rules, or
    /// every validation error), compiled otherwise.
    pub fn compile_read(
        read: crate::model::stream::ReadPolicies,
        options: Options,
    ) -> Result<PolicySet, CompileError> {
        if let Some(error) = size_error(read.policy_count, read.rule_count, &options.limits) {
            return Err(error);
        }
        if !read.errors.is_empty() {
            return Err(CompileError {
                errors: read.errors,
            });
        }
        Self::from_policies(read.policies, read.warnings, options)
    }

    /// Compiles already validated policies.
    pub fn from_policies(
        policies: Vec<Policy>,
        warnings: Vec<PolicyWarning>,
        options: Options,
    ) -> Result<PolicySet, CompileError> {
        let limit_error = |message: String| CompileError {
            errors: alloc::vec![PolicyError {
                index: 0,
                policy: "*".to_string(),
                field: String::new(),
                message
            }],
        };
        let rule_count: usize = policies.iter().map(|policy| policy.rules.len()).sum();
        if let Some(error) = size_error(policies.len(), rule_count, &options.limits) {
            return Err(error);
        }
        let mut applied: Vec<Policy> = policies
            .into_iter()
            .filter(|policy| {
                !policy.targets_gateway
                    && policy.applies_to(
                        options.workload.namespace.as_deref(),
                        &options.workload.labels,
                        &options.root_namespace,
                    )
            })
            .collect();

        let mut builder = Builder::new(&options);
        let mut errors = Vec::new();
        let mut term_count = 0usize;
        for (position, policy) in applied.iter_mut().enumerate() {
            let mut rules = core::mem::take(&mut policy.rules);
            for (rule_index, slot) in rules.iter_mut().enumerate() {
                // Without `explain`, each rule is taken out and dropped once compiled.
                let owned;
                let rule: &Rule = if options.explain {
                    slot
                } else {
                    owned = core::mem::take(slot);
                    &owned
                };
                let rule_id = builder.rules.len() as u32;
                builder.rules.push(RuleInfo {
                    id: policy.rule_id(rule_index),
                    policy_index: policy.index,
                    policy: policy.qualified_name(),
                    rule_index,
                    role: RuleRole {
                        action: policy.action,
                        dry_run: policy.dry_run,
                    },
                });
                let from: Vec<Option<&Clause>> = if rule.from.is_empty() {
                    alloc::vec![None]
                } else {
                    rule.from.iter().map(Some).collect()
                };
                let to: Vec<Option<&Clause>> = if rule.to.is_empty() {
                    alloc::vec![None]
                } else {
                    rule.to.iter().map(Some).collect()
                };
                if from.len() * to.len() > options.limits.max_terms_per_rule {
                    errors.push(PolicyError {
                        index: policy.index,
                        policy: policy.qualified_name(),
                        field: format!("spec.rules[{rule_index}]"),
                        message: format!(
                            "{} `from` entries × {} `to` entries exceed the limit of {} combinations per rule (limits.max_terms_per_rule): split the rule",
                            from.len(),
                            to.len(),
                            options.limits.max_terms_per_rule
                        ),
                    });
                    continue;
                }
                term_count += from.len() * to.len();
                if term_count > options.limits.max_terms {
                    errors.push(PolicyError {
                        index: policy.index,
                        policy: policy.qualified_name(),
                        field: format!("spec.rules[{rule_index}]"),
                        message: format!(
                            "the rules up to this one expand into {term_count} `from` × `to` combinations, more than the limit of {} (limits.max_terms)",
                            options.limits.max_terms
                        ),
                    });
                    return Err(CompileError { errors });
                }
                for source in &from {
                    for operation in &to {
                        let fields = source
                            .iter()
                            .chain(operation.iter())
                            .flat_map(|clause| clause.fields.iter())
                            .chain(rule.when.iter().flat_map(|clause| clause.fields.iter()));
                        builder.add_term(rule_id, fields);
                    }
                }
                // Each field's value set, in `from`, `to`, `when` order, so an explanation
                // reads per-field outcomes off the same stamps `evaluate` sets.
                if options.explain {
                    let field_sets = rule
                        .from
                        .iter()
                        .chain(&rule.to)
                        .chain(&rule.when)
                        .flat_map(|clause| clause.fields.iter())
                        .map(|field| builder.value_set(field))
                        .collect();
                    builder.rule_fields.push((position as u32, field_sets));
                }
            }
            if options.explain {
                policy.rules = rules;
            }
        }
        if !errors.is_empty() {
            return Err(CompileError { errors });
        }
        builder
            .finish(applied, warnings, options)
            .map_err(limit_error)
    }

    /// Warnings found while compiling (skipped policies, literal `*`).
    pub fn warnings(&self) -> &[PolicyWarning] {
        &self.warnings
    }

    /// The request attributes this set reads.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    /// The compiled rules, in decision order.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// The policies that apply to the workload, as validated (none when compiled without
    /// [`Options::explain`]).
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The options the set was compiled with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Scratch memory for [`PolicySet::evaluate`]; keep one per thread and reuse it.
    pub fn new_scratch(&self) -> crate::evaluate::Scratch {
        crate::evaluate::Scratch::for_set(self)
    }

    pub(crate) fn template_scratches(&self) -> Vec<Option<TemplateScratch>> {
        self.attributes
            .iter()
            .map(|attribute| match &attribute.index {
                AttributeIndex::Str(index) => index.template_scratch(),
                _ => None,
            })
            .collect()
    }
}

struct Builder {
    /// The mesh's trust domain followed by its aliases.
    trust_domain_names: Vec<String>,
    rules: Vec<RuleInfo>,
    /// Attribute → its distinct matchers and the value sets containing each.
    attributes: BTreeMap<Attribute, AttributeValues>,
    /// Number of distinct value sets so far (the next id).
    value_set_count: usize,
    /// Per term: rule, positive ids, negative ids.
    terms: Vec<(u32, Vec<ValueSetId>, Vec<ValueSetId>)>,
    /// Per rule: its policy's position among the applied policies, and the value set of
    /// each of its fields.
    rule_fields: Vec<(u32, Vec<ValueSetId>)>,
}

impl Builder {
    fn new(options: &Options) -> Self {
        Builder {
            trust_domain_names: crate::identity::trust_domain_bundle(
                options.trust_domain.as_deref(),
                &options.trust_domain_aliases,
            ),
            rules: Vec::new(),
            attributes: BTreeMap::new(),
            value_set_count: 0,
            terms: Vec::new(),
            rule_fields: Vec::new(),
        }
    }

    fn add_term<'f>(&mut self, rule: u32, fields: impl Iterator<Item = &'f Field>) {
        let mut positive = Vec::new();
        let mut negative = Vec::new();
        for field in fields {
            let id = self.value_set(field);
            if field.negated {
                negative.push(id);
            } else {
                positive.push(id);
            }
        }
        positive.sort_unstable();
        positive.dedup();
        negative.sort_unstable();
        negative.dedup();
        self.terms.push((rule, positive, negative));
    }

    fn value_set(&mut self, field: &Field) -> ValueSetId {
        let mut matchers: Vec<Matcher> = field
            .values
            .iter()
            .flat_map(|matcher| self.expand_aliases(&field.attribute, matcher))
            .collect();
        matchers.sort();
        matchers.dedup();
        let values = self.attributes.entry(field.attribute.clone()).or_default();
        // A value set is its attribute and its set of matchers, so equal sets of matcher
        // positions are the same value set.
        let mut positions = Vec::with_capacity(matchers.len());
        for matcher in matchers {
            let next = values.ids.len() as u32;
            let position = *values.matchers.entry(matcher).or_insert(next);
            if position == next {
                values.ids.push(Vec::new());
            }
            positions.push(position);
        }
        positions.sort_unstable();
        let key: Box<[u32]> = positions.into_boxed_slice();
        if let Some(id) = values.sets.get(&key) {
            return *id;
        }
        let id = self.value_set_count as ValueSetId;
        self.value_set_count += 1;
        for position in key.iter() {
            if let Some(sets) = values.ids.get_mut(*position as usize) {
                sets.push(id);
            }
        }
        values.sets.insert(key, id);
        id
    }

    /// istiod's trust domain rewriting: a principal written with `cluster.local`, the
    /// mesh's trust domain or an alias stands for the same principal under each of them;
    /// a trust domain equal to one of them stands for all of them.
    fn expand_aliases(&self, attribute: &Attribute, matcher: &Matcher) -> Vec<Matcher> {
        let Matcher::Str(pattern) = matcher else {
            return alloc::vec![matcher.clone()];
        };
        let texts = match attribute {
            Attribute::Principal => crate::identity::principal_with_aliases(
                &pattern.to_istio(),
                &self.trust_domain_names,
            ),
            Attribute::TrustDomain => crate::identity::trust_domain_with_aliases(
                &pattern.to_istio(),
                &self.trust_domain_names,
            ),
            _ => return alloc::vec![matcher.clone()],
        };
        texts
            .iter()
            .map(|text| Matcher::Str(StringPattern::parse(text)))
            .collect()
    }

    fn finish(
        mut self,
        policies: Vec<Policy>,
        warnings: Vec<PolicyWarning>,
        options: Options,
    ) -> Result<PolicySet, String> {
        // Only compiling needs the deduplication maps: freed before the indexes are built
        // beside the rest.
        let value_set_count = self.value_set_count;
        for values in self.attributes.values_mut() {
            values.sets = BTreeMap::new();
        }
        let limits = AutomatonLimits {
            template_bytes: options.limits.max_automaton_bytes,
        };
        let mut needs = Needs {
            path: true,
            ..Needs::default()
        };
        let mut attributes = Vec::with_capacity(self.attributes.len());
        for (attribute, values) in self.attributes {
            if values.matchers.len() > options.limits.max_values_per_attribute {
                return Err(format!(
                    "{} distinct values for {attribute:?} exceed the limit of {} (limits.max_values_per_attribute)",
                    values.matchers.len(),
                    options.limits.max_values_per_attribute
                ));
            }
            note_need(&mut needs, &attribute);
            let index = build_index(&attribute, values, limits)?;
            attributes.push(CompiledAttribute { attribute, index });
        }
        // The peer-address check reads `x-forwarded-for` only for its presence: fetched, but
        // not counted against `max_header_bytes` unless a rule reads it too.
        let forwarded_for_presence_only = needs.peer_ip
            && !options.use_remote_address
            && !needs.headers.iter().any(|name| name == FORWARDED_FOR);
        if forwarded_for_presence_only {
            needs.headers.push(FORWARDED_FOR.to_string());
        }

        // How many terms use each value set positively: the rarest is the best trigger.
        let mut popularity = alloc::vec![0u32; value_set_count];
        for (_, positive, _) in &self.terms {
            for id in positive {
                if let Some(count) = popularity.get_mut(*id as usize) {
                    *count += 1;
                }
            }
        }
        let mut triggered: Vec<Vec<u32>> = alloc::vec![Vec::new(); value_set_count];
        let mut always_terms = Vec::new();
        let mut terms = Vec::with_capacity(self.terms.len());
        let mut term_value_sets = Vec::new();
        for (term_id, (rule, positive, negative)) in self.terms.into_iter().enumerate() {
            let trigger = positive.iter().min_by_key(|id| {
                (
                    popularity.get(**id as usize).copied().unwrap_or(u32::MAX),
                    **id,
                )
            });
            match trigger.and_then(|id| triggered.get_mut(*id as usize)) {
                Some(list) => list.push(term_id as u32),
                None => always_terms.push(term_id as u32),
            }
            let start = term_value_sets.len() as u32;
            term_value_sets.extend_from_slice(&positive);
            let middle = term_value_sets.len() as u32;
            term_value_sets.extend_from_slice(&negative);
            let end = term_value_sets.len() as u32;
            terms.push(Term {
                rule,
                positive: start..middle,
                negative: middle..end,
            });
        }
        let mut triggers = Vec::with_capacity(triggered.len());
        let mut trigger_terms = Vec::new();
        for list in triggered {
            let start = trigger_terms.len() as u32;
            trigger_terms.extend(list);
            triggers.push(start..trigger_terms.len() as u32);
        }
        let has_allow = policies
            .iter()
            .any(|p| p.action == Action::Allow && !p.dry_run);
        let has_dry_allow = policies
            .iter()
            .any(|p| p.action == Action::Allow && p.dry_run);
        let has_dry_run = policies.iter().any(|p| p.dry_run);
        let policies = if options.explain {
            policies
        } else {
            Vec::new()
        };
        let mut rules = self.rules;
        rules.shrink_to_fit();
        term_value_sets.shrink_to_fit();
        trigger_terms.shrink_to_fit();
        always_terms.shrink_to_fit();
        Ok(PolicySet {
            id: next_set_id(),
            options,
            rules,
            value_set_count,
            attributes,
            terms,
            term_value_sets,
            triggers,
            trigger_terms,
            always_terms,
            has_allow,
            has_dry_allow,
            has_dry_run,
            needs,
            forwarded_for_presence_only,
            warnings,
            policies,
            rule_fields: self.rule_fields,
        })
    }
}

/// The error for too many policies or rules, if any.
fn size_error(policies: usize, rules: usize, limits: &Limits) -> Option<CompileError> {
    let message = if policies > limits.max_policies {
        format!(
            "{policies} policies exceed the limit of {} (limits.max_policies)",
            limits.max_policies
        )
    } else if rules > limits.max_rules {
        format!(
            "{rules} rules exceed the limit of {} (limits.max_rules)",
            limits.max_rules
        )
    } else {
        return None;
    };
    Some(CompileError {
        errors: alloc::vec![PolicyError {
            index: 0,
            policy: "*".to_string(),
            field: String::new(),
            message,
        }],
    })
}

/// The header whose presence means `source.address` may not be the connection's peer.
pub(crate) const FORWARDED_FOR: &str = "x-forwarded-for";

fn note_need(needs: &mut Needs, attribute: &Attribute) {
    match attribute {
        Attribute::Principal
        | Attribute::Namespace
        | Attribute::ServiceAccount
        | Attribute::TrustDomain => needs.peer_identity = true,
        Attribute::RequestPrincipal
        | Attribute::Audience
        | Attribute::Presenter
        | Attribute::Claim(_) => needs.claims = true,
        Attribute::SourceIp => {
            needs.source_ip = true;
            needs.peer_ip = true;
        }
        Attribute::RemoteIp => {
            needs.remote_ip = true;
            needs.source_ip = true;
        }
        Attribute::DestinationIp => needs.destination_ip = true,
        Attribute::DestinationPort => needs.destination_port = true,
        Attribute::Host => needs.host = true,
        Attribute::Method => needs.method = true,
        Attribute::Path => needs.path = true,
        Attribute::Header(name) => needs.headers.push(name.clone()),
        Attribute::Sni => needs.sni = true,
    }
}

fn build_index(
    attribute: &Attribute,
    values: AttributeValues,
    limits: AutomatonLimits,
) -> Result<AttributeIndex, String> {
    match attribute {
        Attribute::SourceIp | Attribute::RemoteIp | Attribute::DestinationIp => {
            let blocks: Vec<(IpBlock, Vec<ValueSetId>)> = values
                .into_pairs()
                .filter_map(|(matcher, ids)| match matcher {
                    Matcher::Ip(block) => Some((block, ids)),
                    _ => None,
                })
                .collect();
            Ok(AttributeIndex::Ip(IpIndex::build(blocks)))
        }
        Attribute::DestinationPort => {
            let ports = values
                .into_pairs()
                .filter_map(|(matcher, ids)| match matcher {
                    Matcher::Port(port) => Some((port, ids)),
                    _ => None,
                })
                .collect();
            Ok(AttributeIndex::Port(PortIndex::build(ports)))
        }
        Attribute::RequestPrincipal => Ok(AttributeIndex::IssuerSubject(
            values
                .into_pairs()
                .filter_map(|(matcher, ids)| match matcher {
                    Matcher::Str(pattern) => {
                        let (issuer, subject) =
                            crate::identity::request_principal_parts(&pattern.to_istio());
                        Some((issuer, subject, ids))
                    }
                    _ => None,
                })
                .collect(),
        )),
        _ => {
            let mut builder = StringIndexBuilder::default();
            for (matcher, ids) in values.into_pairs() {
                let pattern = match matcher {
                    Matcher::Str(pattern) | Matcher::Path(PathPattern::Plain(pattern)) => pattern,
                    Matcher::Path(PathPattern::Template(segments)) => {
                        builder.templates.push((segments, ids));
                        continue;
                    }
                    Matcher::Ip(_) | Matcher::Port(_) => continue,
                };
                match pattern {
                    StringPattern::Exact(text) => builder.exact.push((text, ids)),
                    StringPattern::Prefix(text) => builder.prefix.push((text, ids)),
                    StringPattern::Suffix(text) => builder.suffix.push((text, ids)),
                    StringPattern::Presence => builder.presence.extend(ids),
                }
            }
            builder.presence.sort_unstable();
            builder.presence.dedup();
            StringIndex::build(builder, attribute.folds_case(), limits)
                .map(|index| AttributeIndex::Str(alloc::boxed::Box::new(index)))
        }
    }
}
