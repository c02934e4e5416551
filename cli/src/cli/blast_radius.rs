//! `cordon blast-radius`: what each identity can reach, from the policies alone (the work
//! is in `cordon_lifecycle::blast_radius`). The output is written as it is computed, one
//! identity at a time.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};
use cordon_engine::model::parse_policies;
use cordon_engine::Action;
use cordon_host::mesh::MeshConfig;
use cordon_lifecycle::blast_radius::{Analysis, Scope, Subject, Target};
use cordon_lifecycle::blast_radius_html::analysis_to_html;

use super::common::load_valid_policies;
use super::term::{print, stdout};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RadiusFormat {
    /// A matrix of identities against workloads, then what each may do.
    Table,
    /// One JSON document.
    Json,
    /// A Graphviz graph: identities → workloads (`| dot -Tsvg > mesh.svg`).
    Dot,
    /// One self-contained HTML page (no network): the graph, with a filter and
    /// click-to-highlight (`> blast-radius.html`).
    Html,
}

/// `cordon blast-radius` options.
#[derive(Debug, Args)]
pub struct BlastRadiusArgs {
    /// Policy files or directories.
    #[arg(long = "policy", required_unless_present = "config", num_args = 1..)]
    policy: Vec<PathBuf>,
    /// Only this identity: a SPIFFE ID (`spiffe://cluster.local/ns/shop/sa/frontend`, or
    /// without `spiffe://` when of Istio's shape `<trust domain>/ns/<ns>/sa/<sa>`),
    /// `authenticated` (any identity the policies do not name) or `plaintext`; default:
    /// every identity the policies name, and those two.
    #[arg(long)]
    principal: Option<String>,
    /// Only the workloads of this namespace (those the policies select, and
    /// `<namespace>/*`); repeatable.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    namespace: Vec<String>,
    /// Only this workload (with the `--namespace` ones): `<namespace>/<app>`,
    /// `<namespace>/<key>=<value>,…` (its labels) or `<namespace>/*`; repeatable.
    #[arg(long = "workload", value_name = "WORKLOAD")]
    workload: Vec<String>,
    /// `table`, `json`, `dot` or `html`.
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
    let subject = args
        .principal
        .as_deref()
        .map(Subject::parse)
        .transpose()
        .map_err(|error| anyhow!("--principal {error}"))?;
    let workloads = args
        .workload
        .iter()
        .map(|text| Target::parse(text).map_err(|error| anyhow!("--workload {error}")))
        .collect::<Result<Vec<Target>>>()?;
    let mesh = MeshConfig::load(args.config.as_deref())?;
    let values = mesh.with_policies(load_valid_policies(&args.policy)?);
    let (policies, _, _) = parse_policies(&values);
    let root_namespace = args
        .root_namespace
        .clone()
        .unwrap_or_else(|| mesh.options.root_namespace.clone());
    for namespace in &args.namespace {
        // Only ALLOW and DENY policies in force decide anything (AUDIT and dry-run do not).
        let decides = |p: &&cordon_engine::Policy| {
            !p.dry_run && matches!(p.action, Action::Allow | Action::Deny)
        };
        let governed = policies.iter().filter(decides).any(|p| {
            &p.namespace == namespace
                || (p.namespace == root_namespace
                    && p.selector.as_ref().is_none_or(|s| s.is_empty()))
        });
        if !governed {
            eprintln!(
                "warning: --namespace {namespace}: no ALLOW or DENY policy of this namespace or \
                 of the whole mesh applies here; its workloads are open to every caller"
            );
        }
    }
    let scope = Scope {
        namespaces: args.namespace.clone(),
        workloads,
    };
    let analysis = Analysis::new(&policies, subject, &root_namespace, &scope);
    let mut out = stdout();
    match args.format {
        RadiusFormat::Table => analysis.write_table(&mut out)?,
        RadiusFormat::Json => analysis.write_json(&mut out)?,
        RadiusFormat::Dot => analysis.write_dot(&mut out)?,
        RadiusFormat::Html => print(&analysis_to_html(
            &analysis,
            &caption(&args.policy, args.config.as_deref()),
        ))?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Where the page's analysis comes from: the policy paths and the configuration.
fn caption(policy: &[PathBuf], config: Option<&std::path::Path>) -> String {
    let mut sources: Vec<String> = policy.iter().map(|p| p.display().to_string()).collect();
    if let Some(config) = config {
        sources.push(format!("--config {}", config.display()));
    }
    sources.join(" ")
}
