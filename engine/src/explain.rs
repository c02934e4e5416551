//! Why a request was decided as it was: every applicable rule with its outcome and, for a
//! rule that did not match, the fields that failed and what the request had.
//!
//! An explanation is read off the same evaluation: [`PolicySet::explain`] runs
//! [`PolicySet::evaluate`] and then asks, for each field of each rule, whether the field's
//! value set matched in that evaluation. It cannot disagree with the decision.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::compile::PolicySet;
use crate::evaluate::{Decision, Scratch};
use crate::model::{Action, Attribute, Field, Matcher, Rule};
use crate::path::normalize;
use crate::request::Request;

/// The explanation of one decision.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The decision, exactly as [`PolicySet::evaluate`] returns it.
    pub decision: Decision,
    /// The request's attributes as the engine saw them.
    pub seen: Seen,
    /// Every rule of the applicable policies, in decision order (DENY and AUDIT and ALLOW
    /// rules alike, dry-run ones included), with its outcome. Empty when the request was
    /// refused before any rule was evaluated (a rejected path, headers over the limit).
    pub rules: Vec<RuleOutcome>,
}

/// The attributes of a request as the engine matched them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The peer's URI SAN, as matched (a string; `None` for plaintext).
    pub peer: Option<String>,
    /// The path after normalization, without query; `None` when absent or rejected.
    pub path: Option<String>,
    /// The mesh trust domain followed by its aliases: the names a principal written with
    /// `cluster.local` (or any of them) stands for.
    pub trust_domains: Vec<String>,
}

/// One rule's outcome.
#[derive(Debug, Clone)]
pub struct RuleOutcome {
    /// Istio's rule id, `ns[<ns>]-policy[<name>]-rule[<i>]`.
    pub id: String,
    /// The policy's action.
    pub action: Action,
    /// Whether the policy is dry-run.
    pub dry_run: bool,
    /// Whether the rule matched.
    pub matched: bool,
    /// For a rule that did not match, every field that failed, in policy order (for a
    /// `from` or `to` list none of whose entries matched, the failing fields of each
    /// entry). The first is the one to read first.
    pub failures: Vec<FieldFailure>,
}

/// A field that did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFailure {
    /// JSON path of the field in its policy (`spec.rules[0].from[0].source.principals`).
    pub location: String,
    /// Whether it is a `not*`/`notValues` field (it failed because a value matched).
    pub negated: bool,
    /// What the request had for the attribute, as the engine reads it (empty: nothing).
    pub request_has: Vec<String>,
    /// The field's values as written in the policy.
    pub rule_wants: Vec<String>,
}

impl FieldFailure {
    /// One line: `from[0].source.principals: request has [..], rule wants [..]`.
    pub fn describe(&self) -> String {
        let has = if self.request_has.is_empty() {
            "nothing".to_string()
        } else {
            alloc::format!("{:?}", self.request_has)
        };
        let verb = if self.negated {
            "rule refuses"
        } else {
            "rule wants"
        };
        alloc::format!(
            "{}: request has {has}, {verb} {:?}",
            self.location,
            self.rule_wants
        )
    }
}

impl RuleOutcome {
    /// How far the rule is from matching: its number of failing fields.
    pub fn distance(&self) -> usize {
        self.failures.len()
    }
}

impl PolicySet {
    /// Decides `request` and explains the decision (see the module documentation).
    pub fn explain(&self, request: &Request<'_>, scratch: &mut Scratch) -> Explanation {
        let decision = self.evaluate(request, scratch);
        let mut buffer = String::new();
        let path = request.path.and_then(|raw| {
            normalize(raw, self.options.path_normalization, &mut buffer)
                .ok()
                .map(ToString::to_string)
        });
        let seen = Seen {
            peer: request.peer_identity.map(ToString::to_string),
            path: path.clone(),
            trust_domains: crate::identity::trust_domain_bundle(
                self.options.trust_domain.as_deref(),
                &self.options.trust_domain_aliases,
            ),
        };
        let refused = !decision.reason.rules_evaluated();
        let mut rules = Vec::new();
        if !refused {
            for (info, (position, field_sets)) in self.rules.iter().zip(&self.rule_fields) {
                let Some(rule) = self
                    .policies
                    .get(*position as usize)
                    .and_then(|policy| policy.rules.get(info.rule_index))
                else {
                    continue;
                };
                let field_ok = |index: usize, field: &Field| {
                    let stamped = field_sets.get(index).is_some_and(|id| scratch.matched(*id));
                    stamped != field.negated
                };
                let (matched, failing) = rule_outcome(rule, &field_ok);
                let failures = failing
                    .into_iter()
                    .map(|field| failure(field, request, path.as_deref()))
                    .collect();
                rules.push(RuleOutcome {
                    id: info.id.clone(),
                    action: info.role.action,
                    dry_run: info.role.dry_run,
                    matched,
                    failures,
                });
            }
        }
        Explanation {
            decision,
            seen,
            rules,
        }
    }
}

/// Whether a rule matches given each field's outcome (`field_ok(index, field)`, fields
/// numbered in `from`, `to`, `when` order), and the fields that failed.
fn rule_outcome<'r>(
    rule: &'r Rule,
    field_ok: &dyn Fn(usize, &Field) -> bool,
) -> (bool, Vec<&'r Field>) {
    let mut index = 0usize;
    let mut failing = Vec::new();
    let mut part = |clauses: &'r [crate::model::Clause], any: bool| -> bool {
        let mut part_failing = Vec::new();
        let mut outcomes = Vec::new();
        for clause in clauses {
            let mut clause_ok = true;
            for field in &clause.fields {
                if !field_ok(index, field) {
                    clause_ok = false;
                    part_failing.push(field);
                }
                index += 1;
            }
            outcomes.push(clause_ok);
        }
        let ok = if any {
            clauses.is_empty() || outcomes.contains(&true)
        } else {
            !outcomes.contains(&false)
        };
        if !ok {
            failing.extend(part_failing);
        }
        ok
    };
    let from = part(&rule.from, true);
    let to = part(&rule.to, true);
    let when = part(&rule.when, false);
    (from && to && when, failing)
}

fn failure(field: &Field, request: &Request<'_>, path: Option<&str>) -> FieldFailure {
    let request_has = match &field.attribute {
        Attribute::Principal
        | Attribute::Namespace
        | Attribute::ServiceAccount
        | Attribute::TrustDomain => request
            .peer_identity
            .map(ToString::to_string)
            .into_iter()
            .collect(),
        attribute => crate::reference::attribute_values(attribute, request, path),
    };
    FieldFailure {
        location: field.location.clone(),
        negated: field.negated,
        request_has,
        rule_wants: field.values.iter().map(Matcher::to_istio).collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::compile::Options;
    use crate::traffic::TrafficRecord;
    use serde_json::json;

    #[test]
    fn a_denial_names_the_failing_fields_of_each_rule() {
        let policies = [json!({
            "metadata": {"name": "credits", "namespace": "finance"},
            "spec": {"rules": [
                {"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/order-engine"]}}],
                 "to": [{"operation": {"methods": ["POST"]}}]},
                {"to": [{"operation": {"methods": ["GET"]}}],
                 "when": [{"key": "request.auth.claims[groups]", "values": ["admin"]}]}
            ]}
        })];
        let set = PolicySet::compile(&policies, Options::default()).unwrap();
        let record = TrafficRecord::from_json(&json!({
            "source": {"principal": "spiffe://cluster.local/ns/shop/sa/frontend"},
            "request": {"method": "GET", "path": "/v1/credits/../credits",
                        "auth": {"claims": {"iss": "i", "sub": "s", "groups": ["group2"]}}}
        }))
        .unwrap();
        let explanation = set.explain(&record.request(), &mut set.new_scratch());
        assert!(!explanation.decision.allowed);
        assert_eq!(explanation.seen.path.as_deref(), Some("/v1/credits"));
        assert_eq!(explanation.rules.len(), 2);
        let first = &explanation.rules[0];
        assert!(!first.matched);
        assert_eq!(first.failures.len(), 2);
        assert_eq!(
            first.failures[0].describe(),
            "spec.rules[0].from[0].source.principals: request has [\"spiffe://cluster.local/ns/shop/sa/frontend\"], rule wants [\"cluster.local/ns/shop/sa/order-engine\"]"
        );
        let second = &explanation.rules[1];
        assert_eq!(second.distance(), 1);
        assert_eq!(
            second.failures[0].describe(),
            "spec.rules[1].when[0].values: request has [\"group2\"], rule wants [\"admin\"]"
        );
    }
}
