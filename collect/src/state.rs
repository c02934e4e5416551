//! The collector's state and how it survives a restart.
//!
//! **What is kept.** The aggregates `cordon discover` and `cordon audit` build themselves
//! ([`Discovery`], and [`Audit`] when the collector has policies), fed every record as it
//! arrives, plus the request counters of `/metrics` and the alert book. Memory is bounded
//! by what the aggregates hold: per destination workload, one entry per (caller, method,
//! path template), with identifiers in paths folded into `{*}` as they arrive and at most
//! [`DiscoverOptions::max_paths`] entries (the lifecycle's `discover` module documentation,
//! "Bounded memory"); the audit's counts are bounded by the policies and the mesh. Never by
//! the number of requests, nor by the number of distinct paths.
//!
//! **On disk** (the `--state` directory):
//! - `snapshot.jsonl`: the aggregates as data ([`Discovery::to_state`],
//!   [`Audit::to_state`]), written whole to a temporary file, synced, renamed over the
//!   previous one, and the directory synced (a crash leaves the old snapshot or the new
//!   one, never a mix). Its first line is a header naming the format
//!   ([`SNAPSHOT_FORMAT`]) and the write-ahead segments it already holds.
//! - `wal-<n>.jsonl`: write-ahead segments, one traffic record per line (the record with
//!   its `time` and `decision`: the format every cordon tool reads, so `cordon discover
//!   --traffic wal-*.jsonl` reads a segment too) and `{"alert":…}` lines for the alert
//!   book. Every batch a proxy sends is appended to the current segment (one `write` per
//!   batch) *before* it is counted, so a killed process loses only the batch it was
//!   receiving: what the kernel was handed survives a `SIGKILL`. Segments are synced every
//!   `--sync-interval` (a power loss loses at most that much) and before an OTLP export is
//!   acknowledged.
//! - A snapshot starts a new segment and, once renamed, deletes the segments it holds.
//!
//! On start the snapshot is read, then every later segment's records are fed to the
//! aggregates in order, as they were when they arrived; a last line cut short by a crash
//! is reported and dropped, any other bad line is an error naming file and line. A
//! snapshot of another format (an older cordon's) is an error naming the file.
//! Several state directories merge ([`load_discovery`], `cordon discover --merge`) with
//! [`Discovery::merge`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cordon_lifecycle::audit::{Audit, AuditState};
use cordon_lifecycle::discover::{DiscoverOptions, Discovery, DiscoveryState};
use cordon_lifecycle::time::{format_rfc3339, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alerts::{AlertBook, AlertKey};
use crate::record::{from_line, Observed};

/// The snapshot's file name in the state directory.
pub const SNAPSHOT: &str = "snapshot.jsonl";

/// The snapshot format this collector writes and reads (1 held distinct records; 2 holds
/// the aggregates).
pub const SNAPSHOT_FORMAT: u32 = 2;

/// What the collector counts: the aggregates and the counters of `/metrics`.
#[derive(Clone)]
pub struct Aggregates {
    discovery: Discovery,
    audit: Option<Audit>,
    records: u64,
    denied: BTreeMap<(String, String), u64>,
}

impl std::fmt::Debug for Aggregates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregates")
            .field("records", &self.records)
            .field("entries", &self.discovery.aggregate_entries())
            .field("audit", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

impl Aggregates {
    /// Empty aggregates: a discovery with these options, and the audit when there are
    /// policies.
    pub fn new(discover: DiscoverOptions, audit: Option<Audit>) -> Aggregates {
        Aggregates {
            discovery: Discovery::new(discover),
            audit,
            records: 0,
            denied: BTreeMap::new(),
        }
    }

    /// Counts one request: `line` is its traffic line as written ahead
    /// ([`crate::record::write_line`]), which the discovery reads as `cordon discover`
    /// reads a line.
    pub fn add(&mut self, line: &[u8], observed: &Observed) {
        self.records += 1;
        let _ = self.discovery.add_line(line);
        if let Some(audit) = &mut self.audit {
            let mut record = observed.full_record();
            record.time = observed.time.map(format_rfc3339);
            audit.add_record(&record);
        }
        if observed.denied() {
            let pair = (
                observed.source_identity().unwrap_or("").to_string(),
                observed.destination_label(),
            );
            *self.denied.entry(pair).or_default() += 1;
        }
    }

    /// The discovery aggregate.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// The audit aggregate, when the collector has policies.
    pub fn audit(&self) -> Option<&Audit> {
        self.audit.as_ref()
    }

    /// Requests counted.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Denied requests per (source identity, destination workload).
    pub fn denied(&self) -> &BTreeMap<(String, String), u64> {
        &self.denied
    }
}

/// The snapshot's first line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// The format ([`SNAPSHOT_FORMAT`]).
    snapshot: u32,
    /// Segments up to this number are in the snapshot.
    wal_through: u64,
    /// Alerts raised, ever.
    alerts_total: u64,
    /// Requests counted, ever.
    records: u64,
}

/// The snapshot's other lines.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
enum Part {
    /// Denied requests per (source identity, destination workload, count).
    #[serde(rename = "denied")]
    Denied(Vec<(String, String, u64)>),
    /// The discovery aggregate.
    #[serde(rename = "discovery")]
    Discovery(Box<DiscoveryState>),
    /// The audit's counts.
    #[serde(rename = "audit")]
    Audit(Box<AuditState>),
    /// One alert of the book.
    #[serde(rename = "alert")]
    Alert(AlertKey),
}

/// A state directory read back.
struct Loaded {
    found_any: bool,
    last_segment: u64,
    alerts_total: u64,
    warnings: Vec<String>,
}

/// What a load feeds: the aggregates (and the book), or the discovery alone (a merge).
enum Target<'a> {
    Live(&'a mut Aggregates, &'a mut AlertBook),
    Discovery(&'a mut Discovery),
}

impl Target<'_> {
    fn discover_options(&self) -> DiscoverOptions {
        match self {
            Target::Live(aggregates, _) => aggregates.discovery.options().clone(),
            Target::Discovery(discovery) => discovery.options().clone(),
        }
    }
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if let Some(number) = name
            .strip_prefix("wal-")
            .and_then(|rest| rest.strip_suffix(".jsonl"))
            .and_then(|number| number.parse::<u64>().ok())
        {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("wal-{number:08}.jsonl"))
}

/// Reads a state directory into `target`: the snapshot, then the later segments.
fn load_dir(dir: &Path, target: &mut Target<'_>) -> Result<Loaded> {
    let mut loaded = Loaded {
        found_any: false,
        last_segment: 0,
        alerts_total: 0,
        warnings: Vec::new(),
    };
    let snapshot = dir.join(SNAPSHOT);
    let mut wal_through = 0;
    if snapshot.is_file() {
        loaded.found_any = true;
        let header = read_snapshot(&snapshot, target, &mut loaded.warnings)?;
        wal_through = header.wal_through;
        loaded.alerts_total = header.alerts_total;
        loaded.last_segment = wal_through;
    }
    for (number, path) in segments(dir)? {
        loaded.found_any = true;
        loaded.last_segment = loaded.last_segment.max(number);
        if number <= wal_through {
            // Already in the snapshot (the process stopped before deleting it).
            continue;
        }
        loaded.alerts_total += read_segment(&path, target, &mut loaded.warnings)?;
    }
    Ok(loaded)
}

fn read_snapshot(
    path: &Path,
    target: &mut Target<'_>,
    warnings: &mut Vec<String>,
) -> Result<Header> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = BufReader::new(file).lines();
    let first = lines
        .next()
        .transpose()
        .with_context(|| format!("cannot read {}", path.display()))?
        .unwrap_or_default();
    let format = serde_json::from_str::<Value>(&first)
        .ok()
        .and_then(|value| value.get("snapshot").and_then(Value::as_u64));
    match format {
        Some(format) if format == u64::from(SNAPSHOT_FORMAT) => {}
        Some(format) => bail!(
            "{}:1: snapshot format {format} is not read by this cordon (it reads {SNAPSHOT_FORMAT}){}",
            path.display(),
            if format == 1 {
                ": format 1 held distinct records, written by an older `cordon collect`; replay its records with that version, or start a new --state"
            } else {
                ""
            }
        ),
        None => bail!(
            "{}:1: not a snapshot of `cordon collect` (its first line is no snapshot header)",
            path.display()
        ),
    }
    let header: Header =
        serde_json::from_str(&first).map_err(|error| anyhow!("{}:1: {error}", path.display()))?;
    let options = target.discover_options();
    let mut discovery_seen = false;
    let mut audit_seen = false;
    for (index, line) in lines.enumerate() {
        let number = index + 2;
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let part: Part = serde_json::from_str(&line)
            .map_err(|error| anyhow!("{}:{number}: {error}", path.display()))?;
        match (part, &mut *target) {
            (Part::Discovery(state), Target::Live(aggregates, _)) => {
                aggregates.discovery = Discovery::from_state(options.clone(), *state)
                    .map_err(|error| anyhow!("{}:{number}: {error}", path.display()))?;
                discovery_seen = true;
            }
            (Part::Discovery(state), Target::Discovery(discovery)) => {
                let loaded = Discovery::from_state(options.clone(), *state)
                    .map_err(|error| anyhow!("{}:{number}: {error}", path.display()))?;
                discovery.merge(loaded);
                discovery_seen = true;
            }
            (Part::Audit(state), Target::Live(aggregates, _)) => {
                audit_seen = true;
                match &mut aggregates.audit {
                    Some(audit) => {
                        if let Err(error) = audit.absorb(*state) {
                            warnings.push(format!(
                                "{}:{number}: {error}: /audit counts from now on",
                                path.display()
                            ));
                        }
                    }
                    None => warnings.push(format!(
                        "{}:{number}: the state holds audit counts, but the collector has no policies: they are dropped at the next snapshot",
                        path.display()
                    )),
                }
            }
            (Part::Denied(pairs), Target::Live(aggregates, _)) => {
                for (source, destination, count) in pairs {
                    *aggregates.denied.entry((source, destination)).or_default() += count;
                }
            }
            (Part::Alert(key), Target::Live(_, book)) => book.restore(key, false),
            (Part::Audit(_) | Part::Denied(_) | Part::Alert(_), Target::Discovery(_)) => {}
        }
    }
    if !discovery_seen {
        bail!(
            "{}: the snapshot holds no discovery aggregate",
            path.display()
        );
    }
    if let Target::Live(aggregates, _) = target {
        aggregates.records = header.records;
        if aggregates.audit.is_some() && !audit_seen {
            warnings.push(format!(
                "{}: the state holds no audit counts (the collector had no policies): /audit counts from now on",
                path.display()
            ));
        }
    }
    Ok(header)
}

/// Feeds a segment's lines to the target; returns the alerts it recorded. A bad last
/// line (a write cut short) is a warning; any other bad line an error.
fn read_segment(path: &Path, target: &mut Target<'_>, warnings: &mut Vec<String>) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut buffer = Vec::new();
    let mut number = 0usize;
    let mut alerts = 0;
    let mut pending_error: Option<String> = None;
    loop {
        buffer.clear();
        let read = reader
            .read_until(b'\n', &mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        if let Some(error) = pending_error.take() {
            // The bad line was not the last one.
            bail!("{error}");
        }
        let complete = buffer.ends_with(b"\n");
        let line = buffer.trim_ascii_end();
        if line.is_empty() {
            continue;
        }
        match read_wal_line(line, target) {
            Ok(alert) => alerts += u64::from(alert),
            Err(error) => {
                let message = format!("{}:{number}: {error}", path.display());
                if complete {
                    pending_error = Some(message);
                } else {
                    warnings.push(format!("{message} (a last line cut short: dropped)"));
                }
            }
        }
    }
    if let Some(error) = pending_error {
        // A complete but bad last line: not a cut-short write.
        bail!("{error}");
    }
    Ok(alerts)
}

/// One segment line: an alert (`Ok(true)`) or a traffic record.
fn read_wal_line(line: &[u8], target: &mut Target<'_>) -> std::result::Result<bool, String> {
    if line.starts_with(b"{\"alert\"") {
        let part: Part = serde_json::from_slice(line).map_err(|error| error.to_string())?;
        let Part::Alert(key) = part else {
            return Err("not an alert".to_string());
        };
        if let Target::Live(_, book) = target {
            book.restore(key, true);
        }
        return Ok(true);
    }
    match target {
        Target::Live(aggregates, _) => {
            let observed = from_line(line)?.ok_or("not a traffic record")?;
            aggregates.add(line, &observed);
        }
        Target::Discovery(discovery) => {
            discovery.add_line(line)?;
        }
    }
    Ok(false)
}

/// The discovery aggregate of state directories (several: merged, as `cordon discover
/// --merge` wants), learned under `options` (a state learned under other learning options
/// is an error naming its file).
pub fn load_discovery(dirs: &[PathBuf], options: &DiscoverOptions) -> Result<Discovery> {
    let mut merged = Discovery::new(options.clone());
    for dir in dirs {
        if !dir.is_dir() {
            bail!(
                "{}: not a state directory of `cordon collect`",
                dir.display()
            );
        }
        let mut discovery = Discovery::new(options.clone());
        let loaded = load_dir(dir, &mut Target::Discovery(&mut discovery))?;
        if !loaded.found_any {
            bail!(
                "{}: no snapshot.jsonl or wal-*.jsonl: not a state directory of `cordon collect`",
                dir.display()
            );
        }
        for warning in loaded.warnings {
            eprintln!("cordon: warning: {warning}");
        }
        merged.merge(discovery);
    }
    Ok(merged)
}

/// The live state: the aggregates, the alert book, and the open write-ahead segment.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    aggregates: Aggregates,
    book: AlertBook,
    segment: File,
    segment_number: u64,
    buffer: Vec<u8>,
    lines: Vec<(usize, usize)>,
    warnings: Vec<String>,
}

/// A snapshot prepared under the lock, to be written without it.
#[derive(Debug)]
pub struct PendingSnapshot {
    dir: PathBuf,
    body: Vec<u8>,
    through: u64,
}

impl Store {
    /// Opens a state directory (created if missing): reads its snapshot and segments into
    /// the aggregates and starts a new segment.
    pub fn open(dir: &Path, alert_window: Millis, aggregates: Aggregates) -> Result<Store> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut aggregates = aggregates;
        let mut book = AlertBook::new(alert_window);
        let loaded = load_dir(dir, &mut Target::Live(&mut aggregates, &mut book))?;
        book.set_raised(loaded.alerts_total);
        let segment_number = loaded.last_segment + 1;
        let segment = open_segment(dir, segment_number)?;
        sync_dir(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            aggregates,
            book,
            segment,
            segment_number,
            buffer: Vec::with_capacity(1 << 16),
            lines: Vec::new(),
            warnings: loaded.warnings,
        })
    }

    /// What the load reported (last lines cut short by a crash, audit counts that could
    /// not be kept).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The aggregates.
    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// The alert book.
    pub fn book(&self) -> &AlertBook {
        &self.book
    }

    /// Appends a batch: written to the segment first (one write), then counted. Returns
    /// the alerts it raised (JSON objects), already recorded in the segment.
    pub fn append(&mut self, batch: &[Observed], now: Millis) -> Result<Vec<Value>> {
        self.buffer.clear();
        self.lines.clear();
        let mut alerts = Vec::new();
        for observed in batch {
            let start = self.buffer.len();
            crate::record::write_line(observed, &mut self.buffer);
            self.lines.push((start, self.buffer.len()));
            self.buffer.push(b'\n');
            if observed.denied() {
                if let Some((alert_key, alert)) = self.book.check(observed, now) {
                    let _ = serde_json::to_writer(&mut self.buffer, &Part::Alert(alert_key));
                    self.buffer.push(b'\n');
                    alerts.push(alert);
                }
            }
        }
        self.segment
            .write_all(&self.buffer)
            .with_context(|| format!("cannot write to {}", self.dir.display()))?;
        for (observed, (start, end)) in batch.iter().zip(&self.lines) {
            if let Some(line) = self.buffer.get(*start..*end) {
                self.aggregates.add(line, observed);
            }
        }
        Ok(alerts)
    }

    /// A handle on the current segment, to sync it without holding the state's lock.
    pub fn segment_handle(&self) -> Result<File> {
        Ok(self.segment.try_clone()?)
    }

    /// Starts a snapshot: moves to a new segment and serializes the aggregates (under the
    /// lock, so the snapshot holds exactly the segments it names).
    pub fn begin_snapshot(&mut self, now: Millis) -> Result<PendingSnapshot> {
        self.segment.sync_data()?;
        let through = self.segment_number;
        self.segment = open_segment(&self.dir, through + 1)?;
        self.segment_number = through + 1;
        self.book.prune(now);
        let mut body = Vec::with_capacity(1 << 16);
        let header = Header {
            snapshot: SNAPSHOT_FORMAT,
            wal_through: through,
            alerts_total: self.book.raised(),
            records: self.aggregates.records,
        };
        push_line(&mut body, &header)?;
        let denied: Vec<(String, String, u64)> = self
            .aggregates
            .denied
            .iter()
            .map(|((source, destination), count)| (source.clone(), destination.clone(), *count))
            .collect();
        push_line(&mut body, &Part::Denied(denied))?;
        push_line(
            &mut body,
            &Part::Discovery(Box::new(self.aggregates.discovery.to_state())),
        )?;
        if let Some(audit) = &self.aggregates.audit {
            push_line(&mut body, &Part::Audit(Box::new(audit.to_state())))?;
        }
        for key in self.book.keys() {
            push_line(&mut body, &Part::Alert(key))?;
        }
        Ok(PendingSnapshot {
            dir: self.dir.clone(),
            body,
            through,
        })
    }
}

/// One line of the snapshot.
fn push_line<T: Serialize>(body: &mut Vec<u8>, value: &T) -> Result<()> {
    serde_json::to_writer(&mut *body, value).context("cannot write the snapshot")?;
    body.push(b'\n');
    Ok(())
}

impl PendingSnapshot {
    /// Writes the snapshot atomically (temporary file, sync, rename, directory sync), then
    /// deletes the segments it holds.
    pub fn write(self) -> Result<()> {
        let target = self.dir.join(SNAPSHOT);
        let temporary = self.dir.join(format!("{SNAPSHOT}.tmp"));
        {
            let mut file = File::create(&temporary)
                .with_context(|| format!("cannot write {}", temporary.display()))?;
            file.write_all(&self.body)
                .with_context(|| format!("cannot write {}", temporary.display()))?;
            file.sync_all()
                .with_context(|| format!("cannot sync {}", temporary.display()))?;
        }
        fs::rename(&temporary, &target)
            .with_context(|| format!("cannot rename to {}", target.display()))?;
        sync_dir(&self.dir)?;
        for (number, path) in segments(&self.dir)? {
            if number <= self.through {
                fs::remove_file(&path)
                    .with_context(|| format!("cannot delete {}", path.display()))?;
            }
        }
        Ok(())
    }
}

fn open_segment(dir: &Path, number: u64) -> Result<File> {
    let path = segment_path(dir, number);
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}
