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
//! Learned only from requests the proxy forwarded: a decision record that says the filter
//! refused the request (`allowed: false`, status 403, 400 or 431) is never learned from,
//! and a record without a decision counts as forwarded.
//!
//! Observed values are data, never patterns. A method, host or principal holding `*`
//! (which Istio reads as presence, prefix or suffix), and a path holding `*`, `{` or `}`
//! (wildcards and templates), are not learned: [`Summary::unexpressible`] counts them, with
//! examples. A path whose normalization changed its meaning (a `.` or `..` segment, also
//! spelled `%2e` or `..;x`, a `\`, or an escaped slash that the mode decodes:
//! `/public/%2e%2e/admin`) is not learned either, so it never becomes a grant on `/admin`:
//! [`Summary::suspicious`]. Request headers are never learned.
//!
//! What else is never granted: requests without a verified peer identity (plaintext, or a
//! peer certificate whose URI SAN is not a valid SPIFFE ID), requests whose path
//! normalization rejects, records outside the learning window, principals outside the
//! chosen trust domains, and flows below the minimum counts. All of them are counted in
//! the [`Summary`].
//!
//! **Bounded memory.** The aggregate holds, per destination workload, one entry per
//! (caller, method, path template): identifiers in paths (`/orders/8812`, UUIDs, hashes)
//! become `{*}` as records arrive ([`templating::template_path`]), so memory grows with the
//! operations, not with the requests. Paths whose varying segment is not an identifier
//! (`/users/alice`, `/users/bob`, …) stay literal until [`Discovery::finish`] merges them
//! ([`templating::generalize`]); so they cannot grow without bound, a workload that reaches
//! [`DiscoverOptions::max_paths`] entries has its paths generalized at once (the same
//! function over what was read so far), and if that does not bring it under the bound, new
//! entries of that workload are not learned and are counted ([`Summary::path_limit`]).
//! Below the bound nothing changes: the policies are exactly those of generalizing once at
//! the end. Past it they can differ: a literal read after the early generalization stays
//! apart from the `{*}` it would have joined until the workload fills again (the grant is
//! the same when its methods are), and merged aggregates ([`Discovery::merge`]) may have
//! been generalized at other points than one aggregate over all records. The summary names
//! such workloads ([`Summary::generalized_early`]). [`Discovery::to_state`] writes the
//! aggregate as data and [`Discovery::from_state`] reads it back (`cordon collect`'s
//! snapshots, `cordon discover --merge`).
//!
//! Every namespace the traffic maps gets an allow-nothing policy ([`DEFAULT_DENY`],
//! `spec: {}`, Istio's documented pattern) unless [`DiscoverOptions::default_deny`] is off:
//! with it, a workload that received no learnable request is closed, and the ALLOW
//! policies alone say what is granted. [`Summary::closed`] lists such workloads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

/// Examples kept of each kind of record that was not learned.
const EXAMPLES: usize = 3;

/// `metadata.name` of the allow-nothing policy written in each mapped namespace.
pub const DEFAULT_DENY: &str = "default-deny";

/// The longest path the engine examines by default (`limits.max_path_bytes`).
const MAX_PATH_BYTES: usize = 8192;

/// (caller, method, path template) entries held per destination workload by default
/// ([`DiscoverOptions::max_paths`]).
pub const MAX_PATHS: usize = 10_000;

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
    /// believed caller (otherwise such a workload gets no policy and stays open). Not
    /// needed, and not written, where [`DiscoverOptions::default_deny`] closes its
    /// namespace.
    pub allow_nothing_for_unseen: bool,
    /// Write an allow-nothing policy ([`DEFAULT_DENY`], `spec: {}`) in every namespace the
    /// traffic maps (but the root namespace, where it would close the whole mesh), so
    /// workloads that received no learnable request are closed.
    pub default_deny: bool,
    /// How the mesh normalizes paths before policies see them (`--config`); a path it
    /// rejects is never granted.
    pub path_normalization: PathNormalization,
    /// The longest path the filter examines (`limits.max_path_bytes`); longer ones are
    /// rejected, never granted.
    pub max_path_bytes: usize,
    /// The most (caller, method, path template) entries held per destination workload: the
    /// bound on the aggregate's memory ([`Discovery`], "Bounded memory"). 0: no bound.
    pub max_paths: usize,
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
            default_deny: true,
            path_normalization: PathNormalization::default(),
            max_path_bytes: MAX_PATH_BYTES,
            max_paths: MAX_PATHS,
        }
    }
}

/// A request count and when the requests were seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Clone, Default)]
struct Flow {
    stats: Stats,
    methods: Vec<(String, HashMap<String, Stats>)>,
    hosts: Distinct<String>,
    ports: Distinct<u16>,
}

/// What was read and what was left out. The lists and counts that [`Discovery::finish`]
/// fills are not part of the aggregate's state ([`DiscoveryState`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Forwarded requests with a value a policy would read as syntax, per field (`method`,
    /// `path`, `host`, `principal`): not learned.
    pub unexpressible: BTreeMap<String, Skipped>,
    /// Forwarded requests whose path normalization changed the meaning of the path
    /// (dot segments, backslashes, decoded escaped slashes): not learned.
    pub suspicious: Skipped,
    /// Plaintext requests (no peer identity), per workload.
    pub plaintext: BTreeMap<String, u64>,
    /// Requests whose peer identity is not a valid SPIFFE ID, per workload.
    pub invalid_identity: BTreeMap<String, u64>,
    /// Requests a decision log says were refused, per (identity, workload).
    #[serde(with = "pairs")]
    pub denied: BTreeMap<(String, String), u64>,
    /// Requests from principals outside `--trust-domain`, per trust domain.
    pub foreign_trust_domain: BTreeMap<String, u64>,
    /// Requests aggregated (before the minimum counts).
    pub aggregated: u64,
    /// Aggregated requests that a decision log says passed only because nothing was
    /// enforced or only in dry run.
    pub dry_run_only: u64,
    /// Requests granted by the written rules.
    #[serde(skip)]
    pub granted: u64,
    /// Flows (principal, workload, requests) below the minimum counts.
    #[serde(skip)]
    pub unbelieved: Vec<(String, String, u64)>,
    /// Requests in operations below `min_operation_count` within believed flows.
    #[serde(skip)]
    pub dropped_operations: u64,
    /// Trust domains of the granted principals, with their request counts.
    #[serde(skip)]
    pub trust_domains: BTreeMap<String, u64>,
    /// Time range of the aggregated requests.
    pub window: Stats,
    /// Other things to know (namespace-wide selectors, skipped workloads).
    #[serde(skip)]
    pub notes: Vec<String>,
    /// Namespaces given an allow-nothing policy ([`DEFAULT_DENY`]).
    #[serde(skip)]
    pub default_deny: Vec<String>,
    /// Workloads the traffic names (as a destination) that end up closed: no learned rule
    /// grants them anything, and a default-deny or allow-nothing policy applies.
    #[serde(skip)]
    pub closed: Vec<String>,
    /// Workloads the traffic names that no learned policy covers: they stay open (Istio
    /// allows everything where no policy applies). Only with `default_deny` off, or in the
    /// root namespace.
    #[serde(skip)]
    pub open: Vec<String>,
    /// New (caller, method, path) entries not learned because their workload already held
    /// [`DiscoverOptions::max_paths`] entries after generalizing them.
    pub path_limit: Skipped,
    /// Workloads whose paths were generalized while reading, because they reached
    /// [`DiscoverOptions::max_paths`] entries, with how often.
    pub generalized_early: BTreeMap<String, u64>,
}

/// Records of one kind that were not learned: how many, and the first few.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    /// Records.
    pub count: u64,
    /// The first [`EXAMPLES`] of them.
    pub examples: Vec<SkippedRecord>,
}

impl Skipped {
    fn add(&mut self, example: impl FnOnce() -> SkippedRecord) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }

    fn merge(&mut self, other: &Skipped) {
        self.count += other.count;
        for example in &other.examples {
            if self.examples.len() < EXAMPLES {
                self.examples.push(example.clone());
            }
        }
    }
}

/// What a record that was not learned held, as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedRecord {
    /// `source.principal`.
    pub principal: Option<String>,
    /// The destination workload's label (`namespace/app`).
    pub workload: String,
    /// `request.method`.
    pub method: Option<String>,
    /// `request.path`, raw.
    pub path: Option<String>,
    /// The path after normalization, when it was normalized.
    pub normalized: Option<String>,
    /// `request.host`.
    pub host: Option<String>,
    /// Why it was not learned.
    pub reason: String,
}

impl SkippedRecord {
    fn of(record: &LiteRecord<'_>, workload: String, reason: String) -> SkippedRecord {
        SkippedRecord {
            principal: record.peer_identity().map(str::to_string),
            workload,
            method: record.method().map(str::to_string),
            path: record.path().map(str::to_string),
            normalized: None,
            host: record.host().map(str::to_string),
            reason,
        }
    }

    /// One line for people: `METHOD path (host) from principal -> workload: reason`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} {}",
            self.method.as_deref().unwrap_or("(no method)"),
            self.path.as_deref().unwrap_or("(no path)")
        );
        if let Some(normalized) = &self.normalized {
            text.push_str(&format!(" (normalized {normalized})"));
        }
        if let Some(host) = &self.host {
            text.push_str(&format!(" host {host}"));
        }
        text.push_str(&format!(
            " from {} -> {}: {}",
            self.principal.as_deref().unwrap_or("(no identity)"),
            self.workload,
            self.reason
        ));
        text
    }

    /// The example as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "principal": self.principal,
            "workload": self.workload,
            "method": self.method,
            "path": self.path,
            "normalized_path": self.normalized,
            "host": self.host,
            "reason": self.reason,
        })
    }
}

/// The streaming aggregator behind `cordon discover`: [`Discovery::add_record`] (or
/// [`Discovery::add_line`]) as records arrive, [`Discovery::merge`] to combine aggregates
/// read apart, [`Discovery::policies`] for the policies so far, [`Discovery::finish`] at
/// the end.
#[derive(Debug, Clone)]
pub struct Discovery {
    options: DiscoverOptions,
    workloads: Vec<WorkloadKey>,
    workload_index: HashMap<String, u32>,
    raw_workload_index: HashMap<String, u32>,
    principals: Vec<String>,
    principal_index: HashMap<String, u32>,
    flows: HashMap<(u32, u32), Flow>,
    /// Per workload: (caller, method, path) entries held, and new ones since the last
    /// early generalization ([`DiscoverOptions::max_paths`]).
    held: Vec<Held>,
    key: String,
    normalized: String,
    templated: String,
    summary: Summary,
}

#[derive(Debug, Clone, Copy, Default)]
struct Held {
    entries: usize,
    added: usize,
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

/// One ALLOW policy for one workload, or a namespace's allow-nothing policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPolicy {
    /// `metadata.name`.
    pub name: String,
    /// The workload (its namespace is the policy's); for a default-deny policy, the
    /// namespace and no selector.
    pub workload: WorkloadKey,
    /// Rules, sorted by principal; empty: an allow-nothing policy.
    pub rules: Vec<DiscoveredRule>,
    /// A namespace's default-deny policy ([`DEFAULT_DENY`]), written `spec: {}`.
    pub default_deny: bool,
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
            held: Vec::new(),
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
        if method.is_empty() {
            summary.incomplete += 1;
            return;
        }
        if raw_path.len() > self.options.max_path_bytes {
            summary.path_rejected += 1;
            return;
        }
        // Values a policy would read as syntax are not learned (module documentation).
        let syntax = if method.contains('*') {
            Some(("method", "holds `*`, which a policy reads as a wildcard"))
        } else if record.host().is_some_and(|host| host.contains('*')) {
            Some(("host", "holds `*`, which a policy reads as a wildcard"))
        } else if id.principal().contains('*') {
            Some(("principal", "holds `*`, which a policy reads as a wildcard"))
        } else {
            None
        };
        if let Some((field, reason)) = syntax {
            summary
                .unexpressible
                .entry(field.to_string())
                .or_default()
                .add(|| SkippedRecord::of(record, label(), format!("{field} {reason}")));
            return;
        }
        let mode = self.options.path_normalization;
        let path = match normalize(raw_path, mode, &mut self.normalized) {
            Ok(path) => path,
            Err(_) => {
                summary.path_rejected += 1;
                return;
            }
        };
        if let Some(reason) = templating::unlearnable_path(path) {
            summary
                .unexpressible
                .entry("path".to_string())
                .or_default()
                .add(|| {
                    let mut example = SkippedRecord::of(record, label(), format!("path {reason}"));
                    example.normalized = Some(path.to_string());
                    example
                });
            return;
        }
        if let Some(reason) = meaning_changed(raw_path, path, mode) {
            summary.suspicious.add(|| {
                let mut example = SkippedRecord::of(record, label(), reason.to_string());
                example.normalized = Some(path.to_string());
                example
            });
            return;
        }
        templating::template_path(path, &self.options.templates, &mut self.templated);
        let principal = self.intern_principal(id.principal());
        let known = self.flows.get(&(workload, principal)).is_some_and(|flow| {
            flow.methods
                .iter()
                .any(|(known, paths)| known == method && paths.contains_key(&self.templated))
        });
        if !known && !self.make_room(workload) {
            let label = self
                .workloads
                .get(workload as usize)
                .map_or_else(String::new, WorkloadKey::label);
            let reason = format!(
                "the workload already holds {} (caller, method, path) entries after generalizing them",
                self.options.max_paths
            );
            self.summary.path_limit.add(|| {
                let mut example = SkippedRecord::of(record, label, reason);
                example.normalized = Some(self.templated.clone());
                example
            });
            return;
        }
        let summary = &mut self.summary;
        summary.aggregated += 1;
        summary.window.add(time);
        if record.allowed_only_in_dry_run() {
            summary.dry_run_only += 1;
        }
        let flow = self.flows.entry((workload, principal)).or_default();
        flow.stats.add(time);
        track(
            &mut flow.hosts,
            record.host().filter(|host| !host.is_empty()),
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
                    if let Some(held) = self.held.get_mut(workload as usize) {
                        held.entries += 1;
                        held.added += 1;
                    }
                }
            }
        }
    }

    /// Whether a new (caller, method, path) entry of `workload` fits under
    /// [`DiscoverOptions::max_paths`]; when the workload is full and has taken in at least
    /// half the bound of new entries since it was last generalized, its paths are
    /// generalized now ([`Discovery::generalize_workload`]) to make room.
    fn make_room(&mut self, workload: u32) -> bool {
        let max = self.options.max_paths;
        if self.held.len() < self.workloads.len() {
            self.held.resize(self.workloads.len(), Held::default());
        }
        if max == 0 {
            return true;
        }
        let Some(held) = self.held.get(workload as usize).copied() else {
            return true;
        };
        if held.entries < max {
            return true;
        }
        if held.added >= max / 2 {
            self.generalize_workload(workload);
        }
        self.held
            .get(workload as usize)
            .is_some_and(|held| held.entries < max)
    }

    /// Generalizes one workload's paths now, as [`Discovery::finish`] would over what was
    /// read so far ([`templating::generalize`] over every caller's paths), and keys its
    /// entries by the templates. Bounds memory; the templates can differ from those of
    /// generalizing once at the end (module documentation, "Bounded memory").
    fn generalize_workload(&mut self, workload: u32) {
        let (ids, uses) = path_uses(
            self.flows
                .iter()
                .filter(|((owner, _), _)| *owner == workload)
                .map(|(_, flow)| flow),
        );
        let generalized = templating::generalize(&uses, &self.options.templates);
        let mut entries = 0;
        for ((owner, _), flow) in &mut self.flows {
            if *owner != workload {
                continue;
            }
            for (_, paths) in &mut flow.methods {
                let before = std::mem::take(paths);
                for (path, stats) in before {
                    let template = ids
                        .get(&path)
                        .and_then(|id| generalized.get(*id))
                        .cloned()
                        .unwrap_or(path);
                    paths.entry(template).or_default().merge(&stats);
                }
                entries += paths.len();
            }
        }
        if let Some(held) = self.held.get_mut(workload as usize) {
            *held = Held { entries, added: 0 };
        }
        if let Some(key) = self.workloads.get(workload as usize) {
            *self
                .summary
                .generalized_early
                .entry(key.label())
                .or_default() += 1;
        }
    }

    /// Counts the entries held per workload again (after a merge or a load), and
    /// generalizes the workloads above the bound.
    fn recount(&mut self) {
        let mut held = vec![Held::default(); self.workloads.len()];
        for ((workload, _), flow) in &self.flows {
            if let Some(held) = held.get_mut(*workload as usize) {
                held.entries += flow
                    .methods
                    .iter()
                    .map(|(_, paths)| paths.len())
                    .sum::<usize>();
            }
        }
        self.held = held;
        if self.options.max_paths == 0 {
            return;
        }
        for workload in 0..self.held.len() {
            let over = self
                .held
                .get(workload)
                .is_some_and(|held| held.entries > self.options.max_paths);
            if over {
                self.generalize_workload(workload as u32);
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
        let index = self.intern_selected(namespace, &selected);
        self.raw_workload_index.insert(raw_key, index);
        index
    }

    /// The index of the workload with this namespace and selector.
    fn intern_selected(&mut self, namespace: &str, selected: &[(&str, &str)]) -> u32 {
        self.key.clear();
        self.key.push_str(namespace);
        for (name, value) in selected {
            self.key.push('\0');
            self.key.push_str(name);
            self.key.push('\u{1}');
            self.key.push_str(value);
        }
        match self.workload_index.get(self.key.as_str()) {
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
        }
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

    /// The policies and summary for what was read so far; reading can go on.
    pub fn policies(&self) -> Discovered {
        self.clone().finish()
    }

    /// Adds an aggregate read apart (another file, another shard, an earlier run) to this
    /// one, as if its records had been read here. Options are this one's.
    pub fn merge(&mut self, other: Discovery) {
        let Discovery {
            workloads,
            principals,
            flows,
            summary,
            ..
        } = other;
        let mut workload_map = Vec::with_capacity(workloads.len());
        for workload in &workloads {
            let selector: Vec<(&str, &str)> = workload
                .selector
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            workload_map.push(self.intern_selected(&workload.namespace, &selector));
        }
        let mut principal_map = Vec::with_capacity(principals.len());
        for principal in &principals {
            principal_map.push(self.intern_principal(principal));
        }
        for ((workload, principal), flow) in flows {
            let (Some(workload), Some(principal)) = (
                workload_map.get(workload as usize),
                principal_map.get(principal as usize),
            ) else {
                continue;
            };
            let mine = self.flows.entry((*workload, *principal)).or_default();
            mine.merge(flow, &self.options);
        }
        self.summary.merge(&summary);
        self.recount();
    }

    fn intern_principal(&mut self, principal: &str) -> u32 {
        match self.principal_index.get(principal) {
            Some(index) => *index,
            None => {
                let index = self.principals.len() as u32;
                self.principals.push(principal.to_string());
                self.principal_index.insert(principal.to_string(), index);
                index
            }
        }
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
        // Namespaces closed by a default-deny policy: every mapped one but the root, where
        // `spec: {}` would close the whole mesh.
        let closed_namespaces: BTreeSet<&str> = if options.default_deny {
            workloads
                .iter()
                .map(|workload| workload.namespace.as_str())
                .filter(|namespace| *namespace != options.root_namespace)
                .collect()
        } else {
            BTreeSet::new()
        };
        if options.default_deny
            && workloads
                .iter()
                .any(|workload| workload.namespace == options.root_namespace)
        {
            summary.notes.push(format!(
                "no default-deny policy in the root namespace `{}`: there it would deny every request in the mesh",
                options.root_namespace
            ));
        }
        for namespace in &closed_namespaces {
            summary.default_deny.push(namespace.to_string());
            policies.push(DiscoveredPolicy {
                name: DEFAULT_DENY.to_string(),
                workload: WorkloadKey {
                    namespace: namespace.to_string(),
                    selector: BTreeMap::new(),
                },
                rules: Vec::new(),
                default_deny: true,
            });
        }
        for (workload, mut flows) in per_workload {
            flows.sort_by(|a, b| a.0.cmp(b.0));
            let label = workload.label();
            let namespace_closed = closed_namespaces.contains(workload.namespace.as_str());
            if workload.selector.is_empty() && workload.namespace == options.root_namespace {
                summary.notes.push(format!(
                    "{label}: destinations without labels in the root namespace would need a mesh-wide policy; none written"
                ));
                summary.open.push(label);
                continue;
            }
            let rules = discover_rules(&options, &label, &flows, &mut summary);
            if rules.is_empty() {
                if namespace_closed {
                    // The namespace's default-deny policy closes it.
                    summary.closed.push(label);
                    continue;
                }
                if !options.allow_nothing_for_unseen {
                    summary.open.push(label);
                    continue;
                }
                summary.closed.push(label.clone());
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
                default_deny: false,
            });
        }
        name_policies(&mut policies);
        policies.sort_by(|a, b| {
            (&a.workload.namespace, !a.default_deny, &a.name).cmp(&(
                &b.workload.namespace,
                !b.default_deny,
                &b.name,
            ))
        });
        summary.unbelieved.sort();
        summary.closed.sort();
        summary.open.sort();
        Discovered { policies, summary }
    }
}

/// The format name of a serialized [`Discovery`] ([`DiscoveryState::format`]).
pub const DISCOVERY_STATE_FORMAT: &str = "cordon.discovery/1";

/// The options that shape the aggregate as records are read (the rest only matter to
/// [`Discovery::finish`]): aggregates merge only when these are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Learning {
    /// [`DiscoverOptions::since`].
    pub since: Option<Millis>,
    /// [`DiscoverOptions::trust_domains`].
    pub trust_domains: Vec<String>,
    /// [`DiscoverOptions::path_normalization`], by its configuration name.
    pub path_normalization: String,
    /// [`DiscoverOptions::max_path_bytes`].
    pub max_path_bytes: usize,
    /// [`TemplateOptions::id_min_length`].
    pub id_min_length: usize,
    /// [`TemplateOptions::id_min_digits`].
    pub id_min_digits: usize,
    /// [`TemplateOptions::max_literal_siblings`].
    pub max_literal_siblings: usize,
    /// [`TemplateOptions::rest_threshold`].
    pub rest_threshold: usize,
    /// [`TemplateOptions::rest_min_depth`].
    pub rest_min_depth: usize,
    /// [`DiscoverOptions::max_hosts`].
    pub max_hosts: usize,
    /// [`DiscoverOptions::max_ports`].
    pub max_ports: usize,
    /// [`DiscoverOptions::max_paths`].
    pub max_paths: usize,
}

impl Learning {
    /// The learning part of the options.
    pub fn of(options: &DiscoverOptions) -> Learning {
        Learning {
            since: options.since,
            trust_domains: options.trust_domains.clone(),
            path_normalization: options.path_normalization.name().to_string(),
            max_path_bytes: options.max_path_bytes,
            id_min_length: options.templates.id_min_length,
            id_min_digits: options.templates.id_min_digits,
            max_literal_siblings: options.templates.max_literal_siblings,
            rest_threshold: options.templates.rest_threshold,
            rest_min_depth: options.templates.rest_min_depth,
            max_hosts: options.max_hosts,
            max_ports: options.max_ports,
            max_paths: options.max_paths,
        }
    }

    /// What differs from `other`, one `field: mine, theirs` each.
    pub fn differences(&self, other: &Learning) -> Vec<String> {
        let (mine, theirs) = (
            serde_json::to_value(self).unwrap_or_default(),
            serde_json::to_value(other).unwrap_or_default(),
        );
        let (Some(mine), Some(theirs)) = (mine.as_object(), theirs.as_object()) else {
            return Vec::new();
        };
        mine.iter()
            .filter(|(field, value)| theirs.get(*field) != Some(*value))
            .map(|(field, value)| {
                format!(
                    "{field}: {value} here, {} there",
                    theirs.get(field).cloned().unwrap_or_default()
                )
            })
            .collect()
    }
}

/// A [`Discovery`] as data: what it holds, bounded as it is (workloads, callers, and per
/// caller and method the path templates with their counts), to write down and read back
/// ([`Discovery::to_state`], [`Discovery::from_state`]) or merge elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryState {
    /// [`DISCOVERY_STATE_FORMAT`].
    pub format: String,
    /// The options the aggregate was learned under.
    pub learned_under: Learning,
    workloads: Vec<WorkloadKey>,
    principals: Vec<String>,
    flows: Vec<FlowState>,
    summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowState {
    workload: u32,
    principal: u32,
    stats: Stats,
    hosts: Distinct<String>,
    ports: Distinct<u16>,
    /// Per method, the path templates, sorted.
    methods: Vec<(String, Vec<(String, Stats)>)>,
}

impl Discovery {
    /// The aggregate as data ([`DiscoveryState`]), in a stable order.
    pub fn to_state(&self) -> DiscoveryState {
        let mut flows: Vec<FlowState> = self
            .flows
            .iter()
            .map(|((workload, principal), flow)| {
                let mut methods: Vec<(String, Vec<(String, Stats)>)> = flow
                    .methods
                    .iter()
                    .map(|(method, paths)| {
                        let mut paths: Vec<(String, Stats)> = paths
                            .iter()
                            .map(|(path, stats)| (path.clone(), *stats))
                            .collect();
                        paths.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                        (method.clone(), paths)
                    })
                    .collect();
                methods.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                FlowState {
                    workload: *workload,
                    principal: *principal,
                    stats: flow.stats,
                    hosts: flow.hosts.clone(),
                    ports: flow.ports.clone(),
                    methods,
                }
            })
            .collect();
        flows.sort_unstable_by_key(|flow| (flow.workload, flow.principal));
        DiscoveryState {
            format: DISCOVERY_STATE_FORMAT.to_string(),
            learned_under: Learning::of(&self.options),
            workloads: self.workloads.clone(),
            principals: self.principals.clone(),
            flows,
            summary: self.summary.clone(),
        }
    }

    /// Reads an aggregate back, to go on reading or to merge. `Err` (a sentence) when the
    /// state is of another format, was learned under other [`Learning`] options than
    /// `options`, or does not hold together.
    pub fn from_state(
        options: DiscoverOptions,
        state: DiscoveryState,
    ) -> Result<Discovery, String> {
        if state.format != DISCOVERY_STATE_FORMAT {
            return Err(format!(
                "an aggregate of format `{}`; this cordon reads `{DISCOVERY_STATE_FORMAT}`",
                state.format
            ));
        }
        let differences = Learning::of(&options).differences(&state.learned_under);
        if !differences.is_empty() {
            return Err(format!(
                "the aggregate was learned under other options ({}); use the same options, or another state",
                differences.join("; ")
            ));
        }
        let mut discovery = Discovery::new(options);
        let mut workload_map = Vec::with_capacity(state.workloads.len());
        for workload in &state.workloads {
            let selector: Vec<(&str, &str)> = workload
                .selector
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            workload_map.push(discovery.intern_selected(&workload.namespace, &selector));
        }
        let mut principal_map = Vec::with_capacity(state.principals.len());
        for principal in &state.principals {
            principal_map.push(discovery.intern_principal(principal));
        }
        for flow in state.flows {
            let (Some(workload), Some(principal)) = (
                workload_map.get(flow.workload as usize),
                principal_map.get(flow.principal as usize),
            ) else {
                return Err(format!(
                    "a flow names workload {} and caller {}, beyond the {} workloads and {} callers held",
                    flow.workload,
                    flow.principal,
                    workload_map.len(),
                    principal_map.len()
                ));
            };
            let loaded = Flow {
                stats: flow.stats,
                methods: flow
                    .methods
                    .into_iter()
                    .map(|(method, paths)| (method, paths.into_iter().collect()))
                    .collect(),
                hosts: flow.hosts,
                ports: flow.ports,
            };
            let options = discovery.options.clone();
            discovery
                .flows
                .entry((*workload, *principal))
                .or_default()
                .merge(loaded, &options);
        }
        discovery.summary = state.summary;
        discovery.recount();
        Ok(discovery)
    }
}

/// `BTreeMap<(String, String), u64>` as a list of `[a, b, count]` (JSON maps have string
/// keys only).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<(String, String), u64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter().map(|((a, b), count)| (a, b, count)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<(String, String), u64>, D::Error> {
        let list: Vec<(String, String, u64)> = Vec::deserialize(deserializer)?;
        let mut map = BTreeMap::new();
        for (a, b, count) in list {
            *map.entry((a, b)).or_default() += count;
        }
        Ok(map)
    }
}

/// Why normalization changed what the path means, if it did: it resolved a dot segment
/// (`.`, `..`, also spelled `%2e` or with `;` parameters), turned a `\` into a separator,
/// or decoded an escaped slash. Merged slashes, decoded unreserved characters and a
/// dropped query leave the meaning alone. Dot segments are judged by the engine's own
/// normalization, applied to each raw segment on its own: a segment is a dot segment when
/// it normalizes to nothing.
fn meaning_changed(raw: &str, normalized: &str, mode: PathNormalization) -> Option<&'static str> {
    let raw = raw.split_once(['?', '#']).map_or(raw, |(path, _)| path);
    if mode != PathNormalization::None && raw == normalized {
        // Nothing was rewritten, so nothing was resolved.
        return None;
    }
    if raw.contains('\\') {
        return Some("path holds `\\`, which normalization turns into `/`: the request aimed elsewhere than it reads");
    }
    let lower = |text: &str| text.to_ascii_lowercase();
    if mode == PathNormalization::DecodeAndMergeSlashes
        && (lower(raw).contains("%2f") || lower(raw).contains("%5c"))
    {
        return Some("path holds an escaped slash, which normalization decodes into a separator");
    }
    let mut buffer = String::new();
    let mut segment_path = String::new();
    for segment in raw.split('/').filter(|segment| !segment.is_empty()) {
        if !segment.contains(['.', '%']) {
            continue;
        }
        segment_path.clear();
        segment_path.push('/');
        segment_path.push_str(segment);
        match normalize(&segment_path, PathNormalization::Base, &mut buffer) {
            Ok("/") => {
                return Some(
                    "path has a dot segment (`.`, `..`, `%2e`, `..;`): normalization moved it to another path",
                )
            }
            Ok(_) => {}
            Err(_) => return Some("path has a segment the normalization rejects"),
        }
    }
    None
}

impl Flow {
    fn merge(&mut self, other: Flow, options: &DiscoverOptions) {
        self.stats.merge(&other.stats);
        for (method, paths) in other.methods {
            let mine = match self.methods.iter().position(|(known, _)| *known == method) {
                Some(at) => self.methods.get_mut(at).map(|(_, paths)| paths),
                None => {
                    self.methods.push((method, HashMap::new()));
                    self.methods.last_mut().map(|(_, paths)| paths)
                }
            };
            if let Some(mine) = mine {
                for (path, stats) in paths {
                    mine.entry(path).or_default().merge(&stats);
                }
            }
        }
        merge_distinct(
            &mut self.hosts,
            other.hosts,
            options.max_hosts,
            |a: &String, b: &String| a.eq_ignore_ascii_case(b),
        );
        merge_distinct(
            &mut self.ports,
            other.ports,
            options.max_ports,
            |a: &u16, b: &u16| a == b,
        );
    }
}

fn merge_distinct<T>(
    mine: &mut Distinct<T>,
    theirs: Distinct<T>,
    cap: usize,
    same: impl Fn(&T, &T) -> bool,
) {
    mine.missing |= theirs.missing;
    if mine.overflow || theirs.overflow {
        mine.overflow = true;
        mine.values.clear();
        return;
    }
    for value in theirs.values {
        if !mine.values.iter().any(|known| same(known, &value)) {
            if mine.values.len() >= cap {
                mine.overflow = true;
                mine.values.clear();
                return;
            }
            mine.values.push(value);
        }
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

/// Every path of `flows`, each with the methods it was used with, for
/// [`templating::generalize`]; and each path's index in that list.
fn path_uses<'f>(flows: impl Iterator<Item = &'f Flow>) -> (HashMap<String, usize>, Vec<PathUse>) {
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut uses: Vec<PathUse> = Vec::new();
    for flow in flows {
        for (method, paths) in &flow.methods {
            for path in paths.keys() {
                let id = *ids.entry(path.clone()).or_insert_with(|| {
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
    (ids, uses)
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
    let (ids, uses) = path_uses(believed.iter().map(|(_, flow)| *flow));
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
    let mut taken: BTreeSet<(String, String)> = policies
        .iter()
        .filter(|policy| policy.default_deny)
        .map(|policy| (policy.workload.namespace.clone(), policy.name.clone()))
        .collect();
    for policy in policies.iter_mut().filter(|policy| !policy.default_deny) {
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
        for (field, skipped) in &self.unexpressible {
            left_out.push(format!(
                "{field} holding policy syntax (not learned): {}",
                skipped.count
            ));
            for example in &skipped.examples {
                left_out.push(format!("  e.g. {}", example.describe()));
            }
        }
        if self.suspicious.count > 0 {
            left_out.push(format!(
                "suspicious: path changed meaning under normalization (not learned): {}",
                self.suspicious.count
            ));
            for example in &self.suspicious.examples {
                left_out.push(format!("  e.g. {}", example.describe()));
            }
        }
        if self.path_limit.count > 0 {
            left_out.push(format!(
                "new paths of a workload already holding {} (caller, method, path) entries (--max-paths): {}",
                options.max_paths, self.path_limit.count
            ));
            for example in &self.path_limit.examples {
                left_out.push(format!("  e.g. {}", example.describe()));
            }
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
        if !self.default_deny.is_empty() {
            line(format!(
                "  default deny (allow-nothing policy `{DEFAULT_DENY}`) in: {}",
                self.default_deny.join(", ")
            ));
        }
        if !self.closed.is_empty() {
            line(format!(
                "  closed (no learned caller; every request denied): {}",
                abbreviated(&self.closed)
            ));
        }
        if !self.open.is_empty() {
            line(format!(
                "  WARNING: left open (no policy applies, so Istio allows every request): {}",
                abbreviated(&self.open)
            ));
        }
        for (workload, count) in &self.generalized_early {
            line(format!(
                "  note: {workload}: reached {} (caller, method, path) entries, so its paths were generalized while reading ({count} time{}); the templates can differ from generalizing once at the end",
                options.max_paths,
                if *count == 1 { "" } else { "s" }
            ));
        }
        for note in &self.notes {
            line(format!("  note: {note}"));
        }
        out
    }

    /// The summary as one JSON object (`cordon discover --summary-format json`).
    pub fn to_json(&self) -> serde_json::Value {
        let skipped = |skipped: &Skipped| {
            serde_json::json!({
                "count": skipped.count,
                "examples": skipped.examples.iter().map(SkippedRecord::to_json).collect::<Vec<_>>(),
            })
        };
        let per_workload = |map: &BTreeMap<String, u64>| serde_json::json!(map);
        serde_json::json!({
            "lines": self.lines,
            "records": self.records,
            "bad_lines": self.unreadable,
            "first_bad_line": self.first_unreadable,
            "log_lines": self.log_lines,
            "aggregated": self.aggregated,
            "granted": self.granted,
            "first_seen": self.window.first.map(format_rfc3339),
            "last_seen": self.window.last.map(format_rfc3339),
            "trust_domains": self.trust_domains,
            "not_learned": {
                "outside_window": self.outside_window,
                "no_destination": self.no_destination,
                "incomplete": self.incomplete,
                "path_rejected": self.path_rejected,
                "plaintext": per_workload(&self.plaintext),
                "invalid_identity": per_workload(&self.invalid_identity),
                "refused": self.denied.iter().map(|((identity, workload), count)| serde_json::json!({
                    "identity": identity, "workload": workload, "requests": count,
                })).collect::<Vec<_>>(),
                "foreign_trust_domain": per_workload(&self.foreign_trust_domain),
                "unexpressible": self.unexpressible.iter().map(|(field, found)| (field.clone(), skipped(found))).collect::<serde_json::Map<_, _>>(),
                "suspicious": skipped(&self.suspicious),
                "path_limit": skipped(&self.path_limit),
                "dropped_operations": self.dropped_operations,
                "unbelieved": self.unbelieved.iter().map(|(principal, workload, count)| serde_json::json!({
                    "principal": principal, "workload": workload, "requests": count,
                })).collect::<Vec<_>>(),
            },
            "dry_run_only": self.dry_run_only,
            "without_time": self.without_time,
            "default_deny": self.default_deny,
            "closed": self.closed,
            "open": self.open,
            "notes": self.notes,
            "generalized_early": self.generalized_early,
        })
    }

    /// Adds another summary's counts (for [`Discovery::merge`]); notes and the lists
    /// [`Discovery::finish`] fills are left alone.
    fn merge(&mut self, other: &Summary) {
        let add = |mine: &mut BTreeMap<String, u64>, theirs: &BTreeMap<String, u64>| {
            for (key, count) in theirs {
                *mine.entry(key.clone()).or_default() += count;
            }
        };
        self.lines += other.lines;
        self.records += other.records;
        self.unreadable += other.unreadable;
        self.log_lines += other.log_lines;
        if self.first_unreadable.is_none() {
            self.first_unreadable.clone_from(&other.first_unreadable);
        }
        self.outside_window += other.outside_window;
        self.without_time += other.without_time;
        self.no_destination += other.no_destination;
        self.incomplete += other.incomplete;
        self.path_rejected += other.path_rejected;
        for (field, skipped) in &other.unexpressible {
            self.unexpressible
                .entry(field.clone())
                .or_default()
                .merge(skipped);
        }
        self.suspicious.merge(&other.suspicious);
        add(&mut self.plaintext, &other.plaintext);
        add(&mut self.invalid_identity, &other.invalid_identity);
        for (pair, count) in &other.denied {
            *self.denied.entry(pair.clone()).or_default() += count;
        }
        add(&mut self.foreign_trust_domain, &other.foreign_trust_domain);
        self.aggregated += other.aggregated;
        self.dry_run_only += other.dry_run_only;
        self.window.merge(&other.window);
        self.path_limit.merge(&other.path_limit);
        for (workload, count) in &other.generalized_early {
            *self.generalized_early.entry(workload.clone()).or_default() += count;
        }
    }

    /// Whether nothing learnable was read: no request can be granted, and the policies
    /// (if any) allow nothing.
    pub fn nothing_learned(&self) -> bool {
        self.granted == 0
    }
}

fn abbreviated(items: &[String]) -> String {
    let mut shown: Vec<String> = items.iter().take(SHOWN).cloned().collect();
    if items.len() > SHOWN {
        shown.push(format!("… {} more", items.len() - SHOWN));
    }
    shown.join(", ")
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
    if policy.default_deny {
        out.push_str(&format!(
            "# cordon discover: default deny for namespace {}: this allow-nothing policy applies to\n# every workload there, so only the ALLOW rules below grant anything, and a workload\n# that received no learnable request is closed.\n",
            comment_text(&workload.namespace)
        ));
        out.push_str("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n");
        out.push_str(&format!("  name: {}\n", quote(&policy.name)));
        out.push_str(&format!("  namespace: {}\n", quote(&workload.namespace)));
        out.push_str("spec: {}\n");
        return;
    }
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
    use crate::synthetic::literal_name;

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
        assert_eq!(discovered.policies.len(), 2);
        assert!(discovered.policies[0].default_deny);
        let policy = &discovered.policies[1];
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
        assert_eq!(discovered.policies.len(), 2);
        assert!(discovered.policies[0].default_deny);
        assert_eq!(discovered.policies[1].rules.len(), 1);
        assert_eq!(discovered.policies[1].rules[0].stats.count, 4);
        assert!(discovered.summary.closed.is_empty());
    }

    #[test]
    fn workloads_without_believed_callers_allow_nothing() {
        let lines = vec![line(None, "db", "GET", "/", "2026-11-27T01:00:00Z")];
        let without_default_deny = DiscoverOptions {
            default_deny: false,
            ..DiscoverOptions::default()
        };
        let discovered = discover(&lines, without_default_deny.clone());
        assert_eq!(discovered.policies.len(), 1);
        assert!(discovered.policies[0].rules.is_empty());
        assert_eq!(discovered.summary.closed, vec!["shop/db"]);
        let yaml = discovered.to_yaml();
        assert!(yaml.contains("allows nothing"));
        assert!(!yaml.contains("rules:"));
        let off = discover(
            &lines,
            DiscoverOptions {
                allow_nothing_for_unseen: false,
                ..without_default_deny
            },
        );
        assert!(off.policies.is_empty());
        assert_eq!(off.summary.open, vec!["shop/db"]);
        // With the default deny, the namespace's policy closes it: no second policy.
        let closed = discover(&lines, DiscoverOptions::default());
        assert_eq!(closed.policies.len(), 1);
        assert!(closed.policies[0].default_deny);
        assert_eq!(closed.policies[0].name, DEFAULT_DENY);
        assert_eq!(closed.summary.closed, vec!["shop/db"]);
        assert!(closed.to_yaml().contains("spec: {}\n"));
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

    /// A name without digits: a path segment templating keeps literal.
    fn user_line(app: &str, path: &str) -> String {
        line(Some("shop/sa/a"), app, "GET", path, "2026-11-27T01:00:00Z")
    }

    #[test]
    fn the_state_reads_back_and_reading_goes_on() {
        let lines: Vec<String> = crate::synthetic::Generator::new(600, 5)
            .map(|generated| generated.line)
            .collect();
        let (first, second) = lines.split_at(lines.len() / 3);
        let mut whole = Discovery::new(DiscoverOptions::default());
        let mut part = Discovery::new(DiscoverOptions::default());
        for line in first {
            let _ = whole.add_line(line.as_bytes());
            let _ = part.add_line(line.as_bytes());
        }
        let text = serde_json::to_string(&part.to_state()).unwrap();
        let state: DiscoveryState = serde_json::from_str(&text).unwrap();
        assert_eq!(state, part.to_state());
        let mut back = Discovery::from_state(DiscoverOptions::default(), state).unwrap();
        assert_eq!(back.policies().to_yaml(), part.policies().to_yaml());
        for line in second {
            let _ = whole.add_line(line.as_bytes());
            let _ = back.add_line(line.as_bytes());
        }
        let (whole, back) = (whole.finish(), back.finish());
        assert!(whole.summary.granted > 0);
        assert_eq!(back.to_yaml(), whole.to_yaml());
        assert_eq!(back.summary, whole.summary);
    }

    #[test]
    fn a_state_of_another_format_or_other_options_is_refused() {
        let mut discovery = Discovery::new(DiscoverOptions::default());
        discovery
            .add_line(user_line("cart", "/x").as_bytes())
            .unwrap();
        let mut state = discovery.to_state();
        let other = DiscoverOptions {
            trust_domains: vec!["prod".to_string()],
            ..DiscoverOptions::default()
        };
        let error = Discovery::from_state(other, state.clone()).unwrap_err();
        assert!(error.contains("trust_domains"), "{error}");
        // Options that only matter at the end may differ.
        let finish = DiscoverOptions {
            min_count: 7,
            default_deny: false,
            ..DiscoverOptions::default()
        };
        assert!(Discovery::from_state(finish, state.clone()).is_ok());
        state.format = "cordon.discovery/0".to_string();
        let error = Discovery::from_state(DiscoverOptions::default(), state).unwrap_err();
        assert!(error.contains("cordon.discovery/0"), "{error}");
    }

    #[test]
    fn memory_is_bounded_by_templated_paths() {
        // 20,000 distinct order numbers: one entry from the start.
        let mut discovery = Discovery::new(DiscoverOptions::default());
        for id in 0..20_000 {
            let path = format!("/orders/{}", 100_000 + id * 7);
            discovery
                .add_line(user_line("orders", &path).as_bytes())
                .unwrap();
        }
        assert_eq!(discovery.aggregate_entries(), 1);

        // 20,000 distinct names (literal to templating): generalized when the workload
        // fills, so the aggregate stays under the bound, and the policy still says `{*}`.
        let options = DiscoverOptions {
            max_paths: 1_000,
            ..DiscoverOptions::default()
        };
        let mut bounded = Discovery::new(options.clone());
        let mut largest = 0;
        for id in 0..20_000 {
            let path = format!("/users/{}", literal_name(id));
            bounded
                .add_line(user_line("users", &path).as_bytes())
                .unwrap();
            largest = largest.max(bounded.aggregate_entries());
        }
        assert!(largest <= 1_000, "{largest}");
        let state = serde_json::to_string(&bounded.to_state()).unwrap();
        assert!(state.len() < 200_000, "{} bytes", state.len());
        let discovered = bounded.finish();
        let yaml = discovered.to_yaml();
        assert!(yaml.contains("/users/{*}"), "{yaml}");
        assert_eq!(discovered.summary.granted, 20_000);
        assert_eq!(discovered.summary.path_limit.count, 0);
        assert!(discovered
            .summary
            .generalized_early
            .contains_key("shop/users"));

        // Below the bound: the same as generalizing once at the end.
        let lines: Vec<String> = (0..500)
            .map(|id| user_line("users", &format!("/users/{}", literal_name(id))))
            .collect();
        let unbounded = DiscoverOptions {
            max_paths: 0,
            ..DiscoverOptions::default()
        };
        assert_eq!(
            discover(&lines, options).to_yaml(),
            discover(&lines, unbounded).to_yaml()
        );
    }

    #[test]
    fn entries_that_generalizing_cannot_fold_stop_at_the_bound() {
        // Paths a template cannot hold (`=`) are kept whole and never generalized.
        let options = DiscoverOptions {
            max_paths: 100,
            ..DiscoverOptions::default()
        };
        let mut discovery = Discovery::new(options.clone());
        for id in 0..1_000 {
            let path = format!("/search/q={}", literal_name(id));
            discovery
                .add_line(user_line("search", &path).as_bytes())
                .unwrap();
        }
        assert_eq!(discovery.aggregate_entries(), 100);
        let discovered = discovery.finish();
        assert_eq!(discovered.summary.path_limit.count, 900);
        assert_eq!(discovered.summary.granted, 100);
        let report = discovered.summary.report(&options);
        assert!(report.contains("--max-paths"), "{report}");
    }
}

/// Poisoned observations, default deny and the round trip, checked by deciding requests
/// with the engine against the learned policies.
#[cfg(test)]
mod poison {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use cordon_engine::{Options, PolicySet, TrafficRecord, Workload};
    use serde_json::{json, Value};

    /// A record as JSON: `principal` without scheme (`None`: plaintext).
    fn record(principal: Option<&str>, app: &str, method: &str, path: &str, host: &str) -> Value {
        json!({
            "source": {"principal": principal.map(|p| format!("spiffe://cluster.local/ns/{p}"))},
            "destination": {"port": 8080, "namespace": "shop", "labels": {"app": app, "version": "v1"}},
            "request": {"method": method, "path": path, "host": host},
            "time": "2026-11-27T01:00:00Z",
        })
    }

    fn frontend(method: &str, path: &str) -> Value {
        record(
            Some("shop/sa/frontend"),
            "orders",
            method,
            path,
            "orders.shop",
        )
    }

    fn with_host(mut value: Value, host: &str) -> Value {
        value["request"]["host"] = json!(host);
        value
    }

    fn refused(mut value: Value, status: u16) -> Value {
        value["decision"] = json!({"allowed": false, "enforced": true, "status": status});
        value
    }

    fn learn(records: &[Value], options: DiscoverOptions) -> Discovered {
        let mut discovery = Discovery::new(options);
        for value in records {
            discovery.add_line(value.to_string().as_bytes()).unwrap();
        }
        discovery.finish()
    }

    /// Decides records with the engine against a learned policy set.
    struct Judge {
        policies: Vec<Value>,
        normalization: PathNormalization,
    }

    impl Judge {
        fn of(discovered: &Discovered) -> Judge {
            let yaml = discovered.to_yaml();
            let policies: Vec<Value> = crate::sources::parse_documents(&yaml)
                .unwrap()
                .into_iter()
                .map(|document| document.value)
                .filter(|value| !value.is_null())
                .collect();
            let (_, warnings, errors) = cordon_engine::model::parse_policies(&policies);
            assert!(errors.is_empty(), "{errors:?}\n{yaml}");
            assert!(warnings.is_empty(), "{warnings:?}\n{yaml}");
            Judge {
                policies,
                normalization: PathNormalization::default(),
            }
        }

        fn allowed(&self, value: &Value) -> bool {
            let record = TrafficRecord::from_json(value).unwrap();
            let options = Options {
                workload: Workload {
                    namespace: record.destination_namespace.clone(),
                    labels: record.destination_labels.clone(),
                },
                path_normalization: self.normalization,
                ..Options::default()
            };
            let set = PolicySet::compile(&self.policies, options).unwrap();
            set.evaluate(&record.request(), &mut set.new_scratch())
                .allowed
        }
    }

    fn learnable(value: &Value, options: &DiscoverOptions) -> bool {
        let mut alone = Discovery::new(options.clone());
        alone.add_line(value.to_string().as_bytes()).unwrap();
        alone.summary().aggregated == 1
    }

    /// Each poisoned observation, and a request it would wrongly grant if it were learned
    /// as a pattern.
    fn poisons() -> Vec<(&'static str, Value, Value)> {
        vec![
            (
                "method `*`",
                frontend("*", "/orders/1"),
                frontend("DELETE", "/orders/1"),
            ),
            (
                "method `GET*`",
                frontend("GET*", "/orders/1"),
                frontend("GETX", "/orders/1"),
            ),
            ("path `*`", frontend("GET", "*"), frontend("GET", "/admin")),
            (
                "path `/admin*`",
                frontend("GET", "/admin*"),
                frontend("GET", "/admin/users"),
            ),
            (
                "path `*.json`",
                frontend("GET", "*.json"),
                frontend("GET", "/secrets.json"),
            ),
            (
                "literal `{**}`",
                frontend("GET", "/v1/{**}"),
                frontend("GET", "/v1/admin/keys"),
            ),
            (
                "literal `{*}` in an identifier-looking path",
                frontend("GET", "/orders/{*}/items"),
                frontend("GET", "/orders/777/items"),
            ),
            (
                "host `b*`",
                with_host(frontend("GET", "/orders/1"), "b*"),
                with_host(frontend("GET", "/orders/1"), "billing.internal"),
            ),
            (
                "host `*`",
                with_host(frontend("GET", "/orders/1"), "*"),
                with_host(frontend("GET", "/orders/1"), "evil.example"),
            ),
            (
                "traversal `%2e%2e`",
                frontend("GET", "/public/%2e%2e/admin"),
                frontend("GET", "/admin"),
            ),
            (
                "traversal `..`",
                frontend("GET", "/a/../admin"),
                frontend("GET", "/admin"),
            ),
            (
                "traversal `..;`",
                frontend("GET", "/public/..;/admin"),
                frontend("GET", "/admin"),
            ),
            (
                "traversal `%2E.` to the root",
                frontend("GET", "/%2E./admin/keys"),
                frontend("GET", "/admin/keys"),
            ),
            (
                "refused (403)",
                refused(frontend("DELETE", "/orders/1"), 403),
                frontend("DELETE", "/orders/1"),
            ),
            (
                "refused path (400, allowed missing)",
                {
                    let mut value = frontend("PUT", "/orders/1");
                    value["decision"] = json!({"status": 400});
                    value
                },
                frontend("PUT", "/orders/1"),
            ),
            (
                "refused headers (431)",
                refused(frontend("PATCH", "/orders/1"), 431),
                frontend("PATCH", "/orders/1"),
            ),
            (
                "header value `*`",
                {
                    let mut value = frontend("POST", "/orders/1");
                    value["request"]["headers"] = json!({"x-role": "*"});
                    value
                },
                {
                    let mut value = frontend("GET", "/orders/1");
                    value["request"]["headers"] = json!({"x-role": "admin"});
                    value["request"]["path"] = json!("/orders/1/refund");
                    value
                },
            ),
        ]
    }

    #[test]
    fn poisoned_observations_never_widen_a_learned_policy() {
        let legitimate = frontend("GET", "/orders/1");
        let clean = learn(
            std::slice::from_ref(&legitimate),
            DiscoverOptions::default(),
        );
        let clean_judge = Judge::of(&clean);
        assert!(clean_judge.allowed(&legitimate));
        for (name, poison, probe) in poisons() {
            // The probe is not granted by the clean traffic alone...
            assert!(
                !clean_judge.allowed(&probe),
                "{name}: the probe is too weak"
            );
            // ...nor once the poison is observed alongside it.
            let records = vec![legitimate.clone(), poison.clone()];
            let discovered = learn(&records, DiscoverOptions::default());
            let judge = Judge::of(&discovered);
            assert!(judge.allowed(&legitimate), "{name}");
            assert!(
                !judge.allowed(&probe),
                "{name}: {probe} allowed by\n{}",
                discovered.to_yaml()
            );
            // The header poison is learnable (headers are not learned); every other one
            // is left out and counted.
            let summary = &discovered.summary;
            let left_out = summary.unexpressible.values().map(|s| s.count).sum::<u64>()
                + summary.suspicious.count
                + summary.path_rejected
                + summary.denied.values().sum::<u64>();
            if name.starts_with("header") {
                assert_eq!(left_out, 0, "{name}");
                assert_eq!(summary.granted, 2, "{name}");
            } else {
                assert_eq!(
                    left_out,
                    1,
                    "{name}: {}",
                    summary.report(&DiscoverOptions::default())
                );
                assert_eq!(summary.granted, 1, "{name}");
            }
        }
    }

    #[test]
    fn every_poison_alone_learns_nothing_and_says_why() {
        for (name, poison, probe) in poisons() {
            if name.starts_with("header") {
                continue;
            }
            let discovered = learn(std::slice::from_ref(&poison), DiscoverOptions::default());
            assert!(discovered.summary.nothing_learned(), "{name}");
            let judge = Judge::of(&discovered);
            assert!(!judge.allowed(&probe), "{name}");
            assert!(!judge.allowed(&poison), "{name}");
            // Closed by the namespace's default deny.
            assert_eq!(discovered.summary.closed, vec!["shop/orders"], "{name}");
        }
        let traversal = learn(
            &[frontend("GET", "/public/%2e%2e/admin")],
            DiscoverOptions::default(),
        );
        let example = &traversal.summary.suspicious.examples[0];
        assert_eq!(example.path.as_deref(), Some("/public/%2e%2e/admin"));
        assert_eq!(example.normalized.as_deref(), Some("/admin"));
        let report = traversal.summary.report(&DiscoverOptions::default());
        assert!(report.contains("suspicious"), "{report}");
        assert!(report.contains("/public/%2e%2e/admin"), "{report}");
        let json = traversal.summary.to_json();
        assert_eq!(json["not_learned"]["suspicious"]["count"], 1);
        assert_eq!(
            json["not_learned"]["suspicious"]["examples"][0]["normalized_path"],
            "/admin"
        );
    }

    #[test]
    fn harmless_rewrites_are_still_learned() {
        // Merged slashes, decoded unreserved characters and a query change nothing.
        for path in [
            "//orders/1",
            "/orders/%31",
            "/orders/1?x=../..",
            "/orders/1.json",
        ] {
            let value = frontend("GET", path);
            assert!(learnable(&value, &DiscoverOptions::default()), "{path}");
            let discovered = learn(std::slice::from_ref(&value), DiscoverOptions::default());
            assert!(Judge::of(&discovered).allowed(&value), "{path}");
        }
        // Without normalization the traversal is still suspicious (the backend resolves it).
        let options = DiscoverOptions {
            path_normalization: PathNormalization::None,
            ..DiscoverOptions::default()
        };
        assert!(!learnable(&frontend("GET", "/a/../admin"), &options));
        // A segment a template cannot hold keeps the path exact, and it is still granted.
        let odd = frontend("GET", "/orders/123/a=b");
        let discovered = learn(std::slice::from_ref(&odd), DiscoverOptions::default());
        let judge = Judge::of(&discovered);
        assert!(judge.allowed(&odd));
        assert!(!judge.allowed(&frontend("GET", "/orders/124/a=b")));
    }

    #[test]
    fn workloads_that_received_nothing_are_denied() {
        let records = vec![
            frontend("GET", "/orders/1"),
            // db only received refused requests; payments is never a destination.
            refused(
                record(Some("shop/sa/frontend"), "db", "GET", "/", "db.shop"),
                403,
            ),
        ];
        let probes = [
            record(Some("shop/sa/frontend"), "db", "GET", "/", "db.shop"),
            record(
                Some("shop/sa/frontend"),
                "payments",
                "POST",
                "/pay",
                "payments.shop",
            ),
            record(None, "payments", "GET", "/", "payments.shop"),
        ];
        let discovered = learn(&records, DiscoverOptions::default());
        assert_eq!(discovered.summary.default_deny, vec!["shop"]);
        assert_eq!(discovered.summary.closed, vec!["shop/db"]);
        let judge = Judge::of(&discovered);
        assert!(judge.allowed(&records[0]));
        for probe in &probes {
            assert!(!judge.allowed(probe), "{probe}");
        }
        // Without the default deny they stay open: the check above can fail.
        let open = learn(
            &records,
            DiscoverOptions {
                default_deny: false,
                allow_nothing_for_unseen: false,
                ..DiscoverOptions::default()
            },
        );
        assert_eq!(open.summary.open, vec!["shop/db"]);
        let judge = Judge::of(&open);
        assert!(probes.iter().all(|probe| judge.allowed(probe)));
    }

    #[test]
    fn denials_only_learn_nothing() {
        let records: Vec<Value> = (0..5)
            .map(|i| refused(frontend("GET", &format!("/orders/{i}")), 403))
            .collect();
        let discovered = learn(&records, DiscoverOptions::default());
        assert!(discovered.summary.nothing_learned());
        assert_eq!(discovered.policies.len(), 1);
        assert!(discovered.policies[0].default_deny);
        let judge = Judge::of(&discovered);
        assert!(records
            .iter()
            .all(|value| !judge
                .allowed(&frontend("GET", value["request"]["path"].as_str().unwrap()))));
    }

    #[test]
    fn no_default_deny_in_the_root_namespace() {
        let mut value = frontend("GET", "/x");
        value["destination"]["namespace"] = json!("istio-system");
        let discovered = learn(
            &[value, frontend("GET", "/orders/1")],
            DiscoverOptions::default(),
        );
        assert_eq!(discovered.summary.default_deny, vec!["shop"]);
        assert!(discovered
            .policies
            .iter()
            .all(|policy| !policy.default_deny || policy.workload.namespace == "shop"));
    }

    /// SplitMix64, for the generated poison.
    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % bound
        }
    }

    /// Generated mesh traffic with poison mixed in, over several seeds: every learnable
    /// request is allowed by the learned set, and no poison widens the flow it rode on.
    #[test]
    fn generated_traffic_round_trips_and_poison_never_widens() {
        for seed in [1u64, 7, 2026] {
            let mut random = Random(seed);
            let mut records: Vec<Value> = Vec::new();
            let mut probes: Vec<(String, Value)> = Vec::new();
            for generated in crate::synthetic::Generator::new(600, seed) {
                let Ok(Line::Record(record)) =
                    cordon_engine::traffic::read_line(generated.line.as_bytes())
                else {
                    continue;
                };
                let value = record.to_json();
                let forwarded = !generated.line.contains("\"allowed\":false");
                records.push(if forwarded {
                    value.clone()
                } else {
                    refused(value.clone(), 403)
                });
                if !forwarded || record.principal.is_none() || random.below(8) != 0 {
                    continue;
                }
                let mut poison = value.clone();
                let mut probe = value.clone();
                let kind = random.below(5);
                match kind {
                    0 => {
                        poison["request"]["method"] = json!("*");
                        probe["request"]["method"] = json!("PURGE");
                    }
                    1 => {
                        poison["request"]["path"] = json!("*");
                        probe["request"]["path"] = json!("/zz-probe");
                    }
                    2 => {
                        poison["request"]["path"] = json!("/v1/{**}");
                        probe["request"]["path"] = json!("/v1/zz-probe/x");
                    }
                    3 => {
                        poison["request"]["path"] = json!("/zz-public/%2e%2e/zz-admin");
                        probe["request"]["path"] = json!("/zz-admin");
                    }
                    _ => {
                        poison = refused(poison, 403);
                        poison["request"]["path"] = json!("/zz-refused");
                        probe["request"]["path"] = json!("/zz-refused");
                    }
                }
                records.push(poison.clone());
                probes.push((format!("seed {seed} kind {kind}: {poison}"), probe));
            }
            assert!(probes.len() > 20, "{}", probes.len());
            let options = DiscoverOptions::default();
            let discovered = learn(&records, options.clone());
            let judge = Judge::of(&discovered);
            let mut learned = 0;
            for value in &records {
                if learnable(value, &options) {
                    learned += 1;
                    assert!(
                        judge.allowed(value),
                        "seed {seed}: learnable {value} denied"
                    );
                }
            }
            assert!(learned > 500, "seed {seed}: {learned}");
            assert_eq!(learned, discovered.summary.granted);
            for (name, probe) in &probes {
                assert!(!judge.allowed(probe), "{name}: {probe} allowed");
            }
        }
    }

    #[test]
    fn merged_aggregates_learn_what_one_would() {
        let records: Vec<Value> = crate::synthetic::Generator::new(400, 3)
            .map(|generated| serde_json::from_str::<Value>(&generated.line).unwrap_or(Value::Null))
            .filter(|value| value.is_object() && value.get("decision").is_none())
            .collect();
        let whole = learn(&records, DiscoverOptions::default());
        let (first, second) = records.split_at(records.len() / 2);
        let mut left = Discovery::new(DiscoverOptions::default());
        for value in first {
            left.add_line(value.to_string().as_bytes()).unwrap();
        }
        let mut right = Discovery::new(DiscoverOptions::default());
        for value in second {
            right.add_line(value.to_string().as_bytes()).unwrap();
        }
        let halfway = left.policies();
        assert!(halfway.summary.granted > 0);
        left.merge(right);
        let merged = left.finish();
        assert_eq!(merged.to_yaml(), whole.to_yaml());
        assert_eq!(merged.summary.granted, whole.summary.granted);
    }
}
