//! A driver for profiles of `cordon diff`'s analysis: the generated set of `<rules>` rules
//! against the same change `benches/diff.rs` times (one principal widened to its
//! namespace, one rule removed), over the workloads `cordon diff` enumerates, `<runs>`
//! times:
//!
//! ```sh
//! CARGO_PROFILE_BENCH_STRIP=false CARGO_PROFILE_BENCH_DEBUG=line-tables-only \
//!     cargo build --profile bench -p cordon-benches --example diff_profile
//! perf record -g target/release/examples/diff_profile 10000 1
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

use cordon_benches::{changed, generate};
use cordon_engine::diff::{diff, workloads};
use cordon_engine::model::parse_policies;
use cordon_engine::Options;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rules: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let old = generate(rules).policies;
    let new = changed(&old).unwrap();
    let options = Options::default();
    let (old_parsed, _, _) = parse_policies(&old);
    let (new_parsed, _, _) = parse_policies(&new);
    let all: Vec<_> = old_parsed.iter().chain(&new_parsed).collect();
    let targets = workloads(&all, &options.root_namespace);
    for _ in 0..runs {
        let start = std::time::Instant::now();
        let report = diff(&old, &new, &options, &targets).unwrap();
        let gained: usize = report.iter().map(|entry| entry.new_access.len()).sum();
        println!(
            "{rules} rules, {} workloads: {gained} new-access classes in {:?}",
            targets.len(),
            start.elapsed()
        );
    }
}
