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
