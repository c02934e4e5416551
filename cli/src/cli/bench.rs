//! `cordon bench`: per-request latency of the hot path through Wasmtime (the shipped
//! `.wasm`) and through the native engine, and whole-replay throughput.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use cordon_engine::PolicySet;
use cordon_host::mesh::MeshConfig;
use cordon_host::replay::{exchange_with, RunSettings, Runner};
use serde_json::json;

use super::common::{load_host, load_valid_policies, read_traffic};
use super::term::stdout;
use super::Format;

struct Latency {
    median: Duration,
    p99: Duration,
    per_second: f64,
}

fn summarize(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let at = |quantile: f64| {
        let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
        samples.get(index).copied().unwrap_or_default()
    };
    let total: Duration = samples.iter().sum();
    let per_second = if total.is_zero() {
        0.0
    } else {
        samples.len() as f64 / total.as_secs_f64()
    };
    Latency {
        median: at(0.5),
        p99: at(0.99),
        per_second,
    }
}

/// Runs the benchmark.
pub fn run(
    policy: &[PathBuf],
    traffic: &Path,
    iterations: usize,
    format: Format,
    wasm: Option<PathBuf>,
    mesh: &MeshConfig,
) -> Result<ExitCode> {
    let host = load_host(wasm)?;
    let policies = mesh.with_policies(load_valid_policies(policy)?);
    let records: Vec<_> = read_traffic(traffic)?
        .into_iter()
        .map(|numbered| numbered.record)
        .collect();
    if records.is_empty() {
        return Err(anyhow!("{}: no traffic records", traffic.display()));
    }
    let passes = if iterations > 0 {
        iterations
    } else {
        (200_000 / records.len()).clamp(1, 10_000)
    };

    // Native: one compiled set per destination workload, as each sidecar holds one.
    let mut positions = BTreeMap::new();
    let mut sets: Vec<(PolicySet, cordon_engine::Scratch)> = Vec::new();
    let mut assigned = Vec::with_capacity(records.len());
    for record in &records {
        let key = (
            record.destination_namespace.clone(),
            record.destination_labels.clone(),
        );
        let position = match positions.get(&key) {
            Some(position) => *position,
            None => {
                let options = mesh.options_for(record.workload());
                let set =
                    PolicySet::compile(&policies, options).map_err(|error| anyhow!("{error}"))?;
                let scratch = set.new_scratch();
                sets.push((set, scratch));
                positions.insert(key, sets.len() - 1);
                sets.len() - 1
            }
        };
        assigned.push(position);
    }
    let requests: Vec<_> = records.iter().map(|record| record.request()).collect();
    let mut native = Vec::with_capacity(records.len() * passes);
    for _ in 0..passes {
        for (request, position) in requests.iter().zip(&assigned) {
            let Some((set, scratch)) = sets.get_mut(*position) else {
                continue;
            };
            let started = Instant::now();
            let decision = set.evaluate(request, scratch);
            native.push(started.elapsed());
            std::hint::black_box(decision);
        }
    }

    // Wasm hot path: the plugin's on_request_headers with requests prepared up front.
    let mut runner = Runner::new(&host, policies.clone(), RunSettings::of(mesh));
    let presentation = runner.settings().presentation.clone();
    let exchanges: Vec<_> = records
        .iter()
        .map(|record| exchange_with(record, &presentation))
        .collect();
    let mut wasm_samples = Vec::with_capacity(records.len() * passes);
    for _ in 0..passes {
        for (record, exchange) in records.iter().zip(&exchanges) {
            let plugin = runner.plugin_for(record)?;
            let started = Instant::now();
            let outcome = plugin.handle(exchange)?;
            wasm_samples.push(started.elapsed());
            std::hint::black_box(outcome);
        }
    }

    // Whole replay as `cordon simulate` does it: record → request → module → decision.
    let replay_passes = passes.clamp(1, 20);
    let started = Instant::now();
    for _ in 0..replay_passes {
        for record in &records {
            std::hint::black_box(runner.decide(record)?);
        }
    }
    let replay_per_second =
        (records.len() * replay_passes) as f64 / started.elapsed().as_secs_f64();

    let native = summarize(native);
    let wasm = summarize(wasm_samples);
    let count = records.len() * passes;
    let mut out = stdout();
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            json!({
                "records": records.len(),
                "passes": passes,
                "native": {"median_ns": native.median.as_nanos() as u64, "p99_ns": native.p99.as_nanos() as u64, "per_second": native.per_second.round()},
                "wasm": {"median_ns": wasm.median.as_nanos() as u64, "p99_ns": wasm.p99.as_nanos() as u64, "per_second": wasm.per_second.round()},
                "replay_records_per_second": replay_per_second.round(),
            })
        )?,
        _ => {
            writeln!(
                out,
                "{} records × {passes} passes = {count} requests per engine",
                records.len()
            )?;
            writeln!(
                out,
                "{:<28} {:>10} {:>10} {:>14}",
                "engine", "median", "p99", "requests/s"
            )?;
            for (name, latency) in [
                ("native engine", &native),
                ("wasm filter (Wasmtime)", &wasm),
            ] {
                writeln!(
                    out,
                    "{name:<28} {:>10} {:>10} {:>14.0}",
                    format!("{:.0?}", latency.median),
                    format!("{:.0?}", latency.p99),
                    latency.per_second
                )?;
            }
            writeln!(
                out,
                "replay (cordon simulate path): {replay_per_second:.0} records/s"
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
