//! One observed request, as the collector keeps it: the engine's traffic record
//! ([`TrafficRecord`], the one codec every cordon tool reads) and cordon's decision when
//! the proxy logged it.
//!
//! Each is written ahead as a traffic line ([`write_line`]: the record with its `time` and
//! `decision`, the format every cordon tool reads) and fed to the aggregates
//! ([`crate::state`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;

use cordon_engine::TrafficRecord;
use cordon_lifecycle::discover::{selector_labels, workload_label};
use cordon_lifecycle::time::{format_rfc3339, Millis};
use serde_json::Value;

use crate::als::NodeWorkload;

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
    /// The destination workload every entry of a stream shares (ALS: the proxy's node),
    /// kept once per stream rather than copied into every record. When set, it stands for
    /// the record's `destination_namespace` and `destination_labels` (left empty); read
    /// them with [`Observed::destination_namespace`] and [`Observed::destination_labels`].
    pub node: Option<Arc<NodeWorkload>>,
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
        destination_label(self.destination_namespace(), self.destination_labels())
    }

    /// `destination.namespace`: the node's when the request has one, else the record's.
    pub fn destination_namespace(&self) -> Option<&str> {
        match &self.node {
            Some(node) => node.namespace.as_deref(),
            None => self.record.destination_namespace.as_deref(),
        }
    }

    /// `destination.labels`: the node's when the request has one, else the record's.
    pub fn destination_labels(&self) -> &BTreeMap<String, String> {
        match &self.node {
            Some(node) => &node.labels,
            None => &self.record.destination_labels,
        }
    }

    /// The record with its destination filled in from the node (a copy).
    pub fn full_record(&self) -> TrafficRecord {
        let mut record = self.record.clone();
        if let Some(node) = &self.node {
            record.destination_namespace = node.namespace.clone();
            record.destination_labels = node.labels.clone();
        }
        record
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
        destination.port("port", record.destination_port);
        destination.text("namespace", observed.destination_namespace());
        let mut labels = destination.object("labels");
        for (key, value) in observed.destination_labels() {
            labels.text(key, Some(value));
        }
        labels.close();
        destination.close();
    }
    if record.mtls.is_some() || record.sni.is_some() {
        let mut connection = object.object("connection");
        connection.boolean("mtls", record.mtls);
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
            // One name, one entry: several values become a list, in order (no buffer:
            // a name seen at an earlier index is skipped, its values counted in place).
            for (index, (name, _)) in record.headers.iter().enumerate() {
                let earlier = record.headers.get(..index).unwrap_or_default();
                if earlier.iter().any(|(other, _)| other == name) {
                    continue;
                }
                let mut values = record
                    .headers
                    .iter()
                    .filter(|(other, _)| other == name)
                    .map(|(_, value)| value.as_str());
                headers.key(name);
                let count = values.clone().count();
                if count == 1 {
                    if let Some(one) = values.next() {
                        string(headers.out, one);
                    }
                } else {
                    headers.out.push(b'[');
                    for (index, value) in values.enumerate() {
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

/// A byte in decimal, as `Display` writes it.
fn decimal_octet(out: &mut Vec<u8>, octet: u8) {
    if octet >= 100 {
        out.push(b'0' + octet / 100);
    }
    if octet >= 10 {
        out.push(b'0' + octet / 10 % 10);
    }
    out.push(b'0' + octet % 10);
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

    /// A port number, in decimal.
    fn port(&mut self, key: &str, value: Option<u16>) {
        if let Some(value) = value {
            self.key(key);
            let mut digits = [0u8; 5];
            let mut at = digits.len();
            let mut rest = value;
            loop {
                at -= 1;
                if let Some(digit) = digits.get_mut(at) {
                    *digit = b'0' + (rest % 10) as u8;
                }
                rest /= 10;
                if rest == 0 || at == 0 {
                    break;
                }
            }
            self.out
                .extend_from_slice(digits.get(at..).unwrap_or_default());
        }
    }

    /// `true` or `false`.
    fn boolean(&mut self, key: &str, value: Option<bool>) {
        if let Some(value) = value {
            self.key(key);
            self.out
                .extend_from_slice(if value { b"true" } else { b"false" });
        }
    }

    /// An address, as a string (its text holds nothing to escape). IPv4, the common
    /// case, is written digit by digit (what `Display` writes, without the formatter).
    fn address(&mut self, key: &str, value: Option<&std::net::IpAddr>) {
        if let Some(value) = value {
            self.key(key);
            match value {
                std::net::IpAddr::V4(v4) => {
                    self.out.push(b'"');
                    for (index, octet) in v4.octets().into_iter().enumerate() {
                        if index > 0 {
                            self.out.push(b'.');
                        }
                        decimal_octet(self.out, octet);
                    }
                    self.out.push(b'"');
                }
                std::net::IpAddr::V6(_) => {
                    let _ = write!(self.out, "\"{value}\"");
                }
            }
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
        node: None,
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
            node: None,
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
    fn addresses_are_written_as_display_writes_them() {
        let mut addresses: Vec<std::net::IpAddr> = [0u8, 1, 9, 10, 42, 99, 100, 101, 199, 200, 255]
            .iter()
            .map(|&n| std::net::Ipv4Addr::new(n, 255 - n, n / 3, 7).into())
            .collect();
        addresses.push("fd00::1".parse().unwrap());
        addresses.push("::ffff:10.0.0.1".parse().unwrap());
        for address in addresses {
            let observed = Observed {
                record: TrafficRecord {
                    source_ip: Some(address),
                    ..TrafficRecord::default()
                },
                ..Observed::default()
            };
            let mut line = Vec::new();
            write_line(&observed, &mut line);
            let value: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(value["source"]["ip"], address.to_string());
        }
    }

    #[test]
    fn ports_are_written_in_decimal() {
        for port in [0u16, 1, 9, 10, 80, 443, 8080, 9999, 10000, 15006, 65535] {
            let observed = Observed {
                record: TrafficRecord {
                    destination_port: Some(port),
                    mtls: Some(port % 2 == 0),
                    ..TrafficRecord::default()
                },
                ..Observed::default()
            };
            let mut line = Vec::new();
            write_line(&observed, &mut line);
            let value: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(value["destination"]["port"], port);
            assert_eq!(value["connection"]["mtls"], port % 2 == 0);
        }
    }

    #[test]
    fn headers_of_one_name_are_one_list_in_order() {
        let observed = Observed {
            record: TrafficRecord {
                headers: vec![
                    ("x-b".into(), "1".into()),
                    ("x-a".into(), "2".into()),
                    ("x-b".into(), "3".into()),
                    ("x-c".into(), "4".into()),
                    ("x-b".into(), "5".into()),
                ],
                ..TrafficRecord::default()
            },
            ..Observed::default()
        };
        let mut line = Vec::new();
        write_line(&observed, &mut line);
        let text = String::from_utf8(line).unwrap();
        assert!(
            text.contains(r#""headers":{"x-b":["1","3","5"],"x-a":"2","x-c":"4"}"#),
            "{text}"
        );
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
