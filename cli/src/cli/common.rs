//! What several subcommands share: finding the module, reading policy files, and reading
//! traffic under one bad-line policy.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use cordon_engine::model::parse_policies;
use cordon_engine::traffic::{self, Line};
use cordon_engine::{PolicyError, TrafficRecord};
use cordon_host::Host;
use cordon_lifecycle::sources::{load_policies, PolicySource};
use serde_json::Value;

/// The filter module this binary carries: `cordon_filter.wasm` as built with it (by
/// `build.rs`), so that the binary works wherever it is copied or installed.
pub const EMBEDDED_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cordon_filter.wasm"));

/// The hex SHA-256 of [`EMBEDDED_WASM`], computed when it was embedded.
pub const EMBEDDED_WASM_SHA256: &str = env!("CORDON_WASM_SHA256");

/// The filter module to run: the file `--wasm` names, else the file `CORDON_WASM` names,
/// else the one this binary carries.
pub fn wasm_bytes(explicit: Option<PathBuf>) -> Result<(Vec<u8>, String)> {
    match explicit.or_else(|| std::env::var_os("CORDON_WASM").map(PathBuf::from)) {
        Some(path) => {
            let bytes = std::fs::read(&path).map_err(|error| {
                anyhow!(
                    "cannot read the filter module {}: {error}\n  leave out --wasm (and CORDON_WASM) to use the one built into cordon",
                    path.display()
                )
            })?;
            Ok((bytes, path.display().to_string()))
        }
        None => Ok((
            EMBEDDED_WASM.to_vec(),
            "the cordon_filter.wasm built into cordon".to_string(),
        )),
    }
}

/// Loads and compiles the module.
pub fn load_host(explicit: Option<PathBuf>) -> Result<Host> {
    let (bytes, name) = wasm_bytes(explicit)?;
    Host::load(&bytes).with_context(|| format!("loading {name}"))
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

// The bad-line policy, one for every command that reads traffic (`simulate`, `bench`,
// `explain --traffic`, `discover`, `audit`): each bad line is reported on standard error as
// `file:line: what is wrong` and counted, the command reads on and does its work, and then
// exits 2 if any line was bad, unless `--skip-bad-lines`. The count is the process's, as
// standard error is: [`TrafficLines`] adds to it, `main` applies it ([`bad_lines_exit`]).
static BAD_LINES: AtomicU64 = AtomicU64::new(0);
static SKIP_BAD_LINES: AtomicBool = AtomicBool::new(false);

/// `--skip-bad-lines`: bad lines are still reported, and the command exits as if there
/// were none.
pub fn skip_bad_lines(skip: bool) {
    SKIP_BAD_LINES.store(skip, Ordering::Relaxed);
}

/// The command's exit code under the bad-line policy: 2 when a traffic line was bad and
/// `--skip-bad-lines` was not given, else `code`.
pub fn bad_lines_exit(code: ExitCode) -> ExitCode {
    let bad = BAD_LINES.load(Ordering::Relaxed);
    if bad == 0 || SKIP_BAD_LINES.load(Ordering::Relaxed) {
        return code;
    }
    eprintln!(
        "cordon: {bad} bad traffic line{} (above); --skip-bad-lines reads past them and exits 0",
        if bad == 1 { "" } else { "s" }
    );
    ExitCode::from(2)
}

/// What reading traffic found, for the command's summary.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Traffic records read.
    pub records: u64,
    /// Log lines without a decision record, skipped.
    pub log_lines: u64,
    /// Bad lines, reported and skipped.
    pub bad: u64,
    /// The first bad line: `file:line: what is wrong`.
    pub first_bad: Option<String>,
}

impl Tally {
    /// `N records; M log lines without a decision record skipped; K bad lines`.
    pub fn describe(&self) -> String {
        let plural = |count: u64, one: &str, many: &str| {
            format!("{count} {}", if count == 1 { one } else { many })
        };
        format!(
            "{}; {} without a decision record skipped; {}",
            plural(self.records, "record", "records"),
            plural(self.log_lines, "log line", "log lines"),
            plural(self.bad, "bad line", "bad lines"),
        )
    }
}

/// The one loop over traffic lines: the files in order (`-` is standard input), each line
/// classified by the engine ([`cordon_engine::traffic::classify`]) through the reader the
/// caller gives, bad lines reported and counted under the bad-line policy, log lines
/// without a record counted. Memory stays at one line. At the end, when anything was
/// skipped, one summary line goes to standard error.
pub struct TrafficLines {
    paths: Vec<PathBuf>,
    /// The next file to open.
    next_path: usize,
    /// The file being read, and the number of its last line.
    current: Option<(PathBuf, Box<dyn BufRead>, usize)>,
    buffer: Vec<u8>,
    tally: Tally,
    finished: bool,
}

impl TrafficLines {
    /// Reads `paths` in order.
    pub fn new(paths: &[PathBuf]) -> TrafficLines {
        TrafficLines {
            paths: paths.to_vec(),
            next_path: 0,
            current: None,
            buffer: Vec::with_capacity(4096),
            tally: Tally::default(),
            finished: false,
        }
    }

    /// The next record, as `read` reads lines (a [`Line`] per line, `Err` why the line is
    /// bad): `(file, line number, record)`. `None` at the end of the last file; `Err` on an
    /// I/O error.
    pub fn next_record<T>(
        &mut self,
        mut read: impl FnMut(&[u8]) -> Result<Line<T>, String>,
    ) -> Option<Result<(usize, T)>> {
        loop {
            let number = match self.next_line() {
                Ok(Some(number)) => number,
                Ok(None) => {
                    self.finish();
                    return None;
                }
                Err(error) => return Some(Err(error)),
            };
            let line = self.buffer.strip_suffix(b"\n").unwrap_or(&self.buffer);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match read(line) {
                Ok(Line::Record(record)) => {
                    self.tally.records += 1;
                    return Some(Ok((number, record)));
                }
                Ok(Line::LogLine) => self.tally.log_lines += 1,
                Ok(Line::Nothing) => {}
                Err(error) => {
                    let path = self.current.as_ref().map(|(path, _, _)| path.display());
                    let located = match path {
                        Some(path) => format!("{path}:{number}: {error}"),
                        None => format!("line {number}: {error}"),
                    };
                    eprintln!("{located}");
                    BAD_LINES.fetch_add(1, Ordering::Relaxed);
                    self.tally.bad += 1;
                    self.tally.first_bad.get_or_insert(located);
                }
            }
        }
    }

    /// Reads every line with `read` (for readers that borrow the line), to the end.
    pub fn for_each(
        mut self,
        mut read: impl FnMut(&[u8]) -> Result<Line<()>, String>,
    ) -> Result<Tally> {
        while let Some(next) = self.next_record(&mut read) {
            next?;
        }
        Ok(self.tally)
    }

    /// Fills the buffer with the next line; its number.
    fn next_line(&mut self) -> Result<Option<usize>> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.paths.get(self.next_path) else {
                    return Ok(None);
                };
                self.next_path += 1;
                let reader: Box<dyn BufRead> = if path == Path::new("-") {
                    Box::new(std::io::BufReader::new(std::io::stdin()))
                } else {
                    let file = std::fs::File::open(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    Box::new(std::io::BufReader::with_capacity(1 << 20, file))
                };
                self.current = Some((path.clone(), reader, 0));
            }
            let Some((path, reader, number)) = self.current.as_mut() else {
                continue;
            };
            self.buffer.clear();
            let read = reader
                .read_until(b'\n', &mut self.buffer)
                .with_context(|| format!("{}:{}: cannot read", path.display(), *number + 1))?;
            if read == 0 {
                self.current = None;
                continue;
            }
            *number += 1;
            return Ok(Some(*number));
        }
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.tally.bad > 0 || self.tally.log_lines > 0 {
            let names: Vec<String> = self
                .paths
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            eprintln!("{}: {}", names.join(", "), self.tally.describe());
        }
    }
}

/// Streams traffic records from a file (or `-` for standard input), one at a time, so a
/// replay holds only the record at hand. Lines are read by the engine
/// ([`cordon_engine::traffic::read_line`]): plain records, Envoy log lines (text or JSON)
/// carrying decision records; blank lines, `#` comments and other log lines are skipped.
/// Bad lines are reported and counted under the bad-line policy ([`TrafficLines`]), not
/// yielded; an item is an error only when the file cannot be read.
pub fn traffic_stream(path: &Path) -> Result<TrafficStream> {
    if path != Path::new("-") {
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(TrafficStream {
        lines: TrafficLines::new(&[path.to_path_buf()]),
    })
}

/// The records of a traffic file: see [`traffic_stream`].
pub struct TrafficStream {
    lines: TrafficLines,
}

impl Iterator for TrafficStream {
    type Item = Result<Numbered>;

    fn next(&mut self) -> Option<Result<Numbered>> {
        self.lines
            .next_record(traffic::read_line)
            .map(|next| next.map(|(line, record)| Numbered { line, record }))
    }
}

/// Reads all traffic records of a file (or `-` for standard input), as
/// [`traffic_stream`] does.
pub fn read_traffic(path: &Path) -> Result<Vec<Numbered>> {
    traffic_stream(path)?.collect()
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
