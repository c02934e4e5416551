//! Traffic records through the filter: each record becomes the request Envoy would hand
//! the module (headers and properties encoded as Envoy 1.40 encodes them), and the
//! module's decision is read back from the filter state it sets.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use cordon_engine::TrafficRecord;
use serde_json::{json, Value};

use crate::encode::{encode_bool, encode_int64, encode_metadata, encode_string};
use crate::mesh::MeshConfig;
use crate::{Host, HttpExchange, MetricType, Outcome, Plugin, Properties};
use cordon_filter::config::{IdentitySource, JwtSource};

/// The decision the module made for one request, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmDecision {
    /// Whether the request went on.
    pub allowed: bool,
    /// The status of the local response, or 200.
    pub status: u16,
    /// The deciding rule's id.
    pub policy: Option<String>,
    /// The first matching AUDIT rule's id.
    pub audit: Option<String>,
    /// The decision with dry-run policies enforced too.
    pub dry_run_allowed: bool,
    /// The rule deciding the dry-run outcome.
    pub dry_run_policy: Option<String>,
    /// `verified`, `none` or `invalid`.
    pub identity: String,
    /// The engine's reason.
    pub reason: String,
}

/// The decision the filter writes to filter state (`cordon.decision`).
#[derive(serde::Deserialize)]
struct FilterState {
    policy: Option<String>,
    audit: Option<String>,
    dry_run: DryRunState,
    identity: String,
    reason: String,
}

#[derive(serde::Deserialize)]
struct DryRunState {
    allowed: bool,
    policy: Option<String>,
}

/// How the proxy in front of the module presents a record, as the plugin configuration
/// says it reads requests: where the peer identity is, where verified claims are, and how
/// many trusted proxies append to `x-forwarded-for`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presentation {
    /// Where the filter reads the peer identity.
    pub identity: IdentitySource,
    /// Where the filter reads verified JWT claims.
    pub jwt: JwtSource,
    /// The plugin's `trusted_proxy_hops`.
    pub trusted_proxy_hops: usize,
}

impl Default for Presentation {
    /// The runner's defaults: the peer certificate, `jwt_authn`'s `payload`, one trusted hop.
    fn default() -> Presentation {
        let mesh = MeshConfig::default();
        Presentation {
            identity: mesh.identity,
            jwt: mesh.jwt,
            trusted_proxy_hops: 1,
        }
    }
}

impl Presentation {
    /// As the mesh configuration says (one trusted hop unless it sets another number).
    pub fn of(mesh: &MeshConfig) -> Presentation {
        Presentation {
            identity: mesh.identity,
            jwt: mesh.jwt.clone(),
            trusted_proxy_hops: mesh.trusted_proxy_hops.unwrap_or(1),
        }
    }
}

/// Builds the request Envoy would present for a record, with the runner's defaults
/// ([`Presentation::default`]).
pub fn exchange_for(record: &TrafficRecord) -> HttpExchange {
    exchange_with(record, &Presentation::default())
}

/// Builds the request Envoy would present for a record. `remote.ip`, when it differs from
/// `source.ip`, travels as the `x-forwarded-for` entry `trusted_proxy_hops` places from the
/// right (the hops after it are the source address); with no trusted hop it cannot travel
/// at all, as in Envoy. With `identity.source: x_forwarded_client_cert` the principal
/// travels as the element the nearest hop appended to `x-forwarded-client-cert`. Claims are
/// the `metadata` message, under the configured namespace and key.
pub fn exchange_with(record: &TrafficRecord, presentation: &Presentation) -> HttpExchange {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(record.headers.len() + 5);
    let mtls = record.mtls.unwrap_or(record.principal.is_some());
    if let Some(host) = &record.host {
        headers.push((":authority".into(), host.clone()));
    }
    if let Some(path) = &record.path {
        headers.push((":path".into(), path.clone()));
    }
    if let Some(method) = &record.method {
        headers.push((":method".into(), method.clone()));
    }
    headers.push((":scheme".into(), if mtls { "https" } else { "http" }.into()));
    headers.extend(
        record
            .headers
            .iter()
            .filter(|(name, _)| name != "x-forwarded-for")
            .cloned(),
    );
    let forwarded: Vec<&str> = record
        .headers
        .iter()
        .filter(|(name, _)| name == "x-forwarded-for")
        .map(|(_, value)| value.as_str())
        .collect();
    match (record.remote_ip, record.source_ip) {
        (Some(remote), source) if Some(remote) != source && presentation.trusted_proxy_hops > 0 => {
            let mut entries = forwarded.join(",");
            if !entries.is_empty() {
                entries.push(',');
            }
            entries.push_str(&remote.to_string());
            let hop = source.map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string());
            for _ in 1..presentation.trusted_proxy_hops {
                entries.push(',');
                entries.push_str(&hop);
            }
            headers.push(("x-forwarded-for".into(), entries));
        }
        _ => headers.extend(
            forwarded
                .iter()
                .map(|value| ("x-forwarded-for".to_string(), value.to_string())),
        ),
    }

    if let (IdentitySource::ForwardedClientCert, true, Some(principal)) =
        (presentation.identity, mtls, &record.principal)
    {
        headers.push((
            "x-forwarded-client-cert".into(),
            format!("By=spiffe://cluster.local/ns/istio-system/sa/ingress;URI={principal}"),
        ));
    }

    let mut properties = Properties::new();
    if mtls {
        if let Some(principal) = &record.principal {
            properties.insert(
                ["connection", "uri_san_peer_certificate"],
                encode_string(principal),
            );
        }
    }
    properties.insert(["connection", "mtls"], encode_bool(mtls));
    if let Some(ip) = record.source_ip {
        properties.insert(["source", "address"], encode_string(&socket(ip, 50_000)));
    }
    if let Some(ip) = record.destination_ip {
        properties.insert(
            ["destination", "address"],
            encode_string(&socket(ip, record.destination_port.unwrap_or(0))),
        );
    }
    if let Some(port) = record.destination_port {
        properties.insert(["destination", "port"], encode_int64(i64::from(port)));
    }
    if let Some(sni) = &record.sni {
        properties.insert(["connection", "requested_server_name"], encode_string(sni));
    }
    if let Some(serde_json::Value::Object(claims)) = &record.claims {
        let mut namespace = serde_json::Map::new();
        namespace.insert(
            presentation.jwt.payload_key.clone(),
            serde_json::Value::Object(claims.clone()),
        );
        properties.insert(
            ["metadata"],
            encode_metadata(&[(presentation.jwt.metadata_namespace.as_str(), &namespace)]),
        );
    }
    HttpExchange {
        headers,
        properties: Arc::new(properties),
    }
}

fn socket(ip: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

/// Plugin-wide settings for a run, merged into every plugin configuration.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    /// Extra top-level keys of the plugin configuration (`root_namespace`,
    /// `path_normalization`, …).
    pub extra: serde_json::Map<String, Value>,
    /// How records are presented to the module; must agree with `extra`.
    pub presentation: Presentation,
    /// How many plugins the runner keeps started at once.
    pub plugins: PluginLimits,
}

impl RunSettings {
    /// The settings of a mesh configuration (`--config`), minus its policies.
    pub fn of(mesh: &MeshConfig) -> RunSettings {
        RunSettings {
            extra: mesh.settings.clone(),
            presentation: Presentation::of(mesh),
            plugins: PluginLimits::default(),
        }
    }
}

/// How many plugins (module instances) a [`Runner`] keeps started at once. Past either
/// limit, the plugin used least recently is stopped and its instance dropped, which gives
/// its memory (and its address-space reservation) back; a later record for its workload
/// starts a new one. Decisions do not depend on it: the filter keeps nothing across
/// requests that decides (only counters, which [`Runner::metrics`] carries over, and the
/// sampling credit of allowed-request decision records, which replay turns off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// At most this many plugins (at least one is always kept). Each instance takes four
    /// memory mappings and Linux allows a process 65,530 by default (`vm.max_map_count`):
    /// unbounded, replay failed to instantiate the module (`Cannot allocate memory`) after
    /// about 16,370 workloads.
    pub max_plugins: usize,
    /// At most this many bytes of linear memory across the plugins kept (the module's own
    /// heap: the compiled policies and its buffers), checked as each plugin starts.
    pub max_memory_bytes: usize,
}

impl PluginLimits {
    /// The default: 1,024 plugins and 1 GiB of linear memory, within one core's share of
    /// memory on a common machine. A mesh with up to 1,024 destination workloads keeps a
    /// plugin per workload for the whole run, as each sidecar would.
    pub const DEFAULT: PluginLimits = PluginLimits {
        max_plugins: 1_024,
        max_memory_bytes: 1 << 30,
    };
}

impl Default for PluginLimits {
    fn default() -> PluginLimits {
        PluginLimits::DEFAULT
    }
}

/// What a [`Runner`] has done with its plugins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerStats {
    /// Plugins started (one per destination workload, again after an eviction).
    pub started: usize,
    /// Plugins stopped to keep within the [`PluginLimits`].
    pub evicted: usize,
    /// Plugins running now.
    pub running: usize,
    /// Linear memory of the plugins running now, in bytes.
    pub memory_bytes: usize,
}

/// A started plugin and the workload it judges for.
struct Slot {
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    /// The hash of the workload (see [`workload_hash`]).
    hash: u64,
    plugin: Plugin,
    /// Linear memory when last measured.
    memory_bytes: usize,
    /// When it last served, in requests since the runner started.
    last_used: u64,
}

fn workload_hash(namespace: Option<&str>, labels: &BTreeMap<String, String>) -> u64 {
    // SipHash with fixed keys: the same on every run.
    let mut hasher = std::hash::DefaultHasher::new();
    namespace.hash(&mut hasher);
    labels.hash(&mut hasher);
    hasher.finish()
}

/// One loaded module running one policy set, with a plugin per destination workload
/// (each record is judged by the policies that apply to its destination, as each sidecar
/// would judge it). Plugins are kept within [`RunSettings::plugins`], least recently used
/// first out, so memory stays bounded whatever the number of workloads.
pub struct Runner<'h> {
    host: &'h Host,
    policies: Vec<Value>,
    settings: RunSettings,
    slots: Vec<Slot>,
    /// Slot positions by workload hash.
    index: HashMap<u64, Vec<usize>>,
    /// Requests served so far: the clock of `last_used`.
    tick: u64,
    /// Linear memory of the slots, in bytes.
    memory_bytes: usize,
    /// Counters of the plugins evicted, so that [`Runner::metrics`] counts every request.
    retired: BTreeMap<String, u64>,
    stats: RunnerStats,
}

impl<'h> Runner<'h> {
    /// A runner for `policies` on an already loaded module.
    pub fn new(host: &'h Host, policies: Vec<Value>, settings: RunSettings) -> Runner<'h> {
        Runner {
            host,
            policies,
            settings,
            slots: Vec::new(),
            index: HashMap::new(),
            tick: 0,
            memory_bytes: 0,
            retired: BTreeMap::new(),
            stats: RunnerStats::default(),
        }
    }

    /// The run's settings.
    pub fn settings(&self) -> &RunSettings {
        &self.settings
    }

    /// What the runner has done with its plugins so far.
    pub fn stats(&self) -> RunnerStats {
        RunnerStats {
            running: self.slots.len(),
            memory_bytes: self.memory_bytes,
            ..self.stats
        }
    }

    /// Every counter the module defined, summed over the plugins of the run, those
    /// evicted included.
    pub fn metrics(&self) -> BTreeMap<String, u64> {
        let mut totals = self.retired.clone();
        for slot in &self.slots {
            add_counters(&mut totals, &slot.plugin);
        }
        totals
    }

    /// The plugin configuration for a workload.
    pub fn plugin_config(
        &self,
        namespace: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Value {
        let mut config = self.settings.extra.clone();
        config.insert("policies".into(), Value::Array(self.policies.clone()));
        config.entry("trusted_proxy_hops").or_insert(json!(1));
        config
            .entry("decision_log")
            .or_insert(json!({"enabled": false}));
        if let Some(namespace) = namespace {
            config.insert(
                "workload".into(),
                json!({"namespace": namespace, "labels": labels}),
            );
        }
        Value::Object(config)
    }

    /// The plugin judging requests to the record's destination workload, started on first
    /// use (or again, after it was evicted).
    pub fn plugin_for(&mut self, record: &TrafficRecord) -> Result<&mut Plugin> {
        let position = self.slot_for(record)?;
        self.slots
            .get_mut(position)
            .map(|slot| &mut slot.plugin)
            .ok_or_else(|| anyhow!("plugin vanished"))
    }

    /// The position of the plugin for the record's destination workload, marked used now.
    fn slot_for(&mut self, record: &TrafficRecord) -> Result<usize> {
        let namespace = record.destination_namespace.as_deref();
        let labels = &record.destination_labels;
        let hash = workload_hash(namespace, labels);
        self.tick += 1;
        let found = self.index.get(&hash).and_then(|positions| {
            positions.iter().copied().find(|position| {
                self.slots.get(*position).is_some_and(|slot| {
                    slot.namespace.as_deref() == namespace && slot.labels == *labels
                })
            })
        });
        let position = match found {
            Some(position) => position,
            None => self.start(hash, namespace, labels)?,
        };
        if let Some(slot) = self.slots.get_mut(position) {
            slot.last_used = self.tick;
        }
        Ok(position)
    }

    /// Starts the plugin for a workload, first evicting what the limits need. Answers
    /// its position.
    fn start(
        &mut self,
        hash: u64,
        namespace: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Result<usize> {
        let limits = self.settings.plugins;
        while !self.slots.is_empty() && self.slots.len() >= limits.max_plugins {
            self.evict_least_recent();
        }
        let config = self.plugin_config(namespace, labels);
        let plugin = self.host.start(b"", config.to_string().as_bytes())?;
        if !plugin.start_report().accepted {
            let reasons: Vec<String> = plugin
                .start_report()
                .logs
                .iter()
                .map(|log| log.message.clone())
                .collect();
            return Err(anyhow!(
                "the filter rejected its configuration: {}",
                reasons.join("; ")
            ));
        }
        self.stats.started += 1;
        let memory_bytes = plugin.memory_bytes();
        // Make room for its memory too, keeping at least the new plugin.
        while !self.slots.is_empty() && self.memory_bytes + memory_bytes > limits.max_memory_bytes {
            self.evict_least_recent();
        }
        let position = self.slots.len();
        self.slots.push(Slot {
            namespace: namespace.map(str::to_string),
            labels: labels.clone(),
            hash,
            plugin,
            memory_bytes,
            last_used: self.tick,
        });
        self.memory_bytes += memory_bytes;
        self.index.entry(hash).or_default().push(position);
        Ok(position)
    }

    /// Stops the plugin used least recently: its counters are kept, its instance dropped.
    fn evict_least_recent(&mut self) {
        let Some(position) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, slot)| slot.last_used)
            .map(|(position, _)| position)
        else {
            return;
        };
        let last = self.slots.len() - 1;
        unindex(
            &mut self.index,
            self.slots.get(position).map(|s| s.hash),
            position,
        );
        if position != last {
            // The last slot moves into the evicted one's place.
            let moved = self.slots.get(last).map(|slot| slot.hash);
            if let Some(positions) = moved.and_then(|hash| self.index.get_mut(&hash)) {
                for entry in positions.iter_mut().filter(|entry| **entry == last) {
                    *entry = position;
                }
            }
        }
        let slot = self.slots.swap_remove(position);
        add_counters(&mut self.retired, &slot.plugin);
        self.memory_bytes = self.memory_bytes.saturating_sub(slot.memory_bytes);
        self.stats.evicted += 1;
        // Dropping the plugin drops its store: the instance and its memory go.
        drop(slot);
    }

    /// Runs one record through the module.
    pub fn decide(&mut self, record: &TrafficRecord) -> Result<WasmDecision> {
        let exchange = exchange_with(record, &self.settings.presentation);
        let position = self.slot_for(record)?;
        let slot = self
            .slots
            .get_mut(position)
            .ok_or_else(|| anyhow!("plugin vanished"))?;
        let decision = read_decision(slot.plugin.handle(&exchange)?)?;
        // The module may have grown its memory for this request.
        let grown = slot.plugin.memory_bytes();
        let before = std::mem::replace(&mut slot.memory_bytes, grown);
        self.memory_bytes = (self.memory_bytes + grown).saturating_sub(before);
        Ok(decision)
    }
}

/// The decision the module made, as it reported it: the local response and the filter
/// state it set.
fn read_decision(outcome: &Outcome) -> Result<WasmDecision> {
    let state = outcome
        .property_set(["cordon.decision"])
        .ok_or_else(|| anyhow!("the filter set no decision"))?;
    let state: FilterState =
        serde_json::from_slice(state).context("the filter's decision is not the expected JSON")?;
    let status = match outcome.local_response() {
        Some(reply) => u16::try_from(reply.status).unwrap_or(500),
        None => 200,
    };
    Ok(WasmDecision {
        allowed: outcome.local_response().is_none(),
        status,
        policy: state.policy,
        audit: state.audit,
        dry_run_allowed: state.dry_run.allowed,
        dry_run_policy: state.dry_run.policy,
        identity: state.identity,
        reason: state.reason,
    })
}

/// Drops `position` from the index entry of `hash`.
fn unindex(index: &mut HashMap<u64, Vec<usize>>, hash: Option<u64>, position: usize) {
    let Some(hash) = hash else {
        return;
    };
    if let Some(positions) = index.get_mut(&hash) {
        positions.retain(|entry| *entry != position);
        if positions.is_empty() {
            index.remove(&hash);
        }
    }
}

/// Adds a plugin's counters to `totals`.
fn add_counters(totals: &mut BTreeMap<String, u64>, plugin: &Plugin) {
    for metric in plugin.metric_details() {
        if metric.kind == MetricType::Counter {
            let total = totals.entry(metric.name.clone()).or_default();
            *total = total.saturating_add(metric.value);
        }
    }
}
