//! Replay through the shipped filter keeps its memory bounded whatever the number of
//! destination workloads: 20,000 distinct workloads (two records each) go through one
//! [`Runner`], the decisions and counters are checked, and the process's peak resident
//! memory may not grow with the workload count. Alone in its test binary because it
//! measures the process's resident memory (Linux `VmRSS`, and `VmHWM` reset through
//! `/proc/self/clear_refs`); where it cannot measure, it fails: a memory test that passes
//! without measuring would read as green and say nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use cordon_engine::TrafficRecord;
use cordon_host::replay::{PluginLimits, RunSettings, Runner};
use cordon_host::Host;
use serde_json::{json, Value};

// The shipped module, built once (or `CORDON_WASM`), by the CLI tests' helper.
#[path = "../../cli/tests/support/filter.rs"]
mod filter;

/// Distinct destination workloads: more than the 16,370 instances after which replay
/// used to stop with `mmap failed` (one instance, and a 4 GiB reservation, each).
const WORKLOADS: usize = 20_000;
/// Workloads replayed before the baseline is read: the module, the compiled code and the
/// runner's instances up to its cap are resident by then.
const WARM_UP: usize = 2_000;
/// How much resident memory the replay of the other workloads may add to the baseline.
const GROWTH_LIMIT_MB: usize = 64;

fn status_kb(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A `/proc/self/status` field in MB; fails the test where it cannot be read.
fn status_mb(field: &str) -> usize {
    let Some(kb) = status_kb(field) else {
        panic!(
            "cannot measure resident memory here (needs Linux's /proc/self/status `{field}`); \
             this test checks memory, so it fails instead of passing unmeasured"
        );
    };
    kb >> 10
}

fn rss_mb() -> usize {
    status_mb("VmRSS:")
}

/// Resets the peak resident memory (`VmHWM`) to the current one; fails the test where the
/// kernel does not allow it.
fn reset_peak() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        panic!(
            "cannot reset the peak resident memory (/proc/self/clear_refs: {error}); this \
             test checks memory, so it fails instead of passing unmeasured"
        );
    }
}

/// The process's address space: how much is reserved, in how many mappings (Linux allows
/// 65,530 by default, `vm.max_map_count`).
fn address_space() -> String {
    let mappings =
        std::fs::read_to_string("/proc/self/maps").map_or(0, |maps| maps.lines().count());
    let reserved_gb = status_kb("VmSize:").unwrap_or(0) >> 20;
    format!("{reserved_gb} GB of address space in {mappings} mappings")
}

/// A workload the runner could not replay, with the process's memory at that point.
fn failed(i: usize, error: &anyhow::Error) -> ! {
    panic!(
        "workload {i}: {error:#} (resident {} MB, {})",
        rss_mb(),
        address_space()
    )
}

fn policies() -> Vec<Value> {
    vec![
        // Workloads labelled tier=api accept only the client, and only GET /v1/*.
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "api-allow", "namespace": "mesh"},
            "spec": {
                "selector": {"matchLabels": {"tier": "api"}},
                "action": "ALLOW",
                "rules": [{
                    "from": [{"source": {"principals": ["cluster.local/ns/mesh/sa/client"]}}],
                    "to": [{"operation": {"methods": ["GET"], "paths": ["/v1/*"]}}]
                }]
            }
        }),
        // Every workload refuses /admin.
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "no-admin", "namespace": "istio-system"},
            "spec": {
                "action": "DENY",
                "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]
            }
        }),
    ]
}

/// Workload `i`: `app: w-<i>`, every other one `tier: api`.
fn workload(i: usize) -> BTreeMap<String, String> {
    let tier = if i.is_multiple_of(2) { "api" } else { "batch" };
    BTreeMap::from([
        ("app".to_string(), format!("w-{i}")),
        ("tier".to_string(), tier.to_string()),
    ])
}

fn record(i: usize, principal: &str, path: &str) -> TrafficRecord {
    TrafficRecord {
        principal: Some(format!("spiffe://cluster.local/ns/mesh/sa/{principal}")),
        destination_namespace: Some("mesh".into()),
        destination_labels: workload(i),
        method: Some("GET".into()),
        path: Some(path.into()),
        host: Some(format!("w-{i}.mesh")),
        ..TrafficRecord::default()
    }
}

/// Replays workload `i`'s two records and checks what the filter decided: an intruder
/// is refused by an api workload (its ALLOW policy applies) and let through by a batch
/// one (no ALLOW policy applies); `/admin` is refused everywhere. Answers the requests
/// allowed.
fn replay_workload(runner: &mut Runner<'_>, i: usize) -> u64 {
    let api = i.is_multiple_of(2);
    let intruder = runner
        .decide(&record(i, "intruder", "/v1/items"))
        .unwrap_or_else(|error| failed(i, &error));
    assert_eq!(intruder.allowed, !api, "workload {i}: {intruder:?}");
    if api {
        assert_eq!(
            (intruder.status, intruder.reason.as_str()),
            (403, "no_allow_match")
        );
    }
    let admin = runner
        .decide(&record(i, "client", "/admin/users"))
        .unwrap_or_else(|error| failed(i, &error));
    assert!(!admin.allowed, "workload {i}: {admin:?}");
    assert_eq!(
        admin.policy.as_deref(),
        Some("ns[istio-system]-policy[no-admin]-rule[0]")
    );
    u64::from(intruder.allowed)
}

/// The runner's settings: the default limits, or `CORDON_REPLAY_MAX_PLUGINS` plugins (and
/// no memory limit), to see what a larger cap costs; `CORDON_REPLAY_MAX_PLUGINS=100000`
/// shows the failure this test guards against.
fn settings() -> RunSettings {
    let mut settings = RunSettings::default();
    if let Some(max) = std::env::var("CORDON_REPLAY_MAX_PLUGINS")
        .ok()
        .and_then(|max| max.parse().ok())
    {
        settings.plugins = PluginLimits {
            max_plugins: max,
            max_memory_bytes: usize::MAX,
        };
    }
    settings
}

#[test]
fn replay_memory_does_not_grow_with_the_number_of_workloads() {
    let host = Host::load(&std::fs::read(filter::wasm_path()).unwrap()).unwrap();
    let settings = settings();
    let limits = settings.plugins;
    let mut runner = Runner::new(&host, policies(), settings);
    let started = std::time::Instant::now();
    let before = rss_mb();
    let mut allowed = 0;
    for i in 0..WARM_UP {
        allowed += replay_workload(&mut runner, i);
    }
    let baseline = rss_mb();
    reset_peak();
    for i in WARM_UP..WORKLOADS {
        allowed += replay_workload(&mut runner, i);
    }
    // The first workload's plugin was evicted long ago: a new one decides alike.
    allowed += replay_workload(&mut runner, 0);
    let after = rss_mb();
    let peak = status_mb("VmHWM:");
    let stats = runner.stats();
    println!(
        "{WORKLOADS} workloads, {} records in {:.1} s: resident {before} MB before, \
         {baseline} MB after {WARM_UP} workloads, {after} MB at the end, {peak} MB at most \
         after that; {} at the end; {stats:?}",
        2 * WORKLOADS + 2,
        started.elapsed().as_secs_f64(),
        address_space(),
    );
    assert!(
        peak <= baseline + GROWTH_LIMIT_MB,
        "resident memory grew from {baseline} MB to {peak} MB over {} more workloads",
        WORKLOADS - WARM_UP
    );
    assert_eq!(allowed, (WORKLOADS / 2) as u64);

    // Every plugin was started once (the first workload's twice), and the limits held.
    assert_eq!(stats.started, WORKLOADS + 1);
    assert_eq!(stats.evicted, stats.started - stats.running);
    assert!(stats.running <= limits.max_plugins, "{stats:?}");
    assert!(stats.memory_bytes <= limits.max_memory_bytes, "{stats:?}");
    // The counters of evicted plugins are still counted.
    let metrics = runner.metrics();
    let counter = |name: &str| metrics.get(name).copied().unwrap_or(0);
    assert_eq!(counter("cordon.requests.allowed"), allowed);
    assert_eq!(
        counter("cordon.requests.denied"),
        (2 * WORKLOADS + 2) as u64 - allowed
    );
    assert_eq!(counter("cordon.config.loaded"), stats.started as u64);
}
