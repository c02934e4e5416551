//! `cordon check`: validate policy files, and warn about policies that are valid but
//! probably not what their author meant.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use cordon_engine::diff;
use cordon_engine::lint::{self, RuleIssue};
use cordon_engine::model::{parse_policies, Attribute, Matcher, Policy};
use cordon_engine::path::normalize;
use cordon_engine::pattern::{PathPattern, StringPattern};
use cordon_engine::{Options, PathNormalization, Workload};
use cordon_lifecycle::sources::{load_policies, PolicySource};
use serde_json::json;

use super::term::stdout;
use super::Format;

/// One finding, placed in its file.
struct Finding {
    severity: &'static str,
    file: String,
    line: usize,
    column: usize,
    policy: String,
    field: String,
    message: String,
}

/// Checks the files; `workloads` (`--workload`), when given, are the workloads that exist.
pub fn run(
    paths: &[PathBuf],
    strict: bool,
    format: Format,
    workloads: &[String],
) -> Result<ExitCode> {
    let deployed = parse_workloads(workloads)?;
    let sources = load_policies(paths).map_err(|error| anyhow::anyhow!("{error}"))?;
    let values: Vec<_> = sources.iter().map(|source| source.value.clone()).collect();
    let (policies, warnings, errors) = parse_policies(&values);
    let mut findings = Vec::new();
    let mut add =
        |severity: &'static str, index: usize, policy: &str, field: &str, message: String| {
            let (file, line, column) = place(&sources, index, field);
            findings.push(Finding {
                severity,
                file,
                line,
                column,
                policy: policy.to_string(),
                field: field.to_string(),
                message,
            });
        };
    for error in &errors {
        add(
            "error",
            error.index,
            &error.policy,
            &error.field,
            error.message.clone(),
        );
    }
    for warning in &warnings {
        add(
            "warning",
            warning.index,
            &warning.policy,
            &warning.field,
            warning.message.clone(),
        );
    }
    for (policy, field, message) in lint(&policies, deployed.as_deref()) {
        add(
            "warning",
            policy.index,
            &policy.qualified_name(),
            &field,
            message,
        );
    }
    findings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    let error_count = findings
        .iter()
        .filter(|finding| finding.severity == "error")
        .count();
    let warning_count = findings.len() - error_count;
    let mut out = stdout();
    match format {
        Format::Json => {
            let items: Vec<_> = findings
                .iter()
                .map(|f| json!({"severity": f.severity, "file": f.file, "line": f.line, "column": f.column, "policy": f.policy, "field": f.field, "message": f.message}))
                .collect();
            writeln!(
                out,
                "{}",
                json!({"policies": sources.len(), "errors": error_count, "warnings": warning_count, "findings": items})
            )?;
        }
        _ => {
            for f in &findings {
                let field = if f.field.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", f.field)
                };
                writeln!(
                    out,
                    "{}:{}:{}: {}: policy `{}`: {field}{}",
                    f.file, f.line, f.column, f.severity, f.policy, f.message
                )?;
            }
            writeln!(
                out,
                "{} policies checked: {error_count} errors, {warning_count} warnings",
                sources.len()
            )?;
        }
    }
    out.flush()?;
    Ok(if error_count > 0 {
        ExitCode::from(2)
    } else if strict && warning_count > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn place(sources: &[PolicySource], index: usize, field: &str) -> (String, usize, usize) {
    match sources.get(index) {
        Some(source) => {
            let (line, column) = source.locate(field);
            (source.file.display().to_string(), line, column)
        }
        None => (String::from("?"), 0, 0),
    }
}

/// Likely mistakes in valid policies.
fn lint<'p>(
    policies: &'p [Policy],
    deployed: Option<&[Workload]>,
) -> Vec<(&'p Policy, String, String)> {
    let mut found = Vec::new();
    exact_lints(policies, deployed, &mut found);
    for policy in policies {
        // The grants `cordon audit` calls highly over-broad (the engine's lint) are warnings.
        for broad in cordon_engine::lint::breadth(policy) {
            if broad.severity == cordon_engine::lint::Severity::High {
                found.push((policy, broad.field, broad.message));
            }
        }
        for rule in &policy.rules {
            for clause in rule.from.iter().chain(&rule.to).chain(&rule.when) {
                for field in &clause.fields {
                    lint_field(policy, field, &mut found);
                }
            }
        }
    }
    found
}

fn lint_field<'p>(
    policy: &'p Policy,
    field: &cordon_engine::model::Field,
    found: &mut Vec<(&'p Policy, String, String)>,
) {
    for (position, matcher) in field.values.iter().enumerate() {
        let location = format!("{}[{position}]", field.location);
        if let (Attribute::Path, Matcher::Path(PathPattern::Plain(pattern))) =
            (&field.attribute, matcher)
        {
            let text = match pattern {
                // A path not starting with `/` the model warns about.
                StringPattern::Exact(text) | StringPattern::Prefix(text)
                    if text.starts_with('/') =>
                {
                    text
                }
                _ => continue,
            };
            let mut buffer = String::new();
            match normalize(text, PathNormalization::Strict, &mut buffer) {
                    Ok(normalized) if normalized != text && !text.ends_with("/.") => found.push((
                        policy,
                        location,
                        format!("requests are normalized before matching, so `{text}` is seen as `{normalized}` and this value never matches; write `{normalized}`"),
                    )),
                    Err(rejection) => found.push((
                        policy,
                        location,
                        format!("`{text}` can never match: requests with such a path are rejected ({rejection})"),
                    )),
                    _ => {}
                }
        }
    }
}

/// The engine's exact lints (`cordon_engine::lint::rule_findings`, on `diff`'s analysis):
/// rules that never match, ALLOW rules the DENY rules always override, rules that other
/// rules of the same action cover; and, with `--workload`, policies whose selector no
/// workload has.
fn exact_lints<'p>(
    policies: &'p [Policy],
    deployed: Option<&[Workload]>,
    found: &mut Vec<(&'p Policy, String, String)>,
) {
    let options = Options::default();
    let all: Vec<&Policy> = policies.iter().collect();
    let targets = diff::workloads(&all, &options.root_namespace);
    let (findings, skipped) = lint::rule_findings(policies, &options, &targets);
    if skipped > 0 {
        eprintln!(
            "cordon: note: rule lints (never matching, overridden, covered) skipped for {skipped} workload(s) with more than {} rules",
            lint::MAX_LINT_RULES
        );
    }
    let by_index = |index: usize| policies.iter().find(|policy| policy.index == index);
    for finding in findings {
        let Some(policy) = by_index(finding.policy) else {
            continue;
        };
        let message = match &finding.issue {
            RuleIssue::NeverMatches => {
                "can never match: no request satisfies all of its conditions".to_string()
            }
            RuleIssue::OverriddenByDeny { by } => format!(
                "never allows anything: {} denies every request this rule could allow",
                by.join(" and ")
            ),
            RuleIssue::Covered { by } => format!(
                "redundant: every request it matches, other {} rules match too ({})",
                policy.action.name(),
                by.join(", ")
            ),
        };
        found.push((policy, format!("spec.rules[{}]", finding.rule), message));
    }
    if let Some(deployed) = deployed {
        for index in lint::unselected(policies, deployed, &options.root_namespace) {
            if let Some(policy) = by_index(index) {
                found.push((
                    policy,
                    "spec.selector".to_string(),
                    "selects no workload of the given set (--workload): the policy applies to nothing".to_string(),
                ));
            }
        }
    }
}

/// `--workload` values: `<namespace>` or `<namespace>/<key>=<value>,…`; `None` when none.
fn parse_workloads(values: &[String]) -> Result<Option<Vec<Workload>>> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for value in values {
        let (namespace, labels) = value.split_once('/').unwrap_or((value.as_str(), ""));
        if namespace.is_empty() {
            anyhow::bail!(
                "--workload `{value}`: expected <namespace> or <namespace>/<key>=<value>,…"
            );
        }
        let mut map = std::collections::BTreeMap::new();
        for pair in labels.split(',').filter(|pair| !pair.is_empty()) {
            let Some((key, label)) = pair.split_once('=') else {
                anyhow::bail!("--workload `{value}`: label `{pair}` is not key=value");
            };
            map.insert(key.to_string(), label.to_string());
        }
        out.push(Workload {
            namespace: Some(namespace.to_string()),
            labels: map,
        });
    }
    Ok(Some(out))
}
