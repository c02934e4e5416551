//! Exact rule lints on the same analysis as `diff`: a rule no request matches, an ALLOW
//! rule every request of which some DENY rule denies, a rule whose requests other rules of
//! the same action all match already. Each is a question "is this formula satisfiable?"
//! asked of the search, so a finding is never a guess: when the search cannot decide (an
//! automaton search gave up, or it ran out of regions) no finding is made.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::{any, not, regions, Builder, Formula, Space};
use crate::compile::{Options, Workload};
use crate::model::{Action, Policy};
use crate::reference::applicable;

/// Sets with more enforced rules than this for one workload are not linted this way (the
/// covering check is quadratic in the rules).
pub const MAX_LINT_RULES: usize = 500;

/// What is wrong with a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleIssue {
    /// No request matches it (its conditions contradict each other).
    NeverMatches,
    /// An ALLOW rule every request of which the DENY rules of the same workloads deny;
    /// `by` names the DENY rules that share requests with it.
    OverriddenByDeny {
        /// The DENY rules that overlap it.
        by: Vec<String>,
    },
    /// Every request it matches, other rules of the same action match too; `by` names
    /// those that share requests with it (Istio rule ids).
    Covered {
        /// The rules that overlap it.
        by: Vec<String>,
    },
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFinding {
    /// [`Policy::index`] of the rule's policy.
    pub policy: usize,
    /// The rule's index in its policy.
    pub rule: usize,
    /// What is wrong.
    pub issue: RuleIssue,
}

fn satisfiable(space: &mut Space, goal: &Formula) -> bool {
    // A region left undecided (`false`) counts as satisfiable: no finding on a guess.
    !regions(space, goal, true).is_empty()
}

/// The exact rule findings for `policies` on `workloads` (a rule is judged on every
/// workload its policy applies to; a finding holds on all of them). Workloads with more
/// than [`MAX_LINT_RULES`] enforced rules are skipped; the second value counts them.
pub fn rule_findings(
    policies: &[Policy],
    base: &Options,
    workloads: &[Workload],
) -> (Vec<RuleFinding>, usize) {
    // Per rule: (seen, never matches, overridden, covered), the last two with the
    // overlapping rules.
    type Verdict = (bool, bool, Option<Vec<String>>, Option<Vec<String>>);
    let mut verdicts: BTreeMap<(usize, usize), Verdict> = BTreeMap::new();
    let mut skipped = 0;
    for workload in workloads {
        let mut options = base.clone();
        options.workload = workload.clone();
        let applied = applicable(policies, &options);
        let rule_count: usize = applied.iter().map(|policy| policy.rules.len()).sum();
        if rule_count > MAX_LINT_RULES {
            skipped += 1;
            continue;
        }
        let mut builder = Builder {
            space: Space::default(),
            options: &options,
        };
        // (policy index, rule index, action, enforced, key, formula)
        let mut rules = Vec::new();
        for policy in &applied {
            for (index, rule) in policy.rules.iter().enumerate() {
                let formula = builder.rule(rule);
                rules.push((
                    policy.index,
                    index,
                    policy.action,
                    !policy.dry_run,
                    super::rule_key(policy.action, rule),
                    formula,
                    policy.rule_id(index),
                ));
            }
        }
        let denies: Vec<(&Formula, &String)> = rules
            .iter()
            .filter(|rule| rule.2 == Action::Deny && rule.3)
            .map(|rule| (&rule.5, &rule.6))
            .collect();
        let no_deny = not(any(denies
            .iter()
            .map(|(formula, _)| (*formula).clone())
            .collect()));
        let mut space = builder.space;
        for (position, (policy, index, action, enforced, key, formula, _)) in
            rules.iter().enumerate()
        {
            let entry = verdicts.entry((*policy, *index)).or_insert((
                false,
                true,
                Some(Vec::new()),
                Some(Vec::new()),
            ));
            if !entry.0 {
                entry.1 = !satisfiable(&mut space, formula);
            }
            entry.0 = true;
            if entry.1 || !*enforced || *action == Action::Audit {
                entry.2 = None;
                entry.3 = None;
                continue;
            }
            if entry.2.is_some() && *action == Action::Allow {
                let goal = Formula::And(alloc::vec![formula.clone(), no_deny.clone()]);
                if satisfiable(&mut space, &goal) {
                    entry.2 = None;
                } else if let Some(by) = entry.2.as_mut() {
                    overlapping(&mut space, formula, &denies, by);
                }
            } else {
                entry.2 = None;
            }
            if entry.3.is_some() {
                // The others of the same action; of identical rules, only earlier ones.
                let others: Vec<(&Formula, &String)> = rules
                    .iter()
                    .enumerate()
                    .filter(|(other, rule)| {
                        *other != position
                            && rule.2 == *action
                            && rule.3
                            && (rule.4 != *key || *other < position)
                    })
                    .map(|(_, rule)| (&rule.5, &rule.6))
                    .collect();
                let rest = any(others
                    .iter()
                    .map(|(formula, _)| (*formula).clone())
                    .collect());
                let goal = Formula::And(alloc::vec![formula.clone(), not(rest)]);
                if satisfiable(&mut space, &goal) {
                    entry.3 = None;
                } else if let Some(by) = entry.3.as_mut() {
                    overlapping(&mut space, formula, &others, by);
                }
            }
        }
    }
    let mut findings = Vec::new();
    for ((policy, rule), (seen, never, overridden, covered)) in verdicts {
        if !seen {
            continue;
        }
        let issue = if never {
            RuleIssue::NeverMatches
        } else if let Some(by) = overridden {
            RuleIssue::OverriddenByDeny { by }
        } else if let Some(by) = covered {
            RuleIssue::Covered { by }
        } else {
            continue;
        };
        findings.push(RuleFinding {
            policy,
            rule,
            issue,
        });
    }
    (findings, skipped)
}

/// Adds to `by` (up to three) the ids of `rules` that share a request with `formula`.
fn overlapping(
    space: &mut Space,
    formula: &Formula,
    rules: &[(&Formula, &String)],
    by: &mut Vec<String>,
) {
    // The first fifty candidates are enough to name a few.
    for (other, id) in rules.iter().take(50) {
        if by.len() >= 3 {
            break;
        }
        let both = Formula::And(alloc::vec![formula.clone(), (*other).clone()]);
        if !by.contains(id) && satisfiable(space, &both) {
            by.push((*id).clone());
        }
    }
}

/// Policies (by [`Policy::index`]) with a selector that none of `workloads` has: in the
/// policy's namespace (any namespace for the root namespace's), every label of the
/// selector. Policies bound to gateways are not judged.
pub fn unselected(policies: &[Policy], workloads: &[Workload], root_namespace: &str) -> Vec<usize> {
    policies
        .iter()
        .filter(|policy| policy.selector.is_some() && !policy.targets_gateway)
        .filter(|policy| {
            !workloads.iter().any(|workload| {
                policy.applies_to(
                    workload.namespace.as_deref(),
                    &workload.labels,
                    root_namespace,
                )
            })
        })
        .map(|policy| policy.index)
        .collect()
}
