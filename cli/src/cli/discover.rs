//! `cordon discover`: least-privilege AuthorizationPolicy from observed traffic (the work
//! is in `cordon_lifecycle::discover`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use cordon_host::mesh::MeshConfig;
use cordon_lifecycle::discover::{DiscoverOptions, Discovery};
use cordon_lifecycle::templating::TemplateOptions;
use cordon_lifecycle::time::window_start;

use super::common::TrafficLines;
use super::Format;

/// `cordon discover` options.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Traffic records (JSONL) or Envoy logs with `cordon.decision` lines; `-` for standard
    /// input. Read as a stream, in order.
    #[arg(long, required_unless_present = "merge", num_args = 1..)]
    traffic: Vec<PathBuf>,
    /// State directories of `cordon collect` (`--state`), one per collector: merge the
    /// aggregates they hold (snapshot and write-ahead segments), as one collector over all
    /// their records would hold them (with `--traffic`: those records too). The options
    /// that shape the aggregate while reading (`--window`/`--since`, `--trust-domain`,
    /// `--config`'s path normalization, the templating thresholds, `--max-hosts`,
    /// `--max-ports`, `--max-paths`) must be the collectors'; a state learned under others
    /// is an error naming them.
    #[arg(long, num_args = 1..)]
    merge: Vec<PathBuf>,
    /// Write the policies here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Learning window: ignore records older than this before `--now` (`7d`, `24h`, `1h30m`).
    #[arg(long)]
    window: Option<String>,
    /// Ignore records older than this time (RFC 3339); instead of `--window`.
    #[arg(long)]
    since: Option<String>,
    /// The end of the window (RFC 3339); default: the current time.
    #[arg(long)]
    now: Option<String>,
    /// Requests from a principal to a workload before the flow is believed.
    #[arg(long, default_value_t = 1)]
    min_count: u64,
    /// Requests on one method and path template before it is kept in a believed flow.
    #[arg(long, default_value_t = 1)]
    min_operation_count: u64,
    /// Shortest mixed letters-and-digits (or hex) path segment read as an ID.
    #[arg(long, default_value_t = 8)]
    id_min_length: usize,
    /// Fewest digits in such a segment.
    #[arg(long, default_value_t = 3)]
    id_min_digits: usize,
    /// Distinct literal children of one prefix above which look-alikes merge into `{*}`
    /// (0: never).
    #[arg(long, default_value_t = 16)]
    max_literal_siblings: usize,
    /// Distinct deep tails under one prefix above which it becomes `prefix/{**}`
    /// (0: never write `{**}`).
    #[arg(long, default_value_t = 0)]
    rest_threshold: usize,
    /// The most (caller, method, path template) entries held per destination workload:
    /// a workload that reaches it has its paths generalized while reading, and new entries
    /// it cannot fold are not learned (counted in the summary). Bounds memory (0: no bound).
    #[arg(long, default_value_t = cordon_lifecycle::discover::MAX_PATHS)]
    max_paths: usize,
    /// Name the hosts of a rule when its requests used at most this many (0: never).
    #[arg(long, default_value_t = 1)]
    max_hosts: usize,
    /// Name the ports of a rule when its requests used at most this many (0: never).
    #[arg(long, default_value_t = 1)]
    max_ports: usize,
    /// Grant only principals of this trust domain (repeatable); default: every trust
    /// domain in the data.
    #[arg(long = "trust-domain")]
    trust_domains: Vec<String>,
    /// Istio's root namespace; default: the configuration's, else `istio-system`.
    #[arg(long)]
    root_namespace: Option<String>,
    /// The mesh's settings: a plugin configuration JSON as the filter takes it. Paths are
    /// normalized with its `path_normalization` (and `limits.max_path_bytes`) before they
    /// are learned, as the filter will judge them. Default: the filter's defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write no allow-nothing policy for workloads without a believed caller (they stay
    /// open); matters only with `--no-default-deny`, or in the root namespace.
    #[arg(long)]
    no_allow_nothing: bool,
    /// Write no `default-deny` allow-nothing policy (`spec: {}`) in the namespaces the
    /// traffic maps: workloads that received no learnable request stay open.
    #[arg(long)]
    no_default_deny: bool,
    /// Exit 1 when nothing could be learned (no request granted), after writing what
    /// there is; without it, a warning only.
    #[arg(long)]
    strict: bool,
    /// The summary on standard error: `text`, or `json` (one document).
    #[arg(long, value_enum, default_value = "text")]
    summary_format: Format,
    /// Print no summary on standard error (bad lines and the no-learnable-request warning
    /// are still reported).
    #[arg(long, short)]
    quiet: bool,
    /// Report bad traffic lines but exit 0 for them (without it: exit 2 after the work).
    #[arg(long)]
    pub skip_bad_lines: bool,
}

/// Runs discovery.
pub fn run(args: DiscoverArgs) -> Result<ExitCode> {
    let since = window_start(
        args.window.as_deref(),
        args.since.as_deref(),
        args.now.as_deref(),
    )
    .map_err(|error| anyhow!(error))?;
    let mesh = MeshConfig::load(args.config.as_deref())?;
    let options = DiscoverOptions {
        templates: TemplateOptions {
            id_min_length: args.id_min_length,
            id_min_digits: args.id_min_digits,
            max_literal_siblings: args.max_literal_siblings,
            rest_threshold: args.rest_threshold,
            ..TemplateOptions::default()
        },
        since,
        min_count: args.min_count.max(1),
        min_operation_count: args.min_operation_count.max(1),
        max_hosts: args.max_hosts,
        max_ports: args.max_ports,
        trust_domains: args.trust_domains,
        root_namespace: args
            .root_namespace
            .unwrap_or_else(|| mesh.options.root_namespace.clone()),
        allow_nothing_for_unseen: !args.no_allow_nothing,
        default_deny: !args.no_default_deny,
        path_normalization: mesh.options.path_normalization,
        max_path_bytes: mesh.options.limits.max_path_bytes,
        max_paths: args.max_paths,
    };
    let started = Instant::now();
    let mut discovery = Discovery::new(options.clone());
    let ticker = super::term::Ticker::start("discovering");
    let tally = if args.traffic.is_empty() {
        Default::default()
    } else {
        TrafficLines::new(&args.traffic).for_each(|line| discovery.add_line(line))?
    };
    if !args.merge.is_empty() {
        let merged = cordon_collect::state::load_discovery(&args.merge, &options)?;
        discovery.merge(merged);
    }
    let mut discovered = discovery.finish();
    discovered.summary.first_unreadable = tally.first_bad;
    let elapsed = started.elapsed().as_secs_f64();
    drop(ticker);
    let yaml = discovered.to_yaml();
    match &args.output {
        Some(path) => std::fs::write(path, &yaml)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            out.write_all(yaml.as_bytes())?;
            out.flush()?;
        }
    }
    let summary = &discovered.summary;
    if !args.quiet && args.summary_format == Format::Json {
        let mut json = summary.to_json();
        if let Some(object) = json.as_object_mut() {
            object.insert("policies".to_string(), discovered.policies.len().into());
            object.insert("seconds".to_string(), elapsed.into());
        }
        eprintln!("{json}");
    } else if !args.quiet {
        eprint!("{}", summary.report(&options));
        let rate = if elapsed > 0.0 {
            summary.records as f64 / elapsed
        } else {
            0.0
        };
        eprintln!(
            "  {} policies, {} rules; {:.2} s ({:.0} records/s)",
            discovered.policies.len(),
            discovered
                .policies
                .iter()
                .map(|policy| policy.rules.len())
                .sum::<usize>(),
            elapsed,
            rate
        );
    }
    if summary.nothing_learned() {
        eprintln!(
            "cordon discover: WARNING: no learnable request in the input ({} records: none was a forwarded mTLS request with a policy-safe method, host and path{}); the policies written grant nothing",
            summary.records,
            if summary.aggregated > 0 {
                ", or none reached the minimum counts"
            } else {
                ""
            }
        );
        if args.strict {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
