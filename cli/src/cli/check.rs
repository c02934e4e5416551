//! `cordon check`: validate policy files, and warn about policies that are valid but
//! probably not what their author meant.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use cordon_engine::model::{parse_policies, Attribute, Clause, Field, Matcher, Policy, Rule};
use cordon_engine::path::normalize;
use cordon_engine::pattern::{PathPattern, StringPattern};
use cordon_engine::relation;
use cordon_engine::{Action, PathNormalization};
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
fn lint(policies: &[Policy]) -> Vec<(&Policy, String, String)> {
    let mut found = Vec::new();
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

/// ALLOW rules that a DENY rule applying to the same workloads always overrides: every
/// request the ALLOW rule matches, the DENY rule matches too ([`rule_covers`]).
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
            for (index, rule) in policy.rules.iter().enumerate() {
                if rule_covers(deny_rule, rule) {
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

/// Whether every request `allow` matches, `deny` matches too. An ALLOW rule matches through
/// one `from` clause, one `to` clause and every `when` condition; for each such choice the
/// DENY rule must match through its own clauses, each of its fields implied by a field the
/// ALLOW rule requires. Conservative: `false` when containment is not certain.
fn rule_covers(deny: &Rule, allow: &Rule) -> bool {
    let conditions: Vec<&Field> = allow
        .when
        .iter()
        .flat_map(|clause| &clause.fields)
        .collect();
    choices(&allow.from).iter().all(|from| {
        choices(&allow.to).iter().all(|to| {
            let known: Vec<&Field> = from.iter().chain(to).chain(&conditions).copied().collect();
            some_clause_implied(&deny.from, &known)
                && some_clause_implied(&deny.to, &known)
                && deny.when.iter().all(|clause| implied(clause, &known))
        })
    })
}

/// The ways a list of clauses can be satisfied: one clause's fields each (an empty list
/// asks nothing).
fn choices(clauses: &[Clause]) -> Vec<Vec<&Field>> {
    if clauses.is_empty() {
        vec![Vec::new()]
    } else {
        clauses
            .iter()
            .map(|clause| clause.fields.iter().collect())
            .collect()
    }
}

/// Whether a request with the `known` fields satisfies every field of `clause`.
fn implied(clause: &Clause, known: &[&Field]) -> bool {
    clause
        .fields
        .iter()
        .all(|field| known.iter().any(|fact| implies(fact, field)))
}

/// Whether it satisfies one of `clauses` (an empty list asks nothing).
fn some_clause_implied(clauses: &[Clause], known: &[&Field]) -> bool {
    clauses.is_empty() || clauses.iter().any(|clause| implied(clause, known))
}

/// Whether a request that satisfies `fact` (a field of the ALLOW rule) always satisfies
/// `field` (a field of the DENY rule), by the engine's value relations.
fn implies(fact: &Field, field: &Field) -> bool {
    if fact.attribute != field.attribute {
        return false;
    }
    let fold = field.attribute.folds_case();
    // Principals, trust domains and request principals are matched after rewriting (trust
    // domain aliases; `iss/sub` split at the last `/`): only equal values are sure to agree.
    let rewritten = matches!(
        field.attribute,
        Attribute::Principal | Attribute::TrustDomain | Attribute::RequestPrincipal
    );
    let within = |inner: &Matcher, outers: &[Matcher]| {
        outers
            .iter()
            .any(|outer| outer == inner || (!rewritten && relation::covers(outer, inner, fold)))
    };
    match (fact.negated, field.negated) {
        // The value is one of the fact's: each of those is one of the field's.
        (false, false) => fact.values.iter().all(|value| within(value, &field.values)),
        // The value is none of the fact's: the fact excludes all the field excludes.
        (true, true) => field.values.iter().all(|value| within(value, &fact.values)),
        // The value is one of the fact's, none of which the field excludes (for an
        // attribute with one value per request: a principal may hold several `/ns/` and
        // `/sa/` segments).
        (false, true) => {
            !rewritten
                && !field.attribute.is_multi_valued()
                && !matches!(
                    field.attribute,
                    Attribute::Namespace | Attribute::ServiceAccount
                )
                && fact.values.iter().all(|value| {
                    field
                        .values
                        .iter()
                        .all(|excluded| !relation::overlaps(value, excluded, fold))
                })
        }
        (true, false) => false,
    }
}
