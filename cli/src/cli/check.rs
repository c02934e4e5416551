//! `cordon check`: validate policy files, and warn about policies that are valid but
//! probably not what their author meant.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use cordon_lifecycle::sources::{load_policies, PolicySource};
use cordon_engine::model::{parse_policies, Attribute, Clause, Matcher, Policy};
use cordon_engine::path::normalize;
use cordon_engine::pattern::{PathPattern, StringPattern};
use cordon_engine::{Action, PathNormalization};
use serde_json::json;

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

/// Checks the files.
pub fn run(paths: &[PathBuf], strict: bool, format: Format) -> Result<ExitCode> {
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
    for (policy, field, message) in lint(&policies) {
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
    match format {
        Format::Json => {
            let items: Vec<_> = findings
                .iter()
                .map(|f| json!({"severity": f.severity, "file": f.file, "line": f.line, "column": f.column, "policy": f.policy, "field": f.field, "message": f.message}))
                .collect();
            println!(
                "{}",
                json!({"policies": sources.len(), "errors": error_count, "warnings": warning_count, "findings": items})
            );
        }
        _ => {
            for f in &findings {
                let field = if f.field.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", f.field)
                };
                println!(
                    "{}:{}:{}: {}: policy `{}`: {field}{}",
                    f.file, f.line, f.column, f.severity, f.policy, f.message
                );
            }
            println!(
                "{} policies checked: {error_count} errors, {warning_count} warnings",
                sources.len()
            );
        }
    }
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
fn lint(policies: &[Policy]) -> Vec<(&Policy, String, String)> {
    let mut found = Vec::new();
    for policy in policies {
        for (index, rule) in policy.rules.iter().enumerate() {
            let base = format!("spec.rules[{index}]");
            if policy.action == Action::Allow && rule.from.is_empty() {
                found.push((
                    policy,
                    base.clone(),
                    "ALLOW rule without `from`: any caller, with or without an identity, may use what it allows".to_string(),
                ));
            }
            for clause in rule.from.iter().chain(&rule.to).chain(&rule.when) {
                for field in &clause.fields {
                    lint_field(policy, field, &mut found);
                }
            }
        }
        lint_shadowed(policy, policies, &mut found);
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
        match (&field.attribute, matcher, field.negated) {
            (Attribute::Principal, Matcher::Str(StringPattern::Presence), false) => found.push((
                policy,
                location,
                "`*` principal: any workload with a mesh identity matches, which is no segmentation at all".to_string(),
            )),
            (Attribute::Path, Matcher::Path(PathPattern::Plain(pattern)), _) => {
                let text = match pattern {
                    StringPattern::Exact(text) | StringPattern::Prefix(text) => text,
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
            _ => {}
        }
    }
}

/// ALLOW rules that a DENY rule without conditions, applying to the same workloads,
/// always overrides.
fn lint_shadowed<'p>(
    policy: &'p Policy,
    policies: &'p [Policy],
    found: &mut Vec<(&'p Policy, String, String)>,
) {
    if policy.action != Action::Allow {
        return;
    }
    for deny in policies
        .iter()
        .filter(|candidate| candidate.action == Action::Deny && !candidate.dry_run)
    {
        let same_scope = (deny.namespace == policy.namespace || deny.namespace == "istio-system")
            && deny.selector.as_ref().is_none_or(|selector| {
                policy
                    .selector
                    .as_ref()
                    .is_some_and(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            });
        if !same_scope {
            continue;
        }
        for (deny_index, deny_rule) in deny.rules.iter().enumerate() {
            if !deny_rule.from.is_empty() || !deny_rule.when.is_empty() {
                continue;
            }
            for (index, rule) in policy.rules.iter().enumerate() {
                if covers(&deny_rule.to, &rule.to) {
                    found.push((
                        policy,
                        format!("spec.rules[{index}]"),
                        format!(
                            "never allows anything: {} denies every request this rule could allow",
                            deny.rule_id(deny_index)
                        ),
                    ));
                }
            }
        }
    }
}

/// Whether every request matching `allow` operations also matches `deny` operations
/// (conservatively: only method and path values are compared).
fn covers(deny: &[Clause], allow: &[Clause]) -> bool {
    if deny.is_empty() {
        return true;
    }
    if allow.is_empty() {
        return false;
    }
    allow.iter().all(|allowed| {
        deny.iter().any(|denied| {
            denied.fields.iter().all(|deny_field| {
                if deny_field.negated {
                    return false;
                }
                let Some(allow_field) = allowed
                    .fields
                    .iter()
                    .find(|field| field.attribute == deny_field.attribute && !field.negated)
                else {
                    return false;
                };
                allow_field.values.iter().all(|value| {
                    let literal = match value {
                        Matcher::Str(StringPattern::Exact(text))
                        | Matcher::Path(PathPattern::Plain(StringPattern::Exact(text))) => text,
                        _ => return false,
                    };
                    deny_field.values.iter().any(|deny_value| match deny_value {
                        Matcher::Str(pattern) => {
                            pattern.matches(literal, deny_field.attribute.folds_case())
                        }
                        Matcher::Path(pattern) => pattern.matches(literal),
                        _ => false,
                    })
                })
            })
        })
    })
}
