//! A driver for instruction-count profiles of `PolicySet::evaluate`: compiles the generated
//! set of `<rules>` rules, then decides `<request>` (`matching`, `non-matching`, `denied`)
//! `<iterations>` times. Run it under callgrind twice, with `<iterations>` 0 and N, and the
//! difference of the totals divided by N is the instruction count of one decision, free of
//! the setup (instruction counts hold steady on a busy machine, where wall time does not):
//!
//! ```sh
//! cargo build --profile bench -p cordon-benches --example profile
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/examples/profile 10 matching 100000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

use std::hint::black_box;

use cordon_benches::generate;
use cordon_engine::{Options, PolicySet};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: profile <rules> <matching|non-matching|denied> <iterations>";
    let rules: usize = args.get(1).and_then(|s| s.parse().ok()).expect(usage);
    let kind = args.get(2).expect(usage);
    let iterations: u64 = args.get(3).and_then(|s| s.parse().ok()).expect(usage);
    let generated = generate(rules);
    let set = PolicySet::compile(&generated.policies, Options::default()).unwrap();
    let request = generated
        .requests
        .iter()
        .find(|request| request.kind.name() == kind)
        .expect(usage);
    let attributes = request.as_request();
    let mut scratch = set.new_scratch();
    // One decision outside the counted loop, so that the scratch memory has grown.
    assert_eq!(
        set.evaluate(&attributes, &mut scratch).allowed,
        request.allowed
    );
    let mut allowed = 0u64;
    for _ in 0..iterations {
        allowed += u64::from(set.evaluate(black_box(&attributes), &mut scratch).allowed);
    }
    println!("{rules} rules, {kind}: {iterations} decisions, {allowed} allowed");
}
