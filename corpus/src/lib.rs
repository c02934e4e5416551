//! # cordon-corpus
//!
//! The policy test corpus (`policies/corpus/*.json`, format in
//! `policies/CORPUS-FORMAT.md`) as typed data, and one runner for every engine that
//! decides it, in the style of rust-lang/regex's `regex-test`.
//!
//! - [`format`]: the cases as structs that reject unknown keys. Every case expects either
//!   a `decision` (with a `request`) or a complete `error` (`policy`, `field`,
//!   `contains`, no `request`); a misspelled key or a missing decision fails to load,
//!   the message naming the file and the case.
//! - [`load`]: a [`Corpus`] is read from a directory or a list of files, every problem in
//!   every file gathered; case names are unique across the corpus. [`Filter`] selects
//!   cases by name (`CORDON_CORPUS_FILTER`).
//! - [`manifest`]: `policies/corpus/MANIFEST` pins the number of cases of every file;
//!   [`Corpus::load_pinned`] fails when a file is missing, unlisted or has a different
//!   count, and [`Report::check`] fails when an unfiltered run did not run exactly those.
//! - [`run`](mod@run): an [`Engine`] reports what it observed for one case; [`run()`]
//!   compares every selected case and returns a [`Report`] of every failure.
//!
//! # Example
//!
//! ```
//! use cordon_corpus::{run, Corpus, CorpusFile, Engine, Entry, Filter, Observed, Outcome};
//!
//! /// Denies everything.
//! struct DenyAll;
//! impl Engine for DenyAll {
//!     fn name(&self) -> &str { "deny-all" }
//!     fn run(&mut self, _case: &Entry<'_>) -> Result<Outcome, String> {
//!         Ok(Outcome::Decided(Observed { allowed: false, status: 403, ..Observed::default() }))
//!     }
//! }
//!
//! let file = CorpusFile::parse("example.json", r#"{"description": "two cases", "cases": [
//!     {"name": "denied", "request": {}, "expect": {"decision": "deny", "identity": "none"}},
//!     {"name": "allowed", "request": {}, "expect": {"decision": "allow"}}
//! ]}"#).unwrap();
//! let corpus = Corpus::new(vec![file]).unwrap();
//! let report = run(&corpus, &Filter::all(), &mut DenyAll);
//! assert_eq!(report.total(), 2);
//! // `allowed` fails, and so does `denied`: the engine reports no identity.
//! assert_eq!(report.failures().count(), 2);
//! assert!(report.check(None).is_err());
//! ```
//!
//! # Crate features
//! None: the crate uses `std` (it reads files and the environment).

pub mod format;
pub mod load;
pub mod manifest;
pub mod run;

pub use format::{
    Case, CaseOptions, Decision, Expect, ExpectDecision, ExpectDryRun, ExpectError,
    ExpectedIdentity,
};
pub use load::{Corpus, CorpusFile, Entry, Filter, LoadError, FILTER_VARIABLE};
pub use manifest::{Manifest, MANIFEST_FILE};
pub use run::{compare, run, CaseResult, Engine, Observed, Outcome, Rejection, Report};

/// The repository's corpus directory, `policies/corpus`.
pub fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/corpus")
}
