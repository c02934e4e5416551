//! One observed request, as the collector keeps it: the engine's traffic record
//! ([`TrafficRecord`], the one codec every cordon tool reads) and cordon's decision when
//! the proxy logged it.
//!
//! The record is split in two for storage: its time, and the rest (the *key*, the
//! record's JSON without `time`). Records equal but for their time are counted under one
//! key with their first and last time, which is all `discover` and `audit` keep of a
//! record's time ([`crate::state`]).

use std::collections::BTreeMap;

use cordon_engine::TrafficRecord;
use cordon_lifecycle::discover::{selector_labels, workload_label};
use cordon_lifecycle::time::Millis;
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

    /// The record's JSON without `time` (with `decision` when known): the storage key.
    pub fn key(&self) -> String {
        let mut json = self.record.to_json();
        if let Value::Object(fields) = &mut json {
            fields.remove("time");
            if let Some(decision) = &self.decision {
                fields.insert("decision".into(), decision.clone());
            }
        }
        json.to_string()
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
    fn the_key_is_the_record_without_its_time_and_with_the_decision() {
        let observed = Observed {
            record: TrafficRecord {
                principal: Some("spiffe://td/ns/a/sa/b".into()),
                method: Some("GET".into()),
                path: Some("/x".into()),
                time: Some("2026-01-01T00:00:00Z".into()),
                ..TrafficRecord::default()
            },
            time: Some(1),
            decision: parse_decision(br#"{"allowed":false,"status":403}"#),
        };
        let key: Value = serde_json::from_str(&observed.key()).unwrap();
        assert!(key.get("time").is_none());
        assert_eq!(key["decision"]["allowed"], false);
        assert_eq!(key["request"]["path"], "/x");
        assert!(observed.denied());
        // The key reads back as a record (the engine's codec accepts `decision`).
        assert!(TrafficRecord::from_json(&key).is_ok());
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
