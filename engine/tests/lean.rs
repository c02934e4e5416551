//! A set compiled without `Options::explain` (what the proxy filter and its native twin
//! compile) decides exactly as one compiled with it: every case of the corpus in
//! `policies/corpus/` is compiled both ways, and the two decisions, rule names and
//! warnings must be equal; the lean set keeps no validated policies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_corpus::{Corpus, Engine, Entry, Filter, Observed, Outcome, Rejection};
use cordon_engine::{Options, PolicySet, TrafficRecord};

/// Compiles each case with and without `explain`; reports the lean set's outcome and, as
/// problems, every way the two differ.
struct Lean {
    compared: usize,
}

fn observed(set: &PolicySet, record: &TrafficRecord) -> Observed {
    Observed::of_compiled(
        set,
        &set.evaluate(&record.request(), &mut set.new_scratch()),
    )
}

impl Engine for Lean {
    fn name(&self) -> &str {
        "compiled without explain"
    }

    fn run(&mut self, entry: &Entry<'_>) -> Result<Outcome, String> {
        let mut options = entry.options().engine_options();
        let record = match entry.request() {
            Some(request) => Some(
                TrafficRecord::from_json(request)
                    .map_err(|error| format!("bad request record: {error}"))?,
            ),
            None => None,
        };
        if let Some(record) = &record {
            options.workload = record.workload();
        }
        let full = PolicySet::compile(entry.policies(), options.clone());
        let lean = PolicySet::compile(
            entry.policies(),
            Options {
                explain: false,
                ..options
            },
        );
        let (full, lean) = match (full, lean) {
            (Ok(full), Ok(lean)) => (full, lean),
            (Err(full), Err(lean)) => {
                assert_eq!(
                    full.errors, lean.errors,
                    "the two compilations' errors differ"
                );
                let rejections = lean
                    .errors
                    .iter()
                    .map(|error| Rejection {
                        policy: Some(error.policy.clone()),
                        field: Some(error.field.clone()),
                        message: error.message.clone(),
                    })
                    .collect();
                return Ok(Outcome::Rejected(rejections));
            }
            (full, lean) => {
                return Err(format!(
                    "compiled with explain: {:?}; without: {:?}",
                    full.err(),
                    lean.err()
                ))
            }
        };
        let Some(record) = record else {
            return Ok(Outcome::Accepted);
        };
        self.compared += 1;
        let mut outcome = observed(&lean, &record);
        let reference = observed(&full, &record);
        if outcome != reference {
            outcome.problems.push(format!(
                "without explain {outcome:?}, with explain {reference:?}"
            ));
        }
        if !lean.policies().is_empty() {
            outcome
                .problems
                .push("the lean set kept its validated policies".to_string());
        }
        if lean.rules().len() != full.rules().len() {
            outcome.problems.push(format!(
                "{} rules without explain, {} with",
                lean.rules().len(),
                full.rules().len()
            ));
        }
        Ok(Outcome::Decided(outcome))
    }
}

#[test]
fn lean_sets_decide_as_full_sets() {
    let (corpus, manifest) =
        Corpus::load_pinned(&cordon_corpus::corpus_dir()).unwrap_or_else(|error| panic!("{error}"));
    let mut engine = Lean { compared: 0 };
    let report = cordon_corpus::run(&corpus, &Filter::from_env(), &mut engine);
    if let Err(failures) = report.check(Some(&manifest)) {
        panic!("{failures}");
    }
    assert!(
        engine.compared > 100,
        "only {} decisions compared",
        engine.compared
    );
}

/// `PolicyList::without_locations` (what the filter reads with) gives the same policies
/// with every field's `location` empty, and the same warnings and errors, whether the rules
/// streamed in (`metadata` first) or were read with their policy (`spec` first).
#[test]
fn policies_read_without_locations_differ_only_there() {
    use cordon_engine::model::stream::{PolicyList, ReadPolicies};
    use cordon_engine::Limits;
    use serde::de::DeserializeSeed;

    let read = |text: &str, list: PolicyList| -> ReadPolicies {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let read = list.deserialize(&mut deserializer).unwrap();
        deserializer.end().unwrap();
        read
    };
    let text = r#"[
        {"metadata": {"name": "a", "namespace": "shop"},
         "spec": {"action": "ALLOW", "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}],
             "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*", "*"]}}],
             "when": [{"key": "request.headers[x-caller]", "values": ["c"]}]},
            {"to": [{"operation": {"bogus": ["x"]}}]}]}},
        {"spec": {"action": "DENY", "rules": [
            {"to": [{"operation": {"notPaths": ["/admin/*"]}}]}]},
         "metadata": {"name": "b", "namespace": "shop"}},
        {"metadata": {"name": "c", "namespace": "shop"},
         "spec": {"action": "AUDIT", "rules": [{"to": [{"operation": {"ports": ["8080"]}}]}]}}
    ]"#;
    let full = read(text, PolicyList::new(Limits::default()));
    let lean = read(text, PolicyList::new(Limits::default()).without_locations());
    assert!(!full.errors.is_empty(), "the bogus field is an error");
    assert_eq!(full.errors, lean.errors);
    assert_eq!(full.warnings, lean.warnings);
    assert_eq!(full.policies.len(), 2);
    let mut stripped = full.policies.clone();
    let mut located = 0;
    for policy in &mut stripped {
        for rule in &mut policy.rules {
            for clause in rule
                .from
                .iter_mut()
                .chain(&mut rule.to)
                .chain(&mut rule.when)
            {
                for field in &mut clause.fields {
                    located += usize::from(!field.location.is_empty());
                    field.location.clear();
                }
            }
        }
    }
    assert!(located >= 2, "the full read keeps locations");
    assert_eq!(stripped, lean.policies);
}
