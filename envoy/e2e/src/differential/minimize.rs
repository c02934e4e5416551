//! Shrinks disagreement records to minimal reproducers: greedy rounds, each running every
//! one-step reduction of every record (a policy, rule, source, operation, condition, field
//! or value removed; a header, the token, a claim removed; method, target, host,
//! connection and mesh settings reset to plain ones) in one Envoy, keeping the smallest
//! reduction that still gets the same two answers, until none does.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::{at, run_records, tools, Context_, Settings};
use crate::Result;

/// Keys a reduction never removes (they make the object what it is).
const KEEP: &[&str] = &[
    "key",
    "source",
    "operation",
    "action",
    "matchLabels",
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
];

/// Minimizes decision disagreement records (as `disagreements.jsonl` holds them); the
/// result has one record per input, each as small as the rounds could make it, and is
/// written to `target/differential/minimized.jsonl`.
pub fn minimize(records: &[Value], settings: &Settings) -> Result<Vec<Value>> {
    let started = Instant::now();
    let context = Context_::new(Vec::new())?;
    let mut current: Vec<Value> = records.iter().map(prepare).collect();
    let mut done = vec![false; current.len()];
    for round in 1.. {
        let mut candidates: Vec<(usize, Value)> = Vec::new();
        for (owner, record) in current.iter().enumerate() {
            if done.get(owner).copied().unwrap_or(true) {
                continue;
            }
            for reduced in reductions(record) {
                candidates.push((owner, reduced));
            }
        }
        if candidates.is_empty() {
            break;
        }
        let runnable: Vec<Value> = candidates
            .iter()
            .enumerate()
            .map(|(index, (_, record))| {
                let mut record = record.clone();
                if let Some(object) = record.as_object_mut() {
                    object.insert("set_seed".into(), json!(index));
                }
                record
            })
            .collect();
        let report = run_records(&runnable, settings, &context)?;
        let mut best: Vec<Option<Value>> = vec![None; current.len()];
        for found in &report.disagreements {
            let Some(index) = at(found, "/set_seed").as_u64() else {
                continue;
            };
            let Some((owner, candidate)) = usize::try_from(index)
                .ok()
                .and_then(|index| candidates.get(index))
            else {
                continue;
            };
            let Some(original) = current.get(*owner) else {
                continue;
            };
            if at(found, "/rbac") != at(original, "/rbac")
                || at(found, "/cordon") != at(original, "/cordon")
            {
                continue;
            }
            if let Some(slot) = best.get_mut(*owner) {
                let smaller = slot.as_ref().is_none_or(|b| size(candidate) < size(b));
                if smaller {
                    *slot = Some(candidate.clone());
                }
            }
        }
        let mut progressed = 0;
        for (owner, better) in best.into_iter().enumerate() {
            match better {
                Some(better) => {
                    if let Some(slot) = current.get_mut(owner) {
                        *slot = better;
                        progressed += 1;
                    }
                }
                None => {
                    if let Some(flag) = done.get_mut(owner) {
                        *flag = true;
                    }
                }
            }
        }
        eprintln!(
            "minimize: round {round}: {} candidates, {progressed} record(s) shrank, {:.0}s",
            candidates.len(),
            started.elapsed().as_secs_f64()
        );
        if progressed == 0 {
            break;
        }
    }
    let out = tools::target_dir().join("differential");
    std::fs::create_dir_all(&out)?;
    let text: String = current.iter().map(|record| format!("{record}\n")).collect();
    std::fs::write(out.join("minimized.jsonl"), text)?;
    Ok(current)
}

/// Writes the record's literal listener ports as placeholders, so that reductions
/// replay on any listener.
fn prepare(record: &Value) -> Value {
    let mut text = at(record, "/policies").to_string();
    for (key, placeholder) in [("v4", "__PORT4__"), ("v6", "__PORT6__")] {
        if let Some(port) = at(record, &format!("/listener_ports/{key}")).as_u64() {
            text = text.replace(&format!("\"{port}\""), &format!("\"{placeholder}\""));
        }
    }
    let mut record = record.clone();
    if let (Some(object), Ok(policies)) =
        (record.as_object_mut(), serde_json::from_str::<Value>(&text))
    {
        object.insert("policies".into(), policies);
        object.remove("listener_ports");
    }
    record
}

fn size(record: &Value) -> usize {
    at(record, "/policies").to_string().len()
        + at(record, "/request").to_string().len()
        + at(record, "/mesh").to_string().len()
}

/// Every one-step reduction of a record.
fn reductions(record: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let with = |pointer: &str, value: Value| -> Value {
        let mut copy = record.clone();
        if let Some(slot) = copy.pointer_mut(pointer) {
            *slot = value;
        }
        copy
    };
    // Policies.
    let policies = at(record, "/policies").clone();
    for reduced in shrink_policies(&policies) {
        out.push(with("/policies", reduced));
    }
    // The request.
    let request = at(record, "/request");
    if let Some(headers) = at(request, "/headers").as_array() {
        for index in 0..headers.len() {
            let mut fewer = headers.clone();
            fewer.remove(index);
            out.push(with("/request/headers", Value::Array(fewer)));
        }
    }
    if let Some(claims) = at(request, "/jwt_claims").as_object() {
        out.push(with("/request/jwt_claims", Value::Null));
        for key in claims.keys() {
            if key == "iss" {
                continue;
            }
            let mut fewer = claims.clone();
            fewer.remove(key);
            out.push(with("/request/jwt_claims", Value::Object(fewer)));
        }
    }
    for (pointer, plain) in [
        ("/request/method", json!("GET")),
        ("/request/target", json!("/")),
        ("/request/host", json!("billing")),
        ("/request/connection/sni", Value::Null),
        ("/request/connection/address", json!("127.0.0.1")),
        ("/mesh/trust_domain_aliases", json!([])),
        ("/mesh/path_normalization", json!("NONE")),
        ("/mesh/root_namespace", json!("istio-system")),
    ] {
        if record.pointer(pointer).is_some_and(|value| *value != plain) {
            out.push(with(pointer, plain));
        }
    }
    out
}

/// Every one-step reduction of a list of policies.
fn shrink_policies(policies: &Value) -> Vec<Value> {
    let Some(list) = policies.as_array() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for index in 0..list.len() {
        let mut fewer = list.clone();
        fewer.remove(index);
        out.push(Value::Array(fewer));
    }
    for (index, policy) in list.iter().enumerate() {
        let deny = at(policy, "/spec/action").as_str() == Some("DENY");
        for reduced in shrink(policy, &mut Vec::new(), deny) {
            let mut copy = list.clone();
            if let Some(slot) = copy.get_mut(index) {
                *slot = reduced;
            }
            out.push(Value::Array(copy));
        }
    }
    out
}

/// Reductions of `value` found at `path` inside a policy: an element of a list of two or
/// more removed, or a removable key of an object removed (never leaving a source,
/// operation or condition empty, never the last rule of a DENY policy).
fn shrink(value: &Value, path: &mut Vec<String>, deny: bool) -> Vec<Value> {
    let mut out = Vec::new();
    match value {
        Value::Array(items) => {
            let is_rules = path.last().is_some_and(|k| k == "rules");
            if items.len() > 1 || (is_rules && !deny && !items.is_empty()) {
                for index in 0..items.len() {
                    let mut fewer = items.clone();
                    fewer.remove(index);
                    out.push(Value::Array(fewer));
                }
            }
            for (index, item) in items.iter().enumerate() {
                path.push(index.to_string());
                for reduced in shrink(item, path, deny) {
                    let mut copy = items.clone();
                    if let Some(slot) = copy.get_mut(index) {
                        *slot = reduced;
                    }
                    out.push(Value::Array(copy));
                }
                path.pop();
            }
        }
        Value::Object(map) => {
            let in_rule = path.len() >= 2 && path.get(path.len() - 2).is_some_and(|k| k == "rules");
            for key in map.keys() {
                if KEEP.contains(&key.as_str()) {
                    continue;
                }
                let other = match key.as_str() {
                    "values" => Some("notValues"),
                    "notValues" => Some("values"),
                    _ => None,
                };
                if let Some(other) = other {
                    if !map.contains_key(other) {
                        continue;
                    }
                }
                if key == "rules" && deny {
                    continue;
                }
                if map.len() == 1 && !in_rule && key != "annotations" && key != "selector" {
                    continue;
                }
                let mut fewer: Map<String, Value> = map.clone();
                fewer.remove(key);
                out.push(Value::Object(fewer));
            }
            for (key, item) in map {
                path.push(key.clone());
                for reduced in shrink(item, path, deny) {
                    let mut copy = map.clone();
                    copy.insert(key.clone(), reduced);
                    out.push(Value::Object(copy));
                }
                path.pop();
            }
        }
        _ => {}
    }
    out
}
