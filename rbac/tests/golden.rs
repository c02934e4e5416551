//! istiod's own golden cases (`pilot/pkg/security/authz/builder/testdata/http`, see
//! `tests/golden/README.md`), re-expressed as JSON: the translation must give the filters
//! istiod gives, compared as parsed JSON after normalizing proto3 defaults.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

use cordon_rbac::{translate, translate_unvalidated, MeshSettings, Workload};
use serde_json::{Map, Value};

/// The cases cordon rejects: their translation is checked with [`translate_unvalidated`]
/// only, and [`translate`] must refuse them. `allow-full-rule` reads Envoy metadata
/// (`experimental.envoy.filters.*`), which cordon has no attribute for.
const CORDON_REJECTS: &[&str] = &["allow-full-rule"];

/// Cases cordon may reject or accept depending on the engine's version: `allow-path` has
/// `{**}` followed by literal segments (`/{**}/path/template`), which Istio's validation
/// and Envoy accept and cordon refused until its templates followed Envoy's.
const CORDON_MAY_REJECT: &[&str] = &["allow-path"];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn cases() -> Vec<(String, Value)> {
    let mut cases: Vec<(String, Value)> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            (name, serde_json::from_str(&text).unwrap())
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

/// Drops the values proto3 JSON leaves out (false, 0, "", empty lists and maps, the ALLOW
/// enum) except inside a `StringMatcher` oneof (`exact: ""` is meaningful), so that
/// explicit and implicit defaults compare equal.
fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, item) in map {
                let item = normalize(item);
                let oneof = matches!(key.as_str(), "exact" | "prefix" | "suffix" | "contains");
                let default = match &item {
                    Value::Bool(flag) => !flag,
                    Value::Null => true,
                    Value::String(text) => {
                        !oneof && (text.is_empty() || (key == "action" && text == "ALLOW"))
                    }
                    Value::Array(items) => items.is_empty(),
                    Value::Object(items) => items.is_empty() && key == "policies",
                    Value::Number(n) => n.as_u64() == Some(0) && key != "destination_port",
                };
                if !default {
                    out.insert(key.clone(), item);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn settings(case: &Value) -> (Workload, MeshSettings) {
    let workload = Workload {
        namespace: case["workload"]["namespace"].as_str().map(str::to_string),
        labels: case["workload"]["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
    };
    let mesh = MeshSettings {
        trust_domain: case["mesh"]["trust_domain"].as_str().unwrap().to_string(),
        trust_domain_aliases: case["mesh"]["trust_domain_aliases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
        ..MeshSettings::default()
    };
    (workload, mesh)
}

/// Where two JSON values first differ, for a readable failure.
fn first_difference(path: &str, got: &Value, want: &Value) -> Option<String> {
    match (got, want) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let here = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = first_difference(&here, x, y) {
                            return Some(d);
                        }
                    }
                    (x, y) => return Some(format!("{here}: got {x:?}, istiod {y:?}")),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y)),
        _ if got == want => None,
        _ => Some(format!("{path}: got {got}, istiod {want}")),
    }
}

#[test]
fn every_golden_case_matches_istiod() {
    let cases = cases();
    assert_eq!(cases.len(), 17, "the README lists 17 reproduced cases");
    let mut failures = Vec::new();
    let mut rejected = Vec::new();
    for (name, case) in &cases {
        let policies = case["policies"].as_array().unwrap();
        let (workload, mesh) = settings(case);
        let want = normalize(&case["expected_http_filters"]);
        let got = translate_unvalidated(policies, &workload, &mesh).unwrap();
        let got = normalize(&Value::Array(got.http_filters));
        if let Some(difference) = first_difference(name, &got, &want) {
            failures.push(difference);
        }
        match translate(policies, &workload, &mesh) {
            Err(_) if CORDON_MAY_REJECT.contains(&name.as_str()) => {}
            Err(_) => rejected.push(name.as_str()),
            Ok(validated) => assert_eq!(
                normalize(&Value::Array(validated.http_filters)),
                want,
                "{name}: translate and translate_unvalidated differ"
            ),
        }
    }
    assert!(
        failures.is_empty(),
        "differences from istiod:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        rejected, CORDON_REJECTS,
        "the cases cordon rejects changed: update the README"
    );
}

#[test]
fn normalize_keeps_meaningful_values() {
    let value = serde_json::json!({"exact": "", "ignore_case": false, "action": "ALLOW",
        "policies": {}, "destination_port": 0, "prefix_len": 0, "any": true});
    assert_eq!(
        normalize(&value),
        serde_json::json!({"exact": "", "destination_port": 0, "any": true})
    );
}
