//! Writing traffic records: the JSON the filter's decision records carry, which every
//! reader reads back.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;

use serde_json::{Map, Value};

use super::line::DECISION_MARKER;
use super::TrafficRecord;

impl TrafficRecord {
    /// The record as JSON, every field present (`null` when absent; `request.auth` only
    /// with claims). Headers with several values become lists. Fields are inserted in
    /// one fixed order, so the text is the same whether or not `serde_json` keeps
    /// insertion order.
    pub fn to_json(&self) -> Value {
        let ip = |ip: Option<core::net::IpAddr>| ip.map_or(Value::Null, |ip| ip.to_string().into());
        let text = |text: &Option<String>| text.clone().map_or(Value::Null, Value::String);

        let mut source = Map::new();
        source.insert("principal".into(), text(&self.principal));
        source.insert("ip".into(), ip(self.source_ip));
        let mut remote = Map::new();
        remote.insert("ip".into(), ip(self.remote_ip));
        let mut destination = Map::new();
        destination.insert("ip".into(), ip(self.destination_ip));
        destination.insert(
            "port".into(),
            self.destination_port.map_or(Value::Null, Value::from),
        );
        destination.insert("namespace".into(), text(&self.destination_namespace));
        destination.insert(
            "labels".into(),
            Value::Object(
                self.destination_labels
                    .iter()
                    .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                    .collect(),
            ),
        );
        let mut connection = Map::new();
        connection.insert("mtls".into(), self.mtls.map_or(Value::Null, Value::Bool));
        connection.insert("sni".into(), text(&self.sni));

        let mut headers = Map::new();
        for (name, value) in &self.headers {
            match headers.get_mut(name) {
                Some(Value::Array(values)) => values.push(Value::String(value.clone())),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::String(value.clone())]);
                }
                None => {
                    headers.insert(name.clone(), Value::String(value.clone()));
                }
            }
        }
        let mut request = Map::new();
        request.insert("method".into(), text(&self.method));
        request.insert("path".into(), text(&self.path));
        request.insert("host".into(), text(&self.host));
        request.insert("headers".into(), Value::Object(headers));
        if let Some(claims) = &self.claims {
            let mut auth = Map::new();
            auth.insert("claims".into(), claims.clone());
            request.insert("auth".into(), Value::Object(auth));
        }

        let mut record = Map::new();
        record.insert("source".into(), Value::Object(source));
        record.insert("remote".into(), Value::Object(remote));
        record.insert("destination".into(), Value::Object(destination));
        record.insert("connection".into(), Value::Object(connection));
        record.insert("request".into(), Value::Object(request));
        record.insert("time".into(), text(&self.time));
        Value::Object(record)
    }
}

/// A decision record, the log line the filter writes: `cordon.decision {...}`, the
/// record's JSON ([`TrafficRecord::to_json`]) with `decision` added.
pub fn decision_line(record: &TrafficRecord, decision: Value) -> String {
    let mut json = record.to_json();
    if let Value::Object(fields) = &mut json {
        fields.insert("decision".into(), decision);
    }
    format!("{DECISION_MARKER}{json}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::traffic::{read_line, Line};
    use alloc::vec::Vec;

    #[test]
    fn what_is_written_reads_back() {
        let record = TrafficRecord {
            principal: Some("spiffe://td/ns/a/sa/b".into()),
            source_ip: "10.0.0.1".parse().ok(),
            remote_ip: "2001:db8::1".parse().ok(),
            destination_ip: "10.0.0.2".parse().ok(),
            destination_port: Some(8080),
            destination_namespace: Some("shop".into()),
            destination_labels: [("app".to_string(), "cart".to_string())].into(),
            mtls: Some(true),
            sni: Some("cart.shop".into()),
            method: Some("GET".into()),
            path: Some("/a\"b".into()),
            host: Some("cart".into()),
            headers: Vec::from([
                ("x-role".to_string(), "a".to_string()),
                ("x-env".to_string(), "prod".to_string()),
                ("x-role".to_string(), "b,c".to_string()),
            ]),
            claims: Some(serde_json::json!({"sub": "alice", "aud": ["x"]})),
            time: Some("2026-11-27T01:00:00.000Z".into()),
        };
        let line = decision_line(&record, serde_json::json!({"allowed": true}));
        assert!(line.starts_with("cordon.decision {\""));
        let Line::Record(mut back) = read_line(line.as_bytes()).unwrap() else {
            unreachable!("a decision record is a record");
        };
        // Headers come back grouped by name (in the map's order of names).
        let mut expected = record.clone();
        expected.headers.sort();
        back.headers.sort();
        assert_eq!(back, expected);
        assert_eq!(
            TrafficRecord::from_json(&TrafficRecord::default().to_json()).unwrap(),
            TrafficRecord::default()
        );
    }
}
