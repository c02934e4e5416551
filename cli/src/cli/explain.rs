//! `cordon explain`: why one request is allowed or denied, rule by rule.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use cordon_engine::explain::{Explanation, RuleOutcome};
use cordon_engine::{Action, PolicySet, TrafficRecord};
use cordon_host::mesh::MeshConfig;
use serde_json::{json, Map, Value};

use super::common::{load_valid_policies, read_traffic};
use super::term::stdout;
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

/// Explains one request, under the mesh's settings (`--config`: its options, and its
/// policies before those of `--policy`).
pub fn run(
    policy: &[PathBuf],
    source: RequestSource<'_>,
    format: Format,
    mesh: &MeshConfig,
) -> Result<ExitCode> {
    let policies = mesh.with_policies(if policy.is_empty() {
        Vec::new()
    } else {
        load_valid_policies(policy)?
    });
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
    let set = PolicySet::compile(&policies, mesh.options_for(record.workload()))
        .map_err(|error| anyhow!("{error}"))?;
    let explanation = set.explain(&record.request(), &mut set.new_scratch());
    let name =
        |rule: Option<cordon_engine::RuleRef>| rule.map(|rule| set.rule_id(rule).to_string());
    let nearest = nearest_allow(&explanation);
    let mut out = stdout();
    match format {
        Format::Json => {
            let mut document = json!({
                "decision": if explanation.decision.allowed { "allow" } else { "deny" },
                "status": explanation.decision.status,
                "reason": explanation.decision.reason.name(),
                "policy": name(explanation.decision.policy),
                "audit": name(explanation.decision.audit),
                "identity": explanation.decision.identity.name(),
            });
            if let Some(fields) = document.as_object_mut() {
                fields.extend(explanation_json(&explanation));
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
        }
        Format::Text => {
            let decision = &explanation.decision;
            writeln!(
                out,
                "decision: {} ({}, {})",
                if decision.allowed { "allow" } else { "deny" },
                decision.status,
                decision.reason.name()
            )?;
            if let Some(rule) = name(decision.policy) {
                writeln!(out, "decided by: {rule}")?;
            }
            if let Some(rule) = name(decision.audit) {
                writeln!(out, "audited by: {rule}")?;
            }
            writeln!(
                out,
                "peer: {} (identity {})",
                explanation
                    .seen
                    .peer
                    .as_deref()
                    .unwrap_or("none (plaintext)"),
                decision.identity.name()
            )?;
            writeln!(
                out,
                "path as matched: {}",
                explanation.seen.path.as_deref().unwrap_or("(none)")
            )?;
            writeln!(
                out,
                "trust domains: {}",
                explanation.seen.trust_domains.join(", ")
            )?;
            if !decision.allowed && !nearest.is_empty() {
                writeln!(out, "nearest ALLOW rules:")?;
                for rule in &nearest {
                    write_rule(&mut out, rule)?;
                }
            }
            if explanation.rules.is_empty() {
                writeln!(out, "rules: none evaluated")?;
            } else {
                writeln!(out, "rules:")?;
                for rule in &explanation.rules {
                    write_rule(&mut out, rule)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// What `explain --format json` says beside the decision: `seen` (the attributes as the
/// engine matched them), `nearest_allow` and every applicable rule with its failing
/// fields. `simulate --explain` adds the same object to each line.
pub fn explanation_json(explanation: &Explanation) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        "seen".into(),
        json!({
            "peer": explanation.seen.peer,
            "path": explanation.seen.path,
            "trust_domains": explanation.seen.trust_domains,
        }),
    );
    fields.insert(
        "nearest_allow".into(),
        nearest_allow(explanation)
            .iter()
            .map(|rule| Value::from(rule.id.as_str()))
            .collect(),
    );
    fields.insert(
        "rules".into(),
        explanation.rules.iter().map(rule_json).collect(),
    );
    fields
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

fn write_rule(out: &mut impl Write, rule: &RuleOutcome) -> std::io::Result<()> {
    let role = format!(
        "{}{}",
        rule.action.name(),
        if rule.dry_run { " (dry-run)" } else { "" }
    );
    if rule.matched {
        writeln!(out, "  {} {role}: matches", rule.id)
    } else {
        writeln!(
            out,
            "  {} {role}: no match ({} failing field{})",
            rule.id,
            rule.distance(),
            if rule.distance() == 1 { "" } else { "s" }
        )?;
        for failure in &rule.failures {
            writeln!(out, "    {}", failure.describe())?;
        }
        Ok(())
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
