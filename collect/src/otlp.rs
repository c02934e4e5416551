//! OTLP logs (`opentelemetry.proto.collector.logs.v1.LogsService/Export`): what Envoy's
//! OpenTelemetry access logger, Istio's `envoyOtelAls` provider and an OpenTelemetry
//! Collector pipeline send.
//!
//! An access-log entry arrives as a log record whose *attributes* hold the request, one
//! Envoy command operator per key (configure them in the logger's `attributes`, or in
//! Istio's `envoyOtelAls.logFormat.labels`; see `envoy/istio/collect.yaml`):
//!
//! | attribute | Envoy command operator | traffic record |
//! | --- | --- | --- |
//! | `source.principal` | `%DOWNSTREAM_PEER_URI_SAN%` | `source.principal` |
//! | `source.address` | `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%` | `source.ip` |
//! | `remote.address` | `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%` | `remote.ip` |
//! | `destination.address` | `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%` | `destination.ip` |
//! | `destination.port` | `%DOWNSTREAM_LOCAL_PORT%` | `destination.port` |
//! | `destination.namespace` | `%ENVIRONMENT(POD_NAMESPACE)%` | `destination.namespace` |
//! | `destination.labels` | a JSON object, or a key-value list | `destination.labels` |
//! | `destination.label.<name>` | `%ENVIRONMENT(...)%` or a literal | `destination.labels.<name>` |
//! | `connection.mtls` | `true`/`false` (default: whether there is a principal) | `connection.mtls` |
//! | `connection.sni` | `%REQUESTED_SERVER_NAME%` | `connection.sni` |
//! | `request.method` | `%REQ(:METHOD)%` | `request.method` |
//! | `request.path` | `%REQ(:PATH)%` | `request.path` |
//! | `request.host` | `%REQ(:AUTHORITY)%` | `request.host` |
//! | `response.code` | `%RESPONSE_CODE%` | (an RBAC refusal's status) |
//! | `response.code_details` | `%RESPONSE_CODE_DETAILS%` | (an RBAC refusal) |
//! | `cordon.decision` | `%FILTER_STATE(wasm.cordon.decision:PLAIN)%` | `decision` |
//!
//! A key missing from the record's attributes is looked up in its resource's attributes
//! (where the OpenTelemetry Collector's `k8sattributes` processor puts
//! `k8s.namespace.name`, also read for the namespace). Envoy writes `-` for a missing
//! value; `-` and the empty string are absent. The record's time is `time_unix_nano`
//! (else `observed_time_unix_nano`).
//!
//! A log record without `request.method` and `request.path` is read from its body
//! instead, with the engine's one line classification: a traffic record, or the filter's
//! `cordon.decision {...}` log line (so a Collector tailing Envoy's logs can forward
//! them). Anything else is counted as skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use cordon_engine::traffic::{classify, Line};
use cordon_engine::TrafficRecord;
use cordon_lifecycle::time::{parse_rfc3339, Millis};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::record::{parse_decision, rbac_denial, Observed};
use crate::server::{Input, Shared, Skip};

/// The attributes of a log record, with its resource's as a fallback.
struct Attributes<'a> {
    record: &'a [KeyValue],
    resource: &'a [KeyValue],
}

impl<'a> Attributes<'a> {
    fn any(&self, key: &str) -> Option<&'a Any> {
        let find = |list: &'a [KeyValue]| {
            list.iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.as_ref())
                .and_then(|value| value.value.as_ref())
        };
        find(self.record).or_else(|| find(self.resource))
    }

    fn text(&self, key: &str) -> Option<String> {
        let text = match self.any(key)? {
            Any::StringValue(text) => text.clone(),
            Any::IntValue(number) => number.to_string(),
            Any::BoolValue(flag) => flag.to_string(),
            Any::DoubleValue(number) => number.to_string(),
            Any::BytesValue(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => return None,
        };
        (!text.is_empty() && text != "-").then_some(text)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        match self.any("destination.labels") {
            Some(Any::KvlistValue(list)) => {
                for kv in &list.values {
                    if let Some(Any::StringValue(text)) =
                        kv.value.as_ref().and_then(|value| value.value.as_ref())
                    {
                        labels.insert(kv.key.clone(), text.clone());
                    }
                }
            }
            Some(Any::StringValue(text)) => {
                if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
                    for (key, value) in map {
                        if let Value::String(text) = value {
                            labels.insert(key, text);
                        }
                    }
                }
            }
            _ => {}
        }
        for list in [self.resource, self.record] {
            for kv in list {
                if let Some(name) = kv.key.strip_prefix("destination.label.") {
                    if let Some(Any::StringValue(text)) =
                        kv.value.as_ref().and_then(|value| value.value.as_ref())
                    {
                        labels.insert(name.to_string(), text.clone());
                    }
                }
            }
        }
        labels
    }
}

/// Maps one OTLP log record (with its resource's attributes).
pub fn map_log_record(log: &LogRecord, resource: &[KeyValue]) -> Option<Observed> {
    let attributes = Attributes {
        record: &log.attributes,
        resource,
    };
    let nanos = if log.time_unix_nano != 0 {
        log.time_unix_nano
    } else {
        log.observed_time_unix_nano
    };
    let time = (nanos != 0).then(|| Millis::try_from(nanos / 1_000_000).unwrap_or(Millis::MAX));
    let (method, path) = (
        attributes.text("request.method"),
        attributes.text("request.path"),
    );
    if method.is_none() && path.is_none() {
        return from_body(log.body.as_ref(), time);
    }
    let principal = attributes.text("source.principal");
    let mtls = match attributes.text("connection.mtls").as_deref() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => Some(principal.is_some()),
    };
    let record = TrafficRecord {
        mtls,
        principal,
        source_ip: attributes
            .text("source.address")
            .and_then(|text| text.parse().ok()),
        remote_ip: attributes
            .text("remote.address")
            .and_then(|text| text.parse().ok()),
        destination_ip: attributes
            .text("destination.address")
            .and_then(|text| text.parse().ok()),
        destination_port: attributes
            .text("destination.port")
            .and_then(|text| text.parse().ok()),
        destination_namespace: attributes
            .text("destination.namespace")
            .or_else(|| attributes.text("k8s.namespace.name")),
        destination_labels: attributes.labels(),
        sni: attributes.text("connection.sni"),
        method,
        path,
        host: attributes.text("request.host"),
        ..TrafficRecord::default()
    };
    let mut record = record;
    if record.remote_ip == record.source_ip {
        record.remote_ip = None;
    }
    let decision = attributes
        .text("cordon.decision")
        .and_then(|text| parse_decision(text.as_bytes()))
        .or_else(|| {
            let details = attributes.text("response.code_details")?;
            details.starts_with("rbac_access_denied").then(|| {
                rbac_denial(
                    attributes
                        .text("response.code")
                        .and_then(|code| code.parse().ok())
                        .unwrap_or(403),
                )
            })
        });
    Some(Observed {
        record,
        time,
        decision,
        node: None,
    })
}

/// A record in the log body: a traffic record or a `cordon.decision` line.
fn from_body(body: Option<&AnyValue>, time: Option<Millis>) -> Option<Observed> {
    let Some(Any::StringValue(text)) = body.and_then(|body| body.value.as_ref()) else {
        return None;
    };
    let Ok(Line::Record(found)) = classify(text.as_bytes()) else {
        return None;
    };
    let value: Value = serde_json::from_slice(&found.json).ok()?;
    let record = TrafficRecord::from_json(&value).ok()?;
    let own_time = record.time.as_deref().and_then(parse_rfc3339);
    Some(Observed {
        decision: value.get("decision").filter(|d| d.is_object()).cloned(),
        node: None,
        time: own_time.or(time),
        record: TrafficRecord {
            time: None,
            ..record
        },
    })
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct Otlp {
    shared: Arc<Shared>,
}

impl Otlp {
    /// A service feeding `shared`.
    pub fn server(shared: Arc<Shared>) -> LogsServiceServer<Otlp> {
        LogsServiceServer::new(Otlp { shared })
            .max_decoding_message_size(crate::server::MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl LogsService for Otlp {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let request = request.into_inner();
        let mut batch = Vec::new();
        for resource_logs in &request.resource_logs {
            let resource = resource_logs
                .resource
                .as_ref()
                .map_or(&[][..], |resource| resource.attributes.as_slice());
            for scope in &resource_logs.scope_logs {
                for log in &scope.log_records {
                    match map_log_record(log, resource) {
                        Some(observed) => batch.push(observed),
                        None => self.shared.skipped(Skip::NotARequest),
                    }
                }
            }
        }
        if !batch.is_empty() {
            // An export is acknowledged: its records are on disk first.
            let shared = Arc::clone(&self.shared);
            tokio::task::spawn_blocking(move || shared.ingest_durable(&batch, Input::Otlp))
                .await
                .map_err(|error| Status::internal(error.to_string()))?
                .map_err(|error| Status::internal(format!("{error:#}")))?;
        }
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP string attribute (for tests and the benchmark).
pub fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Any::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn attributes_map_to_a_record() {
        let log = LogRecord {
            time_unix_nano: 1_800_000_000_000_000_000,
            attributes: vec![
                attribute("source.principal", "spiffe://cluster.local/ns/shop/sa/cart"),
                attribute("request.method", "GET"),
                attribute("request.path", "/v1/x"),
                attribute("request.host", "-"),
                attribute("destination.labels", r#"{"app":"billing"}"#),
                attribute(
                    "cordon.decision",
                    r#"{"allowed":false,"reason":"no_allow_match"}"#,
                ),
            ],
            ..LogRecord::default()
        };
        let resource = [attribute("k8s.namespace.name", "finance")];
        let observed = map_log_record(&log, &resource).unwrap();
        assert_eq!(observed.destination_label(), "finance/billing");
        assert_eq!(observed.record.host, None);
        assert_eq!(observed.record.mtls, Some(true));
        assert_eq!(observed.time, Some(1_800_000_000_000));
        assert!(observed.denied());
    }

    #[test]
    fn a_decision_line_in_the_body_is_read() {
        let log = LogRecord {
            body: Some(AnyValue {
                value: Some(Any::StringValue(
                    r#"[info] wasm log cordon: cordon.decision {"source":{"principal":"spiffe://td/ns/a/sa/b"},"destination":{"namespace":"n"},"request":{"method":"GET","path":"/"},"time":"2026-01-01T00:00:00Z","decision":{"allowed":true}}"#
                        .to_string(),
                )),
            }),
            ..LogRecord::default()
        };
        let observed = map_log_record(&log, &[]).unwrap();
        assert_eq!(observed.record.method.as_deref(), Some("GET"));
        assert!(!observed.denied());
        assert!(observed.time.is_some());
        let plain = LogRecord {
            body: Some(AnyValue {
                value: Some(Any::StringValue("GET / 200".to_string())),
            }),
            ..LogRecord::default()
        };
        assert!(map_log_record(&plain, &[]).is_none());
    }
}
