//! `cordon diff`: what a policy change grants and takes away, for every workload the two
//! sets can tell apart, each class with a request the two sets decide differently (the
//! analysis is the engine's, `cordon_engine::diff`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use cordon_engine::diff::{diff, workloads, Class, WorkloadDiff};
use cordon_engine::model::parse_policies;
use cordon_engine::Workload;
use cordon_host::mesh::MeshConfig;
use serde_json::{json, Value};

use super::common::load_valid_policies;
use super::term::stdout;
use super::Format;

/// `cordon diff` options.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The policies before the change: files or directories (YAML or JSON).
    #[arg(long, required = true, num_args = 1..)]
    old: Vec<PathBuf>,
    /// The policies after the change: files or directories (YAML or JSON).
    #[arg(long, required = true, num_args = 1..)]
    new: Vec<PathBuf>,
    /// The mesh's settings: a plugin configuration JSON as the filter takes it
    /// (`root_namespace`, `trust_domain`, `trust_domain_aliases`, `path_normalization`,
    /// `use_remote_address`, …; its `policies`, optional, are added to both sides).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only this workload's namespace (default: every workload the sets can tell apart).
    #[arg(long)]
    workload_namespace: Option<String>,
    /// A label of that workload, `key=value`; repeatable (needs `--workload-namespace`).
    #[arg(long = "workload-label")]
    workload_labels: Vec<String>,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Exit 1 when the new set allows a request the old one denies (or may: an
    /// undecided class counts).
    #[arg(long)]
    fail_on_new_access: bool,
}

fn labels(workload_labels: &[String], namespace: Option<&str>) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for label in workload_labels {
        let Some((key, value)) = label.split_once('=') else {
            bail!("--workload-label `{label}`: expected key=value");
        };
        if key.is_empty() {
            bail!("--workload-label `{label}`: the key is empty");
        }
        labels.insert(key.to_string(), value.to_string());
    }
    if !labels.is_empty() && namespace.is_none() {
        bail!("--workload-label needs --workload-namespace: labels select policies only within a namespace");
    }
    Ok(labels)
}

fn workload_json(workload: &Workload) -> Value {
    json!({"namespace": workload.namespace, "labels": workload.labels})
}

fn workload_text(workload: &Workload) -> String {
    let namespace = workload.namespace.as_deref().unwrap_or("(any)");
    if workload.labels.is_empty() {
        format!("{namespace} (a workload no selector matches)")
    } else {
        let labels: Vec<String> = workload
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        format!("{namespace} {}", labels.join(","))
    }
}

fn class_json(workload: &Workload, class: &Class) -> Value {
    let constraints: Vec<Value> = class
        .constraints
        .iter()
        .map(|constraint| {
            json!({
                "attribute": constraint.attribute,
                "multi_valued": constraint.multi_valued,
                "all_of": constraint.all_of,
                "any_of": constraint.any_of,
                "none_of": constraint.none_of,
            })
        })
        .collect();
    json!({
        "workload": workload_json(workload),
        "class": {
            "text": class.describe(),
            "constraints": constraints,
            "undecided": class.undecided,
        },
        "example": class.example.as_ref().map(|record| record.to_json()),
    })
}

/// Compares the two sets and reports.
pub fn run(args: DiffArgs) -> Result<ExitCode> {
    let mesh = MeshConfig::load(args.config.as_deref())?;
    let old = mesh.with_policies(load_valid_policies(&args.old)?);
    let new = mesh.with_policies(load_valid_policies(&args.new)?);
    let label_map = labels(&args.workload_labels, args.workload_namespace.as_deref())?;
    let base = mesh.options.clone();
    let targets = match &args.workload_namespace {
        Some(namespace) => vec![Workload {
            namespace: Some(namespace.clone()),
            labels: label_map,
        }],
        None => {
            let (old_parsed, _, _) = parse_policies(&old);
            let (new_parsed, _, _) = parse_policies(&new);
            let all: Vec<_> = old_parsed.iter().chain(&new_parsed).collect();
            workloads(&all, &base.root_namespace)
        }
    };
    let report = diff(&old, &new, &base, &targets).map_err(|error| anyhow!("{error}"))?;
    let gained: Vec<(&Workload, &Class)> = each(&report, |entry| &entry.new_access);
    let lost: Vec<(&Workload, &Class)> = each(&report, |entry| &entry.removed_access);
    let mut out = stdout();
    match args.format {
        Format::Json => {
            let document = json!({
                "workloads": report.len(),
                "new_access": gained.iter().map(|(w, c)| class_json(w, c)).collect::<Vec<_>>(),
                "removed_access": lost.iter().map(|(w, c)| class_json(w, c)).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
        }
        Format::Text => {
            for (title, classes) in [("new access", &gained), ("removed access", &lost)] {
                if classes.is_empty() {
                    writeln!(out, "{title}: none")?;
                    continue;
                }
                writeln!(out, "{title}: {} class(es)", classes.len())?;
                let mut last: Option<&Workload> = None;
                for (workload, class) in classes.iter() {
                    if last != Some(*workload) {
                        writeln!(out, "  workload {}:", workload_text(workload))?;
                        last = Some(*workload);
                    }
                    writeln!(out, "    - {}", class.describe())?;
                    if let Some(reason) = &class.undecided {
                        writeln!(out, "      UNDECIDED: {reason}")?;
                    }
                    if let Some(example) = &class.example {
                        writeln!(out, "      example: {}", example.to_json())?;
                    }
                }
            }
            writeln!(
                out,
                "{} workload(s) compared; {}",
                report.len(),
                if gained.is_empty() {
                    "the new set grants no new access"
                } else {
                    "the new set grants new access"
                }
            )?;
        }
    }
    Ok(if args.fail_on_new_access && !gained.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn each<'r>(
    report: &'r [WorkloadDiff],
    classes: impl Fn(&'r WorkloadDiff) -> &'r Vec<Class>,
) -> Vec<(&'r Workload, &'r Class)> {
    report
        .iter()
        .flat_map(|entry| {
            classes(entry)
                .iter()
                .map(move |class| (&entry.workload, class))
        })
        .collect()
}
