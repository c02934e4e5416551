//! The compiled evaluator must agree with the reference interpreter on every request, for
//! random policy sets drawn from a small vocabulary (so that rules actually match), and
//! requests that mix that vocabulary with absent attributes, plaintext peers (no
//! principal, or `"mtls": false` beside one) and arbitrary strings. Every field of the
//! decision is compared: allowed, status, the deciding, audit and dry-run rules, the
//! identity (against `SpiffeId::parse` of the peer the record gives) and the reason
//! (derived from the reference's decision, the applicable ALLOW policies and the path
//! normalization's verdict).
//!
//! `cargo test` runs 400 cases (each up to 5 policies and 7 requests). The longer run, for
//! a change to the evaluator or before a release:
//!
//! ```sh
//! CORDON_DIFFERENTIAL_CASES=50000 cargo test --release -p cordon-engine --test differential
//! ```
//!
//! (50,000 cases: 40 s of testing after the release build, on 2 cores, at 1e15d11.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_engine::model::parse_policies;
use cordon_engine::path::normalize;
use cordon_engine::{
    reference, Action, Identity, Options, PathNormalization, PathRejection, PolicySet, Reason,
    SpiffeId, TrafficRecord, Workload,
};
use proptest::prelude::*;
use serde_json::{json, Value};

#[path = "support/generate.rs"]
mod generate;
use generate::*;

/// Cases per run: `CORDON_DIFFERENTIAL_CASES`, 400 by default.
fn cases() -> u32 {
    std::env::var("CORDON_DIFFERENTIAL_CASES")
        .ok()
        .map(|cases| {
            cases
                .parse()
                .unwrap_or_else(|_| panic!("CORDON_DIFFERENTIAL_CASES=`{cases}`: not a number"))
        })
        .unwrap_or(400)
}

/// The identity the engine must report for `peer`: none without one, else what
/// `SpiffeId::parse` makes of it.
fn expected_identity(peer: Option<&str>) -> Identity {
    match peer {
        None => Identity::None,
        Some(uri) => match SpiffeId::parse(uri) {
            Ok(_) => Identity::Verified,
            Err(error) => Identity::Invalid(error),
        },
    }
}

/// The reason the engine must give, from the reference's decision: a refused path or
/// oversized headers by their status, a denial naming a rule by that DENY rule, and
/// otherwise whether an enforced ALLOW policy applies to the workload.
fn expected_reason(
    oracle: &reference::ReferenceDecision,
    parsed: &[cordon_engine::Policy],
    options: &Options,
    request: &cordon_engine::Request<'_>,
) -> Reason {
    let path = request.path;
    let reads_peer_ip = reference::applicable(parsed, options)
        .iter()
        .flat_map(|policy| policy.rules.iter())
        .flat_map(|rule| rule.from.iter().chain(&rule.when))
        .flat_map(|clause| clause.fields.iter())
        .any(|field| field.attribute == cordon_engine::model::Attribute::SourceIp);
    let forwarded = request.headers.any_value("x-forwarded-for", &mut |_| true);
    match oracle.status {
        400 => {
            let raw = path.unwrap_or_default();
            let mut buffer = String::new();
            let rejection = if raw.len() > options.limits.max_path_bytes {
                Some(PathRejection::TooLong)
            } else {
                normalize(raw, options.path_normalization, &mut buffer).err()
            };
            rejection.map_or_else(
                || panic!("status 400 for a path normalization accepts: {raw:?}"),
                Reason::PathRejected,
            )
        }
        431 => Reason::HeadersTooLarge,
        _ if !oracle.allowed && oracle.policy.is_some() => Reason::DeniedByPolicy,
        403 if reads_peer_ip && !options.use_remote_address && forwarded => {
            Reason::PeerAddressUnknown
        }
        _ => {
            let allow_applies = reference::applicable(parsed, options)
                .iter()
                .any(|policy| policy.action == Action::Allow && !policy.dry_run);
            match (allow_applies, oracle.allowed) {
                (false, _) => Reason::NoAllowPolicies,
                (true, true) => Reason::AllowedByPolicy,
                (true, false) => Reason::NoAllowMatch,
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn compiled_agrees_with_reference(
        seeds in prop::collection::vec(policy_seed(), 1..6),
        requests in prop::collection::vec(request_strategy(), 1..8),
        aliases in any::<bool>(),
        mode in 0usize..5,
        tight in prop::bool::weighted(0.1),
        gateway in prop::option::weighted(0.1, 0usize..6),
    ) {
        let mut policies: Vec<Value> = seeds.iter().enumerate().map(|(i, seed)| policy_json(i, seed)).collect();
        // A policy bound to a gateway (targetRefs) is skipped by a sidecar.
        if let Some(position) = gateway {
            if let Some(policy) = policies.get_mut(position) {
                if policy["spec"].get("selector").is_none() {
                    policy["spec"]["targetRefs"] = json!([{"kind": "Gateway", "name": "gw"}]);
                }
            }
        }
        let (parsed, _, errors) = parse_policies(&policies);
        prop_assert!(errors.is_empty(), "generated policies must be valid: {errors:?}");
        for request in &requests {
            let record = TrafficRecord::from_json(request).unwrap();
            let mut options = Options { workload: Workload { namespace: None, labels: Default::default() }, ..Options::default() };
            if aliases {
                options.trust_domain = Some("cluster.local".into());
                options.trust_domain_aliases = vec!["old.td".into()];
            }
            options.path_normalization = [
                PathNormalization::Strict,
                PathNormalization::None,
                PathNormalization::Base,
                PathNormalization::MergeSlashes,
                PathNormalization::DecodeAndMergeSlashes,
            ][mode];
            if tight {
                options.limits.max_header_bytes = 8;
            }
            options.workload = record.workload();
            let set = PolicySet::compile(&policies, options.clone()).unwrap();
            let mut scratch = set.new_scratch();
            let view = record.request();
            let decision = set.evaluate(&view, &mut scratch);
            let oracle = reference::evaluate(&parsed, &options, &view);
            let name = |rule: Option<cordon_engine::RuleRef>| rule.map(|rule| set.rule_id(rule).to_string());
            prop_assert_eq!(decision.allowed, oracle.allowed, "allowed; request {}", request);
            prop_assert_eq!(decision.status, oracle.status);
            prop_assert_eq!(name(decision.policy), oracle.policy.clone(), "deciding rule; request {}", request);
            prop_assert_eq!(name(decision.audit), oracle.audit.clone());
            prop_assert_eq!((decision.dry_run.allowed, name(decision.dry_run.rule)), oracle.dry_run.clone());
            prop_assert_eq!(decision.identity, expected_identity(view.peer_identity), "identity; request {}", request);
            prop_assert_eq!(decision.reason, expected_reason(&oracle, &parsed, &options, &view), "reason; request {}", request);
            // The same scratch, reused, gives the same answer.
            prop_assert_eq!(set.evaluate(&view, &mut scratch), decision);
        }
    }
}
