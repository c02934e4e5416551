//! The segmentation lifecycle on generated mesh traffic (13 workloads in 5 namespaces,
//! REST paths with numbers, UUIDs, hex tokens and prefixed IDs, attackers probing):
//! discover → check → simulate round trip, templating, audit of planted stale and
//! over-broad rules, blast radius through the binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use cordon_engine::{Options, PolicySet, TrafficRecord, Workload};
use cordon_lifecycle::audit::{Audit, AuditOptions, Kind, Severity};
use cordon_lifecycle::discover::{DiscoverOptions, Discovered, Discovery};
use cordon_lifecycle::sources::{load_policies, parse_documents};
use cordon_lifecycle::synthetic::{self, Generator, SyntheticRecord, WORKLOADS};
use serde_json::Value;

const RECORDS: usize = 4000;
const SEED: u64 = 20_261_127;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("lifecycle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
    .clone()
}

fn mesh() -> &'static (Vec<SyntheticRecord>, PathBuf) {
    static MESH: OnceLock<(Vec<SyntheticRecord>, PathBuf)> = OnceLock::new();
    MESH.get_or_init(|| {
        let records: Vec<SyntheticRecord> = Generator::new(RECORDS, SEED).collect();
        let path = scratch_dir().join("mesh.jsonl");
        let mut text = String::new();
        for record in &records {
            text.push_str(&record.line);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        (records, path)
    })
}

fn options() -> DiscoverOptions {
    DiscoverOptions {
        min_count: 5,
        ..DiscoverOptions::default()
    }
}

fn discovered() -> &'static Discovered {
    static DISCOVERED: OnceLock<Discovered> = OnceLock::new();
    DISCOVERED.get_or_init(|| {
        let mut discovery = Discovery::new(options());
        discovery.read_files(&[mesh().1.clone()]).unwrap();
        discovery.finish()
    })
}

fn yaml_values(yaml: &str) -> Vec<Value> {
    parse_documents(yaml)
        .unwrap()
        .into_iter()
        .map(|document| document.value)
        .filter(|value| !value.is_null())
        .collect()
}

fn record_of(line: &str) -> TrafficRecord {
    cordon_engine::traffic::read_line(line.as_bytes())
        .unwrap()
        .record()
        .unwrap()
}

/// Decides records with the engine, one compiled set per destination workload.
struct Judge {
    policies: Vec<Value>,
    sets: HashMap<(Option<String>, BTreeMap<String, String>), PolicySet>,
}

impl Judge {
    fn new(policies: Vec<Value>) -> Judge {
        Judge {
            policies,
            sets: HashMap::new(),
        }
    }

    fn allowed(&mut self, record: &TrafficRecord) -> bool {
        let key = (
            record.destination_namespace.clone(),
            record.destination_labels.clone(),
        );
        let policies = &self.policies;
        let set = self.sets.entry(key.clone()).or_insert_with(|| {
            let options = Options {
                workload: Workload {
                    namespace: key.0.clone(),
                    labels: key.1.clone(),
                },
                ..Options::default()
            };
            PolicySet::compile(policies, options).unwrap()
        });
        set.evaluate(&record.request(), &mut set.new_scratch())
            .allowed
    }
}

#[test]
fn discovered_policy_round_trips_through_the_engine() {
    let (records, _) = mesh();
    let discovered = discovered();
    let yaml = discovered.to_yaml();
    let values = yaml_values(&yaml);
    let namespaces: BTreeSet<&str> = WORKLOADS.iter().map(|w| w.namespace).collect();
    assert_eq!(
        values.len(),
        WORKLOADS.len() - 1 + namespaces.len(),
        "one policy per called workload (all but checkout), one default deny per namespace"
    );
    let mut judge = Judge::new(values);
    let mut legitimate = 0;
    for record in records {
        let traffic = record_of(&record.line);
        let allowed = judge.allowed(&traffic);
        if record.legitimate {
            legitimate += 1;
            assert!(allowed, "legitimate request denied: {}", record.line);
        } else {
            assert!(!allowed, "attack allowed: {}", record.line);
        }
    }
    assert_eq!(legitimate, RECORDS);

    // Every identity seen anywhere, against every workload it was never seen calling
    // legitimately, with every operation that workload serves: denied.
    let pairs: BTreeSet<(String, synthetic::Workload)> =
        synthetic::legitimate_pairs().into_iter().collect();
    let mut examples: BTreeMap<synthetic::Workload, Vec<TrafficRecord>> = BTreeMap::new();
    for record in records.iter().filter(|r| r.legitimate) {
        let list = examples.entry(record.workload).or_default();
        if list.len() < 200 {
            list.push(record_of(&record.line));
        }
    }
    let mut checked = 0;
    for identity in synthetic::identities() {
        for workload in WORKLOADS {
            if pairs.contains(&(identity.clone(), *workload)) {
                continue;
            }
            for example in examples.get(workload).into_iter().flatten() {
                let mut forged = example.clone();
                forged.principal = Some(format!("spiffe://{identity}"));
                assert!(
                    !judge.allowed(&forged),
                    "{identity} reaches {workload:?} with {:?} {:?}",
                    forged.method,
                    forged.path
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
    // And plaintext, everywhere.
    for example in examples.values().flatten() {
        let mut plaintext = example.clone();
        plaintext.principal = None;
        plaintext.mtls = Some(false);
        assert!(!judge.allowed(&plaintext));
    }
}

#[test]
fn discovery_grants_only_believed_identities() {
    let discovered = discovered();
    let summary = &discovered.summary;
    // Plaintext probes, the filter's refusals and the rare stray flows are left out.
    assert_eq!(summary.plaintext.values().sum::<u64>(), 6);
    assert_eq!(summary.denied.values().sum::<u64>(), 14);
    assert!(summary
        .denied
        .keys()
        .all(|(identity, _)| identity == "cluster.local/ns/catalog/sa/reviews"));
    let unbelieved: BTreeSet<&str> = summary
        .unbelieved
        .iter()
        .map(|(principal, _, _)| principal.as_str())
        .collect();
    assert_eq!(
        unbelieved,
        BTreeSet::from([
            "cluster.local/ns/default/sa/default",
            "cluster.local/ns/shop/sa/frontend"
        ])
    );
    assert_eq!(summary.granted, RECORDS as u64);
    assert_eq!(
        summary.trust_domains.keys().collect::<Vec<_>>(),
        vec!["cluster.local"]
    );
    // Rules: exactly the legitimate edges, principals exact.
    let mut granted: BTreeSet<(String, String)> = BTreeSet::new();
    for policy in &discovered.policies {
        for rule in &policy.rules {
            assert!(!rule.principal.contains('*'));
            granted.insert((rule.principal.clone(), policy.workload.label()));
        }
    }
    let expected: BTreeSet<(String, String)> = synthetic::legitimate_pairs()
        .into_iter()
        .map(|(principal, workload)| {
            (
                principal,
                format!("{}/{}", workload.namespace, workload.app),
            )
        })
        .collect();
    assert_eq!(granted, expected);
    // The workload only attackers called has no ALLOW policy: its namespace's default
    // deny closes it.
    assert!(discovered
        .policies
        .iter()
        .all(|p| p.workload.label() != "shop/checkout"));
    assert_eq!(summary.closed, vec!["shop/checkout"]);
    assert_eq!(
        summary.default_deny,
        vec!["catalog", "finance", "identity", "messaging", "shop"]
    );
}

#[test]
fn templating_merges_ids_and_keeps_distinct_operations_apart() {
    let discovered = discovered();
    let users = discovered
        .policies
        .iter()
        .find(|p| p.workload.label() == "identity/users")
        .unwrap();
    let paths_of = |principal: &str, method: &str| -> Vec<String> {
        let rule = users
            .rules
            .iter()
            .find(|r| r.principal == principal)
            .unwrap();
        rule.operations
            .iter()
            .filter(|o| o.methods.iter().any(|m| m == method))
            .flat_map(|o| o.paths.iter().map(|(path, _)| path.clone()))
            .collect()
    };
    // /users/123, /users/456, … are one template; /users/me stays itself.
    assert_eq!(
        paths_of("cluster.local/ns/shop/sa/frontend", "GET"),
        vec!["/users/me", "/users/{*}"]
    );
    assert_eq!(
        paths_of("cluster.local/ns/shop/sa/frontend", "PUT"),
        vec!["/users/{*}/preferences"]
    );
    // /users/export is its own operation (POST only), never folded into /users/{*}.
    assert_eq!(
        paths_of("cluster.local/ns/identity/sa/admin-console", "POST"),
        vec!["/users/export"]
    );
    assert_eq!(
        paths_of("cluster.local/ns/identity/sa/admin-console", "GET"),
        vec!["/users/{*}"]
    );
    // Every other kind of ID: UUIDs, hex tokens, prefixed IDs, hashed asset names.
    let all: BTreeSet<String> = discovered
        .policies
        .iter()
        .flat_map(|p| p.rules.iter())
        .flat_map(|r| r.operations.iter())
        .flat_map(|o| o.paths.iter().map(|(path, _)| path.clone()))
        .collect();
    for expected in [
        "/v1/carts/{*}",
        "/v1/carts/{*}/items/{*}",
        "/v1/sessions/{*}",
        "/v1/payments/{*}",
        "/v1/invoices/{*}",
        "/v1/accounts/{*}/balance",
        "/static/js/{*}",
        "/products/{*}",
        "/",
    ] {
        assert!(all.contains(expected), "{expected} in {all:?}");
    }
    assert!(
        all.iter()
            .all(|path| !path.chars().any(|c| c.is_ascii_digit()) || path.starts_with("/v1")),
        "{all:?}"
    );
    assert!(all.iter().all(|path| !path.contains("{**}")));
    // The whole mesh generalizes into a few dozen paths.
    assert!(all.len() < 40, "{}", all.len());
}

#[test]
fn memory_follows_the_aggregate_not_the_records() {
    let mut discovery = Discovery::new(options());
    let mut after_small = 0;
    let legitimate = Generator::new(200_000, 3).filter(|record| record.legitimate);
    for (position, record) in legitimate.enumerate() {
        discovery.add_line(record.line.as_bytes()).unwrap();
        if position == 20_000 {
            after_small = discovery.aggregate_entries();
        }
    }
    let entries = discovery.aggregate_entries();
    assert_eq!(
        entries, after_small,
        "no new aggregate entries after 20,000 records"
    );
    assert!(entries < 80, "{entries}");
}

#[test]
fn output_is_deterministic() {
    let first = discovered().to_yaml();
    let mut again = Discovery::new(options());
    again.read_files(&[mesh().1.clone()]).unwrap();
    assert_eq!(again.finish().to_yaml(), first);
    // Independent of the order records arrive in.
    let mut reversed = Discovery::new(options());
    for record in mesh().0.iter().rev() {
        reversed.add_line(record.line.as_bytes()).unwrap();
    }
    assert_eq!(reversed.finish().to_yaml(), first);
}

#[test]
fn learning_window_and_trust_domain() {
    // 4000 records 600 ms apart: the last ten minutes hold 1000 of them.
    let mut discovery = Discovery::new(DiscoverOptions {
        since: cordon_lifecycle::time::parse_rfc3339("2026-11-20T00:30:00Z"),
        ..options()
    });
    discovery.read_files(&[mesh().1.clone()]).unwrap();
    let summary = discovery.finish().summary;
    assert!(summary.outside_window > 2900, "{}", summary.outside_window);
    assert!(
        summary.window.first.unwrap()
            >= cordon_lifecycle::time::parse_rfc3339("2026-11-20T00:30:00Z").unwrap()
    );

    let mut foreign = Discovery::new(DiscoverOptions {
        trust_domains: vec!["prod.example.org".to_string()],
        ..options()
    });
    foreign.read_files(&[mesh().1.clone()]).unwrap();
    let foreign = foreign.finish();
    assert_eq!(foreign.summary.granted, 0);
    assert!(foreign
        .summary
        .foreign_trust_domain
        .contains_key("cluster.local"));
    assert!(foreign.policies.iter().all(|p| p.rules.is_empty()));
}

// ---- the binary -----------------------------------------------------------------------

fn wasm() -> PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        if let Some(path) = std::env::var_os("CORDON_WASM").map(PathBuf::from) {
            if path.is_file() {
                return path;
            }
        }
        let built = repo().join("target/wasm32-wasip1/release/cordon_filter.wasm");
        if !built.is_file() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "-p",
                    "cordon-filter",
                    "--release",
                    "--target",
                    "wasm32-wasip1",
                ])
                .current_dir(repo())
                .env_remove("CARGO_TARGET_DIR")
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building cordon_filter.wasm failed");
        }
        built
    })
    .clone()
}

fn cordon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .env("CORDON_WASM", wasm())
        .current_dir(repo())
        .output()
        .expect("the cordon binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cordon_discover_then_check_then_simulate_round_trips_through_the_wasm() {
    let (records, traffic) = mesh();
    let output_path = scratch_dir().join("discovered.yaml");
    let output = cordon(&[
        "discover",
        "--traffic",
        traffic.to_str().unwrap(),
        "--min-count",
        "5",
        "--output",
        output_path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = text(&output.stderr);
    assert!(
        summary.contains("plaintext (no peer identity): 6"),
        "{summary}"
    );
    assert!(
        summary.contains("refused by the filter (decision log): 14"),
        "{summary}"
    );
    assert!(
        summary.contains("not believed: cluster.local/ns/shop/sa/frontend -> finance/ledger (2)"),
        "{summary}"
    );
    let yaml = std::fs::read_to_string(&output_path).unwrap();
    assert_eq!(
        yaml,
        discovered().to_yaml(),
        "the binary writes what the library computes"
    );
    assert!(yaml.contains("# cluster.local/ns/shop/sa/frontend: "));
    assert!(yaml.contains(" requests, first seen 2026-11-20T"));

    let check = cordon(&["check", "--strict", output_path.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check.stdout));
    assert!(
        text(&check.stdout).contains("17 policies checked: 0 errors, 0 warnings"),
        "{}",
        text(&check.stdout)
    );

    let simulate = cordon(&[
        "simulate",
        "--policy",
        output_path.to_str().unwrap(),
        "--traffic",
        traffic.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(simulate.status.success(), "{}", text(&simulate.stderr));
    let decisions: Vec<Value> = text(&simulate.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(decisions.len(), records.len());
    for decision in &decisions {
        let line = decision["line"].as_u64().unwrap() as usize;
        let record = &records[line - 1];
        let expected = if record.legitimate { "allow" } else { "deny" };
        assert_eq!(decision["decision"], expected, "{}", record.line);
    }

    // Standard input works too.
    let piped = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["discover", "--quiet", "--min-count", "5", "--traffic", "-"])
        .stdin(std::fs::File::open(traffic).unwrap())
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert_eq!(text(&piped.stdout), yaml);
}

fn planted_policies() -> PathBuf {
    let path = scratch_dir().join("planted.yaml");
    std::fs::write(
        &path,
        r#"# Planted for the audit test.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ledger-legacy
  namespace: finance
spec:
  selector:
    matchLabels:
      app: ledger
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/finance/sa/payments", "cluster.local/ns/shop/sa/legacy-batch"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/v1/accounts/{*}/balance", "/v1/legacy/export"]
  - from:
    - source:
        principals: ["cluster.local/ns/shop/sa/cart"]
    to:
    - operation:
        methods: ["POST"]
        paths: ["/v1/entries"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: notifier-open
  namespace: messaging
spec:
  selector:
    matchLabels:
      app: notifier
  rules:
  - to:
    - operation:
        methods: ["POST"]
        paths: ["/v1/notify/{**}"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: catalog-wide
  namespace: catalog
spec:
  rules:
  - from:
    - source:
        principals: ["*"]
    to:
    - operation:
        methods: ["GET"]
  - from:
    - source:
        namespaces: ["shop"]
    to:
    - operation:
        paths: ["/v1/products*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reports-allow
  namespace: finance
spec:
  selector:
    matchLabels:
      app: legacy-reports
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/finance/sa/billing"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: users-me-lockdown
  namespace: identity
  annotations:
    istio.io/dry-run: "true"
spec:
  selector:
    matchLabels:
      app: users
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/shop/sa/frontend"]
    to:
    - operation:
        paths: ["/users/me"]
"#,
    )
    .unwrap();
    path
}

#[test]
fn audit_finds_planted_stale_and_over_broad_rules() {
    let discovered_path = scratch_dir().join("for-audit.yaml");
    std::fs::write(&discovered_path, discovered().to_yaml()).unwrap();
    let planted = planted_policies();
    let sources = load_policies(&[discovered_path, planted.clone()]).unwrap();
    let mut audit = Audit::from_sources(sources, AuditOptions::default()).unwrap();
    audit.read_files(&[mesh().1.clone()]).unwrap();
    let report = audit.finish();
    let find = |kind: Kind, needle: &str| {
        report
            .findings
            .iter()
            .find(|f| {
                f.kind == kind
                    && (f.message.contains(needle)
                        || f.value.as_deref() == Some(needle)
                        || f.rule.as_deref() == Some(needle)
                        || f.policy.as_deref() == Some(needle))
            })
            .unwrap_or_else(|| panic!("no {kind:?} finding for {needle}:\n{}", report.to_text()))
    };
    // Stale privileges: an unused principal and path in a used rule, an unused rule, a
    // policy for a workload that never received traffic.
    let value = find(Kind::StaleValue, "cluster.local/ns/shop/sa/legacy-batch");
    assert_eq!(value.severity, Severity::Low);
    let (file, line, _) = value.location.clone().unwrap();
    assert!(file.ends_with("planted.yaml"));
    assert_eq!(line, 14);
    find(Kind::StaleValue, "/v1/legacy/export");
    let rule = find(Kind::StaleRule, "ns[finance]-policy[ledger-legacy]-rule[1]");
    assert_eq!(rule.severity, Severity::Medium);
    find(Kind::StalePolicy, "finance/reports-allow");
    // Over-broad: no `from`, `{**}`, `*` principal, whole-namespace grant, no `to`,
    // prefix path.
    assert_eq!(
        find(Kind::OverBroad, "ALLOW rule without `from`").severity,
        Severity::High
    );
    assert_eq!(
        find(Kind::OverBroad, "/v1/notify/{**}").severity,
        Severity::Medium
    );
    assert_eq!(
        find(Kind::OverBroad, "principal `*`").severity,
        Severity::High
    );
    assert_eq!(
        find(Kind::OverBroad, "whole-namespace grant").severity,
        Severity::Medium
    );
    assert_eq!(
        find(Kind::OverBroad, "ALLOW rule without `to`").severity,
        Severity::Medium
    );
    find(Kind::OverBroad, "/v1/products*");
    // The discovered policies themselves are not over-broad and nothing in them is stale.
    assert!(report
        .findings
        .iter()
        .filter(|f| matches!(f.kind, Kind::OverBroad | Kind::StaleRule | Kind::StaleValue))
        .all(|f| f.policy.as_deref().is_some_and(|p| [
            "finance/ledger-legacy",
            "messaging/notifier-open",
            "catalog/catalog-wide",
            "finance/reports-allow",
        ]
        .contains(&p))));
    // Lateral movement: the compromised frontend and reviews, the stray identity.
    let lateral: BTreeSet<(String, String)> = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::LateralMovement)
        .map(|f| (f.identity.clone().unwrap(), f.workload.clone().unwrap()))
        .collect();
    for (identity, workload) in [
        ("cluster.local/ns/shop/sa/frontend", "finance/ledger"),
        ("cluster.local/ns/shop/sa/frontend", "finance/payments"),
        ("cluster.local/ns/catalog/sa/reviews", "identity/users"),
        ("cluster.local/ns/default/sa/default", "identity/auth"),
    ] {
        assert!(
            lateral.contains(&(identity.to_string(), workload.to_string())),
            "{identity} -> {workload} in {lateral:?}"
        );
    }
    let reviews = report
        .findings
        .iter()
        .find(|f| {
            f.kind == Kind::LateralMovement
                && f.identity.as_deref() == Some("cluster.local/ns/catalog/sa/reviews")
                && f.workload.as_deref() == Some("identity/users")
        })
        .unwrap();
    assert_eq!(reviews.requests.count, 8);
    assert!(
        reviews.examples.iter().any(|e| e == "GET /users/{*} ×6"),
        "{:?}",
        reviews.examples
    );
    // Plaintext probes are denied findings too (the open notifier lets one through).
    assert!(report
        .findings
        .iter()
        .any(|f| f.kind == Kind::Denied && f.identity.as_deref() == Some("(no identity)")));
    // The dry-run DENY would break the frontend's /users/me calls.
    let dry = find(
        Kind::DryRun,
        "ns[identity]-policy[users-me-lockdown]-rule[0]",
    );
    assert!(dry.requests.count > 100, "{}", dry.requests.count);
    assert!(dry.examples[0].starts_with("cluster.local/ns/shop/sa/frontend -> identity/users ×"));

    // The binary: text by default, JSON on request, exit 1 on high findings.
    let traffic = mesh().1.to_str().unwrap().to_string();
    let output = cordon(&[
        "audit",
        "--policy",
        scratch_dir().join("for-audit.yaml").to_str().unwrap(),
        planted.to_str().unwrap(),
        "--traffic",
        &traffic,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("HIGH    lateral-movement"), "{stdout}");
    assert!(stdout.contains("planted.yaml:14:"), "{stdout}");
    let json = cordon(&[
        "audit",
        "--policy",
        scratch_dir().join("for-audit.yaml").to_str().unwrap(),
        planted.to_str().unwrap(),
        "--traffic",
        &traffic,
        "--format",
        "json",
        "--fail-on",
        "never",
    ]);
    assert_eq!(json.status.code(), Some(0));
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        value["findings"].as_array().unwrap().len(),
        report.findings.len()
    );
    assert!(value["counts"]["high"].as_u64().unwrap() >= 3);
}

#[test]
fn audit_of_the_discovered_policy_alone_is_clean_but_for_the_attackers() {
    let discovered_path = scratch_dir().join("clean.yaml");
    std::fs::write(&discovered_path, discovered().to_yaml()).unwrap();
    let sources = load_policies(&[discovered_path]).unwrap();
    let mut audit = Audit::from_sources(sources, AuditOptions::default()).unwrap();
    audit.read_files(&[mesh().1.clone()]).unwrap();
    let report = audit.finish();
    let kinds = report.kinds();
    assert_eq!(
        kinds,
        BTreeSet::from([Kind::LateralMovement, Kind::Denied]),
        "{}",
        report.to_text()
    );
    let denied: u64 = report.findings.iter().map(|f| f.requests.count).sum();
    assert_eq!(denied, 29, "every attack, and nothing else, is denied");
    assert_eq!(report.summary.allowed, RECORDS as u64);
}

#[test]
fn cordon_blast_radius_on_the_shop() {
    let output = cordon(&[
        "blast-radius",
        "--policy",
        "policies/examples/shop/policies.yaml",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(table.contains("cluster.local/ns/shop/sa/order-engine  partial                  partial    -            ALL"), "{table}");
    let dot = cordon(&[
        "blast-radius",
        "--policy",
        "policies/examples/shop/policies.yaml",
        "--format",
        "dot",
    ]);
    assert!(text(&dot.stdout).starts_with("digraph blast_radius {"));
    let json = cordon(&[
        "blast-radius",
        "--policy",
        "policies/examples/shop/policies.yaml",
        "--principal",
        "spiffe://cluster.local/ns/shop/sa/frontend",
        "--format",
        "json",
    ]);
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    let reach = value["reach"].as_array().unwrap();
    assert_eq!(reach.len(), 4);
    assert_eq!(reach[0]["workload"], "finance/billing-service");
    assert_eq!(reach[0]["access"], "none");
    let bad = cordon(&[
        "blast-radius",
        "--policy",
        "policies/examples/shop/policies.yaml",
        "--principal",
        "spiffe://UPPER/x",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}
