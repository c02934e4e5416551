//! `cordon test`: test suites (the corpus format of `policies/CORPUS-FORMAT.md`) through
//! the `.wasm`, each case also decided by the native engine: the two must agree.
//!
//! The suites are read and run by the corpus harness (`cordon-corpus`), the one the
//! engine's own tests use: typed cases that reject unknown keys, every load problem
//! reported at once, and the case counts a directory's `MANIFEST` pins.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use cordon_corpus::{
    Corpus, Engine, Entry, Filter, Manifest, Observed, Outcome, Rejection, Report, MANIFEST_FILE,
};
use cordon_engine::{PolicySet, TrafficRecord};
use cordon_host::mesh::MeshConfig;
use cordon_host::replay::{RunSettings, Runner, WasmDecision};
use cordon_host::{Host, LogLevel};
use cordon_lifecycle::sources::policy_files;
use serde_json::{json, Map, Value};

use super::common::load_host;
use super::term::{stdout, Progress};

/// `--format` of `cordon test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    /// One line per case, then `N passed, M failed`.
    Text,
    /// One JSON document: `suites`, `passed`, `failed`, `cases`.
    Json,
}

/// Runs every suite under `paths`.
pub fn run(
    paths: &[PathBuf],
    format: TestFormat,
    filter: Option<&str>,
    wasm: Option<PathBuf>,
    mesh: &MeshConfig,
) -> Result<ExitCode> {
    let suites = suite_files(paths)?;
    // The harness names a file by its file name; the output names it by its path.
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    for file in &suites {
        if let Some(name) = file.file_name() {
            let name = name.to_string_lossy().into_owned();
            if let Some(other) = shown.insert(name.clone(), file.display().to_string()) {
                anyhow::bail!(
                    "two suites are named {name} ({other} and {}): cases are reported by file name, so run them separately",
                    file.display()
                );
            }
        }
    }
    let corpus = match Corpus::load_files(&suites) {
        Ok(corpus) => corpus,
        Err(error) => {
            eprintln!("cordon: the suites cannot be loaded:");
            for problem in error.problems() {
                let placed = problem
                    .split_once(':')
                    .and_then(|(name, rest)| shown.get(name).map(|path| format!("{path}:{rest}")));
                eprintln!("  {}", placed.as_deref().unwrap_or(problem));
            }
            return Ok(ExitCode::from(2));
        }
    };
    let manifests = manifests(paths, &suites, &corpus)?;
    if !manifests.problems.is_empty() {
        eprintln!("cordon: the suites do not match their {MANIFEST_FILE}:");
        for problem in &manifests.problems {
            eprintln!("  {problem}");
        }
        return Ok(ExitCode::from(2));
    }

    let host = load_host(wasm)?;
    let filter = filter.map_or_else(Filter::all, Filter::containing);
    let selected = corpus
        .cases()
        .filter(|entry| filter.matches(entry.name()))
        .count();
    let mut engine = WasmEngine {
        host: &host,
        mesh,
        progress: Progress::new("cases", Some(selected)),
        done: 0,
    };
    let report = cordon_corpus::run(&corpus, &filter, &mut engine);
    engine.progress.finish();

    let file_of = |name: &str| shown.get(name).cloned().unwrap_or_else(|| name.to_string());
    let failed = report.failures().count();
    let passed = report.results.len() - failed;
    let mut out = stdout();
    match format {
        TestFormat::Json => {
            let cases: Vec<Value> = report
                .results
                .iter()
                .map(|result| {
                    json!({
                        "file": file_of(&result.file),
                        "name": result.case,
                        "passed": result.passed(),
                        "problems": result.problems,
                    })
                })
                .collect();
            writeln!(
                out,
                "{}",
                json!({"suites": report.ran.len(), "passed": passed, "failed": failed, "cases": cases})
            )?;
        }
        TestFormat::Text => {
            for result in &report.results {
                if result.passed() {
                    writeln!(out, "ok    {} :: {}", file_of(&result.file), result.case)?;
                } else {
                    writeln!(out, "FAIL  {} :: {}", file_of(&result.file), result.case)?;
                    for problem in &result.problems {
                        writeln!(out, "        {problem}")?;
                    }
                }
            }
            writeln!(out, "{passed} passed, {failed} failed")?;
        }
    }
    out.flush()?;
    if report.results.is_empty() {
        anyhow::bail!(match filter.substring() {
            Some(text) => format!("no test case has `{text}` in its name"),
            None => "no test case found under the given paths".to_string(),
        });
    }
    // A run of every case must have run exactly what each MANIFEST pins.
    let mut incomplete = false;
    if filter.substring().is_none() {
        for (dir, manifest, names) in &manifests.pinned {
            let part = Report {
                engine: format!("{}", dir.display()),
                ran: report
                    .ran
                    .iter()
                    .filter(|(name, _)| names.contains(*name))
                    .map(|(name, count)| (name.clone(), *count))
                    .collect(),
                ..Report::default()
            };
            if let Err(message) = part.check(Some(manifest)) {
                for line in message.lines().skip(1) {
                    eprintln!("cordon: {line}");
                }
                incomplete = true;
            }
        }
    }
    Ok(if failed == 0 && !incomplete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The suite files under `paths`: the JSON files whose top level has `cases` (policy
/// files and other JSON beside them are not suites, and are skipped).
fn suite_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut suites = Vec::new();
    for file in policy_files(paths).map_err(|error| anyhow!("{error}"))? {
        if file.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let document: Value = serde_json::from_str(&text).map_err(|error| {
            anyhow!(
                "{}:{}:{}: not JSON: {error}",
                file.display(),
                error.line(),
                error.column()
            )
        })?;
        if document.get("cases").is_some() {
            suites.push(file);
        }
    }
    Ok(suites)
}

/// The `MANIFEST`s that pin the suites.
struct Manifests {
    /// Each directory with a manifest, the manifest and the file names of its suites.
    pinned: Vec<(PathBuf, Manifest, Vec<String>)>,
    /// Every way the loaded suites differ from their manifests.
    problems: Vec<String>,
}

/// Reads the `MANIFEST` of every directory whose suites were all given (a directory
/// named on the command line, or one below it) and checks the loaded suites against it.
/// Suites named one by one are not held to their directory's manifest.
fn manifests(paths: &[PathBuf], suites: &[PathBuf], corpus: &Corpus) -> Result<Manifests> {
    let given: Vec<&PathBuf> = paths.iter().filter(|path| path.is_dir()).collect();
    let mut dirs: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for suite in suites {
        let (Some(dir), Some(name)) = (suite.parent(), suite.file_name()) else {
            continue;
        };
        if given.iter().any(|root| dir.starts_with(root)) && dir.join(MANIFEST_FILE).is_file() {
            dirs.entry(dir.to_path_buf())
                .or_default()
                .push(name.to_string_lossy().into_owned());
        }
    }
    let counts: BTreeMap<&str, usize> = corpus
        .files()
        .iter()
        .map(|file| (file.name.as_str(), file.cases.len()))
        .collect();
    let mut result = Manifests {
        pinned: Vec::new(),
        problems: Vec::new(),
    };
    for (dir, names) in dirs {
        let manifest = match Manifest::read_dir(&dir) {
            Ok(manifest) => manifest,
            Err(error) => {
                result.problems.extend(error.problems().iter().cloned());
                continue;
            }
        };
        let found = names.iter().filter_map(|name| {
            counts
                .get(name.as_str())
                .map(|count| (name.as_str(), *count))
        });
        result.problems.extend(
            manifest
                .compare(found, "loaded")
                .into_iter()
                .map(|problem| format!("{}: {problem}", dir.display())),
        );
        result.pinned.push((dir, manifest, names));
    }
    Ok(result)
}

/// The `.wasm` in the Wasmtime host, each case also decided by the native engine.
struct WasmEngine<'h> {
    host: &'h Host,
    mesh: &'h MeshConfig,
    progress: Progress,
    done: usize,
}

impl Engine for WasmEngine<'_> {
    fn name(&self) -> &str {
        "wasm"
    }

    fn run(&mut self, entry: &Entry<'_>) -> Result<Outcome, String> {
        self.done += 1;
        self.progress.tick(self.done);
        self.run_case(entry).map_err(|error| format!("{error:#}"))
    }
}

impl WasmEngine<'_> {
    fn run_case(&self, entry: &Entry<'_>) -> Result<Outcome> {
        let policies = self.mesh.with_policies(entry.policies().to_vec());
        // The mesh's settings (`--config`), the suite's and the case's options over them.
        let mut settings: Map<String, Value> = self.mesh.settings.clone();
        settings.extend(entry.options().settings());
        let case_mesh =
            MeshConfig::from_value(&Value::Object(settings), None).context("the case's options")?;
        let Some(request) = entry.request() else {
            return self.configure_only(policies, &case_mesh);
        };
        let record = TrafficRecord::from_json(request)
            .map_err(|error| anyhow!("bad request record: {error}"))?;
        let native = PolicySet::compile(&policies, case_mesh.options_for(record.workload()));
        let mut runner = Runner::new(self.host, policies, RunSettings::of(&case_mesh));
        let warnings = match (runner.plugin_for(&record), &native) {
            (Ok(plugin), _) => plugin
                .start_report()
                .logs
                .iter()
                .filter(|log| log.level == LogLevel::Warn)
                .map(|log| log.message.clone())
                .collect(),
            // The filter refused the configuration, as the native engine does.
            (Err(error), Err(_)) => {
                return Ok(Outcome::Rejected(vec![Rejection {
                    policy: None,
                    field: None,
                    message: format!("{error:#}"),
                }]))
            }
            (Err(error), Ok(_)) => {
                return Err(error.context("the native engine compiles these policies"))
            }
        };
        let native = native.map_err(|error| {
            anyhow!("the filter accepts these policies, the native engine refuses them: {error}")
        })?;
        let wasm = runner.decide(&record)?;
        let decision = native.evaluate(&record.request(), &mut native.new_scratch());
        let name = |rule: Option<cordon_engine::RuleRef>| {
            rule.map(|rule| native.rule_id(rule).to_string())
        };
        let native_view = WasmDecision {
            allowed: decision.allowed,
            status: decision.status,
            policy: name(decision.policy),
            audit: name(decision.audit),
            dry_run_allowed: decision.dry_run.allowed,
            dry_run_policy: name(decision.dry_run.rule),
            // The filter reads the peer certificate only when a policy needs it, so it
            // cannot say more about an identity it never looked at.
            identity: if native.needs().peer_identity {
                decision.identity.name().to_string()
            } else {
                wasm.identity.clone()
            },
            reason: decision.reason.name().to_string(),
        };
        let mut problems = Vec::new();
        if wasm != native_view {
            problems.push(format!(
                "wasm and native engine disagree: wasm {wasm:?}, native {native_view:?}"
            ));
        }
        Ok(Outcome::Decided(Observed {
            allowed: wasm.allowed,
            status: wasm.status,
            policy: wasm.policy,
            audit: wasm.audit,
            dry_run_allowed: wasm.dry_run_allowed,
            dry_run_policy: wasm.dry_run_policy,
            identity: Some(wasm.identity),
            warnings,
            problems,
        }))
    }

    /// A case without a request: the filter must accept or refuse its configuration, and
    /// the native engine must agree.
    fn configure_only(&self, policies: Vec<Value>, case_mesh: &MeshConfig) -> Result<Outcome> {
        let native = PolicySet::compile(&policies, case_mesh.options.clone());
        let runner = Runner::new(self.host, policies, RunSettings::of(case_mesh));
        let config = runner.plugin_config(None, &BTreeMap::new());
        let plugin = self.host.start(b"", config.to_string().as_bytes())?;
        let report = plugin.start_report();
        match (report.accepted, native) {
            (true, Ok(_)) => Ok(Outcome::Accepted),
            (false, Err(_)) => {
                let said: Vec<&str> = report.logs.iter().map(|log| log.message.as_str()).collect();
                Ok(Outcome::Rejected(vec![Rejection {
                    policy: None,
                    field: None,
                    message: said.join(" "),
                }]))
            }
            (true, Err(error)) => Err(anyhow!(
                "the filter accepts these policies, the native engine refuses them: {error}"
            )),
            (false, Ok(_)) => Err(anyhow!(
                "the filter refuses these policies, the native engine compiles them: {}",
                report
                    .logs
                    .iter()
                    .map(|log| log.message.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        }
    }
}
