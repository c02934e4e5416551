//! The `cordon` command line: one module per subcommand.

mod audit;
mod bench;
mod blast_radius;
mod check;
mod collect;
mod common;
mod config;
mod diff;
mod discover;
mod explain;
mod pack;
mod simulate;
pub mod term;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
pub use common::bad_lines_exit;
use cordon_host::mesh::MeshConfig;

/// cordon, a microsegmentation policy engine: Istio AuthorizationPolicy between workload
/// identities, enforced inside Envoy by the `cordon_filter.wasm` that ships.
///
/// The whole lifecycle of a policy set: `check` it, `test` it against suites of expected
/// decisions, `simulate` it on recorded traffic (what would it block?), `explain` one
/// decision rule by rule, print the filter's `config` for Envoy or Istio, `discover`
/// least-privilege policies from traffic, `audit` policies against traffic, and show the
/// `blast-radius` of each identity. Exit codes: 0 success, 1 the command found failures,
/// 2 bad input or usage.
#[derive(Debug, Parser)]
#[command(
    name = "cordon",
    version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (cordon_filter.wasm sha256 ",
        env!("CORDON_WASM_SHA256"),
        ")"
    )
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--format` of the commands that write a report for people or one JSON document
/// (`check`, `explain`, `bench`, `audit`); `simulate`, `test` and `blast-radius` have their
/// own, so each command accepts only the formats it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON document.
    Json,
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
        /// A workload that exists, `<namespace>` or `<namespace>/<key>=<value>,…`;
        /// repeatable: warn about policies whose selector none of them has.
        #[arg(long = "workload", value_name = "WORKLOAD")]
        workloads: Vec<String>,
    },
    /// Run test suites (policies, requests, expected decisions) through the `.wasm`.
    Test {
        /// Suite files or directories (JSON files with `cases`; others are skipped).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: test::TestFormat,
        /// Run only cases whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// The filter module; default: the one built into this binary (`cordon --version`
        /// prints its sha256), or the file `CORDON_WASM` names.
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
        /// Report bad traffic lines but exit 0 for them (without it: exit 2 after the work).
        #[arg(long)]
        skip_bad_lines: bool,
        /// Compare with these policies: show requests whose decision changes.
        #[arg(long, num_args = 1..)]
        baseline: Vec<PathBuf>,
        /// `table` or `jsonl`.
        #[arg(long, value_enum, default_value = "table")]
        format: simulate::SimulateFormat,
        /// Exit 1 when a decision changes against the baseline.
        #[arg(long)]
        fail_on_change: bool,
        /// With `--format jsonl`: add to each line the explanation `explain --format json`
        /// gives (`seen`, `nearest_allow`, every applicable rule with its failing fields).
        #[arg(long)]
        explain: bool,
        /// The filter module; default: the one built into this binary (`cordon --version`
        /// prints its sha256), or the file `CORDON_WASM` names.
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
        /// Report bad traffic lines but exit 0 for them (without it: exit 2 after the work).
        #[arg(long)]
        skip_bad_lines: bool,
        /// Passes over the traffic.
        #[arg(long, default_value_t = 0)]
        iterations: usize,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// The filter module; default: the one built into this binary (`cordon --version`
        /// prints its sha256), or the file `CORDON_WASM` names.
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
        /// Print an Istio WasmPlugin manifest (YAML) instead: inbound traffic of the
        /// workloads `--workload-namespace`/`--workload-label` select (all of the mesh
        /// without them), with the policies that can apply to them.
        #[arg(long)]
        istio: bool,
        #[command(flatten)]
        istio_options: config::IstioOptions,
        /// Print istiod's translation instead: the HTTP RBAC filters and connection manager
        /// path settings Istio would give the workload's sidecar for these policies.
        #[arg(long, conflicts_with = "istio")]
        rbac: bool,
        /// Print cordon's native twin instead (`libcordon_native.so`, an Envoy dynamic
        /// module): the two Envoy HTTP filters it takes, or with `--istio` an EnvoyFilter
        /// inserting them on the workload's inbound traffic. Needs `--workload-namespace`.
        #[arg(long, conflicts_with = "rbac")]
        native: bool,
        /// With `--rbac`: the filter's plugin configuration (JSON), for its mesh settings
        /// (`trust_domain`, `trust_domain_aliases`, `root_namespace`, `path_normalization`),
        /// `workload` and `policies`.
        #[arg(long, requires = "rbac")]
        config: Option<PathBuf>,
    },
    /// Explain one request's decision: every applicable rule, and what failed in each.
    Explain {
        /// Policy files or directories.
        #[arg(long = "policy", required_unless_present = "config", num_args = 1..)]
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
        /// Report bad traffic lines but exit 0 for them (without it: exit 2 after the work).
        #[arg(long)]
        skip_bad_lines: bool,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// The mesh's settings: a plugin configuration JSON as the filter takes it
        /// (`path_normalization`, `root_namespace`, `trust_domain`, …; its `policies`,
        /// optional, are added to `--policy`). Default: the filter's defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Learn least-privilege AuthorizationPolicy (YAML) from traffic records and decision logs.
    Discover(discover::DiscoverArgs),
    /// Hold policies against traffic: stale and over-broad grants, denied requests, dry-run impact.
    Audit(audit::AuditArgs),
    /// From the policies alone, what each identity can reach on each workload.
    BlastRadius(blast_radius::BlastRadiusArgs),
    /// Receive Envoy's access-log stream (gRPC ALS, OTLP): live `/policies`, `/audit`,
    /// `/metrics`, and alerts on lateral movement.
    Collect(collect::CollectArgs),
    /// Write the filter module as an OCI image layout in Istio's Wasm image format, and
    /// print how to push it to a registry.
    Pack(pack::PackArgs),
    /// Compare two policy sets exactly: every class of requests the new set allows and the
    /// old denies (and the reverse), each with an example request; `--fail-on-new-access`
    /// for a CI gate.
    Diff(diff::DiffArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    common::skip_bad_lines(cli.command.skips_bad_lines());
    match cli.command {
        Command::Check {
            paths,
            strict,
            format,
            workloads,
        } => check::run(&paths, strict, format, &workloads),
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
            explain,
            wasm,
            config,
            skip_bad_lines: _,
        } => simulate::run(
            &policy,
            &traffic,
            &baseline,
            simulate::Output { format, explain },
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
            skip_bad_lines: _,
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
            istio_options,
            ..
        } => config::run_rbac(
            &istio_options,
            &policy,
            workload_namespace,
            &workload_labels,
            config.as_deref(),
        ),
        Command::Config {
            policy,
            workload_namespace,
            workload_labels,
            native: true,
            istio,
            istio_options,
            ..
        } => config::native::run(
            &policy,
            workload_namespace,
            &workload_labels,
            istio,
            &istio_options,
        ),
        Command::Config {
            policy,
            workload_namespace,
            workload_labels,
            istio,
            istio_options,
            ..
        } => config::run(
            &policy,
            workload_namespace,
            &workload_labels,
            istio,
            &istio_options,
        ),
        Command::Explain {
            policy,
            request,
            traffic,
            line,
            format,
            config,
            skip_bad_lines: _,
        } => {
            let source = match (&request, explain::line_source(traffic.as_deref(), line)?) {
                (Some(text), _) => explain::RequestSource::Inline(text),
                (None, Some((path, line))) => explain::RequestSource::Line(path, line),
                (None, None) => anyhow::bail!("give --request, or --traffic with --line"),
            };
            explain::run(
                &policy,
                source,
                format,
                &MeshConfig::load(config.as_deref())?,
            )
        }
        Command::Discover(args) => discover::run(args),
        Command::Audit(args) => audit::run(args),
        Command::BlastRadius(args) => blast_radius::run(args),
        Command::Collect(args) => collect::run(args),
        Command::Pack(args) => pack::run(args),
        Command::Diff(args) => diff::run(args),
    }
}

impl Command {
    /// `--skip-bad-lines`, on the commands that read traffic.
    fn skips_bad_lines(&self) -> bool {
        match self {
            Command::Simulate { skip_bad_lines, .. }
            | Command::Bench { skip_bad_lines, .. }
            | Command::Explain { skip_bad_lines, .. } => *skip_bad_lines,
            Command::Discover(args) => args.skip_bad_lines,
            Command::Audit(args) => args.skip_bad_lines,
            Command::Check { .. }
            | Command::Test { .. }
            | Command::Config { .. }
            | Command::BlastRadius(_)
            | Command::Collect(_)
            | Command::Pack(_)
            | Command::Diff(_) => false,
        }
    }
}
