//! Matching one policy rule against one traffic record, value by value.
//!
//! The engine's [`PolicySet::evaluate`](cordon_engine::PolicySet::evaluate) names only the
//! rule that decided; an audit needs every rule that matched and which of each field's
//! values did. Whether a value matches is the engine's word
//! ([`cordon_engine::reference::Judge`]); this module only walks rules and records which
//! values were used. The tests check it against the engine's decisions.

use cordon_engine::model::{Attribute, Clause, Field, Matcher, Rule};
use cordon_engine::path::normalize;
use cordon_engine::reference::Judge;
use cordon_engine::{Options, PathNormalization, SpiffeId, TrafficRecord};

/// What a record offers to policy matching, computed once per record.
#[derive(Debug)]
pub struct Facts<'r> {
    record: &'r TrafficRecord,
    peer: Option<SpiffeId<'r>>,
    path: Option<String>,
    rejected: bool,
    options: Options,
}

impl<'r> Facts<'r> {
    /// The facts of a record, with its path normalized as the filter does by default.
    pub fn new(record: &'r TrafficRecord) -> Facts<'r> {
        Facts::with_normalization(record, PathNormalization::Strict)
    }

    /// The facts of a record under a path normalization.
    pub fn with_normalization(record: &'r TrafficRecord, mode: PathNormalization) -> Facts<'r> {
        let peer = record
            .request()
            .peer_identity
            .and_then(|raw| SpiffeId::parse(raw).ok());
        let mut buffer = String::new();
        let (path, rejected) = match record.path.as_deref() {
            None => (None, false),
            Some(raw) => match normalize(raw, mode, &mut buffer) {
                Ok(path) => (Some(path.to_string()), false),
                Err(_) => (None, true),
            },
        };
        Facts {
            record,
            peer,
            path,
            rejected,
            options: Options {
                path_normalization: mode,
                ..Options::default()
            },
        }
    }

    /// The verified peer identity.
    pub fn peer(&self) -> Option<&SpiffeId<'r>> {
        self.peer.as_ref()
    }

    /// The normalized path.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// Whether path normalization rejects the request (no rule is evaluated then).
    pub fn rejected(&self) -> bool {
        self.rejected
    }

    /// Whether one value of a field matches the request (the engine's judgement).
    pub fn value_matches(&self, attribute: &Attribute, matcher: &Matcher) -> bool {
        let request = self.record.request();
        Judge {
            request: &request,
            path: self.path.as_deref(),
            options: &self.options,
        }
        .value_matches(attribute, matcher)
    }

    /// Whether a field matches (any value; negated: none).
    pub fn field_matches(&self, field: &Field) -> bool {
        let request = self.record.request();
        Judge {
            request: &request,
            path: self.path.as_deref(),
            options: &self.options,
        }
        .field_matches(field)
    }

    /// Whether every field of a clause matches.
    pub fn clause_matches(&self, clause: &Clause) -> bool {
        clause.fields.iter().all(|field| self.field_matches(field))
    }

    /// Whether a rule matches: any `from`, any `to`, every `when`.
    pub fn rule_matches(&self, rule: &Rule) -> bool {
        self.rule_usage(rule, |_, _| {})
    }

    /// Whether a rule matches; when it does, calls `used(field, value)` for every positive
    /// value that matched within a matching clause. Fields are numbered as
    /// [`rule_fields`] lists them.
    pub fn rule_usage(&self, rule: &Rule, mut used: impl FnMut(usize, usize)) -> bool {
        if self.rejected {
            return false;
        }
        let from: Vec<bool> = rule.from.iter().map(|c| self.clause_matches(c)).collect();
        let to: Vec<bool> = rule.to.iter().map(|c| self.clause_matches(c)).collect();
        let matched = (from.is_empty() || from.contains(&true))
            && (to.is_empty() || to.contains(&true))
            && rule.when.iter().all(|clause| self.clause_matches(clause));
        if !matched {
            return false;
        }
        let mut number = 0usize;
        let clauses = rule
            .from
            .iter()
            .zip(from.iter().copied())
            .chain(rule.to.iter().zip(to.iter().copied()))
            .chain(rule.when.iter().map(|clause| (clause, true)));
        for (clause, clause_matched) in clauses {
            for field in &clause.fields {
                if clause_matched && !field.negated {
                    for (position, matcher) in field.values.iter().enumerate() {
                        if self.value_matches(&field.attribute, matcher) {
                            used(number, position);
                        }
                    }
                }
                number += 1;
            }
        }
        true
    }
}

/// A rule's fields in the order [`Facts::rule_usage`] numbers them: `from` clauses, `to`
/// clauses, then `when` conditions.
pub fn rule_fields(rule: &Rule) -> impl Iterator<Item = &Field> {
    rule.from
        .iter()
        .chain(&rule.to)
        .chain(&rule.when)
        .flat_map(|clause| clause.fields.iter())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use cordon_engine::model::parse_policies;
    use cordon_engine::{Action, Options, PolicySet, Workload};

    /// Every shop record: the first matching DENY and ALLOW rules by this matcher are the
    /// engine's deciding rules.
    #[test]
    fn agrees_with_the_engine_on_the_shop_example() {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/shop");
        let policies: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(root.join("policies.json")).unwrap())
                .unwrap();
        let (parsed, _, errors) = parse_policies(&policies);
        assert!(errors.is_empty());
        let traffic = std::fs::read_to_string(root.join("traffic.jsonl")).unwrap();
        for line in traffic.lines() {
            let record = TrafficRecord::from_json(&serde_json::from_str(line).unwrap()).unwrap();
            let options = Options {
                workload: Workload {
                    namespace: record.destination_namespace.clone(),
                    labels: record.destination_labels.clone(),
                },
                ..Options::default()
            };
            let set = PolicySet::compile(&policies, options.clone()).unwrap();
            let decision = set.evaluate(&record.request(), &mut set.new_scratch());
            let facts = Facts::new(&record);
            let first = |action: Action| {
                parsed
                    .iter()
                    .filter(|p| {
                        p.action == action
                            && !p.dry_run
                            && p.applies_to(
                                options.workload.namespace.as_deref(),
                                &options.workload.labels,
                                "istio-system",
                            )
                    })
                    .flat_map(|p| p.rules.iter().enumerate().map(move |(i, r)| (p, i, r)))
                    .find(|(_, _, rule)| facts.rule_matches(rule))
                    .map(|(p, i, _)| p.rule_id(i))
            };
            let deny = first(Action::Deny);
            let allow = first(Action::Allow);
            let engine = decision.policy.map(|rule| set.rule_id(rule).to_string());
            let mine = if facts.rejected() {
                None
            } else {
                deny.or(allow)
            };
            assert_eq!(mine, engine, "{line}");
            let audit = decision.audit.map(|rule| set.rule_id(rule).to_string());
            assert_eq!(
                if facts.rejected() {
                    None
                } else {
                    first(Action::Audit)
                },
                audit
            );
        }
    }

    /// Every corpus case without special options: the first matching DENY, ALLOW and
    /// AUDIT rules by this matcher are the ones the engine names.
    #[test]
    fn agrees_with_the_engine_on_the_corpus() {
        let (corpus, _) = cordon_corpus::Corpus::load_pinned(&cordon_corpus::corpus_dir()).unwrap();
        let mut compared = 0;
        for entry in corpus.cases() {
            {
                let Some(request) = entry.request() else {
                    continue;
                };
                if entry.sets_options() {
                    continue;
                }
                let policies = entry.policies().to_vec();
                // Every decision case's request and policies are valid: the engine's corpus
                // test checks that, so a failure here is this matcher's.
                let record = TrafficRecord::from_json(request).unwrap();
                let options = Options {
                    workload: record.workload(),
                    ..Options::default()
                };
                let set = PolicySet::compile(&policies, options.clone()).unwrap();
                let (parsed, _, _) = parse_policies(&policies);
                let decision = set.evaluate(&record.request(), &mut set.new_scratch());
                let facts = Facts::new(&record);
                let first = |action: Action| {
                    parsed
                        .iter()
                        .filter(|p| {
                            p.action == action
                                && !p.dry_run
                                && !p.targets_gateway
                                && p.applies_to(
                                    options.workload.namespace.as_deref(),
                                    &options.workload.labels,
                                    "istio-system",
                                )
                        })
                        .flat_map(|p| p.rules.iter().enumerate().map(move |(i, r)| (p, i, r)))
                        .find(|(_, _, rule)| facts.rule_matches(rule))
                        .map(|(p, i, _)| p.rule_id(i))
                };
                if !decision.reason.rules_evaluated() || facts.rejected() {
                    continue;
                }
                let label = entry.label();
                let engine = decision.policy.map(|rule| set.rule_id(rule).to_string());
                assert_eq!(
                    first(Action::Deny).or_else(|| first(Action::Allow)),
                    engine,
                    "{label}"
                );
                let audit = decision.audit.map(|rule| set.rule_id(rule).to_string());
                assert_eq!(first(Action::Audit), audit, "{label}");
                compared += 1;
            }
        }
        assert!(compared > 300, "{compared}");
    }

    #[test]
    fn usage_names_the_matching_values() {
        let policy = serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"rules": [{
                "from": [{"source": {"principals": ["td/ns/a/sa/x", "td/ns/a/sa/y"]}},
                         {"source": {"namespaces": ["b"]}}],
                "to": [{"operation": {"methods": ["GET", "PUT"], "paths": ["/a/{*}", "/b"]}}]
            }]}
        });
        let (parsed, _, errors) = parse_policies(&[policy]);
        assert!(errors.is_empty());
        let rule = &parsed[0].rules[0];
        let record = TrafficRecord::from_json(&serde_json::json!({
            "source": {"principal": "spiffe://td/ns/a/sa/y"},
            "request": {"method": "GET", "path": "/a/7?q"}
        }))
        .unwrap();
        let facts = Facts::new(&record);
        let mut used = Vec::new();
        assert!(facts.rule_usage(rule, |field, value| used.push((field, value))));
        // principals[1], methods[0], paths[0]; the namespaces clause did not match.
        assert_eq!(used, vec![(0, 1), (2, 0), (3, 0)]);
        let fields: Vec<&str> = rule_fields(rule).map(|f| f.location.as_str()).collect();
        assert_eq!(fields[3], "spec.rules[0].to[0].operation.paths");
    }
}
