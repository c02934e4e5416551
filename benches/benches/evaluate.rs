//! cordon-engine against its reference interpreter (a linear scan over rules, as Envoy's
//! RBAC filter does) and cedar-policy, on the same decisions.
//!
//! Groups:
//! - `evaluate/<rules>`: ids `cordon/<request>`, `reference/<request>`, `cedar/<request>`
//!   for the requests `matching`, `non-matching` and `denied`.
//! - `compile/<rules>`: `cordon` (`PolicySet::compile` from parsed JSON values) and `cedar`
//!   (`PolicySet::from_str`).
//!
//! Run with `cargo bench -p cordon-benches`; `BENCHMARKS.md` records the results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use cordon_benches::{describe, generate, Generated, SIZES};
use cordon_engine::{model::parse_policies, reference, Options, PolicySet};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};

/// Fast benchmarks (nanoseconds to a few microseconds): many samples, short runs.
fn fast(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sampling_mode(SamplingMode::Auto)
        .sample_size(60)
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2));
}

/// Slow benchmarks (a linear scan over thousands of rules, compiles): few samples.
fn slow(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn print_setup(generated: &Generated, set: &PolicySet) {
    let mut counts: Vec<_> = describe(generated).into_iter().collect();
    counts.sort();
    eprintln!(
        "set of {} rules in {} policies: {counts:?}",
        generated.rules,
        generated.policies.len()
    );
    let mut scratch = set.new_scratch();
    for request in &generated.requests {
        let decision = set.evaluate(&request.as_request(), &mut scratch);
        eprintln!(
            "  {:<12} {} {} {} -> allowed={} {:?} {}",
            request.kind.name(),
            request.peer_identity,
            request.method,
            request.path,
            decision.allowed,
            decision.reason,
            decision.policy.map_or("", |rule| set.rule_id(rule)),
        );
    }
}

fn evaluate(c: &mut Criterion) {
    let options = Options::default();
    let authorizer = cedar_policy::Authorizer::new();
    for size in SIZES {
        let generated = generate(size);
        let set = PolicySet::compile(&generated.policies, options.clone()).unwrap();
        let (parsed, _, errors) = parse_policies(&generated.policies);
        assert!(errors.is_empty());
        let cedar = cedar_policy::PolicySet::from_str(&generated.cedar).unwrap();
        print_setup(&generated, &set);

        let mut group = c.benchmark_group(format!("evaluate/{size}"));
        for request in &generated.requests {
            let attributes = request.as_request();
            let kind = request.kind.name();

            fast(&mut group);
            let mut scratch = set.new_scratch();
            assert_eq!(
                set.evaluate(&attributes, &mut scratch).allowed,
                request.allowed
            );
            group.bench_function(format!("cordon/{kind}"), |b| {
                b.iter(|| set.evaluate(black_box(&attributes), &mut scratch).allowed)
            });

            if size >= 1_000 {
                slow(&mut group);
            }
            assert_eq!(
                reference::evaluate(&parsed, &options, &attributes).allowed,
                request.allowed
            );
            group.bench_function(format!("reference/{kind}"), |b| {
                b.iter(|| reference::evaluate(&parsed, &options, black_box(&attributes)).allowed)
            });

            // Cedar gets its request and entities built outside the timed loop (cordon
            // reads borrowed attributes, so it has nothing to build).
            let cedar_request = request.cedar_request().unwrap();
            let entities = request.cedar_entities().unwrap();
            assert_eq!(
                cordon_benches::cedar_allowed(&authorizer.is_authorized(
                    &cedar_request,
                    &cedar,
                    &entities
                )),
                request.allowed
            );
            group.bench_function(format!("cedar/{kind}"), |b| {
                b.iter(|| {
                    cordon_benches::cedar_allowed(&authorizer.is_authorized(
                        black_box(&cedar_request),
                        &cedar,
                        &entities,
                    ))
                })
            });
        }
        group.finish();
    }
}

fn compile(c: &mut Criterion) {
    let options = Options::default();
    for size in SIZES {
        let generated = generate(size);
        let mut group = c.benchmark_group(format!("compile/{size}"));
        if size >= 1_000 {
            slow(&mut group);
        } else {
            fast(&mut group);
        }
        group.bench_function("cordon", |b| {
            b.iter(|| {
                PolicySet::compile(black_box(&generated.policies), options.clone())
                    .unwrap()
                    .rules()
                    .len()
            })
        });
        group.bench_function("cedar", |b| {
            b.iter(|| {
                cedar_policy::PolicySet::from_str(black_box(&generated.cedar))
                    .unwrap()
                    .num_of_policies()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, evaluate, compile);
criterion_main!(benches);
