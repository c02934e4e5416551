//! `cordon discover`: least-privilege AuthorizationPolicy from observed traffic.
//!
//! Records stream through [`Discovery::add_line`] (or [`Discovery::read_files`]); each is
//! reduced to (destination workload, caller principal, method, templated path) and counted
//! with its first and last time, so memory holds the aggregate and never the records.
//! [`Discovery::finish`] then generalizes each workload's paths
//! ([`templating::generalize`]), keeps the flows that were seen often enough, and returns
//! one ALLOW policy per destination workload, one rule per calling principal
//! ([`Discovered::to_yaml`] writes them).
//!
//! What is never granted: requests without a verified peer identity (plaintext, or a peer
//! certificate whose URI SAN is not a valid SPIFFE ID), requests a decision log says the
//! filter refused, requests whose path normalization rejects, records outside the
//! learning window, principals outside the chosen trust domains, and flows below the
//! minimum counts. All of them are counted in the [`Summary`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use cordon_engine::path::normalize;
use cordon_engine::{PathNormalization, SpiffeId};

use super::input::{for_each_line, read_line, LiteRecord, Text};
use super::templating::{self, PathUse, TemplateOptions};
use super::time::{format_rfc3339, parse_rfc3339, Millis};
use super::yaml::{comment_text, quote};
use cordon_engine::traffic::Line;

/// Labels that change with every rollout or pod and never make a good selector.
const VOLATILE_LABELS: &[&str] = &[
    "version",
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "security.istio.io/tlsMode",
    "service.istio.io/canonical-revision",
    "app.kubernetes.io/version",
];

/// Flows and pairs named one by one in the summary before it abbreviates.
const SHOWN: usize = 50;

/// The longest path the engine examines by default (`limits.max_path_bytes`).
const MAX_PATH_BYTES: usize = 8192;

/// How `discover` learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// Path templating thresholds.
    pub templates: TemplateOptions,
    /// Records older than this are ignored (the learning window); records without a time
    /// are kept.
    pub since: Option<Millis>,
    /// Requests from a principal to a workload before the flow is believed.
    pub min_count: u64,
    /// Requests on one method and path template (within a believed flow) before it is kept.
    pub min_operation_count: u64,
    /// A rule names the hosts its requests used when there were at most this many (and
    /// every request had one); 0 never names hosts.
    pub max_hosts: usize,
    /// A rule names the destination ports its requests used when there were at most this
    /// many (and every request had one); 0 never names ports.
    pub max_ports: usize,
    /// Only principals of these trust domains are granted; empty: every trust domain seen.
    pub trust_domains: Vec<String>,
    /// Istio's root namespace: a policy there without a selector would apply mesh-wide,
    /// so none is written.
    pub root_namespace: String,
    /// Write an allow-nothing policy for a workload that received traffic but has no
    /// believed caller (otherwise such a workload gets no policy and stays open).
    pub allow_nothing_for_unseen: bool,
    /// How the mesh normalizes paths before policies see them (`--config`); a path it
    /// rejects is never granted.
    pub path_normalization: PathNormalization,
    /// The longest path the filter examines (`limits.max_path_bytes`); longer ones are
    /// rejected, never granted.
    pub max_path_bytes: usize,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            templates: TemplateOptions::default(),
            since: None,
            min_count: 1,
            min_operation_count: 1,
            max_hosts: 1,
            max_ports: 1,
            trust_domains: Vec::new(),
            root_namespace: "istio-system".to_string(),
            allow_nothing_for_unseen: true,
            path_normalization: PathNormalization::default(),
            max_path_bytes: MAX_PATH_BYTES,
        }
    }
}

/// A request count and when the requests were seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests.
    pub count: u64,
    /// Earliest time, when any request had one.
    pub first: Option<Millis>,
    /// Latest time, when any request had one.
    pub last: Option<Millis>,
}

impl Stats {
    /// Counts one request seen at `time`.
    pub fn add(&mut self, time: Option<Millis>) {
        self.count += 1;
        if let Some(time) = time {
            self.first = Some(self.first.map_or(time, |first| first.min(time)));
            self.last = Some(self.last.map_or(time, |last| last.max(time)));
        }
    }

    /// Adds another count.
    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        if let Some(first) = other.first {
            self.first = Some(self.first.map_or(first, |mine| mine.min(first)));
        }
        if let Some(last) = other.last {
            self.last = Some(self.last.map_or(last, |mine| mine.max(last)));
        }
    }

    /// `N requests, first seen …, last seen …`.
    pub fn describe(&self) -> String {
        let noun = if self.count == 1 {
            "request"
        } else {
            "requests"
        };
        match (self.first, self.last) {
            (Some(first), Some(last)) => format!(
                "{} {noun}, first seen {}, last seen {}",
                self.count,
                format_rfc3339(first),
                format_rfc3339(last)
            ),
            _ => format!("{} {noun}, time unknown", self.count),
        }
    }
}

/// A destination workload: namespace and the labels its policy selects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadKey {
    /// Namespace.
    pub namespace: String,
    /// Selector labels; empty selects the whole namespace.
    pub selector: BTreeMap<String, String>,
}

impl WorkloadKey {
    /// `namespace/app`, `namespace/k=v,k=v`, or `namespace/*`.
    pub fn label(&self) -> String {
        workload_label(&self.namespace, &self.selector)
    }
}

/// `namespace/app`, `namespace/k=v,k=v`, or `namespace/*` for a namespace-wide selector.
pub fn workload_label(namespace: &str, selector: &BTreeMap<String, String>) -> String {
    if selector.is_empty() {
        return format!("{namespace}/*");
    }
    if let (1, Some(app)) = (selector.len(), selector.get("app")) {
        return format!("{namespace}/{app}");
    }
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{namespace}/{}", labels.join(","))
}

/// The labels of a destination that its policy should select: `app`, else
/// `app.kubernetes.io/name`, else every label but the ones that change per rollout or pod.
pub fn selector_labels<'l>(
    labels: impl Iterator<Item = (&'l str, &'l str)> + Clone,
) -> Vec<(&'l str, &'l str)> {
    for preferred in ["app", "app.kubernetes.io/name"] {
        if let Some(found) = labels.clone().find(|(key, _)| *key == preferred) {
            return vec![found];
        }
    }
    let mut all: Vec<(&str, &str)> = labels
        .filter(|(key, _)| !VOLATILE_LABELS.contains(key))
        .collect();
    all.sort_unstable();
    all.dedup_by(|a, b| a.0 == b.0);
    all
}

#[derive(Debug, Default)]
struct Distinct<T> {
    values: Vec<T>,
    overflow: bool,
    missing: bool,
}

impl<T> Distinct<T> {
    fn consistent(&self) -> Option<&[T]> {
        (!self.overflow && !self.missing && !self.values.is_empty()).then_some(&self.values)
    }
}

#[derive(Debug, Default)]
struct Flow {
    stats: Stats,
    methods: Vec<(String, HashMap<String, Stats>)>,
    hosts: Distinct<String>,
    ports: Distinct<u16>,
}

/// What was read and what was left out.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Lines read.
    pub lines: u64,
    /// Traffic records among them.
    pub records: u64,
    /// Bad lines: record-like lines that could not be read.
    pub unreadable: u64,
    /// Log lines without a decision record, skipped.
    pub log_lines: u64,
    /// Where the first unreadable line is, and why.
    pub first_unreadable: Option<String>,
    /// Records older than the learning window.
    pub outside_window: u64,
    /// Records without a (readable) time, kept.
    pub without_time: u64,
    /// Records without a destination namespace.
    pub no_destination: u64,
    /// Records without a method or a path, or with the path `*`.
    pub incomplete: u64,
    /// Records whose path normalization rejects (the filter answers 400).
    pub path_rejected: u64,
    /// Plaintext requests (no peer identity), per workload.
    pub plaintext: BTreeMap<String, u64>,
    /// Requests whose peer identity is not a valid SPIFFE ID, per workload.
    pub invalid_identity: BTreeMap<String, u64>,
    /// Requests a decision log says were refused, per (identity, workload).
    pub denied: BTreeMap<(String, String), u64>,
    /// Requests from principals outside `--trust-domain`, per trust domain.
    pub foreign_trust_domain: BTreeMap<String, u64>,
    /// Requests aggregated (before the minimum counts).
    pub aggregated: u64,
    /// Aggregated requests that a decision log says passed only because nothing was
    /// enforced or only in dry run.
    pub dry_run_only: u64,
    /// Requests granted by the written rules.
    pub granted: u64,
    /// Flows (principal, workload, requests) below the minimum counts.
    pub unbelieved: Vec<(String, String, u64)>,
    /// Requests in operations below `min_operation_count` within believed flows.
    pub dropped_operations: u64,
    /// Trust domains of the granted principals, with their request counts.
    pub trust_domains: BTreeMap<String, u64>,
    /// Time range of the aggregated requests.
    pub window: Stats,
    /// Other things to know (namespace-wide selectors, skipped workloads).
    pub notes: Vec<String>,
}

/// The streaming aggregator behind `cordon discover`.
#[derive(Debug)]
pub struct Discovery {
    options: DiscoverOptions,
    workloads: Vec<WorkloadKey>,
    workload_index: HashMap<String, u32>,
    raw_workload_index: HashMap<String, u32>,
    principals: Vec<String>,
    principal_index: HashMap<String, u32>,
    flows: HashMap<(u32, u32), Flow>,
    key: String,
    normalized: String,
    templated: String,
    summary: Summary,
}

/// One discovered operation: methods and the path templates used with exactly them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredOperation {
    /// Methods, sorted.
    pub methods: Vec<String>,
    /// Path templates, sorted, with their counts.
    pub paths: Vec<(String, Stats)>,
}

/// One rule: what one principal was seen doing on one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredRule {
    /// The principal, without `spiffe://`, as Istio writes principals.
    pub principal: String,
    /// The requests the rule grants.
    pub stats: Stats,
    /// Hosts, when consistent.
    pub hosts: Vec<String>,
    /// Ports, when consistent.
    pub ports: Vec<u16>,
    /// Operations, sorted by methods.
    pub operations: Vec<DiscoveredOperation>,
}

/// One ALLOW policy for one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPolicy {
    /// `metadata.name`.
    pub name: String,
    /// The workload (its namespace is the policy's).
    pub workload: WorkloadKey,
    /// Rules, sorted by principal; empty: an allow-nothing policy.
    pub rules: Vec<DiscoveredRule>,
}

/// The result: policies and the summary.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// Policies, sorted by namespace and name.
    pub policies: Vec<DiscoveredPolicy>,
    /// What was read and left out.
    pub summary: Summary,
}

impl Discovery {
    /// An empty aggregate.
    pub fn new(options: DiscoverOptions) -> Discovery {
        Discovery {
            options,
            workloads: Vec::new(),
            workload_index: HashMap::new(),
            raw_workload_index: HashMap::new(),
            principals: Vec::new(),
            principal_index: HashMap::new(),
            flows: HashMap::new(),
            key: String::with_capacity(128),
            normalized: String::with_capacity(256),
            templated: String::with_capacity(256),
            summary: Summary::default(),
        }
    }

    /// The options.
    pub fn options(&self) -> &DiscoverOptions {
        &self.options
    }

    /// Reads every line of the files (`-`: standard input). Bad lines are counted and
    /// skipped; the first is named in the summary. I/O errors stop the reading. (The CLI
    /// reads with its own loop, which reports every bad line.)
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

    /// Reads one line (the engine's classification: a traffic record, a log line carrying
    /// one, an ordinary log line, nothing) and adds its record. `Err`: the line is bad
    /// (counted as unreadable), and why.
    pub fn add_line(&mut self, line: &[u8]) -> Result<Line<()>, String> {
        self.summary.lines += 1;
        let read = read_line(line, |record| self.add_record(record));
        match &read {
            Ok(Line::LogLine) => self.summary.log_lines += 1,
            Ok(Line::Record(())) | Ok(Line::Nothing) => {}
            Err(_) => self.summary.unreadable += 1,
        }
        read
    }

    /// Adds one record.
    pub fn add_record(&mut self, record: &LiteRecord<'_>) {
        let summary = &mut self.summary;
        summary.records += 1;
        let time = record
            .time
            .as_ref()
            .and_then(|time| parse_rfc3339(time.as_str()));
        match (time, self.options.since) {
            (None, _) => summary.without_time += 1,
            (Some(time), Some(since)) if time < since => {
                summary.outside_window += 1;
                return;
            }
            _ => {}
        }
        let Some(namespace) = record.namespace() else {
            summary.no_destination += 1;
            return;
        };
        let workload = self.intern_workload(namespace, record.labels());
        let summary = &mut self.summary;
        let label = || {
            self.workloads
                .get(workload as usize)
                .map_or_else(String::new, WorkloadKey::label)
        };
        let peer = record.peer_identity();
        if record.denied() {
            let identity = peer.map_or_else(
                || "(no identity)".to_string(),
                |peer| peer.strip_prefix("spiffe://").unwrap_or(peer).to_string(),
            );
            *summary.denied.entry((identity, label())).or_default() += 1;
            return;
        }
        let Some(peer) = peer else {
            *summary.plaintext.entry(label()).or_default() += 1;
            return;
        };
        let Ok(id) = SpiffeId::parse(peer) else {
            *summary.invalid_identity.entry(label()).or_default() += 1;
            return;
        };
        if !self.options.trust_domains.is_empty()
            && !self
                .options
                .trust_domains
                .iter()
                .any(|domain| domain == id.trust_domain())
        {
            *summary
                .foreign_trust_domain
                .entry(id.trust_domain().to_string())
                .or_default() += 1;
            return;
        }
        let (Some(method), Some(raw_path)) = (record.method(), record.path()) else {
            summary.incomplete += 1;
            return;
        };
        if raw_path.len() > self.options.max_path_bytes {
            summary.path_rejected += 1;
            return;
        }
        let mode = self.options.path_normalization;
        let path = match normalize(raw_path, mode, &mut self.normalized) {
            Ok("*") => {
                summary.incomplete += 1;
                return;
            }
            Ok(path) => path,
            Err(_) => {
                summary.path_rejected += 1;
                return;
            }
        };
        templating::template_path(path, &self.options.templates, &mut self.templated);
        summary.aggregated += 1;
        summary.window.add(time);
        if record.allowed_only_in_dry_run() {
            summary.dry_run_only += 1;
        }
        let principal = match self.principal_index.get(id.principal()) {
            Some(index) => *index,
            None => {
                let index = self.principals.len() as u32;
                self.principals.push(id.principal().to_string());
                self.principal_index
                    .insert(id.principal().to_string(), index);
                index
            }
        };
        let flow = self.flows.entry((workload, principal)).or_default();
        flow.stats.add(time);
        track(
            &mut flow.hosts,
            record.host(),
            self.options.max_hosts,
            |known: &String, host: &str| known.eq_ignore_ascii_case(host),
            str::to_ascii_lowercase,
        );
        track(
            &mut flow.ports,
            record.port().as_ref(),
            self.options.max_ports,
            |known: &u16, port: &u16| known == port,
            |port: &u16| *port,
        );
        let paths = match flow.methods.iter().position(|(known, _)| known == method) {
            Some(at) => flow.methods.get_mut(at).map(|(_, paths)| paths),
            None => {
                flow.methods.push((method.to_string(), HashMap::new()));
                flow.methods.last_mut().map(|(_, paths)| paths)
            }
        };
        if let Some(paths) = paths {
            match paths.get_mut(self.templated.as_str()) {
                Some(stats) => stats.add(time),
                None => {
                    let mut stats = Stats::default();
                    stats.add(time);
                    paths.insert(self.templated.clone(), stats);
                }
            }
        }
    }

    fn intern_workload(&mut self, namespace: &str, labels: &[(Text<'_>, Text<'_>)]) -> u32 {
        // First by the labels as they arrive (no allocation once seen), then by selector.
        fn push_key<'k>(
            key: &mut String,
            namespace: &str,
            labels: impl Iterator<Item = (&'k str, &'k str)>,
        ) {
            key.clear();
            key.push_str(namespace);
            for (name, value) in labels {
                key.push('\0');
                key.push_str(name);
                key.push('\u{1}');
                key.push_str(value);
            }
        }
        let raw = labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        push_key(&mut self.key, namespace, raw.clone());
        if let Some(index) = self.raw_workload_index.get(self.key.as_str()) {
            return *index;
        }
        let raw_key = self.key.clone();
        let selected = selector_labels(raw);
        push_key(&mut self.key, namespace, selected.iter().copied());
        let index = match self.workload_index.get(self.key.as_str()) {
            Some(index) => *index,
            None => {
                let index = self.workloads.len() as u32;
                self.workloads.push(WorkloadKey {
                    namespace: namespace.to_string(),
                    selector: selected
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                });
                self.workload_index.insert(self.key.clone(), index);
                index
            }
        };
        self.raw_workload_index.insert(raw_key, index);
        index
    }

    /// Size of the aggregate: (workload, principal, method, path template) entries held.
    /// Memory grows with this, not with the number of records.
    pub fn aggregate_entries(&self) -> usize {
        self.flows
            .values()
            .flat_map(|flow| flow.methods.iter())
            .map(|(_, paths)| paths.len())
            .sum()
    }

    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Generalizes paths, applies the minimum counts, and writes the policies.
    pub fn finish(self) -> Discovered {
        let Discovery {
            options,
            workloads,
            principals,
            flows,
            mut summary,
            ..
        } = self;
        let mut per_workload: BTreeMap<&WorkloadKey, Vec<(&str, &Flow)>> = workloads
            .iter()
            .map(|workload| (workload, Vec::new()))
            .collect();
        for ((workload, principal), flow) in &flows {
            if let (Some(key), Some(principal)) = (
                workloads.get(*workload as usize),
                principals.get(*principal as usize),
            ) {
                per_workload
                    .entry(key)
                    .or_default()
                    .push((principal.as_str(), flow));
            }
        }
        let mut policies = Vec::new();
        for (workload, mut flows) in per_workload {
            flows.sort_by(|a, b| a.0.cmp(b.0));
            let label = workload.label();
            if workload.selector.is_empty() && workload.namespace == options.root_namespace {
                summary.notes.push(format!(
                    "{label}: destinations without labels in the root namespace would need a mesh-wide policy; none written"
                ));
                continue;
            }
            let rules = discover_rules(&options, &label, &flows, &mut summary);
            if rules.is_empty() && !options.allow_nothing_for_unseen {
                continue;
            }
            if workload.namespace == options.root_namespace {
                summary.notes.push(format!(
                    "{label}: a policy in the root namespace applies to every workload with these labels, in every namespace"
                ));
            }
            if workload.selector.is_empty() {
                summary.notes.push(format!(
                    "{label}: the destinations have no labels, so the policy selects every workload in namespace `{}`",
                    workload.namespace
                ));
            }
            for rule in &rules {
                if let Some((domain, _)) = rule.principal.split_once('/') {
                    *summary.trust_domains.entry(domain.to_string()).or_default() +=
                        rule.stats.count;
                } else {
                    *summary
                        .trust_domains
                        .entry(rule.principal.clone())
                        .or_default() += rule.stats.count;
                }
                summary.granted += rule.stats.count;
            }
            policies.push(DiscoveredPolicy {
                name: String::new(),
                workload: workload.clone(),
                rules,
            });
        }
        name_policies(&mut policies);
        policies.sort_by(|a, b| {
            (&a.workload.namespace, &a.name).cmp(&(&b.workload.namespace, &b.name))
        });
        summary.unbelieved.sort();
        Discovered { policies, summary }
    }
}

fn track<T: PartialEq, Q: ?Sized>(
    distinct: &mut Distinct<T>,
    value: Option<&Q>,
    cap: usize,
    same: impl Fn(&T, &Q) -> bool,
    owned: impl Fn(&Q) -> T,
) {
    if cap == 0 || distinct.overflow {
        return;
    }
    match value {
        None => distinct.missing = true,
        Some(value) => {
            if !distinct.values.iter().any(|known| same(known, value)) {
                if distinct.values.len() >= cap {
                    distinct.overflow = true;
                    distinct.values.clear();
                } else {
                    distinct.values.push(owned(value));
                }
            }
        }
    }
}

fn discover_rules(
    options: &DiscoverOptions,
    label: &str,
    flows: &[(&str, &Flow)],
    summary: &mut Summary,
) -> Vec<DiscoveredRule> {
    type Flows<'f> = Vec<&'f (&'f str, &'f Flow)>;
    let (believed, doubted): (Flows<'_>, Flows<'_>) = flows
        .iter()
        .partition(|(_, flow)| flow.stats.count >= options.min_count);
    for (principal, flow) in doubted {
        summary
            .unbelieved
            .push((principal.to_string(), label.to_string(), flow.stats.count));
    }
    // Every path of the workload, with the methods used on it by any believed caller.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut uses: Vec<PathUse> = Vec::new();
    for (_, flow) in &believed {
        for (method, paths) in &flow.methods {
            for path in paths.keys() {
                let id = *ids.entry(path.as_str()).or_insert_with(|| {
                    uses.push(PathUse {
                        path: path.clone(),
                        methods: BTreeSet::new(),
                    });
                    uses.len() - 1
                });
                if let Some(used) = uses.get_mut(id) {
                    used.methods.insert(method.clone());
                }
            }
        }
    }
    let generalized = templating::generalize(&uses, &options.templates);
    let mut rules = Vec::new();
    for (principal, flow) in believed {
        let mut per_path: BTreeMap<&str, BTreeMap<&str, Stats>> = BTreeMap::new();
        for (method, paths) in &flow.methods {
            for (path, stats) in paths {
                let Some(template) = ids.get(path.as_str()).and_then(|id| generalized.get(*id))
                else {
                    continue;
                };
                per_path
                    .entry(template.as_str())
                    .or_default()
                    .entry(method.as_str())
                    .or_default()
                    .merge(stats);
            }
        }
        let mut operations: BTreeMap<Vec<String>, Vec<(String, Stats)>> = BTreeMap::new();
        let mut rule_stats = Stats::default();
        for (path, methods) in per_path {
            let mut kept: Vec<String> = Vec::new();
            let mut path_stats = Stats::default();
            for (method, stats) in methods {
                if stats.count >= options.min_operation_count {
                    kept.push(method.to_string());
                    path_stats.merge(&stats);
                } else {
                    summary.dropped_operations += stats.count;
                }
            }
            if !kept.is_empty() {
                rule_stats.merge(&path_stats);
                operations
                    .entry(kept)
                    .or_default()
                    .push((path.to_string(), path_stats));
            }
        }
        if operations.is_empty() {
            summary
                .unbelieved
                .push((principal.to_string(), label.to_string(), flow.stats.count));
            continue;
        }
        rules.push(DiscoveredRule {
            principal: principal.to_string(),
            stats: rule_stats,
            hosts: flow
                .hosts
                .consistent()
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            ports: flow
                .ports
                .consistent()
                .map(<[u16]>::to_vec)
                .unwrap_or_default(),
            operations: operations
                .into_iter()
                .map(|(methods, paths)| DiscoveredOperation { methods, paths })
                .collect(),
        });
    }
    for rule in &mut rules {
        rule.hosts.sort();
        rule.ports.sort_unstable();
    }
    rules
}

/// `<app>-cordon-allow` (or the selector's values, or `namespace`), in DNS-1123 form,
/// unique within each namespace.
fn name_policies(policies: &mut [DiscoveredPolicy]) {
    let mut taken: BTreeSet<(String, String)> = BTreeSet::new();
    for policy in policies.iter_mut() {
        let selector = &policy.workload.selector;
        let base = match selector.get("app") {
            Some(app) => app.clone(),
            None if selector.is_empty() => "namespace".to_string(),
            None => selector.values().cloned().collect::<Vec<_>>().join("-"),
        };
        let mut stem: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        while stem.contains("--") {
            stem = stem.replace("--", "-");
        }
        let mut stem = stem.trim_matches(['-', '.']).to_string();
        stem.truncate(200);
        if stem.is_empty() {
            stem = "workload".to_string();
        }
        let mut name = format!("{stem}-cordon-allow");
        let mut counter = 2;
        while taken.contains(&(policy.workload.namespace.clone(), name.clone())) {
            name = format!("{stem}-{counter}-cordon-allow");
            counter += 1;
        }
        taken.insert((policy.workload.namespace.clone(), name.clone()));
        policy.name = name;
    }
}

impl Summary {
    /// What was read, granted and left out, for people (the CLI prints it on stderr).
    pub fn report(&self, options: &DiscoverOptions) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!(
            "cordon discover: {} records in {} lines; {} aggregated ({})",
            self.records,
            self.lines,
            self.aggregated,
            self.window.describe()
        ));
        let domains: Vec<String> = self
            .trust_domains
            .iter()
            .map(|(domain, count)| format!("{domain} ({count})"))
            .collect();
        line(format!(
            "  granted: {} requests; trust domains from the data: {}",
            self.granted,
            if domains.is_empty() {
                "none".to_string()
            } else {
                domains.join(", ")
            }
        ));
        let total = |map: &BTreeMap<String, u64>| map.values().sum::<u64>();
        let by_workload = |map: &BTreeMap<String, u64>| {
            map.iter()
                .map(|(workload, count)| format!("{workload} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut left_out: Vec<String> = Vec::new();
        if total(&self.plaintext) > 0 {
            left_out.push(format!(
                "plaintext (no peer identity): {} ({})",
                total(&self.plaintext),
                by_workload(&self.plaintext)
            ));
        }
        if total(&self.invalid_identity) > 0 {
            left_out.push(format!(
                "peer identity not a valid SPIFFE ID: {} ({})",
                total(&self.invalid_identity),
                by_workload(&self.invalid_identity)
            ));
        }
        if !self.denied.is_empty() {
            let count: u64 = self.denied.values().sum();
            let mut pairs: Vec<String> = self
                .denied
                .iter()
                .take(SHOWN)
                .map(|((identity, workload), count)| format!("{identity} -> {workload} {count}"))
                .collect();
            if self.denied.len() > SHOWN {
                pairs.push(format!("… {} more", self.denied.len() - SHOWN));
            }
            left_out.push(format!(
                "refused by the filter (decision log): {count} ({})",
                pairs.join(", ")
            ));
        }
        if total(&self.foreign_trust_domain) > 0 {
            left_out.push(format!(
                "principals outside --trust-domain {}: {} ({})",
                options.trust_domains.join(", "),
                total(&self.foreign_trust_domain),
                by_workload(&self.foreign_trust_domain)
            ));
        }
        if self.path_rejected > 0 {
            left_out.push(format!(
                "path rejected by normalization (400): {}",
                self.path_rejected
            ));
        }
        if self.incomplete > 0 {
            left_out.push(format!("no method or path: {}", self.incomplete));
        }
        if self.no_destination > 0 {
            left_out.push(format!("no destination namespace: {}", self.no_destination));
        }
        if self.outside_window > 0 {
            left_out.push(format!("older than the window: {}", self.outside_window));
        }
        if self.dropped_operations > 0 {
            left_out.push(format!(
                "operations seen fewer than {} times: {} requests",
                options.min_operation_count, self.dropped_operations
            ));
        }
        if !self.unbelieved.is_empty() {
            let count: u64 = self.unbelieved.iter().map(|(_, _, count)| count).sum();
            left_out.push(format!(
                "flows seen fewer than {} times (not believed): {} flows, {count} requests",
                options.min_count,
                self.unbelieved.len()
            ));
        }
        if self.log_lines > 0 {
            left_out.push(format!(
                "log lines without a decision record: {}",
                self.log_lines
            ));
        }
        if self.unreadable > 0 {
            left_out.push(format!(
                "bad lines: {}{}",
                self.unreadable,
                self.first_unreadable
                    .as_ref()
                    .map(|first| format!(", the first: {first}"))
                    .unwrap_or_default()
            ));
        }
        if left_out.is_empty() {
            line("  not granted: nothing".to_string());
        } else {
            line("  not granted:".to_string());
            for text in left_out {
                line(format!("    {text}"));
            }
        }
        for (principal, workload, count) in self.unbelieved.iter().take(SHOWN) {
            line(format!(
                "    not believed: {principal} -> {workload} ({count})"
            ));
        }
        if self.unbelieved.len() > SHOWN {
            line(format!(
                "    … and {} more flows not believed",
                self.unbelieved.len() - SHOWN
            ));
        }
        if self.dry_run_only > 0 {
            line(format!(
                "  note: {} granted requests passed only because enforcement was off or only dry-run policies would deny them; review",
                self.dry_run_only
            ));
        }
        if self.without_time > 0 {
            line(format!(
                "  note: {} records had no time (kept; the window cannot apply to them)",
                self.without_time
            ));
        }
        for note in &self.notes {
            line(format!("  note: {note}"));
        }
        out
    }
}

impl Discovered {
    /// The policies as multi-document YAML, with a comment per rule and per path giving
    /// request counts and first and last times.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        if self.policies.is_empty() {
            out.push_str(
                "# cordon discover: no destination workload in the traffic; no policy written\n",
            );
            return out;
        }
        for (position, policy) in self.policies.iter().enumerate() {
            if position > 0 {
                out.push_str("---\n");
            }
            write_policy(&mut out, policy);
        }
        out
    }
}

fn write_policy(out: &mut String, policy: &DiscoveredPolicy) {
    let workload = &policy.workload;
    let mut total = Stats::default();
    for rule in &policy.rules {
        total.merge(&rule.stats);
    }
    out.push_str(&format!(
        "# cordon discover: least privilege for {}, from {}.\n",
        comment_text(&workload.label()),
        total.describe()
    ));
    out.push_str("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n");
    out.push_str(&format!("  name: {}\n", quote(&policy.name)));
    out.push_str(&format!("  namespace: {}\n", quote(&workload.namespace)));
    out.push_str("spec:\n");
    if !workload.selector.is_empty() {
        out.push_str("  selector:\n    matchLabels:\n");
        for (key, value) in &workload.selector {
            out.push_str(&format!("      {}: {}\n", quote(key), quote(value)));
        }
    }
    out.push_str("  action: ALLOW\n");
    if policy.rules.is_empty() {
        out.push_str("  # No caller was believed: this policy allows nothing (Istio's allow-nothing policy).\n");
        return;
    }
    out.push_str("  rules:\n");
    for rule in &policy.rules {
        out.push_str(&format!(
            "  # {}: {}\n",
            comment_text(&rule.principal),
            rule.stats.describe()
        ));
        out.push_str("  - from:\n    - source:\n        principals:\n");
        out.push_str(&format!("        - {}\n", quote(&rule.principal)));
        out.push_str("    to:\n");
        for operation in &rule.operations {
            out.push_str("    - operation:\n");
            if !rule.hosts.is_empty() {
                out.push_str("        hosts:\n");
                for host in &rule.hosts {
                    out.push_str(&format!("        - {}\n", quote(host)));
                }
            }
            if !rule.ports.is_empty() {
                out.push_str("        ports:\n");
                for port in &rule.ports {
                    out.push_str(&format!("        - \"{port}\"\n"));
                }
            }
            out.push_str("        methods:\n");
            for method in &operation.methods {
                out.push_str(&format!("        - {}\n", quote(method)));
            }
            out.push_str("        paths:\n");
            for (path, stats) in &operation.paths {
                out.push_str(&format!(
                    "        - {}  # {}\n",
                    quote(path),
                    stats.describe()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn line(principal: Option<&str>, app: &str, method: &str, path: &str, time: &str) -> String {
        let source = match principal {
            Some(p) => format!(r#"{{"principal":"spiffe://cluster.local/ns/{p}"}}"#),
            None => "{}".to_string(),
        };
        format!(
            r#"{{"source":{source},"destination":{{"port":8080,"namespace":"shop","labels":{{"app":"{app}","version":"v1"}}}},"request":{{"method":"{method}","path":"{path}","host":"{app}.shop:8080"}},"time":"{time}"}}"#
        )
    }

    fn discover(lines: &[String], options: DiscoverOptions) -> Discovered {
        let mut discovery = Discovery::new(options);
        for line in lines {
            discovery.add_line(line.as_bytes()).unwrap();
        }
        discovery.finish()
    }

    #[test]
    fn one_policy_per_workload_one_rule_per_principal() {
        let lines = vec![
            line(
                Some("shop/sa/frontend"),
                "users",
                "GET",
                "/users/123",
                "2026-11-27T01:00:00Z",
            ),
            line(
                Some("shop/sa/frontend"),
                "users",
                "GET",
                "/users/456?x=1",
                "2026-11-27T02:00:00Z",
            ),
            line(
                Some("shop/sa/frontend"),
                "users",
                "GET",
                "/users/me",
                "2026-11-27T03:00:00Z",
            ),
            line(
                Some("shop/sa/admin"),
                "users",
                "POST",
                "/users/export",
                "2026-11-27T04:00:00Z",
            ),
            line(None, "users", "GET", "/users/1", "2026-11-27T05:00:00Z"),
            line(
                Some("shop/sa/frontend"),
                "users",
                "GET",
                "/users/%2F",
                "2026-11-27T05:00:00Z",
            ),
        ];
        let discovered = discover(&lines, DiscoverOptions::default());
        assert_eq!(discovered.policies.len(), 1);
        let policy = &discovered.policies[0];
        assert_eq!(policy.name, "users-cordon-allow");
        assert_eq!(policy.workload.selector.len(), 1);
        assert_eq!(policy.rules.len(), 2);
        let admin = &policy.rules[0];
        assert_eq!(admin.principal, "cluster.local/ns/shop/sa/admin");
        assert_eq!(admin.operations[0].methods, vec!["POST"]);
        assert_eq!(admin.operations[0].paths[0].0, "/users/export");
        let frontend = &policy.rules[1];
        let paths: Vec<&str> = frontend.operations[0]
            .paths
            .iter()
            .map(|(path, _)| path.as_str())
            .collect();
        assert_eq!(paths, vec!["/users/me", "/users/{*}"]);
        assert_eq!(frontend.operations[0].paths[1].1.count, 2);
        assert_eq!(frontend.hosts, vec!["users.shop:8080"]);
        assert_eq!(frontend.ports, vec![8080]);
        assert_eq!(discovered.summary.plaintext.values().sum::<u64>(), 1);
        assert_eq!(discovered.summary.path_rejected, 1);
        assert_eq!(discovered.summary.granted, 4);

        let yaml = discovered.to_yaml();
        assert!(yaml.contains("# cluster.local/ns/shop/sa/frontend: 3 requests, first seen 2026-11-27T01:00:00Z, last seen 2026-11-27T03:00:00Z"), "{yaml}");
        let documents = crate::sources::parse_documents(&yaml).unwrap();
        let values: Vec<serde_json::Value> = documents.into_iter().map(|d| d.value).collect();
        cordon_engine::PolicySet::compile(&values, cordon_engine::Options::default()).unwrap();
    }

    #[test]
    fn window_and_minimum_counts() {
        let mut lines = Vec::new();
        for hour in 0..5 {
            lines.push(line(
                Some("shop/sa/a"),
                "x",
                "GET",
                "/a",
                &format!("2026-11-27T0{hour}:00:00Z"),
            ));
        }
        lines.push(line(
            Some("shop/sa/b"),
            "x",
            "GET",
            "/b",
            "2026-11-27T04:00:00Z",
        ));
        lines.push(line(
            Some("shop/sa/c"),
            "y",
            "GET",
            "/c",
            "2026-11-20T04:00:00Z",
        ));
        let options = DiscoverOptions {
            since: parse_rfc3339("2026-11-27T01:00:00Z"),
            min_count: 2,
            ..DiscoverOptions::default()
        };
        let discovered = discover(&lines, options);
        assert_eq!(discovered.summary.outside_window, 2);
        assert_eq!(
            discovered.summary.unbelieved,
            vec![(
                "cluster.local/ns/shop/sa/b".to_string(),
                "shop/x".to_string(),
                1
            )]
        );
        // Workload y only had traffic outside the window: it is not known at all.
        assert_eq!(discovered.policies.len(), 1);
        assert_eq!(discovered.policies[0].rules.len(), 1);
        assert_eq!(discovered.policies[0].rules[0].stats.count, 4);
    }

    #[test]
    fn workloads_without_believed_callers_allow_nothing() {
        let lines = vec![line(None, "db", "GET", "/", "2026-11-27T01:00:00Z")];
        let discovered = discover(&lines, DiscoverOptions::default());
        assert_eq!(discovered.policies.len(), 1);
        assert!(discovered.policies[0].rules.is_empty());
        let yaml = discovered.to_yaml();
        assert!(yaml.contains("allows nothing"));
        assert!(!yaml.contains("rules:"));
        let off = discover(
            &lines,
            DiscoverOptions {
                allow_nothing_for_unseen: false,
                ..DiscoverOptions::default()
            },
        );
        assert!(off.policies.is_empty());
    }

    #[test]
    fn json_formatted_envoy_logs() {
        let record = line(Some("shop/sa/a"), "x", "GET", "/a", "2026-11-27T01:00:00Z");
        let log = serde_json::json!({
            "time": "2026-11-27 01:00:00.000",
            "level": "info",
            "msg": format!("wasm log cordon: cordon.decision {record}"),
        })
        .to_string();
        let discovered = discover(&[log], DiscoverOptions::default());
        assert_eq!(discovered.summary.granted, 1);
    }

    #[test]
    fn selectors_prefer_app() {
        let labels = [("version", "v1"), ("app", "x"), ("tier", "web")];
        assert_eq!(selector_labels(labels.iter().copied()), vec![("app", "x")]);
        let labels = [("version", "v1"), ("tier", "web"), ("role", "db")];
        assert_eq!(
            selector_labels(labels.iter().copied()),
            vec![("role", "db"), ("tier", "web")]
        );
    }
}
