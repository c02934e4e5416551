//! `cordon collect`: a receiver for Envoy's access-log stream (gRPC ALS and OTLP logs)
//! that maps and audits live and raises alerts (the work is in `cordon_collect`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use cordon_collect::Config;
use cordon_host::mesh::MeshConfig;
use cordon_lifecycle::audit::AuditOptions;
use cordon_lifecycle::discover::DiscoverOptions;
use cordon_lifecycle::sources::{load_policies, PolicySource};
use cordon_lifecycle::time::{parse_duration, Millis};

use super::common::load_valid_policies;

/// `cordon collect` options.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Where Envoy sends access logs: gRPC (`AccessLogService/StreamAccessLogs` and OTLP
    /// `LogsService/Export`), `address:port`.
    #[arg(long, required = true)]
    listen: SocketAddr,
    /// Where `/policies`, `/audit` and `/metrics` are served (HTTP), `address:port`.
    #[arg(long, required = true)]
    http: SocketAddr,
    /// The state directory (created if missing): write-ahead segments and snapshots,
    /// read back on start.
    #[arg(long, required = true)]
    state: PathBuf,
    /// Append alerts (JSON lines) to this file instead of standard output.
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// One alert per (source identity, destination workload, method, path) within this
    /// window (`5m`, `1h`, `30s`).
    #[arg(long, default_value = "5m")]
    alert_window: String,
    /// How often the write-ahead segment is synced to disk (`1s`, `500ms`).
    #[arg(long, default_value = "1s")]
    sync_interval: String,
    /// How often a snapshot is written (also on SIGTERM and SIGINT).
    #[arg(long, default_value = "30s")]
    snapshot_interval: String,
    /// Policy files or directories, for `/audit`.
    #[arg(long = "policy", num_args = 1..)]
    policy: Vec<PathBuf>,
    /// The mesh's settings: a plugin configuration JSON as the filter takes it (its
    /// `path_normalization` and `limits.max_path_bytes` for `/policies`, its engine options
    /// and `policies` for `/audit`). Default: the filter's defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Istio's root namespace; default: the configuration's, else `istio-system`.
    #[arg(long)]
    root_namespace: Option<String>,
    /// `/policies`: requests from a principal to a workload before the flow is believed.
    #[arg(long, default_value_t = 1)]
    min_count: u64,
    /// `/policies`: grant only principals of this trust domain (repeatable).
    #[arg(long = "trust-domain")]
    trust_domains: Vec<String>,
    /// The most (caller, method, path template) entries the state holds per destination
    /// workload (the memory bound): a workload that reaches it has its paths generalized
    /// at once, and new entries it cannot fold are not learned (0: no bound).
    #[arg(long, default_value_t = cordon_lifecycle::discover::MAX_PATHS)]
    max_paths: usize,
}

fn duration(flag: &str, text: &str) -> Result<Millis> {
    match parse_duration(text) {
        Some(millis) if millis > 0 => Ok(millis),
        _ => bail!("--{flag} `{text}`: expected a duration such as `500ms`, `30s`, `5m`"),
    }
}

fn std_duration(millis: Millis) -> Duration {
    Duration::from_millis(u64::try_from(millis).unwrap_or(1))
}

/// Runs the collector until SIGINT or SIGTERM.
pub fn run(args: CollectArgs) -> Result<ExitCode> {
    let alert_window = duration("alert-window", &args.alert_window)?;
    let sync_interval = duration("sync-interval", &args.sync_interval)?;
    let snapshot_interval = duration("snapshot-interval", &args.snapshot_interval)?;
    let mesh = MeshConfig::load(args.config.as_deref())?;
    let root_namespace = args
        .root_namespace
        .unwrap_or_else(|| mesh.options.root_namespace.clone());
    let discover = DiscoverOptions {
        min_count: args.min_count.max(1),
        trust_domains: args.trust_domains,
        root_namespace: root_namespace.clone(),
        path_normalization: mesh.options.path_normalization,
        max_path_bytes: mesh.options.limits.max_path_bytes,
        max_paths: args.max_paths,
        ..DiscoverOptions::default()
    };
    let audit = if args.policy.is_empty() && mesh.policies.is_empty() {
        None
    } else {
        // Validation errors name file and line, as `cordon check` does.
        load_valid_policies(&args.policy)?;
        let mut sources: Vec<PolicySource> = mesh
            .policies
            .iter()
            .map(|value| PolicySource {
                file: mesh.file.clone().unwrap_or_default(),
                value: value.clone(),
                locations: Default::default(),
            })
            .collect();
        sources.extend(load_policies(&args.policy).map_err(|error| anyhow!("{error}"))?);
        let options = AuditOptions {
            since: None,
            root_namespace,
            examples: 5,
            engine: mesh.options.clone(),
        };
        Some((sources, options))
    };
    cordon_collect::run(Config {
        listen: args.listen,
        http: args.http,
        state: args.state,
        alerts: args.alerts,
        alert_window,
        sync_interval: std_duration(sync_interval),
        snapshot_interval: std_duration(snapshot_interval),
        discover,
        audit,
    })?;
    Ok(ExitCode::SUCCESS)
}
