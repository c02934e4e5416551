//! `cordon diff`'s analysis (`cordon_engine::diff::diff`) on the generated policy sets: the
//! set of `generate(rules)` against the same set after a typical pull request (one rule's
//! principal widened to its namespace's service accounts, one rule removed elsewhere),
//! over every workload the two sets can tell apart, as `cordon diff` runs it.
//!
//! Group `diff/<rules>`: id `widen-and-remove`, over the 21 workloads `cordon diff`
//! enumerates (the policies' 20 namespaces and one other: each sees its namespace's
//! policies and the root DENY policy); id `one-workload`, over one workload outside any
//! namespace, where every rule of both sets applies. Run with
//! `cargo bench -p cordon-benches --bench diff`; `BENCHMARKS.md` records the results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

use std::hint::black_box;

use cordon_benches::{changed, generate};
use cordon_engine::diff::{diff, workloads};
use cordon_engine::model::parse_policies;
use cordon_engine::{Options, Workload};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

fn bench(c: &mut Criterion) {
    for rules in [1_000usize, 10_000] {
        let old = generate(rules).policies;
        let new = changed(&old).unwrap();
        let options = Options::default();
        let (old_parsed, _, _) = parse_policies(&old);
        let (new_parsed, _, _) = parse_policies(&new);
        let all: Vec<_> = old_parsed.iter().chain(&new_parsed).collect();
        let targets = workloads(&all, &options.root_namespace);
        // The answer, checked once: the widening is new access, the removal removed access.
        let report = diff(&old, &new, &options, &targets).unwrap();
        let gained: usize = report.iter().map(|entry| entry.new_access.len()).sum();
        let lost: usize = report.iter().map(|entry| entry.removed_access.len()).sum();
        assert!(gained >= 1 && lost >= 1, "{gained} new, {lost} removed");
        eprintln!(
            "diff/{rules}: {} workloads, {gained} new-access and {lost} removed-access classes",
            targets.len()
        );
        let mut group = c.benchmark_group(format!("diff/{rules}"));
        group.sampling_mode(SamplingMode::Flat).sample_size(10);
        group.bench_function("widen-and-remove", |b| {
            b.iter(|| diff(black_box(&old), black_box(&new), &options, &targets).unwrap())
        });
        let everything = [Workload::default()];
        let report = diff(&old, &new, &options, &everything).unwrap();
        assert!(!report[0].new_access.is_empty() && !report[0].removed_access.is_empty());
        group.bench_function("one-workload", |b| {
            b.iter(|| diff(black_box(&old), black_box(&new), &options, &everything).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
