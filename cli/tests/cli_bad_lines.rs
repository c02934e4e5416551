//! One bad-line policy for every command that reads traffic, run as a user runs it: each
//! bad line is reported as `file:line: what is wrong` and counted, the command does its
//! work, then exits 2; `--skip-bad-lines` exits 0 and still reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;
use run::{cordon, repo, stderr, stdout};

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};

const SHOP_POLICIES: &str = "policies/examples/shop/policies.yaml";
const SHOP_TRAFFIC: &str = "policies/examples/shop/traffic.jsonl";

/// A traffic file with, in order: a good record (line 1), a bad line (2), a JSON-formatted
/// Envoy log line carrying a decision record (3), an ordinary Envoy log line (4), a
/// comment (5) and a blank line (6).
fn mixed_traffic(name: &str) -> PathBuf {
    let shop = std::fs::read_to_string(repo().join(SHOP_TRAFFIC)).unwrap();
    let mut records = shop.lines();
    let good = records.next().unwrap();
    let mut logged: Value = serde_json::from_str(records.nth(2).unwrap()).unwrap();
    logged["decision"] = json!({"allowed": false, "enforced": true, "status": 403});
    let json_log = json!({
        "time": "2026-11-27T01:00:04.000Z",
        "level": "info",
        "name": "wasm",
        "message": format!("wasm log cordon: cordon.decision {logged}"),
    });
    let dir = std::env::temp_dir().join(format!("cordon-bad-lines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "{good}\n{{\"source\": {{\"principal\": \n{json_log}\n[2026-11-27 01:00:00.000][1][info][main] starting main dispatch loop\n# a comment\n\n"
        ),
    )
    .unwrap();
    path
}

/// Runs `args` (which read `traffic`) with and without `--skip-bad-lines`: both report
/// the bad line and do the work; only the first exits 2. Returns both outputs.
fn both_ways(traffic: &Path, args: &[&str]) -> (Output, Output) {
    let strict = cordon(args);
    let mut skipping: Vec<&str> = args.to_vec();
    skipping.push("--skip-bad-lines");
    let lenient = cordon(&skipping);
    let bad = format!("{}:2: invalid JSON: ", traffic.display());
    for (output, code) in [(&strict, 2), (&lenient, 0)] {
        let err = stderr(output);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(&bad), "{args:?}: no `{bad}` in:\n{err}");
        assert_eq!(
            err.lines().filter(|line| line.starts_with(&bad)).count(),
            1,
            "{args:?}: one bad line, reported once:\n{err}"
        );
        assert!(
            !err.contains(":3:") && !err.contains(":4:"),
            "{args:?}: the log lines are not bad:\n{err}"
        );
    }
    assert!(stderr(&strict).contains("--skip-bad-lines"));
    (strict, lenient)
}

const SUMMARY: &str = "2 records; 1 log line without a decision record skipped; 1 bad line";

#[test]
fn simulate_reports_bad_lines_and_replays_the_rest() {
    let traffic = mixed_traffic("simulate.log");
    let path = traffic.to_str().unwrap();
    let (strict, lenient) = both_ways(
        &traffic,
        &[
            "simulate",
            "--policy",
            SHOP_POLICIES,
            "--traffic",
            path,
            "--format",
            "jsonl",
        ],
    );
    for output in [&strict, &lenient] {
        let lines: Vec<Value> = stdout(output)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        // The good record and the JSON log line's record, in order.
        assert_eq!(lines.len(), 2, "{}", stdout(output));
        assert_eq!(lines[0]["line"], 1);
        assert_eq!(lines[1]["line"], 3);
        assert_eq!(lines[1]["method"], "DELETE");
        assert!(stderr(output).contains(SUMMARY), "{}", stderr(output));
    }
}

#[test]
fn bench_reports_bad_lines_and_measures_the_rest() {
    let traffic = mixed_traffic("bench.log");
    let path = traffic.to_str().unwrap();
    let (strict, lenient) = both_ways(
        &traffic,
        &[
            "bench",
            "--policy",
            SHOP_POLICIES,
            "--traffic",
            path,
            "--iterations",
            "1",
            "--format",
            "json",
        ],
    );
    for output in [&strict, &lenient] {
        let report: Value = serde_json::from_str(&stdout(output)).unwrap();
        assert!(report["wasm"]["median_ns"].as_u64().unwrap() > 0);
        assert!(stderr(output).contains(SUMMARY), "{}", stderr(output));
    }
}

#[test]
fn explain_reads_a_json_log_line_and_reports_bad_lines() {
    let traffic = mixed_traffic("explain.log");
    let path = traffic.to_str().unwrap();
    let (strict, lenient) = both_ways(
        &traffic,
        &[
            "explain",
            "--policy",
            SHOP_POLICIES,
            "--traffic",
            path,
            "--line",
            "3",
            "--format",
            "json",
        ],
    );
    for output in [&strict, &lenient] {
        let explanation: Value = serde_json::from_str(&stdout(output)).unwrap();
        assert_eq!(explanation["decision"], "deny", "{explanation}");
    }
    // The bad line itself cannot be explained.
    let output = cordon(&[
        "explain",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        path,
        "--line",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(&format!("{path}:2: invalid JSON")));
}

#[test]
fn discover_reports_bad_lines_and_learns_from_the_rest() {
    let traffic = mixed_traffic("discover.log");
    let path = traffic.to_str().unwrap();
    let (strict, lenient) = both_ways(
        &traffic,
        &[
            "discover",
            "--traffic",
            path,
            "--now",
            "2026-11-28T00:00:00Z",
        ],
    );
    for output in [&strict, &lenient] {
        let yaml = stdout(output);
        // The good record (frontend GETs orders) is learnt; the JSON log line's request
        // was refused by the filter, so it is left out, and counted.
        assert!(
            yaml.contains("spiffe://cluster.local/ns/shop/sa/frontend")
                || yaml.contains("cluster.local/ns/shop/sa/frontend"),
            "{yaml}"
        );
        let err = stderr(output);
        assert!(
            err.contains("cordon discover: 2 records in 6 lines"),
            "{err}"
        );
        assert!(
            err.contains("refused by the filter (decision log): 1"),
            "{err}"
        );
        assert!(
            err.contains("log lines without a decision record: 1"),
            "{err}"
        );
        assert!(
            err.contains(&format!("bad lines: 1, the first: {path}:2: invalid JSON")),
            "{err}"
        );
        assert!(err.contains(SUMMARY), "{err}");
    }
}

#[test]
fn audit_reports_bad_lines_and_judges_the_rest() {
    let traffic = mixed_traffic("audit.log");
    let path = traffic.to_str().unwrap();
    let (strict, lenient) = both_ways(
        &traffic,
        &[
            "audit",
            "--policy",
            SHOP_POLICIES,
            "--traffic",
            path,
            "--format",
            "json",
            "--fail-on",
            "never",
            "--now",
            "2026-11-28T00:00:00Z",
        ],
    );
    for output in [&strict, &lenient] {
        let report: Value = serde_json::from_str(&stdout(output)).unwrap();
        let summary = &report["summary"];
        assert_eq!(summary["records"], 2, "{report}");
        assert_eq!(summary["unreadable"], 1, "{report}");
        assert!(
            summary["first_unreadable"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{path}:2: invalid JSON")),
            "{report}"
        );
        assert!(stderr(output).contains(SUMMARY), "{}", stderr(output));
    }
}

#[test]
fn a_clean_file_says_nothing_and_exits_0() {
    let output = cordon(&[
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--format",
        "jsonl",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}
