//! `cordon test`: test suites (the corpus format of `policies/CORPUS-FORMAT.md`) through
//! the `.wasm`, each case also decided by the native engine: the two must agree.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use cordon_host::mesh::MeshConfig;
use cordon_host::replay::{RunSettings, Runner, WasmDecision};
use cordon_lifecycle::sources::policy_files;
use cordon_host::Host;
use cordon_engine::{PolicySet, TrafficRecord};
use serde_json::{json, Map, Value};

use super::common::load_host;
use super::Format;

struct CaseResult {
    file: String,
    name: String,
    problems: Vec<String>,
}

/// Runs every suite under `paths`.
pub fn run(
    paths: &[PathBuf],
    format: Format,
    filter: Option<&str>,
    wasm: Option<PathBuf>,
    mesh: &MeshConfig,
) -> Result<ExitCode> {
    let host = load_host(wasm)?;
    let mut results = Vec::new();
    let mut suites = 0;
    for file in policy_files(paths).map_err(|error| anyhow::anyhow!("{error}"))? {
        if file.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let document: Value = serde_json::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "{}:{}:{}: not JSON: {error}",
                file.display(),
                error.line(),
                error.column()
            )
        })?;
        let Some(cases) = document.get("cases").and_then(Value::as_array) else {
            continue;
        };
        suites += 1;
        for case in cases {
            let name = case
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)")
                .to_string();
            if filter.is_some_and(|filter| !name.contains(filter)) {
                continue;
            }
            let problems = run_case(&host, mesh, &document, case)
                .unwrap_or_else(|error| vec![format!("could not run: {error:#}")]);
            results.push(CaseResult {
                file: display(&file),
                name,
                problems,
            });
        }
    }
    let failed = results
        .iter()
        .filter(|result| !result.problems.is_empty())
        .count();
    let passed = results.len() - failed;
    match format {
        Format::Json => {
            let cases: Vec<Value> = results
                .iter()
                .map(|r| json!({"file": r.file, "name": r.name, "passed": r.problems.is_empty(), "problems": r.problems}))
                .collect();
            println!(
                "{}",
                json!({"suites": suites, "passed": passed, "failed": failed, "cases": cases})
            );
        }
        _ => {
            for result in &results {
                if result.problems.is_empty() {
                    println!("ok    {} :: {}", result.file, result.name);
                } else {
                    println!("FAIL  {} :: {}", result.file, result.name);
                    for problem in &result.problems {
                        println!("        {problem}");
                    }
                }
            }
            println!("{passed} passed, {failed} failed");
        }
    }
    if results.is_empty() {
        anyhow::bail!("no test case found under the given paths");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The case's settings: the mesh configuration (`--config`), then the suite's and the
/// case's `options` over it, as the plugin configuration spells them (read by the filter's
/// parser, so a suite may set any key the filter takes).
fn settings(mesh: &MeshConfig, document: &Value, case: &Value) -> Result<Map<String, Value>> {
    let mut merged = mesh.settings.clone();
    for source in [document.get("options"), case.get("options")]
        .into_iter()
        .flatten()
    {
        for (key, value) in source.as_object().context("options must be an object")? {
            merged.insert(key.clone(), value.clone());
        }
    }
    Ok(merged)
}

fn run_case(host: &Host, mesh: &MeshConfig, document: &Value, case: &Value) -> Result<Vec<String>> {
    let policies: Vec<Value> = mesh.with_policies(
        case.get("policies")
            .or_else(|| document.get("policies"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    );
    let expect = case.get("expect").context("case has no `expect`")?;
    let extra = settings(mesh, document, case)?;
    let mut problems = Vec::new();

    if let Some(expected) = expect.get("error") {
        // The filter must refuse the configuration and say why.
        let runner_settings = RunSettings {
            extra,
            ..RunSettings::default()
        };
        let runner = Runner::new(host, policies.clone(), runner_settings);
        let config = runner.plugin_config(None, &Default::default());
        let plugin = host.start(b"", config.to_string().as_bytes())?;
        let report = plugin.start_report();
        if report.accepted {
            problems.push(format!(
                "wasm: expected the configuration to be rejected ({expected})"
            ));
        } else {
            let said: Vec<&str> = report.logs.iter().map(|log| log.message.as_str()).collect();
            let said = said.join(" ").to_lowercase();
            for key in ["field", "contains"] {
                if let Some(text) = expected.get(key).and_then(Value::as_str) {
                    if !said.contains(&text.to_lowercase()) {
                        problems.push(format!("wasm: rejection does not mention `{text}`: {said}"));
                    }
                }
            }
        }
        return Ok(problems);
    }

    let record = TrafficRecord::from_json(case.get("request").context("case has no `request`")?)
        .map_err(|error| anyhow::anyhow!("bad request record: {error}"))?;
    let case_mesh =
        MeshConfig::from_value(&Value::Object(extra), None).context("the case's options")?;
    let runner_settings = RunSettings::of(&case_mesh);
    let options = case_mesh.options_for(record.workload());
    let native =
        PolicySet::compile(&policies, options).map_err(|error| anyhow::anyhow!("{error}"))?;
    let decision = native.evaluate(&record.request(), &mut native.new_scratch());
    let name =
        |rule: Option<cordon_engine::RuleRef>| rule.map(|rule| native.rule_id(rule).to_string());
    let native_view = WasmDecision {
        allowed: decision.allowed,
        status: decision.status,
        policy: name(decision.policy),
        audit: name(decision.audit),
        dry_run_allowed: decision.dry_run.allowed,
        dry_run_policy: name(decision.dry_run.rule),
        identity: decision.identity.name().to_string(),
        reason: decision.reason.name().to_string(),
    };
    let mut runner = Runner::new(host, policies, runner_settings);
    let wasm = runner.decide(&record)?;
    // The filter reads the peer certificate only when a policy needs it, so it cannot say
    // more about an identity it never looked at.
    let mut native_view = native_view;
    if !native.needs().peer_identity {
        native_view.identity.clone_from(&wasm.identity);
    }
    if wasm != native_view {
        problems.push(format!(
            "wasm and native engine disagree: wasm {wasm:?}, native {native_view:?}"
        ));
    }
    let expected_allowed = expect.get("decision").and_then(Value::as_str) == Some("allow");
    let expected_status = expect
        .get("status")
        .and_then(Value::as_u64)
        .unwrap_or(if expected_allowed { 200 } else { 403 });
    if wasm.allowed != expected_allowed || u64::from(wasm.status) != expected_status {
        problems.push(format!(
            "expected {} ({expected_status}), got {} ({}) by {:?}",
            if expected_allowed { "allow" } else { "deny" },
            if wasm.allowed { "allow" } else { "deny" },
            wasm.status,
            wasm.policy
        ));
    }
    let optional = |key: &str| {
        expect
            .get(key)
            .map(|value| value.as_str().map(str::to_string))
    };
    if let Some(policy) = optional("policy") {
        if wasm.policy != policy {
            problems.push(format!(
                "expected deciding policy {policy:?}, got {:?}",
                wasm.policy
            ));
        }
    }
    if let Some(audit) = optional("audit") {
        if wasm.audit != audit {
            problems.push(format!("expected audit {audit:?}, got {:?}", wasm.audit));
        }
    }
    if let Some(dry_run) = expect.get("dry_run") {
        let allowed = dry_run.get("decision").and_then(Value::as_str) == Some("allow");
        let policy_differs = dry_run
            .get("policy")
            .is_some_and(|policy| wasm.dry_run_policy.as_deref() != policy.as_str());
        if wasm.dry_run_allowed != allowed || policy_differs {
            problems.push(format!(
                "expected dry-run {dry_run}, got allowed={} by {:?}",
                wasm.dry_run_allowed, wasm.dry_run_policy
            ));
        }
    }
    if let Some(identity) = expect.get("identity").and_then(Value::as_str) {
        if wasm.identity != identity {
            problems.push(format!(
                "expected identity {identity}, got {}",
                wasm.identity
            ));
        }
    }
    Ok(problems)
}
