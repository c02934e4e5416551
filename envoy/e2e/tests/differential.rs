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
        report.failures_with(settings.strict),
        0,
        "cordon and Envoy's RBAC filter disagree:\n{summary}"
    );
}

/// The minimal reproducer of every disagreement class found so far, and probes of every
/// attribute form (`tests/differential-reproducers.jsonl`, one record per line with its
/// `class` and the answer Envoy's RBAC filter gave when it was written): each must still
/// get that answer from the RBAC chain, and the same from cordon.
#[test]
fn reproducers_agree() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/differential-reproducers.jsonl");
    let records = differential::read_records(&path).unwrap_or_else(|error| panic!("{error}"));
    assert!(!records.is_empty(), "{} holds no record", path.display());
    let settings = Settings::from_env().unwrap_or_else(|error| panic!("{error}"));
    let report = differential::replay(&records, &settings)
        .unwrap_or_else(|error| panic!("replaying the reproducers failed: {error}"));
    let mut failures = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let class = record["class"].as_str().unwrap_or("?");
        let answer = report
            .answers
            .iter()
            .find(|answer| answer["set_seed"].as_u64() == Some(index as u64));
        let Some(answer) = answer else {
            failures.push(format!("#{index} {class}: no answer (the set did not run)"));
            continue;
        };
        if answer["rbac"] != record["rbac"] {
            failures.push(format!(
                "#{index} {class}: Envoy's RBAC filter now answers {} (recorded {}): the oracle changed",
                answer["rbac"], record["rbac"]
            ));
        }
        if answer["rbac"] != answer["cordon"] {
            if let Some(difference) = differential::deliberate(answer) {
                eprintln!("#{index} {class}: deliberate difference (README): {difference}");
                if !settings.strict {
                    continue;
                }
            }
            failures.push(format!(
                "#{index} {class}: RBAC {} / cordon {}",
                answer["rbac"], answer["cordon"]
            ));
        }
    }
    for record in &report.config_disagreements {
        failures.push(format!("configuration: {record}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} reproducers fail:\n{}",
        failures.len(),
        records.len(),
        failures.join("\n")
    );
}
