//! `cordon explain`: why one request is allowed or denied, rule by rule.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use cordon_engine::explain::{Explanation, RuleOutcome};
use cordon_engine::{Action, Options, PolicySet, TrafficRecord};
use serde_json::{json, Value};

use super::common::{load_valid_policies, read_traffic};
use super::Format;

/// Where the request to explain comes from.
pub enum RequestSource<'a> {
    /// A traffic record given inline as JSON.
    Inline(&'a str),
    /// Line `line` (1-based) of a traffic file.
    Line(&'a Path, usize),
}

/// How many of the nearest ALLOW rules a denial lists.
const NEAREST: usize = 3;

/// Explains one request.
pub fn run(policy: &[PathBuf], source: RequestSource<'_>, format: Format) -> Result<ExitCode> {
    let policies = load_valid_policies(policy)?;
    let record = match source {
        RequestSource::Inline(text) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|error| anyhow!("--request: not JSON: {error}"))?;
            TrafficRecord::from_json(&value).map_err(|error| anyhow!("--request: {error}"))?
        }
        RequestSource::Line(path, line) => read_traffic(path)?
            .into_iter()
            .find(|numbered| numbered.line == line)
            .map(|numbered| numbered.record)
            .ok_or_else(|| anyhow!("{}:{line}: no traffic record on that line", path.display()))?,
    };
    let options = Options {
        workload: record.workload(),
        ..Options::default()
    };
    let set = PolicySet::compile(&policies, options).map_err(|error| anyhow!("{error}"))?;
    let explanation = set.explain(&record.request(), &mut set.new_scratch());
    let name =
        |rule: Option<cordon_engine::RuleRef>| rule.map(|rule| set.rule_id(rule).to_string());
    let nearest = nearest_allow(&explanation);
    match format {
        Format::Json => {
            let rules: Vec<Value> = explanation.rules.iter().map(rule_json).collect();
            let out = json!({
                "decision": if explanation.decision.allowed { "allow" } else { "deny" },
                "status": explanation.decision.status,
                "reason": explanation.decision.reason.name(),
                "policy": name(explanation.decision.policy),
                "audit": name(explanation.decision.audit),
                "identity": explanation.decision.identity.name(),
                "seen": {
                    "peer": explanation.seen.peer,
                    "path": explanation.seen.path,
                    "trust_domains": explanation.seen.trust_domains,
                },
                "nearest_allow": nearest.iter().map(|rule| rule.id.clone()).collect::<Vec<_>>(),
                "rules": rules,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Text => {
            let decision = &explanation.decision;
            println!(
                "decision: {} ({}, {})",
                if decision.allowed { "allow" } else { "deny" },
                decision.status,
                decision.reason.name()
            );
            if let Some(rule) = name(decision.policy) {
                println!("decided by: {rule}");
            }
            if let Some(rule) = name(decision.audit) {
                println!("audited by: {rule}");
            }
            println!(
                "peer: {} (identity {})",
                explanation
                    .seen
                    .peer
                    .as_deref()
                    .unwrap_or("none (plaintext)"),
                decision.identity.name()
            );
            println!(
                "path as matched: {}",
                explanation.seen.path.as_deref().unwrap_or("(none)")
            );
            println!(
                "trust domains: {}",
                explanation.seen.trust_domains.join(", ")
            );
            if !decision.allowed && !nearest.is_empty() {
                println!("nearest ALLOW rules:");
                for rule in &nearest {
                    print_rule(rule);
                }
            }
            if explanation.rules.is_empty() {
                println!("rules: none evaluated");
            } else {
                println!("rules:");
                for rule in &explanation.rules {
                    print_rule(rule);
                }
            }
        }
        Format::Table | Format::Jsonl => bail!("--format: explain writes text or json"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The ALLOW rules (enforced) closest to matching: fewest failing fields first.
fn nearest_allow(explanation: &Explanation) -> Vec<&RuleOutcome> {
    let mut rules: Vec<&RuleOutcome> = explanation
        .rules
        .iter()
        .filter(|rule| rule.action == Action::Allow && !rule.dry_run && !rule.matched)
        .collect();
    rules.sort_by_key(|rule| rule.distance());
    rules.truncate(NEAREST);
    rules
}

fn print_rule(rule: &RuleOutcome) {
    let role = format!(
        "{}{}",
        rule.action.name(),
        if rule.dry_run { " (dry-run)" } else { "" }
    );
    if rule.matched {
        println!("  {} {role}: matches", rule.id);
    } else {
        println!(
            "  {} {role}: no match ({} failing field{})",
            rule.id,
            rule.distance(),
            if rule.distance() == 1 { "" } else { "s" }
        );
        for failure in &rule.failures {
            println!("    {}", failure.describe());
        }
    }
}

fn rule_json(rule: &RuleOutcome) -> Value {
    json!({
        "id": rule.id,
        "action": rule.action.name(),
        "dry_run": rule.dry_run,
        "matched": rule.matched,
        "failures": rule.failures.iter().map(|failure| json!({
            "field": failure.location,
            "negated": failure.negated,
            "request_has": failure.request_has,
            "rule_wants": failure.rule_wants,
        })).collect::<Vec<_>>(),
    })
}

/// Reads `--line N` of `--traffic`.
pub fn line_source(traffic: Option<&Path>, line: Option<usize>) -> Result<Option<(&Path, usize)>> {
    match (traffic, line) {
        (Some(path), Some(line)) => Ok(Some((path, line))),
        (None, None) => Ok(None),
        _ => Err(anyhow!("--traffic and --line go together")).context("usage"),
    }
}
