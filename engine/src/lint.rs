//! How broad an ALLOW policy's grants are: the findings `cordon audit` reports as
//! over-broad and `cordon check` warns about, written once.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::model::{Action, Attribute, Field, Matcher, Policy};

/// The exact lints, on `diff`'s analysis: rules that never match, ALLOW rules a DENY rule
/// always overrides, rules other rules of the same action cover, and policies whose
/// selector no given workload has.
pub use crate::diff::lints::{rule_findings, unselected, RuleFinding, RuleIssue, MAX_LINT_RULES};
use crate::pattern::{PathPattern, StringPattern, TemplateSegment};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Tidy up.
    Low,
    /// Fix soon.
    Medium,
    /// Fix or investigate now.
    High,
}

/// A grant broader than least privilege.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breadth {
    /// How much it matters.
    pub severity: Severity,
    /// Index of the rule in the policy.
    pub rule: usize,
    /// JSON path of the rule, clause or value.
    pub field: String,
    /// The value as written, when the finding is about one value.
    pub value: Option<String>,
    /// What is broad, for people.
    pub message: String,
}

/// The over-broad grants of one ALLOW policy (none for other actions and for policies a
/// sidecar skips).
pub fn breadth(policy: &Policy) -> Vec<Breadth> {
    let mut found = Vec::new();
    if policy.action != Action::Allow || policy.targets_gateway {
        return found;
    }
    let mut add = |severity, rule, field: String, value: Option<String>, message: String| {
        found.push(Breadth {
            severity,
            rule,
            field,
            value,
            message,
        });
    };
    for (rule_index, rule) in policy.rules.iter().enumerate() {
        let base = format!("spec.rules[{rule_index}]");
        if rule.from.is_empty() {
            add(
                Severity::High,
                rule_index,
                base.clone(),
                None,
                "ALLOW rule without `from`: any caller, with or without an identity, may use what it allows".to_string(),
            );
        }
        if rule.to.is_empty() {
            add(
                Severity::Medium,
                rule_index,
                base.clone(),
                None,
                "ALLOW rule without `to`: any method on any path".to_string(),
            );
        }
        for (clause_index, clause) in rule.from.iter().enumerate() {
            let positive_identity = clause
                .fields
                .iter()
                .any(|f| !f.negated && crate::partial::is_identity(&f.attribute));
            let only_negative = clause.fields.iter().all(|f| f.negated);
            let location = format!("{base}.from[{clause_index}].source");
            if only_negative {
                add(
                    Severity::High,
                    rule_index,
                    location,
                    None,
                    "source only excludes (`not…` fields): everyone else matches, including callers without an identity".to_string(),
                );
            } else if !positive_identity {
                add(
                    Severity::Medium,
                    rule_index,
                    location,
                    None,
                    "source names no workload identity (only request principals or IP blocks): any workload may call".to_string(),
                );
            }
            for field in &clause.fields {
                source_breadth(field, rule_index, &mut add);
            }
        }
        for clause in &rule.to {
            for field in clause.fields.iter().filter(|field| !field.negated) {
                for (position, matcher) in field.values.iter().enumerate() {
                    let location = format!("{}[{position}]", field.location);
                    let text = matcher.to_istio();
                    let message = match (&field.attribute, matcher) {
                        (
                            Attribute::Path,
                            Matcher::Path(PathPattern::Plain(StringPattern::Presence)),
                        ) => Some((Severity::Medium, "path `*`: every path".to_string())),
                        (Attribute::Path, Matcher::Path(PathPattern::Template(segments)))
                            if segments.last() == Some(&TemplateSegment::Rest) =>
                        {
                            Some((
                                Severity::Medium,
                                format!("path `{text}`: everything below the prefix, however deep"),
                            ))
                        }
                        (
                            Attribute::Path,
                            Matcher::Path(PathPattern::Plain(
                                StringPattern::Prefix(_) | StringPattern::Suffix(_),
                            )),
                        ) => Some((
                            Severity::Low,
                            format!(
                                "path `{text}`: a prefix or suffix match, broader than a template"
                            ),
                        )),
                        (Attribute::Method, Matcher::Str(StringPattern::Presence)) => {
                            Some((Severity::Low, "method `*`: every method".to_string()))
                        }
                        _ => None,
                    };
                    if let Some((severity, message)) = message {
                        add(severity, rule_index, location, Some(text), message);
                    }
                }
            }
        }
    }
    found
}

fn source_breadth(
    field: &Field,
    rule: usize,
    add: &mut impl FnMut(Severity, usize, String, Option<String>, String),
) {
    if field.negated {
        return;
    }
    for (position, matcher) in field.values.iter().enumerate() {
        let location = format!("{}[{position}]", field.location);
        let text = matcher.to_istio();
        let Matcher::Str(pattern) = matcher else {
            continue;
        };
        let message = match (&field.attribute, pattern) {
            (Attribute::Principal, StringPattern::Presence) => Some((
                Severity::High,
                "principal `*`: any workload with a mesh identity".to_string(),
            )),
            (Attribute::Principal, StringPattern::Prefix(_) | StringPattern::Suffix(_)) => Some((
                Severity::Medium,
                format!("principal `{text}`: a wildcard over identities, not one identity"),
            )),
            (Attribute::Namespace, StringPattern::Presence) => Some((
                Severity::High,
                "namespace `*`: any workload with a mesh identity".to_string(),
            )),
            (Attribute::Namespace, _) => Some((
                Severity::Medium,
                format!("whole-namespace grant `{text}`: every workload in it, including ones deployed later"),
            )),
            (Attribute::TrustDomain, _) => Some((
                Severity::High,
                format!("whole-trust-domain grant `{text}`: every workload of the mesh"),
            )),
            _ => None,
        };
        if let Some((severity, message)) = message {
            add(severity, rule, location, Some(text), message);
        }
    }
}
