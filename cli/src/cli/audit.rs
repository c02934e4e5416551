//! `cordon audit`: a policy set held against observed traffic (the work is in
//! `cordon_lifecycle::audit`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};
use cordon_host::mesh::MeshConfig;
use cordon_lifecycle::audit::{Audit, AuditOptions, Severity};
use cordon_lifecycle::sources::{load_policies, PolicySource};
use cordon_lifecycle::time::window_start;

use super::common::{load_valid_policies, TrafficLines};
use super::Format;

/// The least severity that fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Any finding.
    Info,
    /// Low and above.
    Low,
    /// Medium and above.
    Medium,
    /// High only.
    High,
    /// Never fail.
    Never,
}

/// `cordon audit` options.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Policy files or directories.
    #[arg(long = "policy", required_unless_present = "config", num_args = 1..)]
    policy: Vec<PathBuf>,
    /// Traffic records (JSONL) or Envoy logs with `cordon.decision` lines; `-` for standard
    /// input.
    #[arg(long, required = true, num_args = 1..)]
    traffic: Vec<PathBuf>,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Exit 1 when there are findings at or above this severity.
    #[arg(long, value_enum, default_value = "high")]
    fail_on: FailOn,
    /// Audit window: ignore records older than this before `--now` (`7d`, `24h`).
    #[arg(long)]
    window: Option<String>,
    /// Ignore records older than this time (RFC 3339); instead of `--window`.
    #[arg(long)]
    since: Option<String>,
    /// The end of the window (RFC 3339); default: the current time.
    #[arg(long)]
    now: Option<String>,
    /// Istio's root namespace; default: the configuration's, else `istio-system`.
    #[arg(long)]
    root_namespace: Option<String>,
    /// The mesh's settings: a plugin configuration JSON as the filter takes it
    /// (`path_normalization`, `root_namespace`, `trust_domain`, `limits`, …; its
    /// `policies`, optional, are added to `--policy`). Default: the filter's defaults.
    #[arg(long)]
    config: Option<PathBuf>,

    /// Examples shown per traffic finding.
    #[arg(long, default_value_t = 5)]
    examples: usize,
    /// Report bad traffic lines but exit 0 for them (without it: exit 2 after the work).
    #[arg(long)]
    pub skip_bad_lines: bool,
}

/// Progress while the traffic is read: records read and the rate, redrawn on standard
/// error once a second, only when a person watches it ([`super::term::shows_progress`]):
/// a pipeline's log gets nothing.
struct RecordRate {
    enabled: bool,
    started: Instant,
    last: Instant,
    calls: u32,
    drawn: bool,
}

impl RecordRate {
    fn new() -> RecordRate {
        let now = Instant::now();
        RecordRate {
            enabled: super::term::shows_progress(),
            started: now,
            last: now,
            calls: 0,
            drawn: false,
        }
    }

    fn tick(&mut self, records: u64) {
        if !self.enabled {
            return;
        }
        // The first record draws at once (a person sees the work start); after that the
        // clock is read once per 256 lines: a million records cost 4,000 reads.
        self.calls = self.calls.wrapping_add(1);
        let now = if self.drawn {
            if !self.calls.is_multiple_of(256) {
                return;
            }
            let now = Instant::now();
            if now.duration_since(self.last) < Duration::from_secs(1) {
                return;
            }
            now
        } else {
            Instant::now()
        };
        self.last = now;
        let seconds = now.duration_since(self.started).as_secs_f64();
        let rate = if seconds > 0.0 {
            records as f64 / seconds
        } else {
            0.0
        };
        let mut err = std::io::stderr().lock();
        // Progress is a courtesy: a failing terminal write is not the command's failure.
        let _ = write!(
            err,
            "\r\x1b[2K  auditing: {records} records, {rate:.0} records/s, {seconds:.0} s"
        );
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line before the report.
    fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

/// Runs the audit.
pub fn run(args: AuditArgs) -> Result<ExitCode> {
    let mesh = MeshConfig::load(args.config.as_deref())?;
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
    let since = window_start(
        args.window.as_deref(),
        args.since.as_deref(),
        args.now.as_deref(),
    )
    .map_err(|error| anyhow!(error))?;
    let options = AuditOptions {
        since,
        root_namespace: args
            .root_namespace
            .unwrap_or_else(|| mesh.options.root_namespace.clone()),
        examples: args.examples,
        engine: mesh.options.clone(),
    };
    let mut audit = Audit::from_sources(sources, options)?;
    let mut progress = RecordRate::new();
    let tally = TrafficLines::new(&args.traffic).for_each(|line| {
        let read = audit.add_line(line);
        progress.tick(audit.summary().records);
        read
    })?;
    progress.finish();
    let mut report = audit.finish();
    report.summary.first_unreadable = tally.first_bad;
    match args.format {
        Format::Json => super::term::print(&format!("{}\n", report.to_json()))?,
        Format::Text => super::term::print(&report.to_text())?,
    }
    let threshold = match args.fail_on {
        FailOn::Info => Some(Severity::Info),
        FailOn::Low => Some(Severity::Low),
        FailOn::Medium => Some(Severity::Medium),
        FailOn::High => Some(Severity::High),
        FailOn::Never => None,
    };
    Ok(match threshold {
        Some(severity) if report.at_least(severity) > 0 => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
