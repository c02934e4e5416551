//! Alerts on lateral movement: one JSON line the moment the proxy refuses a request,
//! deduplicated per (source identity, destination workload, method, path) within a
//! window.
//!
//! A refusal by cordon's filter (or by Envoy's RBAC filter) means the caller has no grant
//! for that request on that workload: the signal of an identity trying to reach what its
//! segment does not allow. The alert holds the traffic record (with the caller's SPIFFE ID
//! in `source.principal`) and the decision. The book of recent alerts is kept with the
//! state, so a restart does not repeat an alert inside its window.

use std::collections::HashMap;

use cordon_lifecycle::time::{format_rfc3339, Millis};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::record::Observed;

/// What an alert is deduplicated on, and when it was raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertKey {
    /// The caller's SPIFFE ID (`""` for a plaintext caller).
    pub source: String,
    /// The destination workload (`namespace/app`).
    pub destination: String,
    /// The request method.
    pub method: String,
    /// The request path without its query.
    pub path: String,
    /// When the alert was raised (milliseconds since the epoch).
    pub at: Millis,
}

type Dedup = (String, String, String, String);

/// The most recent alerts the book holds. A caller walking distinct paths (a scan of ID
/// paths) raises one alert per path, and within one window the book would grow with every
/// one: past this many it forgets its oldest eighth. A forgotten alert can be raised again
/// inside its window (more alerts, never fewer), and memory stays bounded.
pub const MAX_RECENT_ALERTS: usize = 100_000;

/// Recent alerts and the number raised.
#[derive(Debug, Clone)]
pub struct AlertBook {
    window: Millis,
    recent: HashMap<Dedup, Millis>,
    raised: u64,
    /// [`MAX_RECENT_ALERTS`], smaller in tests.
    capacity: usize,
}

impl AlertBook {
    /// An empty book with a deduplication window (milliseconds).
    pub fn new(window: Millis) -> AlertBook {
        AlertBook::with_capacity(window, MAX_RECENT_ALERTS)
    }

    /// An empty book that holds at most `capacity` recent alerts.
    pub fn with_capacity(window: Millis, capacity: usize) -> AlertBook {
        AlertBook {
            window,
            recent: HashMap::new(),
            raised: 0,
            capacity: capacity.max(1),
        }
    }

    /// How many recent alerts the book holds.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Whether the book holds no recent alert.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Makes room for one more alert: expired ones go first; if the book is still full, its
    /// oldest eighth (one pass, so a scan costs O(1) per alert on average).
    fn make_room(&mut self, now: Millis) {
        if self.recent.len() < self.capacity {
            return;
        }
        self.prune(now);
        if self.recent.len() < self.capacity {
            return;
        }
        let mut times: Vec<Millis> = self.recent.values().copied().collect();
        let evict = (self.capacity / 8).clamp(1, times.len());
        let (_, cutoff, _) = times.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        let mut left = evict;
        self.recent.retain(|_, at| {
            if *at <= cutoff && left > 0 {
                left -= 1;
                false
            } else {
                true
            }
        });
    }

    /// Alerts raised, ever (kept across restarts).
    pub fn raised(&self) -> u64 {
        self.raised
    }

    pub(crate) fn set_raised(&mut self, raised: u64) {
        self.raised = raised;
    }

    /// Decides whether a denied request raises an alert now; if so, records it and
    /// returns its key and the alert.
    pub fn check(&mut self, observed: &Observed, now: Millis) -> Option<(AlertKey, Value)> {
        let record = &observed.record;
        let path = record.path.as_deref().unwrap_or("");
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        let dedup: Dedup = (
            observed.source_identity().unwrap_or("").to_string(),
            observed.destination_label(),
            record.method.clone().unwrap_or_default(),
            path.to_string(),
        );
        if let Some(at) = self.recent.get(&dedup) {
            if now.saturating_sub(*at) < self.window {
                return None;
            }
        }
        if !self.recent.contains_key(&dedup) {
            self.make_room(now);
        }
        self.recent.insert(dedup.clone(), now);
        self.raised += 1;
        let mut full = record.to_json();
        if let Value::Object(fields) = &mut full {
            if let Some(time) = observed.time {
                fields.insert("time".into(), Value::String(format_rfc3339(time)));
            }
            if let Some(decision) = &observed.decision {
                fields.insert("decision".into(), decision.clone());
            }
        }
        let (source, destination, method, path) = dedup;
        let alert = json!({
            "alert": "lateral_movement",
            "time": format_rfc3339(now),
            "source": if source.is_empty() { Value::Null } else { Value::String(source.clone()) },
            "destination": destination,
            "method": method,
            "path": path,
            "reason": observed.decision.as_ref().and_then(|d| d.get("reason")).cloned().unwrap_or(Value::Null),
            "window_seconds": self.window / 1000,
            "record": full,
        });
        Some((
            AlertKey {
                source,
                destination,
                method,
                path,
                at: now,
            },
            alert,
        ))
    }

    /// Restores an alert read from the state directory; from a segment it also counts as
    /// raised (a snapshot's count already holds its own).
    pub(crate) fn restore(&mut self, key: AlertKey, counted_elsewhere: bool) {
        let dedup = (key.source, key.destination, key.method, key.path);
        let at = self
            .recent
            .get(&dedup)
            .map_or(key.at, |at| (*at).max(key.at));
        if !self.recent.contains_key(&dedup) {
            self.make_room(at);
        }
        self.recent.insert(dedup, at);
        if counted_elsewhere {
            self.raised += 1;
        }
    }

    /// Forgets alerts older than the window (the book stays bounded).
    pub fn prune(&mut self, now: Millis) {
        let window = self.window;
        self.recent.retain(|_, at| now.saturating_sub(*at) < window);
    }

    /// The recent alerts, for the snapshot.
    pub fn keys(&self) -> Vec<AlertKey> {
        let mut keys: Vec<AlertKey> = self
            .recent
            .iter()
            .map(|((source, destination, method, path), at)| AlertKey {
                source: source.clone(),
                destination: destination.clone(),
                method: method.clone(),
                path: path.clone(),
                at: *at,
            })
            .collect();
        keys.sort_by(|a, b| {
            (&a.source, &a.destination, &a.method, &a.path).cmp(&(
                &b.source,
                &b.destination,
                &b.method,
                &b.path,
            ))
        });
        keys
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use cordon_engine::TrafficRecord;

    fn denied(path: &str) -> Observed {
        Observed {
            record: TrafficRecord {
                principal: Some("spiffe://td/ns/shop/sa/frontend".into()),
                destination_namespace: Some("finance".into()),
                destination_labels: [("app".to_string(), "billing".to_string())].into(),
                method: Some("GET".into()),
                path: Some(path.into()),
                ..TrafficRecord::default()
            },
            time: Some(1_000),
            decision: Some(json!({"allowed": false, "reason": "no_allow_match"})),
            node: None,
        }
    }

    #[test]
    fn one_alert_per_key_within_the_window() {
        let mut book = AlertBook::new(60_000);
        let (key, alert) = book.check(&denied("/v1/credits?a=1"), 10_000).unwrap();
        assert_eq!(key.path, "/v1/credits");
        assert_eq!(alert["source"], "spiffe://td/ns/shop/sa/frontend");
        assert_eq!(alert["destination"], "finance/billing");
        assert_eq!(
            alert["record"]["source"]["principal"],
            "spiffe://td/ns/shop/sa/frontend"
        );
        assert!(book.check(&denied("/v1/credits?a=2"), 20_000).is_none());
        assert!(book.check(&denied("/v1/other"), 20_000).is_some());
        assert!(book.check(&denied("/v1/credits"), 70_001).is_some());
        assert_eq!(book.raised(), 3);
        book.prune(200_000);
        assert!(book.keys().is_empty());
    }

    #[test]
    fn a_scan_of_distinct_paths_keeps_the_book_bounded() {
        let mut book = AlertBook::with_capacity(60_000, 800);
        // 10,000 distinct paths inside one window: each alerts once, the book stays bounded.
        for id in 0..10_000i64 {
            let raised = book.check(&denied(&format!("/orders/{id}")), 1_000 + id);
            assert!(raised.is_some(), "/orders/{id}");
            assert!(book.len() <= 800, "{} alerts held", book.len());
        }
        assert_eq!(book.raised(), 10_000);
        // The most recent ones are still deduplicated; the oldest were forgotten and raise
        // again (more alerts, never fewer).
        assert!(book.check(&denied("/orders/9999"), 20_000).is_none());
        assert!(book.check(&denied("/orders/0"), 20_000).is_some());
        // Expired alerts make room before any recent one is forgotten.
        let mut book = AlertBook::with_capacity(1_000, 4);
        for id in 0..4i64 {
            assert!(book.check(&denied(&format!("/a/{id}")), id).is_some());
        }
        assert!(book.check(&denied("/b"), 5_000).is_some());
        assert_eq!(
            book.len(),
            1,
            "the four expired alerts were dropped, nothing recent"
        );
    }
}
