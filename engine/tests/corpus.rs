//! Runs the data-driven corpus in `policies/corpus/` through the corpus harness
//! (`cordon-corpus`) on two engines: the compiled evaluator, with `explain` checked
//! against every decision it makes, and the reference interpreter. Every failure of both
//! is gathered before the test fails; `CORDON_CORPUS_FILTER=<substring>` runs only the
//! matching cases, and without it every file must run exactly the number of cases
//! `policies/corpus/MANIFEST` pins.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_corpus::{Corpus, Engine, Entry, Filter, Observed, Outcome, Rejection};
use cordon_engine::model::parse_policies;
use cordon_engine::{
    reference, Action, Decision, Options, PolicyError, PolicySet, Request, RuleRef, TrafficRecord,
};

fn rejection(error: &PolicyError) -> Rejection {
    Rejection {
        policy: Some(error.policy.clone()),
        field: Some(error.field.clone()),
        message: error.message.clone(),
    }
}

/// Validation is the model's (`parse_policies`), then the compiler's; both engines share
/// it and differ only in how they decide. The errors, none when the policies compile.
fn validate(entry: &Entry<'_>, options: &Options) -> Vec<Rejection> {
    let (_, _, errors) = parse_policies(entry.policies());
    let errors = if errors.is_empty() {
        match PolicySet::compile(entry.policies(), options.clone()) {
            Ok(_) => Vec::new(),
            Err(error) => error.errors,
        }
    } else {
        errors
    };
    errors.iter().map(rejection).collect()
}

/// A case without a request expects its policies to be rejected.
fn without_request(entry: &Entry<'_>) -> Outcome {
    let rejections = validate(entry, &entry.options().engine_options());
    if rejections.is_empty() {
        Outcome::Accepted
    } else {
        Outcome::Rejected(rejections)
    }
}

/// The record, and the options for its workload.
fn read(
    entry: &Entry<'_>,
    request: &serde_json::Value,
) -> Result<(TrafficRecord, Options), String> {
    let mut options = entry.options().engine_options();
    let record = TrafficRecord::from_json(request)
        .map_err(|error| format!("bad request record: {error}"))?;
    options.workload = record.workload();
    Ok((record, options))
}

/// `PolicySet::compile` and `PolicySet::evaluate`.
struct Compiled;

impl Engine for Compiled {
    fn name(&self) -> &str {
        "compiled"
    }

    fn run(&mut self, entry: &Entry<'_>) -> Result<Outcome, String> {
        let Some(request) = entry.request() else {
            return Ok(without_request(entry));
        };
        let (record, options) = read(entry, request)?;
        let set = match PolicySet::compile(entry.policies(), options) {
            Ok(set) => set,
            Err(error) => {
                return Ok(Outcome::Rejected(
                    error.errors.iter().map(rejection).collect(),
                ))
            }
        };
        let mut problems = Vec::new();
        let (_, _, parse_errors) = parse_policies(entry.policies());
        if !parse_errors.is_empty() {
            problems.push(format!(
                "the policies compiled, but parse_policies reports {parse_errors:?}"
            ));
        }
        let request = record.request();
        let decision = set.evaluate(&request, &mut set.new_scratch());
        problems.extend(explanation_agrees(&set, &request, &decision));
        Ok(Outcome::Decided(Observed {
            problems,
            ..Observed::of_compiled(&set, &decision)
        }))
    }
}

/// `reference::evaluate`, the linear scan. It does not report the peer identity.
struct Reference;

impl Engine for Reference {
    fn name(&self) -> &str {
        "reference"
    }

    fn reports_identity(&self) -> bool {
        false
    }

    fn run(&mut self, entry: &Entry<'_>) -> Result<Outcome, String> {
        let Some(request) = entry.request() else {
            return Ok(without_request(entry));
        };
        let (record, options) = read(entry, request)?;
        let rejections = validate(entry, &options);
        if !rejections.is_empty() {
            return Ok(Outcome::Rejected(rejections));
        }
        let (parsed, warnings, _) = parse_policies(entry.policies());
        let decision = reference::evaluate(&parsed, &options, &record.request());
        Ok(Outcome::Decided(Observed {
            allowed: decision.allowed,
            status: decision.status,
            policy: decision.policy,
            audit: decision.audit,
            dry_run_allowed: decision.dry_run.0,
            dry_run_policy: decision.dry_run.1,
            identity: None,
            warnings: warnings
                .into_iter()
                .map(|warning| warning.message)
                .collect(),
            problems: Vec::new(),
        }))
    }
}

/// `explain` is read off the same evaluation: its decision is `evaluate`'s, and the first
/// matching rule of each kind it lists is the rule the decision names.
fn explanation_agrees(set: &PolicySet, request: &Request<'_>, decision: &Decision) -> Vec<String> {
    let mut problems = Vec::new();
    let explanation = set.explain(request, &mut set.new_scratch());
    if explanation.decision != *decision {
        problems.push(format!(
            "explain decided {:?}, evaluate {decision:?}",
            explanation.decision
        ));
    }
    let refused = !decision.reason.rules_evaluated();
    if refused {
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
    let name = |rule: Option<RuleRef>| rule.map(|rule| set.rule_id(rule).to_string());
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
    let (corpus, manifest) =
        Corpus::load_pinned(&cordon_corpus::corpus_dir()).unwrap_or_else(|error| panic!("{error}"));
    let filter = Filter::from_env();
    let mut failed = Vec::new();
    let engines: [&mut dyn Engine; 2] = [&mut Compiled, &mut Reference];
    for engine in engines {
        let report = cordon_corpus::run(&corpus, &filter, engine);
        match report.check(Some(&manifest)) {
            Ok(summary) => println!("{summary}"),
            Err(failures) => failed.push(failures),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
