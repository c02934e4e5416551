//! Oversized configurations through the filter: they load or are refused with an error
//! naming the limit, within a peak memory proportional to the document. Alone in its test
//! binary because it measures the process's peak resident memory (Linux `VmHWM`, reset
//! through `/proc/self/clear_refs`). Where it cannot measure, it fails: a memory test
//! that passes without measuring memory would say nothing while reading as green.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_filter::config;
use cordon_filter::decide::{Filter, Verdict};
use cordon_filter::testing::FakeHost;

fn status_kb(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `work` and returns its result and the growth of peak resident memory, in bytes
/// (`None` where the kernel cannot say).
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, Option<usize>) {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_kb("VmRSS:");
    let result = work();
    let after = status_kb("VmHWM:");
    let grown = match (reset, before, after) {
        (true, Some(before), Some(after)) => Some(after.saturating_sub(before) << 10),
        _ => None,
    };
    (result, grown)
}

fn request(path: &str, peer: &str, tenant: &str) -> FakeHost {
    FakeHost::request("GET", path, "billing")
        .with_header("x-tenant", tenant)
        .with_property(&["connection", "uri_san_peer_certificate"], peer.as_bytes())
}

fn load(text: &str) -> Result<config::FilterConfig, Vec<config::ConfigError>> {
    config::load(text.as_bytes(), &FakeHost::default())
}

fn check_peak(label: &str, peak: Option<usize>, document: usize, factor: usize) {
    let Some(peak) = peak else {
        panic!(
            "{label}: cannot measure peak memory here (needs Linux's /proc/self/status `VmRSS`/`VmHWM` \
             and a writable /proc/self/clear_refs); this test checks memory, so it fails instead of \
             passing unmeasured"
        );
    };
    println!(
        "{label}: {} MB document, {} MB peak",
        document >> 20,
        peak >> 20
    );
    assert!(
        peak < factor * document + (64 << 20),
        "{label}: {} MB peak for a {} MB document",
        peak >> 20,
        document >> 20
    );
}

/// What a child process prints when its case ran to the end, so that the parent can tell
/// a measured case from a child that ran no test at all (and exited 0).
fn measured_marker(case: &str) -> String {
    format!("memory case {case}: measured")
}

/// The document for a case, written as text (building it as a JSON tree first would leave
/// that memory in the allocator, where loading would reuse it unseen).
fn document(case: &str) -> String {
    let rules = |count: usize| -> String {
        (0..count)
            .map(|i| {
                format!(
                    r#"{{"from":[{{"source":{{"principals":["cluster.local/ns/team{}/sa/svc{i}"]}}}}],"to":[{{"operation":{{"methods":["GET","POST"],"paths":["/api/v1/{i}/{{*}}","/static/{i}/*"]}}}}],"when":[{{"key":"request.headers[x-tenant]","values":["t{i}"]}}]}}"#,
                    i % 50
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let policy = |name: &str, rules: &str| {
        format!(
            r#"{{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{{"name":"{name}","namespace":"finance"}},"spec":{{"rules":[{rules}]}}}}"#
        )
    };
    let policies = match case {
        "rules-50k" => (0..10)
            .map(|p| policy(&format!("p{p}"), &rules(5_000)))
            .collect::<Vec<_>>()
            .join(","),
        "rules-100k" => policy("big", &rules(100_000)),
        _ => policy(
            "huge",
            &format!(
                r#"{{"to":[{{"operation":{{"paths":["/{}*"]}}}}]}}"#,
                "a".repeat(10 << 20)
            ),
        ),
    };
    format!(r#"{{"policies":[{policies}]}}"#)
}

/// One case, in a process of its own.
fn run_case(case: &str) {
    let text = document(case);
    let (loaded, peak) = peak_of(|| load(&text));
    match case {
        "rules-50k" => {
            assert!(text.len() > 10 << 20, "{} bytes", text.len());
            let config = loaded.unwrap();
            assert_eq!(config.policies.rules().len(), 50_000);
            check_peak(case, peak, text.len(), 64);
            let filter = Filter::new(config);
            let host = request(
                "/api/v1/77/x",
                "spiffe://cluster.local/ns/team27/sa/svc77",
                "t77",
            );
            assert_eq!(filter.on_request_headers(&host), Verdict::Continue);
            let host = request(
                "/api/v1/77/x",
                "spiffe://cluster.local/ns/team27/sa/svc78",
                "t77",
            );
            assert_eq!(filter.on_request_headers(&host), Verdict::Stop);
            assert_eq!(host.status(), Some(403));
        }
        "rules-100k" => {
            let errors = loaded.unwrap_err();
            assert!(
                errors[0].message.contains("(limits.max_rules)"),
                "{errors:?}"
            );
            check_peak(case, peak, text.len(), 64);
        }
        _ => {
            assert!(loaded.is_ok());
            check_peak(case, peak, text.len(), 8);
        }
    }
}

/// A 10 MB document of 50,000 rules (the maximum) loads; 100,000 rules are refused by
/// count; a single 10 MB value works. Each case runs in a fresh process (this test binary,
/// run again) so its peak is its own. Most of the peak is serde_json's tree of the
/// document itself (20 to 50 times the text for small objects); the compiled set is a
/// fraction of it.
#[test]
fn large_documents_load_or_are_refused_within_bounded_memory() {
    if let Ok(case) = std::env::var("CORDON_MEMORY_CASE") {
        run_case(&case);
        println!("{}", measured_marker(&case));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for case in ["rules-50k", "rules-100k", "value-10mb"] {
        let output = std::process::Command::new(&exe)
            .args([
                "large_documents_load_or_are_refused_within_bounded_memory",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CORDON_MEMORY_CASE", case)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        for line in stdout.lines().filter(|line| line.contains("peak")) {
            println!("{line}");
        }
        assert!(
            output.status.success(),
            "{case}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.lines().any(|line| line == measured_marker(case)),
            "{case}: the child process did not run the case (no `{}` line):\n{stdout}",
            measured_marker(case)
        );
    }
}
