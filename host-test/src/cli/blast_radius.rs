//! `cordon blast-radius`: what each identity can reach, from the policies alone (the work
//! is in `cordon::lifecycle::blast_radius`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};
use cordon::lifecycle::blast_radius::{analyze, Subject};
use cordon_engine::model::parse_policies;

use super::common::load_valid_policies;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RadiusFormat {
    /// A matrix of identities against workloads, then what each may do.
    Table,
    /// One JSON document.
    Json,
    /// A Graphviz graph: identities → workloads (`| dot -Tsvg > mesh.svg`).
    Dot,
}

/// `cordon blast-radius` options.
#[derive(Debug, Args)]
pub struct BlastRadiusArgs {
    /// Policy files or directories.
    #[arg(long = "policy", required = true, num_args = 1..)]
    policy: Vec<PathBuf>,
    /// Only this identity: a SPIFFE ID, `authenticated` (any identity the policies do not
    /// name) or `plaintext`; default: every identity the policies name, and those two.
    #[arg(long)]
    principal: Option<String>,
    /// `table`, `json` or `dot`.
    #[arg(long, value_enum, default_value = "table")]
    format: RadiusFormat,
    /// Istio's root namespace.
    #[arg(long, default_value = "istio-system")]
    root_namespace: String,
}

/// Computes and prints the blast radius.
pub fn run(args: BlastRadiusArgs) -> Result<ExitCode> {
    let values = load_valid_policies(&args.policy)?;
    let (policies, _, _) = parse_policies(&values);
    let subject = args
        .principal
        .as_deref()
        .map(Subject::parse)
        .transpose()
        .map_err(|error| anyhow!("--principal {error}"))?;
    let radius = analyze(&policies, subject, &args.root_namespace);
    match args.format {
        RadiusFormat::Table => print!("{}", radius.to_table()),
        RadiusFormat::Json => println!("{}", radius.to_json()),
        RadiusFormat::Dot => print!("{}", radius.to_dot()),
    }
    Ok(ExitCode::SUCCESS)
}
