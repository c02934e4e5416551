//! What several subcommands share: finding the module, reading policy files and traffic.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cordon_lifecycle::sources::{load_policies, PolicySource};
use cordon_host::Host;
use cordon_engine::model::parse_policies;
use cordon_engine::{PolicyError, TrafficRecord};
use serde_json::Value;

/// The filter module: `--wasm`, else `CORDON_WASM`, else the workspace's release build.
pub fn wasm_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("CORDON_WASM").map(PathBuf::from))
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("wasm32-wasip1/release/cordon_filter.wasm")
        })
}

/// Loads and compiles the module.
pub fn load_host(explicit: Option<PathBuf>) -> Result<Host> {
    let path = wasm_path(explicit);
    let bytes = std::fs::read(&path).map_err(|error| {
        anyhow!(
            "cannot read the filter module {}: {error}\n  build it with: cargo build -p cordon-filter --release --target wasm32-wasip1\n  or point --wasm (or CORDON_WASM) at one",
            path.display()
        )
    })?;
    Host::load(&bytes).with_context(|| format!("loading {}", path.display()))
}

/// A policy error placed in its file: `file:line:column: policy `ns/name`: field: message`.
pub fn place(sources: &[PolicySource], error: &PolicyError) -> String {
    match sources.get(error.index) {
        Some(source) => {
            let (line, column) = source.locate(&error.field);
            format!("{}:{line}:{column}: {error}", source.file.display())
        }
        None => error.to_string(),
    }
}

/// Reads policy files and validates them; any error is fatal and names file and line.
pub fn load_valid_policies(paths: &[PathBuf]) -> Result<Vec<Value>> {
    let sources = load_policies(paths).map_err(|error| anyhow!("{error}"))?;
    let values: Vec<Value> = sources.iter().map(|source| source.value.clone()).collect();
    let (_, _, errors) = parse_policies(&values);
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(|error| place(&sources, error)).collect();
        bail!("invalid policies:\n  {}", lines.join("\n  "));
    }
    Ok(values)
}

/// One traffic record with where it came from.
pub struct Numbered {
    /// 1-based line number in its file.
    pub line: usize,
    /// The record.
    pub record: TrafficRecord,
}

/// Streams traffic records from a JSONL file (or `-` for standard input), one at a time,
/// so a replay holds only the record at hand; same line rules as [`read_traffic`].
pub fn traffic_stream(path: &Path) -> Result<impl Iterator<Item = Result<Numbered>> + '_> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Box::new(std::io::BufReader::with_capacity(1 << 20, file))
    };
    Ok(reader
        .lines()
        .enumerate()
        .filter_map(move |(position, line)| {
            let number = position + 1;
            let parsed = line
                .with_context(|| format!("{}:{number}: cannot read", path.display()))
                .and_then(|line| {
                    parse_traffic_line(&line)
                        .map_err(|error| anyhow!("{}:{number}: {error}", path.display()))
                });
            match parsed {
                Ok(Some(record)) => Some(Ok(Numbered {
                    line: number,
                    record,
                })),
                Ok(None) => None,
                Err(error) => Some(Err(error)),
            }
        }))
}

/// Reads traffic records from a JSONL file (or `-` for standard input). Lines of an
/// Envoy log that carry a decision record (`cordon.decision {...}`) are read too; blank
/// lines and `#` comments are skipped. A bad line is an error naming file and line.
pub fn read_traffic(path: &Path) -> Result<Vec<Numbered>> {
    traffic_stream(path)?.collect()
}

/// One line of traffic: a record, a decision log line, or nothing.
pub fn parse_traffic_line(line: &str) -> Result<Option<TrafficRecord>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let json = match trimmed.find("cordon.decision {") {
        Some(at) if !trimmed.starts_with('{') => {
            trimmed.get(at + "cordon.decision ".len()..).unwrap_or("")
        }
        _ => trimmed,
    };
    if !json.starts_with('{') {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(json)
        .map_err(|error| format!("not a JSON traffic record: {error}"))?;
    TrafficRecord::from_json(&value).map(Some)
}

/// `source principal` as shown in tables.
pub fn identity_label(record: &TrafficRecord) -> String {
    match (&record.principal, record.mtls) {
        (Some(_), Some(false)) | (None, _) => "(no identity)".to_string(),
        (Some(principal), _) => principal
            .strip_prefix("spiffe://")
            .unwrap_or(principal)
            .to_string(),
    }
}

/// `namespace/app` (or the labels) of the destination.
pub fn workload_label(record: &TrafficRecord) -> String {
    let namespace = record.destination_namespace.as_deref().unwrap_or("*");
    match record.destination_labels.get("app") {
        Some(app) => format!("{namespace}/{app}"),
        None if record.destination_labels.is_empty() => namespace.to_string(),
        None => {
            let labels: Vec<String> = record
                .destination_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{namespace}/{}", labels.join(","))
        }
    }
}
