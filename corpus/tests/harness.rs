//! The harness itself: what fails to load, what a run counts, what a check refuses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_corpus::{
    run, Corpus, CorpusFile, Engine, Entry, Expect, Filter, Manifest, Observed, Outcome, Rejection,
};

fn file_with(case: &str) -> String {
    format!(r#"{{"description": "d", "cases": [{case}]}}"#)
}

fn load_error(case: &str) -> String {
    CorpusFile::parse("t.json", &file_with(case))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_misspelled_key_fails_naming_file_and_case() {
    for (key, case) in [
        (
            "polcy",
            r#"{"name": "c", "request": {}, "expect": {"decision": "deny", "polcy": null}}"#,
        ),
        (
            "polices",
            r#"{"name": "c", "polices": [], "request": {}, "expect": {"decision": "deny"}}"#,
        ),
        (
            "aduit",
            r#"{"name": "c", "request": {}, "expect": {"decision": "deny", "aduit": null}}"#,
        ),
        (
            "trust_domains",
            r#"{"name": "c", "options": {"trust_domains": "x"}, "request": {}, "expect": {"decision": "deny"}}"#,
        ),
        (
            "contain",
            r#"{"name": "c", "expect": {"error": {"policy": "a/b", "field": "f", "contain": "x"}}}"#,
        ),
        (
            "polic",
            r#"{"name": "c", "request": {}, "expect": {"decision": "deny", "dry_run": {"decision": "deny", "polic": null}}}"#,
        ),
    ] {
        let error = load_error(case);
        assert!(
            error.contains(&format!("t.json: case `c`: unknown field `{key}`")),
            "{key}: {error}"
        );
    }
}

#[test]
fn every_case_states_a_decision_or_a_complete_error() {
    let missing = load_error(r#"{"name": "c", "request": {}, "expect": {"policy": null}}"#);
    assert!(
        missing.contains("t.json: case `c`: expect states neither `decision`"),
        "{missing}"
    );
    let empty = load_error(r#"{"name": "c", "request": {}, "expect": {}}"#);
    assert!(empty.contains("neither `decision`"), "{empty}");
    let wrong = load_error(r#"{"name": "c", "request": {}, "expect": {"decision": "Allow"}}"#);
    assert!(wrong.contains("unknown variant `Allow`"), "{wrong}");
    let incomplete =
        load_error(r#"{"name": "c", "expect": {"error": {"policy": "a/b", "field": "f"}}}"#);
    assert!(
        incomplete.contains("missing field `contains`"),
        "{incomplete}"
    );
    let both = load_error(
        r#"{"name": "c", "expect": {"decision": "deny", "error": {"policy": "a/b", "field": "f", "contains": "x"}}}"#,
    );
    assert!(
        both.contains("expect.error stands alone") && both.contains("`decision`"),
        "{both}"
    );
    let identity = load_error(
        r#"{"name": "c", "request": {}, "expect": {"decision": "deny", "identity": "verifed"}}"#,
    );
    assert!(identity.contains("unknown variant `verifed`"), "{identity}");
    let normalization = load_error(
        r#"{"name": "c", "options": {"path_normalization": "strict"}, "request": {}, "expect": {"decision": "deny"}}"#,
    );
    assert!(
        normalization.contains("unknown path_normalization `strict`"),
        "{normalization}"
    );
}

#[test]
fn a_decision_needs_a_request_and_a_rejection_has_none() {
    let no_request = load_error(r#"{"name": "c", "expect": {"decision": "allow"}}"#);
    assert!(
        no_request.contains("case `c`: expects a decision but has no `request`"),
        "{no_request}"
    );
    let with_request = load_error(
        r#"{"name": "c", "request": {}, "expect": {"error": {"policy": "a/b", "field": "f", "contains": "x"}}}"#,
    );
    assert!(
        with_request.contains("a `request` would never be sent"),
        "{with_request}"
    );
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let text = r#"{"description": "d", "cases": [
        {"name": "one", "request": {}, "expect": {"decison": "deny"}},
        {"name": "two", "request": {}, "expect": {"decision": "allow"}},
        {"request": {}, "expect": {"decision": "allow"}}
    ]}"#;
    let error = CorpusFile::parse("t.json", text).unwrap_err();
    assert_eq!(error.problems().len(), 2, "{error}");
    assert!(error.problems()[0].starts_with("t.json: case `one`: unknown field `decison`"));
    assert!(error.problems()[1].starts_with("t.json: cases[2]: missing field `name`"));
}

#[test]
fn a_misspelled_file_key_fails_with_its_position() {
    let error = CorpusFile::parse("t.json", r#"{"description": "d", "case": []}"#)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("t.json:1:") && error.contains("unknown field `case`"),
        "{error}"
    );
}

#[test]
fn case_names_are_unique_across_files() {
    let one = CorpusFile::parse(
        "a.json",
        &file_with(r#"{"name": "same", "request": {}, "expect": {"decision": "deny"}}"#),
    )
    .unwrap();
    let two = CorpusFile::parse(
        "b.json",
        &file_with(r#"{"name": "same", "request": {}, "expect": {"decision": "deny"}}"#),
    )
    .unwrap();
    let error = Corpus::new(vec![one, two]).unwrap_err().to_string();
    assert!(
        error.contains("b.json: case `same`: duplicate name (also in a.json)"),
        "{error}"
    );
}

#[test]
fn case_options_override_the_file_options_key_by_key() {
    let file = CorpusFile::parse(
        "t.json",
        r#"{"description": "d",
            "policies": [{"metadata": {"name": "p"}}],
            "options": {"trust_domain": "file.td", "root_namespace": "root"},
            "cases": [
                {"name": "c", "options": {"trust_domain": "case.td"}, "request": {}, "expect": {"decision": "deny"}},
                {"name": "d", "policies": [], "request": {}, "expect": {"decision": "deny"}}
            ]}"#,
    )
    .unwrap();
    let corpus = Corpus::new(vec![file]).unwrap();
    let entries: Vec<Entry<'_>> = corpus.cases().collect();
    let options = entries[0].options().engine_options();
    assert_eq!(options.trust_domain.as_deref(), Some("case.td"));
    assert_eq!(options.root_namespace, "root");
    assert_eq!(entries[0].policies().len(), 1);
    assert!(entries[1].policies().is_empty());
    assert!(entries[0].sets_options() && entries[1].sets_options());
    assert_eq!(
        entries[0].options().settings()["trust_domain"],
        serde_json::json!("case.td")
    );
}

fn two_files() -> Corpus {
    let one = CorpusFile::parse(
        "a.json",
        &file_with(
            r#"{"name": "a-allow", "request": {}, "expect": {"decision": "allow", "policy": null}},
               {"name": "a-deny", "request": {}, "expect": {"decision": "deny"}}"#,
        ),
    )
    .unwrap();
    let two = CorpusFile::parse(
        "b.json",
        &file_with(
            r#"{"name": "b-error", "expect": {"error": {"policy": "ns/p", "field": "spec.action", "contains": "unknown action"}}}"#,
        ),
    )
    .unwrap();
    Corpus::new(vec![one, two]).unwrap()
}

/// Allows everything, rejects the `b` file's policies.
struct AllowAll;

impl Engine for AllowAll {
    fn name(&self) -> &str {
        "allow-all"
    }

    fn run(&mut self, entry: &Entry<'_>) -> Result<Outcome, String> {
        Ok(match entry.expect() {
            Expect::Error(_) => Outcome::Rejected(vec![Rejection {
                policy: Some("ns/p".into()),
                field: Some("spec.action".into()),
                message: "unknown action `ALOW`".into(),
            }]),
            Expect::Decision(_) => Outcome::Decided(Observed {
                allowed: true,
                status: 200,
                identity: Some("none".into()),
                ..Observed::default()
            }),
        })
    }
}

#[test]
fn a_run_gathers_every_failure_and_counts_by_file() {
    let corpus = two_files();
    let report = run(&corpus, &Filter::all(), &mut AllowAll);
    assert_eq!(report.total(), 3);
    assert_eq!(report.ran["a.json"], 2);
    assert_eq!(report.ran["b.json"], 1);
    assert_eq!(report.results.len(), 3);
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].case, "a-deny");
    let message = report.check(None).unwrap_err();
    assert!(
        message.contains("a.json :: a-deny\n    expected deny (403), got allow (200)"),
        "{message}"
    );
}

#[test]
fn an_unfiltered_run_must_run_exactly_the_pinned_counts() {
    let corpus = two_files();
    let pinned = Manifest::parse("MANIFEST", "a.json 2\nb.json 1\n").unwrap();
    pinned.check(&corpus).unwrap();
    let filtered = run(&corpus, &Filter::containing("b-"), &mut AllowAll);
    assert_eq!(filtered.total(), 1);
    assert_eq!(filtered.filtered_out, 2);
    if std::env::var_os("CI").is_none() {
        // A filter run checks no counts (and under CI, refuses the filter instead).
        filtered.check(Some(&pinned)).unwrap();
    }
    // The same report without its filter is a run that lost the `a.json` cases.
    let mut leaked = filtered.clone();
    leaked.filter = None;
    let message = leaked.check(Some(&pinned)).unwrap_err();
    assert!(
        message.contains("a.json: pinned at 2 cases in MANIFEST, but no case of it was run"),
        "{message}"
    );
}

#[test]
fn the_manifest_catches_missing_unlisted_and_changed_files() {
    let corpus = two_files();
    let missing = Manifest::parse("MANIFEST", "a.json 2\nb.json 1\ngone.json 4\n").unwrap();
    let error = missing.check(&corpus).unwrap_err().to_string();
    assert!(error.contains("gone.json: pinned at 4 cases"), "{error}");
    let unlisted = Manifest::parse("MANIFEST", "a.json 2\n").unwrap();
    let error = unlisted.check(&corpus).unwrap_err().to_string();
    assert!(
        error.contains("b.json: 1 cases loaded, but the file has no line in MANIFEST"),
        "{error}"
    );
    let changed = Manifest::parse("MANIFEST", "a.json 3\nb.json 1\n").unwrap();
    let error = changed.check(&corpus).unwrap_err().to_string();
    assert!(
        error.contains("a.json: 2 cases loaded, MANIFEST pins 3"),
        "{error}"
    );
    let bad = Manifest::parse("MANIFEST", "a.json two\nb.json 1 x\n").unwrap_err();
    assert_eq!(bad.problems().len(), 2, "{bad}");
}

#[test]
fn a_rejection_must_name_the_policy_the_field_and_the_message() {
    let corpus = two_files();
    struct Wrong;
    impl Engine for Wrong {
        fn name(&self) -> &str {
            "wrong"
        }
        fn run(&mut self, entry: &Entry<'_>) -> Result<Outcome, String> {
            Ok(match entry.expect() {
                Expect::Error(_) => Outcome::Rejected(vec![Rejection {
                    policy: Some("ns/p".into()),
                    field: Some("spec.rules".into()),
                    message: "unknown action `ALOW`".into(),
                }]),
                Expect::Decision(_) => Outcome::Accepted,
            })
        }
    }
    let report = run(&corpus, &Filter::all(), &mut Wrong);
    assert_eq!(report.failures().count(), 3, "{report:?}");
    // An engine that reports only a message must mention the policy and the field in it.
    let text_only = Rejection {
        policy: None,
        field: None,
        message: "ns/p: spec.action: unknown action `ALOW`".into(),
    };
    let Expect::Error(expected) = &corpus.files()[1].cases[0].expect else {
        panic!("an error case")
    };
    assert!(text_only.matches(expected));
}

#[test]
fn the_repository_corpus_loads_and_matches_its_manifest() {
    let (corpus, manifest) =
        Corpus::load_pinned(&cordon_corpus::corpus_dir()).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(corpus.len(), manifest.total());
    assert_eq!(corpus.files().len(), manifest.counts().count());
}
