//! `cordon audit`: a policy set held against observed traffic.
//!
//! Every record is decided by the engine as the filter at its destination would decide it
//! (policies compiled per destination workload), and every rule of the applicable policies
//! is matched against it value by value ([`Facts::rule_usage`]). The report:
//!
//! - **stale privileges**: ALLOW policies that select no workload seen in the window, ALLOW
//!   rules no request used, and values (a principal, a path, a method…) of used rules that
//!   no request matched: candidates for removal;
//! - **over-broad grants**, from the policies alone: ALLOW rules without `from`, `*` or
//!   prefix principals, sources that only exclude, whole-namespace and whole-trust-domain
//!   grants, ALLOW rules without `to`, `{**}`, `*` and prefix paths;
//! - **denied requests** grouped by identity and destination: a workload identity refused
//!   at a workload it is never allowed at is a lateral-movement attempt to alert on;
//! - **dry-run policies** that would deny live traffic once enforced.
//!
//! Each finding has a [`Severity`]; `cordon audit --fail-on` turns them into an exit code.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Result};
use cordon_engine::model::{parse_policies, Policy};
use cordon_engine::{
    Action, Decision, Identity, Options, PolicySet, Reason, Scratch, TrafficRecord, Workload,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::discover::{workload_label, Stats};
use super::input::for_each_line;
use super::matcher::{rule_fields, Facts};
use super::templating::{template_path, TemplateOptions};
use super::time::{format_rfc3339, parse_rfc3339, Millis};
use crate::sources::PolicySource;
use cordon_engine::traffic::{read_line, Line};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Tidy up.
    Low,
    /// Fix soon.
    Medium,
    /// Fix or investigate now.
    High,
}

impl Severity {
    /// `info`, `low`, `medium`, `high`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    /// Every severity, most severe first.
    pub const ALL: [Severity; 4] = [
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A verified identity refused at a workload it is never allowed at.
    LateralMovement,
    /// Other refused requests: plaintext or invalid identities, operations outside an
    /// identity's usual ones, paths the normalization rejects.
    Denied,
    /// A grant broader than least privilege.
    OverBroad,
    /// A policy that selects no workload seen in the window.
    StalePolicy,
    /// A rule no request used.
    StaleRule,
    /// A value no request matched.
    StaleValue,
    /// A dry-run policy that would deny live traffic if enforced.
    DryRun,
}

impl Kind {
    /// A stable name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LateralMovement => "lateral-movement",
            Kind::Denied => "denied",
            Kind::OverBroad => "over-broad",
            Kind::StalePolicy => "stale-policy",
            Kind::StaleRule => "stale-rule",
            Kind::StaleValue => "stale-value",
            Kind::DryRun => "dry-run",
        }
    }
}

/// One example of a traffic finding: the first request seen of one operation (or one
/// identity-workload pair), with how many requests it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// `METHOD /templated/path` (or `identity -> workload`), as the text report shows it.
    pub operation: String,
    /// Requests of that operation.
    pub requests: u64,
    /// The first of them, as read.
    pub record: TrafficRecord,
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What kind.
    pub kind: Kind,
    /// `namespace/name` of the policy, when the finding is about one.
    pub policy: Option<String>,
    /// Istio's rule id, when about a rule.
    pub rule: Option<String>,
    /// The field (JSON path in the policy), when about a field or value.
    pub field: Option<String>,
    /// The value, when about one.
    pub value: Option<String>,
    /// File, line and column of the policy text, when known.
    pub location: Option<(String, usize, usize)>,
    /// The identity, for traffic findings.
    pub identity: Option<String>,
    /// The destination workload, for traffic findings.
    pub workload: Option<String>,
    /// Requests concerned, for traffic findings.
    pub requests: Stats,
    /// Examples for people (`METHOD /templated/path ×count`, or pairs, then the refusal
    /// reasons), as the text report shows them.
    pub examples: Vec<String>,
    /// The examples as requests, most frequent first: the JSON report writes their traffic
    /// records.
    pub example_records: Vec<Example>,
    /// Operations beyond those in `example_records`.
    pub more_examples: usize,
    /// Why the requests were refused, with counts (denied findings).
    pub reasons: Vec<(String, u64)>,
    /// What it means.
    pub message: String,
}

impl Finding {
    fn new(severity: Severity, kind: Kind, message: String) -> Finding {
        Finding {
            severity,
            kind,
            policy: None,
            rule: None,
            field: None,
            value: None,
            location: None,
            identity: None,
            workload: None,
            requests: Stats::default(),
            examples: Vec::new(),
            example_records: Vec::new(),
            more_examples: 0,
            reasons: Vec::new(),
            message,
        }
    }

    /// The finding as a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "severity": self.severity.name(),
            "kind": self.kind.name(),
            "policy": self.policy,
            "rule": self.rule,
            "field": self.field,
            "value": self.value,
            "file": self.location.as_ref().map(|(file, _, _)| file),
            "line": self.location.as_ref().map(|(_, line, _)| line),
            "column": self.location.as_ref().map(|(_, _, column)| column),
            "identity": self.identity,
            "workload": self.workload,
            "requests": self.requests.count,
            "first_seen": self.requests.first.map(format_rfc3339),
            "last_seen": self.requests.last.map(format_rfc3339),
            // Traffic records, in the one format every reader reads (`cordon simulate`,
            // `explain`, `discover` take them back), with what each stands for.
            "examples": self.example_records.iter().map(|example| example.record.to_json()).collect::<Vec<_>>(),
            "operations": self.example_records.iter().map(|example| json!({
                "operation": example.operation,
                "requests": example.requests,
            })).collect::<Vec<_>>(),
            "more_operations": self.more_examples,
            "reasons": self.reasons.iter().map(|(reason, count)| json!({
                "reason": reason,
                "requests": count,
            })).collect::<Vec<_>>(),
            "message": self.message,
        })
    }
}

/// How the audit reads traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// Records older than this are ignored (the window); records without a time are kept.
    pub since: Option<Millis>,
    /// Istio's root namespace.
    pub root_namespace: String,
    /// Examples kept per traffic finding.
    pub examples: usize,
    /// The mesh's engine options (`--config`: path normalization, trust domains, limits),
    /// under which requests are judged; `workload` and `root_namespace` are replaced.
    pub engine: Options,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            since: None,
            root_namespace: "istio-system".to_string(),
            examples: 5,
            engine: Options::default(),
        }
    }
}

/// Counts of what was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSummary {
    /// Lines read.
    pub lines: u64,
    /// Traffic records among them.
    pub records: u64,
    /// Record-like lines that could not be read.
    pub unreadable: u64,
    /// Where the first unreadable line is, and why.
    pub first_unreadable: Option<String>,
    /// Records older than the window.
    pub outside_window: u64,
    /// Records judged.
    pub judged: Stats,
    /// Of which allowed.
    pub allowed: u64,
    /// Of which denied (path rejections included).
    pub denied: u64,
    /// Of which rejected by path normalization.
    pub path_rejected: u64,
    /// Allowed requests that dry-run policies would deny.
    pub dry_run_denied: u64,
    /// Policies audited.
    pub policies: usize,
    /// Rules audited.
    pub rules: usize,
}

/// The audit's result.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// What was read.
    pub summary: AuditSummary,
}

struct WorkloadState {
    /// `None` only if compiling failed, which validation and the whole-set compile in
    /// `Audit::build` rule out.
    compiled: Option<(PolicySet, Scratch)>,
    /// Indexes into `Audit::policies` of the policies that apply.
    applicable: Vec<usize>,
    label: String,
}

/// Requests of one operation, and the first of them.
#[derive(Clone)]
struct Seen {
    count: u64,
    first: TrafficRecord,
}

/// Distinct operations kept per group; further ones are not counted.
const MAX_OPERATIONS: usize = 1000;

#[derive(Clone, Default)]
struct Group {
    stats: Stats,
    operations: BTreeMap<String, Seen>,
    reasons: BTreeMap<String, u64>,
    verified: bool,
}

/// The streaming audit.
pub struct Audit {
    options: AuditOptions,
    policies: Vec<Policy>,
    sources: Vec<PolicySource>,
    workloads: BTreeMap<(Option<String>, BTreeMap<String, String>), WorkloadState>,
    /// Per policy: applies to a workload seen in the window.
    seen: Vec<bool>,
    /// Per policy, per rule: requests that used it.
    rule_hits: Vec<Vec<u64>>,
    /// Per policy, per rule, per field (in `rule_fields` order), per value: requests.
    value_hits: Vec<Vec<Vec<Vec<u64>>>>,
    denied: BTreeMap<(String, String), Group>,
    allowed_pairs: HashSet<(String, String)>,
    dry_run: BTreeMap<String, Group>,
    templates: TemplateOptions,
    summary: AuditSummary,
    /// What the counts are indexed by and judged under ([`AuditState::policies`]).
    fingerprint: String,
}

impl Clone for Audit {
    /// A copy of the aggregate; the policies compiled per workload are compiled again as
    /// records arrive (they are a cache of the policies and the options).
    fn clone(&self) -> Audit {
        Audit {
            options: self.options.clone(),
            policies: self.policies.clone(),
            sources: self.sources.clone(),
            workloads: BTreeMap::new(),
            seen: self.seen.clone(),
            rule_hits: self.rule_hits.clone(),
            value_hits: self.value_hits.clone(),
            denied: self.denied.clone(),
            allowed_pairs: self.allowed_pairs.clone(),
            dry_run: self.dry_run.clone(),
            templates: self.templates.clone(),
            summary: self.summary.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

impl Audit {
    /// An audit of policies read from files (findings point into them).
    pub fn from_sources(sources: Vec<PolicySource>, options: AuditOptions) -> Result<Audit> {
        let values: Vec<Value> = sources.iter().map(|source| source.value.clone()).collect();
        Audit::build(&values, sources, options)
    }

    /// An audit of policies given as JSON values.
    pub fn from_values(values: &[Value], options: AuditOptions) -> Result<Audit> {
        Audit::build(values, Vec::new(), options)
    }

    fn build(values: &[Value], sources: Vec<PolicySource>, options: AuditOptions) -> Result<Audit> {
        let (policies, _, errors) = parse_policies(values);
        if !errors.is_empty() {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            bail!("invalid policies:\n  {}", lines.join("\n  "));
        }
        // Every policy at once (no workload): what compiles here compiles for any subset.
        if let Err(error) =
            PolicySet::from_policies(policies.clone(), Vec::new(), Options::default())
        {
            bail!("the policies do not compile: {error}");
        }
        let rule_hits = policies.iter().map(|p| vec![0; p.rules.len()]).collect();
        let value_hits = policies
            .iter()
            .map(|policy| {
                policy
                    .rules
                    .iter()
                    .map(|rule| rule_fields(rule).map(|f| vec![0; f.values.len()]).collect())
                    .collect()
            })
            .collect();
        let summary = AuditSummary {
            policies: policies.len(),
            rules: policies.iter().map(|p| p.rules.len()).sum(),
            ..AuditSummary::default()
        };
        let fingerprint = fingerprint(values, &options);
        Ok(Audit {
            seen: vec![false; policies.len()],
            options,
            policies,
            sources,
            workloads: BTreeMap::new(),
            rule_hits,
            value_hits,
            denied: BTreeMap::new(),
            allowed_pairs: HashSet::new(),
            dry_run: BTreeMap::new(),
            templates: TemplateOptions::default(),
            summary,
            fingerprint,
        })
    }

    /// Reads every line of the files (`-`: standard input).
    pub fn read_files(&mut self, paths: &[PathBuf]) -> std::io::Result<()> {
        for_each_line(paths, |path, number, line| {
            if let Err(error) = self.add_line(line) {
                if self.summary.first_unreadable.is_none() {
                    self.summary.first_unreadable =
                        Some(format!("{}:{number}: {error}", path.display()));
                }
            }
            Ok::<(), std::io::Error>(())
        })
    }

    /// Reads one line (the engine's classification: a record, a log line carrying one, an
    /// ordinary log line, nothing) and judges its record. `Err`: the line is bad, and why.
    pub fn add_line(&mut self, line: &[u8]) -> Result<Line<()>, String> {
        self.summary.lines += 1;
        match read_line(line) {
            Ok(read) => Ok(read.try_map(|record| {
                self.add_record(&record);
                Ok::<(), String>(())
            })?),
            Err(error) => {
                self.summary.unreadable += 1;
                Err(error)
            }
        }
    }

    /// What was read so far (for progress reports).
    pub fn summary(&self) -> &AuditSummary {
        &self.summary
    }

    /// Judges one record.
    pub fn add_record(&mut self, record: &TrafficRecord) {
        self.summary.records += 1;
        let time = record.time.as_deref().and_then(parse_rfc3339);
        if let (Some(time), Some(since)) = (time, self.options.since) {
            if time < since {
                self.summary.outside_window += 1;
                return;
            }
        }
        self.summary.judged.add(time);
        let key = (
            record.destination_namespace.clone(),
            record.destination_labels.clone(),
        );
        if !self.workloads.contains_key(&key) {
            let state = self.workload_state(&key.0, &key.1);
            for index in &state.applicable {
                if let Some(seen) = self.seen.get_mut(*index) {
                    *seen = true;
                }
            }
            self.workloads.insert(key.clone(), state);
        }
        let Some(state) = self.workloads.get_mut(&key) else {
            return;
        };
        let Some((set, scratch)) = state.compiled.as_mut() else {
            return;
        };
        let decision = set.evaluate(&record.request(), scratch);
        let set = &*set;
        let facts = Facts::with_normalization(record, self.options.engine.path_normalization);
        let identity = identity_label(record, &decision);
        let workload = state.label.clone();
        let denied_by_policy = decision.reason == Reason::DeniedByPolicy;
        // Requests refused before any rule (a rejected path, too many header bytes) use none.
        let applicable: &[usize] = if decision.reason.rules_evaluated() {
            &state.applicable
        } else {
            &[]
        };
        for index in applicable {
            let Some(policy) = self.policies.get(*index) else {
                continue;
            };
            for (rule_index, rule) in policy.rules.iter().enumerate() {
                let counts = self
                    .value_hits
                    .get_mut(*index)
                    .and_then(|rules| rules.get_mut(rule_index));
                let mut marks: Vec<(usize, usize)> = Vec::new();
                let matched = facts.rule_usage(rule, |field, value| marks.push((field, value)));
                // An ALLOW rule grants nothing to a request an enforced DENY rule refuses.
                if !matched || (policy.action == Action::Allow && denied_by_policy) {
                    continue;
                }
                if let Some(hits) = self
                    .rule_hits
                    .get_mut(*index)
                    .and_then(|rules| rules.get_mut(rule_index))
                {
                    *hits += 1;
                }
                if let Some(counts) = counts {
                    for (field, value) in marks {
                        if let Some(count) = counts.get_mut(field).and_then(|f| f.get_mut(value)) {
                            *count += 1;
                        }
                    }
                }
            }
        }
        let operation = operation_label(record, &facts, &self.templates);
        if decision.allowed {
            self.summary.allowed += 1;
            self.allowed_pairs
                .insert((identity.clone(), workload.clone()));
            if !decision.dry_run.allowed {
                self.summary.dry_run_denied += 1;
                let rule = decision.dry_run.rule.map_or_else(
                    || "(no dry-run ALLOW rule matches)".to_string(),
                    |rule| set.rule_id(rule).to_string(),
                );
                let group = self.dry_run.entry(rule).or_default();
                group.stats.add(time);
                group.count(format!("{identity} -> {workload}"), record);
            }
            return;
        }
        self.summary.denied += 1;
        let reason = match decision.reason {
            Reason::PathRejected(rejection) => {
                self.summary.path_rejected += 1;
                format!("path rejected: {rejection}")
            }
            Reason::DeniedByPolicy | Reason::NoAllowMatch => decision.policy.map_or_else(
                || "no ALLOW rule matches".to_string(),
                |rule| format!("denied by {}", set.rule_id(rule)),
            ),
            other => format!("refused: {}", other.name()),
        };
        let group = self.denied.entry((identity, workload)).or_default();
        group.stats.add(time);
        group.verified = decision.identity == Identity::Verified;
        *group.reasons.entry(reason).or_default() += 1;
        group.count(operation, record);
    }

    fn workload_state(
        &self,
        namespace: &Option<String>,
        labels: &BTreeMap<String, String>,
    ) -> WorkloadState {
        let options = Options {
            workload: Workload {
                namespace: namespace.clone(),
                labels: labels.clone(),
            },
            root_namespace: self.options.root_namespace.clone(),
            ..self.options.engine.clone()
        };
        let applicable: Vec<usize> = self
            .policies
            .iter()
            .enumerate()
            .filter(|(_, policy)| {
                !policy.targets_gateway
                    && policy.applies_to(namespace.as_deref(), labels, &self.options.root_namespace)
            })
            .map(|(index, _)| index)
            .collect();
        let compiled = PolicySet::from_policies(self.policies.clone(), Vec::new(), options)
            .ok()
            .map(|set| {
                let scratch = set.new_scratch();
                (set, scratch)
            });
        let label = match namespace {
            Some(namespace) => {
                let app = labels
                    .get("app")
                    .map(|app| BTreeMap::from([("app".to_string(), app.clone())]));
                workload_label(namespace, app.as_ref().unwrap_or(labels))
            }
            None => "(no destination)".to_string(),
        };
        WorkloadState {
            compiled,
            applicable,
            label,
        }
    }

    fn locate(&self, policy: &Policy, field: &str) -> Option<(String, usize, usize)> {
        let source = self.sources.get(policy.index)?;
        let (line, column) = source.locate(field);
        Some((source.file.display().to_string(), line, column))
    }

    /// Every finding, most severe first.
    pub fn finish(self) -> AuditReport {
        let mut findings = Vec::new();
        for policy in &self.policies {
            self.over_broad(policy, &mut findings);
        }
        self.stale(&mut findings);
        for ((identity, workload), group) in &self.denied {
            findings.push(self.denied_finding(identity, workload, group));
        }
        for (rule, group) in &self.dry_run {
            let mut finding = Finding::new(
                Severity::Medium,
                Kind::DryRun,
                format!(
                    "dry-run rule {rule} would deny {} live request{} if enforced",
                    group.stats.count,
                    if group.stats.count == 1 { "" } else { "s" }
                ),
            );
            finding.rule = Some(rule.clone());
            finding.requests = group.stats;
            group.examples(&mut finding, self.options.examples);
            findings.push(finding);
        }
        findings.sort_by(|a, b| {
            (
                std::cmp::Reverse(a.severity),
                a.kind,
                &a.location,
                &a.policy,
                &a.rule,
                &a.identity,
                &a.workload,
                &a.message,
            )
                .cmp(&(
                    std::cmp::Reverse(b.severity),
                    b.kind,
                    &b.location,
                    &b.policy,
                    &b.rule,
                    &b.identity,
                    &b.workload,
                    &b.message,
                ))
        });
        AuditReport {
            findings,
            summary: self.summary,
        }
    }

    fn denied_finding(&self, identity: &str, workload: &str, group: &Group) -> Finding {
        let ever_allowed = self
            .allowed_pairs
            .contains(&(identity.to_string(), workload.to_string()));
        let plural = if group.stats.count == 1 { "" } else { "s" };
        let (severity, kind, message) = if group.verified && !ever_allowed {
            (
                Severity::High,
                Kind::LateralMovement,
                format!(
                    "{identity} -> {workload}: {} request{plural} denied, none ever allowed: an identity reaching for a workload it has no business with",
                    group.stats.count
                ),
            )
        } else if group.verified {
            (
                Severity::Medium,
                Kind::Denied,
                format!(
                    "{identity} -> {workload}: {} request{plural} denied outside the operations it is allowed",
                    group.stats.count
                ),
            )
        } else {
            (
                Severity::Medium,
                Kind::Denied,
                format!(
                    "{identity} -> {workload}: {} request{plural} denied without a verified identity",
                    group.stats.count
                ),
            )
        };
        let mut finding = Finding::new(severity, kind, message);
        finding.identity = Some(identity.to_string());
        finding.workload = Some(workload.to_string());
        finding.requests = group.stats;
        group.examples(&mut finding, self.options.examples);
        for (reason, count) in &group.reasons {
            finding.examples.push(format!("{reason} ×{count}"));
            finding.reasons.push((reason.clone(), *count));
        }
        finding
    }

    fn stale(&self, findings: &mut Vec<Finding>) {
        let observed = self.summary.judged.count > 0;
        for (index, policy) in self.policies.iter().enumerate() {
            if policy.targets_gateway {
                continue;
            }
            let base = |severity: Severity, kind: Kind, message: String| {
                let mut finding = Finding::new(severity, kind, message);
                finding.policy = Some(policy.qualified_name());
                finding
            };
            if !self.seen.get(index).copied().unwrap_or(false) {
                let severity = match (policy.action, observed) {
                    (Action::Allow, true) => Severity::Medium,
                    _ => Severity::Info,
                };
                let mut finding = base(
                    severity,
                    Kind::StalePolicy,
                    format!(
                        "{} policy `{}` selects no workload that received traffic in the window: remove it, or check its selector",
                        policy.action.name(),
                        policy.qualified_name()
                    ),
                );
                finding.location = self.locate(policy, "metadata.name");
                findings.push(finding);
                continue;
            }
            for (rule_index, rule) in policy.rules.iter().enumerate() {
                let hits = self
                    .rule_hits
                    .get(index)
                    .and_then(|rules| rules.get(rule_index))
                    .copied()
                    .unwrap_or(0);
                let field_name = format!("spec.rules[{rule_index}]");
                if hits == 0 {
                    let (severity, message) = match (policy.action, policy.dry_run) {
                        (Action::Allow, false) => (
                            Severity::Medium,
                            "ALLOW rule never used in the window: a stale privilege to remove"
                                .to_string(),
                        ),
                        (Action::Allow, true) => (
                            Severity::Low,
                            "dry-run ALLOW rule never matched in the window".to_string(),
                        ),
                        (Action::Deny, _) => (
                            Severity::Info,
                            "DENY rule never triggered in the window (a guardrail nothing has tested)"
                                .to_string(),
                        ),
                        (Action::Audit, _) => (
                            Severity::Info,
                            "AUDIT rule never matched in the window".to_string(),
                        ),
                    };
                    let mut finding = base(severity, Kind::StaleRule, message);
                    finding.rule = Some(policy.rule_id(rule_index));
                    finding.field = Some(field_name.clone());
                    finding.location = self.locate(policy, &field_name);
                    findings.push(finding);
                    continue;
                }
                if policy.action != Action::Allow {
                    continue;
                }
                let counts = self
                    .value_hits
                    .get(index)
                    .and_then(|rules| rules.get(rule_index));
                for (field_index, field) in rule_fields(rule).enumerate() {
                    if field.negated {
                        continue;
                    }
                    for (value_index, matcher) in field.values.iter().enumerate() {
                        let used = counts
                            .and_then(|fields| fields.get(field_index))
                            .and_then(|values| values.get(value_index))
                            .copied()
                            .unwrap_or(0);
                        if used > 0 {
                            continue;
                        }
                        let location = format!("{}[{value_index}]", field.location);
                        let text = matcher.to_istio();
                        let mut finding = base(
                            Severity::Low,
                            Kind::StaleValue,
                            format!(
                                "`{text}` never matched a request this rule allowed in the window: remove it from `{}`",
                                short_field(&field.location)
                            ),
                        );
                        finding.rule = Some(policy.rule_id(rule_index));
                        finding.field = Some(location.clone());
                        finding.value = Some(text);
                        finding.location = self.locate(policy, &location);
                        findings.push(finding);
                    }
                }
            }
        }
    }

    fn over_broad(&self, policy: &Policy, findings: &mut Vec<Finding>) {
        let scope = if policy.namespace == self.options.root_namespace {
            " (root namespace: every workload in the mesh)"
        } else {
            ""
        };
        for broad in cordon_engine::lint::breadth(policy) {
            let severity = match broad.severity {
                cordon_engine::lint::Severity::Low => Severity::Low,
                cordon_engine::lint::Severity::Medium => Severity::Medium,
                cordon_engine::lint::Severity::High => Severity::High,
            };
            let mut finding = Finding::new(
                severity,
                Kind::OverBroad,
                format!("{}{scope}", broad.message),
            );
            finding.policy = Some(policy.qualified_name());
            finding.rule = Some(policy.rule_id(broad.rule));
            finding.location = self.locate(policy, &broad.field);
            finding.field = Some(broad.field);
            finding.value = broad.value;
            findings.push(finding);
        }
    }
}

fn operation_label(
    record: &TrafficRecord,
    facts: &Facts<'_>,
    templates: &TemplateOptions,
) -> String {
    let method = record.method.as_deref().unwrap_or("-");
    match (facts.path(), record.path.as_deref()) {
        (Some(path), _) if path.starts_with('/') => {
            let mut templated = String::new();
            template_path(path, templates, &mut templated);
            format!("{method} {templated}")
        }
        (Some(path), _) => format!("{method} {path}"),
        (None, Some(raw)) => format!("{method} {raw} (rejected)"),
        (None, None) => format!("{method} (no path)"),
    }
}

fn identity_label(record: &TrafficRecord, decision: &Decision) -> String {
    match decision.identity {
        Identity::Verified => record
            .request()
            .peer_identity
            .map(|peer| peer.strip_prefix("spiffe://").unwrap_or(peer).to_string())
            .unwrap_or_default(),
        Identity::None => "(no identity)".to_string(),
        Identity::Invalid(_) => "(invalid identity)".to_string(),
    }
}

/// `principals` from `spec.rules[0].from[0].source.principals`.
fn short_field(location: &str) -> &str {
    location.rsplit('.').next().unwrap_or(location)
}

impl Group {
    /// Counts one request of `operation`, keeping the first as the example (up to
    /// [`MAX_OPERATIONS`] distinct operations).
    fn count(&mut self, operation: String, record: &TrafficRecord) {
        if let Some(seen) = self.operations.get_mut(&operation) {
            seen.count += 1;
        } else if self.operations.len() < MAX_OPERATIONS {
            self.operations.insert(
                operation,
                Seen {
                    count: 1,
                    first: record.clone(),
                },
            );
        }
    }

    /// The `limit` most frequent operations, as text and as records.
    fn examples(&self, finding: &mut Finding, limit: usize) {
        let mut sorted: Vec<(&String, &Seen)> = self.operations.iter().collect();
        sorted.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        for (operation, seen) in sorted.iter().take(limit) {
            finding
                .examples
                .push(format!("{operation} ×{}", seen.count));
            finding.example_records.push(Example {
                operation: operation.to_string(),
                requests: seen.count,
                record: seen.first.clone(),
            });
        }
        finding.more_examples = sorted.len().saturating_sub(limit);
        if finding.more_examples > 0 {
            finding
                .examples
                .push(format!("… {} more", finding.more_examples));
        }
    }
}

/// The format name of a serialized [`Audit`] ([`AuditState::format`]).
pub const AUDIT_STATE_FORMAT: &str = "cordon.audit/1";

/// An [`Audit`]'s counts as data ([`Audit::to_state`], [`Audit::absorb`]): per rule and
/// value the requests that used it, the denied and dry-run groups (each with at most
/// [`MAX_OPERATIONS`] operations), the identity-workload pairs ever allowed, and the
/// summary. Bounded by the policies and the mesh, never by the requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditState {
    /// [`AUDIT_STATE_FORMAT`].
    pub format: String,
    /// A fingerprint of the policies and options the counts belong to: counts only add
    /// up under the same ones.
    pub policies: String,
    seen: Vec<bool>,
    rule_hits: Vec<Vec<u64>>,
    value_hits: Vec<Vec<Vec<Vec<u64>>>>,
    denied: Vec<(String, String, GroupState)>,
    allowed_pairs: Vec<(String, String)>,
    dry_run: Vec<(String, GroupState)>,
    summary: AuditSummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupState {
    stats: Stats,
    /// (operation, requests, the first request as a traffic record)
    operations: Vec<(String, u64, Value)>,
    reasons: BTreeMap<String, u64>,
    verified: bool,
}

/// FNV-1a over the policies' JSON and the options that judge (a stable, dependency-free
/// fingerprint; not a security boundary).
fn fingerprint(values: &[Value], options: &AuditOptions) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    for value in values {
        feed(value.to_string().as_bytes());
    }
    feed(format!("{:?}", options).as_bytes());
    format!("fnv1a64:{hash:016x}")
}

impl Group {
    fn to_state(&self) -> GroupState {
        GroupState {
            stats: self.stats,
            operations: self
                .operations
                .iter()
                .map(|(operation, seen)| (operation.clone(), seen.count, seen.first.to_json()))
                .collect(),
            reasons: self.reasons.clone(),
            verified: self.verified,
        }
    }

    fn absorb(&mut self, state: GroupState) -> std::result::Result<(), String> {
        self.stats.merge(&state.stats);
        for (operation, count, record) in state.operations {
            if let Some(seen) = self.operations.get_mut(&operation) {
                seen.count += count;
            } else if self.operations.len() < MAX_OPERATIONS {
                let first = TrafficRecord::from_json(&record)
                    .map_err(|error| format!("an example of `{operation}`: {error}"))?;
                self.operations.insert(operation, Seen { count, first });
            }
        }
        for (reason, count) in state.reasons {
            *self.reasons.entry(reason).or_default() += count;
        }
        self.verified |= state.verified;
        Ok(())
    }
}

impl Audit {
    /// The counts as data ([`AuditState`]), in a stable order.
    pub fn to_state(&self) -> AuditState {
        let mut allowed_pairs: Vec<(String, String)> = self.allowed_pairs.iter().cloned().collect();
        allowed_pairs.sort_unstable();
        AuditState {
            format: AUDIT_STATE_FORMAT.to_string(),
            policies: self.fingerprint.clone(),
            seen: self.seen.clone(),
            rule_hits: self.rule_hits.clone(),
            value_hits: self.value_hits.clone(),
            denied: self
                .denied
                .iter()
                .map(|((identity, workload), group)| {
                    (identity.clone(), workload.clone(), group.to_state())
                })
                .collect(),
            allowed_pairs,
            dry_run: self
                .dry_run
                .iter()
                .map(|(rule, group)| (rule.clone(), group.to_state()))
                .collect(),
            summary: self.summary.clone(),
        }
    }

    /// Adds counts written by [`Audit::to_state`] (read back after a restart, or another
    /// audit's) to this one, as if their records had been read here. `Err` (a sentence,
    /// nothing added) when they are of another format or belong to other policies or
    /// options.
    pub fn absorb(&mut self, state: AuditState) -> std::result::Result<(), String> {
        if state.format != AUDIT_STATE_FORMAT {
            return Err(format!(
                "audit counts of format `{}`; this cordon reads `{AUDIT_STATE_FORMAT}`",
                state.format
            ));
        }
        let shaped = |mine: &[Vec<Vec<u64>>], theirs: &[Vec<Vec<u64>>]| {
            mine.len() == theirs.len()
                && mine.iter().zip(theirs).all(|(a, b)| {
                    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.len() == b.len())
                })
        };
        if state.policies != self.fingerprint
            || state.seen.len() != self.seen.len()
            || state.rule_hits.len() != self.rule_hits.len()
            || state
                .rule_hits
                .iter()
                .zip(&self.rule_hits)
                .any(|(a, b)| a.len() != b.len())
            || state.value_hits.len() != self.value_hits.len()
            || state
                .value_hits
                .iter()
                .zip(&self.value_hits)
                .any(|(theirs, mine)| !shaped(mine, theirs))
        {
            return Err(format!(
                "audit counts of other policies or options ({}, these are {})",
                state.policies, self.fingerprint
            ));
        }
        // Everything that can fail first, so an error adds nothing.
        let mut denied = self.denied.clone();
        for (identity, workload, group) in state.denied {
            denied
                .entry((identity, workload))
                .or_default()
                .absorb(group)?;
        }
        let mut dry_run = self.dry_run.clone();
        for (rule, group) in state.dry_run {
            dry_run.entry(rule).or_default().absorb(group)?;
        }
        self.denied = denied;
        self.dry_run = dry_run;
        for (mine, theirs) in self.seen.iter_mut().zip(state.seen) {
            *mine |= theirs;
        }
        for (mine, theirs) in self.rule_hits.iter_mut().zip(state.rule_hits) {
            for (mine, theirs) in mine.iter_mut().zip(theirs) {
                *mine += theirs;
            }
        }
        for (mine, theirs) in self.value_hits.iter_mut().zip(state.value_hits) {
            for (mine, theirs) in mine.iter_mut().zip(theirs) {
                for (mine, theirs) in mine.iter_mut().zip(theirs) {
                    for (mine, theirs) in mine.iter_mut().zip(theirs) {
                        *mine += theirs;
                    }
                }
            }
        }
        self.allowed_pairs.extend(state.allowed_pairs);
        let summary = &mut self.summary;
        let theirs = state.summary;
        summary.lines += theirs.lines;
        summary.records += theirs.records;
        summary.unreadable += theirs.unreadable;
        if summary.first_unreadable.is_none() {
            summary.first_unreadable = theirs.first_unreadable;
        }
        summary.outside_window += theirs.outside_window;
        summary.judged.merge(&theirs.judged);
        summary.allowed += theirs.allowed;
        summary.denied += theirs.denied;
        summary.path_rejected += theirs.path_rejected;
        summary.dry_run_denied += theirs.dry_run_denied;
        Ok(())
    }

    /// Adds another audit of the same policies and options ([`Audit::absorb`]).
    pub fn merge(&mut self, other: &Audit) -> std::result::Result<(), String> {
        self.absorb(other.to_state())
    }
}

impl AuditReport {
    /// The most severe finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Findings at or above a severity.
    pub fn at_least(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity >= severity)
            .count()
    }

    /// Findings per severity.
    pub fn counts(&self) -> BTreeMap<Severity, usize> {
        let mut counts: BTreeMap<Severity, usize> = Severity::ALL.iter().map(|s| (*s, 0)).collect();
        for finding in &self.findings {
            *counts.entry(finding.severity).or_default() += 1;
        }
        counts
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let summary = &self.summary;
        let mut out = String::new();
        let range = match (summary.judged.first, summary.judged.last) {
            (Some(first), Some(last)) => {
                format!(
                    " from {} to {}",
                    format_rfc3339(first),
                    format_rfc3339(last)
                )
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "cordon audit: {} requests{range} against {} policies ({} rules)\n",
            summary.judged.count, summary.policies, summary.rules
        ));
        out.push_str(&format!(
            "  {} allowed, {} denied ({} rejected by path normalization); dry-run policies would deny {} more\n",
            summary.allowed, summary.denied, summary.path_rejected, summary.dry_run_denied
        ));
        if summary.outside_window > 0 {
            out.push_str(&format!(
                "  {} records older than the window were skipped\n",
                summary.outside_window
            ));
        }
        if let Some(first) = &summary.first_unreadable {
            out.push_str(&format!(
                "  {} unreadable lines skipped, the first: {first}\n",
                summary.unreadable
            ));
        }
        out.push('\n');
        for finding in &self.findings {
            let location = finding
                .location
                .as_ref()
                .map(|(file, line, column)| format!("{file}:{line}:{column}: "))
                .unwrap_or_default();
            let subject = match (&finding.policy, &finding.rule) {
                (_, Some(rule)) if finding.kind != Kind::DryRun => format!("{rule}: "),
                (Some(policy), None) => format!("policy `{policy}`: "),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{:<6}  {:<16}  {location}{subject}{}\n",
                finding.severity.name().to_uppercase(),
                finding.kind.name(),
                finding.message
            ));
            if finding.requests.count > 0 {
                out.push_str(&format!("{:26}{}\n", "", finding.requests.describe()));
            }
            for example in &finding.examples {
                out.push_str(&format!("{:26}{example}\n", ""));
            }
        }
        let counts = self.counts();
        let parts: Vec<String> = Severity::ALL
            .iter()
            .map(|s| format!("{} {}", counts.get(s).copied().unwrap_or(0), s.name()))
            .collect();
        if !self.findings.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "{} findings: {}\n",
            self.findings.len(),
            parts.join(", ")
        ));
        out
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> Value {
        let summary = &self.summary;
        let counts: serde_json::Map<String, Value> = self
            .counts()
            .iter()
            .map(|(severity, count)| (severity.name().to_string(), json!(count)))
            .collect();
        json!({
            "summary": {
                "lines": summary.lines,
                "records": summary.records,
                "unreadable": summary.unreadable,
                "first_unreadable": summary.first_unreadable,
                "outside_window": summary.outside_window,
                "judged": summary.judged.count,
                "first_seen": summary.judged.first.map(format_rfc3339),
                "last_seen": summary.judged.last.map(format_rfc3339),
                "allowed": summary.allowed,
                "denied": summary.denied,
                "path_rejected": summary.path_rejected,
                "dry_run_denied": summary.dry_run_denied,
                "policies": summary.policies,
                "rules": summary.rules,
            },
            "counts": counts,
            "findings": self.findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
        })
    }

    /// The distinct kinds found, for quick checks.
    pub fn kinds(&self) -> BTreeSet<Kind> {
        self.findings.iter().map(|f| f.kind).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn policy() -> Value {
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {
                "selector": {"matchLabels": {"app": "orders"}},
                "action": "ALLOW",
                "rules": [{
                    "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/frontend"]}}],
                    "to": [{"operation": {"methods": ["GET"], "paths": ["/orders/{*}"]}}],
                }],
            },
        })
    }

    fn line(principal: &str, method: &str, path: &str) -> String {
        json!({
            "source": {"principal": format!("spiffe://cluster.local/ns/shop/sa/{principal}")},
            "destination": {"port": 8080, "namespace": "shop", "labels": {"app": "orders"}},
            "request": {"method": method, "path": path, "host": "orders.shop", "headers": {"x-trace": "t1"}},
            "time": "2026-11-27T01:00:00Z",
        })
        .to_string()
    }

    #[test]
    fn json_examples_are_traffic_records() {
        let mut audit = Audit::from_values(&[policy()], AuditOptions::default()).unwrap();
        let mut sent = Vec::new();
        for (principal, method, path) in [
            ("frontend", "GET", "/orders/1"),
            ("reviews", "GET", "/orders/2"),
            ("reviews", "GET", "/orders/3"),
            ("reviews", "DELETE", "/orders/3"),
        ] {
            let text = line(principal, method, path);
            audit.add_line(text.as_bytes()).unwrap();
            sent.push(text);
        }
        assert_eq!(audit.summary().records, 4);
        let report = audit.finish();
        let json = report.to_json();
        let finding = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|finding| finding["kind"] == "lateral-movement")
            .unwrap();
        let examples = finding["examples"].as_array().unwrap();
        assert_eq!(examples.len(), 2);
        // Each example reads back, with the one codec, as the request that was sent.
        let first = cordon_engine::traffic::read_line(examples[0].to_string().as_bytes())
            .unwrap()
            .record()
            .unwrap();
        let original = cordon_engine::traffic::read_line(sent[1].as_bytes())
            .unwrap()
            .record()
            .unwrap();
        assert_eq!(first, original);
        assert_eq!(finding["operations"][0]["operation"], "GET /orders/{*}");
        assert_eq!(finding["operations"][0]["requests"], 2);
        assert_eq!(finding["operations"][1]["operation"], "DELETE /orders/{*}");
        assert_eq!(finding["reasons"][0]["requests"], 3);
        // The text report keeps its lines.
        let text = report.to_text();
        assert!(text.contains("GET /orders/{*} ×2"), "{text}");
        assert!(text.contains("no ALLOW rule matches ×3"), "{text}");
    }

    #[test]
    fn counts_read_back_and_merge_as_one_audit_over_every_record() {
        let lines: Vec<String> = [
            ("frontend", "GET", "/orders/1"),
            ("reviews", "GET", "/orders/2"),
            ("frontend", "POST", "/orders/2"),
            ("reviews", "DELETE", "/orders/3"),
            ("frontend", "GET", "/orders/4"),
            ("reviews", "GET", "/orders/5"),
        ]
        .iter()
        .map(|(principal, method, path)| line(principal, method, path))
        .collect();
        let mut whole = Audit::from_values(&[policy()], AuditOptions::default()).unwrap();
        for text in &lines {
            whole.add_line(text.as_bytes()).unwrap();
        }
        let (first, second) = lines.split_at(2);
        let mut left = Audit::from_values(&[policy()], AuditOptions::default()).unwrap();
        for text in first {
            left.add_line(text.as_bytes()).unwrap();
        }
        // Written down and read back into a fresh audit of the same policies.
        let state: AuditState =
            serde_json::from_str(&serde_json::to_string(&left.to_state()).unwrap()).unwrap();
        let mut back = Audit::from_values(&[policy()], AuditOptions::default()).unwrap();
        back.absorb(state).unwrap();
        let mut right = Audit::from_values(&[policy()], AuditOptions::default()).unwrap();
        for text in second {
            right.add_line(text.as_bytes()).unwrap();
        }
        back.merge(&right.clone()).unwrap();
        let (whole, merged) = (whole.finish(), back.finish());
        assert_eq!(merged.summary, whole.summary);
        assert_eq!(merged.to_json(), whole.to_json());
        assert!(whole.kinds().contains(&Kind::LateralMovement));

        // Counts of other policies are refused, naming why.
        let mut other_policy = policy();
        other_policy["spec"]["rules"][0]["to"][0]["operation"]["methods"] = json!(["PUT"]);
        let mut other = Audit::from_values(&[other_policy], AuditOptions::default()).unwrap();
        let error = other.absorb(left.to_state()).unwrap_err();
        assert!(error.contains("other policies"), "{error}");
    }
}
