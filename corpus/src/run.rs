//! One runner for every engine: each engine reports what it observed, the runner compares
//! it with the case and gathers every failure before the caller decides.

use std::collections::BTreeMap;
use std::fmt;

use crate::format::{Decision, Expect, ExpectDecision, ExpectError};
use crate::load::{Corpus, Entry, Filter, FILTER_VARIABLE};
use crate::manifest::Manifest;

/// Something that decides corpus cases: the compiled evaluator, the reference
/// interpreter, the `.wasm` filter in a host.
pub trait Engine {
    /// How failures name this engine.
    fn name(&self) -> &str;

    /// Whether [`Observed::identity`] is filled in. An engine that says so and reports
    /// none fails every case with an `identity` expectation.
    fn reports_identity(&self) -> bool {
        true
    }

    /// Runs one case: compiles [`Entry::policies`] with [`Entry::options`] and, when they
    /// compile, decides [`Entry::request`] (read with
    /// [`TrafficRecord::from_json`](cordon_engine::TrafficRecord::from_json)). `Err` is a
    /// case the engine could not run at all (a bad request record, a host failure); it
    /// is reported as a failure.
    fn run(&mut self, case: &Entry<'_>) -> Result<Outcome, String>;
}

/// What an engine made of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The policies compiled and the request was decided.
    Decided(Observed),
    /// The policies were rejected, with these errors.
    Rejected(Vec<Rejection>),
    /// The policies compiled, and the case has no request to decide (it expected them
    /// to be rejected).
    Accepted,
}

/// A decision as an engine reports it, rules named by their Istio ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The response status (200 when allowed).
    pub status: u16,
    /// The deciding rule.
    pub policy: Option<String>,
    /// The first matching AUDIT rule.
    pub audit: Option<String>,
    /// Whether the request would proceed with dry-run policies enforced too.
    pub dry_run_allowed: bool,
    /// The deciding rule with dry-run policies enforced too.
    pub dry_run_policy: Option<String>,
    /// The peer identity's name (`verified`, `none`, `invalid`), when the engine reports
    /// it (see [`Engine::reports_identity`]).
    pub identity: Option<String>,
    /// The compile warnings' messages.
    pub warnings: Vec<String>,
    /// What the engine found wrong with itself on this case (say, an explanation that
    /// disagrees with the decision): each is a failure.
    pub problems: Vec<String>,
}

impl Observed {
    /// What a compiled set decided, its rules named by their ids, with its compile
    /// warnings and no problem.
    pub fn of_compiled(
        set: &cordon_engine::PolicySet,
        decision: &cordon_engine::Decision,
    ) -> Observed {
        let name =
            |rule: Option<cordon_engine::RuleRef>| rule.map(|rule| set.rule_id(rule).to_string());
        Observed {
            allowed: decision.allowed,
            status: decision.status,
            policy: name(decision.policy),
            audit: name(decision.audit),
            dry_run_allowed: decision.dry_run.allowed,
            dry_run_policy: name(decision.dry_run.rule),
            identity: Some(decision.identity.name().to_string()),
            warnings: set
                .warnings()
                .iter()
                .map(|warning| warning.message.clone())
                .collect(),
            problems: Vec::new(),
        }
    }
}

/// One error a rejected policy set was refused with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `namespace/name` of the policy, when the engine reports it apart; otherwise the
    /// case's `error.policy` must appear in [`Rejection::message`].
    pub policy: Option<String>,
    /// The field's JSON path, when the engine reports it apart; otherwise the case's
    /// `error.field` must appear in [`Rejection::message`].
    pub field: Option<String>,
    /// The message.
    pub message: String,
}

impl Rejection {
    /// Whether this error is the one `expected` describes.
    pub fn matches(&self, expected: &ExpectError) -> bool {
        let message = self.message.to_lowercase();
        let mentions = |text: &str| message.contains(&text.to_lowercase());
        self.policy.as_deref().map_or_else(
            || mentions(&expected.policy),
            |policy| policy == expected.policy,
        ) && self.field.as_deref().map_or_else(
            || mentions(&expected.field),
            |field| field == expected.field,
        ) && mentions(&expected.contains)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.policy.as_deref().unwrap_or("?"),
            self.field.as_deref().unwrap_or("?"),
            self.message
        )
    }
}

/// One case run on one engine, with every problem found (none when it passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The corpus file.
    pub file: String,
    /// The case.
    pub case: String,
    /// The problems; empty when the case passed.
    pub problems: Vec<String>,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} :: {}", self.file, self.case)?;
        for problem in &self.problems {
            write!(f, "\n    {problem}")?;
        }
        Ok(())
    }
}

/// What one engine did with a corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The engine's name.
    pub engine: String,
    /// The name filter in effect.
    pub filter: Option<String>,
    /// The cases run, by file (a file whose cases were all filtered out is absent).
    pub ran: BTreeMap<String, usize>,
    /// The cases the filter left out.
    pub filtered_out: usize,
    /// Every case run, in corpus order.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// The cases that failed, in corpus order.
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|result| !result.passed())
    }

    /// The number of cases run.
    pub fn total(&self) -> usize {
        self.ran.values().sum()
    }

    /// `Ok` with a one-line summary when every case passed and the run was complete;
    /// otherwise every failure, one case after another.
    ///
    /// Complete means: at least one case ran; without a filter, the cases run in every
    /// file are exactly the counts `manifest` pins (when given); and no filter is set
    /// when the `CI` environment variable is, so a filter left in a CI configuration
    /// fails instead of testing less.
    pub fn check(&self, manifest: Option<&Manifest>) -> Result<String, String> {
        let total = self.total();
        let mut problems = Vec::new();
        if total == 0 {
            problems.push(format!("{}: no corpus case ran", self.engine));
        }
        match (&self.filter, manifest) {
            (None, Some(manifest)) => problems.extend(
                manifest
                    .compare(
                        self.ran.iter().map(|(file, count)| (file.as_str(), *count)),
                        "run",
                    )
                    .into_iter()
                    .map(|problem| format!("{}: {problem}", self.engine)),
            ),
            (Some(filter), _) if std::env::var_os("CI").is_some() => problems.push(format!(
                "{}: {FILTER_VARIABLE}=`{filter}` is set in CI: {total} cases ran, {} left out",
                self.engine, self.filtered_out
            )),
            _ => {}
        }
        let summary = format!(
            "{}: {total} corpus cases run, {} failed{}",
            self.engine,
            self.failures().count(),
            match &self.filter {
                Some(filter) => format!(
                    " ({FILTER_VARIABLE}=`{filter}` left out {})",
                    self.filtered_out
                ),
                None => String::new(),
            }
        );
        if problems.is_empty() && self.failures().next().is_none() {
            return Ok(summary);
        }
        let mut message = summary;
        for problem in problems {
            message.push('\n');
            message.push_str(&problem);
        }
        for failure in self.failures() {
            message.push('\n');
            message.push_str(&failure.to_string());
        }
        Err(message)
    }
}

/// Runs every case `filter` selects on `engine`, in corpus order, and gathers every
/// failure.
pub fn run<E: Engine + ?Sized>(corpus: &Corpus, filter: &Filter, engine: &mut E) -> Report {
    let mut report = Report {
        engine: engine.name().to_string(),
        filter: filter.substring().map(str::to_string),
        ..Report::default()
    };
    for entry in corpus.cases() {
        if !filter.matches(entry.name()) {
            report.filtered_out += 1;
            continue;
        }
        *report.ran.entry(entry.file.name.clone()).or_default() += 1;
        let problems = match engine.run(&entry) {
            Ok(outcome) => compare(entry.expect(), &outcome, engine.reports_identity()),
            Err(error) => vec![format!("could not run: {error}")],
        };
        report.results.push(CaseResult {
            file: entry.file.name.clone(),
            case: entry.name().to_string(),
            problems,
        });
    }
    report
}

/// Every way `outcome` differs from `expect`.
pub fn compare(expect: &Expect, outcome: &Outcome, reports_identity: bool) -> Vec<String> {
    match (expect, outcome) {
        (Expect::Error(expected), Outcome::Rejected(errors)) => {
            if errors.iter().any(|error| error.matches(expected)) {
                Vec::new()
            } else {
                let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
                vec![format!(
                    "expected the error {} {}: …{}…, got [{}]",
                    expected.policy,
                    expected.field,
                    expected.contains,
                    found.join("; ")
                )]
            }
        }
        (Expect::Error(expected), Outcome::Decided(observed)) => vec![format!(
            "expected the error {} {}: …{}…, but the policies compiled and {} the request",
            expected.policy,
            expected.field,
            expected.contains,
            if observed.allowed {
                "allowed"
            } else {
                "denied"
            }
        )],
        (Expect::Error(expected), Outcome::Accepted) => vec![format!(
            "expected the error {} {}: …{}…, but the policies compiled",
            expected.policy, expected.field, expected.contains,
        )],
        (Expect::Decision(_), Outcome::Accepted) => {
            vec!["the engine compiled the policies but decided nothing".to_string()]
        }
        (Expect::Decision(_), Outcome::Rejected(errors)) => {
            let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
            vec![format!("the policies were rejected: {}", found.join("; "))]
        }
        (Expect::Decision(expected), Outcome::Decided(observed)) => {
            decision_problems(expected, observed, reports_identity)
        }
    }
}

fn decision_problems(
    expected: &ExpectDecision,
    observed: &Observed,
    reports_identity: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let status = expected.expected_status();
    if observed.allowed != expected.decision.allowed() || observed.status != status {
        problems.push(format!(
            "expected {} ({status}), got {} ({}) by {:?}",
            expected.decision.name(),
            Decision::of(observed.allowed).name(),
            observed.status,
            observed.policy
        ));
    }
    if let Some(policy) = &expected.policy {
        if observed.policy != *policy {
            problems.push(format!(
                "expected deciding policy {policy:?}, got {:?}",
                observed.policy
            ));
        }
    }
    if let Some(audit) = &expected.audit {
        if observed.audit != *audit {
            problems.push(format!(
                "expected audit {audit:?}, got {:?}",
                observed.audit
            ));
        }
    }
    if let Some(dry_run) = &expected.dry_run {
        let policy_differs = dry_run
            .policy
            .as_ref()
            .is_some_and(|policy| observed.dry_run_policy != *policy);
        if observed.dry_run_allowed != dry_run.decision.allowed() || policy_differs {
            problems.push(format!(
                "expected dry-run {} by {}, got {} by {:?}",
                dry_run.decision.name(),
                match &dry_run.policy {
                    Some(policy) => format!("{policy:?}"),
                    None => "any rule".to_string(),
                },
                Decision::of(observed.dry_run_allowed).name(),
                observed.dry_run_policy
            ));
        }
    }
    if let Some(identity) = expected.identity {
        if reports_identity && observed.identity.as_deref() != Some(identity.name()) {
            problems.push(format!(
                "expected identity {}, got {:?}",
                identity.name(),
                observed.identity
            ));
        }
    }
    if let Some(warning) = &expected.warning {
        let wanted = warning.to_lowercase();
        if !observed
            .warnings
            .iter()
            .any(|found| found.to_lowercase().contains(&wanted))
        {
            problems.push(format!(
                "expected a warning containing `{warning}`, got {:?}",
                observed.warnings
            ));
        }
    }
    problems.extend(observed.problems.iter().cloned());
    problems
}
