//! The builder: filter order, dry-run, stat prefixes, policies without rules, selection,
//! connection manager settings, refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::{json, Value};

use super::*;

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "foo"}, "spec": spec})
}

fn dry_run(mut value: Value) -> Value {
    value["metadata"]["annotations"] = json!({"istio.io/dry-run": "true"});
    value
}

fn workload() -> Workload {
    Workload {
        namespace: Some("foo".into()),
        labels: [("app".to_string(), "httpbin".to_string())].into(),
    }
}

fn run(policies: &[Value]) -> Translation {
    translate(policies, &workload(), &MeshSettings::default()).unwrap()
}

#[test]
fn filters_come_audit_deny_allow() {
    let out = run(&[
        policy("a", json!({"rules": [{}]})),
        policy("d", json!({"action": "DENY", "rules": [{}]})),
        policy("u", json!({"action": "AUDIT", "rules": [{}]})),
    ]);
    let actions: Vec<Value> = out
        .http_filters
        .iter()
        .map(|f| f["typed_config"]["rules"]["action"].clone())
        .collect();
    assert_eq!(actions, vec![json!("LOG"), json!("DENY"), Value::Null]);
    for filter in &out.http_filters {
        assert_eq!(filter["name"], RBAC_FILTER_NAME);
        assert_eq!(filter["typed_config"]["@type"], RBAC_TYPE);
        // No dry-run rules: istiod still sets the ALLOW prefix (from a nil rule set).
        assert_eq!(
            filter["typed_config"]["shadow_rules_stat_prefix"],
            SHADOW_ALLOW_STAT_PREFIX
        );
    }
}

#[test]
fn no_policy_no_filter() {
    assert!(run(&[]).http_filters.is_empty());
}

#[test]
fn dry_run_policies_are_shadow_rules() {
    let out = run(&[
        dry_run(policy("d", json!({"action": "DENY", "rules": [{}]}))),
        dry_run(policy("a", json!({"rules": [{}]}))),
        policy("b", json!({"rules": [{}]})),
        dry_run(policy("u", json!({"action": "AUDIT", "rules": [{}]}))),
    ]);
    assert_eq!(out.http_filters.len(), 3);
    let audit = &out.http_filters[0]["typed_config"];
    assert!(audit.get("rules").is_none());
    assert_eq!(audit["shadow_rules"]["action"], "LOG");
    assert!(audit.get("shadow_rules_stat_prefix").is_none());
    let deny = &out.http_filters[1]["typed_config"];
    assert!(deny.get("rules").is_none());
    assert_eq!(deny["shadow_rules"]["action"], "DENY");
    assert!(deny["shadow_rules"]["policies"]["ns[foo]-policy[d]-rule[0]"].is_object());
    assert_eq!(deny["shadow_rules_stat_prefix"], SHADOW_DENY_STAT_PREFIX);
    let allow = &out.http_filters[2]["typed_config"];
    assert!(allow["rules"]["policies"]["ns[foo]-policy[b]-rule[0]"].is_object());
    assert!(allow["shadow_rules"]["policies"]["ns[foo]-policy[a]-rule[0]"].is_object());
    assert!(allow["shadow_rules"].get("action").is_none());
    assert_eq!(allow["shadow_rules_stat_prefix"], SHADOW_ALLOW_STAT_PREFIX);
}

#[test]
fn a_policy_without_rules_never_matches() {
    let out = run(&[policy("none", json!({}))]);
    assert_eq!(
        out.http_filters[0]["typed_config"]["rules"]["policies"]["ns[foo]-policy[none]-rule[0]"],
        json!({"permissions": [{"not_rule": {"any": true}}], "principals": [{"not_id": {"any": true}}]})
    );
}

#[test]
fn allow_policy_whose_rules_all_fail_still_denies_everything() {
    // `1.2.3.4/99` is refused by cordon: use the unvalidated translation.
    let out = translate_unvalidated(
        &[policy(
            "bad",
            json!({"rules": [{"from": [{"source": {"ipBlocks": ["1.2.3.4/99"]}}]}]}),
        )],
        &workload(),
        &MeshSettings::default(),
    )
    .unwrap();
    // The rule is gone, the (empty) ALLOW rule set stays: nothing is allowed.
    assert_eq!(out.http_filters[0]["typed_config"]["rules"], json!({}));
    let out = translate_unvalidated(
        &[policy(
            "bad",
            json!({"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["1.2.3.4/99"]}}]}]}),
        )],
        &workload(),
        &MeshSettings::default(),
    )
    .unwrap();
    // In a DENY policy the invalid value is ignored: the rule denies every source.
    assert_eq!(
        out.http_filters[0]["typed_config"]["rules"]["policies"]["ns[foo]-policy[bad]-rule[0]"]
            ["principals"],
        json!([{"and_ids": {"ids": [{"any": true}]}}])
    );
}

#[test]
fn selection_follows_namespace_root_and_labels() {
    let mut other_ns = policy("o", json!({"rules": [{}]}));
    other_ns["metadata"]["namespace"] = json!("bar");
    let mut root = policy("r", json!({"rules": [{}]}));
    root["metadata"]["namespace"] = json!("istio-system");
    let other_labels = policy(
        "l",
        json!({"selector": {"matchLabels": {"app": "x"}}, "rules": [{}]}),
    );
    let targeted = policy(
        "t",
        json!({"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g"}], "rules": [{}]}),
    );
    let mine = policy(
        "m",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "rules": [{}]}),
    );
    let out = run(&[other_ns, root, other_labels, targeted, mine]);
    // Sorted: a workspace build turns on serde_json's preserve_order, which keeps the map
    // in insertion order rather than key order.
    let mut names: Vec<&String> = out.http_filters[0]["typed_config"]["rules"]["policies"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "ns[foo]-policy[m]-rule[0]",
            "ns[istio-system]-policy[r]-rule[0]"
        ]
    );
}

#[test]
fn connection_manager_per_mode() {
    let mode = |m: &str| {
        let mesh = MeshSettings {
            path_normalization: m.into(),
            ..MeshSettings::default()
        };
        translate(&[], &workload(), &mesh).map(|t| t.connection_manager)
    };
    assert_eq!(
        mode("NONE").unwrap(),
        json!({"normalize_path": false, "merge_slashes": false, "path_with_escaped_slashes_action": "KEEP_UNCHANGED"})
    );
    assert_eq!(
        mode("BASE").unwrap(),
        json!({"normalize_path": true, "merge_slashes": false, "path_with_escaped_slashes_action": "KEEP_UNCHANGED"})
    );
    assert_eq!(mode("DEFAULT").unwrap(), mode("BASE").unwrap());
    assert_eq!(
        mode("MERGE_SLASHES").unwrap(),
        json!({"normalize_path": true, "merge_slashes": true, "path_with_escaped_slashes_action": "KEEP_UNCHANGED"})
    );
    assert_eq!(
        mode("DECODE_AND_MERGE_SLASHES").unwrap(),
        json!({"normalize_path": true, "merge_slashes": true, "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD"})
    );
    assert!(matches!(
        mode("STRICT"),
        Err(TranslateError::PathNormalization(_))
    ));
}

#[test]
fn refusals() {
    let rejected = translate(
        &[policy(
            "c",
            json!({"action": "CUSTOM", "provider": {"name": "x"}, "rules": [{}]}),
        )],
        &workload(),
        &MeshSettings::default(),
    );
    assert!(matches!(rejected, Err(TranslateError::Rejected(_))));
    let twice = translate(
        &[policy("p", json!({})), policy("p", json!({}))],
        &workload(),
        &MeshSettings::default(),
    )
    .unwrap();
    assert_eq!(twice, run(&[policy("p", json!({}))]));
    let duplicate = translate(
        &[policy("p", json!({})), policy("p", json!({"rules": [{}]}))],
        &workload(),
        &MeshSettings::default(),
    );
    assert!(matches!(duplicate, Err(TranslateError::Duplicate(_))));
    let malformed = translate_unvalidated(&[json!([])], &workload(), &MeshSettings::default());
    assert!(matches!(
        malformed,
        Err(TranslateError::Malformed { index: 0, .. })
    ));
    // CUSTOM is skipped by the unvalidated translation.
    let custom = translate_unvalidated(
        &[policy(
            "c",
            json!({"action": "CUSTOM", "provider": {"name": "x"}, "rules": [{}]}),
        )],
        &workload(),
        &MeshSettings::default(),
    )
    .unwrap();
    assert!(custom.http_filters.is_empty());
}

#[test]
fn trust_domain_aliases_apply_to_principals() {
    let mesh = MeshSettings {
        trust_domain: "td1".into(),
        trust_domain_aliases: vec!["td2".into()],
        ..MeshSettings::default()
    };
    let out = translate(
        &[policy(
            "p",
            json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}]}),
        )],
        &workload(),
        &mesh,
    )
    .unwrap();
    let ids = &out.http_filters[0]["typed_config"]["rules"]["policies"]
        ["ns[foo]-policy[p]-rule[0]"]["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"];
    assert_eq!(
        ids,
        &json!([
            {"authenticated": {"principal_name": {"exact": "spiffe://td1/ns/a/sa/b"}}},
            {"authenticated": {"principal_name": {"exact": "spiffe://td2/ns/a/sa/b"}}}
        ])
    );
}

#[test]
fn dry_run_annotation_is_read_as_go_parse_bool() {
    // cordon accepts `TRUE` and `True`, and so does Go's ParseBool.
    let mut p = policy("p", json!({"rules": [{}]}));
    p["metadata"]["annotations"] = json!({"istio.io/dry-run": "TRUE"});
    let out = run(&[p]);
    assert!(out.http_filters[0]["typed_config"].get("rules").is_none());
}
