//! `cordon test` reads suites with the corpus harness (`cordon-corpus`), run as a user
//! runs the binary: typed cases, every load problem at once, a directory's `MANIFEST`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;
use run::{cordon, stderr, stdout, tempdir};

use serde_json::{json, Value};

fn allow_get() -> Value {
    json!({"metadata": {"name": "p", "namespace": "ns"},
           "spec": {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}})
}

fn suite(cases: Value) -> String {
    json!({"description": "a suite", "policies": [allow_get()], "cases": cases}).to_string()
}

#[test]
fn a_suite_that_does_not_load_fails_with_every_problem_named_by_file_and_case() {
    let dir = tempdir();
    let file = dir.join("typos.json");
    std::fs::write(
        &file,
        suite(json!([
            {"name": "misspelled", "request": {"request": {"method": "GET"}},
             "expect": {"decision": "allow", "polcy": null}},
            {"name": "no-decision", "request": {"request": {"method": "GET"}}, "expect": {}},
            {"name": "fine", "request": {"request": {"method": "GET"}}, "expect": {"decision": "allow"}}
        ])),
    )
    .unwrap();
    let output = cordon(&["test", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let said = stderr(&output);
    let shown = file.display().to_string();
    assert!(
        said.contains(&format!(
            "{shown}: case `misspelled`: unknown field `polcy`"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "{shown}: case `no-decision`: expect states neither"
        )),
        "{said}"
    );
    assert!(
        stdout(&output).is_empty(),
        "nothing runs: {}",
        stdout(&output)
    );
}

#[test]
fn json_beside_the_suites_that_is_not_a_suite_is_skipped() {
    let dir = tempdir();
    std::fs::write(
        dir.join("suite.json"),
        suite(json!([
            {"name": "get", "request": {"request": {"method": "GET"}}, "expect": {"decision": "allow"}},
            {"name": "post", "request": {"request": {"method": "POST"}}, "expect": {"decision": "deny"}}
        ])),
    )
    .unwrap();
    std::fs::write(dir.join("policies.json"), json!([allow_get()]).to_string()).unwrap();
    std::fs::write(
        dir.join("settings.json"),
        r#"{"path_normalization": "BASE"}"#,
    )
    .unwrap();
    let output = cordon(&["test", dir.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).ends_with("2 passed, 0 failed\n"),
        "{}",
        stdout(&output)
    );
    // The repository's examples are policies, not suites: no case at all is an error.
    let output = cordon(&["test", "policies/examples/"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no test case found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_directory_with_a_manifest_must_hold_exactly_the_pinned_cases() {
    let dir = tempdir();
    std::fs::write(
        dir.join("suite.json"),
        suite(json!([
            {"name": "get", "request": {"request": {"method": "GET"}}, "expect": {"decision": "allow"}},
            {"name": "post", "request": {"request": {"method": "POST"}}, "expect": {"decision": "deny"}}
        ])),
    )
    .unwrap();
    let path = dir.to_str().unwrap();
    std::fs::write(dir.join("MANIFEST"), "suite.json 2\n").unwrap();
    let output = cordon(&["test", path]);
    assert!(output.status.success(), "{}", stderr(&output));

    std::fs::write(dir.join("MANIFEST"), "suite.json 3\ngone.json 4\n").unwrap();
    let output = cordon(&["test", path]);
    assert_eq!(output.status.code(), Some(2));
    let said = stderr(&output);
    assert!(
        said.contains("suite.json: 2 cases loaded, MANIFEST pins 3"),
        "{said}"
    );
    assert!(said.contains("gone.json: pinned at 4 cases"), "{said}");
    // A suite named on its own is not held to its directory's manifest.
    let output = cordon(&["test", dir.join("suite.json").to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Nor is a run of some cases to the manifest's totals (the files still are).
    std::fs::write(dir.join("MANIFEST"), "suite.json 2\n").unwrap();
    let output = cordon(&["test", path, "--filter", "get"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).ends_with("1 passed, 0 failed\n"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn the_repository_corpus_is_held_to_its_manifest() {
    // Every case of one file, its name filter included, runs and passes.
    let output = cordon(&["test", "policies/", "--filter", "hosts-"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let last = stdout(&output).lines().last().unwrap().to_string();
    assert!(last.ends_with("passed, 0 failed"), "{last}");
    let output = cordon(&["test", "policies/", "--filter", "no-case-has-this-name"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no test case has `no-case-has-this-name` in its name"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn rejected_policies_and_warnings_are_checked_on_the_wasm() {
    let dir = tempdir();
    let bad = json!({"metadata": {"name": "bad", "namespace": "ns"},
                     "spec": {"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]}});
    let star = json!({"metadata": {"name": "star", "namespace": "ns"},
                      "spec": {"rules": [{"from": [{"source": {"principals": ["*"]}}],
                                          "to": [{"operation": {"hosts": ["a*b"]}}]}]}});
    std::fs::write(
        dir.join("suite.json"),
        json!({"description": "errors and warnings", "cases": [
            {"name": "rejected", "policies": [bad],
             "expect": {"error": {"policy": "ns/bad", "field": "spec.rules[0].to[0].operation.ports[0]", "contains": "invalid port"}}},
            {"name": "wrong-field", "policies": [bad],
             "expect": {"error": {"policy": "ns/bad", "field": "spec.rules[0].to[0].operation.hosts[0]", "contains": "invalid port"}}},
            {"name": "accepted", "policies": [allow_get()],
             "expect": {"error": {"policy": "ns/p", "field": "spec", "contains": "anything"}}},
            {"name": "warned", "policies": [star], "request": {"request": {"method": "GET"}},
             "expect": {"decision": "deny", "warning": "matched literally"}},
            {"name": "not-warned", "policies": [allow_get()], "request": {"request": {"method": "GET"}},
             "expect": {"decision": "allow", "warning": "matched literally"}}
        ]})
        .to_string(),
    )
    .unwrap();
    let output = cordon(&["test", dir.to_str().unwrap(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let passed: Vec<(&str, bool)> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            (
                case["name"].as_str().unwrap(),
                case["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        passed,
        [
            ("rejected", true),
            ("wrong-field", false),
            ("accepted", false),
            ("warned", true),
            ("not-warned", false)
        ],
        "{report}"
    );
    assert_eq!(report["passed"], 2);
    assert_eq!(report["failed"], 3);
}
