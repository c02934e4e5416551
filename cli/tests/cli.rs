//! The `cordon` binary, run as a user runs it, against the shipped filter module.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;
use run::filter;
use run::{cordon, repo, stderr, stdout, tempdir};

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const SHOP_POLICIES: &str = "policies/examples/shop/policies.yaml";
const SHOP_TRAFFIC: &str = "policies/examples/shop/traffic.jsonl";

#[test]
fn the_whole_corpus_passes_through_the_wasm_and_agrees_with_the_native_engine() {
    let output = cordon(&["test", "policies/"]);
    let text = stdout(&output);
    let last = text.lines().last().unwrap_or_default();
    assert!(
        output.status.success(),
        "{last}\n{}",
        text.lines()
            .filter(|l| l.starts_with("FAIL") || l.starts_with("  "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 578, "{last}");
    assert!(last.ends_with("passed, 0 failed"), "{last}");
}

#[test]
fn a_failing_case_fails_the_run_with_what_differed() {
    let dir = tempdir();
    let suite = serde_json::json!({
        "description": "a case that fails on purpose",
        "cases": [{
            "name": "wrong-on-purpose",
            "policies": [{"metadata": {"name": "p", "namespace": "ns"}, "spec": {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}],
            "request": {"request": {"method": "GET", "path": "/"}},
            "expect": {"decision": "deny"}
        }]
    });
    let file = dir.join("suite.json");
    std::fs::write(&file, suite.to_string()).unwrap();
    let output = cordon(&["test", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["failed"], 1);
    assert!(
        report["cases"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("expected deny"),
        "{report}"
    );
}

#[test]
fn simulate_prints_one_decision_per_record_in_order() {
    let output = cordon(&[
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--format",
        "jsonl",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 24);
    // The expectations the shop corpus file holds for the same records.
    let corpus: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("policies/corpus/shop-example.json")).unwrap(),
    )
    .unwrap();
    for (line, case) in lines.iter().zip(corpus["cases"].as_array().unwrap()) {
        assert_eq!(
            line["decision"], case["expect"]["decision"],
            "{}: {line}",
            case["name"]
        );
        if let Some(policy) = case["expect"].get("policy") {
            assert_eq!(&line["policy"], policy, "{}", case["name"]);
        }
    }
    assert_eq!(lines[7]["line"], 8);
    assert_eq!(
        lines[7]["audit"],
        "ns[istio-system]-policy[audit-writes]-rule[0]"
    );
}

#[test]
fn simulate_table_and_baseline_show_what_a_change_would_block() {
    let output = cordon(&[
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
    ]);
    assert!(output.status.success());
    assert!(
        stdout(&output).contains("24 requests: 7 allowed, 17 denied"),
        "{}",
        stdout(&output)
    );

    // A stricter set: the orders policy loses its POST rule.
    let dir = tempdir();
    let text = std::fs::read_to_string(repo().join(SHOP_POLICIES)).unwrap();
    let stricter = text.replace(
        "methods: [\"POST\"]\n        paths: [\"/v1/orders\"]",
        "methods: [\"POST\"]\n        paths: [\"/v1/orders-never\"]",
    );
    assert_ne!(stricter, text, "the edit must apply to the example");
    let file = dir.join("stricter.yaml");
    std::fs::write(&file, stricter).unwrap();
    let output = cordon(&[
        "simulate",
        "--policy",
        file.to_str().unwrap(),
        "--baseline",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--fail-on-change",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(text.contains("1 of 24 requests change decision"), "{text}");
    assert!(text.contains("line 3: cluster.local/ns/shop/sa/frontend -> shop/orders POST /v1/orders: allow (200) -> deny (403)"), "{text}");
}

#[test]
fn simulate_reads_decision_logs_and_names_bad_lines() {
    let dir = tempdir();
    let log = dir.join("envoy.log");
    let record = std::fs::read_to_string(repo().join(SHOP_TRAFFIC))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&log, format!("[2026-11-27 02:29:55.671][2788][info][wasm] wasm log cordon: cordon.decision {record}\nunrelated line\n")).unwrap();
    let output = cordon(&[
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        log.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).lines().count(), 1);

    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        format!("{record}\n{{\"request\": {{\"methd\": \"GET\"}}}}\n"),
    )
    .unwrap();
    let output = cordon(&[
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("bad.jsonl:2: request: unknown field `methd`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_reports_errors_with_file_line_and_column() {
    let output = cordon(&["check", "policies/examples/shop/"]);
    assert!(output.status.success(), "{}", stdout(&output));
    let dir = tempdir();
    let file = dir.join("typo.yaml");
    std::fs::write(
        &file,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: typo\n  namespace: finance\nspec:\n  rules:\n  - to:\n    - operation:\n        pathz: [\"/admin\"]\n",
    )
    .unwrap();
    let output = cordon(&["check", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let text = stdout(&output);
    assert!(text.contains("typo.yaml:10:9: error: policy `finance/typo`: spec.rules[0].to[0].operation.pathz: unknown field `pathz` (did you mean `paths`?)"), "{text}");
    assert!(
        !text.contains("empty operation"),
        "one typo, one error: {text}"
    );

    let file = dir.join("open.yaml");
    std::fs::write(
        &file,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: open\nspec:\n  rules:\n  - to:\n    - operation:\n        paths: [\"/a//b\"]\n",
    )
    .unwrap();
    let output = cordon(&["check", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let output = cordon(&[
        "check",
        "--strict",
        "--format",
        "json",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["warnings"], 2, "{report}");
}

#[test]
fn config_produces_what_the_filter_accepts() {
    let output = cordon(&[
        "config",
        "--policy",
        SHOP_POLICIES,
        "--workload-namespace",
        "finance",
        "--workload-label",
        "app=billing-service",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let config: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(config["workload"]["labels"]["app"], "billing-service");
    let host = cordon_host::Host::load(&std::fs::read(filter::wasm_path()).unwrap()).unwrap();
    let plugin = host.start(b"", stdout(&output).as_bytes()).unwrap();
    assert!(plugin.start_report().accepted);

    let output = cordon(&[
        "config",
        "--policy",
        SHOP_POLICIES,
        "--istio",
        "--image",
        "oci://registry.example.com/cordon:0.1.0",
    ]);
    let manifest = stdout(&output);
    assert!(
        manifest.contains("kind: WasmPlugin") && manifest.contains("phase: AUTHZ"),
        "{manifest}"
    );
    let documents = cordon_lifecycle::sources::parse_documents(&manifest).unwrap();
    let plugin_config = &documents[0].value["spec"]["pluginConfig"];
    assert_eq!(plugin_config["policies"].as_array().unwrap().len(), 4);
}

#[test]
fn bench_reports_both_engines() {
    let output = cordon(&[
        "bench",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--iterations",
        "20",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(report["native"]["median_ns"].as_u64().unwrap() > 0);
    assert!(report["wasm"]["median_ns"].as_u64().unwrap() > 0);
    assert!(report["replay_records_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_missing_module_is_named_with_the_way_back_to_the_built_in_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args([
            "simulate",
            "--policy",
            SHOP_POLICIES,
            "--traffic",
            SHOP_TRAFFIC,
            "--wasm",
            "/nonexistent/cordon_filter.wasm",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    // The binary carries its module (cli/build.rs): a missing `--wasm` file is named, with
    // the way back to the built-in one.
    assert!(error.contains("/nonexistent/cordon_filter.wasm"), "{error}");
    assert!(
        error.contains("to use the one built into cordon"),
        "{error}"
    );
}

#[test]
fn the_module_imports_only_what_envoy_serves_and_exports_the_abi() {
    let bytes = std::fs::read(filter::wasm_path()).unwrap();
    assert!(
        bytes.len() <= 1024 * 1024,
        "cordon_filter.wasm is {} bytes, over 1 MiB",
        bytes.len()
    );
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &bytes).unwrap();
    const WASI: &[&str] = &[
        "fd_write",
        "environ_get",
        "environ_sizes_get",
        "proc_exit",
        "random_get",
        "clock_time_get",
        "args_get",
        "args_sizes_get",
        "sched_yield",
    ];
    for import in module.imports() {
        match import.module() {
            "env" => assert!(
                import.name().starts_with("proxy_"),
                "unexpected import env.{}",
                import.name()
            ),
            "wasi_snapshot_preview1" => assert!(
                WASI.contains(&import.name()),
                "unexpected WASI import {}",
                import.name()
            ),
            other => panic!("import from unexpected module {other}.{}", import.name()),
        }
    }
    let exports: Vec<&str> = module.exports().map(|export| export.name()).collect();
    for required in [
        "proxy_abi_version_0_2_1",
        "proxy_on_memory_allocate",
        "proxy_on_context_create",
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_done",
        "proxy_on_log",
        "proxy_on_delete",
        "memory",
        "_initialize",
    ] {
        assert!(
            exports.contains(&required),
            "missing export {required}: {exports:?}"
        );
    }
}

#[test]
fn every_host_call_on_the_logging_path_is_served() {
    // A denied request with decision logging reads the header map, claims, addresses and
    // writes a log line: every one of those host calls must be answered without a trap.
    let host = cordon_host::Host::load(&std::fs::read(filter::wasm_path()).unwrap()).unwrap();
    let policies: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("policies/examples/shop/policies.json")).unwrap(),
    )
    .unwrap();
    let config = serde_json::json!({"policies": policies, "workload": {"namespace": "finance", "labels": {"app": "billing-service"}}, "decision_log": {"allow_sample_rate": 1.0}});
    let mut plugin = host.start(b"", config.to_string().as_bytes()).unwrap();
    assert!(
        plugin.start_report().accepted,
        "{:?}",
        plugin.start_report().logs
    );
    let records = std::fs::read_to_string(repo().join(SHOP_TRAFFIC)).unwrap();
    for line in records.lines() {
        let record =
            cordon_engine::TrafficRecord::from_json(&serde_json::from_str(line).unwrap()).unwrap();
        let outcome = plugin
            .handle(&cordon_host::replay::exchange_for(&record))
            .unwrap();
        assert!(
            outcome.logged("cordon.decision {"),
            "every request is logged at rate 1: {:?}",
            outcome.logs()
        );
        assert!(
            !outcome
                .logs()
                .iter()
                .any(|log| log.level == cordon_host::LogLevel::Critical),
            "{:?}",
            outcome.logs()
        );
    }
    assert_eq!(
        plugin.metric("cordon.requests.allowed").unwrap()
            + plugin.metric("cordon.requests.denied").unwrap(),
        24
    );
}

/// A DENY on `/admin` for `finance`, traffic whose paths Istio's normalization modes tell
/// apart, and one `--config` file per mode, in a fresh directory.
struct MeshFixture {
    dir: PathBuf,
}

impl MeshFixture {
    const PATHS: [&'static str; 5] = ["//admin", "/a/%2e%2e/admin", "/x%2Fy", "/admin", "/ok"];

    fn new() -> MeshFixture {
        let dir = tempdir();
        std::fs::write(
            dir.join("deny-admin.yaml"),
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin, namespace: finance}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {paths: [\"/admin\"]}}]}]\n",
        )
        .unwrap();
        let traffic: Vec<String> = Self::PATHS
            .iter()
            .map(|path| {
                serde_json::json!({
                    "source": {"principal": "spiffe://cluster.local/ns/shop/sa/a"},
                    "destination": {"namespace": "finance", "labels": {"app": "billing"}},
                    "request": {"method": "GET", "path": path}
                })
                .to_string()
            })
            .collect();
        std::fs::write(dir.join("traffic.jsonl"), traffic.join("\n")).unwrap();
        for mode in ["STRICT", "BASE"] {
            std::fs::write(
                dir.join(format!("{mode}.json")),
                serde_json::json!({"path_normalization": mode}).to_string(),
            )
            .unwrap();
        }
        MeshFixture { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// `cordon simulate` on the traffic: (path, status) per record.
    fn simulate(&self, config: Option<&str>) -> Vec<(String, u64)> {
        let (policy, traffic) = (self.path("deny-admin.yaml"), self.path("traffic.jsonl"));
        let mut args = vec![
            "simulate",
            "--policy",
            &policy,
            "--traffic",
            &traffic,
            "--format",
            "jsonl",
        ];
        let config = config.map(|name| self.path(name));
        if let Some(config) = &config {
            args.extend(["--config", config]);
        }
        let output = cordon(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
            .lines()
            .map(|line| {
                let line: Value = serde_json::from_str(line).unwrap();
                (
                    line["path"].as_str().unwrap().to_string(),
                    line["status"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

fn statuses(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs
        .iter()
        .map(|(path, status)| (path.to_string(), *status))
        .collect()
}

#[test]
fn simulate_decides_as_the_configured_path_normalization_does() {
    let mesh = MeshFixture::new();
    let strict = statuses(&[
        ("//admin", 403),
        ("/a/%2e%2e/admin", 403),
        ("/x%2Fy", 400),
        ("/admin", 403),
        ("/ok", 200),
    ]);
    assert_eq!(
        mesh.simulate(None),
        strict,
        "the filter's default is STRICT"
    );
    assert_eq!(mesh.simulate(Some("STRICT.json")), strict);
    // Istio's default mesh (BASE): slashes are not merged, `%2F` passes through unchanged,
    // dot segments (decoded `%2e` too) are still resolved.
    assert_eq!(
        mesh.simulate(Some("BASE.json")),
        statuses(&[
            ("//admin", 200),
            ("/a/%2e%2e/admin", 403),
            ("/x%2Fy", 200),
            ("/admin", 403),
            ("/ok", 200),
        ])
    );
}

#[test]
fn config_policies_join_the_policy_files_and_bad_configs_name_file_and_field() {
    let mesh = MeshFixture::new();
    let policy: Value = serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "no-ok", "namespace": "finance"},
        "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/ok"]}}]}]}
    });
    std::fs::write(
        mesh.dir.join("with-policies.json"),
        serde_json::json!({"path_normalization": "BASE", "policies": [policy]}).to_string(),
    )
    .unwrap();
    assert_eq!(
        mesh.simulate(Some("with-policies.json")),
        statuses(&[
            ("//admin", 200),
            ("/a/%2e%2e/admin", 403),
            ("/x%2Fy", 200),
            ("/admin", 403),
            ("/ok", 403),
        ]),
        "both the file's and the configuration's policies judge"
    );
    // The configuration alone is enough.
    let (config, traffic) = (mesh.path("with-policies.json"), mesh.path("traffic.jsonl"));
    let output = cordon(&["simulate", "--config", &config, "--traffic", &traffic]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("5 requests: 4 allowed, 1 denied"),
        "{}",
        stdout(&output)
    );

    let cases = [
        (
            r#"{"path_normalisation": "BASE"}"#,
            "path_normalisation: unknown field",
        ),
        (
            r#"{"path_normalization": "LOOSE"}"#,
            "path_normalization: unknown mode `LOOSE`",
        ),
        (
            r#"{"limits": {"max_rules": 0}}"#,
            "limits.max_rules: expected a positive integer",
        ),
        (
            r#"{"policies": [{"metadata": {"name": "p"}, "spec": {"action": "NOPE"}}]}"#,
            "policies[0].spec.action",
        ),
        (r#"{"path_normalization": "BASE",}"#, "not JSON"),
        ("[]", "expected a JSON object"),
    ];
    for (text, expected) in cases {
        let file = mesh.dir.join("bad.json");
        std::fs::write(&file, text).unwrap();
        let file = file.to_str().unwrap();
        for command in [
            vec!["simulate", "--config", file, "--traffic", &traffic],
            vec![
                "test",
                "policies/corpus/shop-example.json",
                "--config",
                file,
            ],
            vec!["bench", "--config", file, "--traffic", &traffic],
            vec!["audit", "--config", file, "--traffic", &traffic],
            vec!["blast-radius", "--config", file],
            vec!["discover", "--config", file, "--traffic", &traffic],
        ] {
            let output = cordon(&command);
            assert_eq!(output.status.code(), Some(2), "{command:?} with {text}");
            let said = stderr(&output);
            assert!(
                said.contains(file) && said.contains(expected),
                "{command:?} with {text}: {said}"
            );
        }
    }
}

#[test]
fn test_takes_the_config_under_the_suites_own_options() {
    let mesh = MeshFixture::new();
    let suite = serde_json::json!({
        "description": "the mesh's normalization under the case's",
        "policies": [{"metadata": {"name": "no-admin", "namespace": "finance"},
                      "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}}],
        "cases": [
            {"name": "double-slash", "request": {"request": {"method": "GET", "path": "//admin"}},
             "expect": {"decision": "allow"}},
            {"name": "escaped-slash", "request": {"request": {"method": "GET", "path": "/x%2Fy"}},
             "expect": {"decision": "allow"}},
            {"name": "the-case-says-strict", "options": {"path_normalization": "STRICT"},
             "request": {"request": {"method": "GET", "path": "//admin"}},
             "expect": {"decision": "deny"}}
        ]
    });
    let file = mesh.dir.join("suite.json");
    std::fs::write(&file, suite.to_string()).unwrap();
    let file = file.to_str().unwrap();
    let output = cordon(&["test", file]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).ends_with("1 passed, 2 failed\n"),
        "{}",
        stdout(&output)
    );
    let base = mesh.path("BASE.json");
    let output = cordon(&["test", file, "--config", &base]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).ends_with("3 passed, 0 failed\n"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn bench_takes_the_config() {
    let mesh = MeshFixture::new();
    std::fs::write(
        mesh.dir.join("one-policy.json"),
        r#"{"limits": {"max_policies": 1}}"#,
    )
    .unwrap();
    let config = mesh.path("one-policy.json");
    let run = |config: Option<&str>| {
        let mut args = vec![
            "bench",
            "--policy",
            SHOP_POLICIES,
            "--traffic",
            SHOP_TRAFFIC,
        ];
        args.extend(["--iterations", "1", "--format", "json"]);
        if let Some(config) = config {
            args.extend(["--config", config]);
        }
        cordon(&args)
    };
    assert!(run(None).status.success());
    let output = run(Some(&config));
    assert!(
        !output.status.success(),
        "the shop has more than one policy"
    );
    assert!(stderr(&output).contains("polic"), "{}", stderr(&output));
    let base = mesh.path("BASE.json");
    assert!(
        run(Some(&base)).status.success(),
        "{}",
        stderr(&run(Some(&base)))
    );
}

#[test]
fn audit_judges_under_the_config() {
    let mesh = MeshFixture::new();
    let (policy, traffic) = (mesh.path("deny-admin.yaml"), mesh.path("traffic.jsonl"));
    let summary = |config: &str| {
        let config = mesh.path(config);
        let output = cordon(&[
            "audit",
            "--policy",
            &policy,
            "--traffic",
            &traffic,
            "--config",
            &config,
            "--format",
            "json",
            "--fail-on",
            "never",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
        (
            report["summary"]["allowed"].as_u64().unwrap(),
            report["summary"]["denied"].as_u64().unwrap(),
            report["summary"]["path_rejected"].as_u64().unwrap(),
        )
    };
    assert_eq!(summary("STRICT.json"), (1, 4, 1));
    assert_eq!(summary("BASE.json"), (3, 2, 0));
}

#[test]
fn blast_radius_takes_the_root_namespace_and_policies_from_the_config() {
    let mesh = MeshFixture::new();
    let policy = serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "mesh-wide", "namespace": "mesh-root"},
        "spec": {"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/a"]}}]}]}
    });
    for (name, config) in [
        ("plain.json", serde_json::json!({"policies": [policy]})),
        (
            "root.json",
            serde_json::json!({"policies": [policy], "root_namespace": "mesh-root"}),
        ),
    ] {
        std::fs::write(mesh.dir.join(name), config.to_string()).unwrap();
    }
    let workloads = |config: &str| {
        let config = mesh.path(config);
        let output = cordon(&["blast-radius", "--config", &config, "--format", "json"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
        report["workloads"].clone()
    };
    assert_eq!(workloads("plain.json"), serde_json::json!(["mesh-root/*"]));
    assert_eq!(
        workloads("root.json"),
        serde_json::json!([]),
        "in the root namespace it is mesh-wide, not a workload of its own"
    );
}

#[test]
fn discover_learns_paths_as_the_configured_normalization_presents_them() {
    let mesh = MeshFixture::new();
    let traffic = mesh.path("traffic.jsonl");
    let learn = |config: &str| {
        let config = mesh.path(config);
        let output = cordon(&["discover", "--traffic", &traffic, "--config", &config, "-q"]);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    let strict = learn("STRICT.json");
    assert!(
        !strict.contains("%2F") && !strict.contains("\"//admin\""),
        "{strict}"
    );
    let base = learn("BASE.json");
    assert!(
        base.contains("\"/x%2Fy\"") && base.contains("\"//admin\""),
        "{base}"
    );
}

#[test]
fn simulate_presents_records_as_the_config_says_the_filter_reads_them() {
    let mesh = MeshFixture::new();
    let policy = serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "admins-from-the-office", "namespace": "finance"},
        "spec": {"rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/a"], "remoteIpBlocks": ["203.0.113.0/24"]}}],
            "when": [{"key": "request.auth.claims[groups]", "values": ["admin"]}]
        }]}
    });
    let record = |remote: &str, groups: Value| {
        serde_json::json!({
            "source": {"principal": "spiffe://cluster.local/ns/shop/sa/a", "ip": "10.0.0.5"},
            "remote": {"ip": remote},
            "destination": {"namespace": "finance"},
            "request": {"method": "GET", "path": "/", "auth": {"claims": {"groups": groups}}}
        })
        .to_string()
    };
    let traffic = [
        record("203.0.113.9", serde_json::json!([7, "admin"])),
        record("203.0.113.9", serde_json::json!(true)),
        record("203.0.113.9", serde_json::json!({"admin": ""})),
        record("198.51.100.1", serde_json::json!("admin")),
    ];
    std::fs::write(mesh.dir.join("presented.jsonl"), traffic.join("\n")).unwrap();
    let expected = ["allow", "deny", "deny", "deny"];
    for (name, settings) in [
        ("defaults.json", serde_json::json!({})),
        (
            "presented.json",
            serde_json::json!({
                "identity": {"source": "x_forwarded_client_cert"},
                "jwt": {"metadata_namespace": "istio_authn", "payload_key": "claims"},
                "trusted_proxy_hops": 3
            }),
        ),
    ] {
        let mut config = settings;
        config["policies"] = serde_json::json!([policy]);
        std::fs::write(mesh.dir.join(name), config.to_string()).unwrap();
        let (config, traffic) = (mesh.path(name), mesh.path("presented.jsonl"));
        let output = cordon(&[
            "simulate",
            "--config",
            &config,
            "--traffic",
            &traffic,
            "--format",
            "jsonl",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let decisions: Vec<String> = stdout(&output)
            .lines()
            .map(|line| {
                let line: Value = serde_json::from_str(line).unwrap();
                line["decision"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(decisions, expected, "{name}");
    }
}
