//! Traffic records through the filter: each record becomes the request Envoy would hand
//! the module (headers and properties encoded as Envoy 1.40 encodes them), and the
//! module's decision is read back from the filter state it sets.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use cordon_engine::TrafficRecord;
use serde_json::{json, Value};

use crate::encode::{encode_bool, encode_int64, encode_metadata, encode_string};
use crate::mesh::MeshConfig;
use crate::{Host, HttpExchange, Plugin, Properties};
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
}

impl RunSettings {
    /// The settings of a mesh configuration (`--config`), minus its policies.
    pub fn of(mesh: &MeshConfig) -> RunSettings {
        RunSettings {
            extra: mesh.settings.clone(),
            presentation: Presentation::of(mesh),
        }
    }
}

/// One loaded module running one policy set, with a plugin per destination workload
/// (each record is judged by the policies that apply to its destination, as each sidecar
/// would judge it).
pub struct Runner<'h> {
    host: &'h Host,
    policies: Vec<Value>,
    settings: RunSettings,
    /// One plugin per destination workload (a mesh has few; a linear search compares
    /// without cloning the record's keys).
    plugins: Vec<(Option<String>, BTreeMap<String, String>, Plugin)>,
}

impl<'h> Runner<'h> {
    /// A runner for `policies` on an already loaded module.
    pub fn new(host: &'h Host, policies: Vec<Value>, settings: RunSettings) -> Runner<'h> {
        Runner {
            host,
            policies,
            settings,
            plugins: Vec::new(),
        }
    }

    /// The run's settings.
    pub fn settings(&self) -> &RunSettings {
        &self.settings
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
    /// use.
    pub fn plugin_for(&mut self, record: &TrafficRecord) -> Result<&mut Plugin> {
        let found = self.plugins.iter().position(|(namespace, labels, _)| {
            *namespace == record.destination_namespace && *labels == record.destination_labels
        });
        let position = match found {
            Some(position) => position,
            None => {
                let config = self.plugin_config(
                    record.destination_namespace.as_deref(),
                    &record.destination_labels,
                );
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
                self.plugins.push((
                    record.destination_namespace.clone(),
                    record.destination_labels.clone(),
                    plugin,
                ));
                self.plugins.len() - 1
            }
        };
        self.plugins
            .get_mut(position)
            .map(|(_, _, plugin)| plugin)
            .ok_or_else(|| anyhow!("plugin vanished"))
    }

    /// Runs one record through the module.
    pub fn decide(&mut self, record: &TrafficRecord) -> Result<WasmDecision> {
        let exchange = exchange_with(record, &self.settings.presentation);
        let plugin = self.plugin_for(record)?;
        let outcome = plugin.handle(&exchange)?;
        let state = outcome
            .property_set(["cordon.decision"])
            .ok_or_else(|| anyhow!("the filter set no decision"))?;
        let state: FilterState = serde_json::from_slice(state)
            .context("the filter's decision is not the expected JSON")?;
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
}
