//! `cordon simulate`: replay recorded traffic through the `.wasm` and report what the
//! policies decide, or what changes against a baseline set (the safe-rollout question).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use cordon_engine::{PolicySet, TrafficRecord};
use cordon_host::mesh::MeshConfig;
use cordon_host::replay::{RunSettings, Runner, WasmDecision};
use serde_json::{json, Value};

use super::common::{
    identity_label, load_host, load_valid_policies, traffic_stream, workload_label, Numbered,
};
use super::explain::explanation_json;
use super::term::{stdout, Progress};

/// `--format` of `cordon simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimulateFormat {
    /// Allowed and denied counts per source identity and destination workload.
    Table,
    /// One JSON object per record, in order.
    Jsonl,
}

/// What `simulate` writes.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `--format`.
    pub format: SimulateFormat,
    /// `--explain`: each jsonl line carries its explanation.
    pub explain: bool,
}

/// The native engine's explanations, one compiled policy set per destination workload
/// (each record is judged by the policies that apply to its destination).
struct Explainer {
    policies: Vec<Value>,
    sets: Vec<(Option<String>, BTreeMap<String, String>, PolicySet)>,
}

impl Explainer {
    fn explain(&mut self, record: &TrafficRecord, mesh: &MeshConfig) -> Result<Value> {
        let found = self.sets.iter().position(|(namespace, labels, _)| {
            *namespace == record.destination_namespace && *labels == record.destination_labels
        });
        let position = match found {
            Some(position) => position,
            None => {
                let set = PolicySet::compile(&self.policies, mesh.options_for(record.workload()))
                    .map_err(|error| anyhow!("{error}"))?;
                self.sets.push((
                    record.destination_namespace.clone(),
                    record.destination_labels.clone(),
                    set,
                ));
                self.sets.len() - 1
            }
        };
        let (_, _, set) = self
            .sets
            .get(position)
            .ok_or_else(|| anyhow!("policy set vanished"))?;
        let explanation = set.explain(&record.request(), &mut set.new_scratch());
        Ok(Value::Object(explanation_json(&explanation)))
    }
}

fn verdict(allowed: bool) -> &'static str {
    if allowed {
        "allow"
    } else {
        "deny"
    }
}

fn decision_json(decision: &WasmDecision) -> Value {
    json!({
        "decision": verdict(decision.allowed),
        "status": decision.status,
        "policy": decision.policy,
        "reason": decision.reason,
        "audit": decision.audit,
        "dry_run": {"decision": verdict(decision.dry_run_allowed), "policy": decision.dry_run_policy},
        "identity": decision.identity,
    })
}

/// Replays `traffic` under `policy` (and `baseline`, when given).
pub fn run(
    policy: &[PathBuf],
    traffic: &Path,
    baseline: &[PathBuf],
    output: Output,
    fail_on_change: bool,
    wasm: Option<PathBuf>,
    mesh: &MeshConfig,
) -> Result<ExitCode> {
    let format = output.format;
    if output.explain && format != SimulateFormat::Jsonl {
        bail!("--explain adds the explanation to each line of `--format jsonl`; give that too");
    }
    let host = load_host(wasm)?;
    let policies = mesh.with_policies(load_valid_policies(policy)?);
    let mut explainer = output.explain.then(|| Explainer {
        policies: policies.clone(),
        sets: Vec::new(),
    });
    let baseline_policies = if baseline.is_empty() {
        None
    } else {
        Some(mesh.with_policies(load_valid_policies(baseline)?))
    };
    let mut runner = Runner::new(&host, policies, RunSettings::of(mesh));
    let mut baseline_runner =
        baseline_policies.map(|policies| Runner::new(&host, policies, RunSettings::of(mesh)));

    // Records streamed to the terminal show their own progress.
    let mut progress = Progress::new("records", None)
        .unless(format == SimulateFormat::Jsonl && std::io::stdout().is_terminal());
    let mut out = stdout();
    let mut counts: BTreeMap<(String, String, &'static str), usize> = BTreeMap::new();
    let mut changes: Vec<(Numbered, WasmDecision, WasmDecision)> = Vec::new();
    let mut total = 0usize;
    for numbered in traffic_stream(traffic)? {
        let numbered = numbered?;
        total += 1;
        let record = &numbered.record;
        let decision = runner.decide(record).map_err(|error| {
            anyhow::anyhow!("{}:{}: {error:#}", traffic.display(), numbered.line)
        })?;
        let before = match baseline_runner.as_mut() {
            Some(runner) => Some(runner.decide(record).map_err(|error| {
                anyhow::anyhow!("{}:{}: {error:#}", traffic.display(), numbered.line)
            })?),
            None => None,
        };
        let changed = before.as_ref().is_some_and(|before| {
            before.allowed != decision.allowed || before.status != decision.status
        });
        match format {
            SimulateFormat::Jsonl => {
                let mut line = decision_json(&decision);
                if let Some(fields) = line.as_object_mut() {
                    fields.insert("line".into(), json!(numbered.line));
                    fields.insert("source".into(), json!(identity_label(record)));
                    fields.insert("destination".into(), json!(workload_label(record)));
                    fields.insert("method".into(), json!(record.method));
                    fields.insert("path".into(), json!(record.path));
                    if let Some(before) = &before {
                        fields.insert("baseline".into(), decision_json(before));
                        fields.insert("changed".into(), json!(changed));
                    }
                    if let Some(explainer) = explainer.as_mut() {
                        let explanation = explainer.explain(record, mesh).map_err(|error| {
                            anyhow!("{}:{}: {error:#}", traffic.display(), numbered.line)
                        })?;
                        fields.insert("explanation".into(), explanation);
                    }
                }
                writeln!(out, "{line}")?;
            }
            SimulateFormat::Table => {
                *counts
                    .entry((
                        identity_label(record),
                        workload_label(record),
                        verdict(decision.allowed),
                    ))
                    .or_default() += 1;
            }
        }
        if changed {
            if let Some(before) = before {
                changes.push((numbered, before, decision));
            }
        }
        progress.tick(total);
    }
    progress.finish();
    if format == SimulateFormat::Table {
        print_table(&mut out, &counts, total)?;
        if baseline_runner.is_some() {
            writeln!(out)?;
            writeln!(
                out,
                "{} of {} requests change decision against the baseline",
                changes.len(),
                total
            )?;
            for (numbered, before, after) in &changes {
                let record = &numbered.record;
                writeln!(
                    out,
                    "  line {}: {} -> {} {} {}: {} ({}) -> {} ({}) by {}",
                    numbered.line,
                    identity_label(record),
                    workload_label(record),
                    record.method.as_deref().unwrap_or("-"),
                    record.path.as_deref().unwrap_or("-"),
                    verdict(before.allowed),
                    before.status,
                    verdict(after.allowed),
                    after.status,
                    after
                        .policy
                        .as_deref()
                        .or(before.policy.as_deref())
                        .unwrap_or("no matching ALLOW rule"),
                )?;
            }
        }
    }
    out.flush()?;
    Ok(if fail_on_change && !changes.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_table(
    out: &mut impl Write,
    counts: &BTreeMap<(String, String, &'static str), usize>,
    total: usize,
) -> Result<()> {
    let mut rows: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    for ((source, destination, decision), count) in counts {
        let row = rows
            .entry((source.as_str(), destination.as_str()))
            .or_default();
        if *decision == "allow" {
            row.0 += count;
        } else {
            row.1 += count;
        }
    }
    let width = rows
        .keys()
        .map(|(source, _)| source.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let dest_width = rows
        .keys()
        .map(|(_, destination)| destination.len())
        .max()
        .unwrap_or(11)
        .max(11);
    writeln!(
        out,
        "{:<width$}    {:<dest_width$}  {:>7}  {:>7}",
        "source", "destination", "allowed", "denied"
    )?;
    for ((source, destination), (allowed, denied)) in &rows {
        writeln!(
            out,
            "{source:<width$} -> {destination:<dest_width$}  {allowed:>7}  {denied:>7}"
        )?;
    }
    let allowed: usize = rows.values().map(|(allowed, _)| allowed).sum();
    writeln!(
        out,
        "{total} requests: {allowed} allowed, {} denied",
        total - allowed
    )?;
    Ok(())
}
