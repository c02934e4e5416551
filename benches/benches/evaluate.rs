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
//!
//! Times are wall-clock by default. With `CORDON_BENCH_CLOCK=thread-cpu` they are the
//! benchmark thread's CPU time instead, which time slices given to other processes do not
//! inflate: use it on a machine shared with builds (and point `CRITERION_HOME` elsewhere,
//! e.g. `target/criterion-cpu`, to keep both sets of results).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use cordon_benches::{describe, generate, Generated, SIZES};
use cordon_engine::{model::parse_policies, reference, Options, PolicySet};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};

/// The CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = cpu_time::ThreadTime;
    type Value = Duration;

    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }

    fn end(&self, start: Self::Intermediate) -> Self::Value {
        start.elapsed()
    }

    fn add(&self, v1: &Self::Value, v2: &Self::Value) -> Self::Value {
        *v1 + *v2
    }

    fn zero(&self) -> Self::Value {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Self::Value) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

/// Formats nanoseconds as criterion's wall-clock formatter does (no throughputs here).
struct Nanoseconds;

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else if typical < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        values.iter_mut().for_each(|value| *value *= factor);
        unit
    }

    fn scale_throughputs(&self, typical: f64, _: &Throughput, values: &mut [f64]) -> &'static str {
        self.scale_values(typical, values)
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// Fast benchmarks (nanoseconds to a few microseconds): many samples, short runs.
fn fast<M: Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group
        .sampling_mode(SamplingMode::Auto)
        .sample_size(60)
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2));
}

/// Slow benchmarks (a linear scan over thousands of rules, compiles): few samples.
fn slow<M: Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
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

fn evaluate<M: Measurement>(c: &mut Criterion<M>) {
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

fn compile<M: Measurement>(c: &mut Criterion<M>) {
    let options = Options::default();
    for size in SIZES {
        let generated = generate(size);
        let mut group = c.benchmark_group(format!("compile/{size}"));
        if size >= 100 {
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

fn run<M: Measurement>(mut c: Criterion<M>) {
    evaluate(&mut c);
    compile(&mut c);
    c.final_summary();
}

fn main() {
    match std::env::var("CORDON_BENCH_CLOCK").as_deref() {
        Ok("thread-cpu") => run(Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args()),
        Ok("wall") | Err(_) => run(Criterion::default().configure_from_args()),
        Ok(other) => eprintln!("CORDON_BENCH_CLOCK={other}: expected `wall` or `thread-cpu`"),
    }
}
