//! The collector's state and how it survives a restart.
//!
//! **What is kept.** Records equal but for their time are counted under one key (the
//! record's JSON without `time`, [`Observed::key`]) with the number of requests and the
//! first and last time: exactly what `discover` and `audit` keep of a record's time, so
//! replaying the table ([`Table::discover`], [`Table::audit`]) gives what they would
//! give on every record. Memory grows with the number of distinct records (caller,
//! destination, method, raw path, host, port, decision), never with the number of
//! requests.
//!
//! **On disk** (the `--state` directory):
//! - `snapshot.jsonl`: the table, written whole to a temporary file, synced, renamed over
//!   the previous one, and the directory synced (a crash leaves the old snapshot or the new
//!   one, never a mix). Its first line says which write-ahead segments it already holds.
//! - `wal-<n>.jsonl`: write-ahead segments. Every batch a proxy sends is appended to the
//!   current segment (one `write` per batch) *before* it is counted, so a killed process
//!   loses only the batch it was receiving: what the kernel was handed survives a
//!   `SIGKILL`. Segments are synced every `--sync-interval` (a power loss loses at most
//!   that much) and before an OTLP export is acknowledged.
//! - A snapshot starts a new segment and, once renamed, deletes the segments it holds.
//!
//! On start the snapshot is read, then every later segment in order; a last line cut
//! short by a crash is reported and dropped, any other bad line is an error naming file
//! and line. One line format serves snapshot and segments: `{"timed":N,"untimed":N,
//! "first":MS,"last":MS,"record":{...}}`, or `{"alert":{...}}` for the alert book.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use cordon_engine::TrafficRecord;
use cordon_lifecycle::audit::Audit;
use cordon_lifecycle::discover::Discovery;
use cordon_lifecycle::input::{LiteRecord, Text};
use cordon_lifecycle::time::{format_rfc3339, Millis};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::alerts::{AlertBook, AlertKey};
use crate::record::Observed;

/// The snapshot's file name in the state directory.
pub const SNAPSHOT: &str = "snapshot.jsonl";

/// Requests under one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests with a time.
    pub timed: u64,
    /// Requests without one.
    pub untimed: u64,
    /// Earliest time.
    pub first: Option<Millis>,
    /// Latest time.
    pub last: Option<Millis>,
}

impl Tally {
    /// One request at `time`.
    pub fn one(time: Option<Millis>) -> Tally {
        match time {
            Some(time) => Tally {
                timed: 1,
                untimed: 0,
                first: Some(time),
                last: Some(time),
            },
            None => Tally {
                timed: 0,
                untimed: 1,
                first: None,
                last: None,
            },
        }
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        self.timed += other.timed;
        self.untimed += other.untimed;
        self.first = min_option(self.first, other.first);
        self.last = max_option(self.last, other.last);
    }

    /// Requests.
    pub fn count(&self) -> u64 {
        self.timed + self.untimed
    }

    /// The times to replay the requests with: the first, the last, and the first again
    /// for the others (what the aggregates keep of times is their count, minimum and
    /// maximum), then `None` for the untimed ones.
    fn times(&self) -> impl Iterator<Item = Option<Millis>> + '_ {
        let timed = (0..self.timed).map(move |index| {
            if index + 1 == self.timed && self.timed > 1 {
                self.last
            } else {
                self.first
            }
        });
        timed.chain((0..self.untimed).map(|_| None))
    }

    fn write_line(&self, key: &str, out: &mut Vec<u8>) {
        let millis = |value: Option<Millis>| value.map_or("null".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "{{\"timed\":{},\"untimed\":{},\"first\":{},\"last\":{},\"record\":{key}}}",
            self.timed,
            self.untimed,
            millis(self.first),
            millis(self.last)
        );
    }
}

fn min_option(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_option(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The records seen, counted per key.
#[derive(Debug, Clone, Default)]
pub struct Table {
    entries: HashMap<Arc<str>, Tally>,
    records: u64,
    denied: BTreeMap<(String, String), u64>,
}

impl Table {
    /// Adds requests under a key.
    pub fn add(&mut self, key: &str, tally: &Tally) {
        self.records += tally.count();
        match self.entries.get_mut(key) {
            Some(known) => known.merge(tally),
            None => {
                self.entries.insert(Arc::from(key), *tally);
            }
        }
    }

    /// Adds requests under a key, counting denied ones per (source, destination).
    fn add_observed(&mut self, key: &str, tally: &Tally, denied: Option<(String, String)>) {
        self.add(key, tally);
        if let Some(pair) = denied {
            *self.denied.entry(pair).or_default() += tally.count();
        }
    }

    /// Requests seen.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Distinct records (keys) held.
    pub fn distinct(&self) -> usize {
        self.entries.len()
    }

    /// Denied requests per (source identity, destination workload).
    pub fn denied(&self) -> &BTreeMap<(String, String), u64> {
        &self.denied
    }

    /// The entries, sorted by key (a stable order for replays and snapshots).
    pub fn entries(&self) -> Vec<(Arc<str>, Tally)> {
        let mut entries: Vec<(Arc<str>, Tally)> = self
            .entries
            .iter()
            .map(|(key, tally)| (Arc::clone(key), *tally))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    /// Feeds every request to a discovery, as `cordon discover` would read the records.
    pub fn discover(entries: &[(Arc<str>, Tally)], discovery: &mut Discovery) -> Result<()> {
        for (key, tally) in entries {
            let texts: Vec<Option<String>> = [tally.first, tally.last]
                .into_iter()
                .map(|time| time.map(format_rfc3339))
                .collect();
            let text_of = |time: Option<Millis>| -> Option<&str> {
                let index = match time {
                    None => return None,
                    Some(time) if Some(time) == tally.first => 0,
                    Some(_) => 1,
                };
                texts.get(index).and_then(|text| text.as_deref())
            };
            let mut record: LiteRecord<'_> = serde_json::from_str(key)
                .map_err(|error| anyhow!("a stored record cannot be read: {error}"))?;
            for time in tally.times() {
                record.time = text_of(time).map(|text| Text(text.into()));
                discovery.add_record(&record);
            }
        }
        Ok(())
    }

    /// Feeds every request to an audit, as `cordon audit` would read the records.
    pub fn audit(entries: &[(Arc<str>, Tally)], audit: &mut Audit) -> Result<()> {
        for (key, tally) in entries {
            let value: Value = serde_json::from_str(key)
                .map_err(|error| anyhow!("a stored record cannot be read: {error}"))?;
            let mut record = TrafficRecord::from_json(&value)
                .map_err(|error| anyhow!("a stored record cannot be read: {error}"))?;
            let first = tally.first.map(format_rfc3339);
            let last = tally.last.map(format_rfc3339);
            for time in tally.times() {
                record.time = match time {
                    None => None,
                    Some(time) if Some(time) == tally.first => first.clone(),
                    Some(_) => last.clone(),
                };
                audit.add_record(&record);
            }
        }
        Ok(())
    }
}

/// A stored line of the table.
#[derive(Deserialize)]
struct EntryLine<'a> {
    timed: u64,
    untimed: u64,
    first: Option<Millis>,
    last: Option<Millis>,
    #[serde(borrow)]
    record: &'a RawValue,
}

/// The snapshot's first line.
#[derive(Deserialize)]
struct Header {
    /// The format version (1).
    snapshot: u32,
    /// Segments up to this number are in the snapshot.
    wal_through: u64,
    /// Alerts raised, ever.
    alerts_total: u64,
}

/// An alert-book line.
#[derive(Deserialize)]
struct AlertLine {
    alert: AlertKey,
}

/// What a line of the state directory holds.
enum Stored<'a> {
    Header(Header),
    Entry(EntryLine<'a>),
    Alert(AlertKey),
}

fn parse_line(line: &str) -> std::result::Result<Stored<'_>, String> {
    if line.starts_with("{\"snapshot\"") {
        serde_json::from_str(line)
            .map(Stored::Header)
            .map_err(|error| error.to_string())
    } else if line.starts_with("{\"alert\"") {
        serde_json::from_str::<AlertLine>(line)
            .map(|line| Stored::Alert(line.alert))
            .map_err(|error| error.to_string())
    } else {
        serde_json::from_str(line)
            .map(Stored::Entry)
            .map_err(|error| error.to_string())
    }
}

/// Reads the table of state directories (several: their union, as `--merge` wants).
pub fn load_tables(dirs: &[PathBuf]) -> Result<Table> {
    let mut table = Table::default();
    let mut book = AlertBook::default();
    for dir in dirs {
        if !dir.is_dir() {
            bail!(
                "{}: not a state directory of `cordon collect`",
                dir.display()
            );
        }
        let loaded = load_dir(dir, &mut table, &mut book)?;
        if !loaded.found_any {
            bail!(
                "{}: no snapshot.jsonl or wal-*.jsonl: not a state directory of `cordon collect`",
                dir.display()
            );
        }
    }
    Ok(table)
}

struct Loaded {
    found_any: bool,
    last_segment: u64,
    alerts_total: u64,
    warnings: Vec<String>,
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

fn load_dir(dir: &Path, table: &mut Table, book: &mut AlertBook) -> Result<Loaded> {
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
        let header = read_lines(&snapshot, table, book, false, &mut loaded.warnings)?;
        let Some(header) = header else {
            bail!(
                "{}:1: the first line is not a snapshot header",
                snapshot.display()
            );
        };
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
        let before = book.raised();
        read_lines(&path, table, book, true, &mut loaded.warnings)?;
        loaded.alerts_total += book.raised() - before;
    }
    Ok(loaded)
}

/// Reads one file's lines into the table and book; returns the header when the file
/// starts with one. In a segment, a bad last line (a write cut short) is a warning.
fn read_lines(
    path: &Path,
    table: &mut Table,
    book: &mut AlertBook,
    segment: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<Header>> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut header = None;
    let mut buffer = String::new();
    let mut number = 0usize;
    let mut pending_error: Option<String> = None;
    loop {
        buffer.clear();
        let read = reader
            .read_line(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        if let Some(error) = pending_error.take() {
            // The bad line was not the last one.
            bail!("{error}");
        }
        let complete = buffer.ends_with('\n');
        let line = buffer.trim_end();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(Stored::Header(found)) if number == 1 && !segment => {
                if found.snapshot != 1 {
                    bail!(
                        "{}:1: snapshot format {} is not known (1 is)",
                        path.display(),
                        found.snapshot
                    );
                }
                header = Some(found);
            }
            Ok(Stored::Header(_)) => {
                bail!(
                    "{}:{number}: a snapshot header out of place",
                    path.display()
                );
            }
            Ok(Stored::Entry(entry)) => {
                let key = entry.record.get();
                let tally = Tally {
                    timed: entry.timed,
                    untimed: entry.untimed,
                    first: entry.first,
                    last: entry.last,
                };
                let denied = denied_pair(key);
                table.add_observed(key, &tally, denied);
            }
            Ok(Stored::Alert(key)) => book.restore(key, segment),
            Err(error) => {
                let message = format!("{}:{number}: {error}", path.display());
                if segment && !complete {
                    warnings.push(format!("{message} (a last line cut short: dropped)"));
                } else if segment {
                    pending_error = Some(message);
                } else {
                    bail!("{message}");
                }
            }
        }
    }
    if let Some(error) = pending_error {
        // A complete but bad last line: not a cut-short write.
        bail!("{error}");
    }
    Ok(header)
}

/// For a stored key whose decision says denied: (source identity, destination label).
fn denied_pair(key: &str) -> Option<(String, String)> {
    if !key.contains("\"allowed\":false") {
        return None;
    }
    let value: Value = serde_json::from_str(key).ok()?;
    let record = TrafficRecord::from_json(&value).ok()?;
    let observed = Observed {
        decision: value.get("decision").cloned(),
        record,
        time: None,
    };
    observed.denied().then(|| {
        (
            observed.source_identity().unwrap_or("").to_string(),
            observed.destination_label(),
        )
    })
}

/// The live state: the table, the alert book, and the open write-ahead segment.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    table: Table,
    book: AlertBook,
    segment: File,
    segment_number: u64,
    buffer: Vec<u8>,
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
    /// Opens a state directory (created if missing): reads its snapshot and segments and
    /// starts a new segment.
    pub fn open(dir: &Path, alert_window: Millis) -> Result<Store> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut table = Table::default();
        let mut book = AlertBook::new(alert_window);
        let loaded = load_dir(dir, &mut table, &mut book)?;
        book.set_raised(loaded.alerts_total);
        let segment_number = loaded.last_segment + 1;
        let segment = open_segment(dir, segment_number)?;
        sync_dir(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            table,
            book,
            segment,
            segment_number,
            buffer: Vec::with_capacity(1 << 16),
            warnings: loaded.warnings,
        })
    }

    /// What the load reported (last lines cut short by a crash).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The alert book.
    pub fn book(&self) -> &AlertBook {
        &self.book
    }

    /// Appends a batch: written to the segment first (one write), then counted. Returns
    /// the alerts it raised (JSON objects), already recorded in the segment.
    pub fn append(&mut self, batch: &[Observed], now: Millis) -> Result<Vec<Value>> {
        self.buffer.clear();
        let mut keys = Vec::with_capacity(batch.len());
        let mut alerts = Vec::new();
        for observed in batch {
            let key = observed.key();
            Tally::one(observed.time).write_line(&key, &mut self.buffer);
            if observed.denied() {
                if let Some((alert_key, alert)) = self.book.check(observed, now) {
                    let line = serde_json::json!({ "alert": alert_key });
                    let _ = writeln!(self.buffer, "{line}");
                    alerts.push(alert);
                }
            }
            keys.push(key);
        }
        self.segment
            .write_all(&self.buffer)
            .with_context(|| format!("cannot write to {}", self.dir.display()))?;
        for (observed, key) in batch.iter().zip(&keys) {
            let denied = observed.denied().then(|| {
                (
                    observed.source_identity().unwrap_or("").to_string(),
                    observed.destination_label(),
                )
            });
            self.table
                .add_observed(key, &Tally::one(observed.time), denied);
        }
        Ok(alerts)
    }

    /// A handle on the current segment, to sync it without holding the state's lock.
    pub fn segment_handle(&self) -> Result<File> {
        Ok(self.segment.try_clone()?)
    }

    /// Starts a snapshot: moves to a new segment and serializes the table (under the
    /// lock, so the snapshot holds exactly the segments it names).
    pub fn begin_snapshot(&mut self, now: Millis) -> Result<PendingSnapshot> {
        self.segment.sync_data()?;
        let through = self.segment_number;
        self.segment = open_segment(&self.dir, through + 1)?;
        self.segment_number = through + 1;
        self.book.prune(now);
        let mut body = Vec::with_capacity(self.table.distinct() * 256 + 128);
        // Written by hand: the key order is fixed (readers look for `{"snapshot"`),
        // whether or not serde_json keeps insertion order.
        let _ = writeln!(
            body,
            "{{\"snapshot\":1,\"wal_through\":{through},\"alerts_total\":{}}}",
            self.book.raised()
        );
        for (key, tally) in self.table.entries() {
            tally.write_line(&key, &mut body);
        }
        for key in self.book.keys() {
            let _ = writeln!(body, "{}", serde_json::json!({ "alert": key }));
        }
        Ok(PendingSnapshot {
            dir: self.dir.clone(),
            body,
            through,
        })
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn replay_times_keep_count_first_and_last() {
        let mut tally = Tally::one(Some(5));
        tally.merge(&Tally::one(Some(1)));
        tally.merge(&Tally::one(Some(9)));
        tally.merge(&Tally::one(None));
        let times: Vec<Option<Millis>> = tally.times().collect();
        assert_eq!(times, vec![Some(1), Some(1), Some(9), None]);
        assert_eq!(
            Tally::one(Some(3)).times().collect::<Vec<_>>(),
            vec![Some(3)]
        );
    }
}
