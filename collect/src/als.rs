//! Envoy's gRPC Access Log Service (`envoy.service.accesslog.v3.AccessLogService/
//! StreamAccessLogs`): HTTP access-log entries, mapped to traffic records.
//!
//! | traffic record | from the entry |
//! | --- | --- |
//! | `source.principal` | the first URI SAN of `common_properties.tls_properties.peer_certificate_properties` |
//! | `connection.mtls` | whether the peer presented a certificate |
//! | `connection.sni` | `tls_properties.tls_sni_hostname` |
//! | `source.ip` | `downstream_direct_remote_address` (else `downstream_remote_address`) |
//! | `remote.ip` | `downstream_remote_address`, when it differs |
//! | `destination.ip`, `.port` | `downstream_local_address` |
//! | `destination.namespace` | node metadata `NAMESPACE` (Istio sets it) |
//! | `destination.labels` | node metadata `LABELS` (Istio sets it) |
//! | `request.method`, `.path`, `.host` | `request.request_method`, `.path`, `.authority` |
//! | `request.headers` | `request.request_headers` (`additional_request_headers_to_log`) |
//! | `time` | `common_properties.start_time` |
//! | `decision` | filter state `wasm.cordon.decision` (`filter_state_objects_to_log`), else an Envoy RBAC refusal (`response_code_details` `rbac_access_denied*`) |
//!
//! The node identifies the proxy, so entries describe requests *to* its workload: the
//! proxy's inbound traffic. Entries of outbound listeners (upstream cluster `outbound|…`,
//! Istio's naming) are counted and skipped; an Istio `Telemetry` resource should select
//! `mode: SERVER` anyway.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use cordon_engine::TrafficRecord;
use cordon_lifecycle::time::Millis;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, Node, RequestMethod};
use envoy_types::pb::envoy::data::accesslog::v3::tls_properties::certificate_properties::subject_alt_name::San;
use envoy_types::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Timestamp};
use prost::Message;
use serde_json::Value;
use tonic::{Request, Response, Status, Streaming};

use crate::record::{parse_decision, rbac_denial, Observed};
use crate::server::{Input, Shared, Skip};

/// The filter-state key cordon's filter writes its decision to.
pub const DECISION_STATE: &str = "wasm.cordon.decision";

/// The workload a proxy serves, from its node metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeWorkload {
    /// `NAMESPACE`.
    pub namespace: Option<String>,
    /// `LABELS`.
    pub labels: BTreeMap<String, String>,
}

impl NodeWorkload {
    /// Reads Istio's node metadata (`NAMESPACE`, `LABELS`).
    pub fn from_node(node: &Node) -> NodeWorkload {
        let mut workload = NodeWorkload::default();
        let Some(metadata) = &node.metadata else {
            return workload;
        };
        workload.namespace = string_field(metadata, "NAMESPACE");
        if let Some(Kind::StructValue(labels)) = metadata
            .fields
            .get("LABELS")
            .and_then(|value| value.kind.as_ref())
        {
            for (key, value) in &labels.fields {
                if let Some(Kind::StringValue(text)) = &value.kind {
                    workload.labels.insert(key.clone(), text.clone());
                }
            }
        }
        workload
    }
}

fn string_field(metadata: &Struct, key: &str) -> Option<String> {
    match metadata
        .fields
        .get(key)
        .and_then(|value| value.kind.as_ref())
    {
        Some(Kind::StringValue(text)) if !text.is_empty() => Some(text.clone()),
        _ => None,
    }
}

/// Maps one HTTP access-log entry of a proxy serving `workload` to a request to that
/// workload, or says why it is none. Takes the entry, so its strings move into the record.
/// The proxy's workload is shared with the record (`Observed::node`), not copied into it.
pub fn map_entry(
    entry: HttpAccessLogEntry,
    workload: &Arc<NodeWorkload>,
) -> Result<Observed, Skip> {
    let HttpAccessLogEntry {
        common_properties,
        request,
        response,
        ..
    } = entry;
    let Some(mut common) = common_properties else {
        return Err(Skip::Incomplete);
    };
    if common.upstream_cluster.starts_with("outbound|") {
        return Err(Skip::Outbound);
    }
    let Some(mut request) = request else {
        return Err(Skip::Incomplete);
    };
    let mut record = TrafficRecord::default();
    match common.tls_properties.take() {
        None => record.mtls = Some(false),
        Some(tls) => {
            if !tls.tls_sni_hostname.is_empty() {
                record.sni = Some(tls.tls_sni_hostname);
            }
            match tls.peer_certificate_properties {
                Some(peer) => {
                    record.mtls = Some(true);
                    record.principal =
                        peer.subject_alt_name
                            .into_iter()
                            .find_map(|name| match name.san {
                                Some(San::Uri(uri)) => Some(uri),
                                _ => None,
                            });
                }
                None => record.mtls = Some(false),
            }
        }
    }
    let direct = common
        .downstream_direct_remote_address
        .as_ref()
        .and_then(socket_ip);
    let remote = common
        .downstream_remote_address
        .as_ref()
        .and_then(socket_ip);
    record.source_ip = direct.or(remote);
    if remote != record.source_ip {
        record.remote_ip = remote;
    }
    if let Some(local) = &common.downstream_local_address {
        record.destination_ip = socket_ip(local);
        record.destination_port = socket_port(local);
    }
    if let Ok(method) = RequestMethod::try_from(request.request_method) {
        if method != RequestMethod::MethodUnspecified {
            record.method = Some(method.as_str_name().to_string());
        }
    }
    if !request.path.is_empty() {
        record.path = Some(std::mem::take(&mut request.path));
    }
    if !request.authority.is_empty() {
        record.host = Some(std::mem::take(&mut request.authority));
    }
    if !request.request_headers.is_empty() {
        let mut headers: Vec<(String, String)> = request
            .request_headers
            .into_iter()
            .map(|(mut name, value)| {
                name.make_ascii_lowercase();
                (name, value)
            })
            .collect();
        headers.sort();
        record.headers = headers;
    }
    let status = response
        .as_ref()
        .and_then(|response| response.response_code.as_ref())
        .map(|code| code.value);
    let details = response
        .as_ref()
        .map_or("", |response| response.response_code_details.as_str());
    let decision = common
        .filter_state_objects
        .get(DECISION_STATE)
        .and_then(decision_from_any)
        .or_else(|| {
            details
                .starts_with("rbac_access_denied")
                .then(|| rbac_denial(status.unwrap_or(403)))
        });
    Ok(Observed {
        record,
        time: common.start_time.as_ref().map(timestamp_millis),
        decision,
        node: Some(Arc::clone(workload)),
    })
}

/// The decision a filter-state object holds: Envoy serializes the filter's property as a
/// `google.protobuf.BytesValue` (a `StringValue` and bare JSON are read too).
pub fn decision_from_any(any: &Any) -> Option<Value> {
    let name = any.type_url.rsplit('/').next().unwrap_or("");
    match name {
        "google.protobuf.BytesValue" => Vec::<u8>::decode(any.value.as_slice())
            .ok()
            .and_then(|bytes| parse_decision(&bytes)),
        "google.protobuf.StringValue" => String::decode(any.value.as_slice())
            .ok()
            .and_then(|text| parse_decision(text.as_bytes())),
        _ => parse_decision(&any.value),
    }
}

fn timestamp_millis(time: &Timestamp) -> Millis {
    time.seconds * 1000 + i64::from(time.nanos / 1_000_000)
}

fn socket_ip(address: &Address) -> Option<IpAddr> {
    match &address.address {
        Some(address::Address::SocketAddress(socket)) => socket.address.parse().ok(),
        _ => None,
    }
}

fn socket_port(address: &Address) -> Option<u16> {
    match &address.address {
        Some(address::Address::SocketAddress(socket)) => match socket.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(port)) => u16::try_from(port).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct Als {
    shared: Arc<Shared>,
}

impl Als {
    /// A service feeding `shared`.
    pub fn server(shared: Arc<Shared>) -> AccessLogServiceServer<Als> {
        AccessLogServiceServer::new(Als { shared })
            .max_decoding_message_size(crate::server::MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl AccessLogService for Als {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut workload = Arc::new(NodeWorkload::default());
        let mut batch = Vec::new();
        while let Some(message) = stream.message().await? {
            if let Some(node) = message.identifier.as_ref().and_then(|id| id.node.as_ref()) {
                workload = Arc::new(NodeWorkload::from_node(node));
            }
            batch.clear();
            match message.log_entries {
                Some(LogEntries::HttpLogs(entries)) => {
                    batch.reserve(entries.log_entry.len());
                    for entry in entries.log_entry {
                        match map_entry(entry, &workload) {
                            Ok(observed) => batch.push(observed),
                            Err(skip) => self.shared.skipped(skip),
                        }
                    }
                }
                Some(LogEntries::TcpLogs(entries)) => {
                    for _ in &entries.log_entry {
                        self.shared.skipped(Skip::Tcp);
                    }
                }
                None => {}
            }
            if !batch.is_empty() {
                self.shared
                    .ingest(&batch, Input::Als)
                    .map_err(|error| Status::internal(format!("{error:#}")))?;
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

/// What Envoy would send for a request: the node of the proxy serving the record's
/// destination, and the entry (the inverse of [`map_entry`], for tests and the benchmark).
pub mod envoy_side {
    use envoy_types::pb::envoy::config::core::v3::{Node, SocketAddress};
    use envoy_types::pb::envoy::data::accesslog::v3::tls_properties::{
        certificate_properties::SubjectAltName, CertificateProperties,
    };
    use envoy_types::pb::envoy::data::accesslog::v3::{
        AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
        TlsProperties,
    };
    use envoy_types::pb::google::protobuf::{value, Any, Struct, Timestamp, UInt32Value, Value};
    use prost::Message;

    use super::{address, socket_address, Address, RequestMethod, San, DECISION_STATE};
    use crate::record::Observed;

    fn text(value: &str) -> Value {
        Value {
            kind: Some(value::Kind::StringValue(value.to_string())),
        }
    }

    /// The node metadata Istio gives the proxy of the record's destination.
    pub fn node(observed: &Observed) -> Node {
        let mut metadata = Struct::default();
        if let Some(namespace) = observed.destination_namespace() {
            metadata.fields.insert("NAMESPACE".into(), text(namespace));
        }
        let labels = Struct {
            fields: observed
                .destination_labels()
                .iter()
                .map(|(key, value)| (key.clone(), text(value)))
                .collect(),
        };
        metadata.fields.insert(
            "LABELS".into(),
            Value {
                kind: Some(value::Kind::StructValue(labels)),
            },
        );
        Node {
            id: "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local".into(),
            metadata: Some(metadata),
            ..Node::default()
        }
    }

    fn socket(ip: Option<std::net::IpAddr>, port: u32) -> Option<Address> {
        ip.map(|ip| Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..SocketAddress::default()
            })),
        })
    }

    /// The HTTP access-log entry Envoy would write for the record.
    pub fn entry(observed: &Observed) -> HttpAccessLogEntry {
        let record = &observed.record;
        let tls = match record.mtls {
            Some(false) => None,
            _ => Some(TlsProperties {
                tls_sni_hostname: record.sni.clone().unwrap_or_default(),
                peer_certificate_properties: record.principal.as_ref().map(|principal| {
                    CertificateProperties {
                        subject_alt_name: vec![SubjectAltName {
                            san: Some(San::Uri(principal.clone())),
                        }],
                        ..CertificateProperties::default()
                    }
                }),
                ..TlsProperties::default()
            }),
        };
        let mut common = AccessLogCommon {
            downstream_direct_remote_address: socket(record.source_ip, 40_000),
            downstream_remote_address: socket(record.remote_ip.or(record.source_ip), 40_000),
            downstream_local_address: socket(
                record.destination_ip,
                u32::from(record.destination_port.unwrap_or(0)),
            ),
            tls_properties: tls,
            start_time: observed.time.map(|millis| Timestamp {
                seconds: millis.div_euclid(1000),
                nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
            }),
            upstream_cluster: "inbound|8080||".into(),
            ..AccessLogCommon::default()
        };
        if let Some(decision) = &observed.decision {
            common.filter_state_objects.insert(
                DECISION_STATE.to_string(),
                Any {
                    type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
                    value: decision.to_string().into_bytes().encode_to_vec(),
                },
            );
        }
        let method = record
            .method
            .as_deref()
            .and_then(RequestMethod::from_str_name)
            .unwrap_or(RequestMethod::MethodUnspecified);
        HttpAccessLogEntry {
            common_properties: Some(common),
            request: Some(HttpRequestProperties {
                request_method: method as i32,
                path: record.path.clone().unwrap_or_default(),
                authority: record.host.clone().unwrap_or_default(),
                request_headers: record.headers.iter().cloned().collect(),
                ..HttpRequestProperties::default()
            }),
            response: Some(HttpResponseProperties {
                response_code: Some(UInt32Value {
                    value: if observed.denied() { 403 } else { 200 },
                }),
                ..HttpResponseProperties::default()
            }),
            ..HttpAccessLogEntry::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::SocketAddress;
    use envoy_types::pb::envoy::data::accesslog::v3::tls_properties::{
        certificate_properties::SubjectAltName, CertificateProperties,
    };
    use envoy_types::pb::envoy::data::accesslog::v3::{
        AccessLogCommon, HttpRequestProperties, HttpResponseProperties, TlsProperties,
    };

    fn socket(ip: &str, port: u32) -> Address {
        Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..SocketAddress::default()
            })),
        }
    }

    #[test]
    fn an_entry_maps_to_a_record_with_its_decision() {
        let decision = br#"{"allowed":false,"reason":"no_allow_match","status":403}"#;
        let entry = HttpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                downstream_remote_address: Some(socket("10.0.0.5", 41000)),
                downstream_local_address: Some(socket("10.0.1.7", 8443)),
                tls_properties: Some(TlsProperties {
                    tls_sni_hostname: "billing".into(),
                    peer_certificate_properties: Some(CertificateProperties {
                        subject_alt_name: vec![SubjectAltName {
                            san: Some(San::Uri("spiffe://cluster.local/ns/shop/sa/cart".into())),
                        }],
                        ..CertificateProperties::default()
                    }),
                    ..TlsProperties::default()
                }),
                start_time: Some(Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 5_000_000,
                }),
                filter_state_objects: [(
                    DECISION_STATE.to_string(),
                    Any {
                        type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
                        value: decision.to_vec().encode_to_vec(),
                    },
                )]
                .into(),
                ..AccessLogCommon::default()
            }),
            request: Some(HttpRequestProperties {
                request_method: RequestMethod::Post as i32,
                path: "/v1/credits".into(),
                authority: "billing.finance".into(),
                ..HttpRequestProperties::default()
            }),
            response: Some(HttpResponseProperties {
                response_code: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 403 }),
                ..HttpResponseProperties::default()
            }),
            ..HttpAccessLogEntry::default()
        };
        let workload = Arc::new(NodeWorkload {
            namespace: Some("finance".into()),
            labels: [("app".to_string(), "billing".to_string())].into(),
        });
        let mut outbound = entry.clone();
        let observed = map_entry(entry, &workload).unwrap();
        let record = &observed.record;
        assert_eq!(
            record.principal.as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/cart")
        );
        assert_eq!(record.mtls, Some(true));
        assert_eq!(record.method.as_deref(), Some("POST"));
        assert_eq!(record.path.as_deref(), Some("/v1/credits"));
        assert_eq!(record.host.as_deref(), Some("billing.finance"));
        assert_eq!(record.destination_port, Some(8443));
        assert_eq!(observed.destination_namespace(), Some("finance"));
        assert_eq!(observed.destination_label(), "finance/billing");
        assert_eq!(observed.full_record().destination_labels, workload.labels);
        assert_eq!(observed.time, Some(1_800_000_000_005));
        assert!(observed.denied());

        if let Some(common) = &mut outbound.common_properties {
            common.upstream_cluster = "outbound|8080||cart.shop.svc.cluster.local".into();
        }
        assert_eq!(map_entry(outbound, &workload), Err(Skip::Outbound));
    }
}
