//! The traffic record: one observed request as JSON, the format shared by the test
//! corpus, `cordon test`/`simulate`/`bench`, the filter's decision log and the lifecycle
//! tools.
//!
//! ```json
//! {"source": {"principal": "spiffe://cluster.local/ns/shop/sa/order-engine", "ip": "10.0.0.5"},
//!  "remote": {"ip": "203.0.113.9"},
//!  "destination": {"ip": "10.0.1.7", "port": 8080, "namespace": "finance", "labels": {"app": "billing-service"}},
//!  "connection": {"mtls": true, "sni": "billing.finance.svc.cluster.local"},
//!  "request": {"method": "POST", "path": "/v1/credits?x=1", "host": "billing.finance.svc.cluster.local:8080",
//!              "headers": {"x-env": "prod", "x-multi": ["a", "b"]},
//!              "auth": {"claims": {"iss": "https://idp.example", "sub": "alice", "scope": "credits:write"}}},
//!  "time": "2026-11-27T01:00:00Z"}
//! ```
//!
//! Reading ([`read_line`], [`classify`]): one line of a traffic file is a record, a log line
//! carrying one (Envoy text or JSON format), an ordinary log line (skipped), nothing (blank,
//! `#` comment), or bad; [`line`] lists the forms. Writing
//! ([`TrafficRecord::to_json`], [`decision_line`]): the filter's decision records.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;

use serde_json::{Map, Value};

use crate::compile::Workload;
use crate::request::Request;

pub mod line;
mod write;

pub use line::{classify, read_line, Form, Line, RecordJson, DECISION_MARKER};
pub use write::decision_line;

/// One request, owned, as read from a traffic record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficRecord {
    /// `source.principal`: the verified peer URI SAN; `None` for plaintext.
    pub principal: Option<String>,
    /// `source.ip`.
    pub source_ip: Option<IpAddr>,
    /// `remote.ip` (defaults to `source.ip` at evaluation).
    pub remote_ip: Option<IpAddr>,
    /// `destination.ip`.
    pub destination_ip: Option<IpAddr>,
    /// `destination.port`.
    pub destination_port: Option<u16>,
    /// `destination.namespace`: the receiving workload's namespace.
    pub destination_namespace: Option<String>,
    /// `destination.labels`: the receiving workload's labels.
    pub destination_labels: BTreeMap<String, String>,
    /// `connection.mtls`.
    pub mtls: Option<bool>,
    /// `connection.sni`.
    pub sni: Option<String>,
    /// `request.method`.
    pub method: Option<String>,
    /// `request.path`, raw.
    pub path: Option<String>,
    /// `request.host` (`:authority`).
    pub host: Option<String>,
    /// `request.headers`, one pair per value, names lowercase.
    pub headers: Vec<(String, String)>,
    /// `request.auth.claims`: verified JWT claims.
    pub claims: Option<Value>,
    /// `time`, as written.
    pub time: Option<String>,
}

impl TrafficRecord {
    /// Reads a record; errors name the field.
    pub fn from_json(value: &Value) -> Result<TrafficRecord, String> {
        let root = object(value, "record")?;
        known(
            root,
            &[
                "source",
                "remote",
                "destination",
                "connection",
                "request",
                "time",
                "decision",
            ],
            "",
        )?;
        let mut record = TrafficRecord::default();
        if let Some(source) = root.get("source") {
            let source = object(source, "source")?;
            known(source, &["principal", "ip", "port"], "source")?;
            record.principal = optional_string(source, "principal", "source")?;
            record.source_ip = optional_ip(source, "ip", "source")?;
        }
        if let Some(remote) = root.get("remote") {
            let remote = object(remote, "remote")?;
            known(remote, &["ip"], "remote")?;
            record.remote_ip = optional_ip(remote, "ip", "remote")?;
        }
        if let Some(destination) = root.get("destination") {
            let destination = object(destination, "destination")?;
            known(
                destination,
                &["ip", "port", "namespace", "labels", "workload"],
                "destination",
            )?;
            record.destination_ip = optional_ip(destination, "ip", "destination")?;
            record.destination_port = match destination.get("port") {
                None | Some(Value::Null) => None,
                Some(port) => Some(
                    port.as_u64()
                        .and_then(|port| u16::try_from(port).ok())
                        .ok_or_else(|| "destination.port: expected a port number".to_string())?,
                ),
            };
            record.destination_namespace =
                optional_string(destination, "namespace", "destination")?;
            if let Some(labels) = destination.get("labels") {
                for (key, label) in object(labels, "destination.labels")? {
                    let label = label
                        .as_str()
                        .ok_or_else(|| format!("destination.labels.{key}: expected a string"))?;
                    record
                        .destination_labels
                        .insert(key.clone(), label.to_string());
                }
            }
        }
        if let Some(connection) = root.get("connection") {
            let connection = object(connection, "connection")?;
            known(connection, &["mtls", "sni"], "connection")?;
            record.mtls = match connection.get("mtls") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(flag)) => Some(*flag),
                Some(_) => return Err("connection.mtls: expected true or false".to_string()),
            };
            record.sni = optional_string(connection, "sni", "connection")?;
        }
        if let Some(request) = root.get("request") {
            let request = object(request, "request")?;
            known(
                request,
                &["method", "path", "host", "headers", "auth"],
                "request",
            )?;
            record.method = optional_string(request, "method", "request")?;
            record.path = optional_string(request, "path", "request")?;
            record.host = optional_string(request, "host", "request")?;
            if let Some(headers) = request.get("headers") {
                for (name, value) in object(headers, "request.headers")? {
                    let name = name.to_ascii_lowercase();
                    match value {
                        Value::String(text) => record.headers.push((name, text.clone())),
                        Value::Array(items) => {
                            for item in items {
                                let text = item.as_str().ok_or_else(|| {
                                    format!("request.headers.{name}: expected a string or a list of strings")
                                })?;
                                record.headers.push((name.clone(), text.to_string()));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "request.headers.{name}: expected a string or a list of strings"
                            ))
                        }
                    }
                }
            }
            if let Some(auth) = request.get("auth") {
                if !auth.is_null() {
                    let auth = object(auth, "request.auth")?;
                    known(auth, &["claims"], "request.auth")?;
                    let claims = auth
                        .get("claims")
                        .cloned()
                        .unwrap_or(Value::Object(Map::new()));
                    object(&claims, "request.auth.claims")?;
                    record.claims = Some(claims);
                }
            }
        }
        record.time = optional_string(root, "time", "")?;
        Ok(record)
    }

    /// The request attributes, borrowed from the record. A principal on a connection
    /// marked `"mtls": false` is ignored: without mTLS there is no verified identity.
    pub fn request(&self) -> Request<'_> {
        Request {
            peer_identity: if self.mtls == Some(false) {
                None
            } else {
                self.principal.as_deref()
            },
            source_ip: self.source_ip,
            remote_ip: self.remote_ip,
            destination_ip: self.destination_ip,
            destination_port: self.destination_port,
            sni: self.sni.as_deref(),
            method: self.method.as_deref(),
            path: self.path.as_deref(),
            host: self.host.as_deref(),
            headers: self,
            claims: self
                .claims
                .as_ref()
                .map(|claims| claims as &dyn crate::request::Claims),
        }
    }

    /// The workload that received the request.
    pub fn workload(&self) -> Workload {
        Workload {
            namespace: self.destination_namespace.clone(),
            labels: self.destination_labels.clone(),
        }
    }
}

/// The record's headers, and the pseudo-headers Envoy keeps in the same map
/// (`:method`, `:path` as received, `:authority`), so that a rule on
/// `request.headers[:path]` sees what it sees in the proxy.
impl crate::request::Headers for TrafficRecord {
    fn any_value(&self, name: &str, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let pseudo = match name {
            ":method" => Some(self.method.as_deref()),
            ":path" => Some(self.path.as_deref()),
            ":authority" => Some(self.host.as_deref()),
            _ => None,
        };
        match pseudo {
            Some(value) => value.is_some_and(&mut *visit),
            None => {
                if self.headers.any_value(name, visit) {
                    return true;
                }
                // A record whose `remote.ip` differs from its `source.ip` came through a
                // proxy that said so in `x-forwarded-for` (the replay presents it there).
                let forwarded = name.eq_ignore_ascii_case(crate::compile::FORWARDED_FOR)
                    && !self
                        .headers
                        .iter()
                        .any(|(key, _)| key.eq_ignore_ascii_case(name));
                match (self.remote_ip, forwarded) {
                    (Some(remote), true) if Some(remote) != self.source_ip => {
                        visit(&remote.to_string())
                    }
                    _ => false,
                }
            }
        }
    }
}

fn object<'v>(value: &'v Value, field: &str) -> Result<&'v Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{field}: expected an object"))
}

fn known(map: &Map<String, Value>, keys: &[&str], field: &str) -> Result<(), String> {
    match map.keys().find(|key| !keys.contains(&key.as_str())) {
        None => Ok(()),
        Some(key) if field.is_empty() => Err(format!("unknown field `{key}`")),
        Some(key) => Err(format!("{field}: unknown field `{key}`")),
    }
}

fn optional_string(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) if field.is_empty() => Err(format!("{key}: expected a string")),
        Some(_) => Err(format!("{field}.{key}: expected a string")),
    }
}

fn optional_ip(map: &Map<String, Value>, key: &str, field: &str) -> Result<Option<IpAddr>, String> {
    match optional_string(map, key, field)? {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{field}.{key}: invalid IP address `{text}`")),
    }
}
