//! Runs the data-driven corpus in `policies/corpus/` against the compiled evaluator and
//! the reference interpreter. Every failure is gathered before the test fails; set
//! `CORDON_CORPUS_FILTER=<substring>` to run only matching cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::{Path, PathBuf};

use cordon_engine::model::parse_policies;
use cordon_engine::{reference, Options, PathNormalization, PolicySet, TrafficRecord};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/corpus")
}

fn options_from(value: Option<&Value>) -> Options {
    let mut options = Options::default();
    let Some(value) = value else { return options };
    for (key, setting) in value.as_object().expect("options must be an object") {
        match key.as_str() {
            "root_namespace" => options.root_namespace = setting.as_str().unwrap().to_string(),
            "trust_domain" => options.trust_domain = Some(setting.as_str().unwrap().to_string()),
            "trust_domain_aliases" => {
                options.trust_domain_aliases = setting
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|alias| alias.as_str().unwrap().to_string())
                    .collect()
            }
            "path_normalization" => {
                options.path_normalization = PathNormalization::from_name(setting.as_str().unwrap())
                    .unwrap_or_else(|| panic!("unknown path_normalization {setting}"))
            }
            other => panic!("unknown corpus option `{other}`"),
        }
    }
    options
}

fn merged_options(file: Option<&Value>, case: Option<&Value>) -> Option<Value> {
    match (file, case) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one.clone()),
        (Some(file), Some(case)) => {
            let mut merged = file.as_object().unwrap().clone();
            for (key, value) in case.as_object().unwrap() {
                merged.insert(key.clone(), value.clone());
            }
            Some(Value::Object(merged))
        }
    }
}

/// Checks one case; returns the problems found (empty when it passes).
fn run_case(
    file_policies: Option<&Value>,
    file_options: Option<&Value>,
    case: &Value,
) -> Vec<String> {
    let mut problems = Vec::new();
    let policies = case
        .get("policies")
        .or(file_policies)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let expect = case.get("expect").expect("case without expect");
    let mut options = options_from(merged_options(file_options, case.get("options")).as_ref());

    if let Some(expected_error) = expect.get("error") {
        let (_, _, errors) = parse_policies(&policies);
        let errors = if errors.is_empty() {
            match PolicySet::compile(&policies, options) {
                Ok(_) => Vec::new(),
                Err(error) => error.errors,
            }
        } else {
            errors
        };
        let found = errors.iter().any(|error| {
            expected_error
                .get("policy")
                .and_then(Value::as_str)
                .is_none_or(|policy| error.policy == policy)
                && expected_error
                    .get("field")
                    .and_then(Value::as_str)
                    .is_none_or(|field| error.field == field)
                && expected_error
                    .get("contains")
                    .and_then(Value::as_str)
                    .is_none_or(|text| error.message.to_lowercase().contains(&text.to_lowercase()))
        });
        if !found {
            problems.push(format!("expected error {expected_error}, got {errors:?}"));
        }
        return problems;
    }

    let record = match TrafficRecord::from_json(case.get("request").expect("case without request"))
    {
        Ok(record) => record,
        Err(error) => return vec![format!("bad request record: {error}")],
    };
    options.workload = record.workload();
    let (parsed, _, parse_errors) = parse_policies(&policies);
    let set = match PolicySet::compile(&policies, options.clone()) {
        Ok(set) => set,
        Err(error) => return vec![format!("policies did not compile: {error}")],
    };
    assert!(parse_errors.is_empty());
    if let Some(warning) = expect.get("warning").and_then(Value::as_str) {
        if !set.warnings().iter().any(|found| {
            found
                .message
                .to_lowercase()
                .contains(&warning.to_lowercase())
        }) {
            problems.push(format!(
                "expected a warning containing `{warning}`, got {:?}",
                set.warnings()
            ));
        }
    }
    let request = record.request();
    let mut scratch = set.new_scratch();
    let decision = set.evaluate(&request, &mut scratch);
    let name =
        |rule: Option<cordon_engine::RuleRef>| rule.map(|rule| set.rule_id(rule).to_string());
    let oracle = reference::evaluate(&parsed, &options, &request);

    let expected_allowed = match expect.get("decision").and_then(Value::as_str) {
        Some("allow") => true,
        Some("deny") => false,
        other => {
            return vec![format!(
                "expect.decision must be allow or deny, found {other:?}"
            )]
        }
    };
    let expected_status = expect
        .get("status")
        .and_then(Value::as_u64)
        .unwrap_or(if expected_allowed { 200 } else { 403 }) as u16;
    for (engine, allowed, status, policy, audit) in [
        (
            "compiled",
            decision.allowed,
            decision.status,
            name(decision.policy),
            name(decision.audit),
        ),
        (
            "reference",
            oracle.allowed,
            oracle.status,
            oracle.policy.clone(),
            oracle.audit.clone(),
        ),
    ] {
        if allowed != expected_allowed || status != expected_status {
            problems.push(format!(
                "{engine}: expected {} ({expected_status}), got {} ({status}) by {policy:?}",
                if expected_allowed { "allow" } else { "deny" },
                if allowed { "allow" } else { "deny" },
            ));
        }
        if let Some(expected_policy) = expect.get("policy") {
            let expected_policy = expected_policy.as_str().map(str::to_string);
            if policy != expected_policy {
                problems.push(format!(
                    "{engine}: expected deciding policy {expected_policy:?}, got {policy:?}"
                ));
            }
        }
        if let Some(expected_audit) = expect.get("audit") {
            let expected_audit = expected_audit.as_str().map(str::to_string);
            if audit != expected_audit {
                problems.push(format!(
                    "{engine}: expected audit {expected_audit:?}, got {audit:?}"
                ));
            }
        }
    }
    if let Some(expected_dry_run) = expect.get("dry_run") {
        let expected_allowed =
            expected_dry_run.get("decision").and_then(Value::as_str) == Some("allow");
        let expected_policy = expected_dry_run
            .get("policy")
            .and_then(Value::as_str)
            .map(str::to_string);
        let compiled = (decision.dry_run.allowed, name(decision.dry_run.rule));
        for (engine, found) in [
            ("compiled", compiled),
            ("reference", oracle.dry_run.clone()),
        ] {
            let (allowed, policy) = found;
            if allowed != expected_allowed
                || (expected_dry_run.get("policy").is_some() && policy != expected_policy)
            {
                problems.push(format!(
                    "{engine}: expected dry-run {expected_dry_run}, got allowed={allowed} by {policy:?}"
                ));
            }
        }
    }
    problems.extend(explanation_agrees(&set, &request, &decision));
    if let Some(identity) = expect.get("identity").and_then(Value::as_str) {
        if decision.identity.name() != identity {
            problems.push(format!(
                "expected identity {identity}, got {:?}",
                decision.identity
            ));
        }
    }
    problems
}

/// `explain` is read off the same evaluation: its decision is `evaluate`'s, and the first
/// matching rule of each kind it lists is the rule the decision names.
fn explanation_agrees(
    set: &PolicySet,
    request: &cordon_engine::Request<'_>,
    decision: &cordon_engine::Decision,
) -> Vec<String> {
    use cordon_engine::Action;
    let mut problems = Vec::new();
    let explanation = set.explain(request, &mut set.new_scratch());
    if explanation.decision != *decision {
        problems.push(format!(
            "explain decided {:?}, evaluate {decision:?}",
            explanation.decision
        ));
    }
    if matches!(decision.status, 400 | 431) {
        if !explanation.rules.is_empty() {
            problems.push("explain lists rules for a refused request".to_string());
        }
        return problems;
    }
    let first = |action: Action| {
        explanation
            .rules
            .iter()
            .find(|rule| rule.action == action && !rule.dry_run && rule.matched)
            .map(|rule| rule.id.clone())
    };
    let name =
        |rule: Option<cordon_engine::RuleRef>| rule.map(|rule| set.rule_id(rule).to_string());
    let deciding = first(Action::Deny).or_else(|| first(Action::Allow));
    if deciding != name(decision.policy) {
        problems.push(format!(
            "explain's first matching rule {deciding:?}, the decision's {:?}",
            name(decision.policy)
        ));
    }
    if first(Action::Audit) != name(decision.audit) {
        problems.push(format!(
            "explain's first matching AUDIT rule {:?}, the decision's {:?}",
            first(Action::Audit),
            name(decision.audit)
        ));
    }
    for rule in &explanation.rules {
        if rule.matched != rule.failures.is_empty() {
            problems.push(format!(
                "explain: rule {} matched={} with {} failing fields",
                rule.id,
                rule.matched,
                rule.failures.len()
            ));
        }
    }
    problems
}

#[test]
fn corpus() {
    let filter = std::env::var("CORDON_CORPUS_FILTER").ok();
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("policies/corpus exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut names = std::collections::BTreeSet::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let document: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: invalid JSON: {error}", file.display()));
        let cases = document
            .get("cases")
            .and_then(Value::as_array)
            .expect("cases");
        for case in cases {
            let name = case.get("name").and_then(Value::as_str).expect("case name");
            assert!(names.insert(name.to_string()), "duplicate case name {name}");
            if filter
                .as_deref()
                .is_some_and(|filter| !name.contains(filter))
            {
                continue;
            }
            ran += 1;
            let problems = run_case(document.get("policies"), document.get("options"), case);
            if !problems.is_empty() {
                let file_name = file.file_name().unwrap().to_string_lossy();
                failures.push(format!(
                    "{file_name} :: {name}\n    {}",
                    problems.join("\n    ")
                ));
            }
        }
    }
    println!("corpus: {ran} cases run, {} failed", failures.len());
    assert!(ran > 0, "no corpus case ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} corpus cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
