//! `cordon blast-radius`: what each identity can reach, from the policies alone (the work
//! is in `cordon_lifecycle::blast_radius`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};
use cordon_engine::model::parse_policies;
use cordon_host::mesh::MeshConfig;
use cordon_lifecycle::blast_radius::{analyze, Subject};

use super::common::load_valid_policies;
use super::term::print;

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
    #[arg(long = "policy", required_unless_present = "config", num_args = 1..)]
    policy: Vec<PathBuf>,
    /// Only this identity: a SPIFFE ID, `authenticated` (any identity the policies do not
    /// name) or `plaintext`; default: every identity the policies name, and those two.
    #[arg(long)]
    principal: Option<String>,
    /// `table`, `json` or `dot`.
    #[arg(long, value_enum, default_value = "table")]
    format: RadiusFormat,
    /// Istio's root namespace; default: the configuration's, else `istio-system`.
    #[arg(long)]
    root_namespace: Option<String>,
    /// The mesh's settings: a plugin configuration JSON as the filter takes it
    /// (`path_normalization`, `root_namespace`, `trust_domain`, `limits`, …; its
    /// `policies`, optional, are added to `--policy`). Default: the filter's defaults.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Computes and prints the blast radius.
pub fn run(args: BlastRadiusArgs) -> Result<ExitCode> {
    let mesh = MeshConfig::load(args.config.as_deref())?;
    let values = mesh.with_policies(load_valid_policies(&args.policy)?);
    let (policies, _, _) = parse_policies(&values);
    let subject = args
        .principal
        .as_deref()
        .map(Subject::parse)
        .transpose()
        .map_err(|error| anyhow!("--principal {error}"))?;
    let root_namespace = args
        .root_namespace
        .unwrap_or_else(|| mesh.options.root_namespace.clone());
    let radius = analyze(&policies, subject, &root_namespace);
    match args.format {
        RadiusFormat::Table => print(&radius.to_table())?,
        RadiusFormat::Json => print(&format!("{}\n", radius.to_json()))?,
        RadiusFormat::Dot => print(&radius.to_dot())?,
    }
    Ok(ExitCode::SUCCESS)
}
