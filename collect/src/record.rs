//! One observed request, as the collector keeps it: the engine's traffic record
//! ([`TrafficRecord`], the one codec every cordon tool reads) and cordon's decision when
//! the proxy logged it.
//!
//! Each is written ahead as a traffic line ([`write_line`]: the record with its `time` and
//! `decision`, the format every cordon tool reads) and fed to the aggregates
//! ([`crate::state`]).

use std::collections::BTreeMap;
use std::io::Write as _;

use cordon_engine::TrafficRecord;
use cordon_lifecycle::discover::{selector_labels, workload_label};
use cordon_lifecycle::time::{format_rfc3339, Millis};
use serde_json::Value;

/// One request seen by a proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The request (its `time` is ignored: see [`Observed::time`]).
    pub record: TrafficRecord,
    /// When the request started, in milliseconds since the epoch.
    pub time: Option<Millis>,
    /// cordon's decision (the filter's `wasm.cordon.decision` summary, or one made of
    /// Envoy's RBAC refusal), written as the record's `decision`.
    pub decision: Option<Value>,
}

impl Observed {
    /// Whether the proxy refused the request: the decision's `allowed` is `false`.
    pub fn denied(&self) -> bool {
        self.decision
            .as_ref()
            .and_then(|decision| decision.get("allowed"))
            .and_then(Value::as_bool)
            == Some(false)
    }

    /// The caller's identity as the engine sees it (none on a plaintext connection).
    pub fn source_identity(&self) -> Option<&str> {
        self.record.request().peer_identity
    }

    /// The destination workload as `discover` and `audit` name it
    /// (`namespace/app`, `namespace/key=value,...`, `namespace/*`).
    pub fn destination_label(&self) -> String {
        destination_label(
            self.record.destination_namespace.as_deref(),
            &self.record.destination_labels,
        )
    }
}

/// A destination as `discover` names it: its namespace and the labels a policy would
/// select; `(unknown)` without a namespace.
pub fn destination_label(namespace: Option<&str>, labels: &BTreeMap<String, String>) -> String {
    match namespace {
        None => "(unknown)".to_string(),
        Some(namespace) => {
            let selected: BTreeMap<String, String> =
                selector_labels(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
            workload_label(namespace, &selected)
        }
    }
}

/// Writes the request as a traffic line (without the newline): the record's JSON with its
/// `time` and, when known, its `decision` — what the write-ahead segments hold and what
/// every cordon tool reads ([`from_line`] reads it back to the same request). Written
/// field by field (absent fields left out), with no `Value` built on the way.
pub fn write_line(observed: &Observed, out: &mut Vec<u8>) {
    let record = &observed.record;
    let mut object = Object::open(out);
    if record.principal.is_some() || record.source_ip.is_some() {
        let mut source = object.object("source");
        source.text("principal", record.principal.as_deref());
        source.address("ip", record.source_ip.as_ref());
        source.close();
    }
    if record.remote_ip.is_some() {
        let mut remote = object.object("remote");
        remote.address("ip", record.remote_ip.as_ref());
        remote.close();
    }
    {
        let mut destination = object.object("destination");
        destination.address("ip", record.destination_ip.as_ref());
        destination.raw("port", record.destination_port.as_ref());
        destination.text("namespace", record.destination_namespace.as_deref());
        let mut labels = destination.object("labels");
        for (key, value) in &record.destination_labels {
            labels.text(key, Some(value));
        }
        labels.close();
        destination.close();
    }
    if record.mtls.is_some() || record.sni.is_some() {
        let mut connection = object.object("connection");
        connection.raw("mtls", record.mtls.as_ref());
        connection.text("sni", record.sni.as_deref());
        connection.close();
    }
    {
        let mut request = object.object("request");
        request.text("method", record.method.as_deref());
        request.text("path", record.path.as_deref());
        request.text("host", record.host.as_deref());
        if !record.headers.is_empty() {
            let mut headers = request.object("headers");
            // One name, one entry: several values become a list, in order.
            let mut written: Vec<&str> = Vec::new();
            for (name, _) in &record.headers {
                if written.contains(&name.as_str()) {
                    continue;
                }
                written.push(name);
                let values: Vec<&str> = record
                    .headers
                    .iter()
                    .filter(|(other, _)| other == name)
                    .map(|(_, value)| value.as_str())
                    .collect();
                headers.key(name);
                if let [one] = values.as_slice() {
                    string(headers.out, one);
                } else {
                    headers.out.push(b'[');
                    for (index, value) in values.iter().enumerate() {
                        if index > 0 {
                            headers.out.push(b',');
                        }
                        string(headers.out, value);
                    }
                    headers.out.push(b']');
                }
            }
            headers.close();
        }
        if let Some(claims) = &record.claims {
            let mut auth = request.object("auth");
            auth.value("claims", claims);
            auth.close();
        }
        request.close();
    }
    if let Some(time) = observed.time {
        object.text("time", Some(&format_rfc3339(time)));
    }
    if let Some(decision) = &observed.decision {
        object.value("decision", decision);
    }
    object.close();
}

/// A JSON string.
fn string(out: &mut Vec<u8>, text: &str) {
    // Serializing a `&str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// A JSON object being written.
struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    fn open(out: &'o mut Vec<u8>) -> Object<'o> {
        out.push(b'{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, key);
        self.out.push(b':');
    }

    fn text(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.key(key);
            string(self.out, value);
        }
    }

    /// A number or `true`/`false`, as itself.
    fn raw<T: std::fmt::Display>(&mut self, key: &str, value: Option<&T>) {
        if let Some(value) = value {
            self.key(key);
            let _ = write!(self.out, "{value}");
        }
    }

    /// An address, as a string (its text holds nothing to escape).
    fn address(&mut self, key: &str, value: Option<&std::net::IpAddr>) {
        if let Some(value) = value {
            self.key(key);
            let _ = write!(self.out, "\"{value}\"");
        }
    }

    fn value(&mut self, key: &str, value: &Value) {
        self.key(key);
        let _ = serde_json::to_writer(&mut *self.out, value);
    }

    fn object(&mut self, key: &str) -> Object<'_> {
        self.key(key);
        Object::open(self.out)
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Envoy's RBAC filter (Istio's own enforcement) refused the request: the decision a
/// record gets when the proxy logged no `wasm.cordon.decision` but its response code
/// details name an RBAC denial.
pub fn rbac_denial(status: u32) -> Value {
    serde_json::json!({
        "allowed": false,
        "enforced": true,
        "status": status,
        "reason": "envoy_rbac",
    })
}

/// Reads a decision summary (the filter's `wasm.cordon.decision` filter state, JSON).
/// `None` when it is not a JSON object.
pub fn parse_decision(text: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(text) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}

/// Reads a traffic line (a record, or the filter's `cordon.decision` log line) as the
/// collector would have received it; `Ok(None)` for a line without a record.
pub fn from_line(line: &[u8]) -> Result<Option<Observed>, String> {
    use cordon_engine::traffic::{classify, Line};
    let Line::Record(found) = classify(line)? else {
        return Ok(None);
    };
    let value: Value = serde_json::from_slice(&found.json).map_err(|error| error.to_string())?;
    let mut record = TrafficRecord::from_json(&value)?;
    let time = record
        .time
        .take()
        .and_then(|time| cordon_lifecycle::time::parse_rfc3339(&time));
    Ok(Some(Observed {
        record,
        time,
        decision: value.get("decision").filter(|d| d.is_object()).cloned(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn a_written_line_reads_back_with_its_time_and_decision() {
        let observed = Observed {
            record: TrafficRecord {
                principal: Some("spiffe://td/ns/a/sa/b".into()),
                destination_namespace: Some("shop".into()),
                destination_labels: [("app".to_string(), "cart".to_string())].into(),
                method: Some("GET".into()),
                path: Some("/x\"y".into()),
                headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
                ..TrafficRecord::default()
            },
            time: Some(1_764_205_200_123),
            decision: parse_decision(br#"{"allowed":false,"status":403}"#),
        };
        let mut line = Vec::new();
        write_line(&observed, &mut line);
        let back = from_line(&line).unwrap().unwrap();
        assert_eq!(back, observed);
        assert!(back.denied());
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["time"], "2025-11-27T01:00:00.123Z");
        assert_eq!(value["decision"]["allowed"], false);
    }

    #[test]
    fn written_lines_are_the_records_the_codec_writes() {
        // Every generated request (mTLS and plaintext, refusals, odd paths, headers):
        // the line reads back to the same request, and holds the record `to_json` writes.
        let mut seen = 0;
        for generated in cordon_lifecycle::synthetic::Generator::new(3_000, 11) {
            let Some(observed) = from_line(generated.line.as_bytes()).unwrap() else {
                continue;
            };
            seen += 1;
            let mut line = Vec::new();
            write_line(&observed, &mut line);
            assert_eq!(from_line(&line).unwrap().as_ref(), Some(&observed));
            let written: Value = serde_json::from_slice(&line).unwrap();
            let mut expected = observed.record.clone();
            expected.time = observed.time.map(format_rfc3339);
            assert_eq!(
                TrafficRecord::from_json(&written).unwrap(),
                expected,
                "{}",
                generated.line
            );
        }
        assert!(seen > 3_000);
    }

    #[test]
    fn destinations_are_named_as_discover_names_them() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "cart".to_string()),
            ("version".to_string(), "v1".to_string()),
        ]
        .into();
        assert_eq!(destination_label(Some("shop"), &labels), "shop/cart");
        assert_eq!(destination_label(None, &labels), "(unknown)");
        assert_eq!(destination_label(Some("shop"), &BTreeMap::new()), "shop/*");
    }
}
