//! `diff`: soundness (every example it gives is decided differently by the two sets, as the
//! reference interpreter judges it) and completeness (every request of the random traffic
//! that one set allows and the other denies lies in a reported class; "no new access" is
//! never said when such a request exists), over random policy pairs drawn from the
//! differential test's vocabulary.
//!
//! `cargo test` runs 40 cases (80 s for 100 in a debug build on 2 busy cores); more with
//! `CORDON_DIFF_CASES=5000 cargo test --release -p cordon-engine --test diff`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/generate.rs"]
mod generate;

use std::collections::BTreeMap;

use cordon_engine::diff::{diff, workloads, Class};
use cordon_engine::model::parse_policies;
use cordon_engine::path::normalize;
use cordon_engine::{reference, Options, PathNormalization, PolicySet, TrafficRecord, Workload};
use generate::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn options_for(base: &Options, workload: Workload) -> Options {
    Options {
        workload,
        ..base.clone()
    }
}

/// The reference interpreter's verdict on an example.
fn allowed(policies: &[Value], base: &Options, record: &TrafficRecord) -> bool {
    let (parsed, _, errors) = parse_policies(policies);
    assert!(errors.is_empty());
    let options = options_for(base, record.workload());
    reference::evaluate(&parsed, &options, &record.request()).allowed
}

fn check_examples(classes: &[Class], allows: &[Value], denies: &[Value], base: &Options) {
    for class in classes {
        if let Some(example) = &class.example {
            assert!(
                allowed(allows, base, example) && !allowed(denies, base, example),
                "example not decided differently: {}\nclass: {}",
                example.to_json(),
                class.describe()
            );
            let path = normalized(base, example);
            assert!(
                class.contains(&example.request(), path.as_deref()),
                "example outside its class: {}",
                class.describe()
            );
        } else {
            assert!(
                class.undecided.is_some(),
                "a class without example must say why"
            );
        }
    }
}

fn normalized(options: &Options, record: &TrafficRecord) -> Option<String> {
    let mut buffer = String::new();
    record.path.as_deref().and_then(|raw| {
        normalize(raw, options.path_normalization, &mut buffer)
            .ok()
            .map(str::to_string)
    })
}

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": name, "namespace": "finance"}, "spec": spec})
}

fn credits(principals: &[&str], methods: &[&str]) -> Value {
    policy(
        "credits",
        json!({"selector": {"matchLabels": {"app": "billing"}}, "rules": [{
            "from": [{"source": {"principals": principals}}],
            "to": [{"operation": {"methods": methods, "paths": ["/v1/credits/{*}"]}}]
        }]}),
    )
}

#[test]
fn a_widening_is_caught_with_its_example_and_a_narrowing_passes() {
    let base = Options::default();
    let old = vec![credits(
        &["cluster.local/ns/shop/sa/order-engine"],
        &["POST", "PUT"],
    )];
    let wide = vec![credits(&["cluster.local/ns/shop/sa/*"], &["POST", "PUT"])];
    let narrow = vec![credits(
        &["cluster.local/ns/shop/sa/order-engine"],
        &["POST"],
    )];
    let (parsed, _, _) = parse_policies(&old);
    let targets = workloads(&parsed.iter().collect::<Vec<_>>(), &base.root_namespace);
    let billing = Workload {
        namespace: Some("finance".into()),
        labels: BTreeMap::from([("app".to_string(), "billing".to_string())]),
    };
    assert!(targets.contains(&billing));

    let report = diff(&old, &wide, &base, &targets).unwrap();
    let found: Vec<&Class> = report
        .iter()
        .filter(|entry| entry.workload == billing)
        .flat_map(|entry| &entry.new_access)
        .collect();
    // One class: the split on POST, then PUT, merged back into "POST or PUT".
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].describe().contains("method POST or PUT"),
        "{}",
        found[0].describe()
    );
    for class in &found {
        let example = class.example.as_ref().expect("an example");
        let principal = example.principal.as_deref().unwrap();
        assert!(principal.starts_with("spiffe://cluster.local/ns/shop/sa/"));
        assert_ne!(principal, "spiffe://cluster.local/ns/shop/sa/order-engine");
        assert!(matches!(example.method.as_deref(), Some("POST" | "PUT")));
        let text = class.describe();
        assert!(
            text.contains("principal cluster.local/ns/shop/sa/*"),
            "{text}"
        );
        assert!(
            text.contains("not principal cluster.local/ns/shop/sa/order-engine"),
            "{text}"
        );
    }
    assert!(report.iter().all(|entry| entry.removed_access.is_empty()));
    for entry in &report {
        check_examples(&entry.new_access, &wide, &old, &base);
    }
    // Other workloads: no policy before or after, nothing changes.
    assert!(report
        .iter()
        .filter(|entry| entry.workload != billing)
        .all(|entry| entry.new_access.is_empty()));

    let report = diff(&old, &narrow, &base, &targets).unwrap();
    assert!(
        report.iter().all(|entry| entry.new_access.is_empty()),
        "{:#?}",
        report
            .iter()
            .flat_map(|entry| entry.new_access.iter().map(|class| (
                class.describe(),
                class.example.as_ref().map(TrafficRecord::to_json)
            )))
            .collect::<Vec<_>>()
    );
    let removed: Vec<Class> = report
        .iter()
        .flat_map(|entry| entry.removed_access.iter().cloned())
        .collect();
    assert_eq!(removed.len(), 1);
    check_examples(&removed, &old, &narrow, &base);
    // And a set compared with itself: nothing at all.
    let same = diff(&old, &old, &base, &targets).unwrap();
    assert!(same
        .iter()
        .all(|entry| entry.new_access.is_empty() && entry.removed_access.is_empty()));
}

#[test]
fn identity_fields_are_one_peer_and_aliases_count() {
    let mut base = Options {
        trust_domain: Some("cluster.local".into()),
        trust_domain_aliases: vec!["old.td".into()],
        ..Options::default()
    };
    let allow = |source: Value| {
        vec![policy(
            "p",
            json!({"rules": [{"from": [{"source": source}]}]}),
        )]
    };
    let workload = Workload {
        namespace: Some("finance".into()),
        labels: BTreeMap::new(),
    };
    // `namespaces: [shop]` and `principals: [*/ns/shop/*]`-style sets: the service account
    // `shop/web` is inside the namespace, so allowing the namespace instead of the account
    // grants the namespace's other accounts, and nothing else.
    let old = allow(json!({"serviceAccounts": ["shop/web"]}));
    let new = allow(json!({"namespaces": ["shop"]}));
    let report = diff(&old, &new, &base, std::slice::from_ref(&workload)).unwrap();
    assert_eq!(report[0].new_access.len(), 1);
    check_examples(&report[0].new_access, &new, &old, &base);
    assert!(report[0].removed_access.is_empty());
    // With the alias, `old.td/...` and `cluster.local/...` are the same principal.
    let old = allow(json!({"principals": ["cluster.local/ns/shop/sa/web"]}));
    let new = allow(json!({"principals": ["old.td/ns/shop/sa/web"]}));
    let report = diff(&old, &new, &base, std::slice::from_ref(&workload)).unwrap();
    assert!(report[0].new_access.is_empty() && report[0].removed_access.is_empty());
    base.trust_domain_aliases.clear();
    let report = diff(&old, &new, &base, std::slice::from_ref(&workload)).unwrap();
    assert_eq!(report[0].new_access.len(), 1);
    check_examples(&report[0].new_access, &new, &old, &base);
}

/// Cases per run: `CORDON_DIFF_CASES`, 40 by default.
fn cases() -> u32 {
    std::env::var("CORDON_DIFF_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn diff_is_sound_and_complete(
        old_seeds in prop::collection::vec(policy_seed(), 1..4),
        new_seeds in prop::collection::vec(policy_seed(), 0..3),
        kept in 0usize..4,
        requests in prop::collection::vec(request_strategy(), 1..40),
        aliases in any::<bool>(),
        mode in 0usize..5,
        remote_address in prop::bool::weighted(0.2),
    ) {
        let old: Vec<Value> = old_seeds.iter().enumerate().map(|(i, seed)| policy_json(i, seed)).collect();
        // The new set keeps some of the old policies and adds others: a change to review.
        let mut new: Vec<Value> = old.iter().take(kept).cloned().collect();
        new.extend(new_seeds.iter().enumerate().map(|(i, seed)| policy_json(10 + i, seed)));
        let mut base = Options::default();
        if aliases {
            base.trust_domain = Some("cluster.local".into());
            base.trust_domain_aliases = vec!["old.td".into()];
        }
        base.use_remote_address = remote_address;
        base.path_normalization = [
            PathNormalization::Strict,
            PathNormalization::None,
            PathNormalization::Base,
            PathNormalization::MergeSlashes,
            PathNormalization::DecodeAndMergeSlashes,
        ][mode];
        let (old_parsed, _, _) = parse_policies(&old);
        let (new_parsed, _, _) = parse_policies(&new);
        let all: Vec<_> = old_parsed.iter().chain(&new_parsed).collect();
        let mut targets = workloads(&all, &base.root_namespace);
        targets.push(Workload::default());
        let report = diff(&old, &new, &base, &targets).unwrap();
        for entry in &report {
            check_examples(&entry.new_access, &new, &old, &base);
            check_examples(&entry.removed_access, &old, &new, &base);
        }
        let names = |parsed: &[cordon_engine::Policy], options: &Options| -> Vec<String> {
            reference::applicable(parsed, options).iter().map(|p| p.qualified_name()).collect()
        };
        for request in &requests {
            let record = TrafficRecord::from_json(request).unwrap();
            let options = options_for(&base, record.workload());
            // The enumerated workload that the same policies apply to.
            let entry = report.iter().find(|entry| {
                let there = options_for(&base, entry.workload.clone());
                names(&old_parsed, &there) == names(&old_parsed, &options)
                    && names(&new_parsed, &there) == names(&new_parsed, &options)
                    && entry.workload.namespace.is_some() == record.workload().namespace.is_some()
            });
            let entry = entry.unwrap_or_else(|| panic!("no enumerated workload stands for {:?}", record.workload()));
            let old_set = PolicySet::compile(&old, options.clone()).unwrap();
            let new_set = PolicySet::compile(&new, options.clone()).unwrap();
            let request_view = record.request();
            let was = old_set.evaluate(&request_view, &mut old_set.new_scratch()).allowed;
            let is = new_set.evaluate(&request_view, &mut new_set.new_scratch()).allowed;
            let path = normalized(&options, &record);
            if is && !was {
                prop_assert!(!entry.new_access.is_empty(), "no new access reported, but {} is new access", request);
                prop_assert!(
                    entry.new_access.iter().any(|class| class.contains(&request_view, path.as_deref())),
                    "{} is new access outside every class: {:#?}", request,
                    entry.new_access.iter().map(Class::describe).collect::<Vec<_>>()
                );
            }
            if was && !is {
                prop_assert!(
                    entry.removed_access.iter().any(|class| class.contains(&request_view, path.as_deref())),
                    "{} is removed access outside every class: {:#?}", request,
                    entry.removed_access.iter().map(Class::describe).collect::<Vec<_>>()
                );
            }
        }
    }
}

#[test]
fn exact_lints_find_dead_overridden_and_covered_rules() {
    use cordon_engine::lint::{rule_findings, unselected, RuleIssue};
    let policies = vec![
        policy(
            "allow",
            json!({"rules": [
                // 0: one peer URI cannot be in namespace b: never matches.
                {"from": [{"source": {"principals": ["cluster.local/ns/a/sa/x"], "namespaces": ["b"]}}]},
                // 1: every request to /admin/ is denied below.
                {"to": [{"operation": {"paths": ["/admin/*"]}}]},
                // 2: inside rule 3.
                {"to": [{"operation": {"paths": ["/api/v1/*"], "methods": ["GET"]}}]},
                // 3
                {"to": [{"operation": {"paths": ["/api/*"]}}]},
                // 4: GET and not GET.
                {"to": [{"operation": {"methods": ["GET"], "notMethods": ["G*"]}}]},
            ]}),
        ),
        policy(
            "deny",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}),
        ),
    ];
    let (parsed, _, errors) = parse_policies(&policies);
    assert!(errors.is_empty(), "{errors:?}");
    let base = Options::default();
    let targets = workloads(&parsed.iter().collect::<Vec<_>>(), &base.root_namespace);
    let (findings, skipped) = rule_findings(&parsed, &base, &targets);
    assert_eq!(skipped, 0);
    let of = |rule: usize| {
        findings
            .iter()
            .find(|finding| finding.policy == 0 && finding.rule == rule)
            .map(|finding| finding.issue.clone())
    };
    assert_eq!(of(0), Some(RuleIssue::NeverMatches));
    assert_eq!(
        of(1),
        Some(RuleIssue::OverriddenByDeny {
            by: vec!["ns[finance]-policy[deny]-rule[0]".to_string()]
        })
    );
    assert_eq!(
        of(2),
        Some(RuleIssue::Covered {
            by: vec!["ns[finance]-policy[allow]-rule[3]".to_string()]
        })
    );
    assert_eq!(of(3), None);
    assert_eq!(of(4), Some(RuleIssue::NeverMatches));
    assert!(findings.iter().all(|finding| finding.policy == 0));
    // Selectors: a policy for app=billing, and only app=web deployed in finance.
    let selected = vec![policy(
        "billing",
        json!({"selector": {"matchLabels": {"app": "billing"}}, "rules": [{}]}),
    )];
    let (selected, _, _) = parse_policies(&selected);
    let deployed = [Workload {
        namespace: Some("finance".into()),
        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
    }];
    assert_eq!(unselected(&selected, &deployed, "istio-system"), vec![0]);
    let billing = [Workload {
        namespace: Some("finance".into()),
        labels: BTreeMap::from([("app".to_string(), "billing".to_string())]),
    }];
    assert!(unselected(&selected, &billing, "istio-system").is_empty());
}
