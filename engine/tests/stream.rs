//! Policies read as JSON text streams in (`model::stream::PolicyList`, what the filter
//! uses) give what `parse_policies` gives on the same list as JSON values: the same
//! policies, warnings and errors in the same order, and `PolicySet::compile_read` the same
//! refusals as `PolicySet::compile`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_engine::model::parse_policies;
use cordon_engine::model::stream::{PolicyList, ReadPolicies};
use cordon_engine::{Limits, Options, PolicySet};
use proptest::prelude::*;
use serde::de::DeserializeSeed;
use serde_json::Value;

#[path = "support/generate.rs"]
mod generate;

fn streamed(text: &str, limits: Limits) -> ReadPolicies {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let read = PolicyList::new(limits)
        .deserialize(&mut deserializer)
        .unwrap();
    deserializer.end().unwrap();
    read
}

fn check_same(text: &str) {
    let values: Vec<Value> = serde_json::from_str(text).unwrap();
    let (policies, warnings, errors) = parse_policies(&values);
    let read = streamed(text, Limits::default());
    assert_eq!(read.policies, policies, "{text}");
    assert_eq!(read.warnings, warnings, "{text}");
    assert_eq!(read.errors, errors, "{text}");
    assert_eq!(read.policy_count, values.len());
    let rules: usize = values
        .iter()
        .filter_map(|policy| policy.get("spec")?.get("rules")?.as_array())
        .map(Vec::len)
        .sum();
    assert_eq!(read.rule_count, rules, "{text}");
    let compiled = PolicySet::compile(&values, Options::default()).map(|set| set.rules().len());
    let compiled_read =
        PolicySet::compile_read(streamed(text, Limits::default()), Options::default())
            .map(|set| set.rules().len());
    assert_eq!(
        compiled.map_err(|e| e.errors),
        compiled_read.map_err(|e| e.errors)
    );
}

#[test]
fn hand_written_lists_read_the_same() {
    let cases = [
        "[]",
        r#"[{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "a", "namespace": "shop"},
            "spec": {"rules": [{"from": [{"source": {"serviceAccounts": ["web", "ops/admin"]}}]},
                               {"to": [{"operation": {"methods": ["get"], "paths": ["api"]}}]},
                               {"when": [{"key": "request.headers[x]", "values": []}]},
                               {"bogus": 1}, 7, {"from": "x"}]}}]"#,
        // `spec` before `metadata`: the rules wait for the namespace.
        r#"[{"spec": {"rules": [{"from": [{"source": {"serviceAccounts": ["web"]}}]}, {"to": 1}]},
             "metadata": {"name": "late", "namespace": "ns1"}}]"#,
        // No metadata at all, a non-object, a list, a string.
        r#"[{"spec": {"rules": [{}]}}, 5, [1, 2], "policy", null, true]"#,
        // `rules` not a list; `spec` not an object; an unknown action stops before the rules.
        r#"[{"metadata": {"name": "r"}, "spec": {"rules": {"from": []}}},
            {"metadata": {"name": "s"}, "spec": [1]},
            {"metadata": {"name": "t"}, "spec": {"action": "NOPE", "rules": [{"bad": 1}]}},
            {"metadata": {"name": "u"}, "spec": {"action": "DENY", "rules": []}},
            {"metadata": {"name": "v", "namespace": 3}, "spec": {"rules": [{"from": [{"source": {"principals": ["spiffe://x"]}}]}]}}]"#,
        r#"[{"metadata": {"name": "w"}, "spec": {"selector": 4, "rules": [{"bad": 1}]}}]"#,
    ];
    for text in cases {
        check_same(text);
    }
}

#[test]
fn over_the_limits_only_counts() {
    let rule = r#"{"to": [{"operation": {"paths": ["/x"]}}]}"#;
    let policy = |rules: usize| {
        format!(
            r#"{{"metadata": {{"name": "p"}}, "spec": {{"rules": [{}]}}}}"#,
            vec![rule; rules].join(",")
        )
    };
    let text = format!("[{}, {}, {}]", policy(3), policy(4), policy(2));
    let limits = Limits {
        max_rules: 5,
        ..Limits::default()
    };
    let read = streamed(&text, limits);
    assert_eq!((read.policy_count, read.rule_count), (3, 9));
    let rules_read: usize = read.policies.iter().map(|policy| policy.rules.len()).sum();
    assert!(rules_read <= 5, "{rules_read} rules read past the limit");
    let options = Options {
        limits,
        ..Options::default()
    };
    let error = PolicySet::compile_read(read, options.clone()).unwrap_err();
    let values: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        error.errors,
        PolicySet::compile(&values, options).unwrap_err().errors
    );
    let limits = Limits {
        max_policies: 1,
        ..Limits::default()
    };
    let read = streamed(&text, limits);
    assert_eq!((read.policy_count, read.rule_count), (3, 9));
    assert_eq!(
        read.policies.len(),
        1,
        "only the policy within the limit is read"
    );
}

#[test]
fn a_second_metadata_after_the_rules_is_refused() {
    let text = r#"[{"metadata": {"name": "a", "namespace": "x"}, "spec": {"rules": [{}]},
                    "metadata": {"name": "b", "namespace": "y"}}]"#;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let error = PolicyList::new(Limits::default())
        .deserialize(&mut deserializer)
        .unwrap_err();
    assert!(error.to_string().contains("`metadata` twice"), "{error}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn generated_lists_read_the_same(seeds in prop::collection::vec(generate::policy_seed(), 0..5)) {
        let values: Vec<Value> = seeds
            .iter()
            .enumerate()
            .map(|(position, seed)| generate::policy_json(position, seed))
            .collect();
        check_same(&serde_json::to_string(&values).unwrap());
    }
}
