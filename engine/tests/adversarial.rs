//! Hostile configurations and requests against the engine: each gives a clear error or a
//! safe decision, never a panic, unbounded work or a bypass. Regression tests for what
//! fuzzing found live here too, each naming the input that triggered it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_engine::{Options, PolicySet, TrafficRecord};
use serde_json::{json, Value};

fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "finance"},
        "spec": spec,
    })
}

fn decide(policies: &[Value], request: Value) -> cordon_engine::Decision {
    let set = PolicySet::compile(policies, Options::default()).unwrap();
    let record = TrafficRecord::from_json(&request).unwrap();
    set.evaluate(&record.request(), &mut set.new_scratch())
}

/// Found by `fuzz/fuzz_targets/evaluate.rs` (fuzz/corpus/evaluate/regression-claim-depth-9):
/// a DENY on `request.auth.claims[a][b][c][d][e][f][g][h][i]` was compiled, but the
/// evaluator reads at most 8 keys, so it looked at `a.b.c.d.e.f.g.h` (an object) and
/// never denied. Such a key is now refused at configuration time.
#[test]
fn claim_paths_deeper_than_the_evaluator_reads_are_refused() {
    let key = "request.auth.claims[a][b][c][d][e][f][g][h][i]";
    let deny = policy(
        "deep",
        json!({"action": "DENY", "rules": [{"when": [{"key": key, "values": ["read"]}]}]}),
    );
    let error = PolicySet::compile(&[deny], Options::default()).unwrap_err();
    assert_eq!(error.errors[0].field, "spec.rules[0].when[0].key");
    assert!(
        error.errors[0].message.contains("at most 8 keys"),
        "{error}"
    );
    // Eight keys still work, and deny.
    let key = "request.auth.claims[a][b][c][d][e][f][g][h]";
    let deny = policy(
        "deep",
        json!({"action": "DENY", "rules": [{"when": [{"key": key, "values": ["read"]}]}]}),
    );
    let decision = decide(
        &[deny],
        json!({"request": {"path": "/", "auth": {"claims":
            {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": "read"}}}}}}}}}}}),
    );
    assert!(!decision.allowed);
}

/// Istio writes `*` on a header as Envoy's `present_match`, which matches a header that is
/// present whatever its value, empty included. An empty `x-debug:` must not slip past a
/// DENY on `x-debug` being present, nor satisfy an ALLOW that requires its absence.
#[test]
fn an_empty_header_value_is_present() {
    let deny = policy(
        "deny-debug",
        json!({"action": "DENY", "rules": [{"when": [
            {"key": "request.headers[x-debug]", "values": ["*"]}]}]}),
    );
    for value in [json!(""), json!(["", ""]), json!(","), json!("1")] {
        let decision = decide(
            std::slice::from_ref(&deny),
            json!({"request": {"path": "/", "headers": {"x-debug": value}}}),
        );
        assert!(!decision.allowed, "x-debug: {value}");
    }
    let decision = decide(&[deny], json!({"request": {"path": "/"}}));
    assert!(decision.allowed);

    let allow_without = policy(
        "allow-without-internal",
        json!({"rules": [{"when": [
            {"key": "request.headers[x-internal]", "notValues": ["*"]}]}]}),
    );
    let decision = decide(
        std::slice::from_ref(&allow_without),
        json!({"request": {"path": "/", "headers": {"x-internal": ""}}}),
    );
    assert!(!decision.allowed);
    let decision = decide(&[allow_without], json!({"request": {"path": "/"}}));
    assert!(decision.allowed);
}

fn compile_with(policies: &[Value], limits: cordon_engine::Limits) -> PolicySet {
    PolicySet::compile(
        policies,
        Options {
            limits,
            ..Options::default()
        },
    )
    .unwrap()
}

/// Headers a rule reads are examined up to `limits.max_header_bytes` (summed over every
/// value of every header read); past it the request is refused with 431, fail closed:
/// truncating could drop the very line a DENY rule matches (the last of many), and
/// ignoring the header would make a DENY on it never match.
#[test]
fn headers_over_the_limit_are_refused_not_truncated() {
    use cordon_engine::model::parse_policies;
    use cordon_engine::{reference, Limits, Reason};

    let deny = policy(
        "deny-admin",
        json!({"action": "DENY", "rules": [{"when": [
            {"key": "request.headers[x-user]", "values": ["admin"]}]}]}),
    );
    let limits = Limits {
        max_header_bytes: 64,
        ..Limits::default()
    };
    let set = compile_with(std::slice::from_ref(&deny), limits);
    let (parsed, _, _) = parse_policies(std::slice::from_ref(&deny));
    let options = Options {
        limits,
        ..Options::default()
    };
    let padding = "user,".repeat(12); // 60 bytes
    let cases = [
        // Within the limit, a line matches whole (never split at commas, as in Envoy), and
        // a matching line is found wherever it is.
        (json!(format!("{padding}adm")), true, 200),
        (json!(format!("{}admin", "u,".repeat(29))), true, 200),
        (json!(["u".repeat(58), "admin"]), false, 403),
        // Over the limit: refused whatever the value, even an innocent one.
        (json!(format!("{padding}admin")), false, 431),
        (json!(format!("{padding}guest")), false, 431),
        // Repeated headers count together.
        (json!([padding.clone(), "admin"]), false, 431),
        (json!([padding.clone(), "guest"]), false, 431),
    ];
    for (value, allowed, status) in cases {
        let record = TrafficRecord::from_json(
            &json!({"request": {"path": "/", "headers": {"x-user": value, "x-other": "z".repeat(1000)}}}),
        )
        .unwrap();
        let decision = set.evaluate(&record.request(), &mut set.new_scratch());
        assert_eq!(
            (decision.allowed, decision.status),
            (allowed, status),
            "x-user: {value}"
        );
        if status == 431 {
            assert_eq!(decision.reason, Reason::HeadersTooLarge);
            assert!(!decision.dry_run.allowed);
        }
        let oracle = reference::evaluate(&parsed, &options, &record.request());
        assert_eq!((oracle.allowed, oracle.status), (allowed, status));
    }

    // Headers no rule reads are never examined, so never counted.
    let allow_all = policy("allow-all", json!({"rules": [{}]}));
    let set = compile_with(&[allow_all], limits);
    let record = TrafficRecord::from_json(
        &json!({"request": {"path": "/", "headers": {"x-user": "u".repeat(10_000)}}}),
    )
    .unwrap();
    assert!(
        set.evaluate(&record.request(), &mut set.new_scratch())
            .allowed
    );
}

/// The default limit admits every request a default Envoy admits (60 KiB of headers).
#[test]
fn the_default_header_limit_admits_what_envoy_admits() {
    let deny = policy(
        "deny-admin",
        json!({"action": "DENY", "rules": [{"when": [
            {"key": "request.headers[cookie]", "values": ["*admin=1*"]}]}]}),
    );
    let record = TrafficRecord::from_json(
        &json!({"request": {"path": "/", "headers": {"cookie": "a".repeat(60 << 10)}}}),
    )
    .unwrap();
    let set = PolicySet::compile(&[deny], Options::default()).unwrap();
    let decision = set.evaluate(&record.request(), &mut set.new_scratch());
    assert_eq!((decision.allowed, decision.status), (true, 200));
}

fn paths_policy(name: &str, action: &str, paths: &[String]) -> Value {
    policy(
        name,
        json!({"action": action, "rules": [{"to": [{"operation": {"paths": paths}}]}]}),
    )
}

/// Found while measuring the limits (see fuzz/RESULTS.md): 10,000 path templates compiled
/// into one regex automaton within `max_automaton_bytes`, but a crafted 8 KB path made the
/// lazy DFA give up, and its PikeVM fallback first tried to allocate a 38 GB capture-slot
/// table (an abort), then, without captures, spent 1.5 s per request. Templates now live
/// in a trie over path segments, which a request walks at most once.
#[test]
fn many_path_templates_cost_no_time_at_request_time() {
    use std::time::{Duration, Instant};

    let templates: Vec<String> = (0..10_000)
        .map(|i| format!("/t{}/{{*}}/x{i}/{{*}}/{{**}}", i % 97))
        .collect();
    let star_heavy: Vec<String> = (0..2_000)
        .map(|i| format!("/{}{i}/{{**}}", "{*}/".repeat(i % 20)))
        .collect();
    let attacks = [
        format!("/t1/{}", "a/".repeat(4000)),
        format!(
            "/t1/a/{}",
            (0..800).map(|i| format!("x{i}/")).collect::<String>()
        ),
        (0..1000)
            .map(|i| format!("/t{}", i % 97))
            .collect::<String>(),
        format!("/t1/{}", "x1/".repeat(2700)),
    ];
    for (name, values) in [("many", &templates), ("star-heavy", &star_heavy)] {
        let set =
            PolicySet::compile(&[paths_policy(name, "DENY", values)], Options::default()).unwrap();
        let mut scratch = set.new_scratch();
        for path in &attacks {
            let request = cordon_engine::Request {
                path: Some(path),
                ..Default::default()
            };
            let started = Instant::now();
            let decision = set.evaluate(&request, &mut scratch);
            let elapsed = started.elapsed();
            // Microseconds in practice; the bound only has to catch the old seconds.
            assert!(
                elapsed < Duration::from_millis(250),
                "{name}: {elapsed:?} for a {}-byte path",
                path.len()
            );
            let covered = values.iter().any(|template| {
                cordon_engine::pattern::PathPattern::parse(template)
                    .unwrap()
                    .matches(path)
            });
            assert_eq!(!decision.allowed, covered, "{name}: {path:.40}");
        }
    }
    // A DENY template still denies what it covers.
    let set = PolicySet::compile(
        &[paths_policy("many", "DENY", &templates)],
        Options::default(),
    )
    .unwrap();
    let request = cordon_engine::Request {
        path: Some("/t5/a/x5/b/anything/else"),
        ..Default::default()
    };
    assert!(!set.evaluate(&request, &mut set.new_scratch()).allowed);
}

/// Templates past `limits.max_automaton_bytes` are a configuration error naming the limit.
#[test]
fn templates_over_the_index_limit_are_refused() {
    let templates: Vec<String> = (0..5_000).map(|i| format!("/a{i}/{{*}}/b")).collect();
    let options = Options {
        limits: cordon_engine::Limits {
            max_automaton_bytes: 64 << 10,
            ..Default::default()
        },
        ..Options::default()
    };
    let error = PolicySet::compile(&[paths_policy("t", "ALLOW", &templates)], options).unwrap_err();
    assert!(
        error.to_string().contains("limits.max_automaton_bytes"),
        "{error}"
    );
}

/// 100,000 rules (over limits.max_rules, 50,000) and 10,001 policies (over
/// limits.max_policies) are refused with an error naming the limit, counted on the JSON
/// before any policy is validated.
#[test]
fn too_many_rules_or_policies_are_refused_before_validation() {
    let rules: Vec<Value> = (0..100_000)
        .map(|i| json!({"to": [{"operation": {"paths": [format!("/p{i}")]}}]}))
        .collect();
    // Rule 99,999 is invalid: reporting it would mean it was validated.
    let mut rules = rules;
    rules[99_999] = json!({"to": [{"operation": {"ports": ["0"]}}]});
    let error = PolicySet::compile(
        &[policy("big", json!({"rules": rules}))],
        Options::default(),
    )
    .unwrap_err();
    assert_eq!(error.errors.len(), 1, "{error}");
    assert!(
        error.errors[0]
            .message
            .contains("100000 rules exceed the limit of 50000 (limits.max_rules)"),
        "{error}"
    );

    let policies: Vec<Value> = (0..10_001)
        .map(|i| policy(&format!("p{i}"), json!({"rules": [{}]})))
        .collect();
    let error = PolicySet::compile(&policies, Options::default()).unwrap_err();
    assert!(
        error.to_string().contains("(limits.max_policies)"),
        "{error}"
    );
}

/// `from` × `to` expansion is capped per rule (256) and over all rules (limits.max_terms,
/// 500,000): 2,000 rules of 16 sources × 16 operations (512,000 terms) would take
/// hundreds of MB to compile, and 50,000 such rules several GB.
#[test]
fn term_expansion_is_capped_per_rule_and_in_total() {
    let from: Vec<Value> = (0..16)
        .map(|i| json!({"source": {"principals": [format!("td/ns/n{i}/sa/s")]}}))
        .collect();
    let to: Vec<Value> = (0..16)
        .map(|i| json!({"operation": {"paths": [format!("/q{i}")]}}))
        .collect();
    let rule = json!({"from": from, "to": to});
    let rules: Vec<Value> = (0..2_000).map(|_| rule.clone()).collect();
    let error = PolicySet::compile(
        &[policy("terms", json!({"rules": rules}))],
        Options::default(),
    )
    .unwrap_err();
    assert_eq!(error.errors[0].field, "spec.rules[1953]");
    assert!(
        error.errors[0].message.contains("(limits.max_terms)"),
        "{error}"
    );
    // Under the total, the same rules compile.
    let rules: Vec<Value> = (0..1_000).map(|_| rule.clone()).collect();
    assert!(PolicySet::compile(
        &[policy("terms", json!({"rules": rules}))],
        Options::default()
    )
    .is_ok());
    // One rule over the per-rule cap.
    let from: Vec<Value> = (0..17).map(|_| from[0].clone()).collect();
    let error = PolicySet::compile(
        &[policy("wide", json!({"rules": [{"from": from, "to": to}]}))],
        Options::default(),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("(limits.max_terms_per_rule)"),
        "{error}"
    );
}

/// Values over limits.max_values_per_attribute (100,000 distinct per attribute) are
/// refused; a single 10 MB value is within the limits and works (the tries keep one node
/// per pattern, not per byte).
#[test]
fn value_limits_and_a_ten_megabyte_value() {
    let values: Vec<String> = (0..100_001).map(|i| format!("/v{i}")).collect();
    let error = PolicySet::compile(
        &[paths_policy("values", "ALLOW", &values)],
        Options::default(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("(limits.max_values_per_attribute)"),
        "{error}"
    );

    let huge = format!("/{}*", "a".repeat(10 << 20));
    let set =
        PolicySet::compile(&[paths_policy("huge", "DENY", &[huge])], Options::default()).unwrap();
    let long = format!("/{}", "a".repeat(8000));
    let request = cordon_engine::Request {
        path: Some(&long),
        ..Default::default()
    };
    // An 8,000-byte path is a prefix of the 10 MB pattern, not the other way round.
    assert!(set.evaluate(&request, &mut set.new_scratch()).allowed);
}
