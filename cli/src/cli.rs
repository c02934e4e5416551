//! The `cordon` command line: one module per subcommand.

mod audit;
mod bench;
mod blast_radius;
mod check;
mod common;
mod config;
mod discover;
mod explain;
mod simulate;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cordon_host::mesh::MeshConfig;

/// Test, replay and benchmark Istio AuthorizationPolicy sets against the exact
/// `cordon_filter.wasm` that ships.
#[derive(Debug, Parser)]
#[command(name = "cordon", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON document.
    Json,
    /// A summary table.
    Table,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate policy files (YAML or JSON, directories recursively).
    Check {
        /// Policy files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Exit 1 when there are warnings.
        #[arg(long)]
        strict: bool,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Run test suites (policies, requests, expected decisions) through the `.wasm`.
    Test {
        /// Suite files or directories (JSON files with `cases`; others are skipped).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Run only cases whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// The filter module; default: the workspace's release build.
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// The mesh's settings: a plugin configuration JSON as the filter takes it
        /// (`path_normalization`, `root_namespace`, `trust_domain`, `identity`, `jwt`,
        /// `limits`, …; its `policies`, optional, are added to every case's). Default: the
        /// filter's defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replay recorded traffic (JSONL) through the `.wasm` and report decisions.
    Simulate {
        /// Policy files or directories.
        #[arg(long = "policy", required_unless_present = "config", num_args = 1..)]
        policy: Vec<PathBuf>,
        /// Traffic records (JSONL), or `-` for standard input; decision logs work too.
        #[arg(long, required = true)]
        traffic: PathBuf,
        /// Compare with these policies: show requests whose decision changes.
        #[arg(long, num_args = 1..)]
        baseline: Vec<PathBuf>,
        /// `table` or `jsonl`.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Exit 1 when a decision changes against the baseline.
        #[arg(long)]
        fail_on_change: bool,
        /// The filter module; default: the workspace's release build.
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// The mesh's settings: a plugin configuration JSON as the filter takes it
        /// (`path_normalization`, `root_namespace`, `trust_domain`, `identity`, `jwt`,
        /// `limits`, …; its `policies`, optional, are added to `--policy` and to
        /// `--baseline`). Default: the filter's defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Measure per-request latency through Wasmtime and the native engine.
    Bench {
        /// Policy files or directories.
        #[arg(long = "policy", required_unless_present = "config", num_args = 1..)]
        policy: Vec<PathBuf>,
        /// Traffic records (JSONL).
        #[arg(long, required = true)]
        traffic: PathBuf,
        /// Passes over the traffic.
        #[arg(long, default_value_t = 0)]
        iterations: usize,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// The filter module; default: the workspace's release build.
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// The mesh's settings: a plugin configuration JSON as the filter takes it
        /// (`path_normalization`, `root_namespace`, `trust_domain`, `identity`, `jwt`,
        /// `limits`, …; its `policies`, optional, are added to `--policy`). Default: the
        /// filter's defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the plugin configuration for Envoy, or an Istio WasmPlugin with it, or (with
    /// `--rbac`) the Envoy RBAC filters istiod would generate instead.
    Config {
        /// Policy files or directories.
        #[arg(long = "policy", required_unless_present = "config", num_args = 1..)]
        policy: Vec<PathBuf>,
        /// The protected workload's namespace.
        #[arg(long)]
        workload_namespace: Option<String>,
        /// A label of the protected workload, `key=value`; repeatable.
        #[arg(long = "workload-label")]
        workload_labels: Vec<String>,
        /// Print an Istio WasmPlugin manifest (YAML) instead.
        #[arg(long)]
        istio: bool,
        /// Image reference for the WasmPlugin `url`.
        #[arg(long, default_value = "oci://ghcr.io/cordon/cordon-filter:0.1.0")]
        image: String,
        /// Print istiod's translation instead: the HTTP RBAC filters and connection manager
        /// path settings Istio would give the workload's sidecar for these policies.
        #[arg(long, conflicts_with = "istio")]
        rbac: bool,
        /// With `--rbac`: the filter's plugin configuration (JSON), for its mesh settings
        /// (`trust_domain`, `trust_domain_aliases`, `root_namespace`, `path_normalization`),
        /// `workload` and `policies`.
        #[arg(long, requires = "rbac")]
        config: Option<PathBuf>,
    },
    /// Explain one request's decision: every applicable rule, and what failed in each.
    Explain {
        /// Policy files or directories.
        #[arg(long = "policy", required = true, num_args = 1..)]
        policy: Vec<PathBuf>,
        /// The request, a traffic record as JSON.
        #[arg(long, conflicts_with_all = ["traffic", "line"], required_unless_present = "traffic")]
        request: Option<String>,
        /// A traffic file (JSONL, or decision logs); with `--line`.
        #[arg(long, requires = "line")]
        traffic: Option<PathBuf>,
        /// The 1-based line of `--traffic` to explain.
        #[arg(long, requires = "traffic")]
        line: Option<usize>,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Learn least-privilege AuthorizationPolicy (YAML) from traffic records and decision logs.
    Discover(discover::DiscoverArgs),
    /// Hold policies against traffic: stale and over-broad grants, denied requests, dry-run impact.
    Audit(audit::AuditArgs),
    /// From the policies alone, what each identity can reach on each workload.
    BlastRadius(blast_radius::BlastRadiusArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check {
            paths,
            strict,
            format,
        } => check::run(&paths, strict, format),
        Command::Test {
            paths,
            format,
            filter,
            wasm,
            config,
        } => test::run(
            &paths,
            format,
            filter.as_deref(),
            wasm,
            &MeshConfig::load(config.as_deref())?,
        ),
        Command::Simulate {
            policy,
            traffic,
            baseline,
            format,
            fail_on_change,
            wasm,
            config,
        } => simulate::run(
            &policy,
            &traffic,
            &baseline,
            format,
            fail_on_change,
            wasm,
            &MeshConfig::load(config.as_deref())?,
        ),
        Command::Bench {
            policy,
            traffic,
            iterations,
            format,
            wasm,
            config,
        } => bench::run(
            &policy,
            &traffic,
            iterations,
            format,
            wasm,
            &MeshConfig::load(config.as_deref())?,
        ),
        Command::Config {
            policy,
            workload_namespace,
            workload_labels,
            rbac: true,
            config,
            ..
        } => config::run_rbac(
            &policy,
            workload_namespace,
            &workload_labels,
            config.as_deref(),
        ),
        Command::Config {
            policy,
            workload_namespace,
            workload_labels,
            istio,
            image,
            ..
        } => config::run(&policy, workload_namespace, &workload_labels, istio, &image),
        Command::Explain {
            policy,
            request,
            traffic,
            line,
            format,
        } => {
            let source = match (&request, explain::line_source(traffic.as_deref(), line)?) {
                (Some(text), _) => explain::RequestSource::Inline(text),
                (None, Some((path, line))) => explain::RequestSource::Line(path, line),
                (None, None) => anyhow::bail!("give --request, or --traffic with --line"),
            };
            explain::run(&policy, source, format)
        }
        Command::Discover(args) => discover::run(args),
        Command::Audit(args) => audit::run(args),
        Command::BlastRadius(args) => blast_radius::run(args),
    }
}
