//! The differential test: cordon against Envoy's native RBAC filter (configured as istiod
//! translates the same AuthorizationPolicies), in one real Envoy 1.40, on seeded random
//! policy sets and requests. Every disagreement fails the test and is listed, with its
//! seeds, policies, request and both answers (also written under
//! `target/differential/seed-<seed>/`).
//!
//! `DIFF_CASES` (default 20000), `DIFF_SEED`, `DIFF_SET_SEED` (one set only),
//! `DIFF_REQUESTS_PER_SET`, `DIFF_SETS_PER_ENVOY`; `DIFF_REPLAY=<file.jsonl>` replays
//! disagreement records instead, and `DIFF_MINIMIZE=<file.jsonl>` shrinks them to minimal
//! reproducers (`target/differential/minimized.jsonl`). Long runs: `scripts/differential.sh --cases N`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_e2e::differential::{self, Settings};

#[test]
fn cordon_decides_as_envoy_rbac_does() {
    let settings = Settings::from_env().unwrap_or_else(|error| panic!("{error}"));
    if let Some(path) = std::env::var_os("DIFF_MINIMIZE") {
        let records = differential::read_records(std::path::Path::new(&path))
            .unwrap_or_else(|error| panic!("{error}"));
        let minimized = differential::minimize::minimize(&records, &settings)
            .unwrap_or_else(|error| panic!("minimizing failed: {error}"));
        for record in &minimized {
            eprintln!("{record}");
        }
        return;
    }
    let report = match std::env::var_os("DIFF_REPLAY") {
        Some(path) => {
            let records = differential::read_records(std::path::Path::new(&path))
                .unwrap_or_else(|error| panic!("{error}"));
            differential::replay(&records, &settings)
        }
        None => differential::run(&settings),
    }
    .unwrap_or_else(|error| panic!("the differential run failed: {error}"));
    let summary = report.summary(40);
    eprintln!("{summary}");
    assert!(
        report.cases > 0 || std::env::var_os("DIFF_REPLAY").is_some(),
        "no case ran"
    );
    assert_eq!(
        report.failures(),
        0,
        "cordon and Envoy's RBAC filter disagree:\n{summary}"
    );
}
